/**
 * The MANIFEST of a partition: which segments make it up (with their sizes and CRCs), from which
 * WAL file on recovery replays, and the next segment number. It is replaced atomically (tmp,
 * fsync, rename, fsync directory) under one lock, so a flush and a compaction finishing together
 * apply their changes in turn and neither loses the other's. New segment files are written here
 * too, numbered from the manifest's counter.
 */
import { join } from 'node:path'
import type { SpaceSchema } from '../schema/index.js'
import type { BlockCache } from './block-cache.js'
import { DiskSegment } from './disk-segment.js'
import type { FilePool } from './files.js'
import type { FileSystem } from '../runtime/index.js'
import { writeFileAtomic, writeFileDurable } from './fsutil.js'
import { encodeLiveState, liveStateFileName, parseLiveStateFileName, type LiveState } from './live-state.js'
import type { SegmentMeta } from './segment.js'
import { SegmentFileWriter, writeSegmentFiles, type SegmentFileMeta } from './segment-file.js'
import type { VersionedRecord } from './types.js'

export const MANIFEST_FILE = 'MANIFEST'

export interface Manifest {
  format: 1
  /** WAL files with a lower sequence number are fully contained in the segments. */
  walFrom: number
  nextSegment: number
  /**
   * Disk-resident segments (segment-file.ts: an .arrow and an .idx file each); a `SegmentMeta`
   * without `index` is a segment of the first format (one batch, no index file), which recovery
   * rewrites in the current one.
   */
  segments: Array<SegmentFileMeta | SegmentMeta>
  /** The saved state of the id index as of this manifest (live-state.ts); absent: rebuild it from the keys. */
  live?: string
}

/** Whether a manifest entry is a segment of the current, disk-resident format. */
export function isSegmentFile (m: SegmentFileMeta | SegmentMeta): m is SegmentFileMeta {
  return typeof (m as Partial<SegmentFileMeta>).index === 'string'
}

export class SegmentManifest {
  /** The manifest as last written (or read). */
  private current: Manifest
  private lock: Promise<void> = Promise.resolve()
  /** The number of the next segment file; recovery moves it past any file found on disk. */
  nextSegmentId: number
  /** The number of the next saved-state file; recovery moves it past any file found on disk. */
  nextLiveId = 1
  /** The id index's state to save with each manifest (the store sets it). */
  stateSource: (() => LiveState) | undefined

  /** `missing`: no manifest file was found (a new partition, or a lost manifest: recovery tells which). */
  private constructor (private readonly fs: FileSystem, private readonly dir: string, private readonly files: FilePool, private readonly cache: BlockCache, manifest: Manifest, readonly missing: boolean) {
    this.current = manifest
    this.nextSegmentId = manifest.nextSegment
  }

  /** Reads the manifest in `dir`, or starts an empty one when there is none. */
  static async read (fs: FileSystem, dir: string, files: FilePool, cache: BlockCache): Promise<SegmentManifest> {
    const path = join(dir, MANIFEST_FILE)
    const m = await files.run(async () => await readManifest(fs, path))
    return m === undefined
      ? new SegmentManifest(fs, dir, files, cache, { format: 1, walFrom: 0, nextSegment: 1, segments: [] }, true)
      : new SegmentManifest(fs, dir, files, cache, m, false)
  }

  get walFrom (): number { return this.current.walFrom }
  get segments (): ReadonlyArray<SegmentFileMeta | SegmentMeta> { return this.current.segments }

  get live (): string | undefined { return this.current.live }

  /**
   * Replaces the manifest by `change` of the latest one, after any change already queued. `change`
   * runs when this update's turn comes and may change the store in memory (a swap); in the same
   * tick the id index's state is taken (stateSource) and saved first, in a file the new manifest
   * names (`saveState` false: none, recovery will rebuild it from the keys). The previous state
   * file goes once the new manifest is durable.
   */
  update (change: (m: Manifest) => Manifest, saveState = true): Promise<void> {
    const run = this.lock.then(async () => {
      const next = { ...change(this.current) }
      delete next.live
      const state = saveState ? this.stateSource?.() : undefined
      if (state !== undefined) {
        const bytes = encodeLiveState(state)
        const name = liveStateFileName(this.nextLiveId++)
        await this.files.run(async () => { await writeFileDurable(this.fs, join(this.dir, name), bytes, false) })
        next.live = name
      }
      await this.files.run(async () => { await writeFileAtomic(this.fs, join(this.dir, MANIFEST_FILE), Buffer.from(JSON.stringify(next))) })
      const old = this.current.live
      this.current = next
      if (old !== undefined && old !== next.live) await this.files.run(async () => { await this.fs.unlink(join(this.dir, old)) })
    })
    this.lock = run.catch(() => {})
    return run
  }

  /** Resolves when no manifest write is queued or running. */
  async settled (): Promise<void> { await this.lock }

  /**
   * Writes `records` (one per id) as the next segment's files, durably, and opens it; the caller
   * lists it with update(). `order`: row j of the segment is records[order[j]] (key order).
   */
  async writeSegment (schema: SpaceSchema, records: readonly VersionedRecord[]): Promise<{ segment: DiskSegment, order: Uint32Array }> {
    const id = this.nextSegmentId++
    let order: Uint32Array | undefined
    const meta = await writeSegmentFiles(this.dir, id, schema, records, { fs: this.fs, files: this.files, onOrder: o => { order = o } })
    if (order === undefined) throw new Error('writeSegmentFiles gave no key order')
    const segment = await DiskSegment.written(this.dir, meta, { fs: this.fs, files: this.files, cache: this.cache }, records)
    return { segment, order }
  }

  /**
   * Writes the next segment from the rows `fill` adds to a SegmentFileWriter, in key order, a
   * record batch at a time (compaction), durably, and opens it: row j of the segment is the j-th
   * row added. Undefined when `fill` added none; on any failure nothing is left on disk. The
   * caller lists the segment with update().
   */
  async writeSegmentStream (schema: SpaceSchema, fill: (w: SegmentFileWriter) => Promise<void>): Promise<DiskSegment | undefined> {
    const w = await SegmentFileWriter.create(this.dir, this.nextSegmentId++, schema, { fs: this.fs, files: this.files })
    let meta: SegmentFileMeta
    try {
      await fill(w)
      if (w.rows === 0) {
        await w.abort()
        return undefined
      }
      meta = await w.finish()
    } catch (err) {
      await w.abort()
      throw err
    }
    const segment = await DiskSegment.open(this.dir, meta, { fs: this.fs, files: this.files, cache: this.cache })
    segment.oldestTombstone = w.oldestTombstone
    return segment
  }

  /** Opens a listed segment of the current format (its index file only; see DiskSegment). */
  async openSegment (meta: SegmentFileMeta): Promise<DiskSegment> {
    return await DiskSegment.open(this.dir, meta, { fs: this.fs, files: this.files, cache: this.cache })
  }
}

/** The manifest at `path`, undefined when there is no such file. */
async function readManifest (fs: FileSystem, path: string): Promise<Manifest | undefined> {
  const bytes = await fs.readFile(path)
  if (bytes === undefined) return undefined
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
  let m: Manifest
  try {
    m = JSON.parse(text) as Manifest
  } catch (err) {
    throw new Error(`manifest ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (m === null || typeof m !== 'object' || m.format !== 1 || !Array.isArray(m.segments) || typeof m.walFrom !== 'number') {
    throw new Error(`manifest ${path} is not a shoal manifest (format 1)`)
  }
  if (m.live !== undefined && (typeof m.live !== 'string' || parseLiveStateFileName(m.live) === undefined)) throw new Error(`manifest ${path} names a bad live-state file: ${JSON.stringify(m.live)}`)
  return m
}
