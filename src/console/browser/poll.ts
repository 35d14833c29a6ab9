/**
 * What the console shows, kept fresh by polling the peer that served it:
 *
 * - every FAST_MS: /health, /cluster/members, /spaces and /metrics (a member's death shows
 *   within one poll of this peer declaring it);
 * - every SLOW_EVERY-th poll: /cluster/status (it asks every live peer over RPC, so not every
 *   1.5 s for every open console), each space's placement (/spaces/:name) and its row count (a
 *   `SELECT count(*)`: the peer counts it among the queries it coordinated, so the charts take
 *   the console's own counts back out).
 *
 * Polls never overlap: the next starts FAST_MS after the last one ended.
 */
import { ApiError, getJson, getText, query, type Health, type Member, type Space, type Status } from './api.js'
import { parseSnapshot, ratesBetween, type Snapshot } from './metrics.js'

/** 1.5 s, inside the 1-2 s the console promises (docs/console.md). */
export const FAST_MS = 1500
/** Placement, status and counts every 4th poll: 6 s. */
const SLOW_EVERY = 4
/** Points kept per chart: 3 minutes at FAST_MS. */
const MAX_POINTS = 120
/** Spaces whose placement and count are fetched each slow poll; the rest are listed only. */
export const MAX_DETAILED_SPACES = 20

/** Chart data as uPlot takes it: x (seconds since the epoch), then one array per series. */
export type Series = [number[], ...Array<Array<number | null>>]

export interface RowCount { rows: number, partial: boolean }

export interface ConsoleState {
  health?: Health
  members: Member[]
  spaces: Space[]
  /** Spaces with their placement, by name (the first MAX_DETAILED_SPACES). */
  placement: Map<string, Space>
  counts: Map<string, RowCount>
  status?: Status
  /** [t, writes/s, reads/s, queries/s] */
  rates: Series
  /** [t, write ms, read ms, query ms] (mean over each interval; null when none ran) */
  latency: Series
  /** Why the last poll failed (the peer is down, or answered an error). */
  error?: string
  /** 'needed': the API answered 401 and no token is saved; 'rejected': the saved one was refused. */
  auth: 'ok' | 'needed' | 'rejected'
  updatedAt?: number
}

export class Poller {
  state: ConsoleState = {
    members: [],
    spaces: [],
    placement: new Map(),
    counts: new Map(),
    rates: [[], [], [], []],
    latency: [[], [], [], []],
    auth: 'ok'
  }

  private tick = 0
  private last: { at: number, snapshot: Snapshot } | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  /** The count queries this console ran, and their seconds: not the traffic the charts show. */
  private readonly own = { count: 0, sum: 0 }
  private running = false

  constructor (private readonly onChange: (state: ConsoleState) => void, private readonly hasToken: () => boolean) {}

  start (): void {
    this.running = true
    void this.loop()
  }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
  }

  /** Polls now (a token was just given), slow part included. */
  now (): void {
    clearTimeout(this.timer)
    this.tick = 0
    void this.loop()
  }

  private async loop (): Promise<void> {
    if (!this.running) return
    try {
      await this.poll(this.tick++ % SLOW_EVERY === 0)
      this.set({ error: undefined, auth: 'ok', updatedAt: Date.now() })
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.set({ auth: this.hasToken() ? 'rejected' : 'needed', error: undefined })
      else this.set({ error: (err as Error).message })
    }
    clearTimeout(this.timer)
    if (this.running) this.timer = setTimeout(() => { void this.loop() }, FAST_MS)
  }

  private async poll (slow: boolean): Promise<void> {
    const [health, members, spaces, metrics] = await Promise.all([
      getJson<Health>('/health'),
      getJson<Member[]>('/cluster/members'),
      getJson<Space[]>('/spaces'),
      getText('/metrics')
    ])
    this.addRates(parseSnapshot(metrics))
    this.set({ health, members, spaces })
    if (!slow) return
    const detailed = spaces.slice(0, MAX_DETAILED_SPACES)
    const [status, placed, counts] = await Promise.all([
      getJson<Status>('/cluster/status?timeoutMs=2000').catch(() => undefined),
      Promise.all(detailed.map(async s => await getJson<Space>(`/spaces/${encodeURIComponent(s.name)}`).catch(() => undefined))),
      Promise.all(detailed.map(async s => await this.countRows(s.name)))
    ])
    const placement = new Map<string, Space>()
    const rowCounts = new Map<string, RowCount>()
    detailed.forEach((s, i) => {
      if (placed[i] !== undefined) placement.set(s.name, placed[i])
      const c = counts[i]
      if (c !== undefined) rowCounts.set(s.name, c)
    })
    this.set({ status, placement, counts: rowCounts })
  }

  private addRates (snapshot: Snapshot): void {
    snapshot.queries.count -= this.own.count
    snapshot.queries.sum -= this.own.sum
    const at = performance.now()
    const prev = this.last
    this.last = { at, snapshot }
    if (prev === undefined) return
    const r = ratesBetween(prev.snapshot, snapshot, (at - prev.at) / 1000)
    const t = Date.now() / 1000
    this.state.rates = push(this.state.rates, [t, r.writes.perSec, r.reads.perSec, r.queries.perSec])
    this.state.latency = push(this.state.latency, [t, r.writes.meanMs, r.reads.meanMs, r.queries.meanMs])
  }

  private set (change: Partial<ConsoleState>): void {
    this.state = { ...this.state, ...change }
    this.onChange(this.state)
  }

  private async countRows (space: string): Promise<RowCount | undefined> {
    this.own.count++
    try {
      const answer = await query(`SELECT count(*) AS n FROM "${space}"`)
      this.own.sum += answer.tookMs / 1000
      return { rows: Number(answer.rows?.[0]?.n ?? 0), partial: answer.coverage.answered < answer.coverage.total }
    } catch {
      return undefined
    }
  }
}

/** A new series with `point` appended, the oldest dropped beyond MAX_POINTS (a new array: charts redraw on identity). */
function push (series: Series, point: Array<number | null>): Series {
  return series.map((values, i) => [...values, point[i]!].slice(-MAX_POINTS)) as Series
}
