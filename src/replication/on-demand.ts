/**
 * Anti-entropy on demand (`shoal repair`, POST /cluster/repair, issue 14): this peer's part of a
 * cluster-wide repair, run now rather than sampled by the background rounds. For every partition
 * of the spaces asked for, one of its ready replicas, the partition's leader for this repair,
 * syncs with every other reachable ready replica in turn (AntiEntropy.syncWith, the core of a round: digests compared, the newer
 * records of every differing bucket applied both ways), every bucket, where a background round
 * syncs with one replica and at most antiEntropyMaxBuckets buckets. Records it took from a later
 * replica have not reached the earlier ones, so it syncs again with those (a second pass that
 * finds equal digests costs one digest exchange). Afterwards every live ready replica of the
 * partition holds every record any of them held (writes made meanwhile aside).
 *
 * The leader is the ready replica whose id sorts first among the peers running the same repair
 * (`covered`): one peer a partition, so no two peers copy the same records at once, and what a
 * repair reports moved was moved once. A complete sync also counts in tombstone repair
 * (repair.ts), as a background round's does.
 */
import type { PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { AntiEntropy, SyncReport } from './anti-entropy.js'
import { keyOf } from './context.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'

/** Partitions synced at once: each sync holds one bucket of records at a time. */
export const REPAIR_CONCURRENCY = 4
/** Failures listed in a report (the counts cover every one). */
export const MAX_REPORTED_FAILURES = 100

export interface RepairRequest {
  /** The spaces to repair, as this peer's catalog has them. */
  spaces: readonly SpaceDef[]
  /**
   * The peers running this same repair: a partition is synced by its ready replica whose id sorts
   * first among them. Empty: this peer syncs every partition it holds ready.
   */
  covered: readonly PeerId[]
  /** Aborted when the caller gives up: no new sync starts. */
  signal?: AbortSignal
}

/** One sync of this peer's replica of a partition with another replica that did not complete. */
export interface RepairFailure {
  space: string
  partition: number
  peer: PeerId
  error: string
}

/** What this peer's part of a repair did. */
export interface RepairReport {
  /** Partitions this peer synced, as their leader (see above). */
  partitions: number
  /** Syncs with another replica it ran, and of those, the ones that did not complete. */
  syncs: number
  syncsFailed: number
  /** Digest buckets compared, and found differing. */
  bucketsCompared: number
  bucketsDiffering: number
  /** Records taken from the other replicas, and sent to them. */
  recordsPulled: number
  recordsPushed: number
  /** The failed syncs, at most MAX_REPORTED_FAILURES. */
  failures: RepairFailure[]
  /** True when the caller gave up before every sync ran. */
  cancelled: boolean
}

export type OnDemandContext = Pick<ReplicationContext, 'self' | 'placement' | 'detector' | 'replicas' | 'life'> & {
  counters: Pick<ReplicationCounters, 'antiEntropy'>
  antiEntropy: Pick<AntiEntropy, 'syncWith'>
}

/** Compare-and-repair with every bucket: a repair must finish, not sample. */
const ALL_BUCKETS = Number.MAX_SAFE_INTEGER

export async function repairNow (ctx: OnDemandContext, req: RepairRequest): Promise<RepairReport> {
  const report: RepairReport = {
    partitions: 0, syncs: 0, syncsFailed: 0, bucketsCompared: 0, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0, failures: [], cancelled: false
  }
  const covered = new Set(req.covered)
  const work: Array<{ space: SpaceDef, partition: number, peers: PeerId[] }> = []
  for (const space of req.spaces) {
    for (let partition = 0; partition < space.partitions; partition++) {
      const replicas = ctx.placement.locate(space, partition).readReplicas
      if (!replicas.includes(ctx.self) || !ctx.replicas.isReady(keyOf(space, partition))) continue
      const leader = replicas.filter(p => p === ctx.self || covered.has(p)).sort()[0]
      if (leader !== ctx.self) continue
      report.partitions++
      const peers = replicas.filter(p => p !== ctx.self && ctx.detector.isReachable(p))
      if (peers.length > 0) work.push({ space, partition, peers })
    }
  }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < work.length) {
      if (ctx.life.stopped || req.signal?.aborted === true) { report.cancelled = true; return }
      const { space, partition, peers } = work[next++]!
      // The last replica records were pulled from: those before it have not got them yet.
      let lastPull = -1
      for (let i = 0; i < peers.length; i++) {
        if (await syncOne(ctx, report, space, partition, peers[i]!) > 0) lastPull = i
      }
      for (let i = 0; i < lastPull; i++) await syncOne(ctx, report, space, partition, peers[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(REPAIR_CONCURRENCY, work.length) }, worker))
  return report
}

/** One sync, counted in the report and the anti-entropy counters; answers the records it pulled. */
async function syncOne (ctx: OnDemandContext, report: RepairReport, space: SpaceDef, partition: number, peer: PeerId): Promise<number> {
  const found: SyncReport = { bucketsCompared: 0, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0 }
  report.syncs++
  // No tally: syncWith counts what it found and moved in the background counters
  // (shoal_anti_entropy_total) as for any round; the round itself is counted here.
  ctx.counters.antiEntropy.rounds++
  const complete = await ctx.antiEntropy.syncWith(peer, space, partition, { pull: true, maxBuckets: ALL_BUCKETS, report: found })
  report.bucketsCompared += found.bucketsCompared
  report.bucketsDiffering += found.bucketsDiffering
  report.recordsPulled += found.recordsPulled
  report.recordsPushed += found.recordsPushed
  if (!complete) {
    report.syncsFailed++
    if (report.failures.length < MAX_REPORTED_FAILURES) {
      report.failures.push({ space: space.name, partition, peer, error: found.error ?? (ctx.life.stopped ? 'replication stopped' : 'not every differing bucket was repaired') })
    }
  }
  return found.recordsPulled
}
