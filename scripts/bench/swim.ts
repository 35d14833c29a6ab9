/**
 * SWIM benchmark in the simulator: per cluster size, how long until every live peer declares a
 * crashed peer dead, how many protocol periods a change takes to reach 99.9 % of the peers, the
 * steady-state message rate per peer, and the wall time of the simulation.
 *
 *   node dist/scripts/bench/swim.js [size ...]        default sizes: 100 1000 10000
 *
 * Memory, not time, bounds the size: a full-mesh view is N member records per peer, N² in one
 * process (10,000 peers = 10^8 records, ~10 GB). Sizes above maxFeasiblePeers are reported as
 * skipped with that reason instead of exhausting the heap.
 */
import '../../src/polyfill/index.js'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { SimWorld } from '../../test/sim/index.js'
import { formCluster } from '../../test/sim/membership-cluster.js'

export interface SwimBenchSize {
  peers: number
  skipped?: string
  /** Virtual ms to form the cluster (join + push-pull), and the wall ms it took. */
  formation?: { simMs: number, wallMs: number }
  /** Seconds (simulated) from the crash until each live peer declared the crashed peer dead. */
  timeToDeadS?: { p50: number, p99: number, max: number }
  /** Protocol periods from the first 'dead' declaration until 99.9 % of live peers had it. */
  disseminationPeriods?: number
  /** Messages sent per peer per simulated second, with no change under way. */
  messagesPerPeerPerS?: number
  /** Wall time of the whole simulation of this size. */
  wallS?: number
  simEvents?: number
}

export interface SwimBenchOptions {
  sizes: number[]
  seed?: number
  /** Above this many peers the run is skipped (memory: N² member records). Default 3000. */
  maxFeasiblePeers?: number
  /** Simulated seconds of quiet traffic measured for messages per peer per second. Default 30. */
  steadyS?: number
}

function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export async function benchSwim (opts: SwimBenchOptions): Promise<SwimBenchSize[]> {
  const out: SwimBenchSize[] = []
  const maxFeasible = opts.maxFeasiblePeers ?? 3000
  for (const n of opts.sizes) {
    if (n > maxFeasible) {
      out.push({ peers: n, skipped: `over maxFeasiblePeers=${maxFeasible}: ${n} full views are ${(n * n / 1e6).toFixed(0)}M member records in one process` })
      continue
    }
    const wall0 = performance.now()
    const world = new SimWorld({ seed: opts.seed ?? 1, serialize: n <= 100 })
    const { cluster, formedInMs } = await formCluster(world, n)
    const formation = { simMs: formedInMs, wallMs: Math.round(performance.now() - wall0) }
    const periodMs = cluster.get('p0').swim.opts.probeIntervalMs
    // Let the formation's gossip drain, then measure quiet traffic.
    await world.run(30_000)
    const steadyMs = (opts.steadyS ?? 30) * 1000
    const sent0 = world.stats.sent
    await world.run(steadyMs)
    const messagesPerPeerPerS = (world.stats.sent - sent0) / n / (steadyMs / 1000)

    const victim = `p${Math.floor(n / 2)}`
    const deadAt = new Map<string, number>()
    for (const m of cluster.up()) {
      if (m.id === victim) continue
      m.swim.onChange(ev => { if (ev.type === 'dead' && ev.member.id === victim && !deadAt.has(m.id)) deadAt.set(m.id, world.now()) })
    }
    const crashAt = world.now()
    cluster.crash(victim)
    const live = n - 1
    await world.runUntil(() => deadAt.size === live, { maxMs: 300_000, checkEveryMs: 100 })
    const times = [...deadAt.values()].sort((a, b) => a - b)
    const rel = times.map(t => (t - crashAt) / 1000)
    const reach = times[Math.ceil(0.999 * live) - 1]
    out.push({
      peers: n,
      formation,
      timeToDeadS: { p50: pct(rel, 50), p99: pct(rel, 99), max: rel.at(-1)! },
      disseminationPeriods: reach === undefined ? NaN : (reach - times[0]!) / periodMs,
      messagesPerPeerPerS,
      wallS: (performance.now() - wall0) / 1000,
      simEvents: world.stats.events
    })
  }
  return out
}

export function formatSwimBench (rows: SwimBenchSize[]): string {
  const lines = ['peers  time-to-dead p50/p99/max (s)  dissemination (periods)  msgs/peer/s  wall (s)']
  for (const r of rows) {
    if (r.skipped !== undefined) { lines.push(`${String(r.peers).padEnd(6)} skipped: ${r.skipped}`); continue }
    const t = r.timeToDeadS!
    lines.push(`${String(r.peers).padEnd(6)} ${`${t.p50.toFixed(2)} / ${t.p99.toFixed(2)} / ${t.max.toFixed(2)}`.padEnd(30)} ${r.disseminationPeriods!.toFixed(2).padEnd(24)} ${r.messagesPerPeerPerS!.toFixed(2).padEnd(12)} ${r.wallS!.toFixed(1)}`)
  }
  return lines.join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sizes = process.argv.slice(2).map(Number).filter(x => x > 0)
  benchSwim({ sizes: sizes.length > 0 ? sizes : [100, 1000, 10_000] }).then(rows => {
    console.log(formatSwimBench(rows))
    process.exit(0)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
