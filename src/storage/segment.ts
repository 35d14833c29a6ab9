/**
 * Immutable segment files: one Arrow IPC file (file format, one record batch) per flush or
 * compaction output, holding the space's columns (all nullable here: tombstones have only an id)
 * plus two hidden columns, `$version` (float64: the HLC, exact below 2^53) and `$deleted` (bool).
 * `$` cannot start a column name, so the hidden columns never collide with a space's own.
 *
 * In memory a segment keeps the decoded Arrow table, its ids, versions and deleted flags as plain
 * arrays, and a live-row bitmap: bit i is set while row i holds the newest version of its id.
 */
import {
  Bool, Data, Field, FixedSizeList, Float32, Float64, RecordBatch, Schema, Struct, Table, Utf8,
  makeData, tableFromIPC, tableToIPC, vectorFromArray, type Vector
} from 'apache-arrow'
import type { Hlc } from '../hlc/index.js'
import { arrowType, listElement, vectorDim, type ColumnType, type Row, type ScalarType, type SpaceSchema } from '../schema/index.js'
import type { VersionedRecord } from './types.js'

export const VERSION_COLUMN = '$version'
export const DELETED_COLUMN = '$deleted'
const FORMAT_KEY = 'shoal.segment'
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

function buildColumn (type: ColumnType, values: readonly unknown[]): Data {
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
      const a = new BigInt64Array(n)
      for (let i = 0; i < n; i++) {
        const v = values[i]
        if (typeof v === 'number') a[i] = BigInt(v)
        else if (typeof v === 'bigint') a[i] = v
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

/** One loaded segment: its table, its per-row ids/versions/deleted flags and its live bitmap. */
export class Segment {
  readonly rows: number
  readonly ids: string[]
  readonly versions: Float64Array
  readonly deleted: Uint8Array
  readonly live: Uint8Array
  liveCount = 0
  /** Deleted rows (tombstones) whose live bit is set. */
  liveTombstones = 0
  /** Oldest tombstone version in the file (Infinity if none): tells when a purge is due. */
  readonly oldestTombstone: Hlc
  private readonly columns = new Map<string, Vector>()

  constructor (readonly meta: SegmentMeta, readonly path: string, table: Table) {
    this.rows = table.numRows
    if (this.rows !== meta.rows) throw new SegmentCorruptError(path, `holds ${this.rows} rows, the manifest says ${meta.rows}`)
    const idCol = table.getChild('id')
    const vCol = table.getChild(VERSION_COLUMN)
    const dCol = table.getChild(DELETED_COLUMN)
    if (idCol === null || vCol === null || dCol === null) throw new SegmentCorruptError(path, 'missing the id, $version or $deleted column')
    this.ids = new Array<string>(this.rows)
    this.versions = new Float64Array(this.rows)
    this.deleted = new Uint8Array(this.rows)
    let i = 0
    for (const id of idCol as Vector<Utf8>) {
      if (typeof id !== 'string') throw new SegmentCorruptError(path, `row ${i} has no id`)
      this.ids[i++] = id
    }
    i = 0
    for (const v of vCol as Vector<Float64>) this.versions[i++] = v as number
    i = 0
    let oldest = Infinity
    for (const d of dCol as Vector<Bool>) {
      if (d === true) {
        this.deleted[i] = 1
        if (this.versions[i]! < oldest) oldest = this.versions[i]!
      }
      i++
    }
    this.oldestTombstone = oldest
    for (const f of table.schema.fields) {
      if (f.name === VERSION_COLUMN || f.name === DELETED_COLUMN) continue
      this.columns.set(f.name, table.getChild(f.name)!)
    }
    this.live = new Uint8Array((this.rows + 7) >> 3)
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
  isLive (row: number): boolean { return (this.live[row >> 3]! & (1 << (row & 7))) !== 0 }
  setLive (row: number): void {
    if (this.isLive(row)) return
    this.live[row >> 3]! |= 1 << (row & 7)
    this.liveCount++
    if (this.deleted[row] === 1) this.liveTombstones++
  }

  clearLive (row: number): void {
    if (!this.isLive(row)) return
    this.live[row >> 3]! &= ~(1 << (row & 7))
    this.liveCount--
    if (this.deleted[row] === 1) this.liveTombstones--
  }

  /** The record at `row`, its row shaped by `schema` (columns the file lacks read as null). */
  record (row: number, schema: SpaceSchema): VersionedRecord {
    const id = this.ids[row]!
    const version = this.versions[row]!
    if (this.deleted[row] === 1) return { id, version, deleted: true, row: null }
    const out: Row = Object.create(null)
    for (const c of schema) {
      if (c.name === 'id') { out.id = id; continue }
      const vec = this.columns.get(c.name)
      out[c.name] = vec === undefined ? null : fromArrow(c.type, vec.get(row))
    }
    return { id, version, deleted: false, row: out }
  }
}
