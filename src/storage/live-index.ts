/**
 * The id index of a partition and the segments it points into. `entries` maps every id held to
 * its newest version: a record object (in the active or the frozen memtable) or a segment
 * locator (segment id × 2^32 + row). Every change goes through put/relocate/remove, which keep
 * the segments' live bitmaps, the live and tombstone counts and the digests in step: one owner,
 * so no part can move an id without the others following. Also the last-writer-wins rule
 * (wins) and reading an entry back as a record (materialize).
 */
import { newRow, type Row, type SpaceSchema } from '../schema/index.js'
import { BucketDigests } from './digest.js'
import type { DiskSegment } from './disk-segment.js'
import { compareVersions, type PartitionDigest, type VersionedRecord } from './types.js'

/** Where an id's newest version is: the record itself (memtable) or a segment locator. */
export type Entry = VersionedRecord | number

/** Rows a segment may address in a locator (a u32 row number below the segment id). */
const LOC = 4294967296

/** The locator of `row` of segment `segmentId`. */
export function locate (segmentId: number, row: number): number { return segmentId * LOC + row }
/** The row number of a locator within its segment. */
export function rowOf (loc: number): number { return loc % LOC }

export class LiveIndex {
  readonly entries = new Map<string, Entry>()
  /** The segments in the manifest, by id. */
  readonly segments = new Map<number, DiskSegment>()
  liveRows = 0
  tombstones = 0
  /** Bumped by every change of the index: what is cached from the memtable is valid for one generation. */
  generation = 0
  private readonly digests: BucketDigests

  /** `schema`: the space's current columns; `digestCacheSize`: bucket counts whose digests are kept. */
  constructor (private readonly schema: () => SpaceSchema, digestCacheSize: number) {
    this.digests = new BucketDigests(digestCacheSize)
  }

  get size (): number { return this.entries.size }

  get (id: string): Entry | undefined { return this.entries.get(id) }

  /** Whether `r` (a memtable record) is still the newest version of its id. */
  holds (r: VersionedRecord): boolean { return this.entries.get(r.id) === r }

  /** The segment a locator points into. */
  seg (loc: number): DiskSegment { return this.segments.get(Math.floor(loc / LOC))! }

  entryMeta (e: Entry): { version: number, deleted: boolean } {
    if (typeof e !== 'number') return e
    const s = this.seg(e)
    const row = e % LOC
    return { version: s.versions[row]!, deleted: s.deleted[row] === 1 }
  }

  private detach (id: string, prev: Entry): void {
    const m = this.entryMeta(prev)
    if (m.deleted) this.tombstones--
    else this.liveRows--
    this.digests.toggle(id, m.version, m.deleted)
    if (typeof prev === 'number') this.seg(prev).clearLive(prev % LOC)
  }

  /** Makes `e` the newest version of `id`. */
  put (id: string, e: Entry, version: number, deleted: boolean): void {
    this.putOver(id, e, version, deleted, this.entries.get(id))
  }

  /** put() when the caller has just looked up what the index holds for `id` (`prev`). */
  putOver (id: string, e: Entry, version: number, deleted: boolean, prev: Entry | undefined): void {
    this.generation++
    if (prev !== undefined) this.detach(id, prev)
    this.entries.set(id, e)
    if (deleted) this.tombstones++
    else this.liveRows++
    this.digests.toggle(id, version, deleted)
    if (typeof e === 'number') this.seg(e).setLive(e % LOC)
  }

  /** Moves `id`'s newest version to another place holding the same (version, deleted, row). */
  relocate (id: string, to: number): void {
    this.generation++
    const prev = this.entries.get(id)!
    if (typeof prev === 'number') this.seg(prev).clearLive(prev % LOC)
    this.entries.set(id, to)
    this.seg(to).setLive(to % LOC)
  }

  remove (id: string): void {
    this.generation++
    const prev = this.entries.get(id)
    if (prev === undefined) return
    this.detach(id, prev)
    this.entries.delete(id)
  }

  /**
   * Does a candidate (version, deleted) beat the held entry `cur`, as far as the versions tell:
   * undefined when both are live rows of the same version, and only their contents decide
   * (compareVersions), one of them on disk.
   */
  winsByVersion (version: number, deleted: boolean, cur: Entry): boolean | undefined {
    const m = this.entryMeta(cur)
    if (version !== m.version) return version > m.version
    if (deleted !== m.deleted) return deleted
    if (deleted) return false
    return undefined
  }

  /** Whether `r` beats `cur` when that is known without reading a row from disk (else undefined). */
  winsKnown (r: VersionedRecord, cur: Entry): boolean | undefined {
    if (typeof cur !== 'number') return compareVersions(r, cur) > 0
    return this.winsByVersion(r.version, r.deleted, cur)
  }

  /** Whether `r` beats `cur` (last writer wins), reading `cur`'s row from disk if the contents decide. */
  async wins (r: VersionedRecord, cur: Entry): Promise<boolean> {
    return this.winsKnown(r, cur) ?? compareVersions(r, await this.materialize(cur)) > 0
  }

  /** The record an entry stands for: a memtable record as is (columns added since read as null), a locator read from disk. */
  async materialize (e: Entry): Promise<VersionedRecord> {
    if (typeof e === 'number') return await this.seg(e).record(e % LOC, this.schema())
    return this.shaped(e)
  }

  /** A memtable record with its row shaped by the current schema (a column added since reads as null). */
  shaped (e: VersionedRecord): VersionedRecord {
    const schema = this.schema()
    const row = e.row
    if (row === null) return e
    for (const c of schema) {
      if (row[c.name] === undefined) {
        const filled: Row = newRow()
        for (const c2 of schema) filled[c2.name] = row[c2.name] ?? null
        return { ...e, row: filled }
      }
    }
    return e
  }

  /** The anti-entropy digest of what the index holds (see digest.ts). */
  digest (buckets: number): PartitionDigest {
    return this.digests.digest(buckets, this.entries.size, add => {
      for (const [id, e] of this.entries) {
        const m = this.entryMeta(e)
        add(id, m.version, m.deleted)
      }
    })
  }
}
