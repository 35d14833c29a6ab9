/**
 * Anti-entropy: the background repair of what writes, hints and read repair missed (a hint that
 * expired, a coordinator that restarted). Every round (jittered around antiEntropyIntervalMs)
 * takes the next ready owned partitions in turn and compares its digest with the other ready
 * replica synced with longest ago (ties at random); for each differing bucket (at most antiEntropyMaxBuckets a round) the newer
 * records go both ways, each through the skew bound (admitCopied). syncWith, the comparison
 * itself, also serves catch-up (pull and push, every bucket) and release (push only).
 *
 * Tombstone safety (repair.ts): each side of a digest exchange sends its purge horizon, and a
 * replica stale against the other's stops there (it would push rows whose deletes the other
 * has purged; it is rebuilt instead). A complete two-way sync is recorded in the replica's repair
 * record, and completes a repair with every replica once each other replica has one: storage
 * purges tombstones only below that. A round picks the replica synced longest ago, so a repair
 * with every replica completes in R - 1 rounds of a partition.
 */
import type { Hlc } from '../hlc/index.js'
import type { PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { compareVersions, isSegmentCorruption } from '../storage/index.js'
import type { VersionedRecord } from '../storage/index.js'
import { admitCopied, errText, keyOf } from './context.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { isStaleAgainst, RepairTracker, repairInfo } from './repair.js'
import { chunkRecords, METHOD_BUCKET, METHOD_DIGEST, parseDigestAnswer, parseDigestAnswerRepair, parseRecordsAnswer } from './wire.js'
import { pushRecords } from './write.js'

export interface SyncOptions {
  /** Apply the peer's newer records here too; false only pushes ours (a release). */
  pull: boolean
  /** Differing buckets handled in this sync; the rest wait for a later one. */
  maxBuckets: number
  /** Where pulled and pushed records are counted; default the anti-entropy counters (which then count repaired buckets too). */
  tally?: { recordsPulled: number, recordsPushed: number }
  /**
   * A bucket this replica cannot read (a damaged segment block) is left out and the others go on,
   * instead of failing the sync: salvaging what a damaged replica can still read before it is
   * rebuilt. The sync then answers false (not every differing bucket was handled).
   */
  skipUnreadable?: boolean
  /**
   * A stale replica's last pushes before its rebuild (Ownership, repair.ts): only records at or
   * above this version go (nothing is pulled; `pull` must be false), those below are withheld and
   * counted, and the staleness check is skipped (the caller knows).
   */
  pushFrom?: Hlc
  /** What this sync found, for a caller that reports it (an on-demand repair, on-demand.ts). */
  report?: SyncReport
  /**
   * Stop before the next bucket once the clock (ctx.clock.now()) passes this: the sync answers
   * false, its report's error says so (a decommission bounded by its timeout).
   */
  deadline?: number
}

/** What one sync found and moved (SyncOptions.report): the digest buckets compared and differing, the records pulled and pushed, and why it failed. */
export interface SyncReport {
  bucketsCompared: number
  bucketsDiffering: number
  recordsPulled: number
  recordsPushed: number
  /** Why the sync failed, when it did. */
  error?: string
}

export type AntiEntropyContext = Pick<ReplicationContext, 'self' | 'transport' | 'clock' | 'random' | 'hlc' | 'log' | 'placement' | 'detector' | 'replicas' | 'life' | 'addr'> & {
  opts: Pick<ResolvedReplicatorOptions, 'antiEntropyIntervalMs' | 'antiEntropyConcurrency' | 'antiEntropyMaxBuckets' | 'requestTimeoutMs' | 'maxBatchRecords' | 'maxBatchBytes'>
  counters: Pick<ReplicationCounters, 'antiEntropy' | 'repair'>
}

export class AntiEntropy {
  private running = 0
  private cursor = 0
  private readonly repair: RepairTracker

  constructor (private readonly ctx: AntiEntropyContext) {
    this.repair = new RepairTracker(ctx)
  }

  /** Schedules the next round (and, from it, the one after). */
  schedule (): void {
    const mean = this.ctx.opts.antiEntropyIntervalMs
    this.ctx.life.timer(mean * (0.5 + this.ctx.random.next()), () => {
      this.tick()
      this.schedule()
    })
  }

  private tick (): void {
    const owned = this.ctx.placement.ownedPartitions().filter(o => this.ctx.replicas.isReady(keyOf(o.space, o.partition)))
    if (owned.length === 0) return
    while (this.running < this.ctx.opts.antiEntropyConcurrency) {
      const o = owned[this.cursor++ % owned.length]!
      this.running++
      void this.round(o.space, o.partition).finally(() => { this.running-- })
      if (this.running >= owned.length) break
    }
  }

  /**
   * One anti-entropy round for one partition with the reachable ready replica synced longest ago
   * (of those never synced, a random one). A partition with no other replica is recorded repaired.
   */
  async round (space: SpaceDef, partition: number): Promise<boolean> {
    let store
    try {
      store = await this.ctx.replicas.open(space, partition)
    } catch (err) {
      this.ctx.counters.antiEntropy.failures++
      this.ctx.log.debug({ space: space.name, partition, err: errText(err) }, 'anti-entropy round: the local replica did not open')
      return false
    }
    if (this.repair.others(space, partition).length === 0) {
      await this.repair.alone(store, space, partition).catch((err: unknown) => { this.ctx.log.warn({ space: space.name, partition, err: errText(err) }, 'recording a repair failed') })
      return true
    }
    const pp = this.ctx.placement.locate(space, partition)
    const peers = pp.readReplicas.filter(p => p !== this.ctx.self && this.ctx.detector.isReachable(p))
    if (peers.length === 0) return false
    const oldest = this.repair.leastRecentlySynced(store, peers)!
    const synced = store.repairRecord?.().synced ?? {}
    const tied = peers.filter(p => synced[p] === synced[oldest])
    const peer = tied[this.ctx.random.int(tied.length)]!
    this.ctx.counters.antiEntropy.rounds++
    return await this.syncWith(peer, space, partition, { pull: true, maxBuckets: this.ctx.opts.antiEntropyMaxBuckets })
  }

  /**
   * Compares digests with `peer` and, for each differing bucket, applies the newer records both
   * ways (or only pushes ours when pull is false). True when every differing bucket was handled.
   * A failure counts in the anti-entropy counters whoever asked.
   */
  async syncWith (peer: PeerId, space: SpaceDef, partition: number, opts: SyncOptions): Promise<boolean> {
    const { transport, random, opts: { requestTimeoutMs: timeoutMs, maxBatchRecords, maxBatchBytes } } = this.ctx
    const counters = this.ctx.counters.antiEntropy
    const tally = opts.tally ?? counters
    const pushFrom = opts.pushFrom
    if (pushFrom !== undefined && opts.pull) throw new Error('syncWith: pushFrom only pushes (pull must be false)')
    try {
      const startedAt = this.repair.now()
      const store = await this.ctx.replicas.open(space, partition)
      let buckets = 64
      const records = (await store.digest(1)).records
      while (buckets < 16_384 && records / buckets > 256) buckets *= 2
      const local = await store.digest(buckets)
      const mine = pushFrom === undefined ? repairInfo(store, peer) : undefined
      const answer = await transport.request(this.ctx.addr(peer), METHOD_DIGEST, mine === undefined ? { space, partition, buckets } : { space, partition, buckets, repair: mine }, { timeoutMs })
      const remote = parseDigestAnswer(answer, buckets)
      // The peer may have purged tombstones of rows this copy still holds: it pushes (and takes) nothing more.
      const theirs = parseDigestAnswerRepair(answer)
      if (pushFrom === undefined && theirs !== undefined && isStaleAgainst(store, peer, theirs)) {
        this.ctx.replicas.markStale(keyOf(space, partition), theirs.purgeHorizon)
        if (opts.report !== undefined) opts.report.error = 'this replica is stale against the other (away longer than the tombstone grace while it purged): it is rebuilt instead'
        return false
      }
      if (opts.report !== undefined) opts.report.bucketsCompared += buckets
      if (remote.root === local.root) {
        if (opts.pull) await this.repair.synced(store, space, partition, peer, startedAt)
        return true
      }
      const ourPurge = store.purgeHorizon?.() ?? 0
      const theirPurge = theirs?.purgeHorizon ?? 0
      const differing: number[] = []
      for (let i = 0; i < buckets; i++) if (local.hashes[i] !== remote.hashes[i]) differing.push(i)
      if (opts.tally === undefined) counters.bucketsDiffering += differing.length
      if (opts.report !== undefined) opts.report.bucketsDiffering += differing.length
      const start = differing.length > opts.maxBuckets ? random.int(differing.length) : 0
      const n = Math.min(differing.length, opts.maxBuckets)
      let skipped = 0
      for (let k = 0; k < n; k++) {
        if (this.ctx.life.stopped) return false
        if (opts.deadline !== undefined && this.ctx.clock.now() >= opts.deadline) {
          if (opts.report !== undefined) opts.report.error = `out of time with ${n - k} of ${n} differing buckets left`
          return false
        }
        const index = differing[(start + k) % differing.length]!
        const theirs = parseRecordsAnswer(await transport.request(this.ctx.addr(peer), METHOD_BUCKET,
          { space, partition, index, buckets }, { timeoutMs }), space, 'repl.bucket answer')
        let ours: VersionedRecord[]
        try {
          ours = await store.bucket(index, buckets)
        } catch (err) {
          if (opts.skipUnreadable !== true || !isSegmentCorruption(err)) throw err
          skipped++
          continue
        }
        const theirById = new Map<string, VersionedRecord>()
        for (const r of theirs) theirById.set(r.id, r)
        const ourById = new Map<string, VersionedRecord>()
        for (const r of ours) ourById.set(r.id, r)
        // A tombstone below the receiving side's purge horizon, of an id it holds nothing of, is not
        // copied: that side had it when it last repaired with every replica, and purged it; copied
        // back, it would be purged again and again while replicas purge at different times, and
        // their digests would keep differing.
        const newer = opts.pull ? theirs.filter(r => { const o = ourById.get(r.id); return o === undefined ? !(r.deleted && r.version < ourPurge) : compareVersions(r, o) > 0 }) : []
        // Both ways through the skew bound: a record from the future is neither taken in nor
        // handed on (one held here from before the bound was checked, or stamped while this
        // peer's own clock ran ahead, would also make the peer refuse the whole batch).
        const pull = newer.length > 0 ? admitCopied(this.ctx, newer, { peer, path: 'anti-entropy pull', space, partition }) : newer
        let pushable = ours.filter(r => { const t = theirById.get(r.id); return t === undefined ? !(r.deleted && r.version < theirPurge) : compareVersions(r, t) > 0 })
        if (pushFrom !== undefined) {
          const newer = pushable.filter(r => r.version >= pushFrom)
          this.ctx.counters.repair.recordsWithheld += pushable.length - newer.length
          pushable = newer
        }
        const push = pushable.length > 0 ? admitCopied(this.ctx, pushable, { peer, path: 'anti-entropy push', space, partition }) : pushable
        if (pull.length > 0) {
          await store.apply(pull)
          tally.recordsPulled += pull.length
          if (opts.report !== undefined) opts.report.recordsPulled += pull.length
        }
        for (const chunk of chunkRecords(push, maxBatchRecords, maxBatchBytes)) {
          await pushRecords(this.ctx, peer, space, partition, chunk, timeoutMs)
          tally.recordsPushed += chunk.length
          if (opts.report !== undefined) opts.report.recordsPushed += chunk.length
        }
        if ((pull.length > 0 || push.length > 0) && opts.tally === undefined) counters.bucketsRepaired++
      }
      const complete = n === differing.length && skipped === 0
      if (complete && opts.pull) await this.repair.synced(store, space, partition, peer, startedAt)
      return complete
    } catch (err) {
      counters.failures++
      if (opts.report !== undefined) opts.report.error = errText(err)
      this.ctx.log.debug({ peer, space: space.name, partition, err: errText(err) }, 'anti-entropy sync failed')
      return false
    }
  }
}
