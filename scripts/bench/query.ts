/**
 * Query benchmark: the same aggregation queries on the same data in Shoal and in DuckDB, side by
 * side in one run, and the scatter overhead per partition.
 *
 *   node dist/scripts/bench/query.js [rows] [--cluster-rows N] [--no-local] [--no-cluster] [--no-single] [--no-extras]
 *
 * 1. Local execution, one peer: N rows (default 10 million) as Shoal holds a warm replica
 *    (column batches of 64k rows, 16 partitions), run through the executor exactly as a peer runs
 *    a query whose partitions are all its own (fragment per partition, merge, finalize), against
 *    DuckDB (in-process, its default threads) on a table of the same values; then both on one
 *    thread. The four run in 7 interleaved rounds after a warm-up (a burst of noise on a shared
 *    machine hits them alike): medians, and ratios as the median of each round's own ratio.
 * 2. Real clusters over HTTP: one peer and three peers (processes on 127.0.0.1 sharing the
 *    machine's 2 cores; --cluster-rows, default 200,000), each query through a keep-alive client
 *    (ShoalClient, what a program uses) after a warm-up (a peer compiles its code as it runs),
 *    the 3 peers and DuckDB in-process in interleaved rounds: medians and paired ratios, and
 *    whether the answers are DuckDB's. --no-single leaves the one peer out (at 10 M rows each
 *    cluster takes minutes to load).
 * 3. Extras (up to a million rows, unless --no-extras): the scatter overhead (count(*) over a
 *    space of 1 partition vs 64 with a handful of rows: (t64 − t1) / 63 is the cost of one more
 *    partition), the one-partition count(*) through a client given every peer (owner routing,
 *    src/client/routing.ts) beside one of a single peer, where each query's time goes (EXPLAIN
 *    ANALYZE's stages), and the tail (300 repetitions one at a time, routed too).
 */
import '../../src/polyfill/index.js'
import { DuckDBInstance } from '@duckdb/node-api'
import { performance } from 'node:perf_hooks'
import { pack, unpack } from 'msgpackr'
import { shareVector, type BatchSource, type NumVector, type StoredBatch, type StoredVector, type StrVector, type ValueType } from '../../src/columnar/index.js'
import { MAX_CODED_VALUES, decodeNumberCodes, decodeUtf8Codes, encodeNumberCodes, encodeUtf8Codes, numberDictionary } from '../../src/storage/segment-file-format.js'
import { FragmentPool, QueryMerger, defaultPoolSize, runFragment, splitPlan, type FragmentResult } from '../../src/query/exec/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { TestCluster, waitAllAlive, type PeerProcess } from '../../test/cluster/index.js'
import { ShoalClient } from '../../src/client/index.js'

/**
 * Peers with the default membership timings, as operators run them: the tests' FAST_MEMBERSHIP
 * probes and gossips five times as often, work every peer's event loop does between queries.
 */
export const AS_OPERATORS_RUN_THEM = { config: { membership: {} } }

/** `approx`: sketch columns, left out of the answer check (both engines approximate them, differently: DuckDB's approx_count_distinct answers 1,249 for 1,000 distinct values, Shoal's is exact below 3,000). */
export const QUERIES: Array<{ name: string, sql: string, approx?: string[] }> = [
  { name: 'group by 1 key, 3 aggregates', sql: 'SELECT region, count(*) AS n, sum(amount) AS s, avg(qty) AS q FROM t GROUP BY region' },
  { name: 'filter + group by 1,000 keys', sql: 'SELECT cat, count(*) AS n, min(amount) AS lo, max(amount) AS hi FROM t WHERE qty > 3 GROUP BY cat' },
  { name: 'group by 2 keys, top 10', sql: 'SELECT region, cat, sum(amount) AS s FROM t GROUP BY region, cat ORDER BY s DESC LIMIT 10' },
  { name: 'sketches: distinct + median', sql: 'SELECT count(*) AS n, approx_count_distinct(cat) AS d, approx_quantile(amount, 0.5) AS med FROM t', approx: ['d', 'med'] }
]

export const SPACE: SpaceDef = {
  name: 't',
  uid: 't-1',
  partitions: 16,
  replicas: 1,
  schema: [
    { name: 'id', type: 'utf8', nullable: false },
    { name: 'region', type: 'utf8', nullable: true },
    { name: 'cat', type: 'int32', nullable: true },
    { name: 'qty', type: 'int32', nullable: true },
    { name: 'amount', type: 'float64', nullable: true }
  ]
} as unknown as SpaceDef

/** The generated values, the same formulas in JS and in DuckDB's SQL below. */
export const region = (i: number): string => `r${i % 50}`
export const cat = (i: number): number => (i * 7) % 1000
export const qty = (i: number): number => i % 13
export const amount = (i: number): number => ((i * 7919) % 100_000) / 100

export const DUCKDB_TABLE = (n: number): string => `CREATE TABLE t AS SELECT 'i' || i AS id, 'r' || (i % 50) AS region, CAST((i * 7) % 1000 AS INTEGER) AS cat,
  CAST(i % 13 AS INTEGER) AS qty, ((i * 7919) % 100000) / 100.0 AS amount FROM range(${n}) r(i)`

const BATCH = 65_536

/** N rows as 16 partitions of column batches, as a warm replica holds them. */
/** The benchmark's data, for profiling a query outside the benchmark. */
export function columnarDataForProfile (n: number): StoredBatch[][] { return columnarData(n, 16) }

function columnarData (n: number, partitions: number): StoredBatch[][] {
  const regions = Array.from({ length: 50 }, (_, k) => `r${k}`)
  const out: StoredBatch[][] = Array.from({ length: partitions }, () => [])
  const per = Math.ceil(n / partitions)
  for (let p = 0; p < partitions; p++) {
    const lo = p * per
    const hi = Math.min(n, lo + per)
    for (let start = lo; start < hi; start += BATCH) {
      const len = Math.min(BATCH, hi - start)
      const regionCodes = new Int32Array(len)
      const catV = new Float64Array(len); const qtyV = new Float64Array(len); const amountV = new Float64Array(len)
      for (let j = 0; j < len; j++) {
        const i = start + j
        regionCodes[j] = i % 50
        catV[j] = cat(i); qtyV[j] = qty(i); amountV[j] = amount(i)
      }
      // As storage's cache holds them: a column of few distinct values in a batch compact (codes
      // into its values, the writer's rule and format), the rest as NumVector with what storage
      // says of its columns (no NULL; int32s); in shared memory.
      const columns = new Map<string, StoredVector>([
        ['region', asStored({ tag: 'str', type: 'utf8', codes: regionCodes, dict: regions })],
        ['cat', asStored({ tag: 'num', type: 'int32', values: catV, nulls: 0, int32: true })],
        ['qty', asStored({ tag: 'num', type: 'int32', values: qtyV, nulls: 0, int32: true })],
        ['amount', asStored({ tag: 'num', type: 'float64', values: amountV, nulls: 0 })]
      ])
      out[p]!.push({ length: len, columns })
    }
  }
  return out
}

/** A column as storage's cache would hold it (see columnarData): compact when its writer codes it, in shared memory. */
function asStored (v: NumVector | StrVector): StoredVector {
  const rows = v.tag === 'num' ? v.values.length : v.codes.length
  const cap = Math.min(MAX_CODED_VALUES, Math.floor(rows / 4))
  const fail = (reason: string): Error => new Error(reason)
  const inShared = (block: Uint8Array): Uint8Array => { const b = new Uint8Array(new SharedArrayBuffer(block.length)); b.set(block); return b }
  if (v.tag === 'str') {
    if (v.dict.length > cap) return shareVector(v)
    const { block, width } = encodeUtf8Codes(v.codes, v.dict)
    return decodeUtf8Codes(inShared(block), rows, v.dict.length, width, fail)
  }
  const found = numberDictionary(v.values, cap)
  if (found === undefined) return shareVector(v)
  const { block, width } = encodeNumberCodes(found.codes, found.dict)
  return decodeNumberCodes(inShared(block), rows, found.dict.length, width, v.type, fail)
}

/**
 * One query, the way a peer runs it when every partition is its own: a fragment per partition
 * (side by side on the pool's worker threads and this one, when a pool is given, as a peer does),
 * merge, finalize.
 */
export async function runLocalQuery (sql: string, data: StoredBatch[][], space: SpaceDef = SPACE, pool?: FragmentPool): Promise<Array<Record<string, unknown>>> {
  const { plan, origins } = parseSql(sql)
  const v = validatePlan(plan, space, { origins })
  if (!v.ok) throw new Error(v.errors.map(e => e.message).join('; '))
  const split = splitPlan(v.plan, space.schema.map(c => c.name))
  const types = new Map(space.schema.map(c => [c.name, c.type]))
  const merger = new QueryMerger(split, n => types.get(n))
  const columnType = (n: string): ValueType | undefined => types.get(n)
  const run = async (batches: StoredBatch[]): Promise<FragmentResult> => {
    if (pool !== undefined) return await pool.run({ plan: split.fragment, batches, columnType, types: [...types] as Array<[string, ValueType]>, budgetBytes: Infinity })
    const source: BatchSource = { batches: () => batches }
    return await runFragment(split.fragment, { source, columnType })
  }
  // As serveFragments does: as many fragments at once as the pool runs, the next one started as
  // soon as one finishes.
  const width = pool?.parallelism ?? 1
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < data.length) {
      const r = await run(data[next++]!)
      // What crosses the wire between a data peer and its coordinator (the local path skips it).
      merger.add(unpack(pack(r.output)))
    }
  }
  await Promise.all(Array.from({ length: width }, lane))
  return merger.finish(v.columns).rows
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function timeIt (runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn()
  const times: number[] = []
  for (let r = 0; r < runs; r++) times.push(await timeOnce(fn))
  return median(times)
}

async function timeOnce (fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

/**
 * Times several contenders in interleaved rounds (each warmed once; every round runs each once,
 * starting from a different one), so that a burst of noise on this shared machine hits them
 * alike. Per contender: its median and its time in every round (for paired ratios).
 */
export async function timeInterleaved (runs: number, fns: ReadonlyArray<() => Promise<unknown>>): Promise<Array<{ median: number, times: number[] }>> {
  for (const fn of fns) await fn()
  const times = fns.map(() => [] as number[])
  for (let r = 0; r < runs; r++) {
    for (let k = 0; k < fns.length; k++) {
      const i = (r + k) % fns.length
      times[i]!.push(await timeOnce(fns[i]!))
    }
  }
  return times.map(t => ({ median: median(t), times: t }))
}

/** The median over rounds of a's time over b's in the same round. */
export const pairedRatio = (a: number[], b: number[]): number => median(a.map((x, i) => x / b[i]!))

export interface LocalQueryBench { rows: number, duckdbThreads: number, shoalThreads: number, results: Array<{ name: string, shoalMs: number, shoal1Ms: number, duckdbMs: number, duckdb1Ms: number, ratio: number, ratio1: number, sameAnswer: boolean }> }

export async function benchLocalQueries (rows: number, runs = 7): Promise<LocalQueryBench> {
  const data = columnarData(rows, 16)
  // DuckDB as it comes (a thread per core) and held to one thread, as Shoal's executor runs.
  const db = await DuckDBInstance.create(':memory:')
  const con = await db.connect()
  await con.run(DUCKDB_TABLE(rows))
  const threads = Number((await con.runAndReadAll("SELECT current_setting('threads') AS t")).getRowObjectsJson()[0]!.t)
  const db1 = await DuckDBInstance.create(':memory:', { threads: '1' })
  const con1 = await db1.connect()
  await con1.run(DUCKDB_TABLE(rows))
  // Shoal as a peer runs it (worker threads plus the main thread), and on the main thread alone.
  const pool = new FragmentPool(defaultPoolSize())
  const results: LocalQueryBench['results'] = []
  for (const q of QUERIES) {
    const ours = await runLocalQuery(q.sql, data, SPACE, pool)
    const theirs = (await con.runAndReadAll(q.sql)).getRowObjectsJson()
    const [shoal, shoal1, duckdb, duckdb1] = await timeInterleaved(runs, [
      async () => await runLocalQuery(q.sql, data, SPACE, pool),
      async () => await runLocalQuery(q.sql, data),
      async () => await con.runAndReadAll(q.sql),
      async () => await con1.runAndReadAll(q.sql)
    ])
    results.push({
      name: q.name,
      shoalMs: shoal!.median,
      shoal1Ms: shoal1!.median,
      duckdbMs: duckdb!.median,
      duckdb1Ms: duckdb1!.median,
      ratio: pairedRatio(shoal!.times, duckdb!.times),
      ratio1: pairedRatio(shoal1!.times, duckdb1!.times),
      sameAnswer: sameRows(ours, theirs, q.approx ?? [])
    })
  }
  const shoalThreads = pool.workers + 1
  await pool.close()
  con.closeSync()
  con1.closeSync()
  return { rows, duckdbThreads: threads, shoalThreads, results }
}

/** Same multiset of rows: strings equal, numbers within 1e-9 relative (sums in another order); sketch columns skipped. */
export function sameRows (a: Array<Record<string, unknown>>, b: Array<Record<string, unknown>>, approx: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const key = (r: Record<string, unknown>): string => Object.values(r).filter(v => typeof v === 'string' && Number.isNaN(Number(v))).join('|')
  const bs = new Map<string, Array<Record<string, unknown>>>()
  for (const r of b) { const k = key(r); bs.set(k, [...(bs.get(k) ?? []), r]) }
  for (const r of a) {
    const cands = bs.get(key(r)) ?? []
    const i = cands.findIndex(c => Object.keys(r).every(k => {
      if (approx.includes(k)) return true
      const x = Number(r[k]); const y = Number(c[k])
      if (Number.isNaN(x) || Number.isNaN(y)) return String(r[k]) === String(c[k])
      return Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(y))
    }))
    if (i < 0) return false
    cands.splice(i, 1)
  }
  return true
}

export interface ClusterQueryBench {
  rows: number
  /** Empty when the run skipped the single peer (--no-single). */
  onePeer: Array<{ name: string, ms: number }>
  threePeers: Array<{ name: string, ms: number }>
  duckdb: Array<{ name: string, ms: number }>
  /** 3 peers / DuckDB, the median of each round's own ratio (they run interleaved). */
  ratio: number[]
  /** Whether the 3-peer cluster's answer is DuckDB's (sketch columns aside). */
  sameAnswer: boolean[]
  /** Absent when the run left the extras out (--no-extras, or past a million rows). */
  /**
   * count(*) over a one-partition space and a 64-partition one through a client of peer a;
   * then the first again (`unroutedOneMs`) beside the same through a client given all three peers
   * (`routedOneMs`: owner routing, the partition's peer answers); `oneAtA`: whether peer a holds
   * that partition itself.
   */
  scatter?: { oneMs: number, manyMs: number, partitions: number, perPartitionMs: number, unroutedOneMs: number, routedOneMs: number, oneAtA: boolean }
  /** Where each query's time goes on 3 peers (medians over the runs, EXPLAIN ANALYZE's figures). */
  stages: StageBreakdown[]
  /** The tail of a healthy 3-peer cluster: many repetitions of each query, one at a time. */
  tail: Array<{ name: string, runs: number, p50Ms: number, p99Ms: number, maxMs: number }>
}

/**
 * p50 and p99 of `runs` repetitions, one at a time, through a keep-alive client (what a program
 * using ShoalClient sees): issue 17 wants the p99 of a healthy cluster within 3x its median.
 */
async function tailOf (urls: string | string[], name: string, sql: string, runs: number): Promise<ClusterQueryBench['tail'][number]> {
  const client = new ShoalClient(urls)
  try {
    for (let i = 0; i < 10; i++) await client.query(sql)
    const times: number[] = []
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now()
      const a = await client.query(sql)
      times.push(performance.now() - t0)
      if (a.coverage.answered !== a.coverage.total) throw new Error(`incomplete answer: ${JSON.stringify(a.coverage)}`)
    }
    times.sort((x, y) => x - y)
    const at = (p: number): number => times[Math.min(times.length - 1, Math.ceil(p / 100 * times.length) - 1)]!
    return { name, runs, p50Ms: at(50), p99Ms: at(99), maxMs: times.at(-1)! }
  } finally {
    client.close()
  }
}

/**
 * One query's time, stage by stage (issue 17): the client's wall time of POST /query and the
 * server's own tookMs (the rest is HTTP: reading the request, writing the JSON answer, the
 * socket), then EXPLAIN ANALYZE's stages on the coordinator, and for the slowest peer its round
 * trip against its own work (waiting for a worker, reading the replica, executing): the
 * difference is the RPC (encoding, transfer, decoding) and the peer's event loop.
 */
export interface StageBreakdown {
  name: string
  clientMs: number
  tookMs: number
  parseMs: number
  planMs: number
  scatterMs: number
  slowestRoundTripMs: number
  slowestPeerWorkMs: number
  /** The slowest peer: request in to its last answer ready, on its own clock. */
  slowestPeerReadyMs: number
  mergeMs: number
  finishMs: number
  gcMs: number
}

interface AnalyzeBody { analyze: { tookMs: number, stages: { parseMs: number, planMs: number, scatterMs: number, mergeMs: number, finishMs: number, gcMs: number }, peers: Array<{ ms: number, waitMs: number, readMs: number, readyMs: number, roundTripMs: number }> } }

async function stageBreakdown (peer: PeerProcess, name: string, sql: string, runs: number): Promise<StageBreakdown> {
  const client: number[] = []; const took: number[] = []
  await peer.post('/query', { sql })
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now()
    const res = await peer.post('/query', { sql })
    client.push(performance.now() - t0)
    took.push((res.body as { tookMs: number }).tookMs)
  }
  const fields: Record<Exclude<keyof StageBreakdown, 'name' | 'clientMs' | 'tookMs'>, number[]> = { parseMs: [], planMs: [], scatterMs: [], slowestRoundTripMs: [], slowestPeerWorkMs: [], slowestPeerReadyMs: [], mergeMs: [], finishMs: [], gcMs: [] }
  for (let r = 0; r < runs; r++) {
    const res = await peer.post('/query/explain', { sql, analyze: true })
    if (res.status !== 200) throw new Error(`explain ${sql}: ${JSON.stringify(res.body).slice(0, 300)}`)
    const a = (res.body as AnalyzeBody).analyze
    for (const k of ['parseMs', 'planMs', 'scatterMs', 'mergeMs', 'finishMs', 'gcMs'] as const) fields[k].push(a.stages[k])
    const slowest = a.peers.reduce((x, p) => p.roundTripMs > x.roundTripMs ? p : x, a.peers[0]!)
    fields.slowestRoundTripMs.push(slowest.roundTripMs)
    fields.slowestPeerWorkMs.push(slowest.ms + slowest.waitMs + slowest.readMs)
    fields.slowestPeerReadyMs.push(slowest.readyMs)
  }
  return { name, clientMs: median(client), tookMs: median(took), ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, median(v)])) as Omit<StageBreakdown, 'name' | 'clientMs' | 'tookMs'> }
}

/** Loads `rows` generated rows into a new space through one peer, 4 batches of 5,000 in flight. */
async function load (peer: PeerProcess, rows: number, partitions: number, replicas: number, name = 't'): Promise<void> {
  const created = await peer.post('/spaces', { name, schema: SPACE.schema.filter(c => c.name !== 'id').map(c => ({ name: c.name, type: c.type })), partitions, replicas })
  if (created.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(created.body)}`)
  const client = new ShoalClient(peer.url, { timeoutMs: 120_000 })
  try {
    let next = 0
    const lane = async (): Promise<void> => {
      for (let start = next; start < rows; start = next) {
        next += 5000
        const batch = []
        for (let i = start; i < Math.min(rows, start + 5000); i++) batch.push({ id: `i${i}`, region: region(i), cat: cat(i), qty: qty(i), amount: amount(i) })
        await client.put(name, batch, { consistency: 'one' })
      }
    }
    await Promise.all([lane(), lane(), lane(), lane()])
  } finally {
    client.close()
  }
}

/**
 * A query as a program sends it: POST /query through a keep-alive client (ShoalClient), failing
 * on an answer that is not complete.
 */
function queryOver (client: ShoalClient, sql: string): () => Promise<Array<Record<string, unknown>>> {
  return async () => {
    const a = await client.query(sql)
    if (a.coverage.answered !== a.coverage.total) throw new Error(`incomplete answer: ${JSON.stringify(a.coverage)}`)
    return a.rows as Array<Record<string, unknown>>
  }
}

export interface ClusterBenchOptions {
  /** Timed rounds per query (after `warmup` untimed ones: a peer's code is compiled as it runs). */
  runs?: number
  warmup?: number
  /** Also run the single peer (default true). */
  single?: boolean
  /** The scatter overhead, the stage breakdown and the tail (default: up to a million rows). */
  extras?: boolean
}

export async function benchClusterQueries (rows: number, options: ClusterBenchOptions = {}): Promise<ClusterQueryBench> {
  const runs = options.runs ?? (rows > 1_000_000 ? 9 : 31)
  const warmup = options.warmup ?? (rows > 1_000_000 ? 3 : 30)
  const extras = options.extras ?? rows <= 1_000_000
  const out: ClusterQueryBench = { rows, onePeer: [], threePeers: [], duckdb: [], ratio: [], sameAnswer: [], stages: [], tail: [] }
  const warm = async (fn: () => Promise<unknown>): Promise<void> => { for (let i = 0; i < warmup; i++) await fn() }
  const db = await DuckDBInstance.create(':memory:')
  const con = await db.connect()
  await con.run(DUCKDB_TABLE(rows))

  if (options.single !== false) {
    const single = await TestCluster.create(AS_OPERATORS_RUN_THEM)
    try {
      const a = await single.startPeer('solo')
      await load(a, rows, 16, 1)
      const client = new ShoalClient(a.url, { timeoutMs: 300_000 })
      for (const q of QUERIES) {
        const run = queryOver(client, q.sql)
        await warm(run)
        out.onePeer.push({ name: q.name, ms: await timeIt(runs, run) })
      }
      client.close()
    } finally {
      await single.stopAll()
    }
  }

  const three = await TestCluster.create(AS_OPERATORS_RUN_THEM)
  try {
    const a = await three.startPeer('a')
    const b = await three.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await three.startPeer('c', { bootstrap: [a.multiaddr()] })
    await waitAllAlive([a, b, c])
    // One replica per partition: every query needs all three peers.
    await load(a, rows, 16, 1)
    const client = new ShoalClient(a.url, { timeoutMs: 300_000 })
    for (const q of QUERIES) {
      const shoal = queryOver(client, q.sql)
      const duck = async (): Promise<unknown> => await con.runAndReadAll(q.sql)
      await warm(shoal)
      await warm(duck)
      out.sameAnswer.push(sameRows(await shoal(), (await con.runAndReadAll(q.sql)).getRowObjectsJson(), q.approx ?? []))
      // Side by side: a burst of noise on this shared machine hits both alike.
      const [s3, dk] = await timeInterleaved(runs, [shoal, duck])
      out.threePeers.push({ name: q.name, ms: s3!.median })
      out.duckdb.push({ name: q.name, ms: dk!.median })
      out.ratio.push(pairedRatio(s3!.times, dk!.times))
    }
    if (extras) {
      // Scatter overhead: a tiny space of 1 partition and one of 64, both one replica.
      await load(a, 64, 1, 1, 'one')
      await load(a, 64, 64, 1, 'many')
      const one = queryOver(client, 'SELECT count(*) FROM one')
      const many = queryOver(client, 'SELECT count(*) FROM many')
      // The same count(*) through a client given every peer: after its first answer it goes to
      // the partition's peer (src/client/routing.ts), which reads it without a hop.
      const urls = [a, b, c].map(p => p.url)
      const routedClient = new ShoalClient(urls)
      const routed = queryOver(routedClient, 'SELECT count(*) FROM one')
      await warm(one)
      await warm(many)
      await warm(routed)
      const oneOwner = ((await client.describeSpace('one')).placement as Array<{ readReplicas: string[] }>)[0]!.readReplicas[0]
      const [o, m] = await timeInterleaved(Math.max(runs, 101), [one, many])
      // Apart from the 64-partition query, which leaves all three peers busy for the query after it.
      const [o2, ro] = await timeInterleaved(Math.max(runs, 101), [one, routed])
      routedClient.close()
      const partitions = 64
      out.scatter = { oneMs: o!.median, manyMs: m!.median, partitions, perPartitionMs: (m!.median - o!.median) / (partitions - 1), unroutedOneMs: o2!.median, routedOneMs: ro!.median, oneAtA: oneOwner === a.peerId }
      for (const q of QUERIES) out.stages.push(await stageBreakdown(a, q.name, q.sql, Math.max(runs, 9)))
      out.stages.push(await stageBreakdown(a, 'count(*), one partition', 'SELECT count(*) FROM one', 31))
      for (const q of QUERIES.slice(0, 2)) out.tail.push(await tailOf(a.url, q.name, q.sql, 300))
      out.tail.push(await tailOf(a.url, 'count(*), one partition', 'SELECT count(*) FROM one', 300))
      out.tail.push(await tailOf(urls, 'count(*), one partition, routed (client given every peer)', 'SELECT count(*) FROM one', 300))
    }
    client.close()
  } finally {
    await three.stopAll()
    con.closeSync()
  }
  return out
}

const f = (ms: number): string => ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)

export function formatLocalQueryBench (r: LocalQueryBench): string {
  const lines = [
    `| query (${r.rows.toLocaleString('en-US')} rows, warm) | Shoal, ${r.shoalThreads} threads (ms) | DuckDB, ${r.duckdbThreads} threads (ms) | Shoal / DuckDB (paired) | Shoal, 1 thread (ms) | DuckDB, 1 thread (ms) | Shoal / DuckDB, 1 thread each (paired) | same answer |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const x of r.results) lines.push(`| ${x.name} | ${f(x.shoalMs)} | ${f(x.duckdbMs)} | ${x.ratio.toFixed(2)}× | ${f(x.shoal1Ms)} | ${f(x.duckdb1Ms)} | ${x.ratio1.toFixed(2)}× | ${x.sameAnswer ? 'yes' : 'NO'} |`)
  return lines.join('\n')
}

export function formatClusterQueryBench (r: ClusterQueryBench): string {
  const single = r.onePeer.length > 0
  const lines = [
    `| query (${r.rows.toLocaleString('en-US')} rows, over HTTP) |${single ? ' 1 peer (ms) |' : ''} 3 peers (ms) | DuckDB in-process (ms) | 3 peers / DuckDB (paired) | same answer |`,
    `| --- |${single ? ' --- |' : ''} --- | --- | --- | --- |`
  ]
  r.threePeers.forEach((x, i) => lines.push(`| ${x.name} |${single ? ` ${f(r.onePeer[i]!.ms)} |` : ''} ${f(x.ms)} | ${f(r.duckdb[i]!.ms)} | ${r.ratio[i]!.toFixed(2)}× | ${r.sameAnswer[i] === true ? 'yes' : 'NO'} |`))
  if (r.scatter !== undefined) {
    lines.push('')
    lines.push(`Scatter overhead on 3 peers: count(*) over 1 partition ${r.scatter.oneMs.toFixed(2)} ms, over ${r.scatter.partitions} partitions ${r.scatter.manyMs.toFixed(2)} ms: **${(r.scatter.perPartitionMs).toFixed(3)} ms per partition** (target < 0.5).`)
    lines.push(`count(*) over the one-partition space through a client of peer a (which ${r.scatter.oneAtA ? 'holds' : 'does not hold'} the partition) ${r.scatter.unroutedOneMs.toFixed(2)} ms; through a client given all three peers, routed to the partition's peer, **${r.scatter.routedOneMs.toFixed(2)} ms** (target < 1.5).`)
  }
  if (r.stages.length > 0) {
    lines.push('', 'Where the time goes, 3 peers (medians, ms; scatter holds the merging and every round trip; the slowest peer\'s round trip against its own work, summed over its partitions, and the time from its request\'s arrival to its last answer ready):', '')
    lines.push('| query | client, POST /query | server tookMs | HTTP (client - tookMs) | parse | plan | scatter | slowest round trip | its work (summed) | its answer ready | merge | finish | GC within |')
    lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    const g = (ms: number): string => ms.toFixed(2)
    for (const x of r.stages) lines.push(`| ${x.name} | ${g(x.clientMs)} | ${g(x.tookMs)} | ${g(x.clientMs - x.tookMs)} | ${g(x.parseMs)} | ${g(x.planMs)} | ${g(x.scatterMs)} | ${g(x.slowestRoundTripMs)} | ${g(x.slowestPeerWorkMs)} | ${g(x.slowestPeerReadyMs)} | ${g(x.mergeMs)} | ${g(x.finishMs)} | ${g(x.gcMs)} |`)
  }
  if (r.tail.length > 0) {
    lines.push('', 'The tail, 3 peers, one query at a time through a keep-alive client (ShoalClient), ms:', '')
    lines.push('| query | runs | p50 | p99 | p99 / p50 | max |')
    lines.push('| --- | --- | --- | --- | --- | --- |')
    for (const x of r.tail) lines.push(`| ${x.name} | ${x.runs} | ${x.p50Ms.toFixed(2)} | ${x.p99Ms.toFixed(2)} | ${(x.p99Ms / x.p50Ms).toFixed(2)}× | ${x.maxMs.toFixed(2)} |`)
  }
  return lines.join('\n')
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const rows = Number(args.find(a => /^\d+$/.test(a)) ?? 10_000_000)
  const ci = args.indexOf('--cluster-rows')
  const clusterRows = ci >= 0 ? Number(args[ci + 1]) : 200_000
  console.log(`## Queries: Shoal vs DuckDB\n\nLocal execution (one peer, every partition its own, no network):\n`)
  if (!args.includes('--no-local')) console.log(formatLocalQueryBench(await benchLocalQueries(rows)))
  if (!args.includes('--no-cluster')) {
    console.log('\nReal peers over HTTP:\n')
    console.log(formatClusterQueryBench(await benchClusterQueries(clusterRows, { single: !args.includes('--no-single'), ...(args.includes('--no-extras') ? { extras: false } : {}) })))
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1) })
}
