/**
 * What the parts of the replicator share. replicator.ts builds one ReplicationContext: the other
 * layers replication reads (through the narrow views below), the resolved options, one lifecycle
 * whose timers all die with stop(), the counters stats() reports and this peer's local replicas.
 * Each part declares, by Pick, the slice of it that it uses, so a part's dependencies show in its
 * type and a test can hand it just those. Also the few helpers several parts need.
 */
import type { ClockSkewError, HybridClock } from '../hlc/index.js'
import type { MemberEvent } from '../membership/index.js'
import type { Placement } from '../placement/index.js'
import type { Clock, Logger, PeerAddress, PeerId, Random, Timer, Transport } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { compareVersions } from '../storage/index.js'
import type { PartitionStore, VersionedRecord } from '../storage/index.js'
import { NotSyncedError } from './errors.js'
import type { LocalReplicas } from './local-replicas.js'
import type { ResolvedReplicatorOptions } from './options.js'
import type { ReplicationStats } from './replicator.js'

/**
 * Why a replica is rebuilt: 'damaged' (a damaged segment file, a disk error) or 'stale' (away
 * longer than the tombstone grace while the others purged, repair.ts); storage names the moved-aside
 * directory and its log line after it.
 */
export type RebuildReason = 'damaged' | 'stale'

/** Opens (creating if needed) this peer's replica of a partition; the real one wraps storage. */
export interface StoreProvider {
  open(space: SpaceDef, partition: number): Promise<PartitionStore>
  /** Deletes this peer's replica once it was handed off. Optional: without it data is kept. */
  drop?(space: SpaceDef, partition: number): Promise<void>
  /**
   * Replaces this peer's damaged replica (PartitionStore.needsRebuild, or one a damaged segment
   * keeps from opening) by a fresh, empty one that still needs repair; the damaged files are kept
   * aside. Optional: without it a damaged replica is never rebuilt (it serves what it can read
   * if it is the only one, else stays out of service).
   */
  rebuild?(space: SpaceDef, partition: number, reason?: RebuildReason): Promise<PartitionStore>
  /**
   * Reopens this peer's replica that failed for want of space (PartitionStore.failure kind
   * `no-space`) from its durable state, once a probe write and fsync of its disk succeed; throws
   * the probe's error while the disk is still full. Optional: without it such a replica stays
   * failed until the peer restarts.
   */
  reopen?(space: SpaceDef, partition: number): Promise<PartitionStore>
}

/** What replication needs of the partition detector (PartitionDetector satisfies it). */
export interface ReachabilityView {
  isReachable(peerId: PeerId): boolean
  quorumReachable(replicas: readonly PeerId[], needed: number): boolean
}

/** What replication needs of membership (Swim satisfies it): 'alive' / 'join' events replay hints. */
export interface MembershipEvents {
  onChange(listener: (ev: MemberEvent) => void): () => void
  /**
   * Whether membership has exchanged state with the cluster since start (Swim.hasSynced). Until
   * then this peer neither catches up nor marks partitions ready, and refuses to coordinate:
   * its view is only itself. Default: always synced.
   */
  hasSynced?(): boolean
  /** Whether the join has reached every bootstrap address or given up on it (Swim.joinSettled); without it, always. */
  joinSettled?(): boolean
}

/** The counters behind stats(); each part is handed only its own group. */
export type ReplicationCounters = Pick<ReplicationStats, 'antiEntropy' | 'readRepair' | 'release' | 'replica' | 'repair'> & {
  catchUp: Omit<ReplicationStats['catchUp'], 'pending' | 'running'>
}

export function newCounters (): ReplicationCounters {
  return {
    antiEntropy: { rounds: 0, bucketsDiffering: 0, bucketsRepaired: 0, recordsPulled: 0, recordsPushed: 0, failures: 0 },
    readRepair: { reads: 0, replicasRepaired: 0, recordsRepaired: 0 },
    catchUp: { started: 0, completed: 0, failed: 0, recordsStreamed: 0, digestSyncs: 0, recordsPulled: 0, recordsPushed: 0 },
    release: { released: 0, dropped: 0 },
    replica: { writes: 0, recordsApplied: 0, recordsStale: 0, badRequests: 0, clockSkewRefusals: 0 },
    repair: { repairs: 0, staleReplicas: 0, staleRebuilt: 0, recordsWithheld: 0 }
  }
}

/**
 * Whether replication is stopped, and every timer its parts set: one place to cancel them all, so
 * a stopped replicator fires nothing (a timer that was already due checks `stopped` first).
 */
export class Lifecycle {
  private halted = false
  private readonly timers = new Set<Timer>()

  constructor (private readonly clock: Clock) {}

  get stopped (): boolean { return this.halted }

  resume (): void { this.halted = false }

  /** Marks replication stopped and cancels every pending timer. */
  halt (): void {
    this.halted = true
    for (const t of this.timers) t.cancel()
    this.timers.clear()
  }

  timer (delayMs: number, fn: () => void): Timer {
    const t = this.clock.setTimer(delayMs, () => {
      this.timers.delete(t)
      if (!this.halted) fn()
    })
    this.timers.add(t)
    return t
  }

  every (periodMs: number, fn: () => void): void {
    if (periodMs <= 0) return
    const tick = (): void => {
      fn()
      this.timer(periodMs, tick)
    }
    this.timer(periodMs, tick)
  }
}

/**
 * Everything the parts of the replicator may ask for, built once by the Replicator. A part takes
 * a Pick of it (its own options and counters narrowed further), never the Replicator itself.
 */
export interface ReplicationContext {
  readonly self: PeerId
  readonly transport: Transport
  readonly clock: Clock
  readonly random: Random
  readonly hlc: HybridClock
  readonly log: Logger
  readonly placement: Placement
  readonly stores: StoreProvider
  readonly detector: ReachabilityView
  readonly membership: MembershipEvents
  readonly opts: ResolvedReplicatorOptions
  readonly life: Lifecycle
  readonly replicas: LocalReplicas
  readonly counters: ReplicationCounters
  /** How to reach a peer: placement's addresses, or its bare id when placement has none. */
  readonly addr: (peer: PeerId) => PeerAddress
  /**
   * Whether this peer's catalog knows `space` to be gone (dropped, or replaced by a newer space of
   * the same name): writes for it are refused (SPACE_GONE), hints for it dropped.
   */
  readonly spaceGone: (space: SpaceDef) => boolean
}

export function keyOf (space: SpaceDef, partition: number): string { return `${space.uid}\u0000${partition}` }

export function errText (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown } | null
  // A replica whose storage failed says where (a damaged segment names its file): keep the words.
  if (e?.code === 'STORE_FAILED' && typeof e.message === 'string') return e.message
  if (typeof e?.code === 'string') return e.code
  return typeof e?.message === 'string' ? e.message : String(err)
}

/** Replica errors not worth hinting: the same request would be refused again. */
export function isPermanent (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'BAD_REQUEST' || code === 'FRAME_TOO_LARGE' || code === 'NO_HANDLER' || code === 'SPACE_GONE'
}

/**
 * The ids among records just applied that lost to a newer version the replica already held
 * (the write path's `stale`): one lookup per record, only when apply reported stale ones. An
 * equal version (the same write seen twice) did not lose; of one id written twice in a batch,
 * the newer counts.
 */
export async function lostIds (store: PartitionStore, records: readonly VersionedRecord[], stale: number): Promise<string[]> {
  if (stale === 0) return []
  const newest = new Map<string, VersionedRecord>()
  for (const r of records) {
    const n = newest.get(r.id)
    if (n === undefined || compareVersions(r, n) > 0) newest.set(r.id, r)
  }
  const out: string[] = []
  for (const r of newest.values()) {
    const held = await store.get(r.id)
    if (held !== undefined && compareVersions(held, r) > 0) out.push(r.id)
  }
  return out
}

/** Where copied records came from, for the skew warning. */
export interface CopySource { peer: PeerId, path: 'anti-entropy pull' | 'anti-entropy push' | 'catch-up' | 'read repair' | 'hint replay', space: SpaceDef, partition: number }

/**
 * The skew check of every path that copies records between replicas (anti-entropy, catch-up,
 * read repair, hint replay), the same bound a replica applies to a write: a record versioned
 * more than maxSkewMs ahead of this peer's clock is left out (not applied, not pushed onward),
 * counted in the skew refusals and logged at warn with the peer and how far ahead. Applied, it
 * would win every later write to its id by last-writer-wins until real time caught up. Nothing
 * keeps the refused records here: the peer that holds them offers them again on every
 * anti-entropy round, and once real time is within the bound they are accepted like any other.
 * The accepted ones are observed (causality, as a write does). Returns the accepted records.
 */
export function admitCopied (ctx: { hlc: HybridClock, log: Logger }, records: readonly VersionedRecord[], from: CopySource): VersionedRecord[] {
  const limit = ctx.hlc.skewLimit()
  let max = 0
  let over = false
  for (const r of records) {
    if (r.version > limit) over = true
    else if (r.version > max) max = r.version
  }
  const accepted = over ? records.filter(r => r.version <= limit) : records as VersionedRecord[]
  if (over) {
    let worst: VersionedRecord | undefined
    for (const r of records) if (r.version > limit && (worst === undefined || r.version > worst.version)) worst = r
    let err: ClockSkewError | undefined
    for (const r of records) if (r.version > limit) { const e = ctx.hlc.countRefusal(r.version); if (r === worst) err = e }
    ctx.log.warn({
      peer: from.peer, path: from.path, space: from.space.name, partition: from.partition,
      refused: records.length - accepted.length, aheadMs: err?.skewMs, maxSkewMs: err?.maxSkewMs,
      ids: records.filter(r => r.version > limit).slice(0, 5).map(r => r.id)
    }, 'records versioned too far ahead of this clock refused (not applied, not passed on); anti-entropy offers them again')
  }
  // Within the bound, so observe does not refuse it unless the wall clock stepped back just now:
  // then the records are still within the bound they were checked against.
  if (max > 0) { try { ctx.hlc.observe(max) } catch { /* see above */ } }
  return accepted
}

/** A peer that has not heard from its cluster since it started does not coordinate. */
export function requireSynced (membership: MembershipEvents, space: SpaceDef, operation: 'write' | 'read'): void {
  if (membership.hasSynced?.() === false) throw new NotSyncedError(space.name, operation)
}
