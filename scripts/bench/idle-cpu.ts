/**
 * Idle cost of a peer: N real `shoal start` processes on 127.0.0.1 (default 10) with the default
 * membership timings and log level, as a user runs them; once every peer sees every other alive
 * and a space of 16 partitions (3 replicas) with 5,000 rows is ready on all its owners,
 * nothing is asked of the cluster for `seconds` (default 60) and each peer's CPU time (the run
 * time of its threads, /proc/<pid>/task/<tid>/schedstat) is read at the start and the end.
 * Prints the median and max of each peer's share of one core over that window, the wake-ups of
 * its main thread, its resident set, and what one peer's counters (GET /metrics) moved by.
 *
 *   node dist/scripts/bench/idle-cpu.js [peers] [seconds]
 *
 * SHOAL_NODE_ARGS passes node flags to the peers (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"):
 * then the peers are stopped with SIGTERM, so that they exit cleanly and write their profiles.
 * IDLE_SETTLE_S (default 60) is how long the cluster is left alone before the window opens;
 * IDLE_NO_DATA=1 skips the space (an empty cluster); IDLE_KEEP=1 keeps the peers' directories and
 * logs (the path is printed).
 */
import '../../src/polyfill/index.js'
import { readdir, readFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { TestCluster, waitFor, type PeerProcess } from '../../test/cluster/index.js'

export interface IdleCpuBench {
  peers: number
  seconds: number
  settleS: number
  rows: number
  replicas: number
  /** Each peer's share of one core over the idle window, percent. */
  cpuPct: { median: number, max: number, all: number[] }
  rssMiB: { median: number, max: number }
  /** The main thread's wake-ups per second, median over the peers. */
  wakeupsPerS: number
  /** What one peer (p2) counted during the window: each counter that moved, per second. */
  countersPerS: Record<string, number>
}

/** The counters (`*_total`) of a Prometheus text exposition, by series. */
async function counters (p: PeerProcess): Promise<Map<string, number>> {
  const res = await fetch(`${p.url}/metrics`, { signal: AbortSignal.timeout(30_000) })
  const out = new Map<string, number>()
  for (const line of (await res.text()).split('\n')) {
    if (line.startsWith('#')) continue
    const m = /^([a-z_:]+_total(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (m !== null) out.set(m[1]!, Number(m[2]))
  }
  return out
}

const CLOCK_TICK_S = 0.01 // USER_HZ: 100 on Linux

/**
 * CPU time of a process so far, seconds: the sum over its threads of the scheduler's run time
 * (/proc/<pid>/task/<tid>/schedstat, in ns), which is exact, where utime + stime in /proc/<pid>/stat
 * are counted in 10 ms clock ticks charged to whoever runs when the tick fires (an idle peer runs
 * in bursts of a fraction of a millisecond, so its ticks are a sample). Falls back to utime +
 * stime where schedstat is not there.
 */
async function cpuSeconds (pid: number): Promise<number> {
  try {
    let ns = 0
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const line = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0')
      ns += Number(line.split(' ')[0])
    }
    if (Number.isFinite(ns) && ns > 0) return ns / 1e9
  } catch {
    // no schedstat (a kernel without CONFIG_SCHEDSTATS): the clock ticks below
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_S
}

/**
 * Times the process's main thread went to sleep and was woken (voluntary context switches): one
 * per turn of an idle event loop, so a count of its timer and socket wake-ups.
 */
async function wakeups (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

async function rssMiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024
}

function median (sorted: number[]): number {
  const m = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2
}

/**
 * POSTs JSON with a generous deadline (PeerProcess.post allows 5 s, which a peer of a loaded
 * 2-core machine can miss while the cluster forms).
 */
async function post (p: PeerProcess, path: string, body: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(p.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(60_000) })
  return { status: res.status, body: await res.json() }
}

const PARTITIONS = 16
const SCHEMA = [{ name: 'n', type: 'int64' }, { name: 'name', type: 'utf8' }, { name: 'amount', type: 'float64' }]

export async function benchIdleCpu (n = 10, seconds = 60, log: (line: string) => void = () => {}, settleS = 60): Promise<IdleCpuBench> {
  // Default membership timings (probe interval 1 s), not the tests' fast ones.
  const cluster = await TestCluster.create({ membership: {}, dirPrefix: 'shoal-bench-idle-' })
  // Stop on a signal too (Ctrl-C, kill): the peers and the directory go with this process.
  const onSignal = (signal: NodeJS.Signals): void => { void cluster.stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // The log level users run (info; the test cluster's default is debug), no fault injection.
    const extraArgs = ['--log-level', 'info']
    const first = await cluster.startPeer('p1', { extraArgs, faultInjection: false })
    const peers: PeerProcess[] = [first]
    for (let i = 2; i <= n; i++) {
      peers.push(await cluster.startPeer(`p${i}`, { bootstrap: [first.multiaddr()], extraArgs, faultInjection: false }))
    }
    await waitFor(async () => {
      const views = await Promise.all(peers.map(async p => await p.members()))
      return views.every(v => v.length === n && v.every(m => m.state === 'alive'))
    }, { timeoutMs: 120_000, intervalMs: 250 })
    log(`${n} peers joined`)

    let rows = 0
    const replicas = Math.min(3, n)
    if (process.env.IDLE_NO_DATA !== '1') {
      const created = await post(first, '/spaces', { name: 'idle', schema: SCHEMA, partitions: PARTITIONS, replicas })
      if (created.status !== 201) throw new Error(`create space: ${created.status} ${JSON.stringify(created.body)}`)
      const ready = async (p: PeerProcess): Promise<boolean> => {
        const view = await p.get('/spaces/idle') as { placement?: Array<{ readReplicas: string[] }> }
        return view.placement !== undefined && view.placement.every(x => x.readReplicas.length === replicas)
      }
      await waitFor(async () => (await Promise.all(peers.map(ready))).every(Boolean), { timeoutMs: 60_000, intervalMs: 250 })
      for (let b = 0; b < 5; b++) {
        const batch = Array.from({ length: 1000 }, (_, i) => ({ id: `r${b * 1000 + i}`, n: b * 1000 + i, name: `name-${i % 100}`, amount: i * 0.5 }))
        const res = await post(peers[b % n]!, '/spaces/idle/records?consistency=quorum', batch)
        if (res.status !== 200) throw new Error(`write: ${res.status} ${JSON.stringify(res.body)}`)
        rows += batch.length
      }
      log(`space idle: ${PARTITIONS} partitions, ${replicas} replicas, ${rows} rows`)
    }
    // Let what the set-up started settle before the window opens: replication to the third
    // replica, flushes, gossip of the catalog, and V8's memory reducer, which runs a few full
    // collections once a process's allocation rate drops (about a minute after a peer starts:
    // some 0.2 s of CPU, which inside a 60 s window would read as 0.3 % of a core).
    await new Promise(resolve => setTimeout(resolve, settleS * 1000))

    const pids = peers.map(p => p.pid!)
    const watched = peers[Math.min(1, n - 1)]!
    const counted0 = await counters(watched)
    const t0 = performance.now()
    // The window on the monotonic clock V8's profiles stamp their samples with (µs), to cut a
    // --cpu-prof profile down to it (start-up and the drain at SIGTERM are in the profile too).
    const monoUs = (): string => (process.hrtime.bigint() / 1000n).toString()
    const windowStart = monoUs()
    const before = await Promise.all(pids.map(cpuSeconds))
    const woken0 = await Promise.all(pids.map(wakeups))
    await new Promise(resolve => setTimeout(resolve, seconds * 1000))
    const after = await Promise.all(pids.map(cpuSeconds))
    const woken1 = await Promise.all(pids.map(wakeups))
    const wall = (performance.now() - t0) / 1000
    log(`idle window (monotonic µs): ${windowStart} ${monoUs()}`)
    const counted1 = await counters(watched)
    const countersPerS: Record<string, number> = {}
    for (const [k, v] of counted1) {
      const d = v - (counted0.get(k) ?? 0)
      if (d > 0) countersPerS[k] = Math.round(d / wall * 100) / 100
    }
    const rss = (await Promise.all(pids.map(rssMiB))).sort((a, b) => a - b)
    const pct = pids.map((_, i) => (after[i]! - before[i]!) / wall * 100)
    const sorted = [...pct].sort((a, b) => a - b)
    for (const p of peers) if (!p.running) throw new Error(`peer ${p.name} exited during the window`)
    return {
      peers: n,
      seconds,
      settleS,
      rows,
      replicas,
      cpuPct: { median: median(sorted), max: sorted[sorted.length - 1]!, all: pct },
      rssMiB: { median: median(rss), max: rss[rss.length - 1]! },
      wakeupsPerS: median(pids.map((_, i) => (woken1[i]! - woken0[i]!) / wall).sort((a, b) => a - b)),
      countersPerS
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    // SIGTERM (drain, leave) when profiling so the profiles are written; SIGKILL otherwise.
    const keepDir = process.env.IDLE_KEEP === '1'
    await cluster.stopAll({ keepDir })
    if (keepDir) log(`kept ${cluster.dir}`)
  }
}

export function formatIdleCpu (r: IdleCpuBench): string {
  return [
    `${r.peers} idle peers (${r.rows} rows in a space of ${PARTITIONS} partitions x ${r.replicas} replicas), a ${r.seconds} s window ${r.settleS} s after the set-up:`,
    `  CPU per peer: median ${r.cpuPct.median.toFixed(2)} %, max ${r.cpuPct.max.toFixed(2)} % of a core`,
    `  each: ${r.cpuPct.all.map(x => x.toFixed(2)).join(' ')}`,
    `  RSS per peer: median ${r.rssMiB.median.toFixed(0)} MiB, max ${r.rssMiB.max.toFixed(0)} MiB`,
    `  wake-ups of a peer's main thread: median ${r.wakeupsPerS.toFixed(0)} a second`,
    '  counters of one peer in the window, per second:',
    ...Object.entries(r.countersPerS).sort((a, b) => b[1] - a[1]).map(([k, v]) => `    ${v.toFixed(2).padStart(8)}  ${k}`)
  ].join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchIdleCpu(Number(process.argv[2] ?? 10), Number(process.argv[3] ?? 60), line => { console.error(line) }, Number(process.env.IDLE_SETTLE_S ?? 60)).then(r => {
    console.log(formatIdleCpu(r))
    process.exit(0)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
