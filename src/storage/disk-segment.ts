/**
 * A segment of a partition as the store holds it (issue 12): the rows stay on disk in the
 * segment's files (segment-file.ts) and are read through the peer's block cache; what stays in
 * memory is the open index file's resident part (directory, Bloom filter, sparse key index) and
 * one live bit a row: bit i is set while row i holds the newest version of its id (live-index.ts
 * keeps the bits in step with the memtable's index; live-state.ts saves them with the manifest).
 *
 * A segment replaced by a compaction is retired, not closed at once: queries that took a
 * snapshot before the swap still read it (pin/unpin); its files are deleted, its descriptors
 * closed and its blocks dropped from the cache when the last of them is done.
 */
import { join } from 'node:path'
import type { BatchLease, StoredVector, ValueType } from '../columnar/index.js'
import type { Hlc } from '../hlc/index.js'
import { newRow, type Row, type SpaceSchema } from '../schema/index.js'
import type { FileSystem } from '../runtime/index.js'
import type { BlockCache } from './block-cache.js'
import type { FilePool } from './files.js'
import { DELETED_COLUMN } from './segment.js'
import { removeFiles } from './fsutil.js'
import { SegmentFile, type SegmentFileMeta } from './segment-file.js'
import type { VersionedRecord } from './types.js'

export interface DiskSegmentDeps {
  fs: FileSystem
  files: FilePool
  cache: BlockCache
}

/** The live rows of one batch, batch-local and ascending (`rows` undefined: every row of it). */
export interface LiveBatch {
  batch: number
  length: number
  rows: Uint32Array | undefined
}

export class DiskSegment {
  readonly rows: number
  /**
   * One bit a row, set while the row holds the newest version of its id. Read only outside this
   * class (setLive, clearLive, restoreLive change it): snapshots share the array (copy on write).
   */
  live: Uint8Array
  /**
   * Whether `live` is also a snapshot's (liveSnapshot): the next change copies it first. A query
   * took a copy of every segment's bits before (16 segments of 250,000 rows: 1.4 ms a query, and
   * its garbage), where the bits of a settled segment never change.
   */
  private liveShared = false
  /** For the bits `fullFor` (a snapshot): per batch 1 if every row is live, 0 if not, -1 not known yet. */
  private fullFor: Uint8Array | undefined
  private full = new Int8Array(0)
  liveCount = 0
  /** Deleted rows (tombstones) whose live bit is set. */
  liveTombstones = 0
  /** Oldest tombstone version in the file (Infinity if none): tells when a purge is due. */
  oldestTombstone: Hlc = Infinity
  private pins = 0
  private retired: (() => Promise<void>) | undefined
  private closing: Promise<void> | undefined

  private constructor (readonly file: SegmentFile, private readonly deps: DiskSegmentDeps, private readonly dir: string) {
    this.rows = file.rows
    this.live = new Uint8Array((this.rows + 7) >> 3)
  }

  /**
   * Opens a segment listed in the manifest: its index file, not its rows. Its live bits are all
   * clear until the partition's saved state (or a pass over its keys, readKeys) sets them.
   */
  static async open (dir: string, meta: SegmentFileMeta, deps: DiskSegmentDeps): Promise<DiskSegment> {
    return new DiskSegment(await SegmentFile.open(dir, meta, deps), deps, dir)
  }

  /** A segment just written from `records`: its oldest tombstone known without a read. */
  static async written (dir: string, meta: SegmentFileMeta, deps: DiskSegmentDeps, records: readonly VersionedRecord[]): Promise<DiskSegment> {
    const seg = new DiskSegment(await SegmentFile.open(dir, meta, deps), deps, dir)
    for (const r of records) if (r.deleted && r.version < seg.oldestTombstone) seg.oldestTombstone = r.version
    return seg
  }

  /**
   * Reads the key index block by block (each CRC-checked) for every row's id, version and flag,
   * in row order, and hands each to `onRow` (awaited when it returns a promise): rebuilding the
   * live bits when no saved state has them (a partition written before they were saved).
   */
  async readKeys (onRow: (id: string, row: number, version: Hlc, deleted: boolean) => void | Promise<void>): Promise<void> {
    let expect = 0
    let oldest = Infinity
    for await (const e of this.file.keys.entries()) {
      if (e.row !== expect) throw new Error(`segment ${this.path}: key index yields row ${e.row} after ${expect - 1}`)
      expect++
      if (e.deleted && e.version < oldest) oldest = e.version
      const p = onRow(e.id, e.row, e.version, e.deleted)
      if (p !== undefined) await p
    }
    if (expect !== this.rows) throw new Error(`segment ${this.path}: key index holds ${expect} rows, the segment ${this.rows}`)
    this.oldestTombstone = oldest
  }

  /** Takes saved live bits and counts (live-state.ts). */
  restoreLive (live: Uint8Array, liveCount: number, liveTombstones: number, oldestTombstone: Hlc): void {
    if (live.length !== this.live.length) throw new Error(`segment ${this.path}: saved live bits for ${live.length * 8} rows, it holds ${this.rows}`)
    this.live = live
    this.liveShared = false
    this.liveCount = liveCount
    this.liveTombstones = liveTombstones
    this.oldestTombstone = oldestTombstone
  }

  get id (): number { return this.file.meta.id }
  get meta (): SegmentFileMeta { return this.file.meta }
  get path (): string { return this.file.path }
  /** Bytes on disk: the rows and the index file. */
  get diskBytes (): number { return this.meta.bytes + this.meta.indexBytes }

  isLive (row: number): boolean { return (this.live[row >> 3]! & (1 << (row & 7))) !== 0 }

  /** Sets row `row`'s live bit; `deleted`: whether the row is a tombstone (the caller knows it). */
  setLive (row: number, deleted: boolean): void {
    if (this.isLive(row)) return
    this.writableLive()[row >> 3]! |= 1 << (row & 7)
    this.liveCount++
    if (deleted) this.liveTombstones++
  }

  clearLive (row: number, deleted: boolean): void {
    if (!this.isLive(row)) return
    this.writableLive()[row >> 3]! &= ~(1 << (row & 7))
    this.liveCount--
    if (deleted) this.liveTombstones--
  }

  private writableLive (): Uint8Array {
    if (this.liveShared) {
      this.live = this.live.slice()
      this.liveShared = false
    }
    return this.live
  }

  /** The live bits as of now, whatever changes later: callers only read them (copy on write). */
  liveSnapshot (): Uint8Array {
    this.liveShared = true
    return this.live
  }

  /** Whether every row of batch `b` (`first`, `n` rows) is live under `live`; remembered for the latest snapshot. */
  private allLive (live: Uint8Array, b: number, first: number, n: number): boolean {
    if (live !== this.fullFor) {
      // Only the bits of a snapshot never change (this.live while shared): only they are remembered.
      if (live !== this.live || !this.liveShared) return allBitsSet(live, first, n)
      this.fullFor = live
      this.full = new Int8Array(this.file.batches).fill(-1)
    }
    let f = this.full[b]!
    if (f < 0) this.full[b] = f = allBitsSet(live, first, n) ? 1 : 0
    return f === 1
  }

  /**
   * The live rows of each batch under the bits `live` (a liveSnapshot), batch-local and
   * ascending, without tombstones unless `withTombstones` (their flags are read per batch, through
   * the cache). Batches without a live row are skipped without a read.
   */
  async * liveBatches (live: Uint8Array, withTombstones = false): AsyncGenerator<LiveBatch> {
    const f = this.file
    for (let b = 0; b < f.batches; b++) {
      const first = f.firstRow(b)
      const n = f.batchRows(b)
      let any = false
      for (let i = first >> 3; i <= (first + n - 1) >> 3 && !any; i++) if (live[i] !== 0) any = true
      if (!any) continue
      // A batch whose zone map says it holds no tombstone needs its flags not read; one whose
      // rows are all live then needs no row list (a scan reads it whole: the common case).
      const deleted = withTombstones || f.zone(b, DELETED_COLUMN)?.max === 0 ? undefined : await f.deleted(b)
      if (deleted === undefined && this.allLive(live, b, first, n)) {
        yield { batch: b, length: n, rows: undefined }
        continue
      }
      const rows = new Uint32Array(n)
      let k = 0
      for (let i = 0; i < n; i++) {
        const row = first + i
        if ((live[row >> 3]! & (1 << (row & 7))) !== 0 && (deleted === undefined || deleted[i] === 0)) rows[k++] = i
      }
      if (k === 0) continue
      yield { batch: b, length: k, rows: k === n ? undefined : rows.slice(0, k) }
    }
  }

  /** Column `name` of batch `b` in the columnar form (see SegmentFile.column). */
  async column (b: number, name: string, type: ValueType, lease?: BatchLease): Promise<StoredVector> { return await this.file.column(b, name, type, lease) }

  /** The record at segment row `row`, its row shaped by `schema`. */
  async record (row: number, schema: SpaceSchema): Promise<VersionedRecord> {
    const b = this.file.batchOf(row)
    const [r] = await this.file.records(b, [row - this.file.firstRow(b)], schema)
    return r!
  }

  /**
   * The record of `e` (a row of this segment found by its key index, which gave its id, version
   * and flag): a tombstone without a read; else its values, from the pages of its batch that hold
   * them (no id, version or flag column read: a point get reads only what it returns).
   */
  async recordOf (e: { id: string, row: number, version: number, deleted: boolean }, schema: SpaceSchema): Promise<VersionedRecord> {
    if (e.deleted) return { id: e.id, version: e.version, deleted: true, row: null }
    const b = this.file.batchOf(e.row)
    const columns = schema.filter(c => c.name !== 'id')
    const values = await this.file.rowValues(b, e.row - this.file.firstRow(b), columns)
    const row: Row = newRow()
    row.id = e.id
    for (let k = 0; k < columns.length; k++) row[columns[k]!.name] = values[k]
    return { id: e.id, version: e.version, deleted: false, row }
  }

  /** The records at batch-local `rows` of batch `b` (all when undefined). */
  async records (b: number, rows: ArrayLike<number> | undefined, schema: SpaceSchema): Promise<VersionedRecord[]> {
    return await this.file.records(b, rows, schema)
  }

  /** Whether a snapshot reads the segment now. */
  get pinned (): boolean { return this.pins > 0 }

  /** Keeps the files readable until unpin(), even if the segment is retired meanwhile. */
  pin (): void { this.pins++ }

  unpin (): void {
    if (this.pins <= 0) throw new Error(`segment ${this.path} unpinned more than pinned`)
    if (--this.pins === 0 && this.retired !== undefined) void this.retired()
  }

  /**
   * The segment left the manifest (a compaction replaced it): once no snapshot reads it, its
   * descriptors close, its blocks leave the cache and its files are deleted. Resolves then.
   */
  retire (): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      this.retired = async () => {
        try {
          await this.close()
          await this.deps.files.run(async () => { await removeFiles(this.deps.fs, this.dir, [join(this.dir, this.meta.file), join(this.dir, this.meta.index)]) })
          resolve()
        } catch (err) {
          reject(err)
        }
      }
      if (this.pins === 0) void this.retired()
    })
    return this.closing
  }

  /** Closes the descriptors and drops the segment's blocks from the cache (the store's close). */
  async close (): Promise<void> {
    this.deps.cache.removeGroup(this.path)
    this.deps.cache.removeGroup(this.file.keys.path)
    await this.file.close()
  }
}

/** Whether bits [from, from + n) of `bits` (LSB first) are all set. */
export function allBitsSet (bits: Uint8Array, from: number, n: number): boolean {
  let i = from
  const end = from + n
  for (; i < end && (i & 7) !== 0; i++) if ((bits[i >> 3]! & (1 << (i & 7))) === 0) return false
  for (; i + 8 <= end; i += 8) if (bits[i >> 3] !== 0xff) return false
  for (; i < end; i++) if ((bits[i >> 3]! & (1 << (i & 7))) === 0) return false
  return true
}
