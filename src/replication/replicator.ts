/**
 * The replicator: the composition root of replication. It builds the shared context (context.ts)
 * and the parts, each handed only the slice it uses, starts and stops them in one place, and
 * keeps the public API peer.ts and the tests use. The parts: write.ts (write coordinator),
 * read.ts (reads and read repair), hints.ts (hinted handoff), replica.ts (the RPC handlers a
 * replica serves), ownership.ts (catch-up, readiness, release), anti-entropy.ts (digest sync);
 * this peer's replicas and their ready set live in local-replicas.ts. See index.ts for the overview.
 */
import type { HybridClock } from '../hlc/index.js'
import type { Placement } from '../placement/index.js'
import type { Clock, Logger, Random, Transport } from '../runtime/index.js'
import type { Row, SpaceDef } from '../schema/index.js'
import { isSegmentCorruption, type PartitionStore, type VersionedRecord } from '../storage/index.js'
import { AntiEntropy } from './anti-entropy.js'
import { Decommission } from './decommission.js'
import type { FinalSyncReport, HandOffOptions, HandOffReport } from './decommission.js'
import { keyOf, Lifecycle, newCounters } from './context.js'
import type { MembershipEvents, ReachabilityView, ReplicationContext, StoreProvider } from './context.js'
import type { HintLog, HintLogLoad } from './hint-log.js'
import { HintedHandoff, HintStore } from './hints.js'
import type { HintStats } from './hints.js'
import { LocalReplicas } from './local-replicas.js'
import { repairNow } from './on-demand.js'
import type { RepairReport, RepairRequest } from './on-demand.js'
import { resolveReplicatorOptions } from './options.js'
import type { ReplicatorOptions } from './options.js'
import { Ownership } from './ownership.js'
import { ReadCoordinator } from './read.js'
import type { ReadOptions, ReadResult } from './read.js'
import { ReplicaHandlers } from './replica.js'
import { WriteCoordinator } from './write.js'
import type { WriteOptions, WriteResult } from './write.js'

export interface ReplicatorDeps {
  transport: Transport
  clock: Clock
  random: Random
  hlc: HybridClock
  log: Logger
  placement: Placement
  stores: StoreProvider
  detector: ReachabilityView
  membership: MembershipEvents
  /**
   * The hint files, opened (and read back) by HintLog.open before the replicator is built: hints
   * are then durable and survive a restart. Without them hints live in memory.
   */
  hintFiles?: { log: HintLog, load: HintLogLoad }
  /**
   * Whether the catalog knows a space to be gone (Catalog.isGone): its writes are refused and its
   * hints dropped, so a hint kept while its space was dropped does not re-create the space's data
   * on its target. Without it, no space is.
   */
  spaceGone?: (space: SpaceDef) => boolean
}

export interface ReplicationStats {
  hints: HintStats
  /** bucketsDiffering: digest buckets found to differ from the other replica's (the differences found; at most antiEntropyMaxBuckets a round are then repaired). */
  antiEntropy: { rounds: number, bucketsDiffering: number, bucketsRepaired: number, recordsPulled: number, recordsPushed: number, failures: number }
  readRepair: { reads: number, replicasRepaired: number, recordsRepaired: number }
  /**
   * Catch-ups of partitions this peer owns but is not ready for: streamed whole (recordsStreamed)
   * when it holds nothing of one, else by comparing digests with each source (digestSyncs) and
   * pulling and pushing only the differing buckets' newer records.
   */
  catchUp: { started: number, completed: number, failed: number, recordsStreamed: number, digestSyncs: number, recordsPulled: number, recordsPushed: number, pending: number, running: number }
  release: { released: number, dropped: number }
  replica: { writes: number, recordsApplied: number, recordsStale: number, badRequests: number, clockSkewRefusals: number }
  /**
   * Tombstone safety (repair.ts): repairs completed with every other replica (each lets storage
   * purge older tombstones); this peer's replicas found stale (away longer than the grace while
   * another replica purged), and those rebuilt from the others; rows older than the others'
   * purge horizon a stale replica did not push.
   */
  repair: { repairs: number, staleReplicas: number, staleRebuilt: number, recordsWithheld: number }
  readyPartitions: number
  heldPartitions: number
}

export class Replicator {
  readonly hints: HintStore

  /** What the parts share; the replicator reads its lifecycle, replicas, counters and options. */
  private readonly ctx: ReplicationContext

  private readonly writer: WriteCoordinator
  private readonly reader: ReadCoordinator
  private readonly handoff: HintedHandoff
  private readonly replica: ReplicaHandlers
  private readonly ownership: Ownership
  private readonly antiEntropy: AntiEntropy
  private readonly decommission: Decommission

  private started = false
  private readonly unsubscribers: Array<() => void> = []

  constructor (deps: ReplicatorDeps, options: ReplicatorOptions = {}) {
    const opts = resolveReplicatorOptions(options)
    const placement = deps.placement
    const ctx: ReplicationContext = {
      self: deps.transport.localPeerId,
      transport: deps.transport,
      clock: deps.clock,
      random: deps.random,
      hlc: deps.hlc,
      log: deps.log,
      placement,
      stores: deps.stores,
      detector: deps.detector,
      membership: deps.membership,
      opts,
      life: new Lifecycle(deps.clock),
      // Damage a store finds while it serves, or a disk failure, takes it out of service (ownership decides how).
      replicas: new LocalReplicas(deps.stores, key => { this.ownership.replicaDamaged(key) }, (key, failure) => { this.ownership.replicaFailed(key, failure) }),
      counters: newCounters(),
      addr: peer => placement.addressOf(peer) ?? { id: peer, addrs: [] },
      spaceGone: deps.spaceGone ?? (() => false)
    }
    this.ctx = ctx
    const files = deps.hintFiles
    this.hints = new HintStore(opts.hintMaxBytes, opts.hintWindowMs, files === undefined ? undefined : { log: files.log, clock: deps.clock, logger: deps.log })
    if (files !== undefined) this.hints.load(files.load.hints)
    this.handoff = new HintedHandoff(ctx, this.hints)
    this.writer = new WriteCoordinator({ ...ctx, hints: this.handoff })
    this.reader = new ReadCoordinator(ctx)
    this.replica = new ReplicaHandlers(ctx)
    this.antiEntropy = new AntiEntropy(ctx)
    this.ownership = new Ownership({ ...ctx, antiEntropy: this.antiEntropy })
    // A replica found stale (repair.ts) leaves service and is rebuilt (ownership decides how).
    ctx.replicas.onStale(key => { this.ownership.replicaStale(key) })
    this.decommission = new Decommission({ ...ctx, antiEntropy: this.antiEntropy, reconcile: () => { this.ownership.scheduleReconcile() } })
  }

  // ------------------------------------------------------------------------------ lifecycle

  /**
   * Serves the replica handlers first (peers may already route requests here), then listens to
   * placement and membership, then sets the periodic work; the first reconcile runs at once.
   */
  start (): void {
    if (this.started) return
    this.started = true
    const { life, opts } = this.ctx
    life.resume()
    this.replica.register()
    this.unsubscribers.push(this.ctx.placement.onChange(() => { this.ownership.scheduleReconcile() }))
    this.unsubscribers.push(this.ctx.membership.onChange(ev => { this.handoff.memberChanged(ev) }))
    life.every(opts.reconcileIntervalMs, () => { this.ownership.reconcile() })
    life.every(opts.hintReplayIntervalMs, () => { this.handoff.replayAll() })
    if (opts.antiEntropyIntervalMs > 0) this.antiEntropy.schedule()
    this.ownership.scheduleReconcile()
  }

  /**
   * Stops listening, cancels every timer (one already due no longer fires) and the drops waiting
   * for their grace period; work in flight sees `stopped` and ends early, handlers refuse STOPPED.
   */
  stop (): void {
    if (!this.started) return
    this.started = false
    for (const u of this.unsubscribers.splice(0)) u()
    this.ctx.life.halt()
    this.ownership.stop()
  }

  stats (): ReplicationStats {
    const { counters: c, replicas } = this.ctx
    return {
      hints: this.hints.stats(),
      antiEntropy: { ...c.antiEntropy },
      readRepair: { ...c.readRepair },
      catchUp: { ...c.catchUp, pending: this.ownership.pending, running: this.ownership.running },
      release: { ...c.release },
      replica: { ...c.replica },
      repair: { ...c.repair },
      readyPartitions: replicas.readyCount,
      heldPartitions: replicas.heldCount
    }
  }

  /** Whether this peer has caught up (and marked ready) its replica of the partition. */
  isReady (space: SpaceDef, partition: number): boolean { return this.ctx.replicas.isReady(keyOf(space, partition)) }

  /**
   * This peer's replicas that failed for want of space and wait for their disk: since when
   * (clock ms), the probes so far, and the wait before the next one (Ownership.replicaFailed).
   */
  diskWaiting (): Array<{ space: SpaceDef, partition: number, since: number, probes: number, nextProbeInMs: number }> {
    return this.ownership.diskWaiting()
  }

  /** This peer's partitions left out of service because every replica rebuilt on their disk failed again (Ownership). */
  ioRebuildsGivenUp (): Array<{ space: SpaceDef, partition: number, rebuilds: number }> {
    return this.ownership.ioRebuildsGivenUp()
  }

  /**
   * Takes charge of a replica found on disk (after a restart): it is opened and held, so the next
   * reconcile catches it up if this peer owns it, or hands it to its owners and drops it if not.
   */
  async adopt (space: SpaceDef, partition: number): Promise<void> {
    if (this.ctx.life.stopped || partition < 0 || partition >= space.partitions) return
    let store: PartitionStore
    try {
      store = await this.ctx.replicas.open(space, partition)
    } catch (err) {
      if (!isSegmentCorruption(err)) throw err
      // A damaged segment keeps it from opening (storage reports it in health): catch-up rebuilds
      // it from the other replicas if this peer owns it; the other replicas on disk go on.
      this.ctx.log.error({ space: space.name, partition, err: (err as Error).message }, 'a replica on disk cannot be opened: a segment file is damaged')
      this.ctx.placement.withdrawReturning?.(space, partition)
      this.ownership.scheduleReconcile()
      return
    }
    // Held from before the restart, intact: placement announces it returning, so that other
    // holders' catch-ups take it in; empty or damaged, the start-up claim is withdrawn.
    const stats = store.stats()
    if (stats.liveRows + stats.tombstones > 0 && store.needsRepair?.() !== true) this.ctx.placement.markReturning?.(space, partition)
    else this.ctx.placement.withdrawReturning?.(space, partition)
    this.ownership.scheduleReconcile()
  }

  // ------------------------------------------------------------------------------ coordinator

  /** Writes rows (validated against the space's schema, stamped with one HLC version each). */
  async write (space: SpaceDef, rows: readonly Row[], opts: WriteOptions = {}): Promise<WriteResult> {
    return await this.writer.write(space, rows, opts)
  }

  /** Deletes records by id: tombstones, replicated like writes. */
  async remove (space: SpaceDef, ids: readonly string[], opts: WriteOptions = {}): Promise<WriteResult> {
    return await this.writer.remove(space, ids, opts)
  }

  /**
   * Replicates already-versioned records (writes, deletes, imports) at a consistency level.
   * `normalized`: every row is validateRows output for this very space (sent packed, see wire.ts).
   */
  async writeRecords (space: SpaceDef, records: readonly VersionedRecord[], opts: WriteOptions = {}, normalized = false): Promise<WriteResult> {
    return await this.writer.writeRecords(space, records, opts, normalized)
  }

  async read (space: SpaceDef, id: string, opts: ReadOptions = {}): Promise<ReadResult> {
    return await this.reader.read(space, id, opts)
  }

  // ------------------------------------------------------------------------------ local replicas

  /** The local replica of a partition for a query; refuses (NOT_HELD) one this peer neither holds nor owns. */
  async openForQuery (space: SpaceDef, partition: number): Promise<PartitionStore> {
    return await this.replica.storeForRead(space, partition)
  }

  /** Live rows of the local replica, if this peer holds the partition open (for query cost estimates). */
  localRows (space: SpaceDef, partition: number): number | undefined {
    return this.ctx.replicas.localRows(space, partition)
  }

  // ------------------------------------------------------------------------------ background

  /** Catches up owned partitions that are not ready; releases held partitions no longer owned. */
  reconcile (): void { this.ownership.reconcile() }

  /** One anti-entropy round for one partition with the other ready replica synced with longest ago (ties at random). */
  async antiEntropyRound (space: SpaceDef, partition: number): Promise<boolean> {
    return await this.antiEntropy.round(space, partition)
  }

  // ------------------------------------------------------------------------------ decommission

  /**
   * The first half of a decommission (decommission.ts): this peer stops owning, its partitions'
   * next owners catch up from it, and it waits (at most opts.timeoutMs) until each is ready on
   * them and pushed to them. The peer then leaves membership and calls finishHandOff, or gives
   * up with cancelHandOff.
   */
  async handOff (opts: HandOffOptions): Promise<HandOffReport> {
    if (!this.started) throw new Error('replication is not running')
    return await this.decommission.handOff(opts)
  }

  /** The second half, once the leave is broadcast: no more writes here, and a last push to the owners. */
  async finishHandOff (opts: { timeoutMs: number, isCurrent?: (space: SpaceDef) => boolean }): Promise<FinalSyncReport> {
    return await this.decommission.finish(opts)
  }

  /** Gives a decommission up before the leave: this peer owns partitions again. */
  cancelHandOff (): void { this.decommission.cancel() }

  /**
   * Anti-entropy now (`shoal repair`): this peer's ready replicas of the spaces asked for synced
   * with every other reachable ready replica, every differing bucket (on-demand.ts).
   */
  async repairNow (req: RepairRequest): Promise<RepairReport> {
    return await repairNow({ ...this.ctx, antiEntropy: this.antiEntropy }, req)
  }
}
