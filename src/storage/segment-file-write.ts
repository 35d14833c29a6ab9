/**
 * Writing a disk-resident segment's two files (segment-file.ts): from records
 * (writeSegmentFiles: a flush) or from rows of other segments in key order (SegmentFileWriter:
 * a compaction), both through SegmentOutput, which appends the .arrow file a record batch at a
 * time and writes the .idx (segment-file-format.ts) at the end.
 */
import { join } from 'node:path'
import { Bool, Field, Float64, Message, MetadataVersion, RecordBatch, Schema, Struct, Utf8, makeData, makeVector, type Data } from 'apache-arrow'
import { MAGIC } from 'apache-arrow/ipc/message'
import { FileBlock, Footer } from 'apache-arrow/ipc/metadata/file'
import { RecordBatch as RecordBatchHeader } from 'apache-arrow/ipc/metadata/message'
import { VectorAssembler } from 'apache-arrow/visitor/vectorassembler'
import { arrowType, type SpaceSchema } from '../schema/index.js'
import { nodeFileSystem, type FileSystem, type OpenFlags, type RandomAccessFile } from '../runtime/index.js'
import { crc32 } from './crc32.js'
import type { FilePool } from './files.js'
import { writeAllAt as writeAt } from './fsutil.js'
import { compareUtf16Order, encodeKeyIndex, encodeKeyIndexYielding, keyHashesUtf8, keyIndexColumns, keyOrder, type KeyIndexChunk } from './key-index.js'
import { DELETED_COLUMN, FORMAT_KEY, VERSION_COLUMN, buildColumn, decodeColumn, segmentFileName, utf8Dictionary } from './segment.js'
import {
  DEFAULT_BATCH_ROWS, HEADER_BYTES, INDEX_FORMAT, MAX_CODED_VALUES, MIN_CODED_ROWS, PAGE_BYTES, SEGMENT_FILE_FORMAT, encodeDirectory, encodeHeader, encodeNumberCodes, encodeUtf8Codes,
  isCodedNumberType, numberDictionary,
  layoutOf, pageCount, segmentIndexFileName, zonesByBatch,
  type FileColumn, type IndexHeader, type SegmentFileMeta, type WrittenBatch, type WrittenCodes, type WrittenColumn, type Zone
} from './segment-file-format.js'
import { deletedColumn, gatherColumn, versionColumn, type GatherRows, type GatheredColumn, type SourceColumn } from './segment-gather.js'
import type { VersionedRecord } from './types.js'

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
  /** Store codes for columns of few distinct values in a batch (utf8: format 3; numbers: format 4). Default true; false writes format 2 (tests, benches). */
  codes?: boolean
}


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
  const out = await SegmentOutput.create(opts.fs ?? nodeFileSystem, dir, id, layout, batchRows, opts.files, opts.codes ?? true)
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
   * The codes blocks of the batches appended (formats 3 and 4), written into the .idx by finish():
   * held until then, 1-2 bytes a row of each coded column (the key index is held the same way).
   */
  private readonly codeBlocks: Uint8Array[] = []
  private codeBytes = 0
  /** Whether a number column has codes (the file is then format 4). */
  private numberCodes = false
  /**
   * Memory number columns are decoded into to find their values, and their codes, by row count
   * (a batch's, the last one's): new memory costs a page fault a page here, a batch's worth
   * ~0.6 ms each time.
   */
  private readonly scratch = new Map<number, { values: SharedArrayBuffer, codes: Int32Array }>()

  private numberScratch (rows: number): { values: SharedArrayBuffer, codes: Int32Array } {
    let s = this.scratch.get(rows)
    if (s === undefined) { s = { values: new SharedArrayBuffer(8 * rows), codes: new Int32Array(rows) }; this.scratch.set(rows, s) }
    return s
  }

  private constructor (private readonly fs: FileSystem, private readonly dir: string, private readonly id: number, private readonly layout: SegmentLayout, private readonly batchRows: number, private readonly files: FilePool | undefined, private readonly storeCodes: boolean) {}

  private get arrowPath (): string { return join(this.dir, this.layout.arrowName) }

  static async create (fs: FileSystem, dir: string, id: number, layout: SegmentLayout, batchRows: number, files: FilePool | undefined, storeCodes: boolean): Promise<SegmentOutput> {
    const out = new SegmentOutput(fs, dir, id, layout, batchRows, files, storeCodes)
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
   * The codes block of a utf8 or number column's batch when it has few enough distinct values
   * (not the id: every id is distinct; not the version column, nearly so), kept for finish();
   * undefined otherwise.
   */
  private codes (column: FileColumn, data: Data): WrittenCodes | undefined {
    if (!this.storeCodes || column.name === 'id' || column.name === VERSION_COLUMN || data.length < MIN_CODED_ROWS) return undefined
    // A quarter of the rows at most: past that the block's values would be most of the column again.
    const most = Math.min(MAX_CODED_VALUES, Math.floor(data.length / 4))
    let coded: { block: Uint8Array, width: number, count: number } | undefined
    if (column.type === 'utf8') {
      const found = utf8Dictionary(data, most)
      if (found !== undefined) coded = { ...encodeUtf8Codes(found.codes, found.dict), count: found.dict.length }
    } else if (isCodedNumberType(column.type)) {
      // The values as a scan reads them from the Arrow bytes (int64 past 2^53 rounded alike).
      const scratch = this.numberScratch(data.length)
      const v = decodeColumn(column.type, makeVector(data), data.length, this.arrowPath, () => scratch.values)
      const found = v.tag === 'num' ? numberDictionary(v.values, most, scratch.codes) : undefined
      if (found !== undefined) {
        coded = { ...encodeNumberCodes(found.codes, found.dict), count: found.dict.length }
        this.numberCodes = true
      }
    }
    if (coded === undefined) return undefined
    const { block, width, count } = coded
    const written: WrittenCodes = { offset: this.codeBytes, bytes: block.length, crc: crc32(block), count, width }
    this.codeBlocks.push(block)
    this.codeBytes += block.length
    return written
  }

  /**
   * Ends the .arrow file (footer) and fsyncs it, writes the .idx (header, directory, `keyIndex`:
   * the key-index section of the rows appended, the codes blocks) and fsyncs it, then the
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
    // The oldest format that holds what the file has, readable by older builds: 2 without codes,
    // 3 with utf8 codes only (the same bytes as before the formats that came after).
    const format = this.numberCodes ? INDEX_FORMAT : this.codeBlocks.length > 0 ? 3 : 2
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
