/**
 * The columns of one record batch of the streaming segment writer (segment-file.ts
 * SegmentFileWriter), gathered from decoded batches of other segments (a compaction's inputs):
 * each output row copies the Arrow bytes of one row of a source batch (typed-array words, UTF-8
 * bytes, validity bits), without decoding a value to JS or making an object per row.
 *
 * What is built is, byte for byte, what buildColumn builds from the same rows' values as
 * SegmentFile.records reads them (fromArrow), and each zone is what zonesByBatch gives for those
 * values: a compaction writes the files the record path wrote. Lists, and a column whose type in
 * a source file is not the schema's, still go through the values (fromArrow, buildColumn): rare,
 * and their Arrow layout is the builder's.
 *
 * Each gather is a generator yielding every GATHER_STEP rows, so the writer can let the event
 * loop in between (a column of 65,536 rows took up to ~10 ms in one stretch).
 */
import { Bool, Float32, Float64, makeData, makeVector, type Data, type Vector } from 'apache-arrow'
import { arrowType, listElement, vectorDim, type ColumnType } from '../schema/index.js'
import { compareUtf16Order } from './key-index.js'
import { buildColumn, fromArrow } from './segment.js'
import { ZONE_STRING_MAX, zonesByBatch, type Zone } from './segment-file-format.js'

/** A column of a source batch: its Arrow data (offset 0, one chunk) and its type in the source file. */
export interface SourceColumn {
  readonly type: ColumnType
  readonly data: Data
}

/**
 * Where the rows of one output batch come from: row i is row `row[i]` of source `slot[i]`, a
 * tombstone (NULL in every column but the id) when `deleted[i]` is 1.
 */
export interface GatherRows {
  readonly length: number
  readonly slot: Uint32Array
  readonly row: Uint32Array
  readonly deleted: Uint8Array
}

export interface GatheredColumn {
  data: Data
  zone: Zone
}

/** Rows gathered between two yields: about 1-3 ms for the widest column types. */
export const GATHER_STEP = 16_384

/**
 * Column `type` of `rows`, from `sources` (by slot; undefined: that source file lacks the column,
 * which reads as NULL), as steps.
 */
export function gatherColumn (type: ColumnType, sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const same = sources.every(s => s === undefined || s.type === type)
  if (!same || listElement(type) !== undefined) return gatherValues(type, sources, rows)
  if (vectorDim(type) !== undefined) return gatherVectors(type, vectorDim(type)!, sources, rows)
  switch (type) {
    case 'utf8': return gatherUtf8(sources, rows)
    case 'bool': return gatherBool(sources, rows)
    case 'int32': case 'date': case 'float32': return gatherWords(type, 1, sources, rows)
    case 'int64': case 'timestamp': case 'float64': return gatherWords(type, 2, sources, rows)
  }
  throw new Error(`no gather for column type ${String(type)}`)
}

/** The validity bits of each source (undefined: no NULL in it, or no source). */
function validity (sources: ReadonlyArray<SourceColumn | undefined>): Array<Uint8Array | undefined> {
  return sources.map(s => s !== undefined && s.data.nullCount > 0 ? s.data.nullBitmap : undefined)
}

/** Whether output row i has a value: not a tombstone, its source has the column and a value at its row. */
function present (i: number, rows: GatherRows, has: ReadonlyArray<unknown>, bits: ReadonlyArray<Uint8Array | undefined>): boolean {
  if (rows.deleted[i] === 1) return false
  const s = rows.slot[i]!
  if (has[s] === undefined) return false
  const b = bits[s]
  if (b === undefined) return true
  const r = rows.row[i]!
  return (b[r >> 3]! & (1 << (r & 7))) !== 0
}

/**
 * Fixed-width numbers as 32-bit words (`words` a value): the bits move unchanged (a float copy
 * could rewrite a NaN's payload; floats are finite anyway). Zone values as zonesByBatch takes
 * them: int64 and timestamp as hi·2^32 + lo, rounded once like Number(bigint).
 */
function * gatherWords (type: ColumnType, words: 1 | 2, sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const m = rows.length
  const from = sources.map(s => s === undefined ? undefined : new Int32Array(s.data.values.buffer, s.data.values.byteOffset, words * s.data.length))
  const bits = validity(sources)
  const out = new Int32Array(words * m)
  const bitmap = new Uint8Array((m + 7) >> 3)
  const f32 = type === 'float32' ? new Float32Array(out.buffer) : undefined
  const f64 = type === 'float64' ? new Float64Array(out.buffer) : undefined
  const int64 = type === 'int64' || type === 'timestamp'
  let nulls = 0
  let lo = Infinity
  let hi = -Infinity
  for (let start = 0; start < m; start += GATHER_STEP) {
    const end = Math.min(m, start + GATHER_STEP)
    for (let i = start; i < end; i++) {
      if (!present(i, rows, from, bits)) { nulls++; continue }
      bitmap[i >> 3]! |= 1 << (i & 7)
      const src = from[rows.slot[i]!]!
      const r = rows.row[i]!
      let x: number
      if (words === 1) {
        out[i] = src[r]!
        x = f32 !== undefined ? f32[i]! : out[i]!
      } else {
        out[2 * i] = src[2 * r]!
        out[2 * i + 1] = src[2 * r + 1]!
        x = f64 !== undefined ? f64[i]! : int64 ? out[2 * i + 1]! * 4294967296 + (out[2 * i]! >>> 0) : NaN
      }
      if (x !== x) continue
      if (x < lo) lo = x
      if (x > hi) hi = x
    }
    if (end < m) yield
  }
  const data = f32 ?? f64 ?? (int64 ? new BigInt64Array(out.buffer) : out)
  return {
    data: makeData({ type: arrowType(type), length: m, nullCount: nulls, nullBitmap: nulls > 0 ? bitmap : undefined, data } as never),
    zone: numberZone(nulls, lo, hi)
  }
}

function * gatherBool (sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const m = rows.length
  const from = sources.map(s => s === undefined ? undefined : s.data.values as Uint8Array)
  const bits = validity(sources)
  const out = new Uint8Array((m + 7) >> 3)
  const bitmap = new Uint8Array((m + 7) >> 3)
  let nulls = 0
  let lo = Infinity
  let hi = -Infinity
  for (let start = 0; start < m; start += GATHER_STEP) {
    const end = Math.min(m, start + GATHER_STEP)
    for (let i = start; i < end; i++) {
      if (!present(i, rows, from, bits)) { nulls++; continue }
      bitmap[i >> 3]! |= 1 << (i & 7)
      const r = rows.row[i]!
      const x = (from[rows.slot[i]!]![r >> 3]! >> (r & 7)) & 1
      if (x === 1) out[i >> 3]! |= 1 << (i & 7)
      if (x < lo) lo = x
      if (x > hi) hi = x
    }
    if (end < m) yield
  }
  return {
    data: makeData({ type: new Bool(), length: m, nullCount: nulls, nullBitmap: nulls > 0 ? bitmap : undefined, data: out }),
    zone: numberZone(nulls, lo, hi)
  }
}

/** utf8: offsets and NULLs in one pass, then the bytes copied, with the zone kept as byte ranges of the output. */
function * gatherUtf8 (sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const m = rows.length
  const offs = sources.map(s => s === undefined ? undefined : s.data.valueOffsets as Int32Array)
  const bytes = sources.map(s => s === undefined ? undefined : s.data.values as Uint8Array)
  const bits = validity(sources)
  const offsets = new Int32Array(m + 1)
  const bitmap = new Uint8Array((m + 7) >> 3)
  let nulls = 0
  let total = 0
  for (let i = 0; i < m; i++) {
    if (present(i, rows, offs, bits)) {
      bitmap[i >> 3]! |= 1 << (i & 7)
      const o = offs[rows.slot[i]!]!
      const r = rows.row[i]!
      total += o[r + 1]! - o[r]!
      if (total > 0x7fffffff) throw new RangeError('a utf8 column of one batch holds more than 2^31 - 1 bytes, what Arrow\'s utf8 holds (use fewer batchRows)')
    } else {
      nulls++
    }
    offsets[i + 1] = total
  }
  yield
  const data = Buffer.allocUnsafe(total)
  // The zone's min and max, as byte ranges of `data` (-1: none yet).
  let loS = -1; let loE = -1; let hiS = -1; let hiE = -1
  for (let start = 0; start < m; start += GATHER_STEP) {
    const end = Math.min(m, start + GATHER_STEP)
    for (let i = start; i < end; i++) {
      if ((bitmap[i >> 3]! & (1 << (i & 7))) === 0) continue
      const s = rows.slot[i]!
      const o = offs[s]!
      const src = bytes[s]!
      const r = rows.row[i]!
      const a = o[r]!
      const len = o[r + 1]! - a
      const p = offsets[i]!
      // Short strings by a loop: a call to set() costs more than copying a few bytes.
      if (len <= 32) for (let k = 0; k < len; k++) data[p + k] = src[a + k]!
      else data.set(src.subarray(a, a + len), p)
      const e = p + len
      if (loS < 0 || compareUtf16Order(data, p, e, data, loS, loE) < 0) { loS = p; loE = e }
      if (hiS < 0 || compareUtf16Order(data, p, e, data, hiS, hiE) > 0) { hiS = p; hiE = e }
    }
    if (end < m) yield
  }
  const zone: Zone = { nulls }
  if (loS >= 0) {
    const lo = data.toString('utf8', loS, loE)
    const hi = data.toString('utf8', hiS, hiE)
    // As zonesByBatch: a prefix of the min is still a lower bound; a prefix of the max is not an upper bound.
    zone.min = lo.length > ZONE_STRING_MAX ? lo.slice(0, ZONE_STRING_MAX) : lo
    if (hi.length <= ZONE_STRING_MAX) zone.max = hi
  }
  return {
    data: makeData({ type: arrowType('utf8'), length: m, nullCount: nulls, nullBitmap: nulls > 0 ? bitmap : undefined, valueOffsets: offsets, data } as never),
    zone
  }
}

/** vector<N>: N float32 a row (moved as 32-bit words), zeros for a NULL row; the zone counts NULLs only. */
function * gatherVectors (type: ColumnType, dim: number, sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const m = rows.length
  const from = sources.map(s => {
    if (s === undefined) return undefined
    const f = s.data.children[0]?.values as Float32Array | undefined
    if (!(f instanceof Float32Array) || f.length < dim * s.data.length) throw new Error(`a ${type} source column of ${s.data.length} rows holds ${f?.length ?? 0} floats`)
    return new Int32Array(f.buffer, f.byteOffset, dim * s.data.length)
  })
  const bits = validity(sources)
  const out = new Int32Array(dim * m)
  const bitmap = new Uint8Array((m + 7) >> 3)
  let nulls = 0
  for (let start = 0; start < m; start += GATHER_STEP) {
    const end = Math.min(m, start + GATHER_STEP)
    for (let i = start; i < end; i++) {
      if (!present(i, rows, from, bits)) { nulls++; continue }
      bitmap[i >> 3]! |= 1 << (i & 7)
      const src = from[rows.slot[i]!]!
      const r = dim * rows.row[i]!
      for (let j = 0; j < dim; j++) out[dim * i + j] = src[r + j]!
    }
    if (end < m) yield
  }
  const child = makeData({ type: new Float32(), length: m * dim, nullCount: 0, data: new Float32Array(out.buffer) })
  return {
    data: makeData({ type: arrowType(type), length: m, nullCount: nulls, nullBitmap: nulls > 0 ? bitmap : undefined, child } as never),
    zone: { nulls }
  }
}

/** Through the values, as the record path did: fromArrow of each source row, then buildColumn and zonesByBatch. */
function * gatherValues (type: ColumnType, sources: ReadonlyArray<SourceColumn | undefined>, rows: GatherRows): Generator<undefined, GatheredColumn> {
  const m = rows.length
  const vecs: Array<Vector | undefined> = sources.map(s => s === undefined ? undefined : makeVector(s.data))
  const values = new Array<unknown>(m)
  for (let start = 0; start < m; start += GATHER_STEP) {
    const end = Math.min(m, start + GATHER_STEP)
    for (let i = start; i < end; i++) {
      const vec = rows.deleted[i] === 1 ? undefined : vecs[rows.slot[i]!]
      values[i] = vec === undefined ? null : fromArrow(type, vec.get(rows.row[i]!))
    }
    if (end < m) yield
  }
  yield
  const zone = zonesByBatch(type, values, new Uint32Array(m), m, 1)[0]!
  return { data: buildColumn(type, values), zone }
}

/** The hidden $version column of `versions` (no NULL) and its zone. */
export function versionColumn (versions: Float64Array): GatheredColumn {
  let lo = Infinity
  let hi = -Infinity
  for (let i = 0; i < versions.length; i++) {
    const x = versions[i]!
    if (x < lo) lo = x
    if (x > hi) hi = x
  }
  return { data: makeData({ type: new Float64(), length: versions.length, nullCount: 0, data: versions }), zone: numberZone(0, lo, hi) }
}

/** The hidden $deleted column of `deleted` (0 or 1 a row, no NULL) and its zone. */
export function deletedColumn (deleted: Uint8Array): GatheredColumn {
  const m = deleted.length
  const bits = new Uint8Array((m + 7) >> 3)
  let lo = Infinity
  let hi = -Infinity
  for (let i = 0; i < m; i++) {
    const x = deleted[i]!
    if (x === 1) bits[i >> 3]! |= 1 << (i & 7)
    if (x < lo) lo = x
    if (x > hi) hi = x
  }
  return { data: makeData({ type: new Bool(), length: m, nullCount: 0, data: bits }), zone: numberZone(0, lo, hi) }
}

/** A numeric zone as zonesByBatch makes it: min and max only when some value was seen. */
function numberZone (nulls: number, lo: number, hi: number): Zone {
  return lo <= hi ? { nulls, min: lo, max: hi } : { nulls }
}
