/**
 * Issue 13: a peer restarted with changed metadata (a new HTTP port) must be seen with it. SWIM
 * orders a member's announcements by incarnation, so a restart that starts again at 0 used to be
 * ignored by everyone who knew the member at 0 or above. Virtual time; no thresholds on speed
 * beyond "a few protocol periods", which in the simulator is exact, not a guess about a machine.
 */
import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { SwimCluster } from './membership-cluster.js'
import type { SwimOptions } from '../../src/membership/index.js'

const OTHERS = ['p0', 'p1', 'p2', 'p4']
const NEW_META = { name: 'p3', http: '127.0.0.1:9999' }

async function fiveAlive (seed: number, options: SwimOptions, persist: boolean): Promise<{ world: SimWorld, cluster: SwimCluster }> {
  const world = new SimWorld({ seed })
  const cluster = new SwimCluster(world, options)
  cluster.persistIncarnations = persist
  cluster.add('p0')
  for (const id of ['p1', 'p2', 'p3', 'p4']) cluster.add(id, ['p0'])
  expect(await world.runUntil(() => cluster.converged(), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
  return { world, cluster }
}

function othersSee (cluster: SwimCluster, http: string): boolean {
  return OTHERS.every(id => cluster.get(id).swim.member('p3')?.meta.http === http && cluster.get(id).swim.member('p3')?.state === 'alive')
}

describe('a restarted peer with new metadata (issue 13)', () => {
  it('one that never raised its incarnation: its restart announcement wins, not just the old view at the same incarnation', async () => {
    const { world, cluster } = await fiveAlive(1301, {}, true)
    expect(cluster.get('p0').swim.member('p3')?.incarnation).toBe(0)
    cluster.crash('p3')
    cluster.add('p3', ['p0'], NEW_META)
    // Four anti-entropy periods: before the fix the others held the old meta at incarnation 0 for
    // good, ignoring an announcement at the same incarnation, and push-pull changed nothing.
    const t0 = world.now()
    const ok = await world.runUntil(() => othersSee(cluster, NEW_META.http), { maxMs: 120_000, checkEveryMs: 100 })
    expect(ok).toBe(true)
    console.log(`[restart, never raised] new meta seen by all in ${world.now() - t0} ms`)
  })

  it('one that refuted a suspicion, restarted with no one to join and no anti-entropy: its first announcement is accepted within a few protocol periods', async () => {
    // Anti-entropy and reconnect off: what the others learn can only come from the restarted
    // peer's own announcement, riding its acks and gossip.
    const { world, cluster } = await fiveAlive(1302, { pushPullIntervalMs: 1e9, reconnectIntervalMs: 1e9 }, true)
    // p3's messages stop getting out (the others' still reach it): it is suspected, hears it
    // through the buddy system and refutes; once healed, its refutation spreads.
    world.partition(['p3'], OTHERS, { oneWay: true })
    expect(await world.runUntil(() => OTHERS.some(id => cluster.get(id).swim.member('p3')?.state === 'suspect'), { maxMs: 60_000, checkEveryMs: 50 })).toBe(true)
    world.heal()
    expect(await world.runUntil(() => OTHERS.every(id => cluster.get(id).swim.member('p3')?.state === 'alive' && cluster.get(id).swim.member('p3')!.incarnation > 0), { maxMs: 60_000, checkEveryMs: 50 })).toBe(true)
    const raised = cluster.get('p3').swim.localMember().incarnation
    expect(raised).toBeGreaterThan(0)
    const ceiling = cluster.incarnationStores.get('p3')?.ceiling
    // Long enough for every queued copy of the refutation to have been sent: nothing the others
    // gossip later tells the restarted peer about its previous life.
    await world.run(30_000)
    for (const id of OTHERS) expect(cluster.get(id).swim.stats().gossipQueueLength).toBe(0)

    cluster.crash('p3')
    const back = cluster.add('p3', [], NEW_META)
    const t0 = world.now()
    const periods = 5
    const ok = await world.runUntil(() => othersSee(cluster, NEW_META.http), { maxMs: periods * 1000, checkEveryMs: 50 })
    expect(ok).toBe(true)
    console.log(`[restart after a refutation] new meta seen by all in ${world.now() - t0} ms (protocol period 1000 ms)`)
    // The raised incarnation was persisted before it was used, and the restart started above it.
    expect(ceiling).toBeGreaterThanOrEqual(raised)
    expect(back.swim.localMember().incarnation).toBeGreaterThan(raised)
  })

  it('with the incarnation lost (no store): the join tells it of its old self at the same incarnation, and it refutes with the new meta', async () => {
    const { world, cluster } = await fiveAlive(1303, {}, false)
    cluster.crash('p3')
    const back = cluster.add('p3', ['p0'], NEW_META)
    const ok = await world.runUntil(() => othersSee(cluster, NEW_META.http), { maxMs: 120_000, checkEveryMs: 100 })
    expect(ok).toBe(true)
    expect(back.swim.localMember().incarnation).toBeGreaterThan(0)
  })
})

describe('a peer restarted while another member is dead', () => {
  it('learns the dead member from its join, with its meta and dated as the cluster dates its death, and hears of its own previous life', async () => {
    const { world, cluster } = await fiveAlive(1304, {}, true)
    const p0 = cluster.get('p0').swim
    p0.updateMeta({ name: 'p0', ready: { s: '01' } })
    expect(await world.runUntil(() => cluster.get('p3').swim.member('p0')?.meta.ready !== undefined, { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    cluster.crash('p1')
    expect(await world.runUntil(() => ['p0', 'p2', 'p4'].every(id => cluster.get(id).swim.member('p1')?.state === 'dead'), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const diedAt = cluster.get('p0').swim.member('p1')!.stateChangedAt
    cluster.crash('p3')
    await world.run(20_000)
    const back = cluster.add('p3', ['p0'], NEW_META)
    expect(await world.runUntil(() => back.swim.hasSynced(), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    // Before the fix it never heard of p1 (SWIM passes dead members on only to peers that know them).
    const p1 = back.swim.member('p1')
    expect(p1?.state).toBe('dead')
    expect(p1?.meta).toEqual({ name: 'p1' })
    // Dated as p0 dates it (give or take the answer's flight), not at the restart 20 s later.
    expect(Math.abs(p1!.stateChangedAt - diedAt)).toBeLessThan(100)
    // Its own previous life, as p0 knew it before the join replaced it: dead, with its old meta.
    const prev = back.swim.previousLife()
    expect(prev).toMatchObject({ state: 'dead', meta: { name: 'p3' } })
    expect(prev!.incarnation).toBeLessThan(back.swim.localMember().incarnation)
    expect(prev!.goneAt).toBeLessThan(prev!.restartedAt)
    // It passes the dead member on, and nobody revives it.
    await world.run(10_000)
    for (const id of ['p0', 'p2', 'p3', 'p4']) expect(cluster.get(id).swim.member('p1')?.state).toBe('dead')
  })
})
