/**
 * The first segment format and the Arrow encoding both formats share. A first-format segment is
 * one Arrow IPC file (file format, one record batch) holding the space's columns (all nullable
 * here: tombstones have only an id) plus two hidden columns, `$version` (float64: the HLC, exact
 * below 2^53) and `$deleted` (bool); `$` cannot start a column name, so the hidden columns never
 * collide with a space's own. Stores no longer write it (segment-file.ts writes the disk-resident
 * format); `Segment` decodes one whole, for recovery to rewrite it (recovery.ts migrateSegments)
 * and for tests comparing the formats. The column builders (buildColumn) and decoders
 * (decodeColumn, decodeIds, fromArrow) here serve both.
 */
import {
  Bool, Data, DateUnit, Field, FixedSizeList, Float32, Float64, RecordBatch, Schema, Struct, Table, Utf8,
  makeData, tableFromIPC, tableToIPC, vectorFromArray, type Vector
} from 'apache-arrow'
import { shareVector, type ColumnVector, type StrVector, type ValueType } from '../columnar/index.js'
import { arrowType, listElement, newRow, vectorDim, type ColumnType, type Row, type ScalarType, type SpaceSchema } from '../schema/index.js'
import type { VersionedRecord } from './types.js'

export const VERSION_COLUMN = '$version'
export const DELETED_COLUMN = '$deleted'
export const FORMAT_KEY = 'shoal.segment'
const FORMAT = '1'
const DAY_MS = 86_400_000
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER)
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER)

/** A segment file listed in the manifest is unreadable. Never skipped: it would lose data. */
export class SegmentCorruptError extends Error {
  override name = 'SegmentCorruptError'
  constructor (readonly path: string, reason: string, options?: { cause?: unknown }) {
    super(`segment ${path} is corrupt: ${reason}`, options)
  }
}

export function segmentFileName (id: number): string { return `seg-${String(id).padStart(8, '0')}.arrow` }

// ---------------------------------------------------------------------------------------------
// Writing

function nullBitmap (values: readonly unknown[]): { bitmap: Uint8Array | undefined, nulls: number } {
  let nulls = 0
  const bitmap = new Uint8Array((values.length + 7) >> 3)
  for (let i = 0; i < values.length; i++) {
    if (values[i] === null || values[i] === undefined) nulls++
    else bitmap[i >> 3]! |= 1 << (i & 7)
  }
  return { bitmap: nulls === 0 ? undefined : bitmap, nulls }
}

function listValueToArrow (elem: ScalarType, v: unknown): unknown {
  switch (elem) {
    case 'int64': return typeof v === 'bigint' ? v : BigInt(v as number)
    case 'date': return (v as number) * DAY_MS
    default: return v
  }
}

/** One column of Arrow data from in-memory values (schema/index.ts form); NULL for null/undefined. */
export function buildColumn (type: ColumnType, values: readonly unknown[]): Data {
  const n = values.length
  const t = arrowType(type)
  const dim = vectorDim(type)
  const elem = listElement(type)
  if (elem !== undefined) {
    const converted = values.map(v => v === null || v === undefined ? null : (v as unknown[]).map(x => listValueToArrow(elem, x)))
    const vec = vectorFromArray(converted, t)
    if (vec.data.length !== 1) throw new Error(`list column built in ${vec.data.length} chunks`)
    return vec.data[0]!
  }
  const { bitmap, nulls } = nullBitmap(values)
  const base = { type: t, length: n, nullCount: nulls, nullBitmap: bitmap }
  if (dim !== undefined) {
    const flat = new Float32Array(n * dim)
    for (let i = 0; i < n; i++) {
      const v = values[i] as ArrayLike<number> | null | undefined
      if (v !== null && v !== undefined) for (let j = 0; j < dim; j++) flat[i * dim + j] = v[j]!
    }
    const child = makeData({ type: new Float32(), length: n * dim, nullCount: 0, data: flat })
    return makeData({ ...base, type: t as FixedSizeList, child })
  }
  switch (type as ScalarType) {
    case 'bool': {
      const bits = new Uint8Array((n + 7) >> 3)
      for (let i = 0; i < n; i++) if (values[i] === true) bits[i >> 3]! |= 1 << (i & 7)
      return makeData({ ...base, type: new Bool(), data: bits })
    }
    case 'int32':
    case 'date': {
      const a = new Int32Array(n)
      for (let i = 0; i < n; i++) { const v = values[i]; if (typeof v === 'number') a[i] = v }
      return makeData({ ...base, data: a } as never)
    }
    case 'int64':
    case 'timestamp': {
      // Safe integers go in as their two little-endian 32-bit halves: no BigInt per row.
      const a = new BigInt64Array(n)
      const lo = new Uint32Array(a.buffer)
      const hi = new Int32Array(a.buffer)
      for (let i = 0; i < n; i++) {
        const v = values[i]
        if (typeof v === 'number') {
          const h = Math.floor(v / 4294967296)
          lo[2 * i] = v - h * 4294967296
          hi[2 * i + 1] = h
        } else if (typeof v === 'bigint') {
          a[i] = v
        }
      }
      return makeData({ ...base, data: a } as never)
    }
    case 'float32':
    case 'float64': {
      const a = type === 'float32' ? new Float32Array(n) : new Float64Array(n)
      for (let i = 0; i < n; i++) { const v = values[i]; if (typeof v === 'number') a[i] = v }
      return makeData({ ...base, data: a } as never)
    }
    case 'utf8': {
      let total = 0
      for (let i = 0; i < n; i++) { const v = values[i]; if (typeof v === 'string') total += Buffer.byteLength(v) }
      const bytes = Buffer.allocUnsafe(total)
      const offsets = new Int32Array(n + 1)
      let o = 0
      for (let i = 0; i < n; i++) {
        const v = values[i]
        if (typeof v === 'string') o += bytes.write(v, o)
        offsets[i + 1] = o
      }
      return makeData({ ...base, type: new Utf8(), valueOffsets: offsets, data: bytes })
    }
  }
  throw new Error(`no segment encoding for column type ${type}`)
}

/** Encodes records (one per id, tombstones included) as an Arrow IPC file. */
export function encodeSegment (schema: SpaceSchema, records: readonly VersionedRecord[]): Uint8Array {
  const n = records.length
  const fields: Field[] = []
  const children: Data[] = []
  const column = new Array<unknown>(n)
  for (const c of schema) {
    for (let i = 0; i < n; i++) {
      const r = records[i]!
      column[i] = c.name === 'id' ? r.id : r.row === null ? null : r.row[c.name]
    }
    fields.push(new Field(c.name, arrowType(c.type), c.name !== 'id'))
    children.push(buildColumn(c.type, column))
  }
  const versions = new Float64Array(n)
  const deleted = new Uint8Array((n + 7) >> 3)
  for (let i = 0; i < n; i++) {
    const r = records[i]!
    versions[i] = r.version
    if (r.deleted) deleted[i >> 3]! |= 1 << (i & 7)
  }
  fields.push(new Field(VERSION_COLUMN, new Float64(), false), new Field(DELETED_COLUMN, new Bool(), false))
  children.push(makeData({ type: new Float64(), length: n, nullCount: 0, data: versions }))
  children.push(makeData({ type: new Bool(), length: n, nullCount: 0, data: deleted }))
  const arrowSchema = new Schema(fields, new Map([[FORMAT_KEY, FORMAT]]))
  const batch = new RecordBatch(arrowSchema, makeData({ type: new Struct(fields), length: n, nullCount: 0, children }))
  return tableToIPC(new Table([batch]), 'file')
}

// ---------------------------------------------------------------------------------------------
// Reading

function fromArrowScalar (elem: ScalarType, v: unknown): unknown {
  if (v === null || v === undefined) return null
  switch (elem) {
    case 'int64':
      if (typeof v === 'bigint') return v >= SAFE_MIN && v <= SAFE_MAX ? Number(v) : v
      return v
    case 'timestamp':
      return typeof v === 'bigint' ? Number(v) : v
    case 'date':
      return Math.round(Number(v) / DAY_MS)
    default:
      return v
  }
}

/** Converts a value read from Arrow to the in-memory representation (schema/index.ts). */
export function fromArrow (type: ColumnType, v: unknown): unknown {
  if (v === null || v === undefined) return null
  if (vectorDim(type) !== undefined) return Array.from((v as Vector).toArray() as Float32Array)
  const elem = listElement(type)
  if (elem !== undefined) {
    const out: unknown[] = []
    for (const x of v as Vector) out.push(fromArrowScalar(elem, x))
    return out
  }
  return fromArrowScalar(type as ScalarType, v)
}

export interface SegmentMeta {
  id: number
  file: string
  rows: number
  bytes: number
  crc32: number
}

/**
 * A first-format segment decoded whole: its table and its per-row ids, versions and deleted
 * flags. What recovery reads to rewrite it in the disk-resident format (record), and what tests
 * compare that format's reader with (column).
 */
export class Segment {
  readonly rows: number
  readonly ids: string[]
  readonly versions: Float64Array
  readonly deleted: Uint8Array
  private readonly columns = new Map<string, Vector>()
  /**
   * Columns already decoded to the columnar form, by name (see `column`). Memory: on top of the
   * Arrow table, which stays (record() reads it): 8 bytes a row for a numeric column, 4 a row
   * plus one string per distinct value for utf8 and for the ids, nothing for vector<N> (a view of
   * the Arrow buffer), one array per row for list<T>; and a Float64Array of NaN (8 bytes a row)
   * for a column the file lacks.
   */
  private readonly decoded = new Map<string, ColumnVector>()

  constructor (readonly meta: SegmentMeta, readonly path: string, table: Table) {
    this.rows = table.numRows
    if (this.rows !== meta.rows) throw new SegmentCorruptError(path, `holds ${this.rows} rows, the manifest says ${meta.rows}`)
    const idCol = table.getChild('id')
    const vCol = table.getChild(VERSION_COLUMN)
    const dCol = table.getChild(DELETED_COLUMN)
    if (idCol === null || vCol === null || dCol === null) throw new SegmentCorruptError(path, 'missing the id, $version or $deleted column')
    // Straight from the Arrow buffers (the iterators' per-value visitor is several times slower,
    // and a flush reads back every segment it writes).
    this.ids = decodeIds(idCol.data as Data[], this.rows, path)
    const versions = decodeColumn('float64', vCol as Vector, this.rows, path)
    const deleted = decodeColumn('bool', dCol as Vector, this.rows, path)
    if (versions.tag !== 'num' || deleted.tag !== 'num') throw new SegmentCorruptError(path, 'unreadable $version or $deleted column')
    this.versions = versions.values
    this.deleted = new Uint8Array(this.rows)
    for (let i = 0; i < this.rows; i++) {
      if (Number.isNaN(this.versions[i]!)) throw new SegmentCorruptError(path, `row ${i} has no version`)
      if (deleted.values[i] === 1) this.deleted[i] = 1
    }
    for (const f of table.schema.fields) {
      if (f.name === VERSION_COLUMN || f.name === DELETED_COLUMN) continue
      this.columns.set(f.name, table.getChild(f.name)!)
    }
  }

  static decode (meta: SegmentMeta, path: string, bytes: Uint8Array): Segment {
    let table: Table
    try {
      table = tableFromIPC(bytes)
    } catch (err) {
      throw new SegmentCorruptError(path, `not a readable Arrow IPC file: ${(err as Error).message}`, { cause: err })
    }
    if (table.schema.metadata.get(FORMAT_KEY) !== FORMAT) throw new SegmentCorruptError(path, `not a shoal segment (format ${String(table.schema.metadata.get(FORMAT_KEY))})`)
    return new Segment(meta, path, table)
  }

  get id (): number { return this.meta.id }

  /**
   * Column `name` over every row of the file (dead rows and tombstones included, NULL in the
   * latter), in the columnar form, read as `type` (the schema's type for it; 'null' when the
   * schema has no such column). Decoded from the Arrow buffers on the first call and cached: the
   * file is immutable, so later calls return the same vector object. A column the file lacks (added
   * to the schema after it was written) reads as all NULL. Callers must not write into it.
   */
  column (name: string, type: ValueType): ColumnVector {
    const hit = this.decoded.get(name)
    if (hit !== undefined && hit.type === type) return hit
    // Kept in shared memory: query fragments may run on worker threads over it without a copy.
    const v = shareVector(name === 'id' && type === 'utf8' ? this.idVector() : decodeColumn(type, this.columns.get(name), this.rows, this.path))
    this.decoded.set(name, v)
    return v
  }

  private idVector (): ColumnVector {
    // Ids are unique within a segment: the dictionary is the id array itself, code i for row i.
    const codes = new Int32Array(this.rows)
    for (let i = 0; i < this.rows; i++) codes[i] = i
    return { tag: 'str', type: 'utf8', codes, dict: this.ids }
  }

  /** The record at `row`, its row shaped by `schema` (columns the file lacks read as null). */
  record (row: number, schema: SpaceSchema): VersionedRecord {
    const id = this.ids[row]!
    const version = this.versions[row]!
    if (this.deleted[row] === 1) return { id, version, deleted: true, row: null }
    const out: Row = newRow()
    for (const c of schema) {
      if (c.name === 'id') { out.id = id; continue }
      const vec = this.columns.get(c.name)
      out[c.name] = vec === undefined ? null : fromArrow(c.type, vec.get(row))
    }
    return { id, version, deleted: false, row: out }
  }
}

// ---------------------------------------------------------------------------------------------
// Columnar decoding (straight from the Arrow buffers; Vector.get per row is far too slow)

/** The id column as strings, one per row; a NULL or non-utf8 id makes the file corrupt. */
export function decodeIds (chunks: Data[], rows: number, path: string): string[] {
  const ids = new Array<string>(rows)
  let i = 0
  for (const d of chunks) {
    const offsets = d.valueOffsets as unknown
    const bytes = d.values as unknown
    if (!(offsets instanceof Int32Array) || !(bytes instanceof Uint8Array)) throw new SegmentCorruptError(path, `the id column is stored as ${String(d.type)}, not utf8`)
    if (hasNulls(d)) throw new SegmentCorruptError(path, 'a row has no id')
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let k = 0; k < d.length; k++) ids[i++] = buf.toString('utf8', offsets[k]!, offsets[k + 1]!)
  }
  if (i !== rows) throw new SegmentCorruptError(path, `the id column holds ${i} rows, the file ${rows}`)
  return ids
}

/** An all-NULL vector of `type`, `n` rows long. */
export function nullVector (type: ValueType, n: number): ColumnVector {
  if (type === 'utf8') return { tag: 'str', type, codes: new Int32Array(n).fill(-1), dict: [] }
  if (type !== 'null') {
    const dim = vectorDim(type)
    if (dim !== undefined) return { tag: 'vec', type, dim, values: new Float32Array(n * dim), valid: new Uint8Array(n) }
    if (listElement(type) !== undefined) return { tag: 'any', type, values: new Array<unknown>(n).fill(null) }
  }
  return { tag: 'num', type, values: new Float64Array(n).fill(NaN) }
}

/** Whether a chunk has NULLs to look at (its bitmap counts rows from `data.offset`). */
function hasNulls (d: Data): boolean {
  return d.nullCount > 0 && d.nullBitmap !== undefined && d.nullBitmap.length > 0
}

/** Sets out[base + i] = NaN for every NULL row i of chunk `d`. */
function applyNulls (d: Data, out: Float64Array, base: number): void {
  if (!hasNulls(d)) return
  const bits = d.nullBitmap!
  const off = d.offset
  for (let i = 0; i < d.length; i++) {
    const j = off + i
    if ((bits[j >> 3]! & (1 << (j & 7))) === 0) out[base + i] = NaN
  }
}

/** A column's Arrow data (`vec`, `rows` long; undefined: the file lacks it) in the columnar form, as `type`. */
/**
 * `alloc` gives the shared memory the numbers or codes are decoded into (default: new memory); it
 * may be recycled, with old contents: every element is written.
 */
export function decodeColumn (type: ValueType, vec: Vector | undefined, rows: number, path: string, alloc: (bytes: number) => SharedArrayBuffer = newShared): ColumnVector {
  if (vec === undefined || type === 'null') return nullVector(type, rows)
  if (vec.length !== rows) throw new SegmentCorruptError(path, `a column holds ${vec.length} rows, the file ${rows}`)
  const chunks = vec.data as Data[]
  if (type === 'utf8') return decodeUtf8(chunks, rows, alloc)
  const dim = vectorDim(type)
  if (dim !== undefined) return decodeFloatList(type, dim, chunks, rows)
  if (listElement(type) !== undefined) {
    const out = new Array<unknown>(rows)
    for (let i = 0; i < rows; i++) out[i] = fromArrow(type, vec.get(i))
    return { tag: 'any', type, values: out }
  }
  // In shared memory from the start: query workers read the cached column as it is (shareVector
  // then has nothing to copy).
  const only = chunks.length === 1 ? chunks[0]! : undefined
  if (only !== undefined && only.values instanceof Float64Array && only.length === rows && !hasNulls(only)) {
    // One chunk of float64 without NULLs: share the Arrow buffer itself, no copy.
    const values = only.values
    return { tag: 'num', type, values: values.length === rows ? values : values.subarray(0, rows), nulls: 0 }
  }
  const out = new Float64Array(alloc(rows * 8))
  let base = 0
  // What the loops over this vector may rely on (NumVector): its NULLs, and whether every value
  // came from 32-bit integers (or bits).
  let nulls = 0
  let int32 = true
  for (const d of chunks) {
    const n = d.length
    const values = d.values as unknown
    const unit = (d.type as { unit?: unknown }).unit
    if (type === 'bool') {
      const bits = values as Uint8Array
      const off = d.offset
      for (let i = 0; i < n; i++) { const j = off + i; out[base + i] = (bits[j >> 3]! >> (j & 7)) & 1 }
    } else if (type === 'date' && unit !== DateUnit.DAY) {
      int32 = false
      // DateMillisecond (not what encodeSegment writes, but a valid Arrow date): ms → days.
      readInt64(values, n, out, base)
      for (let i = 0; i < n; i++) out[base + i] = Math.round(out[base + i]! / DAY_MS)
    } else if (values instanceof BigInt64Array || ((type === 'int64' || type === 'timestamp') && values instanceof Int32Array && values.length === 2 * n)) {
      readInt64(values, n, out, base)
      int32 = false
    } else if (values instanceof Int32Array || values instanceof Float32Array || values instanceof Float64Array) {
      if (!(values instanceof Int32Array)) int32 = false
      // TypedArray.set converts element types natively: int32 to float64 about 2x faster than a
      // loop in JavaScript (0.55 against 1.0 ns a row), and no megamorphic read of the source.
      out.set(values.subarray(0, n), base)
    } else {
      throw new Error(`no columnar decoding of a segment column of type ${type} (Arrow ${String(d.type)})`)
    }
    if (hasNulls(d)) nulls += d.nullCount
    applyNulls(d, out, base)
    base += n
  }
  return int32 ? { tag: 'num', type, values: out, nulls, int32 } : { tag: 'num', type, values: out, nulls }
}

/**
 * int64 (BigInt64Array, or its little-endian 32-bit halves) to float64: hi·2^32 + lo is exact
 * below 2^53 and, beyond, rounded once to nearest like Number(bigint), without a BigInt per row.
 */
function readInt64 (values: unknown, n: number, out: Float64Array, base: number): void {
  const a = values as BigInt64Array | Int32Array
  const words = new Int32Array(a.buffer, a.byteOffset, n * 2)
  const lo = new Uint32Array(a.buffer, a.byteOffset, n * 2)
  for (let i = 0; i < n; i++) out[base + i] = words[2 * i + 1]! * 4294967296 + lo[2 * i]!
}

function decodeFloatList (type: ValueType, dim: number, chunks: Data[], rows: number): ColumnVector {
  const valid = new Uint8Array(rows)
  const views: Float32Array[] = []
  let base = 0
  for (const d of chunks) {
    const child = d.children[0]
    const n = d.length
    const f = child?.values as unknown
    if (!(f instanceof Float32Array) || f.length < n * dim) throw new Error(`no columnar decoding of a segment column of type ${String(type)} (Arrow ${String(d.type)})`)
    views.push(f.subarray(0, n * dim))
    if (hasNulls(d)) {
      const bits = d.nullBitmap!
      const off = d.offset
      for (let i = 0; i < n; i++) { const j = off + i; valid[base + i] = (bits[j >> 3]! >> (j & 7)) & 1 }
    } else {
      valid.fill(1, base, base + n)
    }
    base += n
  }
  // One chunk (every segment encodeSegment writes): a view of the Arrow buffer, no copy.
  let values: Float32Array
  if (views.length === 1) {
    values = views[0]!
  } else {
    values = new Float32Array(rows * dim)
    let o = 0
    for (const v of views) { values.set(v, o); o += v.length }
  }
  return { tag: 'vec', type, dim, values, valid }
}

const newShared = (bytes: number): SharedArrayBuffer => new SharedArrayBuffer(bytes)

/**
 * One utf8 batch (Arrow data, one chunk) in the dictionary form the executor uses (codes, -1 for
 * NULL; the distinct strings in the order first seen), or undefined when it holds more than
 * `maxDistinct` distinct values: what a segment writer stores beside the column so that a scan
 * reads codes instead of decoding the strings (segment-file-format.ts, "utf8 codes"). The same
 * decoding as a read of the column, so both give equal strings for equal codes.
 */
export function utf8Dictionary (data: Data, maxDistinct: number): { codes: Int32Array, dict: readonly string[] } | undefined {
  const v = decodeUtf8([data], data.length, bytes => new ArrayBuffer(bytes), maxDistinct)
  return v === undefined ? undefined : { codes: v.codes, dict: v.dict }
}

/**
 * utf8 to a dictionary: the distinct byte strings are found by hashing the bytes in place (an
 * open-addressing table over offsets, one per chunk), so each distinct value is decoded to a JS
 * string once, not once per row. The table's hot loop (scanUtf8) is a small function of its own
 * and leaves the table only for a value it has not seen: as one large function with the inserts
 * inline, V8 ran it about 3x slower (20 ns a row of a short value against 7.5, measured on 262,144
 * rows of 50 distinct values; a cold GROUP BY over 4 M rows spent most of its main thread here).
 */
function decodeUtf8 (chunks: Data[], rows: number, alloc: (bytes: number) => ArrayBufferLike): StrVector
function decodeUtf8 (chunks: Data[], rows: number, alloc: (bytes: number) => ArrayBufferLike, maxDistinct: number): StrVector | undefined
function decodeUtf8 (chunks: Data[], rows: number, alloc: (bytes: number) => ArrayBufferLike, maxDistinct = Infinity): StrVector | undefined {
  const codes = new Int32Array(alloc(rows * 4))
  const dict: string[] = []
  const byString = new Map<string, number>()
  // Within one chunk the table tells distinct byte strings apart, and distinct well-formed UTF-8
  // decodes to distinct strings: only a string with U+FFFD in it (what any malformed sequence
  // decodes to) can equal another, and only chunks after the first can repeat a value. So one
  // chunk (what segments hold) needs the map of strings for those alone: a column of mostly
  // distinct values spent 60 % of its decoding in that map (565 ns a row).
  const everyString = chunks.length > 1
  let base = 0
  for (const d of chunks) {
    const n = d.length
    const offsets = d.valueOffsets as unknown
    const bytes = d.values as unknown
    if (!(offsets instanceof Int32Array) || !(bytes instanceof Uint8Array)) throw new Error(`no columnar decoding of a utf8 segment column stored as ${String(d.type)}`)
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const nulls = hasNulls(d) ? d.nullBitmap! : undefined
    const table = newUtf8Table()
    for (let i = scanUtf8(offsets, bytes, nulls, d.offset, codes, base, 0, n, table); i < n; i = scanUtf8(offsets, bytes, nulls, d.offset, codes, base, i + 1, n, table)) {
      // Row i holds a value this chunk's table has not seen (distinct byte strings that decode
      // alike share a code).
      const s = offsets[i]!
      const e = offsets[i + 1]!
      const str = buf.toString('utf8', s, e)
      let code: number
      if (everyString || str.includes('\uFFFD')) {
        code = byString.get(str) ?? -1
        if (code < 0) { code = dict.length; dict.push(str); byString.set(str, code) }
      } else {
        code = dict.length
        dict.push(str)
      }
      if (dict.length > maxDistinct) return undefined
      insertUtf8(table, s, e - s, code)
      codes[base + i] = code
    }
    base += n
  }
  return { tag: 'str', type: 'utf8', codes, dict }
}

/** A chunk's distinct byte strings: slots hold entry numbers + 1 (0 = empty); entries say where their bytes are, their hash and code. */
interface Utf8Table {
  mask: number
  slots: Int32Array
  start: Int32Array
  len: Int32Array
  hash: Int32Array
  code: Int32Array
  entries: number
  /** Set by scanUtf8 when it stops at an unseen value: its hash and the free slot it goes in. */
  missHash: number
  missSlot: number
}

function newUtf8Table (): Utf8Table {
  return { mask: 1023, slots: new Int32Array(1024), start: new Int32Array(256), len: new Int32Array(256), hash: new Int32Array(256), code: new Int32Array(256), entries: 0, missHash: 0, missSlot: 0 }
}

/** The hash of bytes [s, e), over 4 bytes long (scanUtf8 hashes shorter ones itself), 4 bytes a step. */
function hashLongUtf8 (bytes: Uint8Array, s: number, e: number): number {
  let h = 0x811c9dc5 ^ (e - s)
  let p = s
  for (; p + 4 <= e; p += 4) {
    h = Math.imul(h ^ (bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24)), 0x9e3779b1)
    h = (h << 13) | (h >>> 19)
  }
  for (; p < e; p++) h = Math.imul(h ^ bytes[p]!, 0x01000193)
  h ^= h >>> 15
  h = Math.imul(h, 0x85ebca6b)
  return h ^ (h >>> 13)
}

/**
 * Codes rows [i, n) from the table until one holds a value it has not seen: returns that row
 * (its hash and free slot in table.missHash / missSlot), or n. NULL rows get -1.
 */
function scanUtf8 (offsets: Int32Array, bytes: Uint8Array, nulls: Uint8Array | undefined, off: number, codes: Int32Array, base: number, i: number, n: number, t: Utf8Table): number {
  const { slots, mask, start, len: lens, hash, code: entCode } = t
  for (; i < n; i++) {
    if (nulls !== undefined) { const j = off + i; if ((nulls[j >> 3]! & (1 << (j & 7))) === 0) { codes[base + i] = -1; continue } }
    const s = offsets[i]!
    const e = offsets[i + 1]!
    const len = e - s
    let h: number
    if (len <= 4) {
      // A bijection of the bytes packed into one int: with the length, equal hashes mean equal
      // bytes, so a match needs no comparison.
      let k = 0
      for (let p = s; p < e; p++) k = (k << 8) | bytes[p]!
      h = Math.imul(k ^ len, 0x9e3779b1)
      h ^= h >>> 16
    } else {
      h = hashLongUtf8(bytes, s, e)
    }
    let slot = h & mask
    let code = -1
    for (;;) {
      const ent = slots[slot]! - 1
      if (ent < 0) break
      if (hash[ent] === h && lens[ent] === len) {
        if (len <= 4) { code = entCode[ent]!; break }
        const t0 = start[ent]!
        let k = 0
        while (k < len && bytes[s + k] === bytes[t0 + k]) k++
        if (k === len) { code = entCode[ent]!; break }
      }
      slot = (slot + 1) & mask
    }
    if (code < 0) {
      t.missHash = h
      t.missSlot = slot
      return i
    }
    codes[base + i] = code
  }
  return n
}

/** Adds the value scanUtf8 stopped at (bytes at `s`, `len` long) with its code; doubles the table past half full. */
function insertUtf8 (t: Utf8Table, s: number, len: number, code: number): void {
  if (t.entries === t.start.length) {
    const grow = (a: Int32Array): Int32Array => { const b = new Int32Array(a.length * 2); b.set(a); return b }
    t.start = grow(t.start); t.len = grow(t.len); t.hash = grow(t.hash); t.code = grow(t.code)
  }
  const ent = t.entries++
  t.start[ent] = s
  t.len[ent] = len
  t.hash[ent] = t.missHash
  t.code[ent] = code
  t.slots[t.missSlot] = ent + 1
  if (t.entries * 2 > t.slots.length) {
    const cap = t.slots.length * 2
    t.mask = cap - 1
    t.slots = new Int32Array(cap)
    for (let x = 0; x < t.entries; x++) {
      let p = t.hash[x]! & t.mask
      while (t.slots[p] !== 0) p = (p + 1) & t.mask
      t.slots[p] = x + 1
    }
  }
}
