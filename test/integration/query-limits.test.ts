import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAST_MEMBERSHIP, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * The limits of a query through POST /query on a real 3-peer cluster (one replica per partition,
 * so most partitions are another peer's): each limit is checked where the query enters and is the
 * caller's 4xx naming it, never a 200 missing the partitions that some peer refused, and never a
 * 500. The peers run with an 8 MiB memory budget, so a query building big strings meets it.
 */
describe('query limits on real peers', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []
  const BUDGET_MB = 8
  const ROWS = 12_000
  /** 100 distinct characters a row: ROWS of them are 1.2 MB, far under the budget; 16 times that is far over. */
  const rows = Array.from({ length: ROWS }, (_, i) => ({ id: `r${i}`, v: `${i}:`.padEnd(100, 'abcdefghij'), x: i, n: i % 7 }))
  /** One partition of more distinct values than a histogram's 10,000 buckets. */
  const H_ROWS = 10_500

  beforeAll(async () => {
    cluster = await TestCluster.create({ config: { membership: FAST_MEMBERSHIP, query: { memoryBudgetMb: BUDGET_MB } } })
    peers.push(...await cluster.startJoined(['a', 'b', 'c']))
    const spaces = [
      { name: 't', schema: [{ name: 'v', type: 'utf8' }, { name: 'x', type: 'float64' }, { name: 'n', type: 'int32' }], partitions: 6, replicas: 1 },
      { name: 'h', schema: [{ name: 'x', type: 'float64' }], partitions: 1, replicas: 1 }
    ]
    for (const s of spaces) expect((await peers[0]!.post('/spaces', s)).status).toBe(201)
    await waitFor(async () => (await Promise.all(peers.flatMap(p => spaces.map(async s => (await fetch(`${p.url}/spaces/${s.name}`)).status)))).every(s => s === 200), { timeoutMs: 10_000 })
    expect((await post(peers[0]!, '/spaces/t/records?consistency=all', rows)).status).toBe(200)
    const h = Array.from({ length: H_ROWS }, (_, i) => ({ id: `h${i}`, x: i }))
    expect((await post(peers[0]!, '/spaces/h/records?consistency=all', h)).status).toBe(200)
  }, 60_000)
  afterAll(async () => { await cluster?.stopAll() })

  async function post (peer: PeerProcess, path: string, body: unknown): Promise<{ status: number, body: any, text: string }> {
    const res = await fetch(peer.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(30_000) })
    const text = await res.text()
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { parsed = undefined }
    return { status: res.status, body: parsed, text }
  }
  const query = async (peer: PeerProcess, body: Record<string, unknown>): Promise<{ status: number, body: any, text: string }> => await post(peer, '/query', body)
  const terms = (n: number, term: (i: number) => string, op: string): string => Array.from({ length: n }, (_, i) => term(i)).join(` ${op} `)

  it('refuses a WHERE deeper than the peers accept with a 400 naming the limit, on every peer', async () => {
    // 300 terms: deeper than MAX_PLAN_DEPTH (256), which the data peers hold every fragment to.
    const deep = `SELECT id FROM t WHERE ${terms(300, i => `x > ${-1 - i}`, 'AND')}`
    for (const p of peers) {
      const r = await query(p, { sql: deep })
      expect(r.status, r.text.slice(0, 300)).toBe(400)
      expect(r.body.error.code).toBe('INVALID_QUERY')
      expect(r.body.error.message).toContain('256')
      expect(r.body.error.details[0]).toMatchObject({ code: 'too_large', limit: 'MAX_PLAN_DEPTH' })
    }
    // The same through a JSON query's bool filter.
    const must = Array.from({ length: 300 }, (_, i) => ({ range: { x: { gt: -1 - i } } }))
    const j = await query(peers[1]!, { space: 't', filter: { bool: { must } }, size: 1 })
    expect(j.status, j.text.slice(0, 300)).toBe(400)
    expect(j.body.error.details[0]).toMatchObject({ code: 'too_large', limit: 'MAX_PLAN_DEPTH' })
    // Too many terms (an IN list past MAX_PLAN_NODES) is refused the same way.
    const wide = await query(peers[2]!, { sql: `SELECT id FROM t WHERE x IN (${Array.from({ length: 100_001 }, (_, i) => i).join(',')})` })
    expect(wide.status, wide.text.slice(0, 300)).toBe(400)
    expect(wide.body.error.details[0]).toMatchObject({ code: 'too_large', limit: 'MAX_PLAN_NODES' })
    // Under the limit, the same kind of query answers in full.
    const ok = await query(peers[2]!, { sql: `SELECT count(*) AS c FROM t WHERE ${terms(200, i => `x > ${-1 - i}`, 'AND')}` })
    expect(ok.status).toBe(200)
    expect(ok.body.rows).toEqual([{ c: ROWS }])
    expect(ok.body.coverage).toEqual({ total: 6, answered: 6, missing: [] })
  })

  it('refuses an expression too deep to parse with a 400, not a stack overflow', async () => {
    for (const n of [5000, 20_000]) {
      const r = await query(peers[0]!, { sql: `SELECT ${terms(n, i => String(i), '+')} AS s FROM t` })
      expect(r.status, r.text.slice(0, 300)).toBe(400)
      expect(r.body.error.code).toBe('INVALID_QUERY')
      expect(r.body.error.message).toContain('MAX_PLAN_DEPTH')
    }
    const parens = await query(peers[0]!, { sql: `SELECT ${'('.repeat(5000)}1${')'.repeat(5000)} AS s FROM t` })
    expect(parens.status, parens.text.slice(0, 300)).toBe(400)
    const json = await query(peers[0]!, { space: 't', filter: { bool: { should: Array.from({ length: 5000 }, (_, i) => ({ term: { n: i } })) } }, size: 1 })
    expect(json.status, json.text.slice(0, 300)).toBe(400)
  })

  it('answers 422 LIMIT for a histogram over its buckets, whichever peer coordinates', async () => {
    for (const p of peers) {
      const r = await query(p, { space: 'h', size: 0, aggs: { by: { histogram: { field: 'x', interval: 1 } } } })
      expect(r.status, r.text.slice(0, 300)).toBe(422)
      expect(r.body.error.code).toBe('LIMIT')
      expect(r.body.error.message).toContain('maxBuckets 10000')
    }
    // Under the limit it answers, complete.
    const ok = await query(peers[0]!, { space: 'h', size: 0, aggs: { by: { histogram: { field: 'x', interval: 10 } } } })
    expect(ok.status).toBe(200)
    expect(ok.body.aggregations.by.buckets).toHaveLength(Math.ceil(H_ROWS / 10))
    expect(ok.body.confidence).toBe(1)
  })

  it('answers 422 MEMORY_BUDGET for a query whose strings grow past the budget, on every peer', async () => {
    const grow = `SELECT ${Array.from({ length: 16 }, () => 'v').join(' || ')} AS w FROM t ORDER BY x`
    for (const p of peers) {
      const r = await query(p, { sql: grow })
      expect(r.status, r.text.slice(0, 300)).toBe(422)
      expect(r.body.error.code).toBe('MEMORY_BUDGET')
      expect(r.body.error.message).toContain(`${BUDGET_MB} MiB`)
    }
    // The rows as stored fit: the same order, streamed, with every row in select order.
    const ok = await query(peers[1]!, { sql: 'SELECT id, x, v FROM t ORDER BY x' })
    expect(ok.status, ok.text.slice(0, 300)).toBe(200)
    expect(ok.body.rows).toHaveLength(ROWS)
    expect(ok.body.rows[0]).toEqual({ id: 'r0', x: 0, v: rows[0]!.v })
    expect(Object.keys(ok.body.rows[ROWS - 1])).toEqual(['id', 'x', 'v'])
    expect(ok.body.rows.every((r: { x: number }, i: number) => r.x === i)).toBe(true)
    expect(Object.keys(ok.body)).toEqual(['columns', 'rows', 'coverage', 'confidence', 'tookMs'])
  })
})
