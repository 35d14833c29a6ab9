/**
 * The storage contract: what replication (and later query) expects of one partition's replica on
 * this peer. The engine behind it (WAL, memtable, Arrow segments, compaction) is storage's own.
 */
import type { PackedRecords } from './wal.js'
import type { StoreFailure } from './failure.js'
import type { BatchOptions, StoredBatch } from '../columnar/index.js'
import type { Hlc } from '../hlc/index.js'
import type { Row, SpaceDef } from '../schema/index.js'
import type { RepairRecord, RepairUpdate } from './repair.js'

/**
 * One version of one record. A tombstone (`deleted: true`) has no row. Versions are HLC
 * timestamps; the newer version wins (compareVersions), on every replica alike.
 */
export interface VersionedRecord {
  id: string
  version: Hlc
  deleted: boolean
  /** The full row (schema-normalized, includes `id`); null for tombstones. */
  row: Row | null
}

export interface ApplyResult {
  /** Records that became the newest version of their id on this replica. */
  applied: number
  /** Records ignored because this replica already held an equal or newer version. */
  stale: number
}

/** Anti-entropy summary: a hash per bucket of ids (bucket = hash(id) % buckets). */
export interface PartitionDigest {
  buckets: number
  /** One hash per bucket, hex; equal hashes mean equal (id, version, deleted) sets. */
  hashes: string[]
  /** Hash of all bucket hashes. */
  root: string
  /** Records (including tombstones) counted in the digest. */
  records: number
}

export interface PartitionStats {
  liveRows: number
  tombstones: number
  /** Record versions in the memtables (a row rewritten before a flush counts once per version). */
  memtableRows: number
  segments: number
  walBytes: number
  diskBytes: number
}

/** One replica of one partition of one space, on this peer. */
export interface PartitionStore {
  readonly space: SpaceDef
  readonly partition: number
  /**
   * Applies records last-writer-wins and resolves once they are durable (their WAL entry is
   * fsynced). Concurrent calls are group-committed. Rejects (writes nothing) if the store is closed
   * or the disk fails. `packed`, when given, is exactly `records` already encoded (as the
   * coordinator sent them): the store may write those bytes to its log instead of encoding again.
   */
  apply(records: readonly VersionedRecord[], packed?: PackedRecords): Promise<ApplyResult>
  /**
   * The newest version held for `id`, tombstones included (while within their grace period).
   * A promise: with disk-resident segments a get may read an index block.
   */
  get(id: string): Promise<VersionedRecord | undefined>
  /** Every record held (tombstones included), in batches; for streaming a partition to a new owner. */
  scan(opts?: { batchRecords?: number, includeTombstones?: boolean }): AsyncIterable<VersionedRecord[]>
  /**
   * The live rows (no tombstones, newest version of each id only) as column batches holding at
   * least `columns` (a column the schema lacks, or that an older segment lacks, reads as all-NULL
   * of the schema's type; 'null' when the schema has no such column). A snapshot of what is
   * applied when called (the call itself, not the first iteration, takes it); the batches may be
   * read from disk as they are iterated. The vectors may be shared with a cache: never write into
   * them. Each id appears once, in no particular order. `opts.zones` skips stored batches whose
   * zone maps rule every row out (the memtable's rows are never skipped: the caller still filters).
   */
  batches(columns: readonly string[], opts?: BatchOptions): AsyncIterable<StoredBatch>
  /** The anti-entropy digest; a promise: a bucket count not kept is built by reading every key. */
  digest(buckets?: number): Promise<PartitionDigest>
  /** The records of one digest bucket (tombstones included), for anti-entropy repair. */
  bucket(index: number, buckets: number): Promise<VersionedRecord[]>
  stats(): PartitionStats
  /**
   * What anti-entropy has established about this replica against the others (repair.ts), kept
   * durable. Optional, as the four below: a store without it never purges by repair and never
   * counts as stale.
   */
  repairRecord?(): RepairRecord
  /** Records a completed sync with one peer, or a repair with every replica; durable when it resolves. */
  recordRepair?(update: RepairUpdate): Promise<void>
  /** Tombstones below this version may be dropped now: min(now - tombstoneGraceMs, repairedTo). */
  purgeHorizon?(): Hlc
  /** hlc(now - tombstoneGraceMs): no tombstone at or above it is purged, so no row there can be one whose delete went. */
  graceHorizon?(): Hlc
  /**
   * Whether this replica was found damaged (a WAL file at recovery, a segment file at open or by
   * a read) and has not yet synced with every other replica since: until it has, it must not
   * serve reads (what the damage held is missing or unreadable here).
   */
  needsRepair?(): boolean
  /** Called once this replica has synced with every other replica after its damage. */
  markRepaired?(): Promise<void>
  /**
   * Whether this replica still holds a damaged segment file: its rows there cannot be read, and a
   * digest sync would not notice (digests carry ids and versions, not values), so repairing it
   * means rebuilding it from the other replicas (StoreProvider.rebuild), not syncing it.
   */
  needsRebuild?(): boolean
  /**
   * Calls `listener` when a read or a compaction finds damage (a segment file, the first time for
   * each file) while the replica serves; returns the unsubscribe.
   */
  onDamage?(listener: () => void): () => void
  /**
   * The disk failure that stopped this replica, if one did (a WAL write or fsync, a flush, a
   * manifest swap, a device error): it refuses writes from then on and must not serve as if
   * whole. `no-space` heals once the disk has room (StoreProvider.reopen); `io` needs a rebuild
   * from the other replicas (needsRebuild says so).
   */
  failure?(): StoreFailure | undefined
  /** Calls `listener` once, when the replica fails on a disk error; returns the unsubscribe. */
  onFailure?(listener: (f: StoreFailure) => void): () => void
}

/** Orders two versions of the same id: > 0 when `a` wins. */
export function compareVersions (a: VersionedRecord, b: VersionedRecord): number {
  if (a.version !== b.version) return a.version > b.version ? 1 : -1
  // Same timestamp from two coordinators: a delete wins, then a fixed order on the content, so
  // every replica picks the same winner without coordination.
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1
  // Equal versions are nearly always the same write seen twice (a read at QUORUM, a repair):
  // compare the values before paying for the canonical strings.
  if (a.row === b.row || (a.row !== null && b.row !== null && rowsEqual(a.row, b.row))) return 0
  const ja = a.row === null ? '' : stableStringify(a.row)
  const jb = b.row === null ? '' : stableStringify(b.row)
  return ja === jb ? 0 : ja > jb ? 1 : -1
}

function rowsEqual (a: Row, b: Row): boolean {
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  for (const k of ka) {
    const x = a[k]
    const y = b[k]
    if (x === y) continue
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false
  }
  return true
}

function stableStringify (row: Row): string {
  const keys = Object.keys(row).sort()
  return JSON.stringify(keys.map(k => {
    const v = row[k]
    return typeof v === 'bigint' ? `${v}n` : v
  }))
}
