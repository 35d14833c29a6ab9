/**
 * How fast a cut heals (issue 15): a fifth of the peers cut off, long enough for each side to
 * declare the other dead, then the links come back. Healing needs every peer that was declared
 * dead to learn it and refute; Serf's reconnect knocks (one dead member a period across the
 * cluster) start it, and a peer that hears from a member it holds dead tells that member at
 * once, so the refutations spread with the traffic instead of waiting for a knock each.
 */
import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { formCluster } from './membership-cluster.js'

async function healAfterCut (seed: number, n: number, cutMs: number): Promise<{ healS: number, reconnects: number, heldDead: number }> {
  const world = new SimWorld({ seed })
  // Default timings (probe interval 1 s, reconnect interval 30 s): what a user runs.
  const { cluster, ids } = await formCluster(world, n, {})
  await world.run(10_000)
  const minority = ids.slice(0, Math.floor(n / 5))
  const majority = ids.slice(minority.length)
  world.partition(minority, majority)
  await world.run(cutMs)
  // 20 s is too short for every view to have every member across the cut dead (a peer whose
  // probes fail raises its awareness and probes less often); 120 s is not.
  let heldDead = 0
  for (const m of cluster.up()) {
    const other = minority.includes(m.id) ? majority : minority
    for (const id of other) {
      const state = m.swim.member(id)?.state
      if (cutMs >= 120_000) expect(state, `${m.id} sees ${id}`).toBe('dead')
      if (state === 'dead') heldDead++
    }
  }
  expect(heldDead).toBeGreaterThan(n)
  const reconnectsBefore = cluster.up().reduce((s, m) => s + m.swim.stats().reconnects, 0)
  world.heal()
  const healedAt = world.now()
  expect(await world.runUntil(() => cluster.converged(), { maxMs: 300_000, checkEveryMs: 100 })).toBe(true)
  const reconnects = cluster.up().reduce((s, m) => s + m.swim.stats().reconnects, 0) - reconnectsBefore
  return { healS: (world.now() - healedAt) / 1000, reconnects, heldDead }
}

describe('membership: healing a cut', () => {
  it('30 peers, a fifth cut off for 20 s: one alive view again within 3 s of the heal (8 seeds)', async () => {
    const rows: string[] = []
    for (let seed = 1; seed <= 8; seed++) {
      const { healS, reconnects, heldDead } = await healAfterCut(seed, 30, 20_000)
      rows.push(`seed ${seed}: ${heldDead} views of a member across the cut dead; one alive view ${healS.toFixed(1)} s after the heal (${reconnects} knocks)`)
      // Before dead notices and pulls after refuting: 1.2-26.0 s over seeds 1-12 (median 9);
      // after: 0.8-1.3 s. The members' deaths are under 30 s old, so gossip still goes to them.
      expect(healS, rows.at(-1)).toBeLessThan(3)
    }
    console.log(`[heal] 30 peers, 6 cut off for 20 s:\n  ${rows.join('\n  ')}`)
  }, 120_000)

  it('30 peers, a fifth cut off for 120 s: healed within seconds of the first reconnect knock', async () => {
    const rows: string[] = []
    for (const seed of [1501, 1502, 1503]) {
      const { healS, reconnects, heldDead } = await healAfterCut(seed, 30, 120_000)
      rows.push(`seed ${seed}: ${heldDead} views of a member across the cut dead; one alive view ${healS.toFixed(1)} s after the heal (${reconnects} knocks)`)
      // No gossip crosses a cut this old: the first knock (about 12 a period of 30 s here) starts it.
      expect(healS, rows.at(-1)).toBeLessThan(15)
    }
    console.log(`[heal] 30 peers, 6 cut off for 120 s:\n  ${rows.join('\n  ')}`)
  }, 120_000)
})
