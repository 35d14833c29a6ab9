/**
 * Row-set operations over column batches: concatenation (merging string dictionaries), ORDER BY
 * (each key turned into one float64 array of sortable numbers, strings by their rank in the sorted
 * dictionary, then one comparator over numbers), LIMIT/OFFSET, and a bounded top-N buffer for
 * ORDER BY ... LIMIT pushed down to the data peers.
 */
import { gatherBatch, type ColumnBatch, type ColumnVector, type StrVector } from '../../columnar/index.js'
import type { SortKey } from '../model/index.js'
import { evalExpr } from './eval.js'
import type { MemoryBudget } from './errors.js'

/** One batch holding the rows of all, in order. Columns are those of the first batch. */
export function concatBatches (batches: readonly ColumnBatch[]): ColumnBatch {
  if (batches.length === 1) return batches[0]!
  if (batches.length === 0) return { length: 0, columns: new Map() }
  const total = batches.reduce((n, b) => n + b.length, 0)
  const columns = new Map<string, ColumnVector>()
  for (const [name, first] of batches[0]!.columns) {
    const parts = batches.map(b => b.columns.get(name)!)
    columns.set(name, concatVectors(first, parts, total))
  }
  return { length: total, columns }
}

function concatVectors (first: ColumnVector, parts: readonly ColumnVector[], total: number): ColumnVector {
  switch (first.tag) {
    case 'num': {
      const out = new Float64Array(total)
      let o = 0
      for (const p of parts) { const v = (p as typeof first).values; out.set(v, o); o += v.length }
      return { tag: 'num', type: first.type, values: out }
    }
    case 'str': {
      // One dictionary for all: each part's codes are remapped through a small table.
      const dict: string[] = []
      const index = new Map<string, number>()
      const codes = new Int32Array(total)
      let o = 0
      for (const p of parts as StrVector[]) {
        const remap = new Int32Array(p.dict.length).fill(-1)
        const src = p.codes
        for (let i = 0; i < src.length; i++) {
          const c = src[i]!
          if (c < 0) { codes[o++] = -1; continue }
          let r = remap[c]!
          if (r < 0) {
            const s = p.dict[c]!
            let id = index.get(s)
            if (id === undefined) { id = dict.length; dict.push(s); index.set(s, id) }
            r = remap[c] = id
          }
          codes[o++] = r
        }
      }
      return { tag: 'str', type: 'utf8', codes, dict }
    }
    case 'vec': {
      const values = new Float32Array(total * first.dim)
      const valid = new Uint8Array(total)
      let o = 0
      for (const p of parts) {
        const v = p as typeof first
        values.set(v.values, o * first.dim)
        valid.set(v.valid, o)
        o += v.valid.length
      }
      return { tag: 'vec', type: first.type, dim: first.dim, values, valid }
    }
    case 'any': {
      const out: unknown[] = []
      for (const p of parts) for (const x of (p as typeof first).values) out.push(x)
      return { tag: 'any', type: first.type, values: out }
    }
  }
}

/** A vector as float64 sort keys: numbers as they are, strings by dictionary rank, NaN for NULL. */
function sortable (v: ColumnVector): Float64Array {
  if (v.tag === 'num') return v.values
  if (v.tag === 'str') {
    const order = v.dict.map((_, i) => i).sort((a, b) => { const x = v.dict[a]!; const y = v.dict[b]!; return x < y ? -1 : x > y ? 1 : 0 })
    const rank = new Float64Array(v.dict.length)
    order.forEach((code, r) => { rank[code] = r })
    const out = new Float64Array(v.codes.length)
    for (let i = 0; i < out.length; i++) { const c = v.codes[i]!; out[i] = c < 0 ? NaN : rank[c]! }
    return out
  }
  // Lists and vectors are not orderable (validation refuses them); keep input order.
  return new Float64Array(vectorLengthOf(v)).fill(0)
}

function vectorLengthOf (v: ColumnVector): number { return v.tag === 'vec' ? v.valid.length : v.tag === 'any' ? v.values.length : 0 }

/** The row order of `batch` under the sort keys (stable: ties keep input order). */
export function sortOrder (batch: ColumnBatch, keys: readonly SortKey[]): Uint32Array {
  const n = batch.length
  const perm = new Uint32Array(n)
  for (let i = 0; i < n; i++) perm[i] = i
  if (keys.length === 0 || n < 2) return perm
  const cols = keys.map(k => sortable(evalExpr(k.expr, batch)))
  const desc = keys.map(k => k.direction === 'desc' ? -1 : 1)
  const nullsFirst = keys.map(k => k.nulls === 'first')
  const nk = keys.length
  const sorted = Array.from(perm).sort((a, b) => {
    for (let k = 0; k < nk; k++) {
      const col = cols[k]!
      const x = col[a]!; const y = col[b]!
      const xn = x !== x; const yn = y !== y
      if (xn || yn) {
        if (xn && yn) continue
        return (xn ? -1 : 1) * (nullsFirst[k]! ? 1 : -1)
      }
      if (x !== y) return x < y ? -desc[k]! : desc[k]!
    }
    return a - b
  })
  return Uint32Array.from(sorted)
}

/** Sorts, then skips `offset` rows and keeps `limit` (null: all). */
export function sortAndSlice (batch: ColumnBatch, keys: readonly SortKey[], limit: number | null, offset = 0): ColumnBatch {
  const order = keys.length === 0 ? null : sortOrder(batch, keys)
  const end = limit === null ? batch.length : Math.min(batch.length, offset + limit)
  const start = Math.min(offset, end)
  if (order === null) {
    if (start === 0 && end === batch.length) return batch
    const rows = new Uint32Array(end - start)
    for (let i = 0; i < rows.length; i++) rows[i] = start + i
    return gatherBatch(batch, rows)
  }
  return gatherBatch(batch, order.subarray(start, end))
}

/**
 * Bytes a string is counted for: two per UTF-16 unit (V8 keeps Latin-1 strings in one, but the
 * JSON answer and concatenations need them too) and its header.
 */
const STRING_HEADER_BYTES = 16
const dictBytesOf = new WeakMap<readonly string[], number>()

/** Bytes of a dictionary's strings; computed once per dictionary (they are not changed once built). */
export function dictBytes (dict: readonly string[]): number {
  let bytes = dictBytesOf.get(dict)
  if (bytes === undefined) {
    bytes = 0
    for (let i = 0; i < dict.length; i++) bytes += 2 * dict[i]!.length + STRING_HEADER_BYTES
    dictBytesOf.set(dict, bytes)
  }
  return bytes
}

/** Approximate bytes of a vector, for memory budgets (strings by their length). */
export function vectorBytes (v: ColumnVector): number {
  switch (v.tag) {
    case 'num': return v.values.byteLength
    case 'str': {
      // A gathered vector keeps its source's whole dictionary: count the strings its rows can
      // reach, at the dictionary's mean size, when they are fewer than the dictionary.
      const all = dictBytes(v.dict)
      const reached = v.dict.length === 0 ? 0 : Math.min(all, v.codes.length * (all / v.dict.length))
      return v.codes.byteLength + reached
    }
    case 'vec': return v.values.byteLength + v.valid.byteLength
    case 'any': return v.values.length * 64
  }
}

/** Approximate bytes of a batch, for memory budgets. */
export function batchBytes (batch: ColumnBatch): number {
  let bytes = 0
  for (const v of batch.columns.values()) bytes += vectorBytes(v)
  return bytes
}

/**
 * Collects rows, keeping at most the first `n` under the sort keys (all rows when n is null).
 * Buffered rows are compacted back to n whenever they reach 2n, so memory stays O(n) whatever
 * the input size.
 */
export class TopNBuffer {
  private batches: ColumnBatch[] = []
  private rows = 0
  /** batchBytes of what `batches` holds, kept as they come (not summed again on every push). */
  private bytes = 0
  constructor (private readonly keys: readonly SortKey[], private readonly n: number | null, private readonly budget?: MemoryBudget) {}

  /** True when no more input can change the result (a LIMIT without ORDER BY is full). */
  get full (): boolean { return this.n !== null && this.keys.length === 0 && this.rows >= this.n }

  push (batch: ColumnBatch): void {
    if (batch.length === 0 || this.full) return
    this.batches.push(batch)
    this.rows += batch.length
    this.bytes += batchBytes(batch)
    if (this.n !== null && this.rows >= Math.max(2 * this.n, 4096)) this.compact()
    this.budget?.set(this, this.bytes)
  }

  private compact (): void {
    const all = sortAndSlice(concatBatches(this.batches), this.keys, this.n)
    this.batches = [all]
    this.rows = all.length
    this.bytes = batchBytes(all)
  }

  /** The rows kept, sorted. */
  result (): ColumnBatch {
    const out = sortAndSlice(concatBatches(this.batches), this.keys, this.n)
    this.budget?.release(this)
    return out
  }
}
