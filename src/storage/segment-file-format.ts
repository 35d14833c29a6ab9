/**
 * The files of a disk-resident segment (segment-file.ts): their names, the meta the manifest
 * lists, and the `.idx` sidecar's layout: its header and its batch
 * directory, encoded and decoded here. The directory says, per record batch of the `.arrow` file
 * and per column, where that column's Arrow buffers are in the file, their CRC-32 and a zone map,
 * so a reader rebuilds one column of one batch from one positional read without parsing any Arrow
 * metadata.
 *
 * Layout (little endian; offsets and lengths that may pass 4 GiB are float64, exact below 2^53):
 *
 *   header, HEADER_BYTES:
 *     0  magic "SHOALIDX"        8  u32 format version     12 u32 header bytes
 *     16 u32 batches             20 u32 columns            24 f64 rows
 *     32 f64 .arrow file bytes   40 u32 directory bytes    44 u32 directory CRC-32
 *     48 f64 key-index offset    56 f64 key-index bytes (0, 0: none)
 *     64 u32 batch rows (the writer's maximum)   68 u32 page bytes (format 2; 0: no page table)
 *     72 u32 CRC-32 of the page table (format 2; else 0)   76 u32 CRC-32 of bytes 0..76
 *   directory, right after the header:
 *     per column: u16 name length, name (utf8), u16 type length, type (a ColumnType), u8 nodes, u8 buffers
 *     per batch: f64 first row, u32 rows, f64 offset of its body in the .arrow file, then per column:
 *       nodes × (f64 length, f64 null count)        Arrow field nodes, depth first
 *       buffers × (f64 offset in the body, f64 length)   validity, offsets, data; then the child's
 *       u32 CRC-32 of the column's span (first buffer's start to last buffer's end, padding included)
 *       zone: u8 kind; 1: f64 min, f64 max (numbers); 2: u8 has-max, u32 n, n UTF-16 code units of
 *       the min, [u32 n, code units of the max] (utf8); 0: none (every row NULL, lists, vectors)
 *       format 3: u8 code width, 0 (none), 1 or 2; when not 0 (utf8 columns; format 4: number
 *       columns too): f64 offset of the column's codes block in the .idx, u32 its bytes, u32 its
 *       CRC-32, u32 distinct values
 *   the key-index section (key-index.ts).
 *   format 3: the utf8 codes blocks. A utf8 column of few distinct values in a batch (not the id)
 *     is stored twice: as Arrow utf8 in the .arrow file (what point gets, compactions and other
 *     Arrow readers use) and here as dictionary codes, what a scan reads instead (no string
 *     decoded a row: a column of 50 values decodes about 11x faster, and reads 1-2 bytes a row
 *     instead of 4 and its bytes). A block: rows × width bytes of codes (little endian; the
 *     width's all-ones value is NULL), zeros to a multiple of 4, (distinct + 1) u32 offsets, then
 *     the distinct values' UTF-8, each once. A file without codes is written as format 2.
 *   format 4: number codes blocks too. A number column (int32, int64, float32, float64, date,
 *     timestamp; not bool, not the hidden version column) of few distinct values in a batch, the
 *     same way: rows × width bytes of codes (all-ones NULL), zeros to a multiple of 8, then the
 *     distinct values as f64, each once, as the executor's columnar form has them (an int64 past
 *     2^53 rounded as it is when read from Arrow). A scan reads 1-2 bytes a row instead of 4-8.
 *     Written only when a file has such a column (else format 3 or 2, as before).
 *   format 2: the page table, last: u32 CRC-32 of each `page bytes` page of the .arrow file (the
 *     last page as long as what is left), so a point get reads and checks only the pages holding
 *     its row's values instead of its batch's whole column blocks (one CRC each).
 *
 * Everything decoded is validated: a wrong magic, version, CRC, a count or range out of bounds, a
 * buffer too short for its field's length, is a SegmentCorruptError naming the file (and the batch
 * and column when the fault is theirs).
 */
import { endianness } from 'node:os'
import { crc32 } from './crc32.js'
import { SegmentCorruptError, segmentFileName, type SegmentMeta } from './segment.js'
import { isColumnType, listElement, vectorDim, type ColumnType } from '../schema/index.js'
import type { CodedNumVector, NarrowStrVector, ValueType } from '../columnar/index.js'

export const INDEX_MAGIC = 'SHOALIDX'
// Codes blocks are read and written as typed arrays, which use the platform's byte order.
if (endianness() !== 'LE') throw new Error('shoal storage needs a little-endian platform')
/** The newest format this build writes (3 when a file has no number codes, 2 when it has no codes); it reads formats 1 (no page table) to 4. */
export const INDEX_FORMAT = 4
/** Page size of the page table (format 2): small enough that a point get reads little, large enough that the table is 0.1 % of the file. */
export const PAGE_BYTES = 4096
export const HEADER_BYTES = 80
/** Most field nodes and buffers one column has (list<utf8>: 2 nodes, 5 buffers). */
export const MAX_NODES = 2
export const MAX_BUFFERS = 5

/** A column of the file does not decode: names the file, the batch and the column. */
export class SegmentBlockCorruptError extends SegmentCorruptError {
  override name = 'SegmentCorruptError'
  constructor (path: string, readonly batch: number, readonly column: string, reason: string, options?: { cause?: unknown }) {
    super(path, `batch ${batch}, column "${column}": ${reason}`, options)
  }
}

/** Zone map of one column of one batch. min/max absent: unknown (every row NULL, or not kept for the type). */
export interface Zone {
  nulls: number
  min?: number | string
  max?: number | string
}

export interface IndexHeader {
  /** 1, 2 or 3 (see the layout above). */
  format: number
  batches: number
  columns: number
  rows: number
  arrowBytes: number
  dirBytes: number
  dirCrc: number
  keyIndexOffset: number
  keyIndexBytes: number
  batchRows: number
  /** Format 2: bytes a page of the page table covers; 0 when the file has no page table (format 1). */
  pageBytes: number
  /** CRC-32 of the page table (0 without one). */
  pageTableCrc: number
}

/** Pages of `pageBytes` covering an .arrow file of `arrowBytes` (0 without a page table). */
export function pageCount (h: Pick<IndexHeader, 'arrowBytes' | 'pageBytes'>): number {
  return h.pageBytes === 0 ? 0 : Math.ceil(h.arrowBytes / h.pageBytes)
}

/** One column as the file stores it. */
export interface FileColumn {
  name: string
  type: ColumnType
}

/** How many Arrow field nodes and buffers a column of `type` has, depth first. */
export function layoutOf (type: ColumnType): { nodes: number, buffers: number } {
  const elem = listElement(type)
  if (elem !== undefined) { const c = layoutOf(elem); return { nodes: 1 + c.nodes, buffers: 2 + c.buffers } }
  if (vectorDim(type) !== undefined) return { nodes: 2, buffers: 3 }
  return { nodes: 1, buffers: type === 'utf8' ? 3 : 2 }
}

/** utf8 zone bounds longer than this (UTF-16 code units) keep a prefix as min and no max. */
export const ZONE_STRING_MAX = 64

// ---------------------------------------------------------------------------------------------
// The files

/** The schema metadata `shoal.segment` of a key-ordered, many-batch segment with an .idx sidecar. */
export const SEGMENT_FILE_FORMAT = '2'
/** Default of `batchRows`: rows per Arrow record batch, the unit a query reads and caches. */
export const DEFAULT_BATCH_ROWS = 65_536

export function segmentIndexFileName (id: number): string { return segmentFileName(id).replace(/\.arrow$/, '.idx') }

/** What the manifest lists for a segment written by writeSegmentFiles. */
export interface SegmentFileMeta extends SegmentMeta {
  /** The .idx sidecar's file name, bytes and CRC-32 (of the whole file). */
  index: string
  indexBytes: number
  indexCrc32: number
  batches: number
}

// ---------------------------------------------------------------------------------------------
// Byte writing and reading

export class ByteWriter {
  private buf = Buffer.alloc(4096)
  length = 0
  private room (n: number): void {
    if (this.length + n <= this.buf.length) return
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n))
    this.buf.copy(b, 0, 0, this.length)
    this.buf = b
  }

  u8 (v: number): void { this.room(1); this.buf.writeUInt8(v, this.length); this.length += 1 }
  u16 (v: number): void { this.room(2); this.buf.writeUInt16LE(v, this.length); this.length += 2 }
  u32 (v: number): void { this.room(4); this.buf.writeUInt32LE(v >>> 0, this.length); this.length += 4 }
  f64 (v: number): void { this.room(8); this.buf.writeDoubleLE(v, this.length); this.length += 8 }
  bytes (b: Uint8Array): void { this.room(b.length); this.buf.set(b, this.length); this.length += b.length }
  /** A short string as u16 byte length + utf8. */
  str16 (s: string): void { const b = Buffer.from(s, 'utf8'); this.u16(b.length); this.bytes(b) }
  /** A string as u32 code-unit count + UTF-16LE code units (lossless even for lone surrogates). */
  utf16 (s: string): void { this.u32(s.length); this.bytes(Buffer.from(s, 'utf16le')) }
  result (): Buffer { return this.buf.subarray(0, this.length) }
}

/** Bounds-checked reads; running past the end is corruption, reported by `fail`. */
export class ByteReader {
  pos = 0
  private readonly view: Buffer
  constructor (bytes: Uint8Array, private readonly fail: (reason: string) => Error) {
    this.view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  private need (n: number): void { if (this.pos + n > this.view.length) throw this.fail(`directory ends early (at byte ${this.pos}, ${n} more needed, ${this.view.length} in all)`) }
  get remaining (): number { return this.view.length - this.pos }
  u8 (): number { this.need(1); return this.view.readUInt8(this.pos++) }
  u16 (): number { this.need(2); const v = this.view.readUInt16LE(this.pos); this.pos += 2; return v }
  u32 (): number { this.need(4); const v = this.view.readUInt32LE(this.pos); this.pos += 4; return v }
  f64 (): number { this.need(8); const v = this.view.readDoubleLE(this.pos); this.pos += 8; return v }
  /** A float64 that must be an integer in [0, 2^53): a count, offset or length. */
  count (what: string): number {
    const v = this.f64()
    if (!Number.isSafeInteger(v) || v < 0) throw this.fail(`${what} is ${v}, not a count`)
    return v
  }

  str16 (): string { const n = this.u16(); this.need(n); const s = this.view.toString('utf8', this.pos, this.pos + n); this.pos += n; return s }
  utf16 (): string {
    const n = this.u32()
    this.need(2 * n)
    const s = this.view.toString('utf16le', this.pos, this.pos + 2 * n)
    this.pos += 2 * n
    return s
  }
}

// ---------------------------------------------------------------------------------------------
// Header

export function encodeHeader (h: IndexHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES)
  b.write(INDEX_MAGIC, 0, 'latin1')
  b.writeUInt32LE(h.format, 8)
  b.writeUInt32LE(HEADER_BYTES, 12)
  b.writeUInt32LE(h.batches, 16)
  b.writeUInt32LE(h.columns, 20)
  b.writeDoubleLE(h.rows, 24)
  b.writeDoubleLE(h.arrowBytes, 32)
  b.writeUInt32LE(h.dirBytes, 40)
  b.writeUInt32LE(h.dirCrc, 44)
  b.writeDoubleLE(h.keyIndexOffset, 48)
  b.writeDoubleLE(h.keyIndexBytes, 56)
  b.writeUInt32LE(h.batchRows, 64)
  b.writeUInt32LE(h.pageBytes, 68)
  b.writeUInt32LE(h.pageTableCrc, 72)
  b.writeUInt32LE(crc32(b.subarray(0, HEADER_BYTES - 4)), HEADER_BYTES - 4)
  return b
}

/** Decodes and checks the header; `fileBytes` is the .idx file's size. */
export function decodeHeader (bytes: Uint8Array, path: string, fileBytes: number): IndexHeader {
  const bad = (reason: string): SegmentCorruptError => new SegmentCorruptError(path, `bad index header: ${reason}`)
  if (bytes.length < HEADER_BYTES) throw bad(`${bytes.length} bytes, a header is ${HEADER_BYTES}`)
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, HEADER_BYTES)
  if (b.toString('latin1', 0, 8) !== INDEX_MAGIC) throw bad('wrong magic')
  if (b.readUInt32LE(HEADER_BYTES - 4) !== crc32(b.subarray(0, HEADER_BYTES - 4))) throw bad('CRC mismatch')
  const version = b.readUInt32LE(8)
  if (!Number.isInteger(version) || version < 1 || version > INDEX_FORMAT) throw bad(`format version ${version}, this build reads 1 to ${INDEX_FORMAT}`)
  if (b.readUInt32LE(12) !== HEADER_BYTES) throw bad(`header length ${b.readUInt32LE(12)}`)
  if (version === 1 && (b.readUInt32LE(68) !== 0 || b.readUInt32LE(72) !== 0)) throw bad('reserved fields are not zero')
  const h: IndexHeader = {
    format: version,
    batches: b.readUInt32LE(16),
    columns: b.readUInt32LE(20),
    rows: b.readDoubleLE(24),
    arrowBytes: b.readDoubleLE(32),
    dirBytes: b.readUInt32LE(40),
    dirCrc: b.readUInt32LE(44),
    keyIndexOffset: b.readDoubleLE(48),
    keyIndexBytes: b.readDoubleLE(56),
    batchRows: b.readUInt32LE(64),
    pageBytes: b.readUInt32LE(68),
    pageTableCrc: b.readUInt32LE(72)
  }
  for (const k of ['rows', 'arrowBytes', 'keyIndexOffset', 'keyIndexBytes'] as const) {
    if (!Number.isSafeInteger(h[k]) || h[k] < 0) throw bad(`${k} is ${h[k]}`)
  }
  if (HEADER_BYTES + h.dirBytes > fileBytes) throw bad(`directory of ${h.dirBytes} bytes passes the end of the ${fileBytes}-byte file`)
  if (h.keyIndexBytes > 0 && (h.keyIndexOffset < HEADER_BYTES + h.dirBytes || h.keyIndexOffset + h.keyIndexBytes > fileBytes)) throw bad(`key index at ${h.keyIndexOffset}+${h.keyIndexBytes} outside the file`)
  if (h.batches > 0 && h.batchRows === 0) throw bad('batch rows is 0')
  if (version >= 2 && (h.pageBytes < 64 || h.pageBytes > 1 << 20 || (h.pageBytes & (h.pageBytes - 1)) !== 0)) throw bad(`page bytes is ${h.pageBytes}, not a power of two from 64 to 1 MiB`)
  const tableAt = fileBytes - 4 * pageCount(h)
  if (tableAt < HEADER_BYTES + h.dirBytes || (h.keyIndexBytes > 0 && tableAt < h.keyIndexOffset + h.keyIndexBytes)) throw bad(`a page table of ${pageCount(h)} pages does not fit after the key index`)
  if (h.rows > h.batches * h.batchRows) throw bad(`${h.rows} rows in ${h.batches} batches of at most ${h.batchRows}`)
  return h
}

// ---------------------------------------------------------------------------------------------
// Directory (decoded form, resident while the segment is open)

/**
 * The batch directory in flat typed arrays (a few hundred bytes a batch, no object per column):
 * entry k = batch * columns + column.
 */
export interface Directory {
  columns: FileColumn[]
  columnIndex: Map<string, number>
  firstRow: Float64Array
  batchRows: Uint32Array
  bodyOffset: Float64Array
  /** MAX_NODES × (length, null count) per entry. */
  nodes: Float64Array
  /** MAX_BUFFERS × (offset in body, length) per entry. */
  buffers: Float64Array
  crc: Uint32Array
  zoneKind: Uint8Array
  zoneMin: Float64Array
  zoneMax: Float64Array
  /** utf8 zone bounds by entry; absent when unknown. */
  strMin: Map<number, string>
  strMax: Map<number, string>
  /** Format 3: per entry the width of its utf8 codes (0: the column has none in that batch), their block's offset in the .idx, bytes, CRC-32 and distinct values. */
  codeWidth: Uint8Array
  codeOffset: Float64Array
  codeBytes: Uint32Array
  codeCrc: Uint32Array
  codeCount: Uint32Array
}

/** A utf8 codes block as written: its place in the codes section (offset relative to the section's start). */
export interface WrittenCodes {
  offset: number
  bytes: number
  crc: number
  count: number
  width: number
}

/** Per batch and column, as the writer found them in the written .arrow file. */
export interface WrittenColumn {
  nodes: Array<{ length: number, nullCount: number }>
  buffers: Array<{ offset: number, length: number }>
  crc: number
  zone: Zone
  codes?: WrittenCodes
}

export interface WrittenBatch {
  firstRow: number
  rows: number
  bodyOffset: number
  columns: WrittenColumn[]
}

/**
 * The directory of `format` (2 or 3). Format 3 places each codes block at `codesAt` (where the
 * codes section starts in the .idx) + its offset in the section: the directory's length does not
 * depend on `codesAt`, so a writer encodes it once to learn its length and again with it.
 */
export function encodeDirectory (columns: readonly FileColumn[], batches: readonly WrittenBatch[], format: number, codesAt: number): Buffer {
  const w = new ByteWriter()
  for (const c of columns) {
    const l = layoutOf(c.type)
    w.str16(c.name); w.str16(c.type); w.u8(l.nodes); w.u8(l.buffers)
  }
  for (const b of batches) {
    w.f64(b.firstRow); w.u32(b.rows); w.f64(b.bodyOffset)
    for (let ci = 0; ci < b.columns.length; ci++) {
      const c = b.columns[ci]!
      for (const n of c.nodes) { w.f64(n.length); w.f64(n.nullCount) }
      for (const x of c.buffers) { w.f64(x.offset); w.f64(x.length) }
      w.u32(c.crc)
      const z = c.zone
      if (typeof z.min === 'number' && typeof z.max === 'number') {
        w.u8(1); w.f64(z.min); w.f64(z.max)
      } else if (typeof z.min === 'string') {
        w.u8(2); w.u8(typeof z.max === 'string' ? 1 : 0); w.utf16(z.min)
        if (typeof z.max === 'string') w.utf16(z.max)
      } else {
        w.u8(0)
      }
      if (format < 3) {
        if (c.codes !== undefined) throw new Error(`a format-${format} directory cannot hold codes`)
        continue
      }
      if (format < 4 && c.codes !== undefined && columns[ci]!.type !== 'utf8') throw new Error(`a format-${format} directory cannot hold number codes`)
      const k = c.codes
      if (k === undefined) { w.u8(0); continue }
      w.u8(k.width); w.f64(codesAt + k.offset); w.u32(k.bytes); w.u32(k.crc); w.u32(k.count)
    }
  }
  return w.result()
}

/** The smallest byte length a buffer must have; its element width (for alignment). */
function fixedWidth (type: ColumnType): number {
  switch (type) {
    case 'int32': case 'date': case 'float32': return 4
    case 'int64': case 'timestamp': case 'float64': return 8
    default: return 0
  }
}

/**
 * Checks that the buffers of one field (and its child) are long enough for its node lengths, so
 * the Arrow Data rebuilt from them cannot read past them. Offsets are checked when read (they are
 * data). Returns the reason, or undefined when sound.
 */
function checkField (type: ColumnType, rows: number, nodes: Float64Array, nb: number, bufs: Float64Array, bb: number): string | undefined {
  const len = nodes[nb]!
  const nulls = nodes[nb + 1]!
  if (len !== rows) return `field node of ${len} rows, expected ${rows}`
  if (nulls > len) return `${nulls} NULLs in ${len} rows`
  const blen = (i: number): number => bufs[bb + 2 * i + 1]!
  if (nulls > 0 && blen(0) < Math.ceil(len / 8)) return `validity buffer of ${blen(0)} bytes for ${len} rows`
  const elem = listElement(type)
  const dim = vectorDim(type)
  if (elem !== undefined) {
    if (blen(1) < 4 * (len + 1)) return `offsets buffer of ${blen(1)} bytes for ${len} rows`
    return checkField(elem, nodes[nb + 2]!, nodes, nb + 2, bufs, bb + 4)
  }
  if (dim !== undefined) {
    if (nodes[nb + 2] !== len * dim) return `vector child of ${nodes[nb + 2]} floats for ${len} rows of ${dim}`
    if (nodes[nb + 3] !== 0) return 'NULLs inside a vector'
    if (blen(2) < 4 * len * dim) return `vector data of ${blen(2)} bytes for ${len * dim} floats`
    return undefined
  }
  if (type === 'utf8') return blen(1) < 4 * (len + 1) ? `offsets buffer of ${blen(1)} bytes for ${len} rows` : undefined
  if (type === 'bool') return blen(1) < Math.ceil(len / 8) ? `data buffer of ${blen(1)} bytes for ${len} booleans` : undefined
  const w = fixedWidth(type)
  return blen(1) < w * len ? `data buffer of ${blen(1)} bytes for ${len} values of ${w}` : undefined
}

/** Decodes and checks the directory of a .idx of `idxBytes` bytes with header `h`. */
export function decodeDirectory (bytes: Uint8Array, h: IndexHeader, path: string, idxBytes: number): Directory {
  const r = new ByteReader(bytes, reason => new SegmentCorruptError(path, `bad batch directory: ${reason}`))
  const columns: FileColumn[] = []
  const columnIndex = new Map<string, number>()
  const layouts: Array<{ nodes: number, buffers: number }> = []
  for (let c = 0; c < h.columns; c++) {
    const name = r.str16()
    const type = r.str16()
    if (!isColumnType(type)) throw new SegmentCorruptError(path, `bad batch directory: column "${name}" has type "${type}"`)
    if (columnIndex.has(name)) throw new SegmentCorruptError(path, `bad batch directory: column "${name}" twice`)
    const l = layoutOf(type)
    const nodes = r.u8()
    const buffers = r.u8()
    if (nodes !== l.nodes || buffers !== l.buffers) throw new SegmentCorruptError(path, `bad batch directory: column "${name}" (${type}) with ${nodes} nodes and ${buffers} buffers`)
    columns.push({ name, type })
    columnIndex.set(name, c)
    layouts.push(l)
  }
  const B = h.batches
  const C = h.columns
  const d: Directory = {
    columns,
    columnIndex,
    firstRow: new Float64Array(B),
    batchRows: new Uint32Array(B),
    bodyOffset: new Float64Array(B),
    nodes: new Float64Array(B * C * MAX_NODES * 2),
    buffers: new Float64Array(B * C * MAX_BUFFERS * 2),
    crc: new Uint32Array(B * C),
    zoneKind: new Uint8Array(B * C),
    zoneMin: new Float64Array(B * C),
    zoneMax: new Float64Array(B * C),
    strMin: new Map(),
    strMax: new Map(),
    codeWidth: new Uint8Array(h.format >= 3 ? B * C : 0),
    codeOffset: new Float64Array(h.format >= 3 ? B * C : 0),
    codeBytes: new Uint32Array(h.format >= 3 ? B * C : 0),
    codeCrc: new Uint32Array(h.format >= 3 ? B * C : 0),
    codeCount: new Uint32Array(h.format >= 3 ? B * C : 0)
  }
  // Codes blocks lie after the directory (and the key index) and before the page table.
  const codesFrom = HEADER_BYTES + h.dirBytes
  const codesTo = idxBytes - 4 * pageCount(h)
  let next = 0
  for (let b = 0; b < B; b++) {
    const first = r.count('first row')
    const rows = r.u32()
    const body = r.count('body offset')
    const at = (col: number): SegmentBlockCorruptError => new SegmentBlockCorruptError(path, b, columns[col]?.name ?? '?', 'bad directory entry')
    if (first !== next || rows === 0 || rows > h.batchRows) throw new SegmentCorruptError(path, `bad batch directory: batch ${b} holds rows ${first}..+${rows}, expected to start at ${next} with 1..${h.batchRows}`)
    next += rows
    d.firstRow[b] = first
    d.batchRows[b] = rows
    d.bodyOffset[b] = body
    for (let c = 0; c < C; c++) {
      const k = b * C + c
      const l = layouts[c]!
      const nb = k * MAX_NODES * 2
      const bb = k * MAX_BUFFERS * 2
      for (let i = 0; i < l.nodes; i++) { d.nodes[nb + 2 * i] = r.count('node length'); d.nodes[nb + 2 * i + 1] = r.count('null count') }
      for (let i = 0; i < l.buffers; i++) {
        const off = r.count('buffer offset')
        const len = r.count('buffer length')
        if (body + off + len > h.arrowBytes) {
          const e = at(c)
          throw new SegmentBlockCorruptError(path, b, e.column, `buffer ${i} at ${body + off}+${len} passes the end of the ${h.arrowBytes}-byte .arrow file`)
        }
        d.buffers[bb + 2 * i] = off
        d.buffers[bb + 2 * i + 1] = len
      }
      const why = checkField(columns[c]!.type, rows, d.nodes, nb, d.buffers, bb)
      if (why !== undefined) throw new SegmentBlockCorruptError(path, b, columns[c]!.name, `bad directory entry: ${why}`)
      d.crc[k] = r.u32()
      const kind = r.u8()
      d.zoneKind[k] = kind
      if (kind === 1) {
        d.zoneMin[k] = r.f64(); d.zoneMax[k] = r.f64()
      } else if (kind === 2) {
        const hasMax = r.u8()
        d.strMin.set(k, r.utf16())
        if (hasMax === 1) d.strMax.set(k, r.utf16())
      } else if (kind !== 0) {
        throw new SegmentBlockCorruptError(path, b, columns[c]!.name, `bad directory entry: zone kind ${kind}`)
      }
      if (h.format < 3) continue
      const width = r.u8()
      if (width === 0) continue
      const offset = r.count('codes offset')
      const blockBytes = r.u32()
      const crc = r.u32()
      const count = r.u32()
      const type = columns[c]!.type
      const number = isCodedNumberType(type)
      const bad = type !== 'utf8' && !(number && h.format >= 4)
        ? `codes for a column of type ${type} in a format-${h.format} file`
        : width !== 1 && width !== 2
          ? `codes ${width} bytes wide`
          : count >= nullCode(width)
            ? `${count} distinct values in codes ${width} bytes wide`
            : blockBytes < (number ? numberCodesBytes(rows, width, count) : codesHead(rows, width) + 4 * (count + 1))
              ? `a codes block of ${blockBytes} bytes for ${rows} rows and ${count} values`
              : offset < codesFrom || offset + blockBytes > codesTo
                ? `codes at ${offset}+${blockBytes} outside the .idx's codes section (${codesFrom} to ${codesTo})`
                : undefined
      if (bad !== undefined) throw new SegmentBlockCorruptError(path, b, columns[c]!.name, `bad directory entry: ${bad}`)
      d.codeWidth[k] = width
      d.codeOffset[k] = offset
      d.codeBytes[k] = blockBytes
      d.codeCrc[k] = crc
      d.codeCount[k] = count
    }
  }
  if (next !== h.rows) throw new SegmentCorruptError(path, `bad batch directory: batches hold ${next} rows, the header says ${h.rows}`)
  if (r.remaining !== 0) throw new SegmentCorruptError(path, `bad batch directory: ${r.remaining} bytes left over`)
  return d
}

/** Bytes the decoded directory holds in memory (typed arrays, plus strings at two bytes a code unit). */
export function directoryBytes (d: Directory): number {
  let n = d.firstRow.byteLength + d.batchRows.byteLength + d.bodyOffset.byteLength + d.nodes.byteLength + d.buffers.byteLength +
    d.crc.byteLength + d.zoneKind.byteLength + d.zoneMin.byteLength + d.zoneMax.byteLength +
    d.codeWidth.byteLength + d.codeOffset.byteLength + d.codeBytes.byteLength + d.codeCrc.byteLength + d.codeCount.byteLength
  for (const s of d.strMin.values()) n += 32 + 2 * s.length
  for (const s of d.strMax.values()) n += 32 + 2 * s.length
  for (const c of d.columns) n += 64 + 2 * (c.name.length + c.type.length)
  return n
}

// ---------------------------------------------------------------------------------------------
// Zone maps (writer side)

/**
 * The zone maps of one column, per batch, in one pass over its values in input order (a value's
 * batch is its rank in key order / batchRows): no scattered reads of values in key order. Values
 * are taken as the executor will see them: numbers as float64 (an int64 beyond 2^53 rounded to
 * nearest, as readInt64 does), dates in days, booleans 0/1, NaN as NULL; strings by JS comparison
 * (UTF-16 code units). Lists and vectors keep only their NULL count.
 */
export function zonesByBatch (type: ColumnType, values: readonly unknown[], rank: Uint32Array, batchRows: number, batchCount: number): Zone[] {
  const n = values.length
  const nulls = new Float64Array(batchCount)
  const kind = listElement(type) !== undefined || vectorDim(type) !== undefined ? 0 : type === 'utf8' ? 2 : 1
  const nmin = new Float64Array(batchCount).fill(Infinity)
  const nmax = new Float64Array(batchCount).fill(-Infinity)
  const smin = new Array<string | undefined>(batchCount)
  const smax = new Array<string | undefined>(batchCount)
  for (let i = 0; i < n; i++) {
    const b = Math.floor(rank[i]! / batchRows)
    const v = values[i]
    if (v === null || v === undefined) { nulls[b]!++; continue }
    if (kind === 1) {
      const x = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? (v ? 1 : 0) : NaN
      if (x !== x) continue
      if (x < nmin[b]!) nmin[b] = x
      if (x > nmax[b]!) nmax[b] = x
    } else if (kind === 2 && typeof v === 'string') {
      const lo = smin[b]
      if (lo === undefined || v < lo) smin[b] = v
      const hi = smax[b]
      if (hi === undefined || v > hi) smax[b] = v
    }
  }
  const out = new Array<Zone>(batchCount)
  for (let b = 0; b < batchCount; b++) {
    const z: Zone = { nulls: nulls[b]! }
    if (kind === 1 && nmin[b]! <= nmax[b]!) {
      z.min = nmin[b]!
      z.max = nmax[b]!
    } else if (kind === 2 && smin[b] !== undefined) {
      const lo = smin[b]!
      const hi = smax[b]!
      // A prefix of the min is still a lower bound; a prefix of the max is not an upper bound.
      z.min = lo.length > ZONE_STRING_MAX ? lo.slice(0, ZONE_STRING_MAX) : lo
      if (hi.length <= ZONE_STRING_MAX) z.max = hi
    }
    out[b] = z
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// utf8 codes blocks (format 3)

/** Most distinct values a batch's column may have to be stored as codes too (utf8 or numbers): the 2-byte width's (its all-ones value is NULL). */
export const MAX_CODED_VALUES = 0xfffe
/** Fewest rows a batch needs for codes: below, a block's offsets and values cost more than they save. */
export const MIN_CODED_ROWS = 64

/** The code that means NULL at `width` bytes (1 or 2): all ones. */
export function nullCode (width: number): number { return width === 1 ? 0xff : 0xffff }

/** Bytes of a block before its offsets: the codes, padded to a multiple of 4. */
function codesHead (rows: number, width: number): number { return (rows * width + 3) & ~3 }

/**
 * The codes block of one batch's utf8 column: `codes` (one per row, -1 NULL, else an index into
 * `dict`) at the narrowest width that holds them, and `dict`'s values.
 */
export function encodeUtf8Codes (codes: Int32Array, dict: readonly string[]): { block: Uint8Array, width: number } {
  if (dict.length > MAX_CODED_VALUES) throw new RangeError(`${dict.length} distinct values, at most ${MAX_CODED_VALUES} are coded`)
  const width = dict.length < 0xff ? 1 : 2
  const rows = codes.length
  const values = dict.map(v => Buffer.from(v, 'utf8'))
  const head = codesHead(rows, width)
  let total = head + 4 * (dict.length + 1)
  for (const v of values) total += v.length
  const block = new Uint8Array(total)
  const nul = nullCode(width)
  if (width === 1) {
    for (let i = 0; i < rows; i++) { const c = codes[i]!; block[i] = c < 0 ? nul : c }
  } else {
    // Little endian, as the platform's typed arrays (Arrow's buffers are read the same way).
    const out = new Uint16Array(block.buffer, 0, rows)
    for (let i = 0; i < rows; i++) { const c = codes[i]!; out[i] = c < 0 ? nul : c }
  }
  const dv = new DataView(block.buffer)
  let at = head + 4 * (dict.length + 1)
  const from = at
  for (let j = 0; j < values.length; j++) {
    dv.setUint32(head + 4 * j, at - from, true)
    block.set(values[j]!, at)
    at += values[j]!.length
  }
  dv.setUint32(head + 4 * values.length, at - from, true)
  return { block, width }
}

/**
 * A codes block read back (its CRC already checked) as a narrow dictionary vector (columnar's
 * compact form): the codes are a view of the block (copied when the block is not aligned for
 * 2-byte codes), the values strings. Throws `fail(reason)` for a block that does not decode:
 * offsets out of order or past its end, a code past the values.
 */
export function decodeUtf8Codes (block: Uint8Array, rows: number, count: number, width: number, fail: (reason: string) => Error): NarrowStrVector {
  const head = codesHead(rows, width)
  const valuesAt = head + 4 * (count + 1)
  if (block.length < valuesAt) throw fail(`a block of ${block.length} bytes for ${rows} rows and ${count} values`)
  const buf = Buffer.from(block.buffer, block.byteOffset, block.byteLength)
  const dict = new Array<string>(count)
  let prev = 0
  for (let j = 0; j <= count; j++) {
    const o = buf.readUInt32LE(head + 4 * j)
    if (o < prev || valuesAt + o > block.length || (j === 0 && o !== 0)) throw fail(`value offset ${j} is ${o} (after ${prev}, ${block.length - valuesAt} bytes of values)`)
    if (j > 0) dict[j - 1] = buf.toString('utf8', valuesAt + prev, valuesAt + o)
    prev = o
  }
  const codes = codeView(block, rows, width)
  // No NULL and no code past the values: the common case, tested 4 bytes at a time.
  if (allCodesBelow(block, rows, width, count)) return { tag: 'narrow', type: 'utf8', codes, dict, nulls: 0 }
  const { nulls, bad } = countCodes(codes, count, nullCode(width))
  if (bad > 0) throw fail(`${bad} codes past the ${count} values`)
  return { tag: 'narrow', type: 'utf8', codes, dict, nulls }
}

/** The `rows` codes at the start of a block as an array of their width: a view, or a copy when the block is not aligned for it. */
function codeView (block: Uint8Array, rows: number, width: number): Uint8Array | Uint16Array {
  if (width === 1) return block.subarray(0, rows)
  return (block.byteOffset & 1) === 0 ? new Uint16Array(block.buffer, block.byteOffset, rows) : new Uint16Array(block.slice(0, 2 * rows).buffer)
}

/** How many codes are NULL (`nul`) and how many past the `count` values. */
function countCodes (codes: Uint8Array | Uint16Array, count: number, nul: number): { nulls: number, bad: number } {
  let nulls = 0
  let bad = 0
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!
    if (c < count) continue
    if (c === nul) nulls++
    else bad++
  }
  return { nulls, bad }
}

/**
 * Whether each of the `rows` codes of `width` bytes at the start of `block` is below `count`
 * (so none is NULL), four bytes at a time where it can: a lane x > n = count - 1 sets its top bit
 * in (x + (top - 1 - n)) | x, with no carry into the next lane while x < top (Bit Twiddling Hacks,
 * "determine if a word has a byte greater than n"); a lane at or past top is caught by the | x.
 * False when it cannot tell cheaply (count past half the lane, an unaligned block): the caller
 * then checks code by code.
 */
function allCodesBelow (block: Uint8Array, rows: number, width: number, count: number): boolean {
  const top = width === 1 ? 0x80 : 0x8000
  if (count < 1 || count > top || (block.byteOffset & 3) !== 0 || (width === 2 && (block.byteOffset & 1) !== 0)) return false
  const bytes = rows * width
  const words = new Int32Array(block.buffer, block.byteOffset, bytes >> 2)
  const lanes = width === 1 ? 0x01010101 : 0x00010001
  const add = lanes * (top - count)
  const mask = width === 1 ? 0x80808080 | 0 : 0x80008000 | 0
  let any = 0
  for (let i = 0; i < words.length; i++) { const w = words[i]!; any |= (((w + add) | 0) | w) & mask }
  if (any !== 0) return false
  for (let at = words.length << 2; at < bytes; at += width) {
    const x = width === 1 ? block[at]! : block[at]! | (block[at + 1]! << 8)
    if (x >= count) return false
  }
  return true
}

// ---------------------------------------------------------------------------------------------
// number codes blocks (format 4)

/** The column types a number codes block may hold (bool: its bits are smaller than codes). */
export function isCodedNumberType (type: string): boolean {
  return type === 'int32' || type === 'int64' || type === 'float32' || type === 'float64' || type === 'date' || type === 'timestamp'
}

/** Bytes of a number codes block: the codes padded to a multiple of 8, then the values as f64. */
function numberCodesBytes (rows: number, width: number, count: number): number {
  return ((rows * width + 7) & ~7) + 8 * count
}

/**
 * The distinct values of `values` (the columnar form of one batch's number column: NaN is NULL)
 * with a code per row (-1 NULL, into `codes` when given), or undefined past `maxDistinct` values
 * or at a -0 (equal to 0 by ===, which the table compares keys with: the batch is left without
 * codes rather than read back as 0).
 */
export function numberDictionary (values: Float64Array, maxDistinct: number, codes: Int32Array = new Int32Array(values.length)): { codes: Int32Array, dict: number[] } | undefined {
  if (codes.length !== values.length) throw new RangeError(`${codes.length} codes for ${values.length} values`)
  // Open addressing over the values' bits, in tables kept between calls (a Map cost ~250 ns an
  // insert here: 60 ns a row of a batch to give up on a column of distinct values).
  const table = numberTable(2 * maxDistinct + 2)
  const { keys, ids, mask, shift } = table
  const dict: number[] = []
  const bits = HASH_BITS
  const words = HASH_WORDS
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!
    if (x !== x) { codes[i] = -1; continue }
    bits[0] = x
    let slot = Math.imul(words[0]! ^ Math.imul(words[1]!, 0x27d4eb2d), 0x9e3779b1) >>> shift
    let code = -1
    for (;;) {
      const id = ids[slot]!
      if (id < 0) break
      if (keys[slot] === x) { code = id; break }
      slot = (slot + 1) & mask
    }
    if (code < 0) {
      if (dict.length >= maxDistinct || (x === 0 && 1 / x < 0)) return undefined
      code = dict.length
      dict.push(x)
      keys[slot] = x
      ids[slot] = code
      table.used.push(slot)
    }
    codes[i] = code
  }
  return { codes, dict }
}

/** A float64's bits, for hashing. */
const HASH_BITS = new Float64Array(1)
const HASH_WORDS = new Int32Array(HASH_BITS.buffer)

interface NumberTable { keys: Float64Array, ids: Int32Array, mask: number, shift: number, used: number[] }
let numberTables: NumberTable | undefined

/** An empty table of at least `slots` slots (a power of two): the one kept, grown when too small, its used slots cleared. */
function numberTable (slots: number): NumberTable {
  let t = numberTables
  if (t === undefined || t.keys.length < slots) {
    const size = 2 ** Math.max(6, Math.ceil(Math.log2(slots)))
    t = numberTables = { keys: new Float64Array(size), ids: new Int32Array(size).fill(-1), mask: size - 1, shift: 32 - Math.log2(size), used: [] }
  }
  for (const slot of t.used) t.ids[slot] = -1
  t.used.length = 0
  return t
}

/** The number codes block of one batch's column (see numberDictionary), at the narrowest width that holds them. */
export function encodeNumberCodes (codes: Int32Array, dict: readonly number[]): { block: Uint8Array, width: number } {
  if (dict.length > MAX_CODED_VALUES) throw new RangeError(`${dict.length} distinct values, at most ${MAX_CODED_VALUES} are coded`)
  const width = dict.length < 0xff ? 1 : 2
  const rows = codes.length
  const block = new Uint8Array(numberCodesBytes(rows, width, dict.length))
  const nul = nullCode(width)
  const out = width === 1 ? block : new Uint16Array(block.buffer, 0, rows)
  for (let i = 0; i < rows; i++) { const c = codes[i]!; out[i] = c < 0 ? nul : c }
  new Float64Array(block.buffer, (rows * width + 7) & ~7, dict.length).set(dict)
  return { block, width }
}

/**
 * A number codes block read back (its CRC already checked) as a coded vector (columnar's compact
 * form) of `type`: the codes and values views of the block (copied when it is not aligned for
 * them). NULL rows get the code of a NaN appended to the values (a copy of both, only then).
 * Throws `fail(reason)` for a code past the values or a NaN value.
 */
export function decodeNumberCodes (block: Uint8Array, rows: number, count: number, width: number, type: ValueType, fail: (reason: string) => Error): CodedNumVector {
  const at = (rows * width + 7) & ~7
  if (block.length < at + 8 * count) throw fail(`a block of ${block.length} bytes for ${rows} rows and ${count} values`)
  // Typed views need aligned offsets: a block read elsewhere than at an 8-byte boundary is copied.
  const aligned = (block.byteOffset & 7) === 0 ? block : block.slice()
  const dict = new Float64Array(aligned.buffer, aligned.byteOffset + at, count)
  // The executor relies on `nulls` (NumVector): a NaN value would be a NULL it did not count.
  for (let j = 0; j < count; j++) if (dict[j] !== dict[j]) throw fail(`value ${j} is NaN`)
  const int32 = type === 'int32' || type === 'date' ? { int32: true as const } : {}
  const codes = codeView(aligned, rows, width)
  // No NULL and no code past the values: the common case, tested 4 bytes at a time.
  if (allCodesBelow(aligned, rows, width, count)) return { tag: 'coded', type, codes, dict, nulls: 0, ...int32 }
  const nul = nullCode(width)
  const { nulls, bad } = countCodes(codes, count, nul)
  if (bad > 0) throw fail(`${bad} codes past the ${count} values`)
  if (nulls === 0) return { tag: 'coded', type, codes, dict, nulls: 0, ...int32 }
  // NULL reads the NaN at `count` (below the NULL code: count < nul).
  const withNull = new Float64Array(new SharedArrayBuffer(8 * (count + 1)))
  withNull.set(dict)
  withNull[count] = NaN
  const remapped = width === 1 ? new Uint8Array(new SharedArrayBuffer(rows)) : new Uint16Array(new SharedArrayBuffer(2 * rows))
  for (let i = 0; i < rows; i++) { const c = codes[i]!; remapped[i] = c === nul ? count : c }
  return { tag: 'coded', type, codes: remapped, dict: withNull, nulls, ...int32 }
}

