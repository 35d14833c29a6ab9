/**
 * Ownership moves, as this peer sees them: the reconcile that compares what placement says this
 * peer owns with what it holds and has ready. An owned partition that is not ready is caught up
 * (streamed whole from the ready replicas when this peer holds none of it, else synced bucket by
 * bucket) and only then marked ready, so a new owner never answers reads with half a partition.
 * A held partition no longer owned is pushed to its owners, marked released, and dropped after a
 * grace period (reads routed by an older view still find it meanwhile). Runs on every placement
 * change and every reconcileIntervalMs, catch-ups bounded by catchUpConcurrency.
 *
 * Damage: a replica whose WAL was damaged syncs with every other replica before it serves again.
 * One holding a damaged segment file (found at open, or by a read while it serves: then it leaves
 * service at once, replicaDamaged) is rebuilt: storage moves its files aside and opens a fresh
 * replica, which is copied from every other replica before it serves. With no other replica it
 * serves what it can read, and health reports the loss.
 *
 * Disk failures (issue 13): a replica whose disk failed under a write, an fsync or a flush leaves
 * service the same way (replicaFailed). A full disk heals by itself: its disk is probed with
 * backoff (diskProbeMinMs doubling to diskProbeMaxMs), the replica reopened from its durable
 * state once a probe succeeds, then caught up like any replica that was away. An I/O error is
 * rebuilt from the other replicas, like a damaged segment.
 */
import { formatHlc } from '../hlc/index.js'
import type { PeerId, Timer } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { errnoCode, isDiskFault, isNoSpace, isSegmentCorruption, type PartitionStore, type StoreFailure } from '../storage/index.js'
import type { AntiEntropy } from './anti-entropy.js'
import { admitCopied, errText, keyOf } from './context.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { METHOD_SCAN, parseRecordsAnswer } from './wire.js'

export type OwnershipContext = Pick<ReplicationContext, 'self' | 'transport' | 'clock' | 'hlc' | 'log' | 'placement' | 'stores' | 'detector' | 'membership' | 'replicas' | 'life' | 'addr' | 'spaceGone'> & {
  opts: Pick<ResolvedReplicatorOptions, 'catchUpConcurrency' | 'catchUpTimeoutMs' | 'catchUpRetryMs' | 'scanBatchRecords' | 'releaseGraceMs' | 'diskProbeMinMs' | 'diskProbeMaxMs'>
  counters: Pick<ReplicationCounters, 'catchUp' | 'release' | 'repair'>
  antiEntropy: Pick<AntiEntropy, 'syncWith'>
}

/** Compare-and-repair with every bucket: catch-up and release must finish, not sample. */
const ALL_BUCKETS = Number.MAX_SAFE_INTEGER

/**
 * Rebuilds after an I/O error in a row (each within IO_REBUILD_WINDOW_MS of the one before)
 * before a partition is left out of service: a disk that keeps failing fails each fresh replica
 * too, and every rebuild moves a directory aside. 3: one failure can be a bad sector the rebuild
 * leaves behind; three in ten minutes is the device.
 */
const MAX_IO_REBUILDS = 3
const IO_REBUILD_WINDOW_MS = 10 * 60_000

/** A replica waiting for its full disk: when to probe next, and since when it waits. */
interface DiskWait {
  space: SpaceDef
  partition: number
  /** The wait before the next probe (doubles after each failed one, up to diskProbeMaxMs). */
  delayMs: number
  timer: Timer | undefined
  probes: number
  /** clock.now() when the disk failed. */
  since: number
  /** clock.now() when a probe last reopened it (a failure soon after keeps the backoff). */
  healedAt: number | undefined
}

interface CatchUpJob { key: string, space: SpaceDef, partition: number }

export class Ownership {
  /**
   * Catch-ups waiting, in order: those with no other peer to talk to when queued (needsNoPeer,
   * started at once) and the others (catchUpConcurrency at a time). Two queues, so that a pump,
   * run at every catch-up's end, starts what it can without scanning every waiting job: with a
   * thousand partitions queued one scan each was a thousand placement lookups a completion.
   */
  private readonly waitingAlone: CatchUpJob[] = []
  private readonly waitingPeers: CatchUpJob[] = []
  private readonly catchUpQueued = new Set<string>()
  private readonly catchUpRunning = new Set<string>()
  /** The running catch-ups with no other peer to talk to (needsNoPeer): not counted against catchUpConcurrency. */
  private readonly catchUpAlone = new Set<string>()
  private readonly catchUpRetryAt = new Map<string, number>()
  /** Partitions being released: null while pushing to the owners, then the timer of the drop. */
  private readonly releasing = new Map<string, Timer | null>()
  private reconcileScheduled = false
  /** Partitions a damaged segment keeps from opening with nobody to rebuild them from, once logged. */
  private readonly unopenableLogged = new Set<string>()
  /** Replicas that failed for want of space, probing their disk (at most one entry per partition). */
  private readonly diskWaits = new Map<string, DiskWait>()
  /** Rebuilds after I/O errors, per partition: the last one (clock ms) and how many in a row; given up past MAX_IO_REBUILDS. */
  private readonly ioRebuilds = new Map<string, { at: number, count: number, givenUp: boolean }>()

  constructor (private readonly ctx: OwnershipContext) {}

  /**
   * A held replica found damaged while it serves (a read or a compaction met a segment block that
   * fails its check; storage reported it once). If another replica is ready to serve the partition
   * (and to repair this one), this one leaves service at once: unmarked ready here and its
   * announcement withdrawn (placement's markReleased: owned and held still, writes still land
   * here), so reads and queries go to the others; catch-up then rebuilds it. If none is, it stays:
   * withdrawn, the partition would have no ready holder left, which placement takes for a fresh
   * one (its owners would start serving it empty); it serves what it can read, reads that meet
   * the damaged block fail naming the file, and health reports the loss.
   */
  replicaDamaged (key: string): void {
    const { replicas, placement, log, self, life } = this.ctx
    const h = replicas.heldPartition(key)
    if (h === undefined || life.stopped) return
    const { space, partition } = h
    // Not serving: a catch-up (queued, running, or the next) rebuilds it.
    if (!replicas.isReady(key)) { this.scheduleReconcile(); return }
    const others = placement.locate(space, partition).readReplicas.filter(p => p !== self)
    if (others.length === 0 || !replicas.canRebuild) {
      log.error({ space: space.name, partition },
        'damaged partition has no other ready replica to repair it from: it keeps serving the rows it can read; reads that meet the damaged block fail naming the file; health reports the loss')
      return
    }
    replicas.unmarkReady(key)
    placement.markReleased(space, partition)
    log.error({ space: space.name, partition, replicas: others }, 'damaged partition taken out of service: reads go to the other replicas until it is rebuilt from them')
    this.scheduleReconcile()
  }

  /**
   * A held replica failed on a disk error (storage logged it once: a WAL write or fsync, a flush,
   * a manifest swap, a device error; it refuses writes from then on and holds only what was
   * durable). As for damage: if another replica is ready to serve the partition, this one leaves
   * service at once (unmarked ready, its announcement withdrawn), so reads, queries and
   * anti-entropy go to the others and writes to it fail (their coordinators hint them); with none
   * it keeps serving what it holds, and health reports it. Then it heals: a full disk is probed
   * with backoff and the replica reopened once the disk takes writes (probeDisk); after any other
   * error it is rebuilt from the other replicas by the catch-up (PartitionStore.needsRebuild).
   */
  replicaFailed (key: string, failure: StoreFailure): void {
    const { replicas, placement, log, self, life } = this.ctx
    const h = replicas.heldPartition(key)
    if (h === undefined || life.stopped) return
    const { space, partition } = h
    const why = { space: space.name, partition, code: failure.code, path: failure.path }
    if (replicas.isReady(key)) {
      const others = placement.locate(space, partition).readReplicas.filter(p => p !== self)
      if (others.length === 0) {
        log.error(why, 'partition failed on a disk error and has no other ready replica: it keeps serving the rows it holds (all durable); writes to it fail until it heals')
      } else {
        replicas.unmarkReady(key)
        placement.markReleased(space, partition)
        log.error({ ...why, replicas: others }, 'partition failed on a disk error, taken out of service: reads, queries and anti-entropy go to the other replicas until it heals')
      }
    }
    if (failure.kind === 'no-space') this.waitForDisk(key, space, partition)
    else this.scheduleReconcile()
  }

  /** The replicas waiting for their full disk, for health: since when (clock ms) and the probes so far. */
  diskWaiting (): Array<{ space: SpaceDef, partition: number, since: number, probes: number, nextProbeInMs: number }> {
    const out: Array<{ space: SpaceDef, partition: number, since: number, probes: number, nextProbeInMs: number }> = []
    for (const w of this.diskWaits.values()) if (w.healedAt === undefined) out.push({ space: w.space, partition: w.partition, since: w.since, probes: w.probes, nextProbeInMs: w.delayMs })
    return out
  }

  /**
   * Probes the disk of a replica that failed for want of space after the current backoff, once
   * (a call while a probe is due changes nothing). A failure soon after the last reopen (within
   * diskProbeMaxMs: the disk filled again at once) goes on from the backoff reached, so a disk
   * that keeps filling is probed at most every diskProbeMaxMs, not every second.
   */
  private waitForDisk (key: string, space: SpaceDef, partition: number): void {
    const { life, clock, opts, replicas } = this.ctx
    if (life.stopped || !replicas.canReopen) return
    const now = clock.now()
    let w = this.diskWaits.get(key)
    if (w === undefined) {
      w = { space, partition, delayMs: opts.diskProbeMinMs, timer: undefined, probes: 0, since: now, healedAt: undefined }
      this.diskWaits.set(key, w)
    } else if (w.timer !== undefined) {
      return
    } else if (w.healedAt !== undefined) {
      w.delayMs = now - w.healedAt > opts.diskProbeMaxMs ? opts.diskProbeMinMs : Math.min(w.delayMs * 2, opts.diskProbeMaxMs)
      w.healedAt = undefined
      w.since = now
      w.probes = 0
    }
    const wait = w
    wait.timer = life.timer(wait.delayMs, () => {
      wait.timer = undefined
      void this.probeDisk(key, wait)
    })
  }

  /**
   * One probe: storage writes and fsyncs a probe file in the partition's directory and, if that
   * succeeds, reopens the replica from its durable state (StoreProvider.reopen). Still full: the
   * wait doubles (up to diskProbeMaxMs) and the next probe is set. Reopened: it catches up from
   * the other replicas (the reconcile), and is ready once it has.
   */
  private async probeDisk (key: string, w: DiskWait): Promise<void> {
    const { replicas, life, log, clock, opts } = this.ctx
    if (life.stopped || this.diskWaits.get(key) !== w || w.healedAt !== undefined) return
    // Released and dropped meanwhile: nothing left to heal.
    if (!replicas.holds(key) && !this.owns(w.space, w.partition)) { this.diskWaits.delete(key); return }
    w.probes++
    let store: PartitionStore
    try {
      store = await replicas.reopen(w.space, w.partition)
      const still = store.failure?.()
      if (still !== undefined) throw new Error(`the reopened replica failed again: ${still.message}`)
    } catch (err) {
      if (life.stopped || this.diskWaits.get(key) !== w) return
      w.delayMs = Math.min(w.delayMs * 2, opts.diskProbeMaxMs)
      log.debug({ space: w.space.name, partition: w.partition, probes: w.probes, err: errText(err), nextProbeInMs: w.delayMs }, 'disk of a failed partition still takes no writes')
      this.waitForDisk(key, w.space, w.partition)
      return
    }
    w.healedAt = clock.now()
    log.info({ space: w.space.name, partition: w.partition, probes: w.probes, failedForMs: w.healedAt - w.since },
      'partition healed: its disk takes writes again and it was reopened from its durable state; it catches up from the other replicas before it serves')
    this.catchUpRetryAt.delete(key)
    this.scheduleReconcile()
  }

  /**
   * The partitions left out of service after MAX_IO_REBUILDS rebuilds in a row that failed again
   * on I/O errors (the device keeps failing; a restart tries again), for health.
   */
  ioRebuildsGivenUp (): Array<{ space: SpaceDef, partition: number, rebuilds: number }> {
    const out: Array<{ space: SpaceDef, partition: number, rebuilds: number }> = []
    for (const [key, r] of this.ioRebuilds) {
      const h = this.ctx.replicas.heldPartition(key)
      if (r.givenUp && h !== undefined) out.push({ space: h.space, partition: h.partition, rebuilds: r.count })
    }
    return out
  }

  /**
   * Whether a replica whose disk failed with an I/O error may be rebuilt now: not after
   * MAX_IO_REBUILDS in a row (then it stays out of service, logged once, its disk probed with
   * backoff until its replica reopens and catches up again on a disk that works). A rebuilt
   * replica that held for IO_REBUILD_WINDOW_MS starts the count again.
   */
  private mayRebuildAfterIoError (key: string, space: SpaceDef, partition: number, code: string): boolean {
    const now = this.ctx.clock.now()
    const r = this.ioRebuilds.get(key)
    if (r?.givenUp === true) return false
    const count = r !== undefined && now - r.at < IO_REBUILD_WINDOW_MS ? r.count + 1 : 1
    if (count > MAX_IO_REBUILDS) {
      this.ioRebuilds.set(key, { at: r!.at, count: r!.count, givenUp: true })
      this.ctx.log.error({ space: space.name, partition, code, rebuilds: r!.count },
        'partition\'s disk keeps failing: every replica rebuilt on it failed again; it is left out of service (the other replicas serve it) and its disk is probed with backoff: check the device')
      // Probed as a full disk is: once a write and an fsync pass, the replica is reopened from its
      // durable state and caught up from the others, and rebuilds are allowed again (catchUp).
      // Without it, a replica whose store had failed after it opened stayed out of service until
      // a restart, however long the device had worked again.
      this.waitForDisk(key, space, partition)
      return false
    }
    this.ioRebuilds.set(key, { at: now, count, givenUp: false })
    return true
  }

  /** Catch-ups waiting and running, for stats(). */
  get pending (): number { return this.waitingAlone.length + this.waitingPeers.length }
  get running (): number { return this.catchUpRunning.size }

  /** Cancels the drops waiting for their grace period (the data stays on disk) and the disk probes. */
  stop (): void {
    for (const t of this.releasing.values()) t?.cancel()
    this.releasing.clear()
    for (const w of this.diskWaits.values()) w.timer?.cancel()
    this.diskWaits.clear()
  }

  /** Reconciles soon, once however many changes asked for it in the meantime. */
  scheduleReconcile (): void {
    if (this.reconcileScheduled || this.ctx.life.stopped) return
    this.reconcileScheduled = true
    this.ctx.life.timer(0, () => {
      this.reconcileScheduled = false
      this.reconcile()
    })
  }

  /** Catches up owned partitions that are not ready; releases held partitions no longer owned. */
  reconcile (): void {
    const { placement, replicas } = this.ctx
    if (this.ctx.life.stopped || this.ctx.membership.hasSynced?.() === false) return
    const owned = new Map<string, { space: SpaceDef, partition: number }>()
    for (const o of placement.ownedPartitions()) owned.set(keyOf(o.space, o.partition), o)
    const now = this.ctx.clock.now()
    for (const [key, o] of owned) {
      const t = this.releasing.get(key)
      if (t !== undefined) { t?.cancel(); this.releasing.delete(key) }
      if (replicas.isReady(key) || this.catchUpQueued.has(key) || this.catchUpRunning.has(key)) continue
      if ((this.catchUpRetryAt.get(key) ?? 0) > now) continue
      this.catchUpQueued.add(key)
      const job = { key, ...o }
      ;(this.needsNoPeer(job) ? this.waitingAlone : this.waitingPeers).push(job)
    }
    for (const key of replicas.readyKeys()) if (!owned.has(key)) replicas.unmarkReady(key)
    for (const [key, h] of replicas.heldPartitions()) {
      if (owned.has(key) || this.releasing.has(key) || this.catchUpRunning.has(key)) continue
      // Its space was dropped (or re-created): nothing to hand anyone, and a sync would make
      // owners that restarted since open (create) a replica of it. Its data went with the drop.
      if (this.ctx.spaceGone(h.space)) {
        replicas.unmarkReady(key)
        replicas.forget(key)
        placement.markReleased(h.space, h.partition)
        continue
      }
      const pp = placement.locate(h.space, h.partition)
      if (pp.owners.length === 0 || !pp.owners.every(o => pp.readReplicas.includes(o))) continue
      this.releasing.set(key, null)
      void this.release(key, h.space, h.partition)
    }
    this.pumpCatchUp()
  }

  /** Whether no other peer owns, holds or returns with the partition: its catch-up opens the store and talks to nobody. */
  private needsNoPeer (job: { space: SpaceDef, partition: number }): boolean {
    const pp = this.ctx.placement.locate(job.space, job.partition)
    const self = this.ctx.self
    return [...pp.owners, ...pp.writeReplicas, ...pp.readReplicas, ...pp.returning].every(p => p === self)
  }

  /** Whether this peer owns the partition now (placement.owns when it has one, else a scan of every owned partition). */
  private owns (space: SpaceDef, partition: number): boolean {
    const { placement } = this.ctx
    if (placement.owns !== undefined) return placement.owns(space, partition)
    const key = keyOf(space, partition)
    return placement.ownedPartitions().some(o => keyOf(o.space, o.partition) === key)
  }

  private pumpCatchUp (): void {
    const { clock, life, log, opts, counters } = this.ctx
    const retryLater = (key: string): void => {
      this.catchUpRetryAt.set(key, clock.now() + opts.catchUpRetryMs)
      life.timer(opts.catchUpRetryMs, () => { this.scheduleReconcile() })
    }
    const start = (job: CatchUpJob, alone: boolean): void => {
      this.catchUpQueued.delete(job.key)
      this.catchUpRunning.add(job.key)
      if (alone) this.catchUpAlone.add(job.key)
      const staleBefore = this.ctx.replicas.isStale(job.key)
      void this.catchUp(job.key, job.space, job.partition).then(ok => {
        // Found stale during the catch-up (repair.ts): rebuilt at once, not after a retry delay.
        if (!ok && !staleBefore && this.ctx.replicas.isStale(job.key)) {
          this.scheduleReconcile()
        } else if (!ok) {
          counters.catchUp.failed++
          retryLater(job.key)
        }
      }, err => {
        counters.catchUp.failed++
        log.error({ err, space: job.space.name, partition: job.partition }, 'catch-up failed')
        retryLater(job.key)
      }).finally(() => {
        this.catchUpRunning.delete(job.key)
        this.catchUpAlone.delete(job.key)
        this.pumpCatchUp()
      })
    }
    // catchUpConcurrency bounds the catch-ups that talk to other peers; one with nobody else to
    // talk to (this peer its only owner and holder: a one-peer cluster, replicas 1) only opens its
    // store, and a restart of a peer holding a thousand of them must not queue them one by one.
    // Each is checked again as it starts: a peer may have joined or returned since it was queued.
    while (!life.stopped && this.waitingAlone.length > 0) {
      const job = this.waitingAlone.shift()!
      if (this.needsNoPeer(job)) start(job, true)
      else this.waitingPeers.push(job)
    }
    while (!life.stopped && this.waitingPeers.length > 0 && this.catchUpRunning.size - this.catchUpAlone.size < opts.catchUpConcurrency) {
      const job = this.waitingPeers.shift()!
      start(job, this.needsNoPeer(job))
    }
  }

  /**
   * Streams the partition from every reachable ready replica and marks it ready once enough of
   * them (every quorum of readReplicas intersects them) were streamed completely.
   */
  private async catchUp (key: string, space: SpaceDef, partition: number): Promise<boolean> {
    const { self, transport, placement, detector, life, log, opts, replicas } = this.ctx
    const tally = this.ctx.counters.catchUp
    if (!this.owns(space, partition)) return true
    tally.started++
    const opened = this.ctx.replicas.isStale(key) ? await this.rebuildStale(space, partition) : await this.openOrRebuild(key, space, partition)
    if (opened === undefined) return false
    const store = opened
    // A damaged replica lacks what the bad WAL frames held, or was rebuilt empty after a damaged
    // segment, and any other replica may hold what it lacks (a write's quorum is not known
    // afterwards): it syncs with every other replica, even of a fresh partition (a whole cluster
    // restarted), before it serves again.
    const damaged = store.needsRepair?.() === true
    // A replica that already holds data (a restarted peer, one that was away) compares digests
    // with each source and repairs only the buckets that differ, instead of streaming the whole
    // partition again; an empty one streams it.
    const stats = store.stats()
    const held = stats.liveRows + stats.tombstones > 0
    if (held && !damaged) placement.markReturning?.(space, partition)
    else placement.withdrawReturning?.(space, partition)
    // Located after markReturning: this peer's own announcement counts in `returning`.
    const pp = placement.locate(space, partition)
    // Nobody has it ready, yet members restarted holding data of it: every holder's announcement
    // was replaced by a restart (a whole cluster restarted, or its holders one after another,
    // never caught up in between). No copy alone is the partition: taking its own for it (as
    // when it passed for fresh) answered reads without writes the others held (a Jepsen ci-kills
    // run lost 7 acknowledged adds so). This owner becomes its first ready holder only once it
    // has taken in, completely, every returning copy and every other owner's (an owner that does
    // not say it returns may hold writes taken while the others were away).
    const unclaimed = !pp.fresh && pp.readReplicas.length === 0 && pp.returning.length > 0
    // Nobody to catch up from, and the join has not reached every known peer yet: placement does
    // not trust its view for fresh, nor is a first ready holder chosen on it. Right after a whole
    // cluster restarted, an island of the peers up first took itself for the cluster, and one of
    // them became the ready holder of partitions it held 2 of 68 rows of (cluster seed 24).
    if (!pp.fresh && pp.readReplicas.length === 0 && !damaged && this.ctx.membership.joinSettled?.() === false) return false
    // A returning holder whose copy placement vouches for counts it as one of the sources, with
    // itself among the ready holders whose every quorum the sources must meet, and must take in
    // every other returning holder's copy as well (see PlacementService.selfAsSource). Without
    // it, a partition whose other holders are all dead could never be served again.
    const selfSource = !pp.fresh && !unclaimed && !damaged && held ? placement.selfAsSource?.(space, partition) : undefined
    const holders = unclaimed
      ? [...new Set([...pp.owners, ...pp.returning])]
      : [...new Set(selfSource !== undefined ? [...pp.readReplicas, self] : pp.readReplicas)]
    // A fresh partition has nothing to catch up from: streaming it between owners that are all
    // starting from the same writes would only copy those writes back and forth.
    const sources = pp.fresh && !damaged ? [] : holders.filter(p => p !== self)
    const alsoFrom = (selfSource?.alsoFrom ?? []).filter(p => p !== self && !sources.includes(p))
    let required = 0
    if (damaged || unclaimed) {
      required = sources.length
    } else if (sources.length > 0 || selfSource !== undefined) {
      const r = holders.length
      const quorum = selfSource !== undefined ? Math.floor(r / 2) + 1 : pp.quorum
      required = Math.max(1, r - Math.max(1, Math.min(quorum, r)) + 1) - (holders.includes(self) ? 1 : 0)
    }
    let ok = 0
    let alsoOk = 0
    for (const source of [...sources, ...alsoFrom]) {
      const counted = !alsoFrom.includes(source)
      if (life.stopped) return false
      if (!detector.isReachable(source)) continue
      if (held) {
        tally.digestSyncs++
        if (await this.ctx.antiEntropy.syncWith(source, space, partition, { pull: true, maxBuckets: ALL_BUCKETS, tally })) {
          if (counted) ok++
          else alsoOk++
          log.debug({ space: space.name, partition, source }, 'caught up from source by digest comparison')
        }
        continue
      }
      try {
        let n = 0
        for await (const item of transport.stream(this.ctx.addr(source), METHOD_SCAN,
          { space, partition, batchRecords: opts.scanBatchRecords }, { timeoutMs: opts.catchUpTimeoutMs })) {
          const streamed = parseRecordsAnswer(item, space, 'repl.scan item')
          if (streamed.length === 0) continue
          // Records from the future stay out; the source offers them again by anti-entropy.
          const records = admitCopied(this.ctx, streamed, { peer: source, path: 'catch-up', space, partition })
          if (records.length > 0) await store.apply(records)
          n += records.length
        }
        tally.recordsStreamed += n
        if (counted) ok++
        else alsoOk++
        log.debug({ space: space.name, partition, source, records: n }, 'caught up from source')
      } catch (err) {
        log.warn({ space: space.name, partition, source, err: errText(err) }, 'catch-up stream failed')
      }
    }
    if (life.stopped || ok < required || alsoOk < alsoFrom.length) return false
    // One of the syncs found this copy stale (repair.ts): it is rebuilt first, never marked ready as it is.
    if (this.ctx.replicas.isStale(key)) return false
    if (!this.owns(space, partition)) return true
    // Its disk failed during the catch-up: it heals first (replicaFailed), then catches up again;
    // after an I/O error with no other replica to rebuild it from, it serves what it holds.
    const failed = store.failure?.()
    if (failed !== undefined && (failed.kind === 'no-space' || placement.locate(space, partition).readReplicas.some(p => p !== self))) return false
    // A read met a damaged segment during the sync: that is repaired by a rebuild (next attempt).
    if (sources.length > 0 && store.needsRebuild?.() === true) return false
    if (damaged) {
      if (sources.length > 0) {
        await store.markRepaired?.()
        log.warn({ space: space.name, partition, sources: ok }, 'damaged partition repaired from every other replica')
      } else {
        // Nobody else holds it: serving what is left beats serving nothing; the loss stays reported.
        log.error({ space: space.name, partition }, 'damaged partition has no other replica to repair it from: what the damaged WAL frames or segment blocks held is lost here; serving the rest')
      }
    }
    replicas.markReady(key)
    this.catchUpRetryAt.delete(key)
    tally.completed++
    placement.markReady(space, partition)
    log.info({ space: space.name, partition, sources: ok }, 'partition ready')
    // Given up after repeated I/O errors, yet open and caught up now: the device works again (a
    // transient fault, or fixed). The count starts over, so its next I/O error is rebuilt again
    // and health stops naming it.
    if (this.ioRebuilds.get(key)?.givenUp === true) {
      this.ioRebuilds.delete(key)
      log.warn({ space: space.name, partition }, 'partition given up after repeated I/O errors opened and caught up again: its disk works again; rebuilds after I/O errors allowed again')
    }
    return true
  }

  /**
   * This peer's replica of a partition for its catch-up. One holding a damaged segment file (or
   * that a damaged segment keeps from opening) is rebuilt first when other ready replicas can
   * repair it and every one of them is reachable now (until then its files stay as they are):
   * what it can still read and they lack is pushed to them (salvage), then storage moves its
   * files aside and opens a fresh, empty replica that still needs repair. With no other replica,
   * an open one is kept (it serves what it can read); one that cannot open stays out of service,
   * tried again after catchUpRetryMs (undefined).
   */
  private async openOrRebuild (key: string, space: SpaceDef, partition: number): Promise<PartitionStore | undefined> {
    const { replicas, placement, detector, log, self } = this.ctx
    let store: PartitionStore | undefined
    let openError: unknown
    try {
      store = await replicas.open(space, partition)
    } catch (err) {
      // A full disk keeps it from opening: its disk is probed until it takes writes (waitForDisk).
      if (isNoSpace(err)) { this.waitForDisk(key, space, partition); return undefined }
      // A damaged segment or an I/O error keeps it from opening: rebuilt below if it can be.
      if (!isSegmentCorruption(err) && !isDiskFault(err)) throw err
      openError = err
    }
    // Failed for want of space: it heals by reopening (waitForDisk), not by a catch-up.
    if (store?.failure?.()?.kind === 'no-space') { this.waitForDisk(key, space, partition); return undefined }
    if (store !== undefined && store.needsRebuild?.() !== true) return store
    const others = placement.locate(space, partition).readReplicas.filter(p => p !== self)
    if (others.length === 0 || !replicas.canRebuild) {
      if (store !== undefined) return store
      if (!this.unopenableLogged.has(key)) {
        this.unopenableLogged.add(key)
        log.error({ space: space.name, partition, err: errText(openError) },
          'partition cannot be opened (a damaged segment file or a disk error) and no other ready replica can rebuild it; it stays out of service and its files are left as they are')
      }
      return undefined
    }
    if (!others.every(p => detector.isReachable(p))) return undefined
    const failed = store?.failure?.()
    const ioCode = failed?.kind === 'io' ? failed.code : openError !== undefined && isDiskFault(openError) ? errnoCode(openError) ?? 'UNKNOWN' : undefined
    if (ioCode !== undefined && !this.mayRebuildAfterIoError(key, space, partition, ioCode)) return undefined
    if (store !== undefined) await this.salvage(space, partition, others)
    this.unopenableLogged.delete(key)
    const rebuilt = await replicas.rebuild(space, partition)
    log.warn({ space: space.name, partition, from: others, ...(failed !== undefined ? { code: failed.code } : {}) },
      `${failed !== undefined ? 'partition that failed on a disk error' : 'damaged partition'} replaced by a fresh replica; copying it from every other replica`)
    return rebuilt
  }

  /**
   * Before a damaged replica is rebuilt: pushes to each other replica the records it can still
   * read that are newer than theirs (writes it alone may hold: acknowledged at ONE, hints not yet
   * delivered). Best effort: buckets whose reads meet the damage are skipped; nothing read is
   * trusted blindly (a record goes only where it is newer, last writer wins).
   */
  private async salvage (space: SpaceDef, partition: number, others: readonly PeerId[]): Promise<void> {
    for (const peer of others) {
      if (this.ctx.life.stopped) return
      await this.ctx.antiEntropy.syncWith(peer, space, partition, { pull: false, maxBuckets: ALL_BUCKETS, skipUnreadable: true })
    }
  }

  /**
   * A held replica found stale against another (repair.ts: away longer than the tombstone grace
   * while the others purged tombstones it may lack; LocalReplicas.markStale). Its old rows must
   * not come back: it leaves service at once (unmarked ready, its readiness or return withdrawn),
   * refuses reads and digests (STALE_REPLICA), and the catch-up rebuilds it from the others
   * (rebuildStale); one no longer owned is released pushing only what is newer than their purge
   * horizon.
   */
  replicaStale (key: string): void {
    const { replicas, placement, log, life, counters } = this.ctx
    const h = replicas.heldPartition(key)
    if (h === undefined || life.stopped) return
    const { space, partition } = h
    counters.repair.staleReplicas++
    const wasReady = replicas.isReady(key)
    replicas.unmarkReady(key)
    placement.markReleased(space, partition)
    log.warn({ space: space.name, partition, wasReady, othersPurgedTo: formatHlc(replicas.staleHorizon(key) ?? 0) },
      'replica away longer than the tombstone grace: another replica has purged tombstones this one may lack, so its rows older than that could undo deletes; it stops serving, pushes only newer rows, and is rebuilt from the other replicas')
    this.scheduleReconcile()
  }

  /**
   * Replaces a stale replica by a fresh one (StorageEngine.rebuildPartition, reason 'stale': its
   * directory is moved aside, not deleted) once another ready replica is reachable, after pushing
   * them what it holds newer than the purge horizons (writes it alone may have taken, at ONE,
   * while cut off): no row older than that leaves it. The catch-up then copies the partition
   * from the others. Undefined: not now (nobody to rebuild from, a push that did not complete, or
   * no way to rebuild).
   */
  private async rebuildStale (space: SpaceDef, partition: number): Promise<PartitionStore | undefined> {
    const { replicas, placement, detector, log, self, counters } = this.ctx
    const others = placement.locate(space, partition).readReplicas.filter(p => p !== self && detector.isReachable(p))
    if (others.length === 0) return undefined
    if (!replicas.canRebuild) {
      log.error({ space: space.name, partition }, 'stale partition cannot be rebuilt by this peer\'s storage: it stays out of service')
      return undefined
    }
    // What it alone may hold goes first; a push that did not complete is tried again at the next
    // catch-up (the others serve meanwhile), unless damage keeps part of it unreadable for good.
    const pushed = await this.pushNewerOnly(keyOf(space, partition), space, partition, others)
    if (this.ctx.life.stopped) return undefined
    if (!pushed && (await replicas.open(space, partition)).needsRebuild?.() !== true) return undefined
    const rebuilt = await replicas.rebuild(space, partition, 'stale')
    counters.repair.staleRebuilt++
    log.warn({ space: space.name, partition, from: others }, 'stale partition replaced by a fresh replica; copying it from the other replicas')
    return rebuilt
  }

  /**
   * Pushes to each of `peers` what this stale replica holds that they lack and that is at or
   * above both its own grace horizon and the highest purge horizon it met (no tombstone there can
   * have been purged anywhere, so no such row is a deleted one coming back). True when every
   * push completed.
   */
  private async pushNewerOnly (key: string, space: SpaceDef, partition: number, peers: readonly PeerId[]): Promise<boolean> {
    const store = await this.ctx.replicas.open(space, partition)
    const pushFrom = Math.max(store.graceHorizon?.() ?? 0, this.ctx.replicas.staleHorizon(key) ?? 0)
    let all = true
    for (const peer of peers) {
      if (this.ctx.life.stopped) return false
      if (!await this.ctx.antiEntropy.syncWith(peer, space, partition, { pull: false, maxBuckets: ALL_BUCKETS, pushFrom, skipUnreadable: true })) all = false
    }
    return all
  }

  /**
   * Hands a partition this peer no longer owns to its (ready) owners: pushes what they lack,
   * marks it released, and drops the store after the grace period (pushing once more first).
   * A stale replica (repair.ts) pushes only what is newer than the others' purge horizon.
   */
  private async release (key: string, space: SpaceDef, partition: number): Promise<void> {
    const owners = this.ctx.placement.locate(space, partition).owners.filter(o => o !== this.ctx.self)
    let pushed = true
    if (this.ctx.replicas.isStale(key)) {
      pushed = await this.pushNewerOnly(key, space, partition, owners)
    } else {
      for (const owner of owners) {
        if (!await this.ctx.antiEntropy.syncWith(owner, space, partition, { pull: false, maxBuckets: ALL_BUCKETS })) pushed = false
      }
    }
    if (this.ctx.life.stopped || this.releasing.get(key) !== null) return
    if (!pushed) {
      // Some owner did not take our data yet: try again on a later reconcile.
      this.releasing.delete(key)
      return
    }
    this.ctx.placement.markReleased(space, partition)
    this.ctx.counters.release.released++
    this.ctx.log.info({ space: space.name, partition }, 'partition released; dropping after grace period')
    const t = this.ctx.life.timer(this.ctx.opts.releaseGraceMs, () => { void this.dropReleased(key, space, partition) })
    this.releasing.set(key, t)
  }

  private async dropReleased (key: string, space: SpaceDef, partition: number): Promise<void> {
    if (this.owns(space, partition)) { this.releasing.delete(key); return }
    const pp = this.ctx.placement.locate(space, partition)
    if (!pp.owners.every(o => pp.readReplicas.includes(o))) { this.releasing.delete(key); return }
    const others = pp.owners.filter(o => o !== this.ctx.self)
    if (this.ctx.replicas.isStale(key)) await this.pushNewerOnly(key, space, partition, others)
    else for (const owner of others) await this.ctx.antiEntropy.syncWith(owner, space, partition, { pull: false, maxBuckets: ALL_BUCKETS })
    if (this.ctx.life.stopped || this.owns(space, partition)) { this.releasing.delete(key); return }
    this.ctx.replicas.forget(key)
    this.releasing.delete(key)
    const { stores } = this.ctx
    if (stores.drop !== undefined) {
      try {
        await stores.drop(space, partition)
        this.ctx.counters.release.dropped++
      } catch (err) {
        this.ctx.log.error({ err, space: space.name, partition }, 'dropping a released partition failed')
      }
    }
  }
}
