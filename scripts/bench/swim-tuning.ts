/**
 * SWIM timings against false deaths, in the simulator (issue 15): for one set of membership
 * options, how fast crashes are declared dead at 100 peers (five crashes one after another per
 * seed, p50/p99 over every peer and crash) and how many healthy peers are declared dead in 10
 * simulated minutes of packet loss with 10 % of the peers pausing again and again.
 *
 *   node dist/scripts/bench/swim-tuning.js ['{"suspicionMult":4}']
 *
 * Environment: DET_SEEDS (default 1,2), STALL_SEEDS (default 202), LOSS (default 0.05),
 * STALL_MAX_MS (longest pause, default 2000). docs/benchmarks.md, "SWIM in the simulator", has
 * the table this produced.
 */
import '../../src/polyfill/index.js'
import { pathToFileURL } from 'node:url'
import type { SwimOptions } from '../../src/membership/index.js'
import { SimWorld } from '../../test/sim/index.js'
import { formCluster } from '../../test/sim/membership-cluster.js'

const seeds = (v: string | undefined, dflt: string): number[] => (v ?? dflt).split(',').map(Number).filter(Number.isFinite)

function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

/** Seconds from each of five crashes until each live peer declared it dead. */
export async function crashToDead (opts: SwimOptions, seed: number): Promise<number[]> {
  const world = new SimWorld({ seed, serialize: true })
  const { cluster } = await formCluster(world, 100, opts)
  await world.run(30_000)
  const out: number[] = []
  for (let trial = 0; trial < 5; trial++) {
    const victim = `p${10 + trial * 17}`
    const deadAt = new Map<string, number>()
    for (const m of cluster.up()) {
      if (m.id === victim) continue
      m.swim.onChange(ev => { if (ev.type === 'dead' && ev.member.id === victim && !deadAt.has(m.id)) deadAt.set(m.id, world.now()) })
    }
    const live = cluster.up().length - 1
    const t0 = world.now()
    cluster.crash(victim)
    await world.runUntil(() => deadAt.size >= live, { maxMs: 120_000, checkEveryMs: 50 })
    for (const t of deadAt.values()) out.push((t - t0) / 1000)
    await world.run(5_000 + world.random.int(3000))
  }
  return out
}

/** Healthy peers declared dead (declarations, summed over the peers) in 10 simulated minutes. */
export async function falseDeaths (opts: SwimOptions, seed: number, loss: number, stallMaxMs: number): Promise<number> {
  const world = new SimWorld({ seed, serialize: false })
  const { cluster } = await formCluster(world, 100, opts)
  world.setLossRate(loss)
  let deaths = 0
  for (const m of cluster.up()) m.swim.onChange(ev => { if (ev.type === 'dead') deaths++ })
  const durationMs = 600_000
  for (const id of cluster.up().filter((_, i) => i % 10 === 3).map(m => m.id)) {
    let t = world.random.int(10_000)
    while (t < durationMs) {
      const len = 500 + world.random.int(Math.max(0, stallMaxMs - 500) + 1)
      world.schedule(t, () => { world.stall(id, len) })
      t += len + 5_000 + world.random.int(25_001)
    }
  }
  await world.run(durationMs)
  return deaths
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const opts = JSON.parse(process.argv[2] ?? '{}') as SwimOptions
  const run = async (): Promise<void> => {
    const times: number[] = []
    for (const seed of seeds(process.env.DET_SEEDS, '1,2')) times.push(...await crashToDead(opts, seed))
    times.sort((a, b) => a - b)
    const deaths: number[] = []
    for (const seed of seeds(process.env.STALL_SEEDS, '202')) deaths.push(await falseDeaths(opts, seed, Number(process.env.LOSS ?? 0.05), Number(process.env.STALL_MAX_MS ?? 2000)))
    console.log(`${JSON.stringify(opts)}: crash → dead p50 ${pct(times, 50).toFixed(2)} s, p99 ${pct(times, 99).toFixed(2)} s, max ${times.at(-1)!.toFixed(2)} s (${times.length} declarations); healthy peers declared dead per seed: ${deaths.join(', ')}`)
  }
  run().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1) })
}
