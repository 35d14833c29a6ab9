/**
 * Memory and restart benchmark (issue 12): one real peer, loaded over HTTP with `rows` rows of
 * (utf8 id, int64, float64, utf8), its resident memory sampled through the load and a GROUP BY,
 * then kill -9 and a restart timed from spawn to the first complete answer of a count(*).
 *
 *   npm run build && node dist/scripts/bench/restart.js [rows] [cacheMiB] [memtableBudgetMiB] [heapMiB]
 *
 * Defaults: 3,000,000 rows, the peer's default cache (a memtableBudgetMiB of `-` keeps its default). The peer runs with `storage.cacheMiB` when
 * given, with `--heap-mib` when heapMiB is (and query.memoryBudgetMb lowered to what that heap
 * holds beside the memtables: heapMiB - 128 - 2 x the memtable budget, at least 64). Resident
 * memory is the peer process's VmRSS (from /proc), its peak over the phase.
 * Environment: SHOAL_BENCH_MEMTABLE_ROWS sets the peer's `storage.memtableMaxRows`;
 * SHOAL_BENCH_LOG=<file> saves the restarted peer's log lines there (where the time went);
 * SHOAL_BENCH_MEM=1 prints, every 2 s, where the peer's memory is (heap used and total, external,
 * block cache, memtables) from its /metrics.
 */
import '../../src/polyfill/index.js'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { TestCluster, waitFor, type PeerProcess } from '../../test/cluster/index.js'

export interface RestartBenchResult {
  rows: number
  cacheMiB: number | undefined
  heapMiB: number | undefined
  loadRowsPerS: number
  /** Peak resident MiB of the peer during the load, after a GROUP BY, and after the restart's first answer. */
  rssLoadMiB: number
  rssQueryMiB: number
  rssRestartMiB: number
  groupByMs: number
  /** From spawning the restarted peer to its first complete count(*) (coverage complete, every row). */
  restartToAnswerMs: number
  /** Of which: opening the partitions (summed over them, from the peer's 'partition recovered' log lines), and the WAL records they replayed. */
  recoveryMs: number
  walRecordsReplayed: number
  diskMiB: number
}

const BATCH_ROWS = 5000
const CONCURRENCY = 4
const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY + 2 })

async function rssMiB (pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status)
  return m === null ? 0 : Number(m[1]) / 1024
}

/** Samples the peer's RSS every 200 ms until stopped; answers the peak. */
function sampler (peer: PeerProcess): { stop: () => Promise<number> } {
  let peak = 0
  let running = true
  let n = 0
  const loop = (async () => {
    while (running) {
      const rss = await rssMiB(peer.pid)
      peak = Math.max(peak, rss)
      if (process.env.SHOAL_BENCH_MEM === '1' && n++ % 10 === 0) await printMemory(peer, rss)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  })()
  return { stop: async () => { running = false; await loop; return Math.max(peak, await rssMiB(peer.pid)) } }
}

/** The memory metrics the peer exports, in MiB, on one line (SHOAL_BENCH_MEM). */
async function printMemory (peer: PeerProcess, rss: number): Promise<void> {
  const text = await new Promise<string>(resolve => {
    request({ host: '127.0.0.1', port: peer.httpPort, path: '/metrics', agent }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve(Buffer.concat(chunks).toString('utf8')) })
      res.on('error', () => { resolve('') })
    }).on('error', () => { resolve('') }).end()
  })
  const sum = (re: RegExp): number => {
    let t = 0
    for (const m of text.matchAll(re)) t += Number(m[1])
    return t / 1048576
  }
  const status = await readFile(`/proc/${peer.pid ?? 0}/status`, 'utf8').catch(() => '')
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) / 1024
  const fields = {
    rss,
    anon: kb('RssAnon'),
    file: kb('RssFile'),
    shmem: kb('RssShmem'),
    heapUsed: sum(/^shoal_nodejs_heap_size_used_bytes (\S+)$/gm),
    heapTotal: sum(/^shoal_nodejs_heap_size_total_bytes (\S+)$/gm),
    external: sum(/^shoal_nodejs_external_memory_bytes (\S+)$/gm),
    cache: sum(/^shoal_storage_cache_bytes\{[^}]*\} (\S+)$/gm),
    memtables: sum(/^shoal_storage_memtable_bytes(?:\{[^}]*\})? (\S+)$/gm)
  }
  console.log(Object.entries(fields).map(([k, v]) => `${k} ${v.toFixed(0)}`).join('  '))
}

async function post (peer: PeerProcess, path: string, body: string): Promise<{ status: number, text: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: peer.httpPort, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function batchOf (start: number, n: number): string {
  const rows = new Array<string>(n)
  for (let i = 0; i < n; i++) {
    const k = start + i
    rows[i] = `{"id":"r${k}","n":${k},"x":${k * 0.5},"s":"name-${k % 1000}"}`
  }
  return `[${rows.join(',')}]`
}

async function count (peer: PeerProcess): Promise<{ n: number, complete: boolean }> {
  const res = await post(peer, '/query', JSON.stringify({ sql: 'SELECT count(*) AS n FROM bench', timeoutMs: 60_000 }))
  if (res.status !== 200) return { n: -1, complete: false }
  const body = JSON.parse(res.text) as { rows: Array<{ n: number }>, confidence: number }
  return { n: body.rows[0]?.n ?? 0, complete: body.confidence === 1 }
}

/** MiB of the files under `dir` (what a store's data takes on disk). */
export async function dirMiB (dir: string): Promise<number> {
  const { readdir, stat } = await import('node:fs/promises')
  let total = 0
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = `${d}/${e.name}`
      if (e.isDirectory()) await walk(p)
      else total += (await stat(p)).size
    }
  }
  await walk(dir)
  return total / 1048576
}

export async function benchRestart (opts: { rows: number, cacheMiB?: number, memtableBudgetMiB?: number, heapMiB?: number }): Promise<RestartBenchResult> {
  const storage: Record<string, number> = {}
  if (opts.cacheMiB !== undefined) storage.cacheMiB = opts.cacheMiB
  if (opts.memtableBudgetMiB !== undefined) storage.memtableBudgetBytes = opts.memtableBudgetMiB * 1048576
  if (process.env.SHOAL_BENCH_MEMTABLE_ROWS !== undefined) storage.memtableMaxRows = Number(process.env.SHOAL_BENCH_MEMTABLE_ROWS)
  const query: Record<string, number> = {}
  if (opts.heapMiB !== undefined) query.memoryBudgetMb = Math.max(64, opts.heapMiB - 128 - 2 * (opts.memtableBudgetMiB ?? 64))
  const cluster = await TestCluster.create({ config: { storage, query } })
  try {
    const peer = await cluster.startPeer('a', { faultInjection: false, ...(opts.heapMiB !== undefined ? { extraArgs: ['--heap-mib', String(opts.heapMiB)] } : {}) })
    const created = await post(peer, '/spaces', JSON.stringify({ name: 'bench', schema: [{ name: 'n', type: 'int64' }, { name: 'x', type: 'float64' }, { name: 's', type: 'utf8' }], replicas: 1 }))
    if (created.status !== 201) throw new Error(`create: ${created.status} ${created.text}`)

    const load = sampler(peer)
    const t0 = performance.now()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < opts.rows) {
        const start = next
        const n = Math.min(BATCH_ROWS, opts.rows - start)
        next += n
        const res = await post(peer, '/spaces/bench/records?consistency=one', batchOf(start, n))
        if (res.status !== 200) throw new Error(`write at row ${start}: ${res.status} ${res.text.slice(0, 300)}`)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const loadMs = performance.now() - t0
    const rssLoadMiB = await load.stop()

    const query = sampler(peer)
    const q0 = performance.now()
    const grouped = await post(peer, '/query', JSON.stringify({ sql: 'SELECT s, count(*) AS c, sum(x) AS t FROM bench GROUP BY s', timeoutMs: 120_000 }))
    const groupByMs = performance.now() - q0
    if (grouped.status !== 200) throw new Error(`group by: ${grouped.status} ${grouped.text.slice(0, 300)}`)
    const rssQueryMiB = await query.stop()
    const diskMiB = await dirMiB(peer.dataDir)

    await peer.kill()
    const r0 = performance.now()
    await cluster.restart('a')
    await waitFor(async () => {
      const c = await count(peer).catch(() => ({ n: -1, complete: false }))
      return c.complete && c.n === opts.rows
    }, { timeoutMs: 600_000, intervalMs: 50 })
    const restartToAnswerMs = performance.now() - r0
    const rssRestartMiB = await rssMiB(peer.pid)
    // The restarted process's lines: those after the last 'open-file budget' (logged once at start).
    const lines = (await peer.logs()).split('\n')
    let from = 0
    lines.forEach((l, i) => { if (l.includes('open-file budget')) from = i })
    let recoveryMs = 0
    let walRecordsReplayed = 0
    if (process.env.SHOAL_BENCH_LOG !== undefined) {
      const { writeFile } = await import('node:fs/promises')
      await writeFile(process.env.SHOAL_BENCH_LOG, lines.slice(from).join('\n'))
    }
    // What ran: the bundle (npm run build) or the modules one by one (a tsc alone), a second apart at every start.
    const started = lines.slice(from).find(l => l.includes('"msg":"peer started"'))
    if (started !== undefined) console.log(`peer program: ${(JSON.parse(started) as { program?: string }).program ?? 'unknown'}`)
    for (const l of lines.slice(from)) {
      if (!l.includes('partition recovered')) continue
      const o = JSON.parse(l) as { ms?: number, walRecords?: number }
      recoveryMs += o.ms ?? 0
      walRecordsReplayed += o.walRecords ?? 0
    }
    return { rows: opts.rows, cacheMiB: opts.cacheMiB, heapMiB: opts.heapMiB, loadRowsPerS: opts.rows / (loadMs / 1000), rssLoadMiB, rssQueryMiB, rssRestartMiB, groupByMs, restartToAnswerMs, recoveryMs, walRecordsReplayed, diskMiB }
  } finally {
    await cluster.stopAll()
    agent.destroy()
  }
}

export function formatRestartBench (r: RestartBenchResult): string {
  return [
    `| rows | cacheMiB | heapMiB | load rows/s | peak RSS load (MiB) | RSS after GROUP BY (MiB) | GROUP BY (ms) | on disk (MiB) | restart → complete answer (s) | of which partition opens (s, WAL records replayed) | RSS after restart (MiB) |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    `| ${r.rows.toLocaleString('en-US')} | ${r.cacheMiB ?? 'default'} | ${r.heapMiB ?? 'default'} | ${Math.round(r.loadRowsPerS).toLocaleString('en-US')} | ${r.rssLoadMiB.toFixed(0)} | ${r.rssQueryMiB.toFixed(0)} | ${r.groupByMs.toFixed(0)} | ${r.diskMiB.toFixed(0)} | ${(r.restartToAnswerMs / 1000).toFixed(1)} | ${(r.recoveryMs / 1000).toFixed(1)} (${r.walRecordsReplayed.toLocaleString('en-US')}) | ${r.rssRestartMiB.toFixed(0)} |`
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = Number(process.argv[2] ?? 3_000_000)
  const cacheMiB = process.argv[3] !== undefined ? Number(process.argv[3]) : undefined
  const memtableBudgetMiB = process.argv[4] !== undefined && process.argv[4] !== '-' ? Number(process.argv[4]) : undefined
  const heapMiB = process.argv[5] !== undefined ? Number(process.argv[5]) : undefined
  const r = await benchRestart({ rows, ...(cacheMiB !== undefined ? { cacheMiB } : {}), ...(memtableBudgetMiB !== undefined ? { memtableBudgetMiB } : {}), ...(heapMiB !== undefined ? { heapMiB } : {}) })
  console.log(formatRestartBench(r))
  process.exit(0)
}
