/**
 * The MANIFEST of a partition: which segments make it up (with their sizes and CRCs), from which
 * WAL file on recovery replays, and the next segment number. It is replaced atomically (tmp,
 * fsync, rename, fsync directory) under one lock, so a flush and a compaction finishing together
 * apply their changes in turn and neither loses the other's. New segment files are written here
 * too, numbered from the manifest's counter.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { SpaceSchema } from '../schema/index.js'
import { crc32 } from './crc32.js'
import type { FilePool } from './files.js'
import { writeFileAtomic, writeFileDurable } from './fsutil.js'
import { Segment, encodeSegment, segmentFileName, type SegmentMeta } from './segment.js'
import type { VersionedRecord } from './types.js'

export const MANIFEST_FILE = 'MANIFEST'

export interface Manifest {
  format: 1
  /** WAL files with a lower sequence number are fully contained in the segments. */
  walFrom: number
  nextSegment: number
  segments: SegmentMeta[]
}

export class SegmentManifest {
  /** The manifest as last written (or read). */
  private current: Manifest
  private lock: Promise<void> = Promise.resolve()
  /** The number of the next segment file; recovery moves it past any file found on disk. */
  nextSegmentId: number

  /** `missing`: no manifest file was found (a new partition, or a lost manifest: recovery tells which). */
  private constructor (private readonly dir: string, private readonly files: FilePool, manifest: Manifest, readonly missing: boolean) {
    this.current = manifest
    this.nextSegmentId = manifest.nextSegment
  }

  /** Reads the manifest in `dir`, or starts an empty one when there is none. */
  static async read (dir: string, files: FilePool): Promise<SegmentManifest> {
    const path = join(dir, MANIFEST_FILE)
    const m = await files.run(async () => await readManifest(path))
    return m === undefined
      ? new SegmentManifest(dir, files, { format: 1, walFrom: 0, nextSegment: 1, segments: [] }, true)
      : new SegmentManifest(dir, files, m, false)
  }

  get walFrom (): number { return this.current.walFrom }
  get segments (): readonly SegmentMeta[] { return this.current.segments }

  /** Replaces the manifest by `change` of the latest one, after any change already queued. */
  update (change: (m: Manifest) => Manifest): Promise<void> {
    const run = this.lock.then(async () => {
      const next = change(this.current)
      await this.files.run(async () => { await writeFileAtomic(join(this.dir, MANIFEST_FILE), Buffer.from(JSON.stringify(next))) })
      this.current = next
    })
    this.lock = run.catch(() => {})
    return run
  }

  /** Resolves when no manifest write is queued or running. */
  async settled (): Promise<void> { await this.lock }

  /** Writes `records` as the next segment file, durably; the caller lists it with update(). */
  async writeSegment (schema: SpaceSchema, records: readonly VersionedRecord[]): Promise<Segment> {
    const id = this.nextSegmentId++
    const bytes = encodeSegment(schema, records)
    const file = segmentFileName(id)
    const path = join(this.dir, file)
    await this.files.run(async () => { await writeFileDurable(path, bytes) })
    return Segment.decode({ id, file, rows: records.length, bytes: bytes.length, crc32: crc32(bytes) }, path, bytes)
  }
}

/** The manifest at `path`, undefined when there is no such file. */
async function readManifest (path: string): Promise<Manifest | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let m: Manifest
  try {
    m = JSON.parse(text) as Manifest
  } catch (err) {
    throw new Error(`manifest ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (m === null || typeof m !== 'object' || m.format !== 1 || !Array.isArray(m.segments) || typeof m.walFrom !== 'number') {
    throw new Error(`manifest ${path} is not a shoal manifest (format 1)`)
  }
  return m
}
