/**
 * Decommission (issue 13): a peer that is told to leave first hands every partition it holds to
 * the peers that own it once it is gone, then leaves. No second copy protocol: placement stops
 * counting this peer as an owner (PlacementService.setLeaving, announced as meta `leaving`) while
 * its ready copies still count, so each partition's next owners (rendezvous hashing without this
 * peer) catch up from it exactly as after a join (Ownership: streamed whole with repl.scan when
 * they hold none of it, else by digest sync) and announce it ready. Meanwhile this peer keeps
 * serving it: it is a read replica, and a write replica beside the new owners, so a write
 * acknowledged during the hand-off is on them, or on this peer and pushed below.
 *
 * A partition is handed off once every next owner has announced it ready (seen here) and this
 * peer has pushed them, by a push-only digest sync (AntiEntropy.syncWith, every bucket), whatever
 * they lack: writes it took after their catch-up read past them. The wait is bounded
 * (`timeoutMs`); what is left then is reported with why, and whether other ready replicas hold it.
 *
 * After the caller has broadcast its leave, `finish` closes this peer's replicas to writes
 * (LocalReplicas.closeWrites: repl.write answers STOPPED, and the writes this peer coordinates no
 * longer land here; those in flight end first) and pushes each partition to its owners once more:
 * a coordinator whose view had not yet heard of the decommission may have written to this peer
 * alone (replicas 1) until then. After that no write is acknowledged here, so none is lost.
 *
 * Events and log lines (component `replication`, `decommission: ...`) say what happens per
 * partition; the peer turns the events into the progress of `shoal decommission`.
 */
import type { PeerId, Timer } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { AntiEntropy, SyncReport } from './anti-entropy.js'
import type { ReplicationContext } from './context.js'

/** Compare-and-push every differing bucket: a hand-off must finish, not sample. */
const ALL_BUCKETS = Number.MAX_SAFE_INTEGER
/** How often the partitions not handed off yet are looked at again. ms. */
const CHECK_EVERY_MS = 250
/** How often a `waiting` event says what is still pending. ms. */
const WAITING_EVERY_MS = 5000
/** The reason of a partition not tried yet (the attempts at others took the time). */
const NOT_TRIED = 'not tried yet: the attempts at other partitions took the time'
/** Pending partitions named in a `waiting` event (the rest are counted). */
const WAITING_LISTED = 10

export interface HandOffOptions {
  /** Give up waiting after this long; what is not handed off by then is reported. ms. */
  timeoutMs: number
  /** Progress, in order: `started`, then `handed-off` per partition and `waiting` every 5 s. */
  onProgress?: (event: HandOffEvent) => void
  /** How the reasons name a peer (the peer passes member names); default its id. */
  nameOf?: (peer: PeerId) => string
  /**
   * Whether a space is still in the catalog (not dropped, not re-created under a new uid); default
   * always. The replicas of one that is not are left out: pushing them would create them again on
   * the next owners.
   */
  isCurrent?: (space: SpaceDef) => boolean
}

/** A partition and why it is not handed off (yet). */
export interface PendingPartition {
  space: string
  partition: number
  reason: string
}

export type HandOffEvent =
  | { event: 'started', partitions: number, timeoutMs: number }
  | { event: 'handed-off', space: string, partition: number, to: PeerId[], recordsPushed: number, done: number, total: number }
  | { event: 'waiting', done: number, total: number, elapsedMs: number, pending: PendingPartition[] }

export interface NotHandedOff extends PendingPartition {
  /** The other ready replicas this peer sees: empty when its copy is the only ready one. */
  otherReplicas: PeerId[]
}

export interface HandOffReport {
  /** Every partition this peer held was handed off. */
  complete: boolean
  total: number
  handedOff: Array<{ space: string, partition: number, to: PeerId[] }>
  notHandedOff: NotHandedOff[]
  tookMs: number
}

/** The last push after the leave (finish): partitions pushed to their owners, and those that failed. */
export interface FinalSyncReport {
  partitions: number
  failed: Array<{ space: string, partition: number, reason: string }>
}

export type DecommissionContext = Pick<ReplicationContext, 'self' | 'clock' | 'log' | 'placement' | 'replicas' | 'life' | 'detector'> & {
  antiEntropy: Pick<AntiEntropy, 'syncWith'>
  /** Runs the ownership reconcile soon (the release of what this peer no longer owns). */
  reconcile: () => void
}

interface Pending { key: string, space: SpaceDef, partition: number, reason: string }

export class Decommission {
  private running = false
  private nameOf: (peer: PeerId) => string = peer => peer

  constructor (private readonly ctx: DecommissionContext) {}

  /**
   * Stops owning, and waits (at most timeoutMs) until every partition this peer holds is ready on
   * its next owners and pushed to them. Leaves the peer decommissioning either way: the caller
   * leaves membership, or gives up with cancel().
   */
  async handOff (opts: HandOffOptions): Promise<HandOffReport> {
    const { placement, clock, log, life, replicas } = this.ctx
    if (placement.setLeaving === undefined) throw new Error('this peer\'s placement cannot decommission (no setLeaving)')
    if (this.running) throw new Error('a decommission is already under way')
    if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < 0) throw new RangeError(`decommission timeoutMs must be a non-negative integer, got ${opts.timeoutMs}`)
    this.running = true
    this.nameOf = opts.nameOf ?? (peer => peer)
    try {
      const startedAt = clock.now()
      const deadline = startedAt + opts.timeoutMs
      placement.setLeaving(true)
      this.ctx.reconcile()
      const isCurrent = opts.isCurrent ?? (() => true)
      const pending = new Map<string, Pending>()
      for (const [key, h] of replicas.heldPartitions()) {
        if (isCurrent(h.space)) pending.set(key, { key, space: h.space, partition: h.partition, reason: NOT_TRIED })
      }
      const total = pending.size
      const handedOff: HandOffReport['handedOff'] = []
      log.info({ partitions: total, timeoutMs: opts.timeoutMs }, 'decommission: handing off every partition this peer holds to its next owners')
      opts.onProgress?.({ event: 'started', partitions: total, timeoutMs: opts.timeoutMs })
      let lastWaiting = startedAt
      for (;;) {
        for (const p of [...pending.values()]) {
          // Each attempt can take a few round trips per owner: the deadline is checked before each.
          if (life.stopped || clock.now() >= deadline) break
          // Dropped meanwhile: nothing to hand off (its data goes with the space everywhere).
          if (!isCurrent(p.space)) { pending.delete(p.key); handedOff.push({ space: p.space.name, partition: p.partition, to: [] }); continue }
          const done = await this.tryHandOff(p, deadline)
          if (done === undefined) continue
          pending.delete(p.key)
          handedOff.push({ space: p.space.name, partition: p.partition, to: done.to })
          log.info({ space: p.space.name, partition: p.partition, to: done.to, recordsPushed: done.recordsPushed, done: handedOff.length, total },
            'decommission: partition handed off (its next owners are ready and hold everything this peer held)')
          opts.onProgress?.({ event: 'handed-off', space: p.space.name, partition: p.partition, to: done.to, recordsPushed: done.recordsPushed, done: handedOff.length, total })
        }
        const now = clock.now()
        // Nobody to hand a partition to (every other peer is leaving or gone): waiting cannot help.
        const hopeless = [...pending.values()].every(p => this.ctx.placement.locate(p.space, p.partition).owners.length === 0)
        if (pending.size === 0 || hopeless || now >= deadline || life.stopped) break
        if (now - lastWaiting >= WAITING_EVERY_MS) {
          lastWaiting = now
          const waiting = [...pending.values()].slice(0, WAITING_LISTED).map(describe)
          log.info({ done: handedOff.length, total, elapsedMs: now - startedAt, pending: waiting }, 'decommission: waiting for the next owners of the partitions not handed off yet')
          opts.onProgress?.({ event: 'waiting', done: handedOff.length, total, elapsedMs: now - startedAt, pending: waiting })
        }
        await this.sleep(Math.min(CHECK_EVERY_MS, deadline - now))
      }
      const notHandedOff = [...pending.values()].map(p => this.notHandedOff(p))
      const tookMs = clock.now() - startedAt
      for (const n of notHandedOff) {
        log.warn({ space: n.space, partition: n.partition, reason: n.reason, otherReplicas: n.otherReplicas },
          n.otherReplicas.length > 0
            ? 'decommission: partition not handed off; its data is still on the other replicas'
            : 'decommission: partition not handed off, and this peer holds its only ready copy: it is unavailable while this peer is away')
      }
      return { complete: notHandedOff.length === 0, total, handedOff, notHandedOff, tookMs }
    } finally {
      this.running = false
    }
  }

  /** Gives a decommission up before the leave: this peer owns its partitions again (they come back to it by the usual catch-up). */
  cancel (): void {
    this.ctx.placement.setLeaving?.(false)
    this.ctx.replicas.openWrites()
    this.ctx.reconcile()
    this.ctx.log.info({}, 'decommission given up: this peer stays a member and owns partitions again')
  }

  /**
   * After the leave: refuses writes here, waits for those in flight, then pushes every partition
   * still held to its owners once more if they are all ready (at most until timeoutMs).
   */
  async finish (opts: { timeoutMs: number, isCurrent?: (space: SpaceDef) => boolean }): Promise<FinalSyncReport> {
    const { clock, replicas, placement, log, life } = this.ctx
    const deadline = clock.now() + opts.timeoutMs
    // Writes in flight end within their fsync; a disk that hangs must not hold the stop for ever.
    let timer: Timer | undefined
    const drained = await Promise.race([
      this.ctx.replicas.closeWrites().then(() => true),
      new Promise<boolean>(resolve => { timer = clock.setTimer(opts.timeoutMs, () => { resolve(false) }) })
    ])
    timer?.cancel()
    if (!drained) log.warn({ timeoutMs: opts.timeoutMs }, 'decommission: writes still being applied here after the leave; pushing without waiting for them')
    const report: FinalSyncReport = { partitions: 0, failed: [] }
    for (const [, h] of [...replicas.heldPartitions()]) {
      if (opts.isCurrent?.(h.space) === false) continue
      const pp = placement.locate(h.space, h.partition)
      // Not handed off (no owner ready to take it): nothing to push to.
      if (pp.owners.length === 0 || !pp.owners.every(o => pp.readReplicas.includes(o))) continue
      if (clock.now() >= deadline || life.stopped) {
        report.failed.push({ space: h.space.name, partition: h.partition, reason: 'no time left' })
        continue
      }
      report.partitions++
      const failed = await this.pushToOwners(h.space, h.partition, pp.owners, deadline)
      if (failed !== undefined) report.failed.push({ space: h.space.name, partition: h.partition, reason: failed })
    }
    if (report.failed.length > 0) {
      log.warn({ failed: report.failed.slice(0, WAITING_LISTED), count: report.failed.length },
        'decommission: the last push after the leave did not complete for some partitions; a write acknowledged here alone in the last moments (by a coordinator that had not heard of the decommission) may be missing on their owners until this peer returns')
    } else {
      log.info({ partitions: report.partitions }, 'decommission: last push after the leave done')
    }
    return report
  }

  /**
   * One attempt at one partition: handed off (its owners, every one ready, took a complete push)
   * or undefined with the reason recorded in `p`.
   */
  private async tryHandOff (p: Pending, deadline: number): Promise<{ to: PeerId[], recordsPushed: number } | undefined> {
    const { placement, replicas, self, detector } = this.ctx
    const pp = placement.locate(p.space, p.partition)
    const owners = pp.owners
    // Placement without this peer: it owns nothing while leaving.
    if (owners.includes(self)) throw new Error(`decommission: this peer still owns partition ${p.partition} of '${p.space.name}' while leaving`)
    // Released and dropped meanwhile (Ownership: only once every owner was ready and took a push).
    if (!replicas.holds(p.key)) return { to: owners, recordsPushed: 0 }
    if (owners.length === 0) {
      p.reason = 'no other peer to hand it to (every other member is leaving or gone)'
      return undefined
    }
    // Pushing to an owner the detector already gives up on would only wait out a request timeout.
    const unreachable = owners.filter(o => !detector.isReachable(o))
    if (unreachable.length > 0) {
      p.reason = `its next owner${unreachable.length > 1 ? 's' : ''} ${this.names(unreachable)} cannot be reached`
      return undefined
    }
    const notReady = owners.filter(o => !pp.readReplicas.includes(o))
    if (notReady.length > 0) {
      p.reason = `waiting for ${this.names(notReady)} to catch up`
      return undefined
    }
    const report: SyncReport = { bucketsCompared: 0, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0 }
    const failed = await this.pushToOwners(p.space, p.partition, owners, deadline, report)
    if (failed !== undefined) {
      p.reason = failed
      return undefined
    }
    return { to: owners, recordsPushed: report.recordsPushed }
  }

  /** Pushes what each owner lacks; undefined when every push completed, else why not. */
  private async pushToOwners (space: SpaceDef, partition: number, owners: readonly PeerId[], deadline: number, report?: SyncReport): Promise<string | undefined> {
    for (const owner of owners) {
      const r: SyncReport = report ?? { bucketsCompared: 0, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0 }
      // The deadline inside the push too: one large partition must not hold a SIGTERM past its bound.
      const ok = await this.ctx.antiEntropy.syncWith(owner, space, partition, { pull: false, maxBuckets: ALL_BUCKETS, report: r, deadline })
      if (!ok) return `pushing to ${this.nameOf(owner)} failed: ${r.error ?? 'not every differing bucket was pushed'}`
    }
    return undefined
  }

  private names (peers: readonly PeerId[]): string { return peers.map(p => this.nameOf(p)).join(', ') }

  private notHandedOff (p: Pending): NotHandedOff {
    const pp = this.ctx.placement.locate(p.space, p.partition)
    return { ...describe(p), otherReplicas: pp.readReplicas.filter(r => r !== this.ctx.self) }
  }

  private async sleep (ms: number): Promise<void> {
    await new Promise<void>(resolve => { this.ctx.clock.setTimer(Math.max(0, ms), resolve) })
  }
}

function describe (p: Pending): PendingPartition {
  return { space: p.space.name, partition: p.partition, reason: p.reason }
}
