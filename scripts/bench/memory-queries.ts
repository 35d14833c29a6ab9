/**
 * Memory-style queries (recall, spread, complete) over 3 peers against the same queries on one
 * peer holding every partition (issue 17: the seeds' own target is within 2x). Real peers on
 * 127.0.0.1 over HTTP, the same space on both (16 partitions, one replica, so the 3-peer cluster
 * needs every peer for recall and complete; spread asks only the partitions holding each hop's
 * frontier), the same seeded data and queries, each sent through a keep-alive client (ShoalClient)
 * after 20 untimed runs (a peer compiles its code as it runs); medians over the runs, and the
 * ratio as the median of each round's own ratio (the two clusters run alternately, so a burst
 * of noise on a shared machine hits both).
 *
 *   node dist/scripts/bench/memory-queries.js [rows]        (default 50,000)
 */
import '../../src/polyfill/index.js'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { TestCluster, waitFor, type PeerProcess } from '../../test/cluster/index.js'
import { AS_OPERATORS_RUN_THEM } from './query.js'
import { ShoalClient, type JsonQuery } from '../../src/client/index.js'
// mulberry32, seeded: the same data and queries on both clusters.
import { rng } from '../../test/jepsen/nemesis.js'

const DIM = 32
const CATS = 20

function vector (r: () => number): number[] {
  return Array.from({ length: DIM }, () => Math.round((r() * 2 - 1) * 1000) / 1000)
}

export function rows (n: number): Array<Record<string, unknown>> {
  const r = rng(17)
  return Array.from({ length: n }, (_, i) => ({
    id: `m${i}`,
    cat: `c${Math.floor(r() * CATS)}`,
    n: Math.floor(r() * 100),
    v: vector(r),
    links: [0, 1, 2].map(() => `m${Math.floor(r() * n)}`)
  }))
}

export const MEMORY_QUERIES = (n: number): Array<{ name: string, query: Record<string, unknown> }> => {
  const r = rng(99)
  const q = vector(r)
  return [
    { name: 'recall: top 10 by cosine', query: { space: 'm', knn: { field: 'v', vector: q, k: 10 }, fields: ['id', '_score'] } },
    { name: 'spread: 3 seeds, 3 hops', query: { space: 'm', spread: { seeds: [0, 1, 2].map(() => `m${Math.floor(r() * n)}`), links: 'links', decay: 0.5, maxHops: 3 }, size: 20 } },
    { name: 'complete: category, number and vector, k 10', query: { space: 'm', complete: { record: { cat: 'c3', n: 50, v: q }, k: 10 } } }
  ]
}

export interface MemoryQueryBench {
  rows: number
  results: Array<{ name: string, oneMs: number, threeMs: number, ratio: number, sameAnswer: boolean }>
}

export async function load (peer: PeerProcess, data: Array<Record<string, unknown>>): Promise<void> {
  const created = await peer.post('/spaces', { name: 'm', schema: [{ name: 'cat', type: 'utf8' }, { name: 'n', type: 'int32' }, { name: 'v', type: `vector<${DIM}>` }, { name: 'links', type: 'list<utf8>' }], partitions: 16, replicas: 1 })
  if (created.status !== 201) throw new Error(`create m: ${JSON.stringify(created.body)}`)
  for (let start = 0; start < data.length; start += 2000) {
    const res = await peer.post('/spaces/m/records?consistency=one', data.slice(start, start + 2000))
    if (res.status !== 200) throw new Error(`load: ${JSON.stringify(res.body).slice(0, 300)}`)
  }
}

/** One query through a keep-alive client (ShoalClient, as a program sends it), failing on an incomplete answer. */
async function timed (client: ShoalClient, query: Record<string, unknown>): Promise<{ ms: number, answer: unknown }> {
  const t0 = performance.now()
  const res = await client.query(query as unknown as JsonQuery)
  const ms = performance.now() - t0
  if (res.coverage.answered !== res.coverage.total) throw new Error(`incomplete answer: ${JSON.stringify(res.coverage)}`)
  return { ms, answer: { rows: res.rows, completion: res.completion } }
}

/** Untimed runs of each query on each cluster first: a peer compiles its code as it runs. */
const WARMUP = 20

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }

export async function benchMemoryQueries (n = 50_000, runs = 21, log: (line: string) => void = () => {}): Promise<MemoryQueryBench> {
  const data = rows(n)
  const one = await TestCluster.create(AS_OPERATORS_RUN_THEM)
  const three = await TestCluster.create(AS_OPERATORS_RUN_THEM)
  try {
    const solo = await one.startPeer('solo')
    const a = await three.startPeer('a')
    const b = await three.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await three.startPeer('c', { bootstrap: [a.multiaddr()] })
    await waitFor(async () => (await Promise.all([a, b, c].map(async p => (await p.members()).filter(m => m.state === 'alive').length))).every(k => k === 3), { timeoutMs: 20_000 })
    await load(solo, data)
    await load(a, data)
    log(`memory queries: ${n} rows loaded on 1 peer and on 3`)
    const results: MemoryQueryBench['results'] = []
    const soloClient = new ShoalClient(solo.url, { timeoutMs: 60_000 })
    const aClient = new ShoalClient(a.url, { timeoutMs: 60_000 })
    for (const q of MEMORY_QUERIES(n)) {
      const w1 = await timed(soloClient, q.query)
      const w3 = await timed(aClient, q.query)
      for (let i = 1; i < WARMUP; i++) { await timed(soloClient, q.query); await timed(aClient, q.query) }
      const oneMs: number[] = []; const threeMs: number[] = []; const ratios: number[] = []
      for (let r = 0; r < runs; r++) {
        const x = (await timed(soloClient, q.query)).ms
        const y = (await timed(aClient, q.query)).ms
        oneMs.push(x); threeMs.push(y); ratios.push(y / x)
      }
      results.push({ name: q.name, oneMs: median(oneMs), threeMs: median(threeMs), ratio: median(ratios), sameAnswer: JSON.stringify(w1.answer) === JSON.stringify(w3.answer) })
      log(`  ${q.name}: 1 peer ${median(oneMs).toFixed(2)} ms, 3 peers ${median(threeMs).toFixed(2)} ms`)
    }
    soloClient.close()
    aClient.close()
    return { rows: n, results }
  } finally {
    await three.stopAll()
    await one.stopAll()
  }
}

export function formatMemoryQueryBench (r: MemoryQueryBench): string {
  const lines = [
    `| query (${r.rows.toLocaleString('en-US')} rows, vector<${DIM}>, over HTTP) | 1 peer, every partition (ms) | 3 peers (ms) | 3 peers / 1 peer (paired) | same answer |`,
    '| --- | --- | --- | --- | --- |'
  ]
  for (const x of r.results) lines.push(`| ${x.name} | ${x.oneMs.toFixed(2)} | ${x.threeMs.toFixed(2)} | ${x.ratio.toFixed(2)}× | ${x.sameAnswer ? 'yes' : 'NO'} |`)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.argv[2] ?? 50_000)
  benchMemoryQueries(n, 21, line => { console.error(line) }).then(r => {
    console.log(formatMemoryQueryBench(r))
    process.exit(0)
  }, (err: unknown) => { console.error(err); process.exit(1) })
}
