/**
 * Disk-resident segments (issue 12, docs/architecture.md "Disk-resident segments"): a segment is
 * two files written once and fsynced together,
 *
 * - `seg-<id>.arrow`: a standard Arrow IPC file (any Arrow reader opens it) of record batches of
 *   at most `batchRows` rows, rows in key order (key-index.ts `compareKeys`), the space's columns
 *   plus the hidden `$version` (float64) and `$deleted` (bool) as segment.ts writes them;
 * - `seg-<id>.idx`: a header, the batch directory (segment-file-format.ts: where each column of
 *   each batch lies in the .arrow file, its CRC-32, its zone map) and the key-index section.
 *
 * `SegmentFile.open` reads the header, the directory and the key index's resident part, never the
 * rows. `column(b, name, type)` reads one column of one batch with one positional read of exactly
 * its bytes, checks their CRC, rebuilds the Arrow Data from them without parsing Arrow metadata,
 * decodes it with segment.ts's decoders into the columnar form in shared memory and keeps it in
 * the peer's block cache.
 */
import { open, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Bool, Field, Float32, Float64, Message, RecordBatch, Schema, Struct, Table, Utf8, makeData, makeVector, tableToIPC, type Data, type Vector } from 'apache-arrow'
import { Footer } from 'apache-arrow/ipc/metadata/file'
import { shareVector, type ColumnVector, type ValueType } from '../columnar/index.js'
import { arrowType, listElement, newRow, vectorDim, type ColumnType, type Row, type SpaceSchema } from '../schema/index.js'
import { columnVectorBytes, type BlockCache } from './block-cache.js'
import { crc32 } from './crc32.js'
import type { Evictable, FilePool } from './files.js'
import { fsyncDir, writeFileDurable } from './fsutil.js'
import { encodeKeyIndex, KeyIndex, KeyIndexCorruptError, keyOrder, type KeyIndexSource } from './key-index.js'
import {
  DELETED_COLUMN, FORMAT_KEY, SegmentCorruptError, VERSION_COLUMN, buildColumn, decodeColumn, decodeIds, fromArrow, nullVector, segmentFileName,
  type SegmentMeta
} from './segment.js'
import {
  HEADER_BYTES, MAX_BUFFERS, MAX_NODES, SegmentBlockCorruptError, decodeDirectory, decodeHeader, directoryBytes, encodeDirectory, encodeHeader,
  layoutOf, zonesByBatch, type Directory, type FileColumn, type IndexHeader, type WrittenBatch, type WrittenColumn, type Zone
} from './segment-file-format.js'
import type { VersionedRecord } from './types.js'

export { SegmentBlockCorruptError, type Zone } from './segment-file-format.js'

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

export interface WriteSegmentOptions {
  /** Most rows in one record batch, 1 to 2^31 - 1. Default 65,536. */
  batchRows?: number
  /** When given, each file open for the write takes a slot of it. */
  files?: FilePool
  /**
   * Called with the key order before anything is written: row j of the segment is
   * records[order[j]] (the caller maps its rows to the segment's without sorting again).
   */
  onOrder?: (order: Uint32Array) => void
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Writes `records` (one per id, tombstones included; any order) as `seg-<id>.arrow` and
 * `seg-<id>.idx` in `dir`, both fsynced, then the directory. Throws on a duplicate id.
 */
export async function writeSegmentFiles (dir: string, id: number, schema: SpaceSchema, records: readonly VersionedRecord[], opts: WriteSegmentOptions = {}): Promise<SegmentFileMeta> {
  const batchRows = opts.batchRows ?? DEFAULT_BATCH_ROWS
  if (!Number.isInteger(batchRows) || batchRows < 1 || batchRows > 0x7fffffff) throw new RangeError(`batchRows must be an integer from 1 to 2^31 - 1, got ${String(batchRows)}`)
  const arrowName = segmentFileName(id)
  const idxName = segmentIndexFileName(id)
  const arrowPath = join(dir, arrowName)
  if (schema.find(c => c.name === 'id')?.type !== 'utf8') throw new Error(`segment ${arrowName}: the schema has no utf8 id column`)
  for (const c of schema) if (c.name.startsWith('$')) throw new Error(`segment ${arrowName}: column ${c.name} collides with the hidden columns`)

  const n = records.length
  const ids = new Array<string>(n)
  const versions = new Float64Array(n)
  const deleted = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const r = records[i]!
    ids[i] = r.id
    versions[i] = r.version
    deleted[i] = r.deleted ? 1 : 0
  }
  const order = keyOrder(ids)
  opts.onOrder?.(order)

  const columns: FileColumn[] = [...schema.map(c => ({ name: c.name, type: c.type })), { name: VERSION_COLUMN, type: 'float64' }, { name: DELETED_COLUMN, type: 'bool' }]
  const fields = columns.map(c => new Field(c.name, arrowType(c.type), c.name !== 'id' && !c.name.startsWith('$')))
  const arrowSchema = new Schema(fields, new Map([[FORMAT_KEY, SEGMENT_FILE_FORMAT]]))
  const batchCount = Math.ceil(n / batchRows)
  const children: Data[][] = Array.from({ length: batchCount }, () => [])
  const zones: Zone[][] = Array.from({ length: batchCount }, () => [])
  // Column by column: one pass over the records in their input order (roughly their order in
  // memory), then a permutation of that flat array into key order. Reading each record's row in
  // key order instead chases scattered objects once per column and was about twice as slow.
  const inOrder = new Array<unknown>(n)
  const rank = new Uint32Array(n)
  for (let i = 0; i < n; i++) rank[order[i]!] = i
  for (const c of columns) {
    if (c.name === VERSION_COLUMN) for (let i = 0; i < n; i++) inOrder[i] = versions[i]
    else if (c.name === DELETED_COLUMN) for (let i = 0; i < n; i++) inOrder[i] = deleted[i] === 1
    else if (c.name === 'id') for (let i = 0; i < n; i++) inOrder[i] = ids[i]
    else for (let i = 0; i < n; i++) { const row = records[i]!.row; inOrder[i] = row === null ? null : row[c.name] }
    const columnZones = zonesByBatch(c.type, inOrder, rank, batchRows, batchCount)
    // Strings are encoded to UTF-8 in input order, then their bytes gathered into key order: a
    // string's characters are scattered in memory, and encoding them in key order cost 5 times more.
    const utf8 = c.type === 'utf8' ? encodeUtf8(inOrder, n, rank, batchRows, batchCount) : undefined
    let lastId: Uint8Array | undefined
    // Fixed-width columns are built whole in input order (reading values where they lie), then
    // each batch gathers its rows' bytes: reading the boxed values in key order cost 3 times more.
    const whole = FIXED_WIDTH.has(c.type) && c.name !== VERSION_COLUMN && c.name !== DELETED_COLUMN ? buildColumn(c.type, inOrder) : undefined
    for (let b = 0; b < batchCount; b++) {
      const first = b * batchRows
      const m = Math.min(batchRows, n - first)
      let data: Data
      if (utf8 !== undefined) {
        data = gatherUtf8(utf8, order, b, first, m)
        if (c.name === 'id') {
          // Equal ids are adjacent in key order: compared here as bytes laid out in that order
          // (comparing the strings in key order would read scattered memory again).
          const dup = adjacentEqual(data as Data<Utf8>, lastId)
          if (dup !== undefined) throw new Error(`segment ${arrowName}: id ${JSON.stringify(ids[order[first + dup]!])} appears twice`)
          const o = data.valueOffsets
          lastId = (data.values as Uint8Array).subarray(o[m - 1]!, o[m]!)
        }
      } else if (c.name === VERSION_COLUMN) {
        const v = new Float64Array(m)
        for (let i = 0; i < m; i++) v[i] = versions[order[first + i]!]!
        data = makeData({ type: new Float64(), length: m, nullCount: 0, data: v })
      } else if (c.name === DELETED_COLUMN) {
        const bits = new Uint8Array((m + 7) >> 3)
        for (let i = 0; i < m; i++) if (deleted[order[first + i]!] === 1) bits[i >> 3]! |= 1 << (i & 7)
        data = makeData({ type: new Bool(), length: m, nullCount: 0, data: bits })
      } else if (whole !== undefined) {
        data = gatherFixed(whole, FIXED_WIDTH.get(c.type)!, order, first, m)
      } else {
        // A fresh array per column keeps its elements of one kind (buildColumn stays monomorphic).
        const values = new Array<unknown>(m)
        for (let i = 0; i < m; i++) values[i] = inOrder[order[first + i]!]
        data = buildColumn(c.type, values)
      }
      if (data.nullCount !== columnZones[b]!.nulls) throw new Error(`segment ${arrowName}: column ${c.name} batch ${b}: ${data.nullCount} NULLs built, ${columnZones[b]!.nulls} counted`)
      children[b]!.push(data)
      zones[b]!.push(columnZones[b]!)
    }
  }
  inOrder.length = 0
  const batches = children.map(ch => new RecordBatch(arrowSchema, makeData({ type: new Struct(fields), length: ch[0]!.length, nullCount: 0, children: ch })))
  const arrowBytes = tableToIPC(new Table(arrowSchema, batches), 'file')
  const written = locateBuffers(arrowBytes, columns, batches.map(b => b.numRows), zones, arrowPath)

  const dirBytes = encodeDirectory(columns, written)
  // Allocated in key order, the order encodeKeyIndex reads them in (allocated in input order and
  // permuted, they lay scattered and the encoding ran about twice as long).
  const entries = new Array<{ id: string, version: number, deleted: boolean }>(n)
  for (let i = 0; i < n; i++) { const o = order[i]!; entries[i] = { id: ids[o]!, version: versions[o]!, deleted: deleted[o] === 1 } }
  const keyIndex = encodeKeyIndex(entries)
  const header: IndexHeader = {
    batches: written.length,
    columns: columns.length,
    rows: n,
    arrowBytes: arrowBytes.length,
    dirBytes: dirBytes.length,
    dirCrc: crc32(dirBytes),
    keyIndexOffset: HEADER_BYTES + dirBytes.length,
    keyIndexBytes: keyIndex.length,
    batchRows
  }
  const idx = Buffer.concat([encodeHeader(header), dirBytes, keyIndex])

  const write = async (path: string, data: Uint8Array): Promise<void> => {
    if (opts.files !== undefined) await opts.files.run(async () => { await writeFileDurable(path, data, false) })
    else await writeFileDurable(path, data, false)
  }
  await write(arrowPath, arrowBytes)
  await write(join(dir, idxName), idx)
  await (opts.files !== undefined ? opts.files.run(async () => { await fsyncDir(dir) }) : fsyncDir(dir))
  return {
    id,
    file: arrowName,
    rows: n,
    bytes: arrowBytes.length,
    crc32: crc32(arrowBytes),
    index: idxName,
    indexBytes: idx.length,
    indexCrc32: crc32(idx),
    batches: written.length
  }
}

/**
 * A utf8 column's values (input order) as UTF-8: row i is bytes[offsets[i], offsets[i + 1]),
 * NULL when valid[i] is 0; with each batch's byte and NULL totals (counted in the same pass).
 */
interface Utf8Values { bytes: Buffer, offsets: Int32Array | Float64Array, valid: Uint8Array, batchBytes: Float64Array, batchNulls: Float64Array }

function encodeUtf8 (values: readonly unknown[], n: number, rank: Uint32Array, batchRows: number, batchCount: number): Utf8Values {
  const valid = new Uint8Array(n)
  const batchBytes = new Float64Array(batchCount)
  const batchNulls = new Float64Array(batchCount)
  let total = 0
  for (let i = 0; i < n; i++) { const v = values[i]; if (typeof v === 'string') total += Buffer.byteLength(v) }
  const bytes = Buffer.allocUnsafe(total)
  const offsets = total <= 0x7fffffff ? new Int32Array(n + 1) : new Float64Array(n + 1)
  let o = 0
  for (let i = 0; i < n; i++) {
    const v = values[i]
    const b = Math.floor(rank[i]! / batchRows)
    if (typeof v === 'string') {
      const len = bytes.write(v, o)
      o += len
      batchBytes[b]! += len
      valid[i] = 1
    } else {
      batchNulls[b]!++
    }
    offsets[i + 1] = o
  }
  return { bytes, offsets, valid, batchBytes, batchNulls }
}

/** Rows order[first .. first + m) (batch b) of a utf8 column as Arrow Data (what buildColumn makes of them). */
function gatherUtf8 (src: Utf8Values, order: Uint32Array, b: number, first: number, m: number): Data {
  const total = src.batchBytes[b]!
  const nulls = src.batchNulls[b]!
  if (total > 0x7fffffff) throw new RangeError(`a utf8 column of one batch holds ${total} bytes; Arrow's utf8 holds at most 2^31 - 1 (use fewer batchRows)`)
  const data = Buffer.allocUnsafe(total)
  const offsets = new Int32Array(m + 1)
  const bitmap = nulls > 0 ? new Uint8Array((m + 7) >> 3) : undefined
  const from = src.bytes
  let p = 0
  for (let i = 0; i < m; i++) {
    const o = order[first + i]!
    const s = src.offsets[o]!
    const e = src.offsets[o + 1]!
    // Short strings by a loop: Buffer.copy's call costs more than copying a few bytes.
    if (e - s <= 32) for (let k = s; k < e; k++) data[p++] = from[k]!
    else p += from.copy(data, p, s, e)
    offsets[i + 1] = p
    if (bitmap !== undefined && src.valid[o] === 1) bitmap[i >> 3]! |= 1 << (i & 7)
  }
  if (p !== total) throw new Error(`utf8 batch gathered ${p} bytes, counted ${total}`)
  return makeData({ type: new Utf8(), length: m, nullCount: nulls, nullBitmap: bitmap, valueOffsets: offsets, data })
}

/** Bytes a value of the fixed-width types (0: bits). */
const FIXED_WIDTH = new Map<string, number>([['bool', 0], ['int32', 4], ['date', 4], ['float32', 4], ['float64', 8], ['int64', 8], ['timestamp', 8]])

/** Rows order[first .. first + m) of a fixed-width column built whole (`src`, offset 0), as Arrow Data. */
function gatherFixed (src: Data, width: number, order: Uint32Array, first: number, m: number): Data {
  let nullBitmap: Uint8Array | undefined
  let nullCount = 0
  if (src.nullCount > 0) {
    const from = src.nullBitmap!
    nullBitmap = new Uint8Array((m + 7) >> 3)
    for (let i = 0; i < m; i++) {
      const o = order[first + i]!
      if ((from[o >> 3]! & (1 << (o & 7))) !== 0) nullBitmap[i >> 3]! |= 1 << (i & 7)
      else nullCount++
    }
    if (nullCount === 0) nullBitmap = undefined
  }
  const values = src.values as Uint8Array | Int32Array | Float32Array | Float64Array | BigInt64Array
  let data: Uint8Array | Int32Array | Float32Array | BigInt64Array
  if (width === 0) {
    const bits = new Uint8Array((m + 7) >> 3)
    const from = values as Uint8Array
    for (let i = 0; i < m; i++) { const o = order[first + i]!; if ((from[o >> 3]! & (1 << (o & 7))) !== 0) bits[i >> 3]! |= 1 << (i & 7) }
    data = bits
  } else if (width === 4) {
    // As 32-bit integers: the bits move unchanged (a float copy could rewrite a NaN's payload).
    const from = new Int32Array(values.buffer, values.byteOffset, src.length)
    const out = new Int32Array(m)
    for (let i = 0; i < m; i++) out[i] = from[order[first + i]!]!
    data = values instanceof Float32Array ? new Float32Array(out.buffer) : out
  } else {
    const from = new Int32Array(values.buffer, values.byteOffset, 2 * src.length)
    const out = new Int32Array(2 * m)
    for (let i = 0; i < m; i++) { const o = 2 * order[first + i]!; out[2 * i] = from[o]!; out[2 * i + 1] = from[o + 1]! }
    // int64 and timestamp may be held as BigInt64Array or as Int32Array pairs: hand back the same kind.
    data = values instanceof Float64Array ? new Float64Array(out.buffer) as never : values instanceof BigInt64Array ? new BigInt64Array(out.buffer) : out
  }
  return makeData({ type: src.type, length: m, nullCount, nullBitmap, data } as never)
}

/** The first row of a utf8 batch equal to the row before it (`prev`: the previous batch's last), if any. */
function adjacentEqual (d: Data<Utf8>, prev: Uint8Array | undefined): number | undefined {
  const o = d.valueOffsets
  const v = d.values
  const same = (a: number, alen: number, bytes: Uint8Array, b: number, blen: number): boolean => {
    if (alen !== blen) return false
    for (let k = 0; k < alen; k++) if (v[a + k] !== bytes[b + k]) return false
    return true
  }
  if (prev !== undefined && d.length > 0 && same(o[0]!, o[1]! - o[0]!, prev, 0, prev.length)) return 0
  for (let i = 1; i < d.length; i++) if (same(o[i]!, o[i + 1]! - o[i]!, v, o[i - 1]!, o[i]! - o[i - 1]!)) return i
  return undefined
}

/**
 * Finds, in the Arrow file just written, each column's buffers in each record batch: the footer
 * gives each batch's block (message offset, metadata length), the batch's message header lists
 * field nodes and buffers (offset, length relative to the body) depth first, which layoutOf
 * splits between the columns. Checked against what was written, so a change in the Arrow writer
 * cannot produce a directory that reads back wrong.
 */
function locateBuffers (bytes: Uint8Array, columns: readonly FileColumn[], rows: readonly number[], zones: Zone[][], path: string): WrittenBatch[] {
  const fail = (reason: string): Error => new Error(`segment ${path}: locating the written Arrow buffers: ${reason}`)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const footerLen = dv.getInt32(bytes.length - 10, true)
  const footer = Footer.decode(bytes.subarray(bytes.length - 10 - footerLen, bytes.length - 10))
  if (footer.numRecordBatches !== rows.length || footer.numDictionaries !== 0) throw fail(`footer lists ${footer.numRecordBatches} batches and ${footer.numDictionaries} dictionaries, ${rows.length} batches written`)
  const out: WrittenBatch[] = []
  let firstRow = 0
  for (let b = 0; b < rows.length; b++) {
    const block = footer.getRecordBatch(b)!
    const at = Number(block.offset)
    // Encapsulated message: 0xFFFFFFFF, int32 metadata length, metadata; the body follows the block's metadata.
    if (dv.getUint32(at, true) !== 0xffffffff) throw fail(`batch ${b} has no continuation marker`)
    const metaLen = dv.getInt32(at + 4, true)
    const message = Message.decode(bytes.subarray(at + 8, at + 8 + metaLen))
    if (!message.isRecordBatch()) throw fail(`block ${b} is not a record batch`)
    const header = message.header()
    if (header.compression !== null) throw fail('compressed body')
    if (Number(header.length) !== rows[b]) throw fail(`batch ${b} holds ${header.length} rows, ${rows[b]} written`)
    const bodyOffset = at + block.metaDataLength
    const nodes = header.nodes
    const buffers = header.buffers
    let ni = 0
    let bi = 0
    const cols: WrittenColumn[] = []
    for (let c = 0; c < columns.length; c++) {
      const l = layoutOf(columns[c]!.type)
      const ns = nodes.slice(ni, ni + l.nodes).map(n => ({ length: Number(n.length), nullCount: Number(n.nullCount) }))
      const bs = buffers.slice(bi, bi + l.buffers).map(x => ({ offset: Number(x.offset), length: Number(x.length) }))
      if (ns.length !== l.nodes || bs.length !== l.buffers) throw fail(`batch ${b} column ${columns[c]!.name}: too few nodes or buffers`)
      ni += l.nodes
      bi += l.buffers
      if (ns[0]!.length !== rows[b]) throw fail(`batch ${b} column ${columns[c]!.name}: ${ns[0]!.length} rows`)
      const span = spanOf(bs)
      cols.push({ nodes: ns, buffers: bs, crc: crc32(bytes.subarray(bodyOffset + span.start, bodyOffset + span.end)), zone: zones[b]![c]! })
    }
    if (ni !== nodes.length || bi !== buffers.length) throw fail(`batch ${b}: ${nodes.length - ni} nodes and ${buffers.length - bi} buffers left over`)
    out.push({ firstRow, rows: rows[b]!, bodyOffset, columns: cols })
    firstRow += rows[b]!
  }
  return out
}

/** The bytes of one column in a batch body: from its first non-empty buffer to its last one's end. */
function spanOf (buffers: ReadonlyArray<{ offset: number, length: number }>): { start: number, end: number } {
  let start = Infinity
  let end = 0
  for (const x of buffers) {
    if (x.length === 0) continue
    if (x.offset < start) start = x.offset
    if (x.offset + x.length > end) end = x.offset + x.length
  }
  return start === Infinity ? { start: 0, end: 0 } : { start, end }
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * One file read at positions, its descriptor kept open between reads but through the FilePool:
 * while no read is in flight the pool may close it for someone else (as wal.ts does), and the
 * next read opens it again.
 */
class PooledFile implements Evictable, KeyIndexSource {
  private fh: FileHandle | undefined
  private opening: Promise<FileHandle> | undefined
  private inflight = 0
  private closed = false
  /** Times the file was opened (the first open, and again after the pool closed it). */
  opens = 0
  reads = 0
  bytesRead = 0

  constructor (readonly path: string, private readonly files: FilePool) {}

  /** `length` bytes at `offset`, fewer at the end of the file; in shared memory (decoded views may keep it). */
  async read (offset: number, length: number): Promise<Uint8Array> {
    if (this.closed) throw new Error(`segment file ${this.path} is closed`)
    this.inflight++
    this.files.markBusy(this)
    try {
      const fh = await this.handle()
      const out = new Uint8Array(new SharedArrayBuffer(length))
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(out, got, length - got, offset + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      this.reads++
      this.bytesRead += got
      return got === length ? out : out.subarray(0, got)
    } finally {
      if (--this.inflight === 0 && this.fh !== undefined && !this.closed) this.files.markIdle(this)
    }
  }

  private async handle (): Promise<FileHandle> {
    if (this.fh !== undefined) return this.fh
    this.opening ??= (async () => {
      await this.files.acquire()
      try {
        this.fh = await open(this.path, 'r')
        this.opens++
        return this.fh
      } catch (err) {
        this.files.release()
        throw err
      } finally {
        this.opening = undefined
      }
    })()
    return await this.opening
  }

  /** Called by the pool only while idle (no read in flight): the slot passes to the pool's caller. */
  async evict (): Promise<void> {
    const fh = this.fh
    this.fh = undefined
    await fh?.close().catch(() => {})
  }

  async close (): Promise<void> {
    this.closed = true
    this.files.markBusy(this)
    await this.opening?.catch(() => {})
    const fh = this.fh
    this.fh = undefined
    if (fh !== undefined) {
      await fh.close().catch(() => {})
      this.files.release()
    }
  }
}

export interface SegmentFileDeps {
  files: FilePool
  cache: BlockCache
}

/**
 * A segment written by writeSegmentFiles, open for reading. Resident: the directory (a few hundred
 * bytes a batch) and the key index's Bloom filter and sparse index; columns are read on demand
 * through the cache. Immutable, so safe for concurrent reads. close() when no read is in flight.
 */
export class SegmentFile {
  private constructor (
    readonly meta: SegmentFileMeta,
    readonly path: string,
    private readonly header: IndexHeader,
    private readonly dir: Directory,
    private readonly arrow: PooledFile,
    private readonly idx: PooledFile,
    /** Rows by id, tombstones and versions, in key order (key-index.ts). */
    readonly keys: KeyIndex,
    private readonly cache: BlockCache
  ) {}

  /** Reads and checks the .idx header, directory and key index (not the rows). */
  static async open (dir: string, meta: SegmentFileMeta, deps: SegmentFileDeps): Promise<SegmentFile> {
    const path = join(dir, meta.file)
    const idxPath = join(dir, meta.index)
    const arrowSize = (await stat(path)).size
    if (arrowSize !== meta.bytes) throw new SegmentCorruptError(path, `holds ${arrowSize} bytes, the manifest says ${meta.bytes}`)
    const idx = new PooledFile(idxPath, deps.files)
    const arrow = new PooledFile(path, deps.files)
    try {
      const idxSize = (await stat(idxPath)).size
      if (idxSize !== meta.indexBytes) throw new SegmentCorruptError(idxPath, `holds ${idxSize} bytes, the manifest says ${meta.indexBytes}`)
      const header = decodeHeader(await idx.read(0, HEADER_BYTES), idxPath, idxSize)
      if (header.rows !== meta.rows) throw new SegmentCorruptError(idxPath, `holds ${header.rows} rows, the manifest says ${meta.rows}`)
      if (header.arrowBytes !== arrowSize) throw new SegmentCorruptError(idxPath, `describes a .arrow file of ${header.arrowBytes} bytes; ${path} holds ${arrowSize}`)
      const dirBytes = await idx.read(HEADER_BYTES, header.dirBytes)
      if (crc32(dirBytes) !== header.dirCrc) throw new SegmentCorruptError(idxPath, 'bad batch directory: CRC mismatch')
      const directory = decodeDirectory(dirBytes, header, idxPath)
      for (const name of ['id', VERSION_COLUMN, DELETED_COLUMN]) {
        if (!directory.columnIndex.has(name)) throw new SegmentCorruptError(idxPath, `no ${name} column`)
      }
      let keys: KeyIndex
      try {
        keys = await KeyIndex.open(idx, header.keyIndexOffset, header.keyIndexBytes, deps.cache, `${idxPath}#keys`)
      } catch (err) {
        if (err instanceof RangeError) throw new SegmentCorruptError(idxPath, `bad key index range: ${err.message}`, { cause: err })
        if (err instanceof KeyIndexCorruptError) throw new SegmentCorruptError(idxPath, `bad key index: ${err.reason} (at byte ${err.offset})`, { cause: err })
        throw err
      }
      if (keys.count !== header.rows) throw new SegmentCorruptError(idxPath, `key index holds ${keys.count} rows, the segment ${header.rows}`)
      // The key index reads its blocks through `idx` later: it stays (its descriptor idle in the pool).
      return new SegmentFile(meta, path, header, directory, arrow, idx, keys, deps.cache)
    } catch (err) {
      await idx.close()
      throw err
    }
  }

  get rows (): number { return this.header.rows }
  get batches (): number { return this.header.batches }
  batchRows (b: number): number { this.checkBatch(b); return this.dir.batchRows[b]! }
  firstRow (b: number): number { this.checkBatch(b); return this.dir.firstRow[b]! }
  /** The column names the file holds (schema columns and the hidden ones), in file order. */
  get columnNames (): string[] { return this.dir.columns.map(c => c.name) }
  hasColumn (name: string): boolean { return this.dir.columnIndex.has(name) }

  /** Bytes held in memory while open: the directory and the key index's resident part. */
  get residentBytes (): number { return directoryBytes(this.dir) + this.keys.residentBytes }

  /** Reads of the .arrow file so far and their bytes (tests, stats). */
  get arrowReads (): { reads: number, bytes: number, opens: number } { return { reads: this.arrow.reads, bytes: this.arrow.bytesRead, opens: this.arrow.opens } }

  /** The zone map of `column` in batch `b`; undefined when the file lacks the column. */
  zone (b: number, column: string): Zone | undefined {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(column)
    if (c === undefined) return undefined
    const k = b * this.dir.columns.length + c
    const nulls = this.dir.nodes[k * MAX_NODES * 2 + 1]!
    switch (this.dir.zoneKind[k]) {
      case 1: return { nulls, min: this.dir.zoneMin[k]!, max: this.dir.zoneMax[k]! }
      case 2: {
        const max = this.dir.strMax.get(k)
        return max === undefined ? { nulls, min: this.dir.strMin.get(k)! } : { nulls, min: this.dir.strMin.get(k)!, max }
      }
      default: return { nulls }
    }
  }

  /**
   * Column `name` of batch `b` (every row of it, tombstones NULL), in the columnar form as `type`
   * (the schema's type; 'null' when the schema has none). A column the file lacks reads as all
   * NULL. Through the block cache; callers must not write into it.
   */
  async column (b: number, name: string, type: ValueType): Promise<ColumnVector> {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(name)
    if (c === undefined || type === 'null') return shareVector(nullVector(type, this.dir.batchRows[b]!))
    if (name === 'id' && type === 'utf8') {
      return await this.cache.getOrLoad(this.key(b, '$idvec'), async () => {
        // Ids are unique: the dictionary is the id array itself, code i for row i (as Segment does).
        const ids = await this.ids(b)
        const codes = new Int32Array(new SharedArrayBuffer(4 * ids.length))
        for (let i = 0; i < ids.length; i++) codes[i] = i
        const v: ColumnVector = { tag: 'str', type: 'utf8', codes, dict: ids }
        // The dictionary is the ids(b) entry's array, counted here too: either entry may outlive
        // the other in the cache, so each counts what it holds (an over-count while both are in).
        return { value: v, bytes: columnVectorBytes(v) }
      })
    }
    return await this.cache.getOrLoad(this.key(b, `${name}:${type}`), async () => {
      const data = await this.readData(b, c)
      const rows = this.dir.batchRows[b]!
      let v: ColumnVector
      try {
        v = decodeColumn(type, makeVector(data), rows, this.path)
      } catch (err) {
        throw new SegmentBlockCorruptError(this.path, b, name, `does not decode as ${type}: ${(err as Error).message}`, { cause: err })
      }
      v = shareVector(v)
      return { value: v, bytes: columnVectorBytes(v) }
    })
  }

  /** The ids of batch `b`, one per row, in key order. */
  async ids (b: number): Promise<string[]> {
    this.checkBatch(b)
    return await this.cache.getOrLoad(this.key(b, '$ids'), async () => {
      const data = await this.readData(b, this.dir.columnIndex.get('id')!)
      const ids = decodeIds([data], this.dir.batchRows[b]!, this.path)
      let bytes = 8 * ids.length
      for (const s of ids) bytes += 16 + 2 * s.length
      return { value: ids, bytes }
    })
  }

  /** The versions (HLCs) of batch `b`'s rows. */
  async versions (b: number): Promise<Float64Array> {
    this.checkBatch(b)
    // Checked once per load: a cache hit returns the same, already checked, array.
    return await this.cache.getOrLoad(this.key(b, '$versions'), async () => {
      const v = await this.column(b, VERSION_COLUMN, 'float64')
      if (v.tag !== 'num') throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, 'not float64')
      for (let i = 0; i < v.values.length; i++) if (v.values[i] !== v.values[i]) throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, `row ${i} has no version`)
      return { value: v.values, bytes: v.values.byteLength }
    })
  }

  /** Whether each row of batch `b` is a tombstone (1) or not (0). */
  async deleted (b: number): Promise<Uint8Array> {
    this.checkBatch(b)
    return await this.cache.getOrLoad(this.key(b, '$deletedbytes'), async () => {
      const v = await this.column(b, DELETED_COLUMN, 'bool')
      if (v.tag !== 'num') throw new SegmentBlockCorruptError(this.path, b, DELETED_COLUMN, 'not bool')
      const out = new Uint8Array(new SharedArrayBuffer(v.values.length))
      for (let i = 0; i < out.length; i++) {
        const x = v.values[i]!
        if (x !== 0 && x !== 1) throw new SegmentBlockCorruptError(this.path, b, DELETED_COLUMN, `row ${i} is ${x}`)
        out[i] = x
      }
      return { value: out, bytes: out.byteLength }
    })
  }

  /** The batch holding segment row `row`. */
  batchOf (row: number): number {
    if (!Number.isInteger(row) || row < 0 || row >= this.header.rows) throw new RangeError(`row ${row} of a segment of ${this.header.rows}`)
    const first = this.dir.firstRow
    let lo = 0
    let hi = this.header.batches - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (first[mid]! <= row) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  /**
   * Column `name` of batch `b` as Arrow (undefined when the file lacks it), through the cache:
   * what records() reads values from exactly (an int64 beyond 2^53 stays a bigint, which the
   * columnar form would round).
   */
  async arrowColumn (b: number, name: string): Promise<Vector | undefined> {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(name)
    if (c === undefined) return undefined
    return await this.cache.getOrLoad(this.key(b, `${name}:arrow`), async () => {
      const data = await this.readData(b, c)
      const { start, end } = this.span(b, c)
      return { value: makeVector(data), bytes: end - start + 256 }
    })
  }

  /**
   * The records at batch-local rows `rows` of batch `b` (every row when undefined), their rows
   * shaped by `schema` (columns the file lacks read as null, tombstones have none): what a get, a
   * scan, anti-entropy and compaction read, value for value as they were written.
   */
  async records (b: number, rows: ArrayLike<number> | undefined, schema: SpaceSchema): Promise<VersionedRecord[]> {
    const [ids, versions, deleted] = await Promise.all([this.ids(b), this.versions(b), this.deleted(b)])
    const cols: Array<{ name: string, type: ColumnType, vec: Vector | undefined }> = []
    for (const c of schema) if (c.name !== 'id') cols.push({ name: c.name, type: c.type, vec: await this.arrowColumn(b, c.name) })
    const n = rows === undefined ? ids.length : rows.length
    const out = new Array<VersionedRecord>(n)
    for (let k = 0; k < n; k++) {
      const i = rows === undefined ? k : rows[k]!
      const id = ids[i]
      if (id === undefined) throw new RangeError(`row ${i} of batch ${b} (${ids.length} rows)`)
      if (deleted[i] === 1) { out[k] = { id, version: versions[i]!, deleted: true, row: null }; continue }
      const row: Row = newRow()
      row.id = id
      for (const c of cols) row[c.name] = c.vec === undefined ? null : fromArrow(c.type, c.vec.get(i))
      out[k] = { id, version: versions[i]!, deleted: false, row }
    }
    return out
  }

  /** Cache keys start with the .arrow path: unique per segment file among the peer's segments. */
  private key (b: number, what: string): string { return `${this.path}#${b}/${what}` }

  private checkBatch (b: number): void {
    if (!Number.isInteger(b) || b < 0 || b >= this.header.batches) throw new RangeError(`batch ${b} of a segment of ${this.header.batches}`)
  }

  /** Where column `name` of batch `b` lies in the .arrow file (diagnostics, tests); undefined if the file lacks it. */
  columnRange (b: number, name: string): { offset: number, length: number } | undefined {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(name)
    if (c === undefined) return undefined
    const { start, end } = this.span(b, c)
    return { offset: this.dir.bodyOffset[b]! + start, length: end - start }
  }

  /** Column `c`'s bytes in batch `b`'s body: first non-empty buffer to the last one's end. */
  private span (b: number, c: number): { start: number, end: number } {
    const d = this.dir
    const bb = (b * d.columns.length + c) * MAX_BUFFERS * 2
    const n = layoutOf(d.columns[c]!.type).buffers
    const bufs: Array<{ offset: number, length: number }> = []
    for (let i = 0; i < n; i++) bufs.push({ offset: d.buffers[bb + 2 * i]!, length: d.buffers[bb + 2 * i + 1]! })
    return spanOf(bufs)
  }

  /** Reads column `c` of batch `b`: exactly its bytes, CRC-checked, rebuilt as Arrow Data. */
  private async readData (b: number, c: number): Promise<Data> {
    const d = this.dir
    const k = b * d.columns.length + c
    const col = d.columns[c]!
    const nb = k * MAX_NODES * 2
    const bb = k * MAX_BUFFERS * 2
    const { start, end } = this.span(b, c)
    const fail = (reason: string): SegmentBlockCorruptError => new SegmentBlockCorruptError(this.path, b, col.name, reason)
    const bytes = end > start ? await this.arrow.read(d.bodyOffset[b]! + start, end - start) : new Uint8Array(0)
    if (bytes.length !== end - start) throw fail(`the file ends ${end - start - bytes.length} bytes early (truncated)`)
    if (crc32(bytes) !== d.crc[k]) throw fail('CRC mismatch')
    return rebuild(col.type, d.nodes, nb, d.buffers, bb, bytes, start, fail)
  }

  async close (): Promise<void> {
    await this.arrow.close()
    await this.idx.close()
  }
}

/**
 * Arrow Data of one field from its buffers (directory offsets relative to the body; `bytes` holds
 * the body from `base`). The directory was checked at open (buffers long enough for the node
 * lengths); the offsets inside are data, checked here, so a bad one is an error, not a read past
 * a buffer.
 */
function rebuild (type: ColumnType, nodes: Float64Array, nb: number, bufs: Float64Array, bb: number, bytes: Uint8Array, base: number, fail: (reason: string) => Error): Data {
  const length = nodes[nb]!
  const nullCount = nodes[nb + 1]!
  const buf = (i: number): Uint8Array => {
    const len = bufs[bb + 2 * i + 1]!
    if (len === 0) return new Uint8Array(0)
    const at = bufs[bb + 2 * i]! - base
    return bytes.subarray(at, at + len)
  }
  const nullBitmap = nullCount > 0 ? buf(0) : undefined
  const t = arrowType(type)
  const elem = listElement(type)
  const dim = vectorDim(type)
  if (elem !== undefined) {
    const child = rebuild(elem, nodes, nb + 2, bufs, bb + 4, bytes, base, fail)
    const valueOffsets = offsetsOf(buf(1), length, child.length, fail)
    return makeData({ type: t as never, length, nullCount, nullBitmap, valueOffsets, child } as never)
  }
  if (dim !== undefined) {
    const child = makeData({ type: new Float32(), length: length * dim, nullCount: 0, data: typed(Float32Array, buf(2), length * dim) })
    return makeData({ type: t as never, length, nullCount, nullBitmap, child } as never)
  }
  switch (type) {
    case 'utf8': {
      const data = buf(2)
      return makeData({ type: t as never, length, nullCount, nullBitmap, valueOffsets: offsetsOf(buf(1), length, data.length, fail), data } as never)
    }
    case 'bool': return makeData({ type: new Bool(), length, nullCount, nullBitmap, data: buf(1) })
    case 'int32': case 'date': return makeData({ type: t as never, length, nullCount, nullBitmap, data: typed(Int32Array, buf(1), length) } as never)
    case 'float32': return makeData({ type: t as never, length, nullCount, nullBitmap, data: typed(Float32Array, buf(1), length) } as never)
    case 'float64': return makeData({ type: t as never, length, nullCount, nullBitmap, data: typed(Float64Array, buf(1), length) } as never)
    case 'int64': case 'timestamp': return makeData({ type: t as never, length, nullCount, nullBitmap, data: typed(BigInt64Array, buf(1), length) } as never)
  }
  throw fail(`no reader for type ${String(type)}`)
}

type TypedCtor<T> = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): T, new (length: number): T, BYTES_PER_ELEMENT: number }

/** `n` elements of `u8` as a typed array: a view when aligned, else a copy. */
function typed<T extends { set (a: T): void }> (Ctor: TypedCtor<T>, u8: Uint8Array, n: number): T {
  if (u8.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(u8.buffer, u8.byteOffset, n)
  const copy = new Uint8Array(n * Ctor.BYTES_PER_ELEMENT)
  copy.set(u8.subarray(0, copy.length))
  return new Ctor(copy.buffer, 0, n)
}

/** The n + 1 offsets of a utf8 or list field: non-decreasing, from >= 0 to <= `limit`. */
function offsetsOf (u8: Uint8Array, n: number, limit: number, fail: (reason: string) => Error): Int32Array {
  const o = typed(Int32Array, u8, n + 1)
  if (o[0]! < 0) throw fail(`offset 0 is ${o[0]}`)
  for (let i = 0; i < n; i++) if (o[i + 1]! < o[i]!) throw fail(`offset ${i + 1} is below offset ${i}`)
  if (o[n]! > limit) throw fail(`last offset ${o[n]} passes the ${limit} values`)
  return o
}
