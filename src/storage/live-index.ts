/**
 * The id index of a partition: where the newest version of each id is. Only the memtable's ids
 * are held in memory (`mem`: id → record, active and frozen memtable alike); an id in the
 * segments is found by their Bloom filters and key indexes, on disk (key-index.ts), at the row
 * whose live bit is set (each id is live in at most one place). Every change goes through
 * putOver/moveToSegment/moveRow/purge, which keep the live bits, the live and tombstone counts
 * and the digests in step: one owner, so no part can move an id without the others following.
 * Also the last-writer-wins rule (winsKnown/wins) and reading an entry back as a record
 * (materialize).
 *
 * Lookups are asynchronous (a key-index block may need a read). `epoch` counts the changes that
 * move a version between places without the memtable seeing it (a flush's swap, a compaction's,
 * a purge); a lookup whose answer spans one of them looks again, and `current()` re-checks an
 * answer synchronously where the caller acts on it.
 */
import { newRow, type Row, type SpaceSchema } from '../schema/index.js'
import { BucketDigests, type RecordVisitor } from './digest.js'
import type { DiskSegment } from './disk-segment.js'
import { bloomHashes } from './key-index.js'
import { recordHash, stableHash } from './hash.js'
import type { LiveState } from './live-state.js'
import { compareVersions, type PartitionDigest, type VersionedRecord } from './types.js'

/** A live segment row holding an id's newest version. */
export interface SegmentEntry {
  readonly id: string
  readonly seg: DiskSegment
  readonly row: number
  readonly version: number
  readonly deleted: boolean
}

/** Where an id's newest version is: the record itself (memtable) or a segment row. */
export type Entry = VersionedRecord | SegmentEntry

export function isSegmentEntry (e: Entry): e is SegmentEntry { return 'seg' in e }

/** A lookup's answer and the epoch it was made in (see current()). */
export interface Lookup {
  readonly entry: Entry | undefined
  readonly epoch: number
}

/** current(): the answer is stale, look again. */
export const STALE = Symbol('stale')
/** lookupNow(): a segment's Bloom filter may hold the id; only a read of its key index tells. */
export const NEEDS_READ = Symbol('needs read')

export class LiveIndex {
  /** The memtable's ids, each with its newest record (active or frozen memtable). */
  readonly mem = new Map<string, VersionedRecord>()
  /** The segments in the manifest, by id; `newestFirst` in the order lookups try them. */
  readonly segments = new Map<number, DiskSegment>()
  private newestFirst: DiskSegment[] = []
  liveRows = 0
  tombstones = 0
  /** Bumped by every change of the memtable's index: what is cached from the memtable is valid for one generation. */
  generation = 0
  /** Bumped by every move of a version between places outside the memtable (see the file comment): a segment added or removed, which every flush and compaction swap does. */
  epoch = 0
  readonly digests: BucketDigests
  private readonly bloomScratch = new Uint32Array(2)
  /**
   * Lookups read key-index blocks the cache lacks without caching them (KeyIndex.lookup's
   * `transient`): set while the WAL is replayed at open, a pass that does not come back to them.
   */
  transientKeyReads = false

  /** `schema`: the space's current columns; `digestCacheSize`: bucket counts whose digests are kept. */
  constructor (private readonly schema: () => SpaceSchema, digestCacheSize: number) {
    this.digests = new BucketDigests(digestCacheSize)
  }

  /** Records held (live rows and tombstones). */
  get size (): number { return this.liveRows + this.tombstones }

  addSegment (seg: DiskSegment): void {
    this.segments.set(seg.id, seg)
    this.newestFirst = [...this.segments.values()].sort((a, b) => b.id - a.id)
    this.epoch++
  }

  removeSegment (seg: DiskSegment): void {
    this.segments.delete(seg.id)
    this.newestFirst = this.newestFirst.filter(s => s !== seg)
    this.epoch++
  }

  /** Whether `r` (a memtable record) is still the newest version of its id. */
  holds (r: VersionedRecord): boolean { return this.mem.get(r.id) === r }

  /**
   * Where `id`'s newest version is, when that is known without a read: its memtable record, or
   * undefined when no segment's Bloom filter holds it (a new id: the common case of a write);
   * NEEDS_READ otherwise. Synchronous: valid in the caller's tick.
   */
  lookupNow (id: string): Entry | undefined | typeof NEEDS_READ {
    const m = this.mem.get(id)
    if (m !== undefined) return m
    if (this.newestFirst.length === 0) return undefined
    const h = this.bloomScratch
    bloomHashes(id, h)
    for (const seg of this.newestFirst) if (seg.file.keys.mayContainHashes(h[0]!, h[1]!)) return NEEDS_READ
    return undefined
  }

  /** Where `id`'s newest version is, as of the returned epoch. */
  async lookup (id: string): Promise<Lookup> {
    for (;;) {
      const epoch = this.epoch
      const m = this.mem.get(id)
      if (m !== undefined) return { entry: m, epoch }
      let found: SegmentEntry | undefined
      for (const seg of this.newestFirst) {
        if (!seg.file.keys.mayContain(id)) continue
        const hit = await seg.file.keys.lookup(id, this.transientKeyReads)
        if (hit !== undefined && seg.isLive(hit.row)) { found = { id, seg, row: hit.row, version: hit.version, deleted: hit.deleted }; break }
        if (this.epoch !== epoch) break
      }
      if (this.epoch !== epoch) continue
      // A memtable record that came while the key indexes were read is newer than any row.
      return { entry: this.mem.get(id) ?? found, epoch }
    }
  }

  /**
   * A lookup's answer, checked in the caller's tick: the memtable's record if one came since,
   * STALE if a version moved between places since (look again), else the answer.
   */
  current (id: string, l: Lookup): Entry | undefined | typeof STALE {
    if (l.epoch !== this.epoch) return STALE
    return this.mem.get(id) ?? (l.entry !== undefined && !isSegmentEntry(l.entry) ? STALE : l.entry)
  }

  /** lookup() and current() until they agree: the entry of `id` as of the caller's tick. */
  async currentEntry (id: string): Promise<Entry | undefined> {
    for (;;) {
      const c = this.current(id, await this.lookup(id))
      if (c !== STALE) return c
    }
  }

  private detach (id: string, prev: Entry): void {
    if (prev.deleted) this.tombstones--
    else this.liveRows--
    this.digests.toggle(id, prev.version, prev.deleted)
    if (isSegmentEntry(prev)) prev.seg.clearLive(prev.row, prev.deleted)
  }

  /**
   * Makes memtable record `r` the newest version of its id if it beats what is held (last writer
   * wins), looking the id up and, when only the contents decide, reading the held row; `onPut`
   * runs in the same tick as the put (the caller adds `r` to its memtable there). False: `r` lost.
   * Synchronous (no promise) when no key index needs a read.
   */
  putIfNewer (r: VersionedRecord, onPut: () => void, absentAt = -1): boolean | Promise<boolean> {
    // Without a read when the memtable or the Bloom filters answer: no promise, no tick lost.
    // `absentAt`: the epoch at which the caller found the id in no segment; no swap since, and
    // only the memtable can hold it now.
    const now = absentAt === this.epoch ? this.mem.get(r.id) : this.lookupNow(r.id)
    if (now === NEEDS_READ) return this.putIfNewerRead(r, onPut)
    if (now !== undefined && this.winsKnown(r, now) !== true) return false
    this.putOver(r, now)
    onPut()
    return true
  }

  private async putIfNewerRead (r: VersionedRecord, onPut: () => void): Promise<boolean> {
    let decided: { seg: DiskSegment, row: number, wins: boolean } | undefined
    for (;;) {
      const cur = this.current(r.id, await this.lookup(r.id))
      if (cur === STALE) continue
      let wins = cur === undefined ? true : this.winsKnown(r, cur)
      if (wins === undefined && cur !== undefined && isSegmentEntry(cur)) {
        if (decided !== undefined && decided.seg === cur.seg && decided.row === cur.row) {
          wins = decided.wins
        } else {
          // The held row is read, then the id looked up again: it may have moved meanwhile.
          decided = { seg: cur.seg, row: cur.row, wins: compareVersions(r, await this.materialize(cur)) > 0 }
          continue
        }
      }
      if (wins !== true) return false
      this.putOver(r, cur)
      onPut()
      return true
    }
  }

  /**
   * What live-state.ts saves with a manifest swap: the segments' bits and counts and the finest
   * digest accumulator, the memtable's records taken out (the WAL brings them back on replay).
   */
  savedState (): LiveState {
    let memLive = 0
    let memTombstones = 0
    const digest = this.digests.finest().slice()
    const n = digest.length / 2
    const h = new Uint32Array(2)
    for (const r of this.mem.values()) {
      if (r.deleted) memTombstones++
      else memLive++
      recordHash(r.id, r.version, r.deleted, h)
      const b = (stableHash(r.id) % n) * 2
      digest[b]! ^= h[0]!
      digest[b + 1]! ^= h[1]!
    }
    return {
      liveRows: this.liveRows - memLive,
      tombstones: this.tombstones - memTombstones,
      segments: [...this.segments.values()].map(s => ({ id: s.id, rows: s.rows, liveCount: s.liveCount, liveTombstones: s.liveTombstones, oldestTombstone: s.oldestTombstone, live: s.live })),
      digest
    }
  }

  /** Takes a saved state (recovery, before the WAL replay); false when it does not describe these segments. */
  restore (state: LiveState): boolean {
    if (state.segments.length !== this.segments.size) return false
    for (const g of state.segments) {
      const seg = this.segments.get(g.id)
      if (seg === undefined || seg.rows !== g.rows) return false
    }
    for (const g of state.segments) this.segments.get(g.id)!.restoreLive(g.live, g.liveCount, g.liveTombstones, g.oldestTombstone)
    this.liveRows = state.liveRows
    this.tombstones = state.tombstones
    this.digests.restore(state.digest)
    return true
  }

  /** Makes memtable record `r` the newest version of its id, over `prev` (what current() answered). */
  putOver (r: VersionedRecord, prev: Entry | undefined): void {
    this.generation++
    if (prev !== undefined) this.detach(r.id, prev)
    this.mem.set(r.id, r)
    if (r.deleted) this.tombstones++
    else this.liveRows++
    this.digests.toggle(r.id, r.version, r.deleted)
  }

  /** Sets a segment row live for an id the index does not hold yet (rebuilding from the keys). */
  putRow (id: string, seg: DiskSegment, row: number, version: number, deleted: boolean, prev: Entry | undefined): void {
    if (prev !== undefined) this.detach(id, prev)
    seg.setLive(row, deleted)
    if (deleted) this.tombstones++
    else this.liveRows++
    this.digests.toggle(id, version, deleted)
  }

  /** A flush wrote memtable record `r` as `row` of `seg`: it lives there now, unless a newer one came. */
  moveToSegment (r: VersionedRecord, seg: DiskSegment, row: number): void {
    if (this.mem.get(r.id) !== r) return
    this.generation++
    this.mem.delete(r.id)
    seg.setLive(row, r.deleted)
  }

  /**
   * A compaction copied row `row` of `from` to row `to` of `into`: it lives there now, if it still
   * lived. `from`'s bit stays: the segment leaves the index in the same swap (removeSegment), and
   * snapshots that still read it took copies of its bits.
   */
  moveRow (from: DiskSegment, row: number, into: DiskSegment, to: number, deleted: boolean): boolean {
    if (!from.isLive(row)) return false
    into.setLive(to, deleted)
    return true
  }

  /** Drops a live tombstone row (compaction past the grace period); false if it no longer lived. */
  purge (id: string, seg: DiskSegment, row: number, version: number): boolean {
    if (!seg.isLive(row)) return false
    this.detach(id, { id, seg, row, version, deleted: true })
    return true
  }

  /**
   * Does a candidate (version, deleted) beat the held entry `cur`, as far as the versions tell:
   * undefined when both are live rows of the same version, and only their contents decide
   * (compareVersions), one of them on disk.
   */
  winsByVersion (version: number, deleted: boolean, cur: Entry): boolean | undefined {
    if (version !== cur.version) return version > cur.version
    if (deleted !== cur.deleted) return deleted
    if (deleted) return false
    return undefined
  }

  /** Whether `r` beats `cur` when that is known without reading a row from disk (else undefined). */
  winsKnown (r: VersionedRecord, cur: Entry): boolean | undefined {
    if (!isSegmentEntry(cur)) return compareVersions(r, cur) > 0
    return this.winsByVersion(r.version, r.deleted, cur)
  }

  /** Whether `r` beats `cur` (last writer wins), reading `cur`'s row from disk if the contents decide. */
  async wins (r: VersionedRecord, cur: Entry): Promise<boolean> {
    return this.winsKnown(r, cur) ?? compareVersions(r, await this.materialize(cur)) > 0
  }

  /** The record an entry stands for: a memtable record as is (columns added since read as null), a segment row read from disk. */
  async materialize (e: Entry): Promise<VersionedRecord> {
    if (isSegmentEntry(e)) return await e.seg.recordOf(e, this.schema())
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

  /**
   * Visits a snapshot of every record held (its id, version and flag): the memtable's records and
   * each segment's live rows, their bits taken in one tick (liveSnapshot); the segments' keys are then read
   * block by block (the segments pinned meanwhile).
   */
  readonly visit: RecordVisitor = async add => {
    const mem = [...this.mem.values()]
    const parts = [...this.segments.values()].filter(s => s.liveCount > 0).map(seg => { seg.pin(); return { seg, live: seg.liveSnapshot() } })
    try {
      for (const r of mem) add(r.id, r.version, r.deleted)
      for (const { seg, live } of parts) {
        for await (const e of seg.file.keys.entries()) {
          if ((live[e.row >> 3]! & (1 << (e.row & 7))) !== 0) add(e.id, e.version, e.deleted)
        }
      }
    } finally {
      for (const { seg } of parts) seg.unpin()
    }
  }

  /** The anti-entropy digest of what the index holds (see digest.ts). */
  async digest (buckets: number): Promise<PartitionDigest> {
    return await this.digests.digest(buckets, () => this.size, this.visit)
  }
}
