/**
 * SWIM benchmark in the simulator: per cluster size, how long until every live peer declares a
 * crashed peer dead, how many protocol periods a change takes to reach 99.9 % of the peers, the
 * steady-state message and byte rates per peer, and the wall time of the simulation. Bytes are the
 * msgpack-encoded message bodies as the real transport encodes them (SimWorld's countBytes), not
 * the frames, Noise and Yamux around them. Peers are shaped as real ones (REAL_SHAPE: libp2p-long
 * ids, a peer's meta); the simulator's addresses are a little shorter than real multiaddrs.
 *
 *   node dist/scripts/bench/swim.js [size ...]        default sizes: 100 1000 10000
 *
 * Memory bounds the size: a full-mesh view is N members per peer, N² in one process (10,000 peers
 * = 10^8, about 11 GB with the records shared between views: run it with
 * --max-old-space-size=16384, as `npm run bench` does). Sizes above maxFeasiblePeers are reported
 * as skipped with that reason instead of exhausting the heap.
 */
import '../../src/polyfill/index.js'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { pushPullScaleMs } from '../../src/membership/index.js'
import { SimWorld } from '../../test/sim/index.js'
import { REAL_SHAPE, formCluster } from '../../test/sim/membership-cluster.js'

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
  /** Encoded body bytes sent per peer per simulated second, over the same quiet period. */
  bytesPerPeerPerS?: number
  /** Simulated seconds of that quiet period. */
  steadyS?: number
  /** Wall time of the whole simulation of this size. */
  wallS?: number
  simEvents?: number
}

export interface SwimBenchOptions {
  sizes: number[]
  seed?: number
  /**
   * Above this many peers the run is skipped (memory: N² member records, about 110 bytes each
   * with the shared records of membership/member.ts: 10,000 peers take about 11 GB of heap).
   * Default 10,000.
   */
  maxFeasiblePeers?: number
  /**
   * Simulated seconds of quiet traffic measured for messages and bytes per peer per second.
   * Default: one anti-entropy (push-pull) period at that size, at least 30 s. The cluster forms at
   * once, so every peer's push-pulls fall in the same stretch of each period (the first ones within
   * the first 30 s): a shorter window catches all of them, some or none depending on where it
   * falls (30 s right after the drain caught none), and they are most of the bytes. A whole period
   * holds exactly one push-pull started by each peer.
   */
  steadyS?: number
}

function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export async function benchSwim (opts: SwimBenchOptions): Promise<SwimBenchSize[]> {
  const out: SwimBenchSize[] = []
  const maxFeasible = opts.maxFeasiblePeers ?? 10_000
  for (const n of opts.sizes) {
    if (n > maxFeasible) {
      out.push({ peers: n, skipped: `over maxFeasiblePeers=${maxFeasible}: ${n} full views are ${(n * n / 1e6).toFixed(0)}M member records in one process` })
      continue
    }
    const wall0 = performance.now()
    const world = new SimWorld({ seed: opts.seed ?? 1, serialize: n <= 100, countBytes: true })
    const { cluster, formedInMs, ids } = await formCluster(world, n, {}, undefined, undefined, REAL_SHAPE)
    const formation = { simMs: formedInMs, wallMs: Math.round(performance.now() - wall0) }
    // Progress on stderr (a 10,000-peer run takes about half an hour); the table goes to stdout.
    const progress = (what: string): void => {
      process.stderr.write(`[swim ${n}] ${what} at ${((performance.now() - wall0) / 1000).toFixed(0)} s, heap ${(process.memoryUsage().heapUsed / 2 ** 30).toFixed(1)} GiB\n`)
    }
    progress('formed')
    const swimOpts = cluster.get(ids[0]!).swim.opts
    const periodMs = swimOpts.probeIntervalMs
    // Let the formation's gossip drain, then measure quiet traffic.
    await world.run(30_000)
    const steadyMs = opts.steadyS !== undefined ? opts.steadyS * 1000 : Math.max(30_000, pushPullScaleMs(swimOpts.pushPullIntervalMs, n))
    const sent0 = world.stats.sent
    const bytes0 = world.stats.bytesSent
    progress(`drained; measuring ${steadyMs / 1000} simulated s of quiet traffic`)
    await world.run(steadyMs)
    progress('measured; crashing one peer')
    const messagesPerPeerPerS = (world.stats.sent - sent0) / n / (steadyMs / 1000)
    const bytesPerPeerPerS = (world.stats.bytesSent - bytes0) / n / (steadyMs / 1000)

    const victim = ids[Math.floor(n / 2)]!
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
      bytesPerPeerPerS,
      steadyS: steadyMs / 1000,
      wallS: (performance.now() - wall0) / 1000,
      simEvents: world.stats.events
    })
    progress(`done: ${formatSwimBench([out.at(-1)!]).split('\n')[1]!}`)
  }
  return out
}

export function formatSwimBench (rows: SwimBenchSize[]): string {
  const lines = ['peers  time-to-dead p50/p99/max (s)  dissemination (periods)  msgs/peer/s  bytes/peer/s  wall (s)']
  for (const r of rows) {
    if (r.skipped !== undefined) { lines.push(`${String(r.peers).padEnd(6)} skipped: ${r.skipped}`); continue }
    const t = r.timeToDeadS!
    lines.push(`${String(r.peers).padEnd(6)} ${`${t.p50.toFixed(2)} / ${t.p99.toFixed(2)} / ${t.max.toFixed(2)}`.padEnd(30)} ${r.disseminationPeriods!.toFixed(2).padEnd(24)} ${r.messagesPerPeerPerS!.toFixed(2).padEnd(12)} ${Math.round(r.bytesPerPeerPerS!).toString().padEnd(13)} ${r.wallS!.toFixed(1)}`)
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
