/**
 * One query's scatter-gather (the coordinator's side, service.ts starts it): asks one replica per
 * partition, one request per peer covering the partitions that peer was chosen for, merges
 * answers as they stream in, retries a partition on the next replica when a peer fails, refuses
 * or runs past its per-target deadline, hedges to a second replica once a peer has taken longer
 * than its p95, and cancels what still runs when every partition is answered or the deadline
 * passes. With analyze it keeps each peer's figures: what the peer did (rows, its own timings)
 * and what the coordinator saw (round trip, time merging its partials).
 */
import type { PeerId, Timer } from '../../runtime/index.js'
import { QueryExecError, type FragmentStats, type MemoryBudget, type QueryMerger } from '../exec/index.js'
import { QueryError } from './errors.js'
import { METHOD_FRAGMENT, serveFragments, type FragmentItem, type FragmentRequest, type PartitionTimings } from './fragments.js'
import type { QueryPlan } from './planner.js'
import type { Coverage, QueryService } from './service.js'

export const FANOUT_BUCKETS = [1, 2, 4, 8, 16, 32, 64]

/**
 * The reason every request of a finished query is aborted with: one shared error, because
 * abort() without a reason builds a DOMException (and its stack) per request, every query.
 */
const QUERY_NO_LONGER_NEEDS_IT = Object.freeze(new Error('the query no longer needs this request'))

/** What one peer did for a query, summed over its partitions, and what the coordinator saw of it. */
export interface PeerAnalysis {
  peer: PeerId
  name: string
  partitions: number
  rows: number
  rowsOut: number
  bytes: number
  /** The peer's executor, summed over its partitions (which may run side by side). */
  ms: number
  /** The peer: partitions waiting for their turn (a worker busy with another), summed. */
  waitMs: number
  /** The peer: opening the replica and reading its batches, summed. */
  readMs: number
  /** The peer: from the request's arrival to its last partition's answer being ready (the latest). */
  readyMs: number
  /** The coordinator: from sending the request to the last partial received (each request, summed). */
  roundTripMs: number
  /** The coordinator: decoding and merging this peer's partials. */
  mergeMs: number
}

/**
 * Where a query's time went on the coordinator, stage by stage (EXPLAIN ANALYZE). `scatterMs` is
 * the wall time from the first request to the last partial, and holds the merging (`mergeMs`,
 * done as partials arrive) and every peer's round trip; `gcMs` is this process's garbage
 * collection pauses within the query, whatever stage they fell in.
 */
export interface QueryStages {
  parseMs: number
  planMs: number
  scatterMs: number
  mergeMs: number
  finishMs: number
  gcMs: number
}

export interface QueryAnalysis {
  peers: PeerAnalysis[]
  tookMs: number
  hedges: number
  retries: number
  stages?: QueryStages
}

export interface PartState {
  partition: number
  replicas: PeerId[]
  tried: Set<PeerId>
  inflight: number
  done: boolean
  missing?: string
  lastError?: string
}


/** One query's scatter-gather. */
export class Scatter {
  private readonly parts = new Map<number, PartState>()
  private readonly inflight = new Set<AbortController>()
  private readonly queue: Array<{ peer: PeerId, parts: PartState[], hedge: boolean }> = []
  private running = 0
  private peersAsked = new Set<PeerId>()
  private readonly perPeer = new Map<PeerId, PeerAnalysis>()
  private hedgesFired = 0
  private retries = 0
  private settle!: () => void
  private fail!: (err: unknown) => void
  private finished = false
  private deadlineTimer: Timer | undefined

  constructor (private readonly svc: QueryService, private readonly plan: QueryPlan, private readonly merger: QueryMerger, private readonly o: { deadline: number, signal?: AbortSignal, analyze: boolean, budget: MemoryBudget }) {
    for (const t of plan.targets) this.parts.set(t.partition, { partition: t.partition, replicas: t.replicas, tried: new Set(), inflight: 0, done: false })
  }

  async run (): Promise<void> {
    const d = this.svc.d
    const done = new Promise<void>((resolve, reject) => { this.settle = resolve; this.fail = reject })
    if (this.o.signal?.aborted === true) throw new QueryError('CANCELLED', 499, 'the query was cancelled')
    const onAbort = (): void => { this.abortAll(); this.finish(new QueryError('CANCELLED', 499, 'the query was cancelled')) }
    this.o.signal?.addEventListener('abort', onAbort, { once: true })
    this.deadlineTimer = d.clock.setTimer(Math.max(0, this.o.deadline - d.clock.now()), () => {
      for (const s of this.parts.values()) if (!s.done && s.missing === undefined) s.missing = 'timeout: no answer before the query deadline'
      this.abortAll()
      this.finish()
    })
    this.dispatch([...this.parts.values()], false)
    this.checkDone()
    try {
      await done
    } finally {
      this.o.signal?.removeEventListener('abort', onAbort)
      this.deadlineTimer?.cancel()
      this.abortAll()
      const n = this.peersAsked.size
      const stat = this.svc.stat
      if (n === 0 || (n === 1 && this.peersAsked.has(d.self))) stat.localOnly++
      const bucket = FANOUT_BUCKETS.findIndex(b => n <= b)
      stat.fanout[bucket < 0 ? FANOUT_BUCKETS.length : bucket]!++
    }
  }

  private finish (err?: unknown): void {
    if (this.finished) return
    this.finished = true
    if (err !== undefined) this.fail(err)
    else this.settle()
  }

  private abortAll (): void {
    for (const c of this.inflight) c.abort(QUERY_NO_LONGER_NEEDS_IT)
    this.inflight.clear()
  }

  private checkDone (): void {
    for (const s of this.parts.values()) if (!s.done && s.missing === undefined) return
    this.finish()
  }

  /** Sends each partition to its next untried replica, one request per peer. */
  private dispatch (parts: PartState[], hedge: boolean): void {
    const byPeer = new Map<PeerId, PartState[]>()
    for (const s of parts) {
      if (s.done || s.missing !== undefined) continue
      const next = s.replicas.find(p => !s.tried.has(p) && (p === this.svc.d.self || this.svc.d.isReachable(p)))
      if (next === undefined) {
        if (s.inflight === 0 && !hedge) s.missing = s.lastError ?? (s.replicas.length === 0 ? 'no reachable replica' : 'every replica failed')
        continue
      }
      let l = byPeer.get(next)
      if (l === undefined) byPeer.set(next, l = [])
      l.push(s)
    }
    // Every hedged request costs a token (one slow peer's partitions may hedge to several peers),
    // and a hedge is all or nothing: the query waits for its slowest partition anyway.
    if (hedge && byPeer.size > 0 && !this.svc.tryHedge(byPeer.size)) return
    for (const [peer, ps] of byPeer) {
      for (const s of ps) { s.tried.add(peer); s.inflight++ }
      this.queue.push({ peer, parts: ps, hedge })
    }
    this.pump()
  }

  private pump (): void {
    while (this.running < this.svc.options.maxFanout && this.queue.length > 0 && !this.finished) {
      const job = this.queue.shift()!
      this.running++
      void this.ask(job.peer, job.parts, job.hedge).finally(() => {
        this.running--
        this.pump()
        this.checkDone()
      })
    }
  }

  private async ask (peer: PeerId, parts: PartState[], hedge: boolean): Promise<void> {
    const d = this.svc.d
    const opts = this.svc.options
    this.peersAsked.add(peer)
    if (hedge) { this.hedgesFired++; this.svc.stat.hedgesFired++ }
    const controller = new AbortController()
    this.inflight.add(controller)
    const t0 = d.clock.now()
    const pending = new Set(parts.map(p => p.partition))
    const byPartition = new Map(parts.map(p => [p.partition, p]))
    /**
     * Whether every partition still pending here was answered (here or by another replica). No
     * copy of the set, and it stops at the first open one (usually the first: partitions answer
     * in order), so checking after each partition does not cost O(n) each.
     */
    const allDone = (ps: Set<number>): boolean => {
      for (const p of ps) if (!byPartition.get(p)!.done) return false
      return true
    }
    /** Rows chunks of a partition, held until its last chunk: a partition commits whole or not at all. */
    const held = new Map<number, FragmentItem[]>()
    /** A hedge counts as won once, when it is the first to answer one of its partitions. */
    let won = false
    const spec = this.plan.split
    const req: FragmentRequest = { space: this.plan.space.name, uid: this.plan.space.uid, partitions: parts.map(p => p.partition), plan: spec.fragment, budgetBytes: opts.memoryBudgetMb * 1024 * 1024, analyze: this.o.analyze }
    // Hedge: if this peer is slower than its usual p95, ask the next replica for what is still pending.
    let hedgeTimer: Timer | undefined
    if (opts.hedgeRatePerSec > 0 && peer !== d.self && !hedge) {
      hedgeTimer = d.clock.setTimer(this.svc.health.hedgeDelayMs(peer), () => {
        const slow = [...pending].map(p => byPartition.get(p)!).filter(s => !s.done && s.inflight === 1 && s.replicas.some(r => !s.tried.has(r)))
        if (slow.length > 0) this.dispatch(slow, true)
      })
    }
    const perTarget = Math.min(opts.perTargetTimeoutMs, Math.max(1, this.o.deadline - t0))
    let failure: string | undefined
    try {
      const items = peer === d.self
        ? serveFragments(this.svc.fragmentServer(), req, controller.signal, true)
        : this.remote(peer, req, perTarget, controller.signal)
      for await (const raw of items) {
        const item = raw as FragmentItem
        const s = byPartition.get(item?.p)
        if (s === undefined || !pending.has(s.partition)) continue
        if ('error' in item) {
          if (item.error.code === 'MEMORY_BUDGET' || item.error.code === 'LIMIT') {
            // What was asked is too big for any replica: fail the query as the merge would (422), rather than retry it everywhere and answer nothing.
            this.finish(this.svc.toQueryError(new QueryExecError(item.error.code, item.error.message)))
            return
          }
          if (item.error.code === 'BAD_FRAGMENT') { this.finish(this.refused(peer, item.error.message)); return }
          if (item.error.code === 'EXEC_ERROR' && !s.done) { this.finish(this.execFailed(peer, s.partition, item.error.message)); return }
          pending.delete(s.partition)
          s.inflight--
          s.lastError = `${this.svc.peerLabel(peer)}: ${item.error.code}: ${item.error.message}`
          if (!s.done) { this.retries++; this.svc.stat.retries++; this.dispatch([s], false) }
          continue
        }
        let list = held.get(s.partition)
        if (list === undefined) held.set(s.partition, list = [])
        list.push(item)
        if (!item.last) continue
        pending.delete(s.partition)
        held.delete(s.partition)
        s.inflight--
        if (s.done || s.missing !== undefined) continue
        try {
          const m0 = d.clock.now()
          for (const it of list) this.merger.add((it as Extract<FragmentItem, { out: unknown }>).out)
          this.peerAnalysis(peer).mergeMs += d.clock.now() - m0
        } catch (err) {
          // A partial that cannot merge (a budget, a limit) fails the whole query.
          this.finish(this.svc.toQueryError(err))
          return
        }
        s.done = true
        if (hedge && !won) { won = true; this.svc.stat.hedgesWon++ }
        if (item.stats !== undefined) this.note(peer, item.stats)
        if (allDone(pending)) break
        this.checkDone()
      }
      if (!allDone(pending)) failure = 'the peer ended its answer early'
      this.peerAnalysis(peer).roundTripMs += d.clock.now() - t0
      this.svc.health.observe(peer, d.clock.now() - t0)
    } catch (err) {
      if (!this.finished && (err as { code?: unknown }).code === 'BAD_FRAGMENT') { this.finish(this.refused(peer, (err as Error).message)); return }
      if (!this.finished && (err as { code?: unknown }).code === 'FRAME_TOO_LARGE' && !allDone(pending)) { this.finish(this.tooLarge(peer, pending, (err as Error).message)); return }
      if (this.finished) {
        // Cut short because the query finished without it (hedges or other replicas answered
        // first): this peer is at least that slow, and the planner should learn it.
        if ([...pending].some(p => byPartition.get(p)!.done)) this.svc.health.observeFailure(peer, d.clock.now() - t0)
        return
      }
      failure = (err as Error).message ?? String(err)
      this.svc.health.observeFailure(peer, d.clock.now() - t0)
    } finally {
      hedgeTimer?.cancel()
      this.inflight.delete(controller)
      controller.abort(QUERY_NO_LONGER_NEEDS_IT)
    }
    if (this.finished) return
    const retry: PartState[] = []
    for (const p of pending) {
      const s = byPartition.get(p)!
      s.inflight--
      if (s.done) continue
      s.lastError = `${this.svc.peerLabel(peer)}: ${failure ?? 'no answer'}`
      retry.push(s)
    }
    if (retry.length > 0) {
      this.retries += retry.length
      this.svc.stat.retries += retry.length
      this.dispatch(retry, false)
    }
  }

  /**
   * A peer found the fragment malformed: every replica would, and answering without those
   * partitions would hide it. The coordinator checked the query against the same limits, so this
   * is a bug (or peers of different versions), said as one.
   */
  private refused (peer: PeerId, message: string): QueryError {
    return new QueryError('INTERNAL', 500, `peer ${this.svc.peerLabel(peer)} refused this query's fragment as malformed: ${message}`)
  }

  /**
   * A peer's executor failed on a partition with an error of the query itself (a bug the same
   * plan over the same rows meets on every replica): retried, it would end as a partition
   * "missing" from a 200 for no real unavailability, so the query fails, naming where.
   */
  private execFailed (peer: PeerId, partition: number, message: string): QueryError {
    return new QueryError('INTERNAL', 500, `peer ${this.svc.peerLabel(peer)} failed running this query on ${this.plan.space.name}/${partition}: ${message}`)
  }

  /**
   * A piece of a peer's answer did not fit one RPC frame. Rows and groups are cut to a quarter of
   * a frame or less, so this is one row, one group's state (count(DISTINCT) of a huge set) or a
   * JSON aggregation's states past the limit: the same on every replica, and the query's size, so
   * a 422 that says what to narrow rather than a partition missing.
   */
  private tooLarge (peer: PeerId, pending: ReadonlySet<number>, message: string): QueryError {
    const parts = [...pending].slice(0, 5).map(p => `${this.plan.space.name}/${p}`).join(', ')
    return new QueryError('LIMIT', 422, `peer ${this.svc.peerLabel(peer)} could not send its answer for ${parts}${pending.size > 5 ? ', …' : ''}: ${message}; a single row, group or aggregation state must fit one frame: narrow the query (fewer distinct values per group, smaller aggregations)`)
  }

  private async * remote (peer: PeerId, req: FragmentRequest, timeoutMs: number, signal: AbortSignal): AsyncGenerator<unknown> {
    const addr = this.svc.d.addressOf(peer)
    if (addr === undefined) throw new Error('no address known for this peer')
    yield * this.svc.d.transport.stream(addr, METHOD_FRAGMENT, req, { timeoutMs, signal })
  }

  private peerAnalysis (peer: PeerId): PeerAnalysis {
    let a = this.perPeer.get(peer)
    if (a === undefined) this.perPeer.set(peer, a = { peer, name: this.svc.peerLabel(peer), partitions: 0, rows: 0, rowsOut: 0, bytes: 0, ms: 0, waitMs: 0, readMs: 0, readyMs: 0, roundTripMs: 0, mergeMs: 0 })
    return a
  }

  private note (peer: PeerId, stats: FragmentStats & PartitionTimings & { bytes: number }): void {
    const a = this.peerAnalysis(peer)
    a.partitions++
    a.rows += stats.rowsScanned
    a.rowsOut += stats.rowsMatched
    a.bytes += stats.bytes
    a.ms += stats.ms
    // Numbers from the wire: a peer of an older version sends no timings.
    a.waitMs += typeof stats.waitMs === 'number' && Number.isFinite(stats.waitMs) ? stats.waitMs : 0
    a.readMs += typeof stats.readMs === 'number' && Number.isFinite(stats.readMs) ? stats.readMs : 0
    if (typeof stats.readyMs === 'number' && Number.isFinite(stats.readyMs)) a.readyMs = Math.max(a.readyMs, stats.readyMs)
  }

  coverage (): Coverage {
    const missing: Coverage['missing'] = []
    let answered = 0
    for (const s of this.parts.values()) {
      if (s.done) answered++
      else missing.push({ space: this.plan.space.name, partition: s.partition, reason: s.missing ?? s.lastError ?? 'no answer' })
    }
    return { total: this.parts.size, answered, missing }
  }

  analysis (): QueryAnalysis {
    // Peers that answered nothing (a failed or cancelled request) have no partitions to show.
    return { peers: [...this.perPeer.values()].filter(p => p.partitions > 0), tookMs: 0, hedges: this.hedgesFired, retries: this.retries }
  }
}
