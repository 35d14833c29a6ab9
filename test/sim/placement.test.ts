/**
 * Placement in the simulator: the catalog spreads by broadcast and by push-pull alone, every peer
 * computes the same owners, a death moves ownership consistently, and readiness keeps a catching
 * up owner out of the read set.
 */
import { describe, expect, it } from 'vitest'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld } from './index.js'
import { formPlacementCluster } from './placement-cluster.js'
import type { PlacementCluster } from './placement-cluster.js'

const swimOptions = { pushPullIntervalMs: 5_000, reconnectIntervalMs: 5_000 }
const schema = [{ name: 'amount', type: 'float64' as const, nullable: true }]

function sameOwnersEverywhere (c: PlacementCluster, space: SpaceDef): boolean {
  const views = c.views(space)
  if (views.size !== c.up().length) return false
  const first = [...views.values()][0]!
  return [...views.values()].every(v => v.every((pl, p) => pl.owners.join() === first[p]!.owners.join()))
}

describe('placement in the simulator', () => {
  it('a space created on one peer reaches all by broadcast; all compute the same owners', async () => {
    const world = new SimWorld({ seed: 7 })
    const c = await formPlacementCluster(world, 5, swimOptions)
    const space = c.get('p2').catalog.create({ name: 'orders', schema, partitions: 16, replicas: 3 })
    // Well before the first anti-entropy round could carry it.
    const ok = await world.runUntil(() => c.up().every(n => n.catalog.get('orders')?.uid === space.uid), { maxMs: 200, checkEveryMs: 5 })
    expect(ok).toBe(true)
    expect(sameOwnersEverywhere(c, space)).toBe(true)
    const owners = c.views(space).get('p0')!.map(pl => pl.owners)
    for (const o of owners) expect(o).toHaveLength(3)
    // Every peer owns some partitions, and the ownedPartitions() of all cover every slot exactly once.
    let slots = 0
    for (const n of c.up()) slots += n.placement.ownedPartitions().length
    expect(slots).toBe(16 * 3)
  })

  it('a peer cut off during the create catches up after heal through push-pull alone', async () => {
    const world = new SimWorld({ seed: 11 })
    const c = await formPlacementCluster(world, 5, swimOptions)
    const others = ['p0', 'p1', 'p2', 'p3']
    world.partition(['p4'], others)
    const space = c.get('p0').catalog.create({ name: 'events', schema, partitions: 8, replicas: 2 })
    expect(c.get('p0').broadcaster.published).toBe(1)
    await world.run(1_500)
    expect(others.every(id => c.get(id).catalog.get('events') !== undefined)).toBe(true)
    expect(c.get('p4').catalog.get('events')).toBeUndefined()
    // Nothing is broadcast again: only push-pull can carry it now.
    for (const n of c.up()) n.broadcaster.muted = true
    world.heal()
    const healedAt = world.now()
    const ok = await world.runUntil(() => c.get('p4').catalog.get('events')?.uid === space.uid, { maxMs: 30_000, checkEveryMs: 50 })
    expect(ok).toBe(true)
    console.log(`[placement] cut-off peer caught up ${(world.now() - healedAt) / 1000} s after heal (push-pull every 5 s)`)
    await world.runUntil(() => c.converged(), { maxMs: 30_000, checkEveryMs: 100 })
    expect(sameOwnersEverywhere(c, space)).toBe(true)
  })

  it('a dead member keeps its partitions until deadOwnerTimeoutMs, then owners change consistently and only its slots move', async () => {
    const world = new SimWorld({ seed: 23 })
    const c = await formPlacementCluster(world, 5, swimOptions, { deadOwnerTimeoutMs: 30_000 })
    const space = c.get('p1').catalog.create({ name: 'logs', schema, partitions: 32, replicas: 3 })
    await world.run(500)
    expect(sameOwnersEverywhere(c, space)).toBe(true)
    const before = c.views(space).get('p0')!.map(pl => [...pl.owners])
    let changes = 0
    c.get('p0').placement.onChange(() => { changes++ })
    c.crash('p3')
    const ok = await world.runUntil(() => c.up().every(n => n.swim.member('p3')?.state === 'dead'), { maxMs: 60_000, checkEveryMs: 100 })
    expect(ok).toBe(true)
    // Dead, but still an owner: its partitions wait for it (hints cover the writes).
    expect(c.views(space).get('p0')!.map(pl => [...pl.owners])).toEqual(before)
    await world.run(31_000)
    expect(changes).toBeGreaterThan(0)
    expect(sameOwnersEverywhere(c, space)).toBe(true)
    const after = c.views(space).get('p0')!.map(pl => [...pl.owners])
    for (let p = 0; p < 32; p++) {
      expect(after[p]).not.toContain('p3')
      expect(after[p]).toHaveLength(3)
      if (!before[p]!.includes('p3')) expect(after[p]).toEqual(before[p])
      else for (const o of before[p]!) if (o !== 'p3') expect(after[p]).toContain(o)
    }
  })

  it('suspicion alone does not move ownership', async () => {
    const world = new SimWorld({ seed: 31 })
    const c = await formPlacementCluster(world, 5, swimOptions)
    const space = c.get('p0').catalog.create({ name: 'keep', schema, partitions: 16, replicas: 3 })
    await world.run(500)
    const before = c.views(space).get('p0')!.map(pl => pl.owners.join())
    world.partition(['p4'], ['p0', 'p1', 'p2', 'p3'])
    await world.runUntil(() => c.get('p0').swim.member('p4')?.state === 'suspect', { maxMs: 10_000, checkEveryMs: 10 })
    expect(c.get('p0').swim.member('p4')?.state).toBe('suspect')
    expect(c.views(space).get('p0')!.map(pl => pl.owners.join())).toEqual(before)
  })

  it('a new owner is written to but not read from until it marks its partitions ready', async () => {
    const world = new SimWorld({ seed: 41 })
    const c = await formPlacementCluster(world, 5, swimOptions)
    const space = c.get('p0').catalog.create({ name: 'moves', schema, partitions: 16, replicas: 3 })
    await world.run(500)
    // Replication would catch up and mark its owned partitions ready; here they are ready at once.
    for (const n of c.up()) for (const o of n.placement.ownedPartitions()) n.placement.markReady(o.space, o.partition)
    const allReady = (): boolean => [...c.views(space).values()].every(v => v.every(pl => pl.readReplicas.join() === pl.owners.join()))
    expect(await world.runUntil(allReady, { maxMs: 10_000, checkEveryMs: 50 })).toBe(true)
    const before = c.views(space).get('p0')!.map(pl => [...pl.owners])

    const p5 = c.add('p5', ['p0'])
    expect(await world.runUntil(() => c.converged() && p5.catalog.get('moves') !== undefined, { maxMs: 30_000, checkEveryMs: 50 })).toBe(true)
    const gained = p5.placement.ownedPartitions().map(o => o.partition)
    expect(gained.length).toBeGreaterThan(0)
    expect(sameOwnersEverywhere(c, space)).toBe(true)
    for (const [id, view] of c.views(space)) {
      for (const p of gained) {
        const pl = view[p]!
        expect(pl.owners, `${id} p${p}`).toContain('p5')
        expect(pl.writeReplicas).toContain('p5')
        expect(pl.readReplicas).not.toContain('p5')
        // The displaced owner still holds it ready: read from and written to until released.
        const displaced = before[p]!.find(o => !pl.owners.includes(o))!
        expect(pl.readReplicas).toContain(displaced)
        expect(pl.writeReplicas).toContain(displaced)
        expect(pl.quorum).toBe(2)
      }
    }
    for (const p of gained) p5.placement.markReady(space, p)
    const p5Readable = (): boolean => [...c.views(space).values()].every(v => gained.every(p => v[p]!.readReplicas.includes('p5')))
    expect(await world.runUntil(p5Readable, { maxMs: 10_000, checkEveryMs: 20 })).toBe(true)
    // The displaced owners hand off and release; then reads and writes go to the owners alone.
    for (const p of gained) {
      const displaced = before[p]!.find(o => !c.get('p0').placement.locate(space, p).owners.includes(o))!
      c.get(displaced).placement.markReleased(space, p)
    }
    const settled = (): boolean => [...c.views(space).values()].every(v => v.every(pl => pl.readReplicas.join() === pl.owners.join() && pl.writeReplicas.join() === pl.owners.join()))
    expect(await world.runUntil(settled, { maxMs: 10_000, checkEveryMs: 20 })).toBe(true)
  })
})
