/**
 * Reading a disk-resident segment's two files (segment-file.ts): SegmentFile opens the .idx and
 * reads columns, rows and values of the .arrow file on demand through the peer's block cache and
 * file pool (PooledFile).
 */
import { join } from 'node:path'
import { Bool, Float32, makeData, makeVector, type Data, type Vector } from 'apache-arrow'
import { shareVector, widenVector, type BatchLease, type ColumnVector, type StoredVector, type ValueType } from '../columnar/index.js'
import { arrowType, listElement, newRow, vectorDim, type ColumnType, type Row, type ScalarType, type SpaceSchema } from '../schema/index.js'
import { nodeFileSystem, type FileSystem, type RandomAccessFile } from '../runtime/index.js'
import { storedVectorBytes, groupKey, type BlockCache } from './block-cache.js'
import { crc32 } from './crc32.js'
import type { Evictable, FilePool } from './files.js'
import { missingFile } from './fsutil.js'
import { KeyIndex, KeyIndexCorruptError, type KeyIndexSource } from './key-index.js'
import { ScratchBuffers } from './scratch.js'
import { DELETED_COLUMN, SegmentCorruptError, VERSION_COLUMN, decodeColumn, decodeIds, fromArrow, nullVector } from './segment.js'
import {
  HEADER_BYTES, MAX_BUFFERS, MAX_NODES, SegmentBlockCorruptError, decodeDirectory, decodeHeader, decodeNumberCodes, decodeUtf8Codes, directoryBytes, isCodedNumberType, layoutOf, pageCount,
  type Directory, type IndexHeader, type SegmentFileMeta, type Zone
} from './segment-file-format.js'
import type { VersionedRecord } from './types.js'

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
  async column (b: number, name: string, type: ValueType, lease?: BatchLease): Promise<StoredVector> {
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
        return { value: v, bytes: storedVectorBytes(v) }
      })
    }
    const k = b * this.dir.columns.length + c
    if (this.dir.codeWidth[k] !== undefined && this.dir.codeWidth[k] !== 0) {
      // Codes (format 3 and 4) when the column is read as the type it was written as.
      const written = this.dir.columns[c]!.type
      if (type === written && (type === 'utf8' || (isCodedNumberType(type) && name !== VERSION_COLUMN))) {
        return await this.cache.getOrLoad(this.key(b, `${name}:${type}`), async () => await this.loadCodes(b, c, type), lease)
      }
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
      const alloc = this.allocFor(reusable)
      try {
        const into = views && end > start ? new Uint8Array(alloc(end - start)) : borrowed
        const v = shareVector(this.decoded(b, name, type, await this.readData(b, c, into), alloc))
        return { value: v, bytes: storedVectorBytes(v), reusable }
      } finally {
        if (borrowed !== undefined) scratch.give(borrowed)
      }
    }, lease)
  }

  /** Shared memory from the cache for a load to decode into, each buffer noted in `reusable` (Loaded.reusable). */
  private allocFor (reusable: SharedArrayBuffer[]): (bytes: number) => SharedArrayBuffer {
    return bytes => {
      const buf = this.cache.allocShared(bytes)
      reusable.push(buf)
      return buf
    }
  }

  /**
   * A column of batch `b` from its codes block in the .idx instead of its Arrow bytes, in its
   * compact form (columnar/compact.ts): utf8 (format 3) as narrow dictionary codes, numbers
   * (format 4) as codes into their values. The block is read into the cache's shared memory and
   * the vector views it: 1-2 bytes a row held, where the widened column takes 4 or 8.
   */
  private async loadCodes (b: number, c: number, type: ValueType): Promise<{ value: StoredVector, bytes: number, reusable: SharedArrayBuffer[] }> {
    const d = this.dir
    const k = b * d.columns.length + c
    const rows = d.batchRows[b]!
    const length = d.codeBytes[k]!
    const fail = (reason: string): SegmentBlockCorruptError => new SegmentBlockCorruptError(this.idx.path, b, d.columns[c]!.name, `${type === 'utf8' ? 'utf8' : 'number'} codes: ${reason}`)
    const reusable: SharedArrayBuffer[] = []
    // Blocks of one column differ by a few values' bytes from batch to batch, and the cache
    // recycles memory by exact length: a whole number of pages lets the next load reuse it (exact
    // lengths got new memory for nearly every load, zeroed a page at a time by the kernel).
    const into = new Uint8Array(this.allocFor(reusable)(Math.ceil(length / PAGE_ROUND) * PAGE_ROUND))
    const block = await this.idx.read(d.codeOffset[k]!, length, into)
    if (block.length !== length) throw fail(`the file ends ${length - block.length} bytes early (truncated)`)
    if (crc32(block) !== d.codeCrc[k]) throw fail('CRC mismatch')
    const value = type === 'utf8'
      ? decodeUtf8Codes(block, rows, d.codeCount[k]!, d.codeWidth[k]!, fail)
      : decodeNumberCodes(block, rows, d.codeCount[k]!, d.codeWidth[k]!, type, fail)
    // A vector that does not view the block (numbers with NULLs, remapped) leaves the block to
    // the cache to recycle once the entry goes: held until then, it counts too.
    return { value, bytes: storedVectorBytes(value) + (value.codes.buffer === into.buffer ? 0 : into.byteLength), reusable }
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
    return await this.checkedColumn(b, '$versions', VERSION_COLUMN, 'float64', v => this.checkedVersions(b, v), opts.transient === true)
  }

  private checkedVersions (b: number, v: ColumnVector): Float64Array {
    if (v.tag !== 'num') throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, 'not float64')
    for (let i = 0; i < v.values.length; i++) if (v.values[i] !== v.values[i]) throw new SegmentBlockCorruptError(this.path, b, VERSION_COLUMN, `row ${i} has no version`)
    return v.values
  }

  /** Whether each row of batch `b` is a tombstone (1) or not (0) (`transient`: as arrowColumn's). */
  async deleted (b: number, opts: { transient?: boolean } = {}): Promise<Uint8Array> {
    return await this.checkedColumn(b, '$deletedbytes', DELETED_COLUMN, 'bool', v => this.checkedFlags(b, v), opts.transient === true)
  }

  /**
   * A hidden column of batch `b` in the form `check` makes of it (and checks), cached under
   * `what`; `transient`: taken from the cache when there, else read past it and not kept.
   */
  private async checkedColumn<T extends Float64Array | Uint8Array> (b: number, what: string, name: string, type: ValueType, check: (v: ColumnVector) => T, transient: boolean): Promise<T> {
    this.checkBatch(b)
    const key = this.key(b, what)
    if (transient) return this.cache.peek<T>(key) ?? check(await this.columnPastCache(b, name, type))
    // Checked once per load: a cache hit returns the same, already checked, array.
    return await this.cache.getOrLoad(key, async () => {
      const value = check(widenVector(await this.column(b, name, type)))
      return { value, bytes: value.byteLength }
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
    return this.decoded(b, name, type, await this.readPastCache(b, this.dir.columnIndex.get(name)!))
  }

  /** Column `name` of batch `b` (its Arrow `data`) in the columnar form as `type`; a failure is the block's corruption. */
  private decoded (b: number, name: string, type: ValueType, data: Data, alloc?: (bytes: number) => SharedArrayBuffer): ColumnVector {
    try {
      return decodeColumn(type, makeVector(data), this.dir.batchRows[b]!, this.path, alloc)
    } catch (err) {
      throw new SegmentBlockCorruptError(this.path, b, name, `does not decode as ${type}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** readData for a read past the cache, its bytes counted with the cache's loads (loadedBytes: what reads cost). */
  private async readPastCache (b: number, c: number): Promise<Data> {
    const data = await this.readData(b, c)
    const { start, end } = this.span(b, c)
    this.cache.countLoad(end - start)
    return data
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
      return this.cache.peek<Vector>(key) ?? makeVector(await this.readPastCache(b, c))
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
/** What a codes block's memory is rounded up to (see loadCodes). */
const PAGE_ROUND = 4096
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
