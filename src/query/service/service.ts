/**
 * QueryService: any peer coordinates a query. parse → validate → split → plan → scatter →
 * merge → finalize. The scatter asks one replica per partition (one request per peer, covering
 * all the partitions that peer was chosen for), merges answers as they stream in, retries a
 * partition on the next replica when a peer fails, refuses or runs past its per-target deadline,
 * and hedges to a second replica once a peer has taken longer than its own p95 (hedges are capped
 * by a token bucket). When every partition is answered, or the query's deadline passes, every
 * request still running is cancelled (the peers stop their work). The answer says how complete it
 * is: coverage {total, answered, missing with reasons} and confidence.
 */
import { HistogramFamily, type Clock, type Logger, type PeerAddress, type PeerId, type Transport } from '../../runtime/index.js'
import type { SpaceDef } from '../../schema/index.js'
import type { PartitionStore } from '../../storage/index.js'
import { checkPlanLimits, collect, PlanDecodeError, PlanLimitError, type PlanNode, type ScanNode, type SpreadNode } from '../model/index.js'
import { parseSql, SqlError } from '../sql/index.js'
import { parseJsonQuery, JsonQueryError } from '../json/index.js'
import { validatePlan, type OutputColumn } from '../validate/index.js'
import { MemoryBudget, QueryExecError, QueryMerger, splitPlan, type FragmentPool, type FinalResult, type SplitPlan } from '../exec/index.js'
import { QueryError } from './errors.js'
import { PeerHealth, TokenBucket } from './health.js'
import { explainText, planQuery, type QueryPlan } from './planner.js'
import { METHOD_FRAGMENT, columnTypes, parseFragmentRequest, serveRemoteFragments, type FragmentServerDeps } from './fragments.js'
import { runSpread } from './spread.js'
import { isMultiSpace, recallMany } from './recall.js'
import { FANOUT_BUCKETS, Scatter, type QueryAnalysis } from './scatter.js'
import { gcClockMs, gcPausedMs, watchGcPauses } from './gc-pauses.js'

export interface QueryServiceOptions {
  /** A query's deadline when the request names none. */
  defaultTimeoutMs?: number
  maxTimeoutMs?: number
  /** One attempt at one peer gives up after this long (inside the query's deadline) and the partitions move to the next replica. */
  perTargetTimeoutMs?: number
  /** Memory a query may hold on the coordinator, and each fragment on a data peer. */
  memoryBudgetMb?: number
  /** Most peers asked at once by one query. */
  maxFanout?: number
  /** Hedged requests allowed per second (sustained) and in a burst, across all queries of this peer; 0 turns hedging off. */
  hedgeRatePerSec?: number
  hedgeBurst?: number
  /** Hedging never fires before this many ms (sub-ms p95s would hedge on noise). */
  minHedgeMs?: number
  /** Worker threads a peer runs its query fragments on besides the main thread; -1: one fewer than the cores. */
  workerThreads?: number
  /** Subtracted from confidence per missing partition, as a share of the total, on top of its absence (0: confidence = answered / total). */
  missingPenalty?: number
  /** A query taking at least this long is logged at warn with its text and per-peer timings (ms; 0: never). */
  slowQueryMs?: number
}

/** The slow-query log keeps this much of a query's text. */
const MAX_LOGGED_QUERY_CHARS = 2000

/** Milliseconds in EXPLAIN ANALYZE's text: two decimals under 10, one above. */
function ms (x: number): string { return x < 10 ? x.toFixed(2) : x.toFixed(1) }

export const DEFAULT_QUERY_OPTIONS: Readonly<Required<QueryServiceOptions>> = {
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 300_000,
  perTargetTimeoutMs: 10_000,
  memoryBudgetMb: 512,
  maxFanout: 64,
  hedgeRatePerSec: 10,
  hedgeBurst: 20,
  minHedgeMs: 10,
  workerThreads: -1,
  missingPenalty: 0,
  slowQueryMs: 1000
}

export interface QueryServiceDeps {
  transport: Transport
  clock: Clock
  log: Logger
  self: PeerId
  space: (name: string) => SpaceDef | undefined
  partitionOf: (space: SpaceDef, id: string) => number
  readReplicas: (space: SpaceDef, partition: number) => PeerId[]
  addressOf: (peer: PeerId) => PeerAddress | undefined
  isReachable: (peer: PeerId) => boolean
  isSuspect: (peer: PeerId) => boolean
  isSynced: () => boolean
  openForQuery: (space: SpaceDef, partition: number) => Promise<PartitionStore>
  /** Live rows of this peer's replica of a partition, if it holds one (for cost estimates). */
  localRows?: (space: SpaceDef, partition: number) => number | undefined
  peerName?: (peer: PeerId) => string
  /** Worker threads for this peer's fragments (the peer builds it; tests run fragments inline). */
  pool?: FragmentPool
}

export interface QueryRequest {
  sql?: string
  /** A JSON query (search-engine style), when `sql` is absent. */
  query?: unknown
  timeoutMs?: number
  allowPartial?: boolean
  analyze?: boolean
  signal?: AbortSignal
}

export interface Coverage {
  total: number
  answered: number
  missing: Array<{ space: string, partition: number, reason: string }>
}

export interface QueryAnswer extends FinalResult {
  coverage: Coverage
  confidence: number
  tookMs: number
  strategy: string
  /**
   * The peers holding a readable replica of every partition the query read (one partition, or
   * several that happen to live together), best first as this coordinator sees them; absent when
   * no peer holds them all. A client sending the same query to one of them saves the hops (that
   * coordinator reads its own replicas); HTTP gives it in `x-shoal-route`.
   */
  route?: PeerId[]
  analyze?: QueryAnalysis
}

export interface QueryStats {
  queries: number
  failed: number
  partialAnswers: number
  missingPartitions: number
  hedgesFired: number
  hedgesWon: number
  retries: number
  localOnly: number
  fragmentsServed: number
  /** Fragments this peer stopped because their coordinator cancelled (or timed out, or went away). */
  fragmentsCancelled: number
  /** Peers asked per query: counts by bucket (1, 2, 4, 8, 16, 32, 64, more). */
  fanout: number[]
}

export class QueryService {
  private readonly opts: Required<QueryServiceOptions>
  readonly health: PeerHealth
  private readonly hedges: TokenBucket
  private readonly counters: QueryStats = { queries: 0, failed: 0, partialAnswers: 0, missingPartitions: 0, hedgesFired: 0, hedgesWon: 0, retries: 0, localOnly: 0, fragmentsServed: 0, fragmentsCancelled: 0, fanout: FANOUT_BUCKETS.map(() => 0).concat(0) }
  private readonly fragmentDeps: FragmentServerDeps
  /**
   * For /metrics: seconds each query coordinated here took until its answer was ready (before it
   * is streamed to the client), by strategy (SinglePartition, MultiPartition, Broadcast, Spread,
   * MultiSpace; `none` when it failed before it was planned) and outcome (`ok`, `partial`: some
   * partitions missing, `error`). A multi-space query counts once.
   */
  readonly durations = new HistogramFamily(['strategy', 'outcome'])

  constructor (private readonly deps: QueryServiceDeps, options: QueryServiceOptions = {}) {
    this.opts = { ...DEFAULT_QUERY_OPTIONS, ...options }
    this.health = new PeerHealth(5, this.opts.minHedgeMs)
    this.hedges = new TokenBucket(this.opts.hedgeRatePerSec, this.opts.hedgeBurst, () => deps.clock.now())
    this.fragmentDeps = { space: deps.space, openForQuery: deps.openForQuery, isSynced: deps.isSynced, partitionOf: deps.partitionOf, delayMs: () => this.delayMs, ...(deps.pool !== undefined ? { pool: deps.pool } : {}), now: () => deps.clock.now() }
  }

  private delayMs = 0
  /** Fault injection only (the peer wires it behind --enable-fault-injection): every fragment served waits this long first. */
  setFragmentDelay (ms: number): void { this.delayMs = ms }
  fragmentDelay (): number { return this.delayMs }

  /** Registers the data-peer side (`query.fragment`). */
  start (): void {
    this.deps.transport.handleStream(METHOD_FRAGMENT, (body, ctx) => {
      const req = parseFragmentRequest(body)
      // The coordinator's budget comes off the network: never more than this peer allows a fragment.
      req.budgetBytes = Math.min(req.budgetBytes, this.opts.memoryBudgetMb * 1024 * 1024)
      this.counters.fragmentsServed++
      return this.counted(serveRemoteFragments(this.fragmentDeps, req, ctx.signal), ctx.signal)
    })
  }

  private async * counted<T> (items: AsyncGenerator<T>, signal: AbortSignal): AsyncGenerator<T> {
    try {
      yield * items
    } finally {
      if (signal.aborted) this.counters.fragmentsCancelled++
    }
  }

  stats (): QueryStats { return { ...this.counters, fanout: [...this.counters.fanout] } }

  // ------------------------------------------------------------------ parse, validate, plan

  private parse (req: QueryRequest): { plan: PlanNode, origins: Parameters<typeof validatePlan>[2] } {
    try {
      const r = typeof req.sql === 'string'
        ? parseSql(req.sql, { space: name => this.deps.space(name) })
        : req.query !== undefined ? parseJsonQuery(req.query) : undefined
      if (r !== undefined) {
        // The limits every data peer holds a plan to, checked here once, before anything recurses
        // over the plan: a query they would refuse is the caller's 400, never a partial answer.
        checkPlanLimits(r.plan)
        return { plan: r.plan, origins: { origins: r.origins } }
      }
    } catch (err) {
      if (err instanceof PlanLimitError) throw new QueryError('INVALID_QUERY', 400, err.reason, { details: [{ code: 'too_large', message: err.reason, limit: err.limit }] })
      if (err instanceof PlanDecodeError) throw new QueryError('INVALID_QUERY', 400, err.message, { details: [{ code: 'invalid', message: err.message }] })
      if (err instanceof SqlError || err instanceof JsonQueryError) {
        const e = err as SqlError & JsonQueryError
        throw new QueryError('INVALID_QUERY', 400, err.message, { details: [{ code: e.code, message: err.message, ...(e.path !== undefined ? { at: e.path } : {}), ...(e.line !== undefined ? { at: `line ${e.line}, column ${e.column ?? 0}` } : {}) }] })
      }
      throw err
    }
    throw new QueryError('INVALID_QUERY', 400, 'a query needs `sql` (a string) or a JSON query object')
  }

  private prepare (req: QueryRequest): { plan: PlanNode, columns: OutputColumn[], answers: 'rows' | 'aggregations', space: SpaceDef } {
    const { plan, origins } = this.parse(req)
    const spaceName = (collect(plan, (n): n is ScanNode | SpreadNode => n.kind === 'Scan' || n.kind === 'Spread')[0])?.space
    const space = spaceName === undefined ? undefined : this.deps.space(spaceName)
    if (space === undefined) throw new QueryError('UNKNOWN_SPACE', 404, `unknown space '${spaceName ?? ''}'`)
    const v = validatePlan(plan, name => this.deps.space(name), origins)
    if (!v.ok) {
      throw new QueryError('INVALID_QUERY', 400, v.errors.map(e => e.message).join('; '), { details: v.errors.map(e => ({ code: e.code, message: e.message, ...(e.column !== undefined ? { column: e.column } : {}), ...(e.at !== undefined ? { at: e.at } : {}) })) })
    }
    return { plan: v.plan, columns: v.columns, answers: v.answers, space }
  }

  private planFor (space: SpaceDef, split: SplitPlan): QueryPlan {
    return planQuery(space, split, {
      self: this.deps.self,
      partitionOf: this.deps.partitionOf,
      readReplicas: this.deps.readReplicas,
      isReachable: this.deps.isReachable,
      isSuspect: this.deps.isSuspect,
      health: this.health,
      localRows: this.deps.localRows
    })
  }

  private name (peer: PeerId): string {
    const n = this.deps.peerName?.(peer) ?? peer
    return peer === this.deps.self ? `${n} (this peer)` : n
  }

  /** EXPLAIN: the plan as text and as data; with analyze, runs it and adds per-peer figures. */
  async explain (req: QueryRequest): Promise<{ text: string, plan: Record<string, unknown>, analyze?: QueryAnswer['analyze'] }> {
    const prepared = this.prepare(req)
    if (prepared.plan.kind === 'Spread') {
      return { text: `Spread over space ${prepared.space.name}: hop by hop from the seeds, each hop a query of the partitions holding the frontier`, plan: { strategy: 'Spread' } }
    }
    const split = this.split(prepared.plan, prepared.space)
    const qp = this.planFor(prepared.space, split)
    let text = explainText(qp, p => this.name(p))
    const plan = {
      strategy: qp.strategy,
      space: prepared.space.name,
      local: qp.local,
      estimatedRows: qp.estimatedRows,
      targets: qp.targets.map(t => ({ partition: t.partition, replicas: t.replicas })),
      fragment: split.fragment,
      final: [split.merge, ...split.post.map(s => s.kind)]
    }
    if (req.analyze !== true) return { text, plan }
    const answer = await this.query({ ...req, analyze: true })
    const a = answer.analyze!
    text += `\nAnalyze: ${answer.rows.length} rows in ${answer.tookMs.toFixed(1)} ms; coverage ${answer.coverage.answered}/${answer.coverage.total}; hedges ${a.hedges}, retries ${a.retries}`
    const st = a.stages
    if (st !== undefined) {
      text += `\n  stages (ms): parse ${ms(st.parseMs)}, plan ${ms(st.planMs)}, scatter ${ms(st.scatterMs)} (of which merging ${ms(st.mergeMs)}), finish ${ms(st.finishMs)}; garbage collection ${ms(st.gcMs)} within`
    }
    for (const p of a.peers) {
      text += `\n  ${p.name}: ${p.partitions} partitions, ${p.rows} rows scanned, ${p.rowsOut} matched, ${p.bytes} bytes, ${ms(p.ms)} ms executing` +
        ` (waiting ${ms(p.waitMs)}, reading ${ms(p.readMs)}), last answer ready ${ms(p.readyMs)} ms after the request came; round trip ${ms(p.roundTripMs)} ms, merging ${ms(p.mergeMs)} ms`
    }
    return { text, plan, analyze: a }
  }

  private split (plan: PlanNode, space: SpaceDef): SplitPlan {
    try {
      return splitPlan(plan, space.schema.map(c => c.name))
    } catch (err) {
      if (err instanceof QueryExecError) throw new QueryError('UNSUPPORTED', 400, err.message)
      throw err
    }
  }

  // ------------------------------------------------------------------ query

  async query (req: QueryRequest): Promise<QueryAnswer> {
    const t0 = this.deps.clock.now()
    let strategy = 'none'
    let outcome = 'error'
    try {
      const answer = await this.run(req)
      strategy = answer.strategy
      outcome = answer.coverage.missing.length > 0 ? 'partial' : 'ok'
      return answer
    } finally {
      this.durations.observe([strategy, outcome], (this.deps.clock.now() - t0) / 1000)
    }
  }

  private async run (req: QueryRequest): Promise<QueryAnswer> {
    const t0 = this.deps.clock.now()
    this.counters.queries++
    try {
      if (!this.deps.isSynced()) throw new QueryError('NOT_SYNCED', 503, 'this peer has not synced with its cluster since it started; retry shortly or ask another peer')
      const timeoutMs = this.timeoutOf(req.timeoutMs)
      if (isMultiSpace(req.query)) {
        // Each space's part shares the one deadline.
        const deadline = t0 + timeoutMs
        return await recallMany(req, async (one) => await this.run({ ...one, timeoutMs: Math.max(1, deadline - this.deps.clock.now()) }), () => this.deps.clock.now())
      }
      const analyze = req.analyze === true
      const clock = this.deps.clock
      if (analyze) watchGcPauses()
      const gc0 = analyze ? gcClockMs() : 0
      const prepared = this.prepare(req)
      const t1 = clock.now()
      const budget = new MemoryBudget(this.opts.memoryBudgetMb * 1024 * 1024)
      const allowPartial = req.allowPartial ?? true
      if (prepared.plan.kind === 'Spread') {
        const r = await runSpread(prepared.plan, prepared.space, {
          run: async (plan) => await this.runSplit(prepared.space, this.split(plan, prepared.space), { deadline: t0 + timeoutMs, signal: req.signal, analyze: false, budget }),
          partitionOf: id => this.deps.partitionOf(prepared.space, id),
          budget
        })
        return this.answer(r.result, r.coverage, t0, allowPartial, 'Spread', undefined)
      }
      const split = this.split(prepared.plan, prepared.space)
      const run = await this.runSplit(prepared.space, split, { deadline: t0 + timeoutMs, signal: req.signal, analyze, budget })
      const t4 = clock.now()
      let result: FinalResult
      try {
        result = run.merger.finish(prepared.columns)
      } catch (err) {
        throw this.execError(err)
      }
      if (analyze && run.analyze !== undefined) {
        const mergeMs = run.analyze.peers.reduce((sum, p) => sum + p.mergeMs, 0)
        run.analyze.stages = { parseMs: t1 - t0, planMs: run.scatterStart - t1, scatterMs: t4 - run.scatterStart, mergeMs, finishMs: clock.now() - t4, gcMs: gcPausedMs(gc0, gcClockMs()) }
      }
      const answer = this.answer(result, run.coverage, t0, allowPartial, run.strategy, analyze ? run.analyze : undefined)
      if (run.route !== undefined) answer.route = run.route
      this.logIfSlow(req, answer, run.analyze)
      return answer
    } catch (err) {
      this.counters.failed++
      throw err
    }
  }

  /** The slow-query log: a query at or over slowQueryMs, with its text, coverage and each peer's share. */
  private logIfSlow (req: QueryRequest, answer: QueryAnswer, analysis: QueryAnswer['analyze']): void {
    const limit = this.opts.slowQueryMs
    if (limit <= 0 || answer.tookMs < limit) return
    const text = req.sql ?? JSON.stringify(req.query) ?? ''
    this.deps.log.warn({
      query: text.length > MAX_LOGGED_QUERY_CHARS ? `${text.slice(0, MAX_LOGGED_QUERY_CHARS)}…` : text,
      tookMs: Math.round(answer.tookMs),
      strategy: answer.strategy,
      coverage: { total: answer.coverage.total, answered: answer.coverage.answered },
      rows: answer.rows.length,
      peers: (analysis?.peers ?? []).map(p => ({ peer: p.name, partitions: p.partitions, rowsScanned: p.rows, ms: Math.round(p.ms) })),
      hedges: analysis?.hedges ?? 0,
      retries: analysis?.retries ?? 0
    }, `slow query: ${Math.round(answer.tookMs)} ms (query.slowQueryMs ${limit})`)
  }

  private answer (result: FinalResult, coverage: Coverage, t0: number, allowPartial: boolean, strategy: string, analyze: QueryAnswer['analyze']): QueryAnswer {
    const missing = coverage.missing.length
    if (missing > 0) {
      this.counters.partialAnswers++
      this.counters.missingPartitions += missing
      if (!allowPartial) {
        throw new QueryError('PARTIAL_RESULT', 503, `${missing} of ${coverage.total} partitions could not be read (${coverage.missing.slice(0, 5).map(m => `${m.space}/${m.partition}: ${m.reason}`).join('; ')}${missing > 5 ? '; …' : ''}); allowPartial is false`, { coverage })
      }
    }
    const confidence = coverage.total === 0 ? 1 : Math.max(0, (coverage.answered - this.opts.missingPenalty * missing) / coverage.total)
    const tookMs = this.deps.clock.now() - t0
    if (analyze !== undefined) analyze.tookMs = tookMs
    // Onto the result itself, not a copy: a spread would render every row (`rows` renders on first read).
    return Object.assign(result, { coverage, confidence, tookMs, strategy }, analyze !== undefined ? { analyze } : {})
  }

  private timeoutOf (t: number | undefined): number {
    if (t === undefined) return this.opts.defaultTimeoutMs
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw new QueryError('INVALID_QUERY', 400, 'timeoutMs must be a positive number of milliseconds')
    return Math.min(t, this.opts.maxTimeoutMs)
  }

  private execError (err: unknown): unknown {
    if (err instanceof QueryExecError) {
      if (err.code === 'MEMORY_BUDGET' || err.code === 'LIMIT') return new QueryError(err.code, 422, err.message)
      if (err.code === 'UNSUPPORTED') return new QueryError('UNSUPPORTED', 400, err.message)
      return new QueryError('INTERNAL', 500, err.message)
    }
    if ((err as Error)?.name === 'AggregationLimitError') return new QueryError('LIMIT', 422, (err as Error).message)
    return err
  }

  /** Plans and scatters one split plan, merging into a QueryMerger. */
  async runSplit (space: SpaceDef, split: SplitPlan, o: { deadline: number, signal?: AbortSignal, analyze: boolean, budget: MemoryBudget }): Promise<{ merger: QueryMerger, coverage: Coverage, strategy: string, route?: PeerId[], analyze?: QueryAnalysis, scatterStart: number }> {
    const qp = this.planFor(space, split)
    const merger = new QueryMerger(split, columnTypes(space), o.budget)
    const scatter = new Scatter(this, qp, merger, o)
    const scatterStart = this.deps.clock.now()
    await scatter.run()
    // The per-peer figures are kept whether or not asked for: a slow query is logged with them.
    const route = localEverywhere(qp.targets)
    return { merger, coverage: scatter.coverage(), strategy: qp.strategy, ...(route.length > 0 ? { route } : {}), analyze: scatter.analysis(), scatterStart }
  }

  // ------------------------------------------------------------------ used by Scatter

  /** @internal */ get options (): Required<QueryServiceOptions> { return this.opts }
  /** @internal */ get d (): QueryServiceDeps { return this.deps }
  /** @internal */ get stat (): QueryStats { return this.counters }
  /** @internal */ tryHedge (requests: number): boolean { return this.hedges.take(requests) }
  /** @internal */ fragmentServer (): FragmentServerDeps { return this.fragmentDeps }
  /** @internal */ peerLabel (peer: PeerId): string { return this.deps.peerName?.(peer) ?? peer }
  /** @internal */ toQueryError (err: unknown): unknown { return this.execError(err) }
}

/** The peers among every target's replicas (in the first target's order): where the plan runs without RPC. */
function localEverywhere (targets: ReadonlyArray<{ replicas: readonly PeerId[] }>): PeerId[] {
  if (targets.length === 0) return []
  let peers = [...targets[0]!.replicas]
  for (let i = 1; i < targets.length && peers.length > 0; i++) {
    const here = new Set(targets[i]!.replicas)
    peers = peers.filter(p => here.has(p))
  }
  return peers
}
