/**
 * Repair horizons and stale replicas (issue 13, tombstone resurrection; docs/consistency.md,
 * "Deletes and tombstones"). Storage keeps each replica's repair record (src/storage/repair.ts);
 * this file decides what goes in it and what it implies.
 *
 * - A **sync** is complete when anti-entropy (a round or a catch-up) has compared every bucket
 *   with one other replica and moved the newer records both ways: the replica records the HLC at
 *   which it started, per peer (`synced`).
 * - A **repair with every replica** is complete once every other replica of the partition (its
 *   write and read replicas, dead owners included) has a complete sync recorded: `repairedTo`
 *   becomes the oldest of those starts. Storage purges a tombstone only below both that and the
 *   grace period, so every replica holds it (or something newer) when it goes. A partition with
 *   no other replica (R = 1) is repaired with every replica at each round: the grace alone rules.
 * - A replica is **stale** against another when it holds live rows and the other's purge
 *   horizon is above everything this one knows of itself: its own `since` and `repairedTo`, and
 *   the last complete sync between the two (either side's record). Then the other may have
 *   dropped tombstones of rows this one still holds, and pushing them would undo the deletes. It
 *   happens to a replica away longer than the grace while the others moved on without it (it
 *   stopped owning, or a repair set without it completed). Each side checks in the digest
 *   exchange (wire.ts RepairInfo); the stale one stops serving, pushes only rows newer than
 *   every purge horizon, and is rebuilt from the others (Ownership), as Cassandra requires of a
 *   node down past gc_grace.
 */
import type { Hlc } from '../hlc/index.js'
import type { PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { wallHlc, type PartitionStore } from '../storage/index.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'
import { ReplicaRequestError } from './errors.js'

/** What a replica tells another about its copy in a digest exchange (repl.digest, both ways). */
export interface RepairInfo {
  /** The sender may have dropped tombstones below this version (its store's purgeHorizon). */
  purgeHorizon: Hlc
  /** Start of the last complete sync the sender ran with the receiver; 0: none it knows of. */
  syncedWithYou: Hlc
}

/** What `store` tells `peer` about itself, or undefined when it keeps no repair record. */
export function repairInfo (store: PartitionStore, peer: PeerId): RepairInfo | undefined {
  const rec = store.repairRecord?.()
  if (rec === undefined) return undefined
  return { purgeHorizon: store.purgeHorizon?.() ?? 0, syncedWithYou: rec.synced[peer] ?? 0 }
}

/**
 * Whether `store`, this peer's replica, is stale against `peer`, which sent `theirs`: it holds
 * live rows, and `peer` may have purged tombstones below a version this replica has not been
 * brought up to since (see the file comment). A store without a repair record never is.
 */
export function isStaleAgainst (store: PartitionStore, peer: PeerId, theirs: RepairInfo): boolean {
  const rec = store.repairRecord?.()
  if (rec === undefined || theirs.purgeHorizon <= 0) return false
  const known = Math.max(rec.since, rec.repairedTo, rec.synced[peer] ?? 0, theirs.syncedWithYou)
  return theirs.purgeHorizon > known && store.stats().liveRows > 0
}

/** The refusal of a stale replica's reads, digests and scans: the coordinator asks another. */
export function staleError (space: SpaceDef, partition: number): ReplicaRequestError {
  return new ReplicaRequestError('STALE_REPLICA', `this peer's replica of partition ${partition} of '${space.name}' was away longer than the tombstone grace while another replica purged tombstones; it serves nothing until it is rebuilt from the other replicas`)
}

export type RepairContext = Pick<ReplicationContext, 'self' | 'clock' | 'log' | 'placement'> & {
  counters: Pick<ReplicationCounters, 'repair'>
}

export class RepairTracker {
  constructor (private readonly ctx: RepairContext) {}

  /** The HLC a sync starting now records: the wall clock, logical 0 (as storage's horizons). */
  now (): Hlc { return wallHlc(this.ctx.clock.wallNow()) }

  /** The other replicas a repair must cover: write and read replicas (dead owners among them), not this peer. */
  others (space: SpaceDef, partition: number): PeerId[] {
    const pp = this.ctx.placement.locate(space, partition)
    return [...new Set([...pp.writeReplicas, ...pp.readReplicas])].filter(p => p !== this.ctx.self)
  }

  /** Of `peers`, the one this replica synced with longest ago (never first); ties go to the earliest listed. */
  leastRecentlySynced (store: PartitionStore, peers: readonly PeerId[]): PeerId | undefined {
    const synced = store.repairRecord?.().synced ?? {}
    let best: PeerId | undefined
    for (const p of peers) if (best === undefined || (synced[p] ?? -1) < (synced[best] ?? -1)) best = p
    return best
  }

  /**
   * Records a complete two-way sync with `peer` that started at `startedAt`, and the repair with
   * every replica it completes, if it does (every other replica has a sync recorded).
   */
  async synced (store: PartitionStore, space: SpaceDef, partition: number, peer: PeerId, startedAt: Hlc): Promise<void> {
    if (store.recordRepair === undefined || store.repairRecord === undefined) return
    const synced = { ...store.repairRecord().synced, [peer]: Math.max(startedAt, store.repairRecord().synced[peer] ?? 0) }
    const others = this.others(space, partition)
    let repairedTo: Hlc | undefined
    if (others.every(p => synced[p] !== undefined)) repairedTo = Math.min(...others.map(p => synced[p]!))
    await this.record(store, space, partition, { peer, syncedAt: startedAt, repairedTo })
  }

  /** A partition with no other replica is repaired with every replica whenever a round comes: the grace alone rules. */
  async alone (store: PartitionStore, space: SpaceDef, partition: number): Promise<void> {
    if (store.recordRepair === undefined) return
    await this.record(store, space, partition, { repairedTo: this.now() })
  }

  private async record (store: PartitionStore, space: SpaceDef, partition: number, u: { peer?: PeerId, syncedAt?: Hlc, repairedTo?: Hlc }): Promise<void> {
    const before = store.repairRecord?.().repairedTo ?? 0
    await store.recordRepair!(u)
    const after = store.repairRecord?.().repairedTo ?? 0
    if (after > before) {
      this.ctx.counters.repair.repairs++
      this.ctx.log.debug({ space: space.name, partition, repairedTo: after }, 'repair with every replica completed')
    }
  }
}
