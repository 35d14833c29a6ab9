/**
 * A peer's decommission, end to end (issue 13): hand every partition it holds to its next owners
 * (Replicator.handOff, bounded), leave membership, push once more after the leave
 * (Replicator.finishHandOff), then the caller stops the peer. Two ways in: SIGTERM (Peer.stop with
 * leave, bounded by decommissionTimeoutMs; it leaves whatever happened, saying what was not handed
 * off) and POST /admin/decommission (`shoal decommission`; a hand-off that times out is given up
 * and the peer stays a member). Progress goes to the log and, for the endpoint, to the caller as
 * events, peers named by their member names.
 */
import type { Logger, PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { FinalSyncReport, HandOffEvent, HandOffReport, Replicator } from '../replication/index.js'

/** One step of a decommission as POST /admin/decommission streams it (one NDJSON line each). */
export type DecommissionEvent =
  | { event: 'started', peer: string, name: string, partitions: number, timeoutMs: number }
  | { event: 'handed-off', space: string, partition: number, to: string[], recordsPushed: number, done: number, total: number }
  | { event: 'waiting', done: number, total: number, elapsedMs: number, pending: Array<{ space: string, partition: number, reason: string }> }
  | { event: 'leaving', complete: boolean }
  | DecommissionSummary
  | { event: 'error', message: string }

/** The last event: what was handed off, what was not and why, and whether the peer left. */
export interface DecommissionSummary {
  event: 'done'
  /** Every partition this peer held was handed off. */
  complete: boolean
  /** The peer left the cluster (and is stopping). */
  left: boolean
  total: number
  handedOff: number
  notHandedOff: Array<{ space: string, partition: number, reason: string, otherReplicas: string[] }>
  /** The push after the leave (present once the peer left). */
  finalSync?: FinalSyncReport
  tookMs: number
  message: string
}

export interface DecommissionDeps {
  replicator: Pick<Replicator, 'handOff' | 'finishHandOff' | 'cancelHandOff'>
  /** Membership's graceful leave (Swim.leave), bounded by its argument. */
  leave: (timeoutMs: number) => Promise<void>
  log: Logger
  nameOf: (peer: PeerId) => string
  /** Whether a space is still in the catalog as this uid (replicas of dropped spaces are not handed off). */
  isCurrent: (space: SpaceDef) => boolean
  self: { peerId: string, name: string }
  /** Bound of the leave's broadcast and of the push after it (drainTimeoutMs). ms. */
  drainTimeoutMs: number
  now: () => number
}

export class DecommissionRunner {
  private running: Promise<DecommissionSummary> | undefined

  constructor (private readonly deps: DecommissionDeps) {}

  /** The decommission under way, if any. */
  get current (): Promise<DecommissionSummary> | undefined { return this.running }

  /**
   * Runs one decommission: hands off for at most timeoutMs; then leaves, or (a timeout, unless
   * leaveOnTimeout) gives up and stays a member. Only one at a time.
   */
  run (opts: { timeoutMs: number, leaveOnTimeout: boolean, onEvent?: (ev: DecommissionEvent) => void }): Promise<DecommissionSummary> {
    if (this.running !== undefined) throw new Error('a decommission is already under way')
    const p = this.runOnce(opts)
    this.running = p
    // A decommission given up may be asked for again; one that left stays the last.
    p.then(s => { if (!s.left && this.running === p) this.running = undefined }, () => { if (this.running === p) this.running = undefined })
    return p
  }

  private async runOnce (opts: { timeoutMs: number, leaveOnTimeout: boolean, onEvent?: (ev: DecommissionEvent) => void }): Promise<DecommissionSummary> {
    const { replicator, log, nameOf, isCurrent, self, drainTimeoutMs, now } = this.deps
    const emit = opts.onEvent ?? (() => {})
    const startedAt = now()
    let report
    try {
      report = await replicator.handOff({
        timeoutMs: opts.timeoutMs,
        nameOf,
        isCurrent,
        onProgress: ev => { emit(this.named(ev)) }
      })
    } catch (err) {
      // A hand-off that failed outright must not leave the peer 'leaving' (owning nothing) for
      // good: it owns its partitions again, unless it is leaving anyway (SIGTERM).
      if (!opts.leaveOnTimeout) replicator.cancelHandOff()
      throw err
    }
    const notHandedOff = report.notHandedOff.map(n => ({ space: n.space, partition: n.partition, reason: n.reason, otherReplicas: n.otherReplicas.map(nameOf) }))
    const base = { event: 'done' as const, complete: report.complete, total: report.total, handedOff: report.handedOff.length, notHandedOff }
    if (!report.complete && !opts.leaveOnTimeout) {
      replicator.cancelHandOff()
      const message = `not decommissioned: ${describeCount(report)}; this peer stays a member and owns partitions again`
      log.warn({ handedOff: report.handedOff.length, total: report.total, notHandedOff: notHandedOff.length }, `decommission: ${message}`)
      return { ...base, left: false, tookMs: now() - startedAt, message }
    }
    const onlyHere = notHandedOff.filter(n => n.otherReplicas.length === 0).length
    if (report.complete) {
      log.info({ handedOff: report.handedOff.length, tookMs: report.tookMs }, 'decommission: every partition handed off; leaving the cluster')
    } else {
      log.warn({ handedOff: report.handedOff.length, total: report.total, notHandedOff: notHandedOff.length, onlyCopyHere: onlyHere },
        `decommission: ${describeCount(report)}; leaving anyway: ${onlyHere === 0
          ? 'the data of each partition not handed off is still on its other replicas'
          : `${onlyHere} partition(s) have their only ready copy here and are unavailable until this peer returns (restart it on its data directory)`}`)
    }
    emit({ event: 'leaving', complete: report.complete })
    await this.deps.leave(drainTimeoutMs).catch((err: unknown) => { log.warn({ err }, 'graceful leave failed') })
    const finalSync = await replicator.finishHandOff({ timeoutMs: drainTimeoutMs, isCurrent })
    const message = report.complete
      ? `decommissioned: ${report.total} partition(s) handed off; ${self.name} left the cluster and stops`
      : `left without handing everything off: ${describeCount(report)}; ${self.name} left the cluster and stops`
    return { ...base, left: true, finalSync, tookMs: now() - startedAt, message }
  }

  private named (ev: HandOffEvent): DecommissionEvent {
    const { self, nameOf } = this.deps
    switch (ev.event) {
      case 'started': return { event: 'started', peer: self.peerId, name: self.name, partitions: ev.partitions, timeoutMs: ev.timeoutMs }
      case 'handed-off': return { ...ev, to: ev.to.map(nameOf) }
      case 'waiting': return ev
    }
  }
}

function describeCount (r: HandOffReport): string {
  return `${r.handedOff.length} of ${r.total} partition(s) handed off in ${(r.tookMs / 1000).toFixed(1)} s, ${r.notHandedOff.length} not`
}

/**
 * The events of a decommission as the HTTP answer's lines: pushed as they happen, read by the
 * response with back-pressure; bounded, since a caller that reads nothing must not grow it (the
 * oldest `waiting` lines are the ones dropped).
 */
export class EventLines implements AsyncIterable<string> {
  private readonly lines: string[] = []
  private ended = false
  private wake: (() => void) | undefined

  constructor (private readonly maxLines = 10_000) {}

  push (ev: DecommissionEvent): void {
    if (this.ended) return
    if (this.lines.length >= this.maxLines) {
      const i = this.lines.findIndex(l => l.startsWith('{"event":"waiting"'))
      if (i >= 0) this.lines.splice(i, 1)
      else if (ev.event === 'waiting') return
    }
    this.lines.push(JSON.stringify(ev) + '\n')
    this.wake?.()
  }

  /**
   * An empty line (NDJSON readers skip it): keeps a long silence from looking like a dead answer
   * to the client (fetch gives up on a body silent for 300 s; one pass over slow pushes can be).
   */
  keepAlive (): void {
    if (this.ended || this.lines.length > 0) return
    this.lines.push('\n')
    this.wake?.()
  }

  end (): void {
    this.ended = true
    this.wake?.()
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<string> {
    for (;;) {
      while (this.lines.length > 0) yield this.lines.shift()!
      if (this.ended) return
      await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = undefined
    }
  }
}
