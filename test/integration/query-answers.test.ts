import { tableFromIPC } from 'apache-arrow'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAST_MEMBERSHIP, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * How POST /query's answers travel, on a real 3-peer cluster (one replica per partition, so most
 * partitions are another peer's and cross the RPC): rows far larger than one RPC frame come back
 * whole; and the same rows answer as JSON, as a streamed Arrow IPC stream of several record
 * batches, and as NDJSON, value for value.
 */
describe('query answers on real peers', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []
  /** ~100 KB strings: 84 of them fill an 8 MiB RPC frame; a partition here holds ~160. */
  const BIG_CHARS = 100_000
  const BIG_ROWS = 480
  const bigValue = (i: number): string => `${i}:`.padEnd(BIG_CHARS, 'abcdefghij')
  /** Past one Arrow record batch (65,536 rows). */
  const N_ROWS = 70_000

  beforeAll(async () => {
    cluster = await TestCluster.create({ config: { membership: FAST_MEMBERSHIP } })
    peers.push(...await cluster.startJoined(['a', 'b', 'c']))
    const spaces = [
      { name: 'big', schema: [{ name: 's', type: 'utf8' }, { name: 'x', type: 'int32' }], partitions: 3, replicas: 1 },
      {
        name: 'n',
        schema: [{ name: 'x', type: 'int64' }, { name: 'f', type: 'float64', nullable: true }, { name: 's', type: 'utf8', nullable: true }, { name: 'b', type: 'bool' }],
        partitions: 6,
        replicas: 1
      }
    ]
    for (const s of spaces) expect((await peers[0]!.post('/spaces', s)).status).toBe(201)
    await waitFor(async () => (await Promise.all(peers.flatMap(p => spaces.map(async s => (await fetch(`${p.url}/spaces/${s.name}`)).status)))).every(s => s === 200), { timeoutMs: 10_000 })
    // Written 40 rows (4 MB) at a time: each write fits its own frames.
    for (let start = 0; start < BIG_ROWS; start += 40) {
      const rows = Array.from({ length: Math.min(40, BIG_ROWS - start) }, (_, k) => ({ id: `b${start + k}`, s: bigValue(start + k), x: start + k }))
      const r = await post(peers[0]!, '/spaces/big/records?consistency=all', rows)
      expect(r.status, r.text.slice(0, 300)).toBe(200)
    }
    const n = Array.from({ length: N_ROWS }, (_, i) => ({
      id: `n${i}`,
      // Beyond ±2^53 for some rows: JSON and NDJSON send them as strings, Arrow as Int64.
      x: i % 1000 === 0 ? (2n ** 60n + BigInt(i) * 4096n).toString() : i,
      f: i % 7 === 0 ? null : i / 8,
      s: i % 11 === 0 ? null : `s${i % 97} é`,
      b: i % 2 === 0
    }))
    for (let start = 0; start < N_ROWS; start += 10_000) {
      const r = await post(peers[0]!, '/spaces/n/records?consistency=all', n.slice(start, start + 10_000))
      expect(r.status, r.text.slice(0, 300)).toBe(200)
    }
  }, 180_000)
  afterAll(async () => { await cluster?.stopAll() })

  async function post (peer: PeerProcess, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any, text: string, headers: Headers }> {
    const res = await fetch(peer.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(60_000) })
    const text = await res.text()
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { parsed = undefined }
    return { status: res.status, body: parsed, text, headers: res.headers }
  }

  it('answers every row when a partition\'s rows are far larger than one RPC frame', async () => {
    for (const p of peers) {
      const r = await post(p, '/query', { sql: 'SELECT * FROM big' })
      expect(r.status, r.text.slice(0, 300)).toBe(200)
      expect(r.body.coverage, JSON.stringify(r.body.coverage).slice(0, 500)).toEqual({ total: 3, answered: 3, missing: [] })
      expect(r.body.confidence).toBe(1)
      expect(r.body.rows).toHaveLength(BIG_ROWS)
      const byX = new Map<number, { id: string, s: string }>(r.body.rows.map((row: { x: number, id: string, s: string }) => [row.x, row]))
      expect(byX.size).toBe(BIG_ROWS)
      for (let i = 0; i < BIG_ROWS; i++) {
        const row = byX.get(i)!
        expect(row.id).toBe(`b${i}`)
        expect(row.s === bigValue(i), `row ${i}`).toBe(true)
      }
    }
  }, 120_000)

  /** The JSON answer's rows of the same query, what the other formats must match. */
  const SQL = 'SELECT id, x, f, s, b FROM n ORDER BY id'
  let jsonRows: Array<Record<string, unknown>> | undefined
  async function expected (): Promise<Array<Record<string, unknown>>> {
    if (jsonRows !== undefined) return jsonRows
    const r = await post(peers[0]!, '/query', { sql: SQL })
    expect(r.status, r.text.slice(0, 300)).toBe(200)
    expect(r.body.coverage.missing).toEqual([])
    expect(r.body.rows).toHaveLength(N_ROWS)
    return (jsonRows = r.body.rows)
  }

  it('streams an Arrow answer of several record batches that decodes to the JSON answer\'s rows', async () => {
    const want = await expected()
    for (const p of [peers[1]!, peers[2]!]) {
      const res = await fetch(p.url + '/query', { method: 'POST', body: JSON.stringify({ sql: SQL }), headers: { 'content-type': 'application/json', accept: 'application/vnd.apache.arrow.stream' }, signal: AbortSignal.timeout(60_000) })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('application/vnd.apache.arrow.stream')
      expect(JSON.parse(res.headers.get('x-shoal-coverage')!)).toEqual({ total: 6, answered: 6, missing: [] })
      expect(res.headers.get('x-shoal-confidence')).toBe('1')
      expect(Number(res.headers.get('x-shoal-took-ms'))).toBeGreaterThan(0)
      const table = tableFromIPC(new Uint8Array(await res.arrayBuffer()))
      expect(table.batches.length).toBeGreaterThanOrEqual(2)
      expect(table.numRows).toBe(N_ROWS)
      expect(table.schema.fields.map(f => f.name)).toEqual(['id', 'x', 'f', 's', 'b'])
      const cols = ['id', 'x', 'f', 's', 'b'].map(n => table.getChild(n)!)
      let bigs = 0
      for (let i = 0; i < N_ROWS; i++) {
        const row = want[i]!
        const [id, x, f, s, b] = cols.map(c => c.get(i))
        // int64 is a bigint in Arrow; in JSON a number, or a string beyond ±2^53.
        if (typeof row.x === 'string') bigs++
        const same = id === row.id && String(x) === String(row.x) && f === row.f && s === row.s && b === row.b
        if (!same) expect({ id, x: String(x), f, s, b }, `row ${i}`).toEqual({ ...row, x: String(row.x) })
      }
      expect(bigs).toBe(N_ROWS / 1000)
    }
  }, 60_000)

  it('answers NDJSON, one row object a line, the JSON answer\'s rows, with coverage in headers', async () => {
    const want = await expected()
    const res = await fetch(peers[2]!.url + '/query', { method: 'POST', body: JSON.stringify({ sql: SQL }), headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' }, signal: AbortSignal.timeout(60_000) })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/x-ndjson')
    expect(JSON.parse(res.headers.get('x-shoal-coverage')!)).toEqual({ total: 6, answered: 6, missing: [] })
    expect(res.headers.get('x-shoal-confidence')).toBe('1')
    const text = await res.text()
    expect(text.endsWith('\n')).toBe(true)
    const lines = text.slice(0, -1).split('\n')
    expect(lines).toHaveLength(N_ROWS)
    expect(lines.map(l => JSON.parse(l))).toEqual(want)
    // Keys in select order, int64 beyond ±2^53 as a string, exactly as in the JSON answer.
    expect(Object.keys(JSON.parse(lines[0]!))).toEqual(['id', 'x', 'f', 's', 'b'])
    expect(lines[0]).toBe(JSON.stringify(want[0]))
    // An empty answer is an empty body; aggregations of a JSON query have no rows to send: 406.
    const none = await fetch(peers[0]!.url + '/query', { method: 'POST', body: JSON.stringify({ sql: 'SELECT id FROM n WHERE x < 0' }), headers: { accept: 'application/x-ndjson' } })
    expect(none.status).toBe(200)
    expect(await none.text()).toBe('')
    const aggs = await post(peers[0]!, '/query', { space: 'n', size: 0, aggs: { m: { max: { field: 'f' } } } }, { accept: 'application/x-ndjson' })
    expect(aggs.status, aggs.text.slice(0, 300)).toBe(406)
    expect(aggs.body.error.code).toBe('NOT_ACCEPTABLE')
  }, 60_000)

  it('fails with a 422 naming the frame limit, not a 200 missing partitions, when one group\'s state cannot travel', async () => {
    // count(DISTINCT s) ships each partition's set of ~160 strings of 100 KB as one state: 16 MB.
    // Placement follows the peers' random ids: the coordinator is the peer holding fewest of big's
    // rows, so that at least one partition's state must cross the RPC (a peer holding all three
    // partitions answers from its own disk, and rightly so).
    const held = await Promise.all(peers.map(async p => {
      const parts = await (await fetch(`${p.url}/cluster/partitions`)).json() as Array<{ space: string, liveRows: number }>
      return parts.filter(x => x.space === 'big').reduce((n, x) => n + x.liveRows, 0)
    }))
    const coordinator = peers[held.indexOf(Math.min(...held))]!
    expect(BIG_ROWS - Math.min(...held)).toBeGreaterThan(84 * 2)
    const r = await post(coordinator, '/query', { sql: 'SELECT count(DISTINCT s) AS n FROM big' })
    expect(r.status, r.text.slice(0, 500)).toBe(422)
    expect(r.body.error.code).toBe('LIMIT')
    expect(r.body.error.message).toContain('8388608 bytes')
    // Many groups of small states are cut into pieces and all arrive.
    const g = await post(peers[0]!, '/query', { sql: 'SELECT x, count(DISTINCT s) AS n FROM big GROUP BY x ORDER BY x' })
    expect(g.status, g.text.slice(0, 300)).toBe(200)
    expect(g.body.coverage.missing).toEqual([])
    expect(g.body.rows).toEqual(Array.from({ length: BIG_ROWS }, (_, i) => ({ x: i, n: 1 })))
  }, 60_000)
})
