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
import { join } from 'node:path'
import { Bool, Field, Float32, Float64, Message, MetadataVersion, RecordBatch, Schema, Struct, Utf8, makeData, makeVector, type Data, type Vector } from 'apache-arrow'
import { MAGIC } from 'apache-arrow/ipc/message'
import { FileBlock, Footer } from 'apache-arrow/ipc/metadata/file'
import { RecordBatch as RecordBatchHeader } from 'apache-arrow/ipc/metadata/message'
import { VectorAssembler } from 'apache-arrow/visitor/vectorassembler'
import { shareVector, type BatchLease, type ColumnVector, type ValueType } from '../columnar/index.js'
import { arrowType, listElement, newRow, vectorDim, type ColumnType, type Row, type ScalarType, type SpaceSchema } from '../schema/index.js'
import { columnVectorBytes, groupKey, type BlockCache } from './block-cache.js'
import { crc32 } from './crc32.js'
import { ScratchBuffers } from './scratch.js'
import type { Evictable, FilePool } from './files.js'
import { nodeFileSystem, type FileSystem, type OpenFlags, type RandomAccessFile } from '../runtime/index.js'
import { missingFile, writeAllAt as writeAt } from './fsutil.js'
import {
  compareUtf16Order, encodeKeyIndex, encodeKeyIndexYielding, KeyIndex, KeyIndexCorruptError, keyHashesUtf8, keyIndexColumns, keyOrder, type KeyIndexChunk, type KeyIndexSource
} from './key-index.js'
import {
  DELETED_COLUMN, FORMAT_KEY, SegmentCorruptError, VERSION_COLUMN, buildColumn, decodeColumn, decodeIds, fromArrow, nullVector, segmentFileName, utf8Dictionary,
  type SegmentMeta
} from './segment.js'
import {
  HEADER_BYTES, INDEX_FORMAT, MAX_BUFFERS, MAX_CODED_VALUES, MAX_NODES, MIN_CODED_ROWS, PAGE_BYTES, SegmentBlockCorruptError, pageCount, decodeDirectory,
  decodeHeader, decodeUtf8Codes, directoryBytes, encodeDirectory, encodeHeader, encodeUtf8Codes, layoutOf, zonesByBatch,
  type Directory, type FileColumn, type IndexHeader, type WrittenBatch, type WrittenCodes, type WrittenColumn, type Zone
} from './segment-file-format.js'
import { deletedColumn, gatherColumn, versionColumn, type GatherRows, type GatheredColumn, type SourceColumn } from './segment-gather.js'
import type { VersionedRecord } from './types.js'

export { SegmentBlockCorruptError, type Zone } from './segment-file-format.js'
export type { SourceColumn } from './segment-gather.js'

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
  /** Where the files go (node:fs by default). */
  fs?: FileSystem
  /** When given, each file open for the write takes a slot of it. */
  files?: FilePool
  /**
   * Called with the key order before anything is written: row j of the segment is
   * records[order[j]] (the caller maps its rows to the segment's without sorting again).
   */
  onOrder?: (order: Uint32Array) => void
  /** Store utf8 codes for columns of few distinct values (format 3). Default true; false writes format 2 (tests, benches). */
  utf8Codes?: boolean
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Writes `records` (one per id, tombstones included; any order) as `seg-<id>.arrow` and
 * `seg-<id>.idx` in `dir`, both fsynced, then the directory. Throws on a duplicate id.
 */
export async function writeSegmentFiles (dir: string, id: number, schema: SpaceSchema, records: readonly VersionedRecord[], opts: WriteSegmentOptions = {}): Promise<SegmentFileMeta> {
  const batchRows = checkBatchRows(opts.batchRows ?? DEFAULT_BATCH_ROWS)
  const layout = segmentLayout(schema, id)
  const { columns, arrowName } = layout

  const n = records.length
  const { ids, versions, deleted } = keyIndexColumns(records)
  const order = keyOrder(ids)
  opts.onOrder?.(order)

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
  // In key order, the order encodeKeyIndex reads them in.
  const keyIds = new Array<string>(n)
  const keyVersions = new Float64Array(n)
  const keyDeleted = new Uint8Array(n)
  for (let i = 0; i < n; i++) { const o = order[i]!; keyIds[i] = ids[o]!; keyVersions[i] = versions[o]!; keyDeleted[i] = deleted[o]! }
  const keyIndex = encodeKeyIndex({ ids: keyIds, versions: keyVersions, deleted: keyDeleted })
  const out = await SegmentOutput.create(opts.fs ?? nodeFileSystem, dir, id, layout, batchRows, opts.files, opts.utf8Codes ?? true)
  try {
    for (let b = 0; b < batchCount; b++) {
      await out.append(children[b]!, zones[b]!)
      children[b] = []
    }
    return await out.finish(keyIndex)
  } catch (err) {
    await out.abort()
    throw err
  }
}

function checkBatchRows (batchRows: number): number {
  if (!Number.isInteger(batchRows) || batchRows < 1 || batchRows > 0x7fffffff) throw new RangeError(`batchRows must be an integer from 1 to 2^31 - 1, got ${String(batchRows)}`)
  return batchRows
}

/** The files and columns of segment `id` of a space of `schema`. */
interface SegmentLayout {
  arrowName: string
  idxName: string
  /** The schema's columns, then the hidden $version and $deleted. */
  columns: FileColumn[]
  fields: Field[]
  arrowSchema: Schema
}

function segmentLayout (schema: SpaceSchema, id: number): SegmentLayout {
  const arrowName = segmentFileName(id)
  if (schema.find(c => c.name === 'id')?.type !== 'utf8') throw new Error(`segment ${arrowName}: the schema has no utf8 id column`)
  for (const c of schema) if (c.name.startsWith('$')) throw new Error(`segment ${arrowName}: column ${c.name} collides with the hidden columns`)
  const columns: FileColumn[] = [...schema.map(c => ({ name: c.name, type: c.type })), { name: VERSION_COLUMN, type: 'float64' }, { name: DELETED_COLUMN, type: 'bool' }]
  const fields = columns.map(c => new Field(c.name, arrowType(c.type), c.name !== 'id' && !c.name.startsWith('$')))
  return { arrowName, idxName: segmentIndexFileName(id), columns, fields, arrowSchema: new Schema(fields, new Map([[FORMAT_KEY, SEGMENT_FILE_FORMAT]])) }
}

/** Runs `fn` on `path` opened with `flags`, holding a slot of `files` (when given) while it is open. */
async function withFile<T> (fs: FileSystem, files: FilePool | undefined, path: string, flags: OpenFlags, fn: (fh: RandomAccessFile) => Promise<T>): Promise<T> {
  const run = async (): Promise<T> => {
    const fh = await fs.open(path, flags)
    try {
      return await fn(fh)
    } finally {
      await fh.close()
    }
  }
  return files !== undefined ? await files.run(run) : await run()
}

/** Bytes CRC-checked between two yields of crc32Yielding (about a millisecond). */
const CRC_STEP = 1 << 20

/** crc32(bytes, value), a CRC_STEP at a time with the event loop let in between. */
async function crc32Yielding (bytes: Uint8Array, value: number): Promise<number> {
  let crc = value
  for (let at = 0; at < bytes.length; at += CRC_STEP) {
    if (at > 0) await new Promise(resolve => setImmediate(resolve))
    crc = crc32(bytes.subarray(at, at + CRC_STEP), crc)
  }
  return crc
}

/** Zeros, padding a buffer to its 8-byte region. */
const ZEROS = new Uint8Array(8)

/** Writes `pieces` back to back from `position`: one writev, then piece by piece past a short write. */
async function writePiecesAt (fh: RandomAccessFile, pieces: readonly Uint8Array[], position: number): Promise<void> {
  let total = 0
  for (const p of pieces) total += p.length
  let done = (await fh.writev(pieces as Uint8Array[], position)).bytesWritten
  if (done === total) return
  let at = 0
  for (const p of pieces) {
    if (done < at + p.length) {
      const from = Math.max(0, done - at)
      await writeAt(fh, p.subarray(from), position + at + from)
      done = at + p.length
    }
    at += p.length
  }
}


/**
 * The two files of a segment being written, a record batch at a time: the .arrow file is the Arrow
 * IPC file format exactly as apache-arrow's RecordBatchFileWriter writes it (magic, each batch's
 * message and body, the end-of-stream marker, the footer; the tests compare the bytes with
 * tableToIPC's), appended batch by batch, and each batch's directory entry is taken from the
 * buffers as they are laid out, so the .idx describes exactly what was written. The file is
 * opened for each append and closed again: a compaction reads its inputs through the same pool
 * between appends and must not hold a slot while it waits for another (files.ts).
 */
class SegmentOutput {
  private position = 0
  private crc = 0
  private readonly pages = new PageCrcs(PAGE_BYTES)
  private rows = 0
  private readonly blocks: FileBlock[] = []
  private readonly written: WrittenBatch[] = []
  /**
   * The utf8 codes blocks of the batches appended (format 3), written into the .idx by finish():
   * held until then, 1-2 bytes a row of each coded column (the key index is held the same way).
   */
  private readonly codeBlocks: Uint8Array[] = []
  private codeBytes = 0

  private constructor (private readonly fs: FileSystem, private readonly dir: string, private readonly id: number, private readonly layout: SegmentLayout, private readonly batchRows: number, private readonly files: FilePool | undefined, private readonly utf8Codes: boolean) {}

  private get arrowPath (): string { return join(this.dir, this.layout.arrowName) }

  static async create (fs: FileSystem, dir: string, id: number, layout: SegmentLayout, batchRows: number, files: FilePool | undefined, utf8Codes: boolean): Promise<SegmentOutput> {
    const out = new SegmentOutput(fs, dir, id, layout, batchRows, files, utf8Codes)
    const start = new Uint8Array(8)
    start.set(MAGIC)
    try {
      await withFile(fs, files, out.arrowPath, 'w', async fh => { await out.put(fh, [start]) })
    } catch (err) {
      // A full disk fails the first write after the open made the file: leave nothing behind.
      await out.abort()
      throw err
    }
    return out
  }

  /** Appends one record batch of `children` (one per column, equal lengths, 1 to batchRows) with the columns' zone maps. */
  async append (children: readonly Data[], zones: readonly Zone[]): Promise<void> {
    const { columns, fields, arrowSchema, arrowName } = this.layout
    const rows = children[0]?.length ?? 0
    if (children.length !== columns.length || zones.length !== columns.length) throw new Error(`segment ${arrowName}: a batch of ${children.length} columns and ${zones.length} zones, the file has ${columns.length}`)
    if (rows < 1 || rows > this.batchRows) throw new RangeError(`segment ${arrowName}: a batch of ${rows} rows (1 to ${this.batchRows})`)
    const batch = new RecordBatch(arrowSchema, makeData({ type: new Struct(fields), length: rows, nullCount: 0, children: [...children] }))
    const asm = VectorAssembler.assemble(batch)
    const message = Message.encode(Message.from(new RecordBatchHeader(rows, asm.nodes, asm.bufferRegions, null, asm.variadicBufferCounts), asm.byteLength))
    // Encapsulated message: 0xFFFFFFFF, int32 metadata length, metadata padded to 8 bytes; then the body.
    const metaLength = (message.length + 8 + 7) & ~7
    const head = new Uint8Array(metaLength)
    const dv = new DataView(head.buffer)
    dv.setInt32(0, -1, true)
    dv.setInt32(4, metaLength - 8, true)
    head.set(message, 8)
    // The body as the buffers themselves, each followed by the zeros padding it to its region: written
    // with one writev, not copied into one buffer first (a few MB a batch, ~10 ms in one stretch).
    const regions = asm.bufferRegions
    const buffers = asm.buffers.map((b, i) => {
      const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
      const pad = Number(regions[i]!.length) - bytes.length
      if (pad < 0 || pad > 7) throw new Error(`segment ${arrowName}: a buffer of ${bytes.length} bytes in a region of ${Number(regions[i]!.length)}`)
      return { bytes, pad: ZEROS.subarray(0, pad) }
    })
    let body = 0
    for (let i = 0; i < regions.length; i++) {
      if (Number(regions[i]!.offset) !== body) throw new Error(`segment ${arrowName}: buffer ${i} at ${Number(regions[i]!.offset)} of the body, expected at ${body}`)
      body += Number(regions[i]!.length)
    }
    if (body !== asm.byteLength) throw new Error(`segment ${arrowName}: buffers of ${body} bytes in a body of ${asm.byteLength}`)
    let ni = 0
    let bi = 0
    const cols: WrittenColumn[] = []
    for (let c = 0; c < columns.length; c++) {
      const l = layoutOf(columns[c]!.type)
      const nodes = asm.nodes.slice(ni, ni + l.nodes).map(x => ({ length: Number(x.length), nullCount: Number(x.nullCount) }))
      const bufs = regions.slice(bi, bi + l.buffers).map(x => ({ offset: Number(x.offset), length: Number(x.length) }))
      if (nodes.length !== l.nodes || bufs.length !== l.buffers || nodes[0]!.length !== rows) throw new Error(`segment ${arrowName}: column ${columns[c]!.name} assembled as ${nodes.length} nodes and ${bufs.length} buffers`)
      // The CRC of the column's span: its buffers and their padding, back to back in the body. Empty
      // pieces are skipped: zlib's crc32 of an empty array without memory answers 0, not the CRC so far.
      let crc = 0
      for (let i = bi; i < bi + l.buffers; i++) {
        const { bytes, pad } = buffers[i]!
        if (bytes.length > 0) crc = crc32(bytes, crc)
        if (pad.length > 0) crc = crc32(pad, crc)
      }
      ni += l.nodes
      bi += l.buffers
      cols.push({ nodes, buffers: bufs, crc, zone: zones[c]!, codes: this.codes(columns[c]!, children[c]!) })
    }
    if (ni !== asm.nodes.length || bi !== regions.length) throw new Error(`segment ${arrowName}: ${asm.nodes.length - ni} nodes and ${regions.length - bi} buffers left over`)
    this.blocks.push(new FileBlock(metaLength, asm.byteLength, this.position))
    this.written.push({ firstRow: this.rows, rows, bodyOffset: this.position + metaLength, columns: cols })
    this.rows += rows
    const pieces: Uint8Array[] = [head]
    for (const b of buffers) {
      if (b.bytes.length > 0) pieces.push(b.bytes)
      if (b.pad.length > 0) pieces.push(b.pad)
    }
    await withFile(this.fs, this.files, this.arrowPath, 'r+', async fh => { await this.put(fh, pieces) })
  }

  /**
   * The codes block of a utf8 column's batch when it has few enough distinct values (not the id:
   * every id is distinct), kept for finish(); undefined otherwise.
   */
  private codes (column: FileColumn, data: Data): WrittenCodes | undefined {
    if (!this.utf8Codes || column.type !== 'utf8' || column.name === 'id' || data.length < MIN_CODED_ROWS) return undefined
    // A quarter of the rows at most: past that the block's values would be most of the column again.
    const found = utf8Dictionary(data, Math.min(MAX_CODED_VALUES, Math.floor(data.length / 4)))
    if (found === undefined) return undefined
    const { block, width } = encodeUtf8Codes(found.codes, found.dict)
    const written: WrittenCodes = { offset: this.codeBytes, bytes: block.length, crc: crc32(block), count: found.dict.length, width }
    this.codeBlocks.push(block)
    this.codeBytes += block.length
    return written
  }

  /**
   * Ends the .arrow file (footer) and fsyncs it, writes the .idx (header, directory, `keyIndex`:
   * the key-index section of the rows appended, the utf8 codes blocks) and fsyncs it, then the
   * directory.
   */
  async finish (keyIndex: Uint8Array): Promise<SegmentFileMeta> {
    const { columns, arrowSchema, arrowName, idxName } = this.layout
    const footer = Footer.encode(new Footer(arrowSchema, MetadataVersion.V5, this.blocks, []))
    const tail = new Uint8Array(8 + footer.length + 4 + MAGIC.length)
    const dv = new DataView(tail.buffer)
    dv.setInt32(0, -1, true) // end of stream, for sequential readers
    tail.set(footer, 8)
    dv.setInt32(8 + footer.length, footer.length, true)
    tail.set(MAGIC, 12 + footer.length)
    await withFile(this.fs, this.files, this.arrowPath, 'r+', async fh => {
      await this.put(fh, [tail])
      await fh.sync()
    })
    // Format 2 when no column has codes: the same bytes as before them, readable by older builds.
    const format = this.codeBlocks.length > 0 ? INDEX_FORMAT : 2
    const dirLength = encodeDirectory(columns, this.written, format, 0).length
    const dirBytes = encodeDirectory(columns, this.written, format, HEADER_BYTES + dirLength + keyIndex.length)
    if (dirBytes.length !== dirLength) throw new Error(`segment ${arrowName}: a directory of ${dirBytes.length} bytes, ${dirLength} before the codes were placed`)
    const pageTable = this.pages.finish()
    if (pageTable.length !== 4 * pageCount({ arrowBytes: this.position, pageBytes: PAGE_BYTES })) throw new Error(`segment ${arrowName}: ${pageTable.length / 4} page CRCs for ${this.position} bytes`)
    const header: IndexHeader = {
      format,
      batches: this.written.length,
      columns: columns.length,
      rows: this.rows,
      arrowBytes: this.position,
      dirBytes: dirBytes.length,
      dirCrc: crc32(dirBytes),
      keyIndexOffset: HEADER_BYTES + dirBytes.length,
      keyIndexBytes: keyIndex.length,
      batchRows: this.batchRows,
      pageBytes: PAGE_BYTES,
      pageTableCrc: crc32(pageTable)
    }
    // Written in two parts: a copy of a million rows' key index into one buffer took ~60 ms in one stretch.
    const head = Buffer.concat([encodeHeader(header), dirBytes])
    await withFile(this.fs, this.files, join(this.dir, idxName), 'w', async fh => {
      await writeAt(fh, head, 0)
      await writeAt(fh, keyIndex, head.length)
      if (this.codeBytes > 0) await writePiecesAt(fh, this.codeBlocks, head.length + keyIndex.length)
      await writeAt(fh, pageTable, head.length + keyIndex.length + this.codeBytes)
      await fh.sync()
    })
    let codesCrc = await crc32Yielding(keyIndex, crc32(head))
    for (const block of this.codeBlocks) codesCrc = crc32(block, codesCrc)
    await (this.files !== undefined ? this.files.run(async () => { await this.fs.syncDir(this.dir) }) : this.fs.syncDir(this.dir))
    return {
      id: this.id,
      file: arrowName,
      rows: this.rows,
      bytes: this.position,
      crc32: this.crc,
      index: idxName,
      indexBytes: head.length + keyIndex.length + this.codeBytes + pageTable.length,
      indexCrc32: crc32(pageTable, codesCrc),
      batches: this.written.length
    }
  }

  /** Deletes what was written (a failed write; the manifest never listed it). */
  async abort (): Promise<void> {
    const rmBoth = async (): Promise<void> => {
      await this.fs.unlink(this.arrowPath)
      await this.fs.unlink(join(this.dir, this.layout.idxName))
    }
    await (this.files !== undefined ? this.files.run(rmBoth) : rmBoth()).catch(() => {})
  }

  /** Writes `pieces` back to back at the end of what was written. */
  private async put (fh: RandomAccessFile, pieces: readonly Uint8Array[]): Promise<void> {
    await writePiecesAt(fh, pieces, this.position)
    for (const p of pieces) {
      if (p.length === 0) continue
      this.position += p.length
      this.crc = crc32(p, this.crc)
      this.pages.add(p)
    }
  }
}

/** The CRC-32 of each `pageBytes` page of a file written front to back (the page table of format 2). */
class PageCrcs {
  private table = new Uint8Array(1024)
  private pages = 0
  private crc = 0
  /** Bytes of the current page seen so far. */
  private fill = 0

  constructor (private readonly pageBytes: number) {}

  add (bytes: Uint8Array): void {
    let at = 0
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.pageBytes - this.fill)
      this.crc = crc32(bytes.subarray(at, at + n), this.crc)
      this.fill += n
      at += n
      if (this.fill === this.pageBytes) this.push()
    }
  }

  /** The table, little-endian u32 per page, the last (partial) page included. */
  finish (): Uint8Array {
    if (this.fill > 0) this.push()
    return this.table.subarray(0, 4 * this.pages)
  }

  private push (): void {
    if (4 * (this.pages + 1) > this.table.length) {
      const grown = new Uint8Array(this.table.length * 2)
      grown.set(this.table)
      this.table = grown
    }
    new DataView(this.table.buffer).setUint32(4 * this.pages, this.crc, true)
    this.pages++
    this.crc = 0
    this.fill = 0
  }
}

/** Options of SegmentFileWriter. */
export interface SegmentFileWriterOptions {
  /** Most rows in one record batch, 1 to 2^31 - 1. Default 65,536. */
  batchRows?: number
  /** Where the files go (node:fs by default). */
  fs?: FileSystem
  /** When given, each file open for the write takes a slot of it (one at a time, never held between calls). */
  files?: FilePool
}

/**
 * Writes a segment's files from rows of other segments added in key order (a compaction's
 * merge), a record batch at a time. A batch of another segment that rows come from is registered
 * with `source` (its columns as Arrow data, the id's included); `addFrom` adds one of its rows;
 * when it answers true a batch is full, and `writeBatch` gathers the batch's columns from the
 * sources' bytes (segment-gather.ts: no value decoded, no string made, no object per row) and
 * appends it before more are added. Files read by SegmentFile.open exactly as writeSegmentFiles'
 * (same Arrow file, directory, key index and meta, byte for byte, for the same records).
 *
 * Memory: the sources of the pending batch (each a batch of another segment, which that segment's
 * reader holds in the block cache anyway) and 25 bytes a pending row; then, for the key index, per
 * row written its id as written in the batch (UTF-8 and an offset) and 17 bytes (hashes, version,
 * flag), until finish(): the key-index section is encoded whole there (encodeKeyIndex needs every
 * entry: its Bloom filter is sized by the row count and its sparse index precedes the blocks), in
 * steps.
 */
export class SegmentFileWriter {
  /** The key-index rows of the batches written: a chunk a batch, its ids the id column as written. */
  private readonly written: KeyIndexChunk[] = []
  private writtenRows = 0
  /** The pending batch: per row its source and row there, its key hashes, version and flag. */
  private pending = 0
  private slot = new Uint32Array(1024)
  private from = new Uint32Array(1024)
  private hashes = new Uint32Array(1024)
  private bloomHashes = new Uint32Array(1024)
  private versions = new Float64Array(1024)
  private deleted = new Uint8Array(1024)
  private sources: Array<ReadonlyMap<string, SourceColumn>> = []
  /** The sources' id columns: offsets and UTF-8. */
  private idOffsets: Int32Array[] = []
  private idBytes: Uint8Array[] = []
  /** The last row added (its id, lastBytes[lastStart, lastEnd), and key hash): the next must follow it in key order. */
  private lastBytes: Uint8Array | undefined
  private lastStart = 0
  private lastEnd = 0
  private lastHash = 0
  private readonly keyHashes = new Uint32Array(2)
  private done = false
  /** A batch is being gathered from the pending rows' buffers: no row may be added meanwhile. */
  private writing = false
  /** Batches written so far: a source registered before the last writeBatch() must be registered again. */
  batchesWritten = 0
  /** Oldest tombstone version among the rows added (Infinity if none). */
  oldestTombstone = Infinity

  private constructor (private readonly out: SegmentOutput, private readonly layout: SegmentLayout, readonly batchRows: number) {}

  /** Creates `seg-<id>.arrow` in `dir` (its first bytes); rows follow with addFrom(). */
  static async create (dir: string, id: number, schema: SpaceSchema, opts: SegmentFileWriterOptions = {}): Promise<SegmentFileWriter> {
    const batchRows = checkBatchRows(opts.batchRows ?? DEFAULT_BATCH_ROWS)
    const layout = segmentLayout(schema, id)
    return new SegmentFileWriter(await SegmentOutput.create(opts.fs ?? nodeFileSystem, dir, id, layout, batchRows, opts.files, true), layout, batchRows)
  }

  /** Rows added so far. */
  get rows (): number { return this.writtenRows + this.pending }

  /**
   * Registers a batch of `rows` rows of another segment that rows will come from, until the next
   * writeBatch(): `columns` by name, each with its type in that segment's file: the id (utf8, no
   * NULL) and the schema's other columns (one missing reads as NULL). Returns its number for
   * addFrom().
   */
  source (rows: number, columns: ReadonlyMap<string, SourceColumn>): number {
    const name = this.layout.arrowName
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`segment ${name}: a source of ${rows} rows`)
    for (const [column, c] of columns) {
      // SegmentFile.arrowColumn's data: one chunk from row 0 (the gathers index it directly).
      if (c.data.length !== rows || c.data.offset !== 0) throw new Error(`segment ${name}: source column ${column} of ${c.data.length} rows at offset ${c.data.offset}, the source has ${rows}`)
      if (c.data.nullCount > 0 && c.data.nullBitmap === undefined) throw new Error(`segment ${name}: source column ${column} has ${c.data.nullCount} NULLs and no validity bits`)
    }
    const id = columns.get('id')
    if (id?.type !== 'utf8' || id.data.nullCount !== 0 || !(id.data.valueOffsets instanceof Int32Array) || !(id.data.values instanceof Uint8Array)) throw new Error(`segment ${name}: a source without a utf8 id column free of NULLs`)
    this.sources.push(columns)
    this.idOffsets.push(id.data.valueOffsets)
    this.idBytes.push(id.data.values)
    return this.sources.length - 1
  }

  /**
   * Adds row `row` of source `source` as the next row, with its `version` and `deleted` flag (the
   * caller's key for it; a tombstone takes no values). Throws unless its id follows the previous
   * row's in key order (compareKeys), or when a full batch waits for writeBatch(). True: the batch
   * is full, call writeBatch().
   */
  addFrom (source: number, row: number, version: number, deleted: boolean): boolean {
    const name = this.layout.arrowName
    if (this.done) throw new Error(`segment ${name}: addFrom() after finish()`)
    if (this.writing) throw new Error(`segment ${name}: addFrom() while writeBatch() runs`)
    const k = this.pending
    if (k >= this.batchRows) throw new Error(`segment ${name}: a full batch of ${this.batchRows} rows waits for writeBatch()`)
    if (!(source >= 0 && source < this.sources.length)) throw new RangeError(`segment ${name}: source ${source} of the ${this.sources.length} registered since the last batch`)
    const offsets = this.idOffsets[source]!
    if (!(row >= 0 && row < offsets.length - 1)) throw new RangeError(`segment ${name}: row ${row} of a source of ${offsets.length - 1}`)
    const bytes = this.idBytes[source]!
    const start = offsets[row]!
    const end = offsets[row + 1]!
    keyHashesUtf8(bytes, start, end, this.keyHashes)
    const h = this.keyHashes[0]!
    const last = this.lastBytes
    if (last !== undefined && (h < this.lastHash || (h === this.lastHash && compareUtf16Order(last, this.lastStart, this.lastEnd, bytes, start, end) >= 0))) {
      const text = (b: Uint8Array, s: number, e: number): string => JSON.stringify(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8', s, e))
      const same = h === this.lastHash && compareUtf16Order(last, this.lastStart, this.lastEnd, bytes, start, end) === 0
      throw new RangeError(`segment ${name}: row ${this.rows}, id ${text(bytes, start, end)}, does not follow ${text(last, this.lastStart, this.lastEnd)} in key order${same ? ' (a duplicate id)' : ''}`)
    }
    if (k === this.slot.length) this.grow(Math.min(2 * k, this.batchRows))
    this.slot[k] = source
    this.from[k] = row
    this.hashes[k] = h
    this.bloomHashes[k] = this.keyHashes[1]!
    this.versions[k] = version
    this.deleted[k] = deleted ? 1 : 0
    this.pending++
    if (deleted && version < this.oldestTombstone) this.oldestTombstone = version
    this.lastBytes = bytes
    this.lastStart = start
    this.lastEnd = end
    this.lastHash = h
    return k + 1 === this.batchRows
  }

  private grow (size: number): void {
    const slot = new Uint32Array(size); slot.set(this.slot); this.slot = slot
    const from = new Uint32Array(size); from.set(this.from); this.from = from
    const h = new Uint32Array(size); h.set(this.hashes); this.hashes = h
    const bh = new Uint32Array(size); bh.set(this.bloomHashes); this.bloomHashes = bh
    const v = new Float64Array(size); v.set(this.versions); this.versions = v
    const d = new Uint8Array(size); d.set(this.deleted); this.deleted = d
  }

  /**
   * Gathers the pending rows' columns from their sources and appends them as one record batch
   * (nothing when none are pending), yielding to the event loop every GATHER_STEP rows of a column.
   * The sources are forgotten: rows added next need sources registered again.
   */
  async writeBatch (): Promise<void> {
    const m = this.pending
    if (m === 0) return
    if (this.writing) throw new Error(`segment ${this.layout.arrowName}: writeBatch() while one runs`)
    this.writing = true
    const versions = this.versions.slice(0, m)
    const deleted = this.deleted.slice(0, m)
    const rows: GatherRows = { length: m, slot: this.slot.subarray(0, m), row: this.from.subarray(0, m), deleted }
    const sources = this.sources
    const children: Data[] = []
    const zones: Zone[] = []
    let ids: Data | undefined
    for (const c of this.layout.columns) {
      let col: GatheredColumn
      if (c.name === VERSION_COLUMN) col = versionColumn(versions)
      else if (c.name === DELETED_COLUMN) col = deletedColumn(deleted)
      // A tombstone has an id: the id column takes every row.
      else if (c.name === 'id') col = await stepped(gatherColumn('utf8', sources.map(s => s.get('id')), { ...rows, deleted: new Uint8Array(m) }))
      else col = await stepped(gatherColumn(c.type, sources.map(s => s.get(c.name)), rows))
      if (col.data.length !== m || col.data.nullCount !== col.zone.nulls) throw new Error(`segment ${this.layout.arrowName}: column ${c.name}: ${col.data.length} rows with ${col.data.nullCount} NULLs built, ${m} with ${col.zone.nulls} counted`)
      if (c.name === 'id') ids = col.data
      children.push(col.data)
      zones.push(col.zone)
      await yieldToLoop()
    }
    if (ids === undefined || ids.nullCount !== 0) throw new Error(`segment ${this.layout.arrowName}: a batch without its ids`)
    // The batch is built: its rows' sources may go (the last row's id stays until the next is
    // added, to check their order), and the next batch starts empty.
    this.written.push({
      idOffsets: ids.valueOffsets as Int32Array,
      idBytes: ids.values as Uint8Array,
      hashes: this.hashes.slice(0, m),
      bloomHashes: this.bloomHashes.slice(0, m),
      versions,
      deleted
    })
    this.writtenRows += m
    this.pending = 0
    this.sources = []
    this.idOffsets = []
    this.idBytes = []
    this.batchesWritten++
    this.writing = false
    await this.out.append(children, zones)
  }

  /** Writes the pending rows, the footer and the .idx, fsyncs both files and the directory. */
  async finish (): Promise<SegmentFileMeta> {
    if (this.done) throw new Error(`segment ${this.layout.arrowName}: finish() twice`)
    await this.writeBatch()
    this.done = true
    const keyIndex = await encodeKeyIndexYielding({ chunks: this.written })
    this.written.length = 0
    return await this.out.finish(keyIndex)
  }

  /** Gives the write up and deletes its files. */
  async abort (): Promise<void> {
    this.done = true
    this.sources = []
    this.idOffsets = []
    this.idBytes = []
    this.written.length = 0
    await this.out.abort()
  }
}

function yieldToLoop (): Promise<void> { return new Promise(resolve => setImmediate(resolve)) }

/** Runs a gather's steps, letting the event loop in between. */
async function stepped<T> (steps: Generator<undefined, T>): Promise<T> {
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
    await yieldToLoop()
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

/** A file's size; ENOENT (as node's stat) when it is missing. */
async function sizeOf (fs: FileSystem, path: string): Promise<number> {
  const st = await fs.stat(path)
  if (st === undefined) throw missingFile(path, 'stat')
  return st.size
}

/** Reads up to this size are made synchronously (see PooledFile.read). */
const SYNC_READ_MAX_BYTES = 16 << 10

/** Reads `length` bytes at `offset` into `buf` in place; fewer at the end of the file. Answers how many. */
function readFullySync (fs: FileSystem, fh: RandomAccessFile, buf: Uint8Array, length: number, offset: number): number {
  let got = 0
  while (got < length) {
    const n = fs.readSync(fh, buf, got, length - got, offset + got)
    if (n === 0) break
    got += n
  }
  return got
}

/** Reads in place of a PooledFile (syncReader): `(offset, length)` → a view valid until the next read. */
export interface SyncReader {
  (offset: number, length: number): Uint8Array
  done: () => void
}

/**
 * The buffer sync readers read into, reused: a fresh 4 KiB buffer a read cost ~2.5 µs here, as
 * much as the read. Grows to at most SYNC_SCRATCH_KEEP_BYTES; a longer read gets its own buffer.
 */
const syncScratch = {
  buf: new Uint8Array(64 << 10),
  take (length: number): Uint8Array {
    if (length <= this.buf.length) return this.buf
    if (length > SYNC_SCRATCH_KEEP_BYTES) return new Uint8Array(length)
    this.buf = new Uint8Array(Math.min(SYNC_SCRATCH_KEEP_BYTES, 2 ** Math.ceil(Math.log2(length))))
    return this.buf
  }
}
const SYNC_SCRATCH_KEEP_BYTES = 1 << 20

/**
 * One file read at positions, its descriptor kept open between reads but through the FilePool:
 * while no read is in flight the pool may close it for someone else (as wal.ts does), and the
 * next read opens it again.
 */
class PooledFile implements Evictable, KeyIndexSource {
  private fh: RandomAccessFile | undefined
  private opening: Promise<RandomAccessFile> | undefined
  private inflight = 0
  private closed = false
  /** Times the file was opened (the first open, and again after the pool closed it). */
  opens = 0
  reads = 0
  bytesRead = 0

  constructor (private readonly fs: FileSystem, readonly path: string, private readonly files: FilePool) {}

  /**
   * `length` bytes at `offset`, fewer at the end of the file: into `into` (at least `length`
   * long) when given, else into new memory (shared above SYNC_READ_MAX_BYTES).
   */
  async read (offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) throw new Error(`segment file ${this.path} is closed`)
    if (into !== undefined && into.length < length) throw new RangeError(`a read of ${length} bytes into a buffer of ${into.length}`)
    this.inflight++
    this.files.markBusy(this)
    try {
      const fh = this.fh ?? await this.handle()
      const small = length <= SYNC_READ_MAX_BYTES
      // Shared memory costs ~2 µs more to make than a plain buffer: only large reads (column
      // blocks whose decoded views go to the query workers as they are) get it; shareVector
      // copies a small block's views into shared memory when they are handed on.
      const out = into !== undefined ? into.subarray(0, length) : small ? new Uint8Array(length) : new Uint8Array(new SharedArrayBuffer(length))
      let got = 0
      if (small) {
        // A small read is served in place, as a memory-mapped store serves a page fault: through
        // the thread pool it cost ~35 µs here against ~3.5 µs for the read itself (page cache),
        // which is most of a point get. A page not in the OS cache blocks the loop for one disk
        // read of at most SYNC_READ_MAX_BYTES (docs/architecture.md, "Disk-resident segments").
        got = readFullySync(this.fs, fh, out, length, offset)
      } else {
        while (got < length) {
          const { bytesRead } = await fh.read(out, got, length - got, offset + got)
          if (bytesRead === 0) break
          got += bytesRead
        }
      }
      this.reads++
      this.bytesRead += got
      return got === length ? out : out.subarray(0, got)
    } finally {
      this.idle()
    }
  }

  /**
   * A reader of this file in place (readSync) for a run of small synchronous reads, the file
   * open and kept from the pool until done(). Each read returns a view of a scratch buffer shared
   * by all files, valid until the next read: callers use it before they yield.
   */
  async syncReader (): Promise<SyncReader> {
    if (this.closed) throw new Error(`segment file ${this.path} is closed`)
    this.inflight++
    this.files.markBusy(this)
    let fh: RandomAccessFile
    try {
      fh = this.fh ?? await this.handle()
    } catch (err) {
      this.idle()
      throw err
    }
    let open = true
    const read = (offset: number, length: number): Uint8Array => {
      if (!open) throw new Error(`a sync reader of ${this.path} used after done()`)
      const buf = syncScratch.take(length)
      const got = readFullySync(this.fs, fh, buf, length, offset)
      this.reads++
      this.bytesRead += got
      return buf.subarray(0, got)
    }
    return Object.assign(read, { done: () => { if (open) { open = false; this.idle() } } })
  }

  private idle (): void {
    if (--this.inflight === 0 && this.fh !== undefined && !this.closed) this.files.markIdle(this)
  }

  private async handle (): Promise<RandomAccessFile> {
    if (this.fh !== undefined) return this.fh
    this.opening ??= (async () => {
      await this.files.acquire()
      try {
        this.fh = await this.fs.open(this.path, 'r')
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
  /** Where the files are (node:fs by default). */
  fs?: FileSystem
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
    private readonly cache: BlockCache,
    /** CRC-32 of each page of the .arrow file (header.pageBytes each); empty for a format-1 file. */
    private readonly pageCrcs: Uint32Array
  ) {}

  /** Reads and checks the .idx header, directory and key index (not the rows). */
  static async open (dir: string, meta: SegmentFileMeta, deps: SegmentFileDeps): Promise<SegmentFile> {
    const path = join(dir, meta.file)
    const idxPath = join(dir, meta.index)
    const fs = deps.fs ?? nodeFileSystem
    const arrowSize = await sizeOf(fs, path)
    if (arrowSize !== meta.bytes) throw new SegmentCorruptError(path, `holds ${arrowSize} bytes, the manifest says ${meta.bytes}`)
    const idx = new PooledFile(fs, idxPath, deps.files)
    const arrow = new PooledFile(fs, path, deps.files)
    try {
      const idxSize = await sizeOf(fs, idxPath)
      if (idxSize !== meta.indexBytes) throw new SegmentCorruptError(idxPath, `holds ${idxSize} bytes, the manifest says ${meta.indexBytes}`)
      const header = decodeHeader(await idx.read(0, HEADER_BYTES), idxPath, idxSize)
      if (header.rows !== meta.rows) throw new SegmentCorruptError(idxPath, `holds ${header.rows} rows, the manifest says ${meta.rows}`)
      if (header.arrowBytes !== arrowSize) throw new SegmentCorruptError(idxPath, `describes a .arrow file of ${header.arrowBytes} bytes; ${path} holds ${arrowSize}`)
      const dirBytes = await idx.read(HEADER_BYTES, header.dirBytes)
      if (crc32(dirBytes) !== header.dirCrc) throw new SegmentCorruptError(idxPath, 'bad batch directory: CRC mismatch')
      const directory = decodeDirectory(dirBytes, header, idxPath, idxSize)
      for (const name of ['id', VERSION_COLUMN, DELETED_COLUMN]) {
        if (!directory.columnIndex.has(name)) throw new SegmentCorruptError(idxPath, `no ${name} column`)
      }
      let keys: KeyIndex
      try {
        keys = await KeyIndex.open(idx, header.keyIndexOffset, header.keyIndexBytes, deps.cache, groupKey(idxPath, 'keys'))
      } catch (err) {
        if (err instanceof RangeError) throw new SegmentCorruptError(idxPath, `bad key index range: ${err.message}`, { cause: err })
        if (err instanceof KeyIndexCorruptError) throw new SegmentCorruptError(idxPath, `bad key index: ${err.reason} (at byte ${err.offset})`, { cause: err })
        throw err
      }
      if (keys.count !== header.rows) throw new SegmentCorruptError(idxPath, `key index holds ${keys.count} rows, the segment ${header.rows}`)
      const pages = pageCount(header)
      const table = pages === 0 ? new Uint8Array(0) : await idx.read(idxSize - 4 * pages, 4 * pages)
      if (table.length !== 4 * pages) throw new SegmentCorruptError(idxPath, 'the file ends inside the page table')
      if (pages > 0 && crc32(table) !== header.pageTableCrc) throw new SegmentCorruptError(idxPath, 'bad page table: CRC mismatch')
      const pageCrcs = new Uint32Array(pages)
      const tdv = new DataView(table.buffer, table.byteOffset, table.byteLength)
      for (let p = 0; p < pages; p++) pageCrcs[p] = tdv.getUint32(4 * p, true)
      // The key index reads its blocks through `idx` later: it stays (its descriptor idle in the pool).
      return new SegmentFile(meta, path, header, directory, arrow, idx, keys, deps.cache, pageCrcs)
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
  /** The type column `name` has in this file (the schema's when it was written); undefined when the file lacks it. */
  columnType (name: string): ColumnType | undefined {
    const c = this.dir.columnIndex.get(name)
    return c === undefined ? undefined : this.dir.columns[c]!.type
  }

  /** Bytes held in memory while open: the directory and the key index's resident part. */
  get residentBytes (): number { return directoryBytes(this.dir) + this.keys.residentBytes + this.pageCrcs.byteLength }

  /** Reads of the .arrow file so far and their bytes (tests, stats). */
  get arrowReads (): { reads: number, bytes: number, opens: number } { return { reads: this.arrow.reads, bytes: this.arrow.bytesRead, opens: this.arrow.opens } }
  /** Reads of the .idx file after its open (key-index blocks, utf8 codes) and their bytes (tests, stats). */
  get idxReads (): { reads: number, bytes: number } { return { reads: this.idx.reads, bytes: this.idx.bytesRead } }

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
  async column (b: number, name: string, type: ValueType, lease?: BatchLease): Promise<ColumnVector> {
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
    const k = b * this.dir.columns.length + c
    if (type === 'utf8' && this.dir.codeWidth[k] !== undefined && this.dir.codeWidth[k] !== 0) {
      return await this.cache.getOrLoad(this.key(b, `${name}:${type}`), async () => await this.loadCodes(b, c), lease)
    }
    return await this.cache.getOrLoad(this.key(b, `${name}:${type}`), async () => {
      // Decoding copies every type but float64 without NULLs and float vectors (views of the
      // bytes read): the others are read into a borrowed buffer (see scratch). The shared memory
      // decoded into (or, for a view, read into) comes from the cache, which recycles it once
      // the vector is out of the cache and no lease holds it (BlockCache.allocShared).
      const views = type === 'float64' && this.zone(b, name)?.nulls === 0
      const copies = !views && vectorDim(type) === undefined && listElement(type) === undefined
      const { start, end } = this.span(b, c)
      const borrowed = copies ? scratch.take(end - start) : undefined
      const reusable: SharedArrayBuffer[] = []
      const alloc = (bytes: number): SharedArrayBuffer => {
        const buf = this.cache.allocShared(bytes)
        reusable.push(buf)
        return buf
      }
      try {
        const into = views && end > start ? new Uint8Array(alloc(end - start)) : borrowed
        const data = await this.readData(b, c, into)
        const rows = this.dir.batchRows[b]!
        let v: ColumnVector
        try {
          v = decodeColumn(type, makeVector(data), rows, this.path, alloc)
        } catch (err) {
          throw new SegmentBlockCorruptError(this.path, b, name, `does not decode as ${type}: ${(err as Error).message}`, { cause: err })
        }
        v = shareVector(v)
        return { value: v, bytes: columnVectorBytes(v), reusable }
      } finally {
        if (borrowed !== undefined) scratch.give(borrowed)
      }
    }, lease)
  }

  /**
   * A utf8 column of batch `b` from its codes block in the .idx (format 3) instead of its Arrow
   * bytes: no string decoded a row, the codes widened into the cache's shared memory.
   */
  private async loadCodes (b: number, c: number): Promise<{ value: ColumnVector, bytes: number, reusable: SharedArrayBuffer[] }> {
    const d = this.dir
    const k = b * d.columns.length + c
    const rows = d.batchRows[b]!
    const length = d.codeBytes[k]!
    const fail = (reason: string): SegmentBlockCorruptError => new SegmentBlockCorruptError(this.idx.path, b, d.columns[c]!.name, `utf8 codes: ${reason}`)
    const borrowed = scratch.take(length)
    const reusable: SharedArrayBuffer[] = []
    try {
      const block = await this.idx.read(d.codeOffset[k]!, length, borrowed)
      if (block.length !== length) throw fail(`the file ends ${length - block.length} bytes early (truncated)`)
      if (crc32(block) !== d.codeCrc[k]) throw fail('CRC mismatch')
      const { codes, dict } = decodeUtf8Codes(block, rows, d.codeCount[k]!, d.codeWidth[k]!, bytes => {
        const buf = this.cache.allocShared(bytes)
        reusable.push(buf)
        return buf
      }, fail)
      const v = shareVector({ tag: 'str', type: 'utf8', codes, dict })
      return { value: v, bytes: columnVectorBytes(v), reusable }
    } finally {
      scratch.give(borrowed)
    }
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

  /** The versions (HLCs) of batch `b`'s rows (`transient`: as arrowColumn's). */
  async versions (b: number, opts: { transient?: boolean } = {}): Promise<Float64Array> {
    this.checkBatch(b)
    const key = this.key(b, '$versions')
    if (opts.transient === true) return this.cache.get<Float64Array>(key) ?? this.checkedVersions(b, await this.columnPastCache(b, VERSION_COLUMN, 'float64'))
    // Checked once per load: a cache hit returns the same, already checked, array.
    return await this.cache.getOrLoad(key, async () => {
      const values = this.checkedVersions(b, await this.column(b, VERSION_COLUMN, 'float64'))
      return { value: values, bytes: values.byteLength }
    })
  }

  private checkedVersions (b: number, v: ColumnVector): Float64Array {
    if (v.tag !== 'num') throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, 'not float64')
    for (let i = 0; i < v.values.length; i++) if (v.values[i] !== v.values[i]) throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, `row ${i} has no version`)
    return v.values
  }

  /** Whether each row of batch `b` is a tombstone (1) or not (0) (`transient`: as arrowColumn's). */
  async deleted (b: number, opts: { transient?: boolean } = {}): Promise<Uint8Array> {
    this.checkBatch(b)
    const key = this.key(b, '$deletedbytes')
    if (opts.transient === true) return this.cache.get<Uint8Array>(key) ?? this.checkedFlags(b, await this.columnPastCache(b, DELETED_COLUMN, 'bool'))
    return await this.cache.getOrLoad(key, async () => {
      const out = this.checkedFlags(b, await this.column(b, DELETED_COLUMN, 'bool'))
      return { value: out, bytes: out.byteLength }
    })
  }

  private checkedFlags (b: number, v: ColumnVector): Uint8Array {
    if (v.tag !== 'num') throw new SegmentBlockCorruptError(this.path, b, DELETED_COLUMN, 'not bool')
    const out = new Uint8Array(new SharedArrayBuffer(v.values.length))
    for (let i = 0; i < out.length; i++) {
      const x = v.values[i]!
      if (x !== 0 && x !== 1) throw new SegmentBlockCorruptError(this.path, b, DELETED_COLUMN, `row ${i} is ${x}`)
      out[i] = x
    }
    return out
  }

  /** Column `name` (which the file holds) of batch `b` decoded into new memory, neither read from the cache nor kept there. */
  private async columnPastCache (b: number, name: string, type: ValueType): Promise<ColumnVector> {
    const data = await this.readData(b, this.dir.columnIndex.get(name)!)
    try {
      return decodeColumn(type, makeVector(data), this.dir.batchRows[b]!, this.path)
    } catch (err) {
      throw new SegmentBlockCorruptError(this.path, b, name, `does not decode as ${type}: ${(err as Error).message}`, { cause: err })
    }
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
   * Column `name` of batch `b` as Arrow (undefined when the file lacks it), through the cache
   * (`transient`: taken from it when there, else read and not kept): what records() and
   * compactions read values from exactly (an int64 beyond 2^53 stays a bigint, which the
   * columnar form would round).
   */
  async arrowColumn (b: number, name: string, opts: { transient?: boolean } = {}): Promise<Vector | undefined> {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(name)
    if (c === undefined) return undefined
    const key = this.key(b, `${name}:arrow`)
    if (opts.transient === true) {
      // Read once and not kept (a compaction's inputs): the cache keeps what queries and reads
      // use instead of filling up with columns nothing reads again, as RocksDB's compactions
      // read with fill_cache off.
      return this.cache.get<Vector>(key) ?? makeVector(await this.readData(b, c))
    }
    return await this.cache.getOrLoad(key, async () => {
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

  /**
   * The values of row `i` of batch `b` for `columns` (null where the file lacks a column), as
   * records() gives them, reading only the pages that hold them: the validity bit, the value (a
   * utf8's two offsets, then its bytes), each page checked against the page table. A point get's
   * read: a few 4 KiB pages where records() reads the batch's whole column blocks. The pages are
   * not kept: the OS page cache keeps them, and a fresh buffer per page cost more than its read.
   * Lists and vectors, and files without a page table (format 1), read their column block.
   */
  async rowValues (b: number, i: number, columns: ReadonlyArray<{ name: string, type: ColumnType }>): Promise<unknown[]> {
    this.checkBatch(b)
    if (!Number.isInteger(i) || i < 0 || i >= this.dir.batchRows[b]!) throw new RangeError(`row ${i} of batch ${b} (${this.dir.batchRows[b]!} rows)`)
    const out = new Array<unknown>(columns.length)
    const fromPages: number[] = []
    const fromBlocks: number[] = []
    for (let k = 0; k < columns.length; k++) {
      const { name, type } = columns[k]!
      const c = this.dir.columnIndex.get(name)
      if (c === undefined) out[k] = null
      else if (this.pageCrcs.length === 0 || listElement(type) !== undefined || vectorDim(type) !== undefined) fromBlocks.push(k)
      else fromPages.push(k)
    }
    if (fromPages.length > 0) {
      // From here on synchronous: the scratch buffer the pages are read into is shared.
      const read = await this.arrow.syncReader()
      try {
        for (const k of fromPages) {
          const { name, type } = columns[k]!
          const v = this.valueAt(read, b, this.dir.columnIndex.get(name)!, i, type as ScalarType)
          // A page failing its check may hold another column's damaged bytes, not this one's:
          // its block's own CRC tells (and names the column that is damaged).
          if (v === PAGE_MISMATCH) fromBlocks.push(k)
          else out[k] = v
        }
      } finally {
        read.done()
      }
    }
    for (const k of fromBlocks) {
      const { name, type } = columns[k]!
      const vec = await this.arrowColumn(b, name)
      out[k] = vec === undefined ? null : fromArrow(type, vec.get(i))
    }
    return out
  }

  /** Row `i` of scalar column `c` in batch `b`, from its pages (see rowValues); PAGE_MISMATCH when a page fails its check. */
  private valueAt (read: SyncReader, b: number, c: number, i: number, type: ScalarType): unknown {
    // Offsets out of their bounds are reported as the block's, as a column read reports them.
    const fail = (reason: string): SegmentBlockCorruptError => new SegmentBlockCorruptError(this.path, b, this.dir.columns[c]!.name, reason)
    const bytes = (offset: number, length: number): DataView => {
      const view = this.fileBytes(read, offset, length, fail)
      if (view === undefined) throw PAGE_MISMATCH
      return view
    }
    try {
      return this.valueFromPages(bytes, b, c, i, type, fail)
    } catch (err) {
      if (err === PAGE_MISMATCH) return PAGE_MISMATCH
      throw err
    }
  }

  private valueFromPages (bytes: (offset: number, length: number) => DataView, b: number, c: number, i: number, type: ScalarType, fail: (reason: string) => SegmentBlockCorruptError): unknown {
    const d = this.dir
    const k = b * d.columns.length + c
    const bb = k * MAX_BUFFERS * 2
    const body = d.bodyOffset[b]!
    const at = (buffer: number): number => body + d.buffers[bb + 2 * buffer]!
    if (d.nodes[k * MAX_NODES * 2 + 1]! > 0 && (bytes(at(0) + (i >> 3), 1).getUint8(0) & (1 << (i & 7))) === 0) return null
    switch (type) {
      case 'bool': return (bytes(at(1) + (i >> 3), 1).getUint8(0) & (1 << (i & 7))) !== 0
      case 'int32': case 'date': return bytes(at(1) + 4 * i, 4).getInt32(0, true)
      case 'float32': return bytes(at(1) + 4 * i, 4).getFloat32(0, true)
      case 'float64': return bytes(at(1) + 8 * i, 8).getFloat64(0, true)
      case 'timestamp': return Number(bytes(at(1) + 8 * i, 8).getBigInt64(0, true))
      case 'int64': {
        const v = bytes(at(1) + 8 * i, 8).getBigInt64(0, true)
        return v >= SAFE_MIN_BIG && v <= SAFE_MAX_BIG ? Number(v) : v
      }
      case 'utf8': {
        const o = bytes(at(1) + 4 * i, 8)
        const from = o.getInt32(0, true)
        const to = o.getInt32(4, true)
        const dataBytes = d.buffers[bb + 2 * 2 + 1]!
        if (from < 0 || to < from || to > dataBytes) throw fail(`row ${i}: offsets ${from}..${to} outside the ${dataBytes} bytes of values`)
        if (from === to) return ''
        const v = bytes(at(2) + from, to - from)
        return utf8.decode(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
      }
    }
    throw fail(`no reader for type ${String(type)}`)
  }

  /**
   * Bytes `[offset, offset + length)` of the .arrow file: the pages holding them read in one go
   * and each checked against the page table. A view of the reader's scratch buffer, valid until
   * its next read; undefined when a page fails its check.
   */
  private fileBytes (read: SyncReader, offset: number, length: number, fail: (reason: string) => Error): DataView | undefined {
    const size = this.header.pageBytes
    const first = Math.floor(offset / size)
    const last = Math.floor((offset + length - 1) / size)
    if (offset < 0 || length < 1 || last >= this.pageCrcs.length) throw fail(`bytes ${offset}..${offset + length} lie outside the file's ${this.header.arrowBytes}`)
    const start = first * size
    const want = Math.min((last + 1) * size, this.header.arrowBytes) - start
    const pages = read(start, want)
    if (pages.length !== want) throw fail(`the file ends ${want - pages.length} bytes early, in page ${first + Math.floor(pages.length / size)} (truncated)`)
    for (let p = first; p <= last; p++) {
      const from = (p - first) * size
      if (crc32(pages.subarray(from, Math.min(from + size, want))) !== this.pageCrcs[p]) return undefined
    }
    this.cache.countPageRead(want)
    return new DataView(pages.buffer, pages.byteOffset + offset - start, length)
  }

  /** Cache keys start with the .arrow path: unique per segment file among the peer's segments. */
  private key (b: number, what: string): string { return groupKey(this.path, `${b}/${what}`) }

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

  /** Where the utf8 codes of column `name` in batch `b` lie in the .idx (diagnostics, tests); undefined when it has none. */
  codesRange (b: number, name: string): { offset: number, length: number } | undefined {
    this.checkBatch(b)
    const c = this.dir.columnIndex.get(name)
    if (c === undefined) return undefined
    const k = b * this.dir.columns.length + c
    if (this.dir.codeWidth[k] === undefined || this.dir.codeWidth[k] === 0) return undefined
    return { offset: this.dir.codeOffset[k]!, length: this.dir.codeBytes[k]! }
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
  /** Column `c` of batch `b` as Arrow Data over the bytes read (into `into` when given), CRC-checked. */
  private async readData (b: number, c: number, into?: Uint8Array): Promise<Data> {
    const d = this.dir
    const k = b * d.columns.length + c
    const col = d.columns[c]!
    const nb = k * MAX_NODES * 2
    const bb = k * MAX_BUFFERS * 2
    const { start, end } = this.span(b, c)
    const fail = (reason: string): SegmentBlockCorruptError => new SegmentBlockCorruptError(this.path, b, col.name, reason)
    const bytes = end > start ? await this.arrow.read(d.bodyOffset[b]! + start, end - start, into) : new Uint8Array(0)
    if (bytes.length !== end - start) throw fail(`the file ends ${end - start - bytes.length} bytes early (truncated)`)
    if (crc32(bytes) !== d.crc[k]) throw fail('CRC mismatch')
    return rebuild(col.type, d.nodes, nb, d.buffers, bb, bytes, start, fail)
  }

  async close (): Promise<void> {
    await this.arrow.close()
    await this.idx.close()
  }
}

/** A page a value lies on failed its check (SegmentFile.valueAt): the value is read from its block instead. */
const PAGE_MISMATCH = Symbol('page mismatch')
const SAFE_MIN_BIG = BigInt(Number.MIN_SAFE_INTEGER)
const SAFE_MAX_BIG = BigInt(Number.MAX_SAFE_INTEGER)
const utf8 = new TextDecoder()

/** Buffers column reads borrow (scratch.ts): a few of at most 4 MiB, in steps of 64 KiB. */
const scratch = new ScratchBuffers(65536, 4, 4 << 20)

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
