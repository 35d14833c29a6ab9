/**
 * Column batches on the wire between peers: each column's typed array travels as its raw bytes
 * (the same little-endian buffers Arrow IPC carries, without its framing), strings as codes plus
 * the dictionary. Decoding checks every length and code, since the bytes come off the network.
 */
import type { ColumnBatch, ColumnVector, StrVector, ValueType } from '../../columnar/index.js'
import { QueryExecError } from './errors.js'

export interface WireColumn {
  name: string
  tag: ColumnVector['tag']
  type: string
  /** num: float64 bytes; str: int32 codes bytes; vec: float32 bytes. */
  data?: Uint8Array
  dict?: string[]
  dim?: number
  valid?: Uint8Array
  values?: unknown[]
}

export interface WireBatch {
  length: number
  columns: WireColumn[]
}

const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)

/**
 * `a`'s bytes, copied out of shared memory: an answer never views a batch's shared memory, which
 * storage may reuse for other columns once the fragment is done (BatchLease).
 */
function ownBytes (a: ArrayBufferView): Uint8Array {
  const bytes = bytesOf(a)
  return a.buffer instanceof SharedArrayBuffer ? bytes.slice() : bytes
}

export function encodeBatch (batch: ColumnBatch, names?: readonly string[]): WireBatch {
  const columns: WireColumn[] = []
  for (const name of names ?? [...batch.columns.keys()]) {
    const v = batch.columns.get(name)
    if (v === undefined) throw new QueryExecError('BAD_FRAGMENT', `no column ${name} to encode`)
    switch (v.tag) {
      case 'num': columns.push({ name, tag: 'num', type: v.type, data: ownBytes(v.values) }); break
      case 'str': { const c = compactDict(v); columns.push({ name, tag: 'str', type: v.type, data: ownBytes(c.codes), dict: c.dict }); break }
      case 'vec': columns.push({ name, tag: 'vec', type: v.type, data: ownBytes(v.values), dim: v.dim, valid: v.valid.buffer instanceof SharedArrayBuffer ? v.valid.slice() : v.valid }); break
      case 'any': columns.push({ name, tag: 'any', type: v.type, values: [...v.values] }); break
    }
  }
  return { length: batch.length, columns }
}

/**
 * Rows start..end-1 of an encoded batch, still encoded: views of the column bytes (a string
 * column's dictionary cut down to the strings those rows use). For sending a large answer in
 * chunks without decoding and encoding it again. `batch` must be this process's own encodeBatch
 * output (its byte views are aligned for their element type).
 */
export function sliceBatch (batch: WireBatch, start: number, end: number): WireBatch {
  const n = end - start
  const columns = batch.columns.map((c): WireColumn => {
    switch (c.tag) {
      case 'num': return { ...c, data: c.data!.subarray(start * 8, end * 8) }
      case 'str': {
        const all = new Int32Array(c.data!.buffer, c.data!.byteOffset, batch.length)
        const part = compactDict({ tag: 'str', type: 'utf8', codes: all.subarray(start, end), dict: c.dict! })
        return { ...c, data: bytesOf(part.codes), dict: part.dict }
      }
      case 'vec': return { ...c, data: c.data!.subarray(start * c.dim! * 4, end * c.dim! * 4), valid: c.valid!.subarray(start, end) }
      case 'any': return { ...c, values: c.values!.slice(start, end) }
    }
  })
  return { length: n, columns }
}

/**
 * Codes and dictionary holding only the strings the rows use. A gathered vector keeps its source's
 * whole dictionary (a top 10 of a 100k-row segment would otherwise ship 100k strings).
 */
function compactDict (v: StrVector): { codes: Int32Array, dict: string[] } {
  const remap = new Int32Array(v.dict.length).fill(-1)
  for (let i = 0; i < v.codes.length; i++) { const c = v.codes[i]!; if (c >= 0) remap[c] = 0 }
  const dict: string[] = []
  for (let c = 0; c < remap.length; c++) if (remap[c] === 0) { remap[c] = dict.length; dict.push(v.dict[c]!) }
  if (dict.length === v.dict.length) return { codes: v.codes, dict }
  const codes = new Int32Array(v.codes.length)
  for (let i = 0; i < codes.length; i++) { const c = v.codes[i]!; codes[i] = c < 0 ? -1 : remap[c]! }
  return { codes, dict }
}

/** A copy aligned for the typed array (msgpack hands out views at any offset). */
function typed<T> (data: unknown, width: number, n: number, make: (buf: ArrayBuffer) => T, what: string): T {
  if (!(data instanceof Uint8Array) || data.byteLength !== n * width) throw new QueryExecError('BAD_PARTIAL', `column ${what}: expected ${n * width} bytes`)
  const copy = new Uint8Array(data.byteLength)
  copy.set(data)
  return make(copy.buffer)
}

const MAX_ROWS = 50_000_000

export function decodeBatch (input: unknown): ColumnBatch {
  const bad = (why: string): never => { throw new QueryExecError('BAD_PARTIAL', `batch: ${why}`) }
  if (input === null || typeof input !== 'object') return bad('not an object')
  const { length, columns } = input as Record<string, unknown>
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0 || length > MAX_ROWS) return bad('bad length')
  if (!Array.isArray(columns) || columns.length > 2048) return bad('bad columns')
  const out = new Map<string, ColumnVector>()
  for (const c of columns as unknown[]) {
    if (c === null || typeof c !== 'object') return bad('a column is not an object')
    const col = c as Record<string, unknown>
    const name = col.name
    const type = col.type
    if (typeof name !== 'string' || typeof type !== 'string' || out.has(name)) return bad('a column has a bad or repeated name or type')
    switch (col.tag) {
      case 'num':
        out.set(name, { tag: 'num', type: type as ValueType, values: typed(col.data, 8, length, b => new Float64Array(b), name) })
        break
      case 'str': {
        const codes = typed(col.data, 4, length, b => new Int32Array(b), name)
        const dict = col.dict
        if (!Array.isArray(dict) || dict.some(s => typeof s !== 'string')) return bad(`column ${name}: bad dictionary`)
        for (let i = 0; i < codes.length; i++) if (codes[i]! >= dict.length || codes[i]! < -1) return bad(`column ${name}: code out of range`)
        out.set(name, { tag: 'str', type: 'utf8', codes, dict: dict as string[] })
        break
      }
      case 'vec': {
        const dim = col.dim
        if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 1 || dim > 65536) return bad(`column ${name}: bad dim`)
        const values = typed(col.data, 4 * dim, length, b => new Float32Array(b), name)
        const valid = typed(col.valid, 1, length, b => new Uint8Array(b), name)
        out.set(name, { tag: 'vec', type: type as ValueType, dim, values, valid })
        break
      }
      case 'any':
        if (!Array.isArray(col.values) || col.values.length !== length) return bad(`column ${name}: bad values`)
        out.set(name, { tag: 'any', type: type as ValueType, values: col.values })
        break
      default: return bad(`column ${name}: unknown tag`)
    }
  }
  return { length, columns: out }
}
