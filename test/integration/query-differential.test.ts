import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'
import { checkQuery, COLUMNS, deriveSeed, Duck, generateQuery, generateRows, Rng, SPACE_NAME, toRecords } from '../query-gen/index.js'
import type { DataRow } from '../query-gen/index.js'

/**
 * Differential test: random SQL from the supported grammar, over seeded data, answered by a real
 * 3-peer cluster (8 partitions, 2 replicas) through POST /query on random peers, and by DuckDB
 * over the same rows; the answers must agree (test/query-gen/compare.ts has the rules: exact
 * values, floats within 1e-9, sketches within their stated error, any order among ORDER BY ties).
 *
 * SHOAL_DIFF_SEED (data and queries), SHOAL_DIFF_QUERIES (default 150), SHOAL_DIFF_ROWS (default
 * 5,000) change the run; SHOAL_DIFF_ONLY=3,17 runs only those query numbers of the run (a failure
 * names its number).
 */
const SEED = envInt('SHOAL_DIFF_SEED', 20_250_601)
const QUERIES = envInt('SHOAL_DIFF_QUERIES', 150)
const ROWS = envInt('SHOAL_DIFF_ROWS', 5000)
const ONLY = (process.env.SHOAL_DIFF_ONLY ?? '').split(',').filter(s => s.trim() !== '').map(Number)
const BATCH = 500

function envInt (name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got '${v}'`)
  return n
}

/** POST /query; the parsed body (an answer or `{error}`), and the HTTP status. */
async function query (peer: PeerProcess, sql: string): Promise<{ status: number, body: unknown }> {
  const res = await fetch(`${peer.url}/query`, {
    method: 'POST',
    body: JSON.stringify({ sql }),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(30_000)
  })
  const text = await res.text()
  try {
    return { status: res.status, body: JSON.parse(text) }
  } catch {
    return { status: res.status, body: { error: { code: `HTTP ${res.status}`, message: `not JSON: ${text.slice(0, 300)}` } } }
  }
}

describe('SQL answers on a real 3-peer cluster match DuckDB', () => {
  let cluster: TestCluster
  let peers: PeerProcess[] = []
  let duck: Duck
  let rows: DataRow[]

  beforeAll(async () => {
    rows = generateRows(SEED, ROWS)
    duck = await Duck.open(rows)
    // A 1 MiB block cache and small memtables: the rows live in many segments, flushed and
    // compacted while loading, and queries read them from disk, most blocks pushed out or turned away.
    cluster = await TestCluster.create({ config: { storage: { cacheMiB: 1, memtableMaxRows: 100 } } })
    const a = await cluster.startPeer('a')
    const [b, c] = await Promise.all([
      cluster.startPeer('b', { bootstrap: [a.multiaddr()] }),
      cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    ])
    peers = [a, b, c]
    await waitFor(async () => {
      const views = await Promise.all(peers.map(async p => await p.members()))
      return views.every(v => v.filter(m => m.state === 'alive').length === 3)
    }, { timeoutMs: 20_000, describe: async () => JSON.stringify(await a.members()) })

    const created = await a.post('/spaces', { name: SPACE_NAME, schema: COLUMNS.map(c => ({ name: c.name, type: c.type })), partitions: 8, replicas: 2 })
    if (created.status !== 201) throw new Error(`create space: ${created.status} ${JSON.stringify(created.body)}`)
    await waitFor(async () => {
      const views = await Promise.all(peers.map(async p => await p.get(`/spaces/${SPACE_NAME}`) as { name?: string }))
      return views.every(v => v.name === SPACE_NAME)
    }, { timeoutMs: 15_000 })

    const records = toRecords(rows)
    for (let i = 0, n = 0; i < records.length; i += BATCH, n++) {
      const batch = records.slice(i, i + BATCH)
      const peer = peers[n % peers.length]!
      const res = await fetch(`${peer.url}/spaces/${SPACE_NAME}/records?consistency=all`, {
        method: 'POST',
        body: JSON.stringify(batch),
        headers: { 'content-type': 'application/json' },
        signal: AbortSignal.timeout(30_000)
      })
      const body = await res.json() as { written?: number }
      if (res.status !== 200 || body.written !== batch.length) throw new Error(`write rows ${i}..${i + batch.length} through ${peer.name}: ${res.status} ${JSON.stringify(body)}`)
    }

    // Every peer counts every row before the queries start (and POST /query exists at all).
    for (const p of peers) {
      const first = await query(p, `SELECT count(*) AS n FROM ${SPACE_NAME}`)
      if (first.status === 404 && JSON.stringify(first.body).toLowerCase().includes('not found')) {
        throw new Error(`POST /query is not available on peer ${p.name}: ${first.status} ${JSON.stringify(first.body)}`)
      }
      let last: unknown = first.body
      await waitFor(async () => {
        const r = await query(p, `SELECT count(*) AS n FROM ${SPACE_NAME}`)
        last = r.body
        const n = (r.body as { rows?: Array<{ n?: unknown }> }).rows?.[0]?.n
        return Number(n) === ROWS
      }, { timeoutMs: 20_000, describe: () => `peer ${p.name} answers ${JSON.stringify(last)}, not ${ROWS} rows` })
    }
  }, 120_000)

  afterAll(async () => {
    duck?.close()
    await cluster?.stopAll()
  })

  it(`answers ${QUERIES} random queries (seed ${SEED}) as DuckDB does`, async () => {
    const pick = new Rng(SEED ^ 0x5eed)
    const failures: string[] = []
    const started = Date.now()
    let checked = 0
    let rowsCompared = 0
    for (let i = 0; i < QUERIES; i++) {
      const peer = pick.pick(peers)
      if (ONLY.length > 0 && !ONLY.includes(i)) continue
      const q = generateQuery(deriveSeed(SEED, i), rows)
      const context = `query ${i} of SHOAL_DIFF_SEED=${SEED} SHOAL_DIFF_ROWS=${ROWS}, on peer ${peer.name}`
      let body: unknown
      try {
        body = (await query(peer, q.sql)).body
      } catch (err) {
        body = { error: { code: 'FETCH', message: (err as Error).message } }
      }
      const r = await checkQuery(duck, q, body, context)
      checked++
      if (r.ok) rowsCompared += r.rows
      else failures.push(r.report)
    }
    const summary = `${checked} queries, ${failures.length} failed, ${rowsCompared} rows compared in ${Date.now() - started} ms`
    console.log(`query differential: ${summary}`)
    for (const f of failures) console.error(`\n${f}`)
    expect(failures.length, `${summary}; first failures:\n\n${failures.slice(0, 3).join('\n\n')}`).toBe(0)
  }, 180_000)
})
