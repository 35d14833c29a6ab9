/**
 * The query coordinator (QueryService) in the simulator: scatter-gather over 'query.fragment'
 * streams between simulated peers with memory stores, in virtual time. Crashes, partitions,
 * unreachable replicas, slow peers (hedging and its token bucket), deadlines, cancellation, and
 * malformed fragment requests off the wire.
 */
import { describe, expect, it } from 'vitest'
import { parseSql } from '../../src/query/sql/index.js'
import { METHOD_FRAGMENT, QueryError, orderReplicas } from '../../src/query/service/index.js'
import type { QueryAnswer } from '../../src/query/service/index.js'
import { RemoteError } from '../../src/runtime/index.js'
import { simAddress } from './index.js'
import type { LatencySpec } from './index.js'
import { QueryCluster, drive, driveAll, expectedByRegion, holderPlacement, makeRows, makeSalesSpace } from './query-cluster.js'
import type { QueryClusterOptions, Row } from './query-cluster.js'

const SQL = 'SELECT region, count(*), sum(amount) FROM s GROUP BY region'
const ROWS = 600

function byRegion (a: QueryAnswer): Array<{ region: string, count: number, sum: number }> {
  return a.rows
    .map(r => ({ region: r.region as string, count: Number(r['count(*)']), sum: Number(r['sum(amount)']) }))
    .sort((x, y) => x.region < y.region ? -1 : x.region > y.region ? 1 : 0)
}

async function cluster (opts: QueryClusterOptions, rows: Row[] = makeRows(ROWS)): Promise<QueryCluster> {
  const c = new QueryCluster(opts)
  await c.addSpace(makeSalesSpace(), rows)
  return c
}

/** Partitions of space s whose every replica is in `peers`. */
function coveredBy (c: QueryCluster, peers: readonly string[]): number[] {
  return [...Array(16).keys()].filter(p => c.replicasOf('s', p).every(r => peers.includes(r)))
}

/** The replica `coordinator` would ask first for each partition, as its planner orders them now. */
function firstChoices (c: QueryCluster, coordinator: string): Map<number, string> {
  const svc = c.get(coordinator).service
  const m = new Map<number, string>()
  for (let p = 0; p < 16; p++) {
    const first = orderReplicas(c.replicasOf('s', p), {
      self: coordinator, isReachable: x => !c.unreachable.has(x), isSuspect: x => c.suspect.has(x), health: svc.health
    })[0]
    if (first !== undefined) m.set(p, first)
  }
  return m
}

/** One-way latency 1..5 ms, except `ms` for any message from or to a peer in `slow`. */
function slowLinks (slow: Set<string>, ms: number): LatencySpec {
  return (from, to, random) => slow.has(from) || slow.has(to) ? ms : 1 + random.next() * 4
}

describe('query service in the simulator: answers', () => {
  it('every peer answers GROUP BY with the expected rows and full coverage', async () => {
    const c = await cluster({ seed: 11 })
    const want = expectedByRegion(c.rowsOf('s'))
    expect(want.reduce((n, g) => n + g.count, 0)).toBe(ROWS)
    for (const id of c.ids) {
      const a = await c.run(id, { sql: SQL })
      expect(byRegion(a), `coordinator ${id}`).toEqual(want)
      expect(a.coverage).toEqual({ total: 16, answered: 16, missing: [] })
      expect(a.confidence).toBe(1)
      expect(a.strategy).toBe('Broadcast')
    }
    // No peer holds everything here: every query went over the network.
    expect(c.world.stats.sent).toBeGreaterThan(0)
    expect(c.total('localOnly')).toBe(0)
    expect(c.total('fragmentsServed')).toBeGreaterThan(0)
    expect(c.total('retries')).toBe(0)
    expect(c.total('hedgesFired')).toBe(0)

    // A pinned id is read from its one partition only.
    const row = c.rowsOf('s')[123]!
    const one = await c.run('q4', { sql: `SELECT id, region, amount FROM s WHERE id = '${row.id}'` })
    expect(one.strategy).toBe('SinglePartition')
    expect(one.rows).toEqual([{ id: row.id, region: row.region, amount: row.amount }])
    expect(one.coverage.total).toBe(1)
  })

  it('a partition answering more rows than one chunk streams them in chunks that join back exactly', async () => {
    const c = new QueryCluster({ seed: 13 })
    // One partition, held by q2 only: 40,000 rows, more than ROWS_PER_CHUNK (32,768).
    const rows = makeRows(40_000, 'c')
    await c.addSpace(makeSalesSpace('big', 1, 1), rows, holderPlacement('q2'))
    const a = await c.run('q5', { sql: 'SELECT id, region, amount FROM big' })
    expect(a.coverage).toEqual({ total: 1, answered: 1, missing: [] })
    expect(a.rows.length).toBe(rows.length)
    const got = new Map(a.rows.map(r => [r.id as string, r]))
    for (const r of rows) expect(got.get(r.id)).toEqual({ id: r.id, region: r.region, amount: r.amount })
  })

  it('a peer holding every partition answers with no message sent', async () => {
    const c = new QueryCluster({ seed: 12 })
    const rows = makeRows(ROWS, 'h')
    await c.addSpace(makeSalesSpace(), rows, holderPlacement('q2'))
    const want = expectedByRegion(rows)
    const sent = c.world.stats.sent
    const a = await c.run('q2', { sql: SQL })
    expect(byRegion(a)).toEqual(want)
    expect(a.coverage.answered).toBe(16)
    expect(c.world.stats.sent).toBe(sent)
    expect(c.get('q2').service.stats().localOnly).toBe(1)
    expect(a.tookMs).toBe(0)
    // The same space from a peer that holds little of it goes over the network and agrees.
    const b = await c.run('q5', { sql: SQL })
    expect(byRegion(b)).toEqual(want)
    expect(c.world.stats.sent).toBeGreaterThan(sent)
    expect(c.get('q5').service.stats().localOnly).toBe(0)
  })

  it('EXPLAIN ANALYZE measures fragments in the peer clock (virtual time), not the process clock', async () => {
    const c = await cluster({ seed: 13 })
    const a = await c.run('q0', { sql: SQL, analyze: true })
    expect(a.analyze!.peers.length).toBeGreaterThan(1)
    expect(a.analyze!.peers.reduce((n, p) => n + p.partitions, 0)).toBe(16)
    expect(a.analyze!.peers.reduce((n, p) => n + p.rows, 0)).toBe(ROWS)
    // A fragment over a memory store takes no virtual time at all.
    for (const p of a.analyze!.peers) expect(p.ms, p.name).toBe(0)
  })

  it('the same seed gives the same run', async () => {
    const once = async (): Promise<[string, unknown]> => {
      const c = await cluster({ seed: 14 })
      c.world.crash('q3')
      const answers = await driveAll(c.world, c.ids.filter(id => id !== 'q3').map(id => c.query(id, { sql: SQL })))
      return [c.world.traceHash(), answers.map(r => r.status === 'fulfilled' ? { rows: byRegion(r.value), tookMs: r.value.tookMs } : r.reason)]
    }
    const [h1, a1] = await once()
    const [h2, a2] = await once()
    expect(h2).toBe(h1)
    expect(a2).toEqual(a1)
  })
})

describe('query service in the simulator: faults', () => {
  it('a crashed peer the coordinators have not noticed: answers are complete, through retries', async () => {
    const c = await cluster({ seed: 21 })
    const want = expectedByRegion(c.rowsOf('s'))
    c.world.crash('q1')
    for (const id of c.ids.filter(x => x !== 'q1')) {
      const a = await c.run(id, { sql: SQL })
      expect(byRegion(a), `coordinator ${id}`).toEqual(want)
      expect(a.coverage.missing).toEqual([])
    }
    expect(c.total('retries')).toBeGreaterThan(0)
    expect(c.total('partialAnswers')).toBe(0)
  })

  it('a peer that crashes while serving: its partitions move to other replicas', async () => {
    const c = await cluster({ seed: 22, query: { hedgeRatePerSec: 0 } })
    const want = expectedByRegion(c.rowsOf('s'))
    const victim = [...firstChoices(c, 'q0').values()].find(p => p !== 'q0')!
    c.get(victim).storeDelayMs = 200
    const q = c.query('q0', { sql: SQL })
    c.world.schedule(50, () => { c.world.crash(victim) })
    const a = await drive(c.world, q)
    expect(c.get(victim).served.some(s => s.from === 'q0')).toBe(true)
    expect(byRegion(a)).toEqual(want)
    expect(a.coverage.answered).toBe(16)
    expect(c.get('q0').service.stats().retries).toBeGreaterThan(0)
    expect(a.tookMs).toBeLessThan(200)
  })

  it('a peer partitioned away before the query: the others answer completely; the isolated peer answers what it holds', async () => {
    const c = await cluster({ seed: 31 })
    const want = expectedByRegion(c.rowsOf('s'))
    const others = c.ids.filter(x => x !== 'q3')
    c.world.partition(['q3'], others)
    for (const id of others) {
      const a = await c.run(id, { sql: SQL })
      expect(byRegion(a), `coordinator ${id}`).toEqual(want)
      expect(a.coverage.answered).toBe(16)
    }
    expect(c.total('retries')).toBeGreaterThan(0)

    // On the far side of the cut, q3 can read only its own replicas.
    const mine = c.partitionsOn('s', 'q3')
    expect(mine.length).toBeGreaterThan(0)
    expect(mine.length).toBeLessThan(16)
    const a = await c.run('q3', { sql: SQL })
    expect(a.coverage.answered).toBe(mine.length)
    expect(a.coverage.missing.map(m => m.partition).sort((x, y) => x - y)).toEqual([...Array(16).keys()].filter(p => !mine.includes(p)))
    for (const m of a.coverage.missing) expect(m.reason).toMatch(/unreachable/)
    expect(a.confidence).toBeCloseTo(mine.length / 16, 12)
    expect(byRegion(a)).toEqual(expectedByRegion(c.rowsOf('s', mine)))
  })

  it('a peer partitioned away while serving: the broken streams are retried elsewhere', async () => {
    const c = await cluster({ seed: 32, query: { hedgeRatePerSec: 0 } })
    const want = expectedByRegion(c.rowsOf('s'))
    const victim = [...firstChoices(c, 'q0').values()].find(p => p !== 'q0')!
    c.get(victim).storeDelayMs = 300
    const q = c.query('q0', { sql: SQL })
    c.world.schedule(40, () => { c.world.partition([victim], c.ids.filter(x => x !== victim)) })
    const a = await drive(c.world, q)
    expect(c.get(victim).served.some(s => s.from === 'q0')).toBe(true)
    expect(byRegion(a)).toEqual(want)
    expect(a.coverage.missing).toEqual([])
    expect(c.get('q0').service.stats().retries).toBeGreaterThan(0)
    expect(a.tookMs).toBeLessThan(300)
    // The data peer saw its fragment cancelled by the reset.
    await c.world.run(400)
    const rec = c.get(victim).served.find(s => s.from === 'q0')!
    expect(rec.abortedAt).toBeDefined()
  })

  it('every replica of some partitions known unreachable: coverage names them, confidence = answered / total, sums exclude them', async () => {
    const c = await cluster({ seed: 41 })
    const down = c.replicasOf('s', 0)
    const lost = coveredBy(c, down)
    expect(lost).toContain(0)
    const kept = [...Array(16).keys()].filter(p => !lost.includes(p))
    for (const id of down) c.unreachable.add(id)
    const coordinator = c.ids.find(id => !down.includes(id))!
    const sent = c.world.stats.sent
    const a = await c.run(coordinator, { sql: SQL })
    expect(a.coverage.total).toBe(16)
    expect(a.coverage.answered).toBe(kept.length)
    expect(a.coverage.missing).toEqual(lost.map(p => ({ space: 's', partition: p, reason: 'no reachable replica' })))
    expect(a.confidence).toBeCloseTo(kept.length / 16, 12)
    expect(byRegion(a)).toEqual(expectedByRegion(c.rowsOf('s', kept)))
    // Nobody it believes unreachable was asked.
    for (const id of down) expect(c.get(id).served).toEqual([])
    expect(c.world.stats.sent).toBeGreaterThan(sent)
    const st = c.get(coordinator).service.stats()
    expect(st.partialAnswers).toBe(1)
    expect(st.missingPartitions).toBe(lost.length)

    const err = await drive(c.world, c.query(coordinator, { sql: SQL, allowPartial: false })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect((err as QueryError).code).toBe('PARTIAL_RESULT')
    expect((err as QueryError).status).toBe(503)
    expect((err as QueryError).details?.coverage).toEqual(a.coverage)
  })

  it('every replica of some partitions crashed unnoticed: each replica is tried, then the partitions are missing with the last error', async () => {
    const c = await cluster({ seed: 42 })
    const down = c.replicasOf('s', 5)
    const lost = coveredBy(c, down)
    const kept = [...Array(16).keys()].filter(p => !lost.includes(p))
    for (const id of down) c.world.crash(id)
    const coordinator = c.ids.find(id => !down.includes(id))!
    const a = await c.run(coordinator, { sql: SQL })
    expect(a.coverage.missing.map(m => m.partition)).toEqual(lost)
    for (const m of a.coverage.missing) expect(m.reason).toMatch(/unreachable: peer is down/)
    expect(a.coverage.answered).toBe(kept.length)
    expect(a.confidence).toBeCloseTo(kept.length / 16, 12)
    expect(byRegion(a)).toEqual(expectedByRegion(c.rowsOf('s', kept)))
    // Each lost partition was tried on all three replicas: two retries each at least.
    expect(c.get(coordinator).service.stats().retries).toBeGreaterThanOrEqual(2 * lost.length)

    const err = await drive(c.world, c.query(coordinator, { sql: SQL, allowPartial: false })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect((err as QueryError).code).toBe('PARTIAL_RESULT')
    expect((err as QueryError).status).toBe(503)
    expect(c.get(coordinator).service.stats().failed).toBe(1)
  })
})

describe('query service in the simulator: slow peers and hedging', () => {
  /** Warm-up queries from q0, then the remote peer q0 asks first for the most partitions (measured). */
  async function warmSlowPeer (c: QueryCluster, warmups = 24): Promise<string> {
    for (let i = 0; i < warmups; i++) await c.run('q0', { sql: SQL })
    const health = c.get('q0').service.health
    const counts = new Map<string, number>()
    for (const peer of firstChoices(c, 'q0').values()) if (peer !== 'q0') counts.set(peer, (counts.get(peer) ?? 0) + 1)
    const [slow] = [...counts].filter(([p]) => health.p95(p) !== undefined).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]!
    // Its p95 is the ordinary network's: a few ms.
    expect(health.p95(slow)).toBeLessThan(20)
    return slow
  }

  it('hedges around a peer far slower than its p95: the answer comes long before the slow peer would', async () => {
    const slowSet = new Set<string>()
    const c = await cluster({ seed: 51, latencyMs: slowLinks(slowSet, 1000) })
    const want = expectedByRegion(c.rowsOf('s'))
    const slow = await warmSlowPeer(c)
    slowSet.add(slow)
    const before = c.get('q0').service.stats()
    const a = await c.run('q0', { sql: SQL })
    const after = c.get('q0').service.stats()
    expect(byRegion(a)).toEqual(want)
    expect(a.coverage.answered).toBe(16)
    expect(after.hedgesFired - before.hedgesFired).toBeGreaterThan(0)
    expect(after.hedgesWon - before.hedgesWon).toBeGreaterThan(0)
    expect(after.hedgesWon - before.hedgesWon).toBeLessThanOrEqual(after.hedgesFired - before.hedgesFired)
    // The slow peer needs 2000 ms for a round trip; the hedged answer needs its p95 plus one fast round trip.
    expect(a.tookMs).toBeLessThan(100)
    expect(after.retries).toBe(before.retries)
  })

  it('with hedging off the same query waits for the slow peer', async () => {
    const slowSet = new Set<string>()
    const c = await cluster({ seed: 51, latencyMs: slowLinks(slowSet, 1000), query: { hedgeRatePerSec: 0 } })
    const slow = await warmSlowPeer(c)
    slowSet.add(slow)
    const a = await c.run('q0', { sql: SQL, analyze: true })
    expect(a.coverage.answered).toBe(16)
    expect(a.tookMs).toBeGreaterThanOrEqual(2000)
    expect(c.get('q0').service.stats().hedgesFired).toBe(0)
    // EXPLAIN ANALYZE's breakdown says where the time went: the scatter, and in it the slow
    // peer's round trip (its links' latency), not its work (none, in virtual time) nor the merge.
    const st = a.analyze!.stages!
    expect(st.scatterMs).toBeGreaterThanOrEqual(2000)
    expect(st.parseMs + st.planMs + st.mergeMs + st.finishMs).toBe(0)
    expect(st.parseMs + st.planMs + st.scatterMs + st.finishMs).toBeCloseTo(a.tookMs, 6)
    const slowPeer = a.analyze!.peers.find(p => p.peer === slow)!
    expect(slowPeer.roundTripMs).toBeGreaterThanOrEqual(2000)
    expect(slowPeer.ms + slowPeer.waitMs + slowPeer.readMs).toBe(0)
    for (const p of a.analyze!.peers.filter(p => p.peer !== slow)) expect(p.roundTripMs, p.name).toBeLessThan(100)
  })

  it('many concurrent queries never fire more hedges than the token bucket holds', async () => {
    const rate = 2
    const burst = 3
    const slowSet = new Set<string>()
    const c = await cluster({ seed: 52, latencyMs: slowLinks(slowSet, 1000), query: { hedgeRatePerSec: rate, hedgeBurst: burst } })
    const want = expectedByRegion(c.rowsOf('s'))
    const slow = await warmSlowPeer(c)
    slowSet.add(slow)
    const svc = c.get('q0').service
    const fired0 = svc.stats().hedgesFired
    const t0 = c.world.now()
    const n = 40
    const queries: Array<Promise<QueryAnswer>> = []
    // All planned before any hedge has taught the planner that the peer is slow: each asks it first.
    for (let i = 0; i < n; i++) c.world.schedule(i % 4, () => { queries.push(c.query('q0', { sql: SQL, analyze: true })) })
    await c.world.run(10)
    expect(queries.length).toBe(n)
    const results = await driveAll(c.world, queries)
    const elapsedMs = c.world.now() - t0
    const fired = svc.stats().hedgesFired - fired0
    for (const r of results) {
      expect(r.status).toBe('fulfilled')
      if (r.status === 'fulfilled') { expect(byRegion(r.value)).toEqual(want); expect(r.value.coverage.answered).toBe(16) }
    }
    expect(fired).toBeGreaterThan(0)
    // The bucket held at most `burst` when the queries started and refilled at `rate` per second.
    expect(fired).toBeLessThanOrEqual(burst + rate * elapsedMs / 1000)
    // A hedge is all or nothing: a query that hedged did not wait for the slow peer; one that got
    // no token either waited for it or, once the planner had learnt from hedged-around requests
    // that the peer is slow, did not ask it at all.
    const answers = results.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    expect(answers.reduce((k, a) => k + a.analyze!.hedges, 0)).toBe(fired)
    let waited = 0
    for (const a of answers) {
      if (a.analyze!.hedges > 0) expect(a.tookMs).toBeLessThan(100)
      else if (a.analyze!.peers.some(p => p.peer === slow)) { expect(a.tookMs).toBeGreaterThanOrEqual(2000); waited++ } else expect(a.tookMs).toBeLessThan(100)
    }
    expect(waited).toBeGreaterThan(0)
    // The planner learnt from the hedged-around requests: a new query avoids the slow peer, no hedge needed.
    const [after] = await driveAll(c.world, [c.query('q0', { sql: SQL, analyze: true })])
    expect(after!.status).toBe('fulfilled')
    if (after!.status === 'fulfilled') {
      expect(after!.value.analyze!.hedges).toBe(0)
      expect(after!.value.analyze!.peers.some(p => p.peer === slow)).toBe(false)
      expect(after!.value.tookMs).toBeLessThan(100)
    }
    expect(svc.stats().hedgesWon).toBeLessThanOrEqual(svc.stats().hedgesFired)
  })
})

describe('query service in the simulator: deadlines and cancellation', () => {
  it('a stalled peer past the query deadline: the answer comes at the deadline, its partitions missing for timeout', async () => {
    const c = await cluster({ seed: 61, query: { hedgeRatePerSec: 0 } })
    const stalled = [...firstChoices(c, 'q0').values()].find(p => p !== 'q0')!
    const theirs = [...firstChoices(c, 'q0')].filter(([, p]) => p === stalled).map(([part]) => part)
    const kept = [...Array(16).keys()].filter(p => !theirs.includes(p))
    c.world.stall(stalled, 10_000)
    c.get(stalled).storeDelayMs = 50
    const a = await c.run('q0', { sql: SQL, timeoutMs: 300 })
    expect(a.tookMs).toBe(300)
    expect(a.coverage.missing.map(m => m.partition)).toEqual(theirs)
    for (const m of a.coverage.missing) expect(m.reason).toMatch(/^timeout/)
    expect(a.confidence).toBeCloseTo(kept.length / 16, 12)
    expect(byRegion(a)).toEqual(expectedByRegion(c.rowsOf('s', kept)))
    const err = await drive(c.world, c.query('q0', { sql: SQL, timeoutMs: 300, allowPartial: false })).catch((e: unknown) => e)
    expect((err as QueryError).code).toBe('PARTIAL_RESULT')

    // The stalled peer sees each request and its cancel together when it wakes, and stops there.
    expect(c.get(stalled).served).toEqual([])
    await c.world.run(10_000)
    const recs = c.get(stalled).served.filter(s => s.from === 'q0')
    expect(recs.length).toBe(2)
    for (const rec of recs) {
      expect(rec.at).toBeGreaterThanOrEqual(10_000)
      expect(rec.abortedAt).toBe(rec.at)
    }
    await c.world.run(100)
    expect(c.get(stalled).service.stats().fragmentsCancelled).toBe(2)
    // Awake again, it answers.
    const b = await c.run('q0', { sql: SQL, timeoutMs: 300 })
    expect(b.coverage.answered).toBe(16)
  })

  it('a peer stuck in its store past the query deadline has its fragment cancelled at the deadline', async () => {
    const c = await cluster({ seed: 62, query: { hedgeRatePerSec: 0 } })
    const stuck = [...firstChoices(c, 'q0').values()].find(p => p !== 'q0')!
    c.get(stuck).storeDelayMs = 5000
    const a = await c.run('q0', { sql: SQL, timeoutMs: 250 })
    expect(a.tookMs).toBe(250)
    expect(a.coverage.missing.length).toBeGreaterThan(0)
    for (const m of a.coverage.missing) expect(m.reason).toMatch(/^timeout/)
    await c.world.run(20)
    const rec = c.get(stuck).served.find(s => s.from === 'q0')!
    expect(rec).toBeDefined()
    // The cancel reaches the data peer one network latency after the deadline, not when its store wakes.
    expect(rec.abortedAt).toBeDefined()
    expect(rec.abortedAt!).toBeGreaterThanOrEqual(250)
    expect(rec.abortedAt!).toBeLessThanOrEqual(260)
    await c.world.run(6000)
    expect(c.get(stuck).service.stats().fragmentsCancelled).toBe(1)
  })

  it('a per-target deadline moves partitions off a stuck peer within the query deadline', async () => {
    const c = await cluster({ seed: 63, query: { hedgeRatePerSec: 0, perTargetTimeoutMs: 100 } })
    const want = expectedByRegion(c.rowsOf('s'))
    const stuck = [...firstChoices(c, 'q0').values()].find(p => p !== 'q0')!
    c.get(stuck).storeDelayMs = 5000
    const a = await c.run('q0', { sql: SQL, timeoutMs: 1000 })
    expect(byRegion(a)).toEqual(want)
    expect(a.coverage.answered).toBe(16)
    expect(a.tookMs).toBeGreaterThanOrEqual(100)
    expect(a.tookMs).toBeLessThan(150)
    expect(c.get('q0').service.stats().retries).toBeGreaterThan(0)
    await c.world.run(20)
    const rec = c.get(stuck).served.find(s => s.from === 'q0')!
    expect(rec.abortedAt).toBeDefined()
    expect(rec.abortedAt!).toBeLessThan(150)
  })

  it('QueryRequest.signal cancels the query: CANCELLED, and the fragments in flight are aborted on their peers', async () => {
    const c = await cluster({ seed: 71 })
    for (const node of c.nodes.values()) node.storeDelayMs = 1000
    const ctrl = new AbortController()
    const q = c.query('q0', { sql: SQL, signal: ctrl.signal })
    c.world.schedule(50, () => { ctrl.abort() })
    const err = await drive(c.world, q).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect((err as QueryError).code).toBe('CANCELLED')
    expect((err as QueryError).status).toBe(499)
    expect(c.world.now()).toBeLessThan(60)
    const asked = c.ids.filter(id => c.get(id).served.some(s => s.from === 'q0'))
    expect(asked.length).toBeGreaterThan(1)
    await c.world.run(20)
    for (const id of asked) {
      for (const s of c.get(id).served) {
        expect(s.abortedAt, `fragment on ${id}`).toBeDefined()
        expect(s.abortedAt!).toBeLessThanOrEqual(60)
      }
    }
    await c.world.run(2000)
    for (const id of asked) expect(c.get(id).service.stats().fragmentsCancelled, id).toBe(c.get(id).served.length)
    expect(c.get('q0').service.stats().failed).toBe(1)

    // A signal aborted before the query starts: refused at once, nothing sent.
    const sent = c.world.stats.sent
    const err2 = await drive(c.world, c.query('q0', { sql: SQL, signal: AbortSignal.abort() })).catch((e: unknown) => e)
    expect((err2 as QueryError).code).toBe('CANCELLED')
    expect(c.world.stats.sent).toBe(sent)
  })
})

describe('query service in the simulator: malformed fragment requests', () => {
  it('are answered with errors, and the peer keeps serving', async () => {
    const c = await cluster({ seed: 81 })
    await c.run('q0', { sql: SQL })
    const template = c.ids.flatMap(id => c.get(id).served)[0]!
    const target = c.ids.find(id => c.get(id).served.includes(template))!
    const good = template.body as { space: string, uid: string, partitions: number[], plan: unknown, budgetBytes: number, analyze: boolean }
    const held = c.partitionsOn('s', target)
    const notHeld = [...Array(16).keys()].find(p => !held.includes(p))!
    const from = c.ids.find(id => id !== target)!

    async function ask (body: unknown): Promise<{ items: Array<Record<string, unknown>>, error?: unknown }> {
      const stream = c.get(from).peer.transport.stream(simAddress(target), METHOD_FRAGMENT, body, { timeoutMs: 2000 })
      return await drive(c.world, (async () => {
        const items: Array<Record<string, unknown>> = []
        try {
          for await (const x of stream) items.push(x as Record<string, unknown>)
        } catch (error) {
          return { items, error }
        }
        return { items }
      })())
    }
    const remoteCode = (r: { error?: unknown }): string | undefined => r.error instanceof RemoteError ? r.error.code : undefined
    const itemCodes = (r: { items: Array<Record<string, unknown>> }): Array<[unknown, unknown]> =>
      r.items.map(i => [i.p, (i.error as { code?: string } | undefined)?.code])

    // The request is not one at all.
    for (const body of ['hello', null, 42, [good], { ...good, space: 7 }, { ...good, partitions: [] }, { ...good, partitions: [-1] },
      { ...good, partitions: [1.5] }, { ...good, partitions: 'all' }, { ...good, budgetBytes: 0 }, { ...good, budgetBytes: 'lots' }]) {
      const r = await ask(body)
      expect(remoteCode(r), JSON.stringify(body)).toBe('BAD_FRAGMENT')
      expect(r.items).toEqual([])
    }
    // A plan that does not decode.
    for (const plan of [null, 'SELECT 1', { kind: 'DropTable' }, { kind: 'Scan', space: 's', columns: ['id'], extra: { kind: 'Nope' } }]) {
      const r = await ask({ ...good, plan })
      expect(remoteCode(r), JSON.stringify(plan).slice(0, 80)).toBe('BAD_FRAGMENT')
    }
    // A plan that decodes but is not a fragment (a whole query's plan), or does not fit the space.
    const whole = parseSql('SELECT region, count(*) FROM s GROUP BY region ORDER BY region LIMIT 2 OFFSET 1').plan
    const parts = held.slice(0, 2)
    let r = await ask({ ...good, partitions: parts, plan: whole })
    expect(r.error).toBeUndefined()
    expect(itemCodes(r)).toEqual(parts.map(p => [p, 'BAD_FRAGMENT']))
    const alien = parseSql('SELECT nope FROM s').plan
    r = await ask({ ...good, partitions: parts, plan: alien })
    expect(itemCodes(r)).toEqual(parts.map(p => [p, 'BAD_FRAGMENT']))
    // An unknown space, or a space of the same name but another uid (dropped and re-created).
    r = await ask({ ...good, partitions: parts, uid: 's@2' })
    expect(itemCodes(r)).toEqual(parts.map(p => [p, 'UNKNOWN_SPACE']))
    r = await ask({ ...good, partitions: parts, space: 'nope' })
    expect(itemCodes(r)).toEqual(parts.map(p => [p, 'UNKNOWN_SPACE']))
    // Partitions out of range or not held here: an error for those, answers for the rest.
    r = await ask({ ...good, partitions: [held[0]!, 16, 1_000_000, notHeld] })
    expect(r.error).toBeUndefined()
    expect(itemCodes(r)).toEqual([[held[0], undefined], [16, 'BAD_FRAGMENT'], [1_000_000, 'BAD_FRAGMENT'], [notHeld, 'NOT_HELD']])
    expect(r.items[0]!.last).toBe(true)

    // Still serving, correctly.
    const a = await c.run(from, { sql: SQL })
    expect(byRegion(a)).toEqual(expectedByRegion(c.rowsOf('s')))
    expect(a.coverage.answered).toBe(16)
  })

  it("a request's budgetBytes cannot raise the data peer's own memory budget", async () => {
    // About 1 KiB per fragment: a GROUP BY id of a partition (~37 groups) needs more.
    const c = await cluster({ seed: 82, query: { memoryBudgetMb: 1 / 1024 } })
    // A fragment over its budget fails the query (422), as a merge over budget does, not a partial answer of nothing.
    const wide = await c.run('q0', { sql: 'SELECT id, count(*) FROM s GROUP BY id' }).catch((e: unknown) => e)
    expect(wide).toBeInstanceOf(QueryError)
    expect((wide as QueryError).code).toBe('MEMORY_BUDGET')
    expect((wide as QueryError).status).toBe(422)
    expect(c.get('q0').service.stats().retries).toBe(0)
    await c.world.run(50)
    // Nothing was retried elsewhere: at most one request per peer, each answered once.
    expect(c.ids.reduce((n, id) => n + c.get(id).served.length, 0)).toBeLessThanOrEqual(c.ids.length - 1)
    const rec = c.ids.flatMap(id => c.get(id).served.map(s => ({ id, s })))[0]!
    const body = rec.s.body as { partitions: number[], budgetBytes: number }
    expect(body.budgetBytes).toBe(1024)
    const stream = c.get('q0').peer.transport.stream(simAddress(rec.id), METHOD_FRAGMENT, { ...body, partitions: body.partitions.slice(0, 1), budgetBytes: 2 ** 40 }, { timeoutMs: 2000 })
    const items = await drive(c.world, (async () => { const out: Array<Record<string, unknown>> = []; for await (const x of stream) out.push(x as Record<string, unknown>); return out })())
    expect(items.map(i => (i.error as { code?: string } | undefined)?.code)).toEqual(['MEMORY_BUDGET'])
  })
})
