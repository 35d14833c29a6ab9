/**
 * A segment of a partition as the store holds it (issue 12, first step): the rows stay on disk
 * in the segment's files (segment-file.ts) and are read through the peer's block cache; what
 * stays in memory is what the id index needs synchronously for each row: its version (8 bytes), its
 * tombstone flag (1 byte) and its live bit. Bit i of `live` is set while row i holds the newest
 * version of its id (live-index.ts keeps the bits in step with the index).
 *
 * A segment replaced by a compaction is retired, not closed at once: queries that took a
 * snapshot before the swap still read it (pin/unpin); its files are deleted, its descriptors
 * closed and its blocks dropped from the cache when the last of them is done.
 */
import { join } from 'node:path'
import type { ColumnVector, ValueType } from '../columnar/index.js'
import type { Hlc } from '../hlc/index.js'
import type { SpaceSchema } from '../schema/index.js'
import type { BlockCache } from './block-cache.js'
import type { FilePool } from './files.js'
import { removeFiles } from './fsutil.js'
import { SegmentFile, type SegmentFileMeta } from './segment-file.js'
import type { VersionedRecord } from './types.js'

export interface DiskSegmentDeps {
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
  readonly live: Uint8Array
  liveCount = 0
  /** Deleted rows (tombstones) whose live bit is set. */
  liveTombstones = 0
  /** Oldest tombstone version in the file (Infinity if none): tells when a purge is due. */
  oldestTombstone: Hlc
  private pins = 0
  private retired: (() => Promise<void>) | undefined
  private closing: Promise<void> | undefined

  private constructor (
    readonly file: SegmentFile,
    /** Each row's version (HLC) and tombstone flag (1), by segment row. */
    readonly versions: Float64Array,
    readonly deleted: Uint8Array,
    private readonly deps: DiskSegmentDeps,
    private readonly dir: string
  ) {
    this.rows = file.rows
    if (versions.length !== this.rows || deleted.length !== this.rows) throw new Error(`segment ${file.path}: ${versions.length} versions and ${deleted.length} flags for ${this.rows} rows`)
    let oldest = Infinity
    for (let i = 0; i < this.rows; i++) if (deleted[i] === 1 && versions[i]! < oldest) oldest = versions[i]!
    this.oldestTombstone = oldest
    this.live = new Uint8Array((this.rows + 7) >> 3)
  }

  /**
   * Opens a segment listed in the manifest: its index file, not its rows. Its versions and flags
   * are unknown until readKeys() (recovery registers the segment first, then reads its keys into
   * the id index).
   */
  static async open (dir: string, meta: SegmentFileMeta, deps: DiskSegmentDeps): Promise<DiskSegment> {
    const file = await SegmentFile.open(dir, meta, deps)
    return new DiskSegment(file, new Float64Array(file.rows), new Uint8Array(file.rows), deps, dir)
  }

  /**
   * Reads the key index block by block (each CRC-checked) for every row's id, version and flag,
   * in row order, and hands each to `onRow` (awaited when it returns a promise).
   */
  async readKeys (onRow: (id: string, row: number, version: Hlc, deleted: boolean) => void | Promise<void>): Promise<void> {
    let expect = 0
    let oldest = Infinity
    for await (const e of this.file.keys.entries()) {
      if (e.row !== expect) throw new Error(`segment ${this.path}: key index yields row ${e.row} after ${expect - 1}`)
      expect++
      this.versions[e.row] = e.version
      this.deleted[e.row] = e.deleted ? 1 : 0
      if (e.deleted && e.version < oldest) oldest = e.version
      const p = onRow(e.id, e.row, e.version, e.deleted)
      if (p !== undefined) await p
    }
    if (expect !== this.rows) throw new Error(`segment ${this.path}: key index holds ${expect} rows, the segment ${this.rows}`)
    this.oldestTombstone = oldest
  }

  /** A segment just written from `records` (row j is records[order[j]]): nothing to read back. */
  static async written (dir: string, meta: SegmentFileMeta, deps: DiskSegmentDeps, records: readonly VersionedRecord[], order: Uint32Array): Promise<DiskSegment> {
    const file = await SegmentFile.open(dir, meta, deps)
    const versions = new Float64Array(records.length)
    const deleted = new Uint8Array(records.length)
    for (let j = 0; j < records.length; j++) {
      const r = records[order[j]!]!
      versions[j] = r.version
      deleted[j] = r.deleted ? 1 : 0
    }
    return new DiskSegment(file, versions, deleted, deps, dir)
  }

  get id (): number { return this.file.meta.id }
  get meta (): SegmentFileMeta { return this.file.meta }
  get path (): string { return this.file.path }
  /** Bytes on disk: the rows and the index file. */
  get diskBytes (): number { return this.meta.bytes + this.meta.indexBytes }

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

  /**
   * The batches holding live rows that are not tombstones (`withTombstones`: live tombstones too),
   * each with its live rows, as of now (a snapshot: later changes of the bits do not show).
   */
  liveBatches (withTombstones = false): LiveBatch[] {
    const out: LiveBatch[] = []
    const f = this.file
    for (let b = 0; b < f.batches; b++) {
      const first = f.firstRow(b)
      const n = f.batchRows(b)
      const rows = new Uint32Array(n)
      let k = 0
      for (let i = 0; i < n; i++) {
        const row = first + i
        if ((this.live[row >> 3]! & (1 << (row & 7))) !== 0 && (withTombstones || this.deleted[row] === 0)) rows[k++] = i
      }
      if (k === 0) continue
      out.push({ batch: b, length: k, rows: k === n ? undefined : rows.slice(0, k) })
    }
    return out
  }

  /** Column `name` of batch `b` in the columnar form (see SegmentFile.column). */
  async column (b: number, name: string, type: ValueType): Promise<ColumnVector> { return await this.file.column(b, name, type) }

  /** The record at segment row `row`, its row shaped by `schema`. */
  async record (row: number, schema: SpaceSchema): Promise<VersionedRecord> {
    const b = this.file.batchOf(row)
    const [r] = await this.file.records(b, [row - this.file.firstRow(b)], schema)
    return r!
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
          await this.deps.files.run(async () => { await removeFiles(this.dir, [join(this.dir, this.meta.file), join(this.dir, this.meta.index)]) })
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
    this.deps.cache.removePrefix(this.path + '#')
    this.deps.cache.removePrefix(this.file.keys.path + '#')
    await this.file.close()
  }
}
