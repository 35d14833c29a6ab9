/**
 * Cluster benchmark: batched ingest into a 3-peer cluster at ONE, QUORUM and ALL, over HTTP and
 * over the internal path (the same coordinator's DataService, without HTTP and JSON), and
 * point-read latency over HTTP at ONE and QUORUM.
 *
 *   node --max-semi-space-size=32 dist/scripts/bench/cluster.js [rows] [rounds]
 *
 * Each round runs every (consistency, path) pair once, `rows` rows each, in turn; the figures are
 * the medians over the rounds. The cluster keeps every row written, so later rounds ingest into
 * fuller partitions (memtable flushes to segments included), as a sustained load would.
 *
 * The coordinator runs in this process (so the internal path can be called); the other two peers
 * are real `shoal start` processes on 127.0.0.1. All three share the machine's 2 cores, so the
 * figures are a floor for a real deployment, where each peer has its own machine.
 *
 * For investigating a run: BENCH_LOG=info (or debug) logs the in-process peer at that level;
 * BENCH_KEEP=1 keeps the other peers' directories and logs; SHOAL_NODE_ARGS passes node flags
 * (e.g. --cpu-prof) to them.
 */
import '../../src/polyfill/index.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { pino } from 'pino'
import { resolveConfig } from '../../src/config/index.js'
import { Peer } from '../../src/peer/index.js'
import { freePort, TestCluster, waitFor } from '../../test/cluster/index.js'

export interface ClusterBenchResult {
  rows: number
  rounds: number
  batchRows: number
  concurrency: number
  /**
   * Medians over the rounds (min and max of rows/s beside them). cpuUsPerRow: CPU time of all
   * three peer processes per row (this process includes the HTTP client).
   */
  ingest: Array<{ path: 'http' | 'internal', consistency: string, rowsPerS: number, minRowsPerS: number, maxRowsPerS: number, cpuUsPerRow: number }>
  reads: Array<{ consistency: string, count: number, p50Ms: number, p99Ms: number }>
}

const BATCH_ROWS = 5000
const CONCURRENCY = 4
const SCHEMA = [
  { name: 'n', type: 'int64' }, { name: 'amount', type: 'float64' }, { name: 'name', type: 'utf8' },
  { name: 'ts', type: 'timestamp' }, { name: 'flag', type: 'bool' }
]

function rowsOf (prefix: string, start: number, n: number): Array<Record<string, unknown>> {
  const out = new Array(n)
  for (let i = 0; i < n; i++) {
    const k = start + i
    out[i] = { id: `${prefix}${k}`, n: k, amount: k * 0.25, name: `name-${k % 1000}`, ts: 1_700_000_000_000 + k, flag: (k & 1) === 0 }
  }
  return out
}

/**
 * Sends `total` rows in batches of BATCH_ROWS, CONCURRENCY in flight; rows/s. The batches are
 * built by `prepare` before the clock starts: generating and serializing the load is the client's
 * work, not the database's, and the client shares this machine's cores with the peers.
 */
async function timed<T> (total: number, prepare: (start: number, n: number) => T, send: (batch: T) => Promise<void>, onStart: () => Promise<void>): Promise<number> {
  const batches: T[] = []
  for (let start = 0; start < total; start += BATCH_ROWS) batches.push(prepare(start, Math.min(BATCH_ROWS, total - start)))
  await onStart()
  let next = 0
  const t0 = performance.now()
  const worker = async (): Promise<void> => {
    while (next < batches.length) await send(batches[next++]!)
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  return Math.round(total / ((performance.now() - t0) / 1000))
}

/** GET over a keep-alive connection (node:http: a lighter client than fetch); the status and body. */
async function get (agent: Agent, url: string): Promise<{ status: number, text: string }> {
  return await send(agent, url, 'GET')
}

/** POSTs a JSON body over a keep-alive connection; the status and body. */
async function post (agent: Agent, url: string, body: Buffer): Promise<{ status: number, text: string }> {
  return await send(agent, url, 'POST', body)
}

function send (agent: Agent, url: string, method: string, body?: Buffer): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': body.length }
    const req = request(url, { method, agent, headers }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (body === undefined) req.end()
    else req.end(body)
  })
}

/** CPU time (user + system) of a process so far, µs; this process through process.cpuUsage. */
async function cpuUs (pid: number | undefined): Promise<number> {
  if (pid === undefined) {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 Hz on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

function median (sorted: number[]): number { return sorted[(sorted.length - 1) >> 1]! }

function pct (sorted: number[], q: number): number { return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! }

export async function benchCluster (opts: { rows: number, rounds?: number }): Promise<ClusterBenchResult> {
  const rounds = opts.rounds ?? 3
  const cluster = await TestCluster.create({ membership: {} })
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-'))
  let local: Peer | undefined
  try {
    const b = await cluster.startPeer('b')
    const c = await cluster.startPeer('c', { bootstrap: [b.multiaddr()] })
    const httpPort = await freePort()
    const config = resolveConfig({
      flags: { dataDir: join(dir, 'a'), listen: [`/ip4/127.0.0.1/tcp/${await freePort()}`], http: `127.0.0.1:${httpPort}`, bootstrap: [b.multiaddr()], name: 'a', swarmKey: cluster.swarmKeyFile },
      env: {}
    })
    local = await Peer.create(config, pino({ level: process.env.BENCH_LOG ?? 'warn' }))
    await local.start()
    const url = local.httpUrl
    await waitFor(async () => {
      const members = await (await fetch(`${url}/cluster/members`)).json() as Array<{ state: string }>
      return members.filter(m => m.state === 'alive').length === 3
    }, { timeoutMs: 20_000 })
    const created = await fetch(`${url}/spaces`, { method: 'POST', body: JSON.stringify({ name: 'bench', schema: SCHEMA, partitions: 16, replicas: 3 }), headers: { 'content-type': 'application/json' } })
    if (created.status !== 201) throw new Error(`create space: ${created.status} ${await created.text()}`)
    // Every partition ready on all three peers before the clock starts: a new space's owners that
    // learn of it after another owner announced a partition ready stream it from that owner first
    // (catch-up), and a load started meanwhile would pay for that start-up work too.
    const allReady = async (peerUrl: string): Promise<boolean> => {
      const res = await fetch(`${peerUrl}/spaces/bench`)
      if (res.status !== 200) return false
      const view = await res.json() as { placement: Array<{ readReplicas: string[] }> }
      return view.placement.every(p => p.readReplicas.length === 3)
    }
    await waitFor(async () => await allReady(url) && await allReady(b.url) && await allReady(c.url), { timeoutMs: 30_000 })

    // A ONE (or QUORUM) run is acknowledged before every replica has applied it: the rest is still
    // in flight when the timer stops. Drain it before the next run, or that run pays for it. A
    // write at ALL to every partition queues behind everything sent before it (one RPC stream per
    // peer pair, applied in order).
    const settle = async (): Promise<void> => {
      await local!.data.writeRecords('bench', rowsOf('settle', 0, 256), { consistency: 'all' })
    }
    const result: ClusterBenchResult = { rows: opts.rows, rounds, batchRows: BATCH_ROWS, concurrency: CONCURRENCY, ingest: [], reads: [] }
    const pids = [undefined, b.proc?.pid, c.proc?.pid]
    const cpuNow = async (): Promise<number> => (await Promise.all(pids.map(cpuUs))).reduce((x, y) => x + y, 0)
    const samples = new Map<string, Array<{ rowsPerS: number, cpuUsPerRow: number }>>()
    const data = local.data
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
    for (let round = 0; round < rounds; round++) {
      for (const consistency of ['one', 'quorum', 'all'] as const) {
        for (const path of ['http', 'internal'] as const) {
          const prefix = `${path[0]!}${consistency}${round}-`
          let cpu0 = 0
          const start = async (): Promise<void> => { cpu0 = await cpuNow() }
          const rowsPerS = path === 'http'
            ? await timed(opts.rows, (start, n) => Buffer.from(JSON.stringify(rowsOf(prefix, start, n))), async body => {
              const res = await post(agent, `${url}/spaces/bench/records?consistency=${consistency}`, body)
              if (res.status !== 200) throw new Error(`ingest: ${res.status} ${res.text.slice(0, 300)}`)
            }, start)
            : await timed(opts.rows, (start, n) => rowsOf(prefix, start, n), async rows => { await data.writeRecords('bench', rows, { consistency }) }, start)
          await settle()
          const key = `${path} ${consistency}`
          samples.set(key, [...(samples.get(key) ?? []), { rowsPerS, cpuUsPerRow: Math.round(((await cpuNow()) - cpu0) / opts.rows) }])
        }
      }
    }
    for (const [key, runs] of samples) {
      const [path, consistency] = key.split(' ') as ['http' | 'internal', string]
      const rates = runs.map(r => r.rowsPerS).sort((x, y) => x - y)
      const cpus = runs.map(r => r.cpuUsPerRow).sort((x, y) => x - y)
      result.ingest.push({ path, consistency, rowsPerS: median(rates), minRowsPerS: rates[0]!, maxRowsPerS: rates[rates.length - 1]!, cpuUsPerRow: median(cpus) })
    }

    // Reads on a quiet cluster: the flushes the ingest set off (every partition's memtable fills
    // at about the same time under a uniform load) finish first.
    await new Promise(resolve => setTimeout(resolve, 3000))
    for (const consistency of ['one', 'quorum'] as const) {
      const samples: number[] = []
      for (let i = 0; i < 2000; i++) {
        const id = `hquorum0-${(i * 7919) % opts.rows}`
        const t0 = performance.now()
        const res = await get(agent, `${url}/spaces/bench/records/${id}?consistency=${consistency}`)
        if (i >= 200) samples.push(performance.now() - t0)
        if (res.status !== 200) throw new Error(`read ${id}: ${res.status}`)
      }
      samples.sort((x, y) => x - y)
      result.reads.push({ consistency, count: samples.length, p50Ms: pct(samples, 0.5), p99Ms: pct(samples, 0.99) })
    }
    return result
  } finally {
    await local?.stop({ leave: false })
    await cluster.stopAll({ keepDir: process.env.BENCH_KEEP === '1' })
    await rm(dir, { recursive: true, force: true })
  }
}

export function formatClusterBench (r: ClusterBenchResult): string {
  const lines = [
    `Ingest of ${r.rows.toLocaleString('en-US')} rows per run (6 columns), batches of ${r.batchRows.toLocaleString('en-US')}, ${r.concurrency} in flight, 16 partitions, 3 replicas; ` +
      `${r.rounds} rounds of every run in turn, medians (min-max), the cluster growing to ${(r.rows * 6 * r.rounds).toLocaleString('en-US')} rows:`,
    '',
    '| consistency | over HTTP (rows/s) | internal path (rows/s) | CPU per row, 3 peers (HTTP / internal) |',
    '| --- | --- | --- | --- |'
  ]
  const fmt = (x: ClusterBenchResult['ingest'][number]): string =>
    `${x.rowsPerS.toLocaleString('en-US')} (${x.minRowsPerS.toLocaleString('en-US')}-${x.maxRowsPerS.toLocaleString('en-US')})`
  for (const level of ['one', 'quorum', 'all']) {
    const h = r.ingest.find(x => x.path === 'http' && x.consistency === level)!
    const i = r.ingest.find(x => x.path === 'internal' && x.consistency === level)!
    lines.push(`| ${level.toUpperCase()} | ${fmt(h)} | ${fmt(i)} | ${h.cpuUsPerRow} µs / ${i.cpuUsPerRow} µs |`)
  }
  lines.push('', 'Point reads over HTTP (GET /spaces/bench/records/:id, keep-alive, sequential):', '', '| consistency | p50 | p99 |', '| --- | --- | --- |')
  for (const x of r.reads) lines.push(`| ${x.consistency.toUpperCase()} | ${x.p50Ms.toFixed(2)} ms | ${x.p99Ms.toFixed(2)} ms |`)
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchCluster({ rows: Number(process.argv[2] ?? 100_000), rounds: Number(process.argv[3] ?? 3) }).then(r => {
    console.log(formatClusterBench(r))
    process.exit(0)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
