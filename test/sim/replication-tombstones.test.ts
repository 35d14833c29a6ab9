/**
 * Tombstone resurrection (issue 13): a replica away longer than the tombstone grace comes back
 * holding a row that was deleted, and whose tombstone the other replicas have purged meanwhile,
 * while it was gone. Anti-entropy (or its catch-up, which compares digests the same way) then
 * takes its row for a write the others missed and pushes it back: the delete is undone.
 *
 * Whole peers in virtual time (real Swim, catalog, placement and replication) over in-memory
 * stores that purge tombstones as storage's full compaction does (MemoryPartitionStore.compact,
 * run here every few seconds on every up peer). The grace is shortened to 20 s, the hint window
 * to 5 s (a hint would otherwise carry the delete to the returning replica: the grace must
 * outlast the hint window, as Cassandra's gc_grace outlasts max_hint_window).
 */
import { describe, expect, it } from 'vitest'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld } from './index.js'
import { MemoryStores } from './memory-store.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import type { WholeClusterOptions, WholeNode } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const GRACE_MS = 20_000
const schema = [{ name: 'v', type: 'int32' as const, nullable: true }]

function options (deadOwnerTimeoutMs: number): WholeClusterOptions {
  return {
    swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 2_000 },
    placement: { deadOwnerTimeoutMs },
    replication: { antiEntropyIntervalMs: 1_000, hintWindowMs: 5_000, catchUpRetryMs: 1_000, releaseGraceMs: 2_000, requestTimeoutMs: 1_000 }
  }
}

/**
 * n whole peers whose stores keep tombstones GRACE_MS, with one space of one partition, R = 3,
 * settled. Peers in `noRecord` keep no repair record (as a store without one: it never purges,
 * never tells its purge horizon).
 */
async function cluster (world: SimWorld, n: number, opts: WholeClusterOptions, noRecord: string[] = []): Promise<{ c: WholeCluster, space: SpaceDef }> {
  const c = new WholeCluster(world, opts)
  for (let i = 0; i < n; i++) {
    const id = `p${i}`
    c.storesById.set(id, new MemoryStores(noRecord.includes(id) ? { tombstoneGraceMs: GRACE_MS } : { tombstoneGraceMs: GRACE_MS, wallNow: () => world.wallNowOf(id) }))
  }
  c.add('p0')
  for (let i = 1; i < n; i++) c.add(`p${i}`, 'p0')
  c.get('p0').catalog.create({ name: 'things', schema, partitions: 1, replicas: 3 })
  expect(await world.runUntil(() => c.up().length === n && c.settled('things'), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
  const space = spaceOn(c.get('p0'), 'things')
  expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  // Storage's periodic compaction check, on every up peer.
  const compact = (): void => {
    for (const node of c.up()) for (const s of node.stores.stores.values()) s.compact(node.peer.clock.wallNow())
    world.schedule(2_000, compact)
  }
  world.schedule(2_000, compact)
  return { c, space }
}

/** What each up peer's own replica holds for `id`: 'live', 'deleted' or 'none'. */
function heldEverywhere (c: WholeCluster, space: SpaceDef, id: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const n of c.up()) {
    const r = n.stores.get(space, 0)?.peek(id)
    out[n.id] = r === undefined ? 'none' : r.deleted ? 'deleted' : 'live'
  }
  return out
}

async function readAll (world: SimWorld, node: WholeNode, space: SpaceDef, id: string): Promise<unknown> {
  const r = await drive(world, node.replicator.read(space, id, { consistency: 'all' }))
  return r.record?.row ?? null
}

describe('tombstone resurrection: a replica away longer than the tombstone grace', () => {
  it('does not bring back a row deleted while it was down, when it stayed an owner (its absence holds the purge back)', async () => {
    const world = new SimWorld({ seed: 31 })
    // The default 5 min: the replica is away 60 s, three graces, and never stops owning.
    const { c, space } = await cluster(world, 3, options(300_000))
    await drive(world, c.get('p0').replicator.write(space, [{ id: 'doomed', v: 1 }, { id: 'keeper', v: 2 }], { consistency: 'all' }))
    await world.run(5_000)

    c.crash('p2')
    await world.run(3_000)
    const del = await drive(world, c.get('p0').replicator.remove(space, ['doomed'], { consistency: 'quorum' }))
    expect(del.written).toBe(1)
    await drive(world, c.get('p1').replicator.write(space, [{ id: 'while-away', v: 3 }], { consistency: 'quorum' }))
    await world.run(3 * GRACE_MS)
    // Past the grace, but no repair with every replica has completed since the delete: kept.
    expect(heldEverywhere(c, space, 'doomed')).toEqual({ p0: 'deleted', p1: 'deleted' })

    c.add('p2', 'p0')
    expect(await world.runUntil(() => c.settled('things') && c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    // Anti-entropy rounds after the return, and more compactions.
    await world.run(3 * GRACE_MS)

    const held = heldEverywhere(c, space, 'doomed')
    console.log(`doomed held after the return: ${JSON.stringify(held)}`)
    for (const id of ['p0', 'p1', 'p2']) expect(await readAll(world, c.get(id), space, 'doomed'), `read of doomed through ${id}`).toBeNull()
    // The returning replica took the tombstone in; once all three had repaired together, it went.
    expect(held).toEqual({ p0: 'none', p1: 'none', p2: 'none' })
    expect(c.get('p2').replicator.stats().repair.staleReplicas).toBe(0)
    for (const id of ['p0', 'p1', 'p2']) {
      expect(await readAll(world, c.get(id), space, 'keeper')).toEqual({ id: 'keeper', v: 2 })
      expect(await readAll(world, c.get(id), space, 'while-away')).toEqual({ id: 'while-away', v: 3 })
    }
  }, 60_000)

  it('does not bring back a row deleted while it was down, when the others moved on without it and purged the tombstone: it is rebuilt from them', async () => {
    const world = new SimWorld({ seed: 32 })
    // Dead past 10 s, the replica stops owning: a fourth peer takes its place, and the three
    // owners complete repairs together and purge once the grace has passed.
    const { c, space } = await cluster(world, 4, options(10_000))
    const [a, b, away] = c.get('p0').placement.ownersOf(space, 0) as [string, string, string]
    await drive(world, c.get(a).replicator.write(space, [{ id: 'doomed', v: 1 }, { id: 'keeper', v: 2 }], { consistency: 'all' }))
    await world.run(5_000)

    c.crash(away)
    await world.run(3_000)
    const del = await drive(world, c.get(a).replicator.remove(space, ['doomed'], { consistency: 'quorum' }))
    expect(del.written).toBe(1)
    await drive(world, c.get(b).replicator.write(space, [{ id: 'while-away', v: 3 }], { consistency: 'quorum' }))
    // The tombstone is purged everywhere (three graces is plenty for repairs to complete).
    expect(await world.runUntil(() => Object.values(heldEverywhere(c, space, 'doomed')).every(h => h === 'none'),
      { maxMs: 3 * GRACE_MS, checkEveryMs: 500 })).toBe(true)
    await world.run(GRACE_MS)

    c.add(away, a)
    expect(await world.runUntil(() => c.settled('things') && c.announced(space) && c.get(a).placement.locate(space, 0).readReplicas.includes(away),
      { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    await world.run(3 * GRACE_MS)

    const held = heldEverywhere(c, space, 'doomed')
    console.log(`doomed held after the return: ${JSON.stringify(held)}`)
    for (const n of c.up()) expect(await readAll(world, n, space, 'doomed'), `read of doomed through ${n.id}`).toBeNull()
    expect(Object.values(held).filter(h => h === 'live')).toEqual([])
    // It found itself stale against a replica that had purged, and was rebuilt (its old copy kept aside).
    const stats = c.get(away).replicator.stats().repair
    expect(stats.staleReplicas).toBeGreaterThanOrEqual(1)
    // Every replica found stale was rebuilt (none was marked ready as it was).
    expect(stats.staleRebuilt).toBe(stats.staleReplicas)
    expect(c.storesById.get(away)!.rebuilt[0]?.peek('doomed')?.deleted).toBe(false)
    for (const n of c.up()) {
      expect(await readAll(world, n, space, 'keeper')).toEqual({ id: 'keeper', v: 2 })
      expect(await readAll(world, n, space, 'while-away')).toEqual({ id: 'while-away', v: 3 })
    }
  }, 60_000)

  it('does not bring back a row deleted while it was cut off and serving on its own side: found stale at the heal, it pushes only what it took within the grace, and is rebuilt', async () => {
    const world = new SimWorld({ seed: 33 })
    const { c, space } = await cluster(world, 4, options(10_000))
    const [a, , away] = c.get('p0').placement.ownersOf(space, 0) as [string, string, string]
    const rest = ['p0', 'p1', 'p2', 'p3'].filter(id => id !== away)
    await drive(world, c.get(a).replicator.write(space, [{ id: 'doomed', v: 1 }, { id: 'keeper', v: 2 }], { consistency: 'all' }))
    await world.run(5_000)

    world.partition([away], rest)
    await world.run(3_000)
    await drive(world, c.get(a).replicator.remove(space, ['doomed'], { consistency: 'quorum' }))
    expect(await world.runUntil(() => rest.every(id => c.get(id).stores.get(space, 0)?.peek('doomed') === undefined),
      { maxMs: 3 * GRACE_MS, checkEveryMs: 500 })).toBe(true)
    // The cut-off replica still serves its side, and takes a write at ONE there, well within the
    // grace of the heal (its hints expire before then: only its own push can bring it over).
    expect(c.get(away).replicator.isReady(space, 0)).toBe(true)
    const lonely = await drive(world, c.get(away).replicator.write(space, [{ id: 'lonely', v: 4 }], { consistency: 'one' }))
    expect(lonely.written).toBe(1)
    await world.run(GRACE_MS / 2)

    world.heal()
    await world.run(10_000)
    expect(await world.runUntil(() => c.settled('things') && c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    await world.run(3 * GRACE_MS)

    const held = heldEverywhere(c, space, 'doomed')
    console.log(`doomed held after the heal: ${JSON.stringify(held)}`)
    for (const n of c.up()) expect(await readAll(world, n, space, 'doomed'), `read of doomed through ${n.id}`).toBeNull()
    expect(Object.values(held).filter(h => h === 'live')).toEqual([])
    const stats = c.get(away).replicator.stats().repair
    expect(stats.staleRebuilt).toBeGreaterThanOrEqual(1)
    expect(stats.staleRebuilt).toBe(stats.staleReplicas)
    expect(stats.recordsWithheld).toBeGreaterThanOrEqual(1)
    for (const n of c.up()) {
      expect(await readAll(world, n, space, 'keeper')).toEqual({ id: 'keeper', v: 2 })
      expect(await readAll(world, n, space, 'lonely')).toEqual({ id: 'lonely', v: 4 })
    }
  }, 60_000)

  it('a returning replica that one source finds stale while another source\'s sync completes is rebuilt, never marked ready as it is', async () => {
    const world = new SimWorld({ seed: 34 })
    // Three peers: when the away one stops owning, the other two are the whole repair set. One of
    // them keeps no repair record (it never purges and tells no purge horizon), so the returning
    // replica's sync with it completes, while the other has purged past what it knows.
    const { c, space } = await cluster(world, 3, options(10_000), ['p1'])
    await drive(world, c.get('p0').replicator.write(space, [{ id: 'doomed', v: 1 }, { id: 'keeper', v: 2 }], { consistency: 'all' }))
    await world.run(5_000)
    c.crash('p2')
    await world.run(3_000)
    await drive(world, c.get('p0').replicator.remove(space, ['doomed'], { consistency: 'quorum' }))
    expect(await world.runUntil(() => c.get('p0').stores.get(space, 0)?.peek('doomed') === undefined, { maxMs: 3 * GRACE_MS, checkEveryMs: 500 })).toBe(true)
    await world.run(GRACE_MS)

    c.add('p2', 'p0')
    expect(await world.runUntil(() => c.settled('things') && c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    await world.run(3 * GRACE_MS)
    const stats = c.get('p2').replicator.stats().repair
    expect(stats.staleReplicas).toBeGreaterThanOrEqual(1)
    expect(stats.staleRebuilt).toBe(stats.staleReplicas)
    // Ready, and serving: a read at ONE through it answers from its own copy.
    expect(c.get('p2').replicator.isReady(space, 0)).toBe(true)
    const r = await drive(world, c.get('p2').replicator.read(space, 'keeper', { consistency: 'one' }))
    expect(r.record?.row).toEqual({ id: 'keeper', v: 2 })
    for (const n of c.up()) expect(await readAll(world, n, space, 'doomed'), `read of doomed through ${n.id}`).toBeNull()
  }, 60_000)
})
