/**
 * A consistent snapshot of one partition for a backup: its records as a majority of its ready
 * replicas and a majority of its owners hold them, merged newest version first, read bucket by
 * bucket.
 *
 * Why majorities and not one replica: a write acknowledged at QUORUM is durable on a majority of
 * the ready replicas and a majority of the owners as its coordinator saw them (replication's
 * quorum.ts, writeLevel), not on all of them (the third may still be waiting for its hint), so one
 * replica's copy can miss it. Every majority meets every other, so the merge of a majority's
 * copies holds every write acknowledged at QUORUM before the read: the guarantee a QUORUM read
 * gives one row, for the whole partition.
 *
 * Why both groups: which replicas are ready travels by gossip, so this peer's view can lag the
 * writer's. Just after a space is created each owner announces its own copy ready at once; a peer
 * that has heard only its own announcement takes the other owners for catching up, and a majority
 * of its ready list is its own copy alone, which misses a write the other two acknowledged. The
 * owners (from membership, the same at every peer once views agree) close that gap; the ready
 * replicas close the one of an ownership move (a new owner catching up, the former one still
 * serving). An owner still catching up is read like the others: what it lacks, the ready copies
 * hold, and the merge keeps the newest version of each record. These are a QUORUM read's groups
 * (replication's readLevel). Every reachable replica of either group is asked (a write
 * acknowledged at ONE on one of them is then kept too); a bucket whose answers fall short of
 * either majority fails the snapshot (BackupPartitionUnavailableError naming the partition and
 * the group).
 *
 * Reads reuse anti-entropy's request, repl.bucket: the records (tombstones included) of bucket
 * `i` of `n` (`stableHash(id) % n`; for a power of two one run of each segment). Buckets are
 * sized from the replicas' digests to about `recordsPerBucket` records, so memory is bounded by
 * (buckets in flight) × (replicas) × (one bucket), whatever the partition's size; an answer over
 * the RPC frame limit (FRAME_TOO_LARGE: wide rows) is asked again as its two halves of 2n.
 */
import type { SpaceDef } from '../schema/index.js'
import type { PeerId } from '../runtime/index.js'
import { readLevel, shortGroup, type AckGroup } from '../replication/index.js'
import { compareVersions } from '../storage/index.js'
import type { VersionedRecord } from '../storage/index.js'
import { BackupPartitionUnavailableError, type ReplicaFailure } from './errors.js'

/** How to ask one replica (this peer's own, or a remote one over RPC) about a partition. */
export interface ReplicaReader {
  /** Records held (tombstones included), from the replica's digest. */
  count(peer: PeerId, space: SpaceDef, partition: number, timeoutMs: number): Promise<number>
  /** The records of bucket `index` of `buckets` (a power of two), tombstones included. */
  bucket(peer: PeerId, space: SpaceDef, partition: number, index: number, buckets: number, timeoutMs: number): Promise<VersionedRecord[]>
}

/** What a snapshot needs from the cluster: where the partition lives, who is reachable, and how to read a replica. */
export interface SnapshotDeps {
  locate(space: SpaceDef, partition: number): { owners: readonly PeerId[], readReplicas: readonly PeerId[], quorum: number }
  isReachable(peer: PeerId): boolean
  reader: ReplicaReader
  /** A peer's name for messages; default its id. */
  nameOf?(peer: PeerId): string
}

export interface SnapshotOptions {
  /** Records a bucket holds on average. Default 1,024: anti-entropy's 256 × 4, few round trips, answers well under the 8 MiB frame for rows under ~4 KiB. */
  recordsPerBucket?: number
  /** Buckets read at once (each from every replica). Default 4: hides a round trip without holding much. */
  bucketsInFlight?: number
  /** One request to one replica. ms, default 30,000. */
  requestTimeoutMs?: number
}

/** repl.bucket accepts at most this many buckets (wire.ts MAX_DIGEST_BUCKETS). */
export const MAX_BUCKETS = 65_536

const DEFAULTS: Required<SnapshotOptions> = { recordsPerBucket: 1024, bucketsInFlight: 4, requestTimeoutMs: 30_000 }

/** The smallest power of two at least `records / perBucket`, within 1..MAX_BUCKETS. */
export function bucketCount (records: number, perBucket: number): number {
  let n = 1
  while (n < MAX_BUCKETS && records / n > perBucket) n *= 2
  return n
}

/** Newest version of each id among several replicas' answers (last writer wins, as every replica decides). */
export function mergeNewest (answers: ReadonlyArray<readonly VersionedRecord[]>): VersionedRecord[] {
  const byId = new Map<string, VersionedRecord>()
  for (const records of answers) {
    for (const r of records) {
      const held = byId.get(r.id)
      if (held === undefined || compareVersions(r, held) > 0) byId.set(r.id, r)
    }
  }
  return [...byId.values()]
}

function errorText (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown } | null
  const msg = typeof e?.message === 'string' ? e.message : String(err)
  return typeof e?.code === 'string' && !msg.startsWith(e.code) ? `${e.code}: ${msg}` : msg
}

/**
 * A bucket answer too large to take: over the RPC frame limit (FRAME_TOO_LARGE, from the
 * transport), or over the records a reader takes at once (BUCKET_TOO_LARGE, BucketTooLargeError).
 * Either way the bucket is asked again as its two halves.
 */
function isTooLarge (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'FRAME_TOO_LARGE' || code === 'BUCKET_TOO_LARGE'
}

/** A reader's answer holds more records than it takes at once (the partition grew since it was sized). */
export class BucketTooLargeError extends Error {
  override name = 'BucketTooLargeError'
  readonly code = 'BUCKET_TOO_LARGE'
  constructor (readonly records: number, readonly max: number) {
    super(`a bucket answer of ${records} records; at most ${max} at once`)
  }
}

/** Which group fell short, for the error: readLevel's QUORUM groups are the ready replicas, then the owners. */
const AMONG = ['replicas', 'owners'] as const

function unavailable (space: SpaceDef, partition: number, short: { index: number, group: AckGroup, answered: number }, tried: ReplicaFailure[]): BackupPartitionUnavailableError {
  return new BackupPartitionUnavailableError(space.name, partition, short.group.needed, short.answered, tried, AMONG[short.index] ?? 'replicas')
}

/** One partition being read; `open` has checked that majorities answer. */
export class PartitionSnapshot {
  /** Records (and tombstones among them) yielded so far. */
  records = 0
  tombstones = 0
  private readonly failed = new Map<PeerId, string>()

  /** The replicas merged into every bucket so far: those that answered and never failed. */
  get merged (): PeerId[] { return this.replicas.filter(p => !this.failed.has(p)) }

  /** Answers a bucket needs from the ready replicas (a majority of them). */
  get needed (): number { return this.groups[0]!.needed }

  private constructor (
    private readonly deps: SnapshotDeps,
    readonly space: SpaceDef,
    readonly partition: number,
    /** The replicas being merged: every reachable ready replica or owner that answered its count. */
    readonly replicas: readonly PeerId[],
    /** Each group's majority must be among a bucket's answers: the ready replicas', then the owners' (readLevel, QUORUM). */
    private readonly groups: readonly AckGroup[],
    readonly buckets: number,
    /** The most records one replica said it held when the snapshot opened. */
    readonly estimate: number,
    private readonly opts: Required<SnapshotOptions>
  ) {}

  /**
   * Checks that a majority of the partition's ready replicas and a majority of its owners are
   * reachable and answer, and sizes the buckets from their record counts. Throws
   * BackupPartitionUnavailableError otherwise.
   */
  static async open (deps: SnapshotDeps, space: SpaceDef, partition: number, options: SnapshotOptions = {}): Promise<PartitionSnapshot> {
    const opts = { ...DEFAULTS, ...options }
    const name = deps.nameOf ?? ((p: PeerId) => p)
    const loc = deps.locate(space, partition)
    const lvl = readLevel(loc, 'quorum')
    if (lvl === undefined) throw new BackupPartitionUnavailableError(space.name, partition, 1, 0, loc.owners.map(p => ({ peer: name(p), error: 'not ready (catching up or returning)' })))
    const tried: ReplicaFailure[] = lvl.targets.filter(p => !deps.isReachable(p)).map(p => ({ peer: name(p), error: 'unreachable' }))
    const reachable = lvl.targets.filter(p => deps.isReachable(p))
    const unreachable = shortGroup(lvl.groups, reachable)
    if (unreachable !== undefined) throw unavailable(space, partition, unreachable, tried)
    const counts = await Promise.allSettled(reachable.map(async p => await deps.reader.count(p, space, partition, opts.requestTimeoutMs)))
    const answered: PeerId[] = []
    let estimate = 0
    counts.forEach((c, i) => {
      if (c.status === 'fulfilled') {
        answered.push(reachable[i]!)
        estimate = Math.max(estimate, c.value)
      } else {
        tried.push({ peer: name(reachable[i]!), error: errorText(c.reason) })
      }
    })
    const silent = shortGroup(lvl.groups, answered)
    if (silent !== undefined) throw unavailable(space, partition, silent, tried)
    return new PartitionSnapshot(deps, space, partition, answered, lvl.groups, bucketCount(estimate, opts.recordsPerBucket), estimate, opts)
  }

  /**
   * The merged records, one bucket's worth at a time, in bucket order; `bucketsInFlight` buckets
   * are read ahead. Stops early when `signal` aborts. Throws BackupPartitionUnavailableError when
   * a bucket is answered by fewer than a majority.
   */
  async * read (signal?: AbortSignal): AsyncGenerator<VersionedRecord[]> {
    const window: Array<Promise<VersionedRecord[]>> = []
    let next = 0
    const launch = (): void => {
      const p = this.readBucket(next++, this.buckets)
      // Handled when its turn comes; this only keeps a failure ahead of its turn from being "unhandled".
      p.catch(() => {})
      window.push(p)
    }
    while (next < this.buckets && window.length < this.opts.bucketsInFlight) launch()
    while (window.length > 0) {
      if (signal?.aborted === true) return
      const records = await window.shift()!
      if (next < this.buckets) launch()
      for (const r of records) {
        this.records++
        if (r.deleted) this.tombstones++
      }
      if (records.length > 0) yield records
    }
  }

  /** Merges one bucket from every replica still answering; splits it in two when an answer is too large to send. */
  private async readBucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    const { reader } = this.deps
    const askable = this.replicas.filter(p => !this.failed.has(p))
    const results = await Promise.allSettled(askable.map(async p => await reader.bucket(p, this.space, this.partition, index, buckets, this.opts.requestTimeoutMs)))
    if (results.some(r => r.status === 'rejected' && isTooLarge(r.reason))) {
      if (buckets * 2 > MAX_BUCKETS) throw new BackupPartitionUnavailableError(this.space.name, this.partition, this.needed, 0, [{ peer: '*', error: `bucket ${index} of ${buckets} is too large to send (RPC frame limit) and cannot be split further` }])
      const [low, high] = await Promise.all([this.readBucket(index, buckets * 2), this.readBucket(index + buckets, buckets * 2)])
      return low.concat(high)
    }
    const answers: VersionedRecord[][] = []
    const answered: PeerId[] = []
    results.forEach((r, i) => {
      // A replica that failed once is not asked again in this snapshot: a dead one would cost a
      // timeout per bucket. The others still have to make both majorities.
      if (r.status === 'fulfilled') {
        answers.push(r.value)
        answered.push(askable[i]!)
      } else {
        this.failed.set(askable[i]!, errorText(r.reason))
      }
    })
    const short = shortGroup(this.groups, answered)
    if (short !== undefined) {
      const name = this.deps.nameOf ?? ((p: PeerId) => p)
      throw unavailable(this.space, this.partition, short, [...this.failed].map(([peer, error]) => ({ peer: name(peer), error })))
    }
    return mergeNewest(answers)
  }
}
