import { tableFromIPC } from 'apache-arrow'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAST_MEMBERSHIP, TestCluster, runCli, sleep, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * Queries through POST /query on a real 4-peer cluster (8 partitions, 2 replicas each, so every
 * query needs other peers), and what they do under faults: a slow replica (a hedge answers), a
 * cancelled query (the peers stop), every replica of a partition cut off (a partial answer that
 * says so, or an error), a replica killed mid-query (the answer is still complete).
 */
describe('distributed queries on real peers', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []
  const ROWS = 2000
  const regions = ['eu', 'us', 'ap', 'af']
  const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `o${i}`, region: regions[i % 4], amount: (i % 100) * 1.25, qty: i % 7 }))

  beforeAll(async () => {
    cluster = await TestCluster.create({ config: { membership: FAST_MEMBERSHIP, query: { perTargetTimeoutMs: 20_000, minHedgeMs: 50 } } })
    peers.push(...await cluster.startJoined(['a', 'b', 'c', 'd']))
    const created = await peers[0]!.post('/spaces', { name: 'orders', schema: [{ name: 'region', type: 'utf8' }, { name: 'amount', type: 'float64' }, { name: 'qty', type: 'int32' }], partitions: 8, replicas: 2 })
    expect(created.status).toBe(201)
    await waitFor(async () => (await Promise.all(peers.map(async p => (await fetch(`${p.url}/spaces/orders`)).status))).every(s => s === 200), { timeoutMs: 10_000 })
    // Both owners of every partition ready in every peer's view: the tests below pick partitions
    // by their replicas, which a busy machine may not have announced yet.
    await waitFor(async () => (await Promise.all(peers.map(async p => {
      const view = await (await fetch(`${p.url}/spaces/orders`)).json() as { placement?: Array<{ readReplicas: string[] }> }
      return (view.placement ?? []).length === 8 && view.placement!.every(pl => pl.readReplicas.length === 2)
    }))).every(ok => ok), { timeoutMs: 20_000 })
    const written = await peers[0]!.post('/spaces/orders/records?consistency=all', rows)
    expect(written.status).toBe(200)
  })
  afterAll(async () => { await cluster?.stopAll() })

  const query = async (peer: PeerProcess, body: Record<string, unknown>): Promise<{ status: number, body: any }> => await peer.post('/query', body)
  const expected = regions.map(r => {
    const mine = rows.filter(x => x.region === r)
    return { region: r, n: mine.length, total: mine.reduce((s, x) => s + x.amount, 0) }
  }).sort((x, y) => x.region < y.region ? -1 : 1)
  const GROUPED = 'SELECT region, count(*) AS n, sum(amount) AS total FROM orders GROUP BY region ORDER BY region'

  it('answers SQL and JSON queries on every peer, complete, with the same rows', async () => {
    for (const p of peers) {
      const r = await query(p, { sql: GROUPED })
      expect(r.status).toBe(200)
      expect(r.body.columns).toEqual([{ name: 'region', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'total', type: 'float64' }])
      expect(r.body.rows).toEqual(expected.map(e => ({ region: e.region, n: e.n, total: expect.closeTo(e.total, 6) })))
      expect(r.body.coverage).toEqual({ total: 8, answered: 8, missing: [] })
      expect(r.body.confidence).toBe(1)
    }
    const top = await query(peers[1]!, { sql: "SELECT id, amount FROM orders WHERE region = 'us' ORDER BY amount DESC, id LIMIT 3 OFFSET 2" })
    const us = rows.filter(x => x.region === 'us').sort((x, y) => y.amount - x.amount || (x.id < y.id ? -1 : 1)).slice(2, 5)
    expect(top.body.rows).toEqual(us.map(x => ({ id: x.id, amount: x.amount })))
    const one = await query(peers[2]!, { sql: "SELECT id, qty FROM orders WHERE id = 'o42'" })
    expect(one.body.rows).toEqual([{ id: 'o42', qty: 0 }])
    expect(one.body.coverage.total).toBe(1)
    const json = await query(peers[3]!, { space: 'orders', size: 0, aggs: { by: { terms: { field: 'region' }, aggs: { s: { sum: { field: 'amount' } } } } } })
    expect(json.status).toBe(200)
    const buckets = json.body.aggregations.by.buckets as Array<{ key: string, doc_count: number, s: { value: number } }>
    expect(buckets.map(b => [b.key, b.doc_count, b.s.value]).sort()).toEqual(expected.map(e => [e.region, e.n, e.total]).sort())
  })

  it('refuses bad queries with 4xx errors naming the column and position', async () => {
    const r = await query(peers[0]!, { sql: 'SELECT regoin FROM orders' })
    expect(r.status).toBe(400)
    expect(r.body.error.code).toBe('INVALID_QUERY')
    expect(r.body.error.details[0]).toMatchObject({ code: 'unknown_column', column: 'regoin', at: 'line 1, column 8' })
    expect((await query(peers[0]!, { sql: 'SELECT * FROM nope' })).status).toBe(404)
    expect((await query(peers[0]!, { sql: 'SELEC 1' })).status).toBe(400)
    expect((await query(peers[0]!, { sql: 'SELECT 1 FROM orders', timeoutMs: -1 })).status).toBe(400)
    expect((await query(peers[0]!, { sql: 'SELECT id FROM orders', consistency: 'all' })).status).toBe(400)
  })

  it('answers an Arrow IPC stream when asked', async () => {
    const res = await fetch(`${peers[0]!.url}/query`, { method: 'POST', headers: { accept: 'application/vnd.apache.arrow.stream', 'content-type': 'application/json' }, body: JSON.stringify({ sql: GROUPED }) })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/vnd.apache.arrow.stream')
    expect(JSON.parse(res.headers.get('x-shoal-coverage')!)).toMatchObject({ total: 8, answered: 8 })
    const table = tableFromIPC(new Uint8Array(await res.arrayBuffer()))
    expect(table.numRows).toBe(4)
    const got = table.toArray().map(r => ({ region: r.region, n: Number(r.n), total: r.total }))
    expect(got).toEqual(expected.map(e => ({ region: e.region, n: e.n, total: expect.closeTo(e.total, 6) })))
  })

  it('explains the plan, and with analyze the work of each peer', async () => {
    const plain = await peers[0]!.post('/query/explain', { sql: GROUPED })
    expect(plain.status).toBe(200)
    const text = (plain.body as { text: string }).text
    expect(text).toContain('Broadcast over space orders: 8 of 8 partitions')
    expect(text).toContain('Aggregate by region')
    expect(text).toMatch(/Final \(on the coordinator\): merge group states/)
    const analyzed = await peers[0]!.post('/query/explain', { sql: GROUPED, analyze: true }) as { body: { analyze: { peers: Array<{ partitions: number, rows: number }> } } }
    const perPeer = analyzed.body.analyze.peers
    expect(perPeer.reduce((n, p) => n + p.partitions, 0)).toBe(8)
    expect(perPeer.reduce((n, p) => n + p.rows, 0)).toBe(ROWS)
  })

  it('recalls the nearest vectors in one space and across several, and spreads activation along links', async () => {
    const a = peers[0]!
    const vecs = (n: number, seed: number): Array<{ id: string, v: number[], links: string[] }> =>
      Array.from({ length: n }, (_, i) => ({ id: `${seed}-${i}`, v: [Math.cos(i * seed), Math.sin(i * seed + 1)], links: [`${seed}-${(i + 1) % n}`, `${seed}-${(i * 3) % n}`] }))
    const spaces = { notes: vecs(60, 1), papers: vecs(40, 2) }
    for (const [name, data] of Object.entries(spaces)) {
      expect((await a.post('/spaces', { name, schema: [{ name: 'v', type: 'vector<2>' }, { name: 'links', type: 'list<utf8>' }], partitions: 4, replicas: 2 })).status).toBe(201)
      await waitFor(async () => (await Promise.all(peers.map(async p => (await fetch(`${p.url}/spaces/${name}`)).status))).every(s => s === 200), { timeoutMs: 10_000 })
      expect((await a.post(`/spaces/${name}/records?consistency=all`, data)).status).toBe(200)
    }
    const q = [0.6, 0.8]
    const cosine = (v: number[]): number => (v[0]! * q[0]! + v[1]! * q[1]!) / Math.hypot(v[0]!, v[1]!)
    const f32 = (v: number[]): number[] => v.map(x => Math.fround(x))
    const ranked = Object.entries(spaces).flatMap(([space, data]) => data.map(d => ({ id: d.id, space, score: cosine(f32(d.v)) }))).sort((x, y) => y.score - x.score)
    const one = await query(peers[1]!, { space: 'notes', knn: { field: 'v', vector: q, k: 5 }, fields: ['id', '_score'] })
    expect(one.status).toBe(200)
    expect(one.body.rows.map((r: { id: string }) => r.id)).toEqual(ranked.filter(r => r.space === 'notes').slice(0, 5).map(r => r.id))
    const many = await query(peers[2]!, { spaces: ['notes', 'papers'], knn: { field: 'v', vector: q, k: 7 }, fields: ['id'] })
    expect(many.status).toBe(200)
    expect(many.body.rows.map((r: { id: string, _space: string }) => [r.id, r._space])).toEqual(ranked.slice(0, 7).map(r => [r.id, r.space]))
    many.body.rows.forEach((r: { _score: number }, i: number) => { expect(r._score).toBeCloseTo(ranked[i]!.score, 5) })
    expect(many.body.coverage).toEqual({ total: 8, answered: 8, missing: [] })
    // Spread from notes 1-0, checked against a direct computation over the same links.
    const spread = await query(peers[3]!, { space: 'notes', spread: { seeds: ['1-0'], links: 'links', decay: 0.5, maxHops: 2 } })
    expect(spread.status).toBe(200)
    const links = new Map(spaces.notes.map(d => [d.id, [...new Set(d.links)]]))
    const want = new Map<string, [number, number]>([['1-0', [1, 0]]])
    let frontier = new Map([['1-0', 1]])
    for (let hop = 1; hop <= 2; hop++) {
      const next = new Map<string, number>()
      for (const [id, a] of frontier) for (const to of links.get(id)!) next.set(to, (next.get(to) ?? 0) + a * 0.5)
      for (const [id, a] of next) { const w = want.get(id); want.set(id, [(w?.[0] ?? 0) + a, w?.[1] ?? hop]) }
      frontier = next
    }
    const got = new Map(spread.body.rows.map((r: { id: string, activation: number, hops: number }) => [r.id, [r.activation, r.hops]]))
    expect(got).toEqual(want)
    expect(spread.body.rows[0].activation).toBe(Math.max(...[...want.values()].map(w => w[0])))
  })

  it('answers through the CLI: shoal query as a table, JSON, NDJSON and CSV, and shoal explain --analyze', async () => {
    const a = peers[1]!
    const table = await runCli(['query', GROUPED, '--peer', a.url])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/region\s+n\s+total/)
    for (const e of expected) expect(table.stdout).toMatch(new RegExp(`${e.region}\\s+${e.n}\\s`))
    expect(table.stdout).toContain('4 rows · 8/8 partitions · confidence 1.00')
    const json = await runCli(['query', GROUPED, '--format', 'json', '--peer', a.url])
    expect(JSON.parse(json.stdout).rows).toHaveLength(4)
    const ndjson = await runCli(['query', GROUPED, '--format', 'ndjson', '--peer', a.url])
    expect(ndjson.code).toBe(0)
    const lines = ndjson.stdout.trim().split('\n').map(l => JSON.parse(l) as { region: string, n: number })
    expect(lines.map(l => [l.region, l.n]).sort()).toEqual(expected.map(e => [e.region, e.n]).sort())
    const csv = await runCli(['query', GROUPED, '--format', 'csv', '--peer', a.url])
    expect(csv.code).toBe(0)
    const csvLines = csv.stdout.split('\r\n')
    expect(csvLines[0]).toBe(Object.keys(JSON.parse(json.stdout).rows[0] as object).join(','))
    expect(csvLines.filter(l => l !== '')).toHaveLength(5)
    for (const e of expected) expect(csvLines.some(l => l.startsWith(`${e.region},${e.n},`))).toBe(true)
    const explain = await runCli(['explain', '--analyze', GROUPED, '--peer', a.url])
    expect(explain.code).toBe(0)
    expect(explain.stdout).toContain('Broadcast over space orders')
    // "1 peer" when placement happened to give the asked peer a replica of every partition.
    expect(explain.stdout).toMatch(/total: (1 peer|\d+ peers) · 8 partitions · 2000 rows/)
    const bad = await runCli(['query', 'SELECT nope FROM orders', '--peer', a.url])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("unknown column 'nope'")
  })

  /** A partition whose replicas do not include `coordinator`, with its replicas as the coordinator orders them. */
  async function remotePartition (coordinator: PeerProcess): Promise<{ id: string, replicas: string[] }> {
    for (let i = 0; i < ROWS; i++) {
      const e = await coordinator.post('/query/explain', { sql: `SELECT count(*) FROM orders WHERE id = 'o${i}'` }) as { body: { plan: { targets: Array<{ replicas: string[] }> } } }
      const replicas = e.body.plan.targets[0]!.replicas
      if (replicas.length === 2 && !replicas.includes(coordinator.peerId)) return { id: `o${i}`, replicas }
    }
    throw new Error('no partition without a replica on the coordinator')
  }

  const byId = (id: string): PeerProcess => peers.find(p => p.peerId === id)!
  const faults = async (p: PeerProcess, body: Record<string, unknown>): Promise<void> => { expect((await p.post('/admin/faults', body)).status).toBe(200) }

  it('hedges to a second replica when the first is slow, and the hedge answers', async () => {
    const a = peers[0]!
    const { id, replicas } = await remotePartition(a)
    await faults(byId(replicas[0]!), { queryDelayMs: 8000 })
    try {
      const r = await query(a, { sql: `SELECT id, region FROM orders WHERE id = '${id}'`, analyze: true })
      expect(r.status).toBe(200)
      expect(r.body.rows).toEqual([{ id, region: rows[Number(id.slice(1))]!.region }])
      expect(r.body.coverage).toEqual({ total: 1, answered: 1, missing: [] })
      expect(r.body.analyze.hedges).toBeGreaterThanOrEqual(1)
      // Answered by the hedge, not by waiting out the slow peer's 8 s.
      expect(r.body.tookMs).toBeLessThan(8000)
    } finally {
      await faults(byId(replicas[0]!), { queryDelayMs: 0 })
    }
  })

  it('counts fragments by the thread that ran them on /metrics', async () => {
    const a = peers[0]!
    expect((await query(a, { sql: 'SELECT region, count(*) FROM orders GROUP BY region' })).status).toBe(200)
    const text = await (await fetch(`${a.url}/metrics`)).text()
    const count = (thread: string): number | undefined => {
      const m = new RegExp(`shoal_query_fragment_threads_total\\{thread="${thread}"\\} (\\d+)`).exec(text)
      return m === null ? undefined : Number(m[1])
    }
    // This suite's partitions are small: their fragments run on the main thread.
    expect(count('main')).toBeGreaterThan(0)
    expect(count('worker')).toBeGreaterThanOrEqual(0)
    expect(count('taken_back')).toBeGreaterThanOrEqual(0)
  })

  it('stops the work on the peers when the client cancels the query', async () => {
    const metric = async (p: PeerProcess): Promise<number> => {
      const text = await (await fetch(`${p.url}/metrics`)).text()
      const m = /shoal_query_fragments_total\{outcome="cancelled"\} (\d+)/.exec(text)
      return m === null ? 0 : Number(m[1])
    }
    const others = peers.slice(1)
    const before = await Promise.all(others.map(metric))
    for (const p of others) await faults(p, { queryDelayMs: 30_000 })
    try {
      const controller = new AbortController()
      const pending = fetch(`${peers[0]!.url}/query`, { method: 'POST', body: JSON.stringify({ sql: 'SELECT count(*) FROM orders' }), signal: controller.signal }).catch((err: Error) => err)
      await sleep(500)
      controller.abort()
      expect(await pending).toBeInstanceOf(Error)
      // Every peer that was asked sees the cancellation and stops (well before its 30 s delay).
      await waitFor(async () => {
        const after = await Promise.all(others.map(metric))
        return after.reduce((s, n) => s + n, 0) - before.reduce((s, n) => s + n, 0) >= 1
      }, { timeoutMs: 10_000 })
    } finally {
      for (const p of others) await faults(p, { queryDelayMs: 0 })
    }
  })

  it('answers partially, with coverage and lowered confidence, when every replica of a partition is cut off; refuses with allowPartial false', async () => {
    const a = peers[0]!
    const { replicas } = await remotePartition(a)
    await faults(a, { deny: replicas })
    try {
      const r = await query(a, { sql: 'SELECT count(*) AS n FROM orders' })
      expect(r.status).toBe(200)
      expect(r.body.coverage.answered).toBeLessThan(8)
      expect(r.body.coverage.missing.length).toBe(8 - r.body.coverage.answered)
      expect(r.body.coverage.missing[0]).toMatchObject({ space: 'orders', partition: expect.any(Number), reason: expect.any(String) })
      expect(r.body.confidence).toBeCloseTo(r.body.coverage.answered / 8, 6)
      expect(r.body.rows[0].n).toBeLessThan(ROWS)
      const strict = await query(a, { sql: 'SELECT count(*) AS n FROM orders', allowPartial: false })
      expect(strict.status).toBe(503)
      expect(strict.body.error.code).toBe('PARTIAL_RESULT')
      expect(strict.body.error.coverage.missing.length).toBeGreaterThan(0)
    } finally {
      await faults(a, { deny: [] })
    }
    await waitFor(async () => (await query(a, { sql: 'SELECT count(*) AS n FROM orders' })).body.coverage?.answered === 8, { timeoutMs: 20_000 })
  })

  it('still answers completely from other replicas when a replica is killed mid-query', async () => {
    const a = peers[0]!
    const victim = peers[3]!
    let stop = false
    const answers: Array<{ status: number, body: any }> = []
    const load = (async () => {
      while (!stop) answers.push(await query(a, { sql: 'SELECT count(*) AS n, sum(qty) AS q FROM orders' }))
    })()
    await sleep(300)
    await victim.kill('SIGKILL')
    await sleep(3000)
    stop = true
    await load
    const qtySum = rows.reduce((s, x) => s + x.qty, 0)
    expect(answers.length).toBeGreaterThan(3)
    for (const r of answers) {
      expect(r.status).toBe(200)
      expect(r.body.coverage).toEqual({ total: 8, answered: 8, missing: [] })
      expect(r.body.rows).toEqual([{ n: ROWS, q: qtySum }])
    }
  })
})
