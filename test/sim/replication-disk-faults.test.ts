/**
 * A replica whose disk fills up or fails under writes (issue 13, "disk faults leave zombie
 * replicas"), through real Replicators in virtual time: it fails once and leaves service at once
 * (not ready, withdrawn, no reads, queries or anti-entropy from it), writes at QUORUM go on with
 * the others, a full disk heals by itself (probes with backoff, reopen, catch-up, ready again, no
 * restart), an I/O error is rebuilt from the other replicas, and with no other replica it keeps
 * serving what it holds.
 */
import { describe, expect, it } from 'vitest'
import { METHOD_DIGEST, METHOD_READ } from '../../src/replication/wire.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld, simAddress } from './index.js'
import { FailingStores, type FailingPartitionStore } from './failing-store.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'
import type { ReplicatorOptions } from '../../src/replication/index.js'

const rowsOf = (n: number, prefix = 'r'): Array<{ id: string, v: number, note: string }> =>
  [...Array(n).keys()].map(i => ({ id: `${prefix}${i}`, v: i, note: `n${i}` }))

/** n peers p0.. on FailingStores, with `space`, settled. */
async function formOnDisks (world: SimWorld, n: number, space: SpaceDef, opts: ReplicatorOptions): Promise<ReplCluster> {
  const c = new ReplCluster(world, opts)
  c.spaces.push(space)
  const ids = [...Array(n).keys()].map(i => `p${i}`)
  for (const id of ids) c.storesById.set(id, new FailingStores(() => world.wallNowOf(id)))
  c.add('p0')
  for (const id of ids.slice(1)) c.add(id, 'p0')
  await c.settle(ids)
  return c
}

const disk = (c: ReplCluster, id: string): FailingStores => c.storesById.get(id) as FailingStores
const storeOf = (c: ReplCluster, id: string, space: SpaceDef): FailingPartitionStore => c.store(id, space, 0) as FailingPartitionStore

describe('a replica whose disk fails under writes', () => {
  it('R = 3, full disk: it fails once and leaves service at once, QUORUM writes go on, and once space is freed it heals by itself, caught up', async () => {
    const world = new SimWorld({ seed: 31 })
    const space = makeSpace('things', 1, 3)
    const c = await formOnDisks(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(40), { consistency: 'all' }))
    const full = storeOf(c, 'p1', space)

    disk(c, 'p1').disk.fault = 'full'
    const failedAt = world.wallNowOf('p1')
    // Through a healthy coordinator and through the full peer itself: acknowledged by the two others.
    const w1 = await drive(world, c.get('p0').replicator.write(space, rowsOf(20, 'a'), { consistency: 'quorum' }))
    const w2 = await drive(world, c.get('p1').replicator.write(space, rowsOf(20, 'b'), { consistency: 'quorum' }))
    expect(w1.written + w2.written).toBe(40)

    // Failed once, out of service at once: not ready, withdrawn from every view, holding only what was durable.
    expect(full.failure()).toMatchObject({ kind: 'no-space', code: 'ENOSPC' })
    expect(c.get('p1').replicator.isReady(space, 0)).toBe(false)
    await world.run(500)
    for (const id of ['p0', 'p1', 'p2']) expect(c.get(id).placement.locate(space, 0).readReplicas).not.toContain('p1')
    expect(full.peek('a0')).toBeUndefined()
    expect(full.size()).toBe(40)
    // A coordinator with a stale view that still asks it gets a refusal naming the failure, not
    // an answer with holes; nor is it a source for anti-entropy.
    const p0 = c.get('p0').peer.transport
    await expect(drive(world, p0.request(simAddress('p1'), METHOD_READ, { space, partition: 0, ids: ['a0'] }, { timeoutMs: 1000 })))
      .rejects.toThrow(/STORE_FAILED.*ENOSPC/)
    await expect(drive(world, p0.request(simAddress('p1'), METHOD_DIGEST, { space, partition: 0, buckets: 64 }, { timeoutMs: 1000 })))
      .rejects.toThrow(/STORE_FAILED/)
    // Reads at every level, through the full peer too, are answered by the others, right.
    for (const level of ['one', 'quorum', 'all'] as const) {
      const r = await drive(world, c.get('p1').replicator.read(space, 'b3', { consistency: level }))
      expect(r.record?.row).toEqual({ id: 'b3', v: 3, note: 'n3' })
    }
    expect(c.get('p1').replicator.diskWaiting()).toEqual([expect.objectContaining({ space, partition: 0 })])

    // While the disk stays full: probed 1, 2, 4, 8 s apart, never reopened, still out of service.
    await world.run(16_000)
    const probes = disk(c, 'p1').reopens
    expect(probes.map(p => p.ok)).toEqual([false, false, false, false])
    expect(probes.map(p => p.at - failedAt)).toEqual([1000, 3000, 7000, 15_000].map(t => expect.closeTo(t, -2)))
    expect(c.get('p1').replicator.isReady(space, 0)).toBe(false)

    // Space freed: the next probe passes, the replica is reopened (no restart), catches up and serves.
    disk(c, 'p1').disk.fault = undefined
    const back = await world.runUntil(() => c.get('p1').replicator.isReady(space, 0), { maxMs: 60_000, checkEveryMs: 50 })
    expect(back).toBe(true)
    expect(disk(c, 'p1').reopened).toEqual([full])
    const healed = storeOf(c, 'p1', space)
    expect(healed).not.toBe(full)
    expect(healed.failure()).toBeUndefined()
    expect(healed.size()).toBe(80)
    expect(healed.digestNow(64).root).toBe(storeOf(c, 'p0', space).digestNow(64).root)
    expect(c.get('p1').replicator.diskWaiting()).toEqual([])
    await world.run(500)
    for (const id of ['p0', 'p1', 'p2']) expect(c.get(id).placement.locate(space, 0).readReplicas).toContain('p1')
    const r = await drive(world, c.get('p1').replicator.read(space, 'a7', { consistency: 'one' }))
    expect(r.record?.row).toEqual({ id: 'a7', v: 7, note: 'n7' })
    await drive(world, c.get('p1').replicator.write(space, rowsOf(5, 'c'), { consistency: 'all' }))
    expect(healed.size()).toBe(85)
  })

  it('a disk that stays full is probed with a wait doubling from diskProbeMinMs to diskProbeMaxMs, and not more often', async () => {
    const world = new SimWorld({ seed: 32 })
    const space = makeSpace('things', 1, 3)
    const c = await formOnDisks(world, 3, space, { antiEntropyIntervalMs: 0, diskProbeMinMs: 1000, diskProbeMaxMs: 30_000 })
    disk(c, 'p2').disk.fault = 'full'
    await drive(world, c.get('p0').replicator.write(space, rowsOf(10), { consistency: 'quorum' }))
    await world.run(200_000)
    const at = disk(c, 'p2').reopens.map(p => p.at)
    const gaps = at.slice(1).map((t, i) => t - at[i]!)
    expect(gaps.slice(0, 8)).toEqual([2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000].map(t => expect.closeTo(t, -2)))
    expect(c.get('p2').replicator.isReady(space, 0)).toBe(false)
  })

  it('R = 3, I/O error: the replica leaves service and is rebuilt from the others, holding every row again', async () => {
    const world = new SimWorld({ seed: 33 })
    const space = makeSpace('things', 1, 3)
    const c = await formOnDisks(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(30), { consistency: 'all' }))
    const failing = storeOf(c, 'p1', space)
    disk(c, 'p1').disk.fault = 'eio'
    await drive(world, c.get('p0').replicator.write(space, rowsOf(10, 'x'), { consistency: 'quorum' }))
    expect(failing.failure()).toMatchObject({ kind: 'io', code: 'EIO' })
    expect(c.get('p1').replicator.isReady(space, 0)).toBe(false)
    // The disk is replaced (the fault gone); the replica is rebuilt, not reopened.
    disk(c, 'p1').disk.fault = undefined
    const back = await world.runUntil(() => c.get('p1').replicator.isReady(space, 0), { maxMs: 60_000, checkEveryMs: 50 })
    expect(back).toBe(true)
    expect(disk(c, 'p1').rebuilt).toEqual([failing])
    expect(disk(c, 'p1').reopens).toEqual([])
    const fresh = storeOf(c, 'p1', space)
    expect(fresh.size()).toBe(40)
    expect(fresh.digestNow(64).root).toBe(storeOf(c, 'p0', space).digestNow(64).root)
  })

  it('a disk that keeps failing with I/O errors is rebuilt a bounded number of times, then left out of service until its disk works again', async () => {
    const world = new SimWorld({ seed: 35 })
    const space = makeSpace('things', 1, 3)
    const c = await formOnDisks(world, 3, space, { antiEntropyIntervalMs: 0, catchUpRetryMs: 1000 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(30), { consistency: 'all' }))
    disk(c, 'p1').disk.fault = 'eio'
    // Writes go on for ten minutes; every fresh replica on the failing disk fails again.
    for (let m = 0; m < 600; m += 5) {
      await drive(world, c.get('p0').replicator.write(space, rowsOf(2, `w${m}-`), { consistency: 'quorum' }))
      await world.run(5000)
    }
    // Before the bound: 361 rebuilds (each a directory moved aside on a real peer).
    expect(disk(c, 'p1').rebuilt.length).toBe(3)
    expect(c.get('p1').replicator.isReady(space, 0)).toBe(false)
    expect(c.get('p1').replicator.ioRebuildsGivenUp()).toEqual([{ space, partition: 0, rebuilds: 3 }])
    // The others serve everything meanwhile.
    const r = await drive(world, c.get('p1').replicator.read(space, 'w595-1', { consistency: 'all' }))
    expect(r.record?.row).toEqual({ id: 'w595-1', v: 1, note: 'n1' })
    // Its disk is probed meanwhile (as a full one is), never successfully while it fails.
    expect(disk(c, 'p1').reopens.length).toBeGreaterThan(0)
    expect(disk(c, 'p1').reopens.every(x => !x.ok)).toBe(true)

    // The device works again: without a restart, the replica is back, caught up, and rebuilds are allowed again.
    disk(c, 'p1').disk.fault = undefined
    expect(await world.runUntil(() => c.get('p1').replicator.isReady(space, 0), { maxMs: 600_000, checkEveryMs: 1000 })).toBe(true)
    expect(c.get('p1').replicator.ioRebuildsGivenUp()).toEqual([])
    expect(storeOf(c, 'p1', space).digestNow(64).root).toBe(storeOf(c, 'p0', space).digestNow(64).root)
  })

  it('R = 1: the only replica keeps serving what it holds while its disk is full; writes fail; once space is freed it takes writes again', async () => {
    const world = new SimWorld({ seed: 34 })
    const space = makeSpace('solo', 1, 1)
    const c = await formOnDisks(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(10), { consistency: 'all' }))
    const owner = ['p0', 'p1', 'p2'].find(id => c.store(id, space, 0)?.peek('r1') !== undefined)!
    const other = ['p0', 'p1', 'p2'].find(id => id !== owner)!
    disk(c, owner).disk.fault = 'full'
    await expect(drive(world, c.get(other).replicator.write(space, rowsOf(1, 'late'), { consistency: 'one' }))).rejects.toThrow(/ENOSPC/)
    expect(storeOf(c, owner, space).failure()).toMatchObject({ code: 'ENOSPC' })
    expect(c.get(owner).replicator.isReady(space, 0)).toBe(true)
    const r = await drive(world, c.get(other).replicator.read(space, 'r4', { consistency: 'one' }))
    expect(r.record?.row).toEqual({ id: 'r4', v: 4, note: 'n4' })
    await world.run(5000)
    disk(c, owner).disk.fault = undefined
    await world.run(40_000)
    expect(storeOf(c, owner, space).failure()).toBeUndefined()
    await drive(world, c.get(other).replicator.write(space, rowsOf(1, 'late'), { consistency: 'one' }))
    expect(storeOf(c, owner, space).size()).toBe(11)
    expect(c.get(owner).replicator.isReady(space, 0)).toBe(true)
  })
})
