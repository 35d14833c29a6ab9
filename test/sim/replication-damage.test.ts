/**
 * A replica whose stored values turn unreadable while it serves (a damaged segment block, injected
 * into the simulator's MemoryPartitionStore as LocalPartitionStore reports it), through real
 * Replicators: it leaves service at once, reads go to the other replicas, and it is rebuilt from
 * them; with no other replica it keeps serving what it can read.
 */
import { describe, expect, it } from 'vitest'
import { ReadIncompleteError } from '../../src/replication/index.js'
import { SegmentCorruptError } from '../../src/storage/index.js'
import { SimWorld } from './index.js'
import { MemoryStores } from './memory-store.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'

const rowsOf = (n: number, prefix = 'r'): Array<{ id: string, v: number, note: string }> =>
  [...Array(n).keys()].map(i => ({ id: `${prefix}${i}`, v: i, note: `n${i}` }))

describe('a damaged segment found while a replica serves', () => {
  it('R = 3: the replica leaves service at once, reads stay right, and it is rebuilt from the others, keeping what only it held', async () => {
    const world = new SimWorld({ seed: 21 })
    const space = makeSpace('things', 1, 3)
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(100), { consistency: 'all' }))
    const damaged = c.store('p1', space, 0)!
    // A write only p1 holds (acknowledged at ONE, its hints lost): salvaged to the others before the rebuild.
    const onlyHere = { id: 'only-p1', version: c.get('p1').hlc.now(), deleted: false, row: { id: 'only-p1', v: -1, note: 'p1' } }
    await damaged.apply([onlyHere])
    damaged.corrupt(['r7', 'r8'])

    // The first read that meets the damage fails naming the file, and takes the replica out of
    // service in the same step: nothing is read from it any more.
    const err = await damaged.get('r7').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SegmentCorruptError)
    expect((err as Error).message).toContain('seg-00000001.arrow')
    expect(c.get('p1').replicator.isReady(space, 0)).toBe(false)
    expect(c.get('p1').placement.locate(space, 0).readReplicas).not.toContain('p1')

    // Reads through the damaged peer answer from the others, right.
    for (const level of ['one', 'quorum', 'all'] as const) {
      const r = await drive(world, c.get('p1').replicator.read(space, 'r7', { consistency: level }))
      expect(r.record?.row).toEqual({ id: 'r7', v: 7, note: 'n7' })
    }

    const back = await world.runUntil(() => c.get('p1').replicator.isReady(space, 0), { maxMs: 60_000, checkEveryMs: 50 })
    expect(back).toBe(true)
    // Rebuilt once: a fresh store, copied from every other replica, repaired, holding every row.
    expect(c.storesById.get('p1')!.rebuilt).toEqual([damaged])
    const fresh = c.store('p1', space, 0)!
    expect(fresh).not.toBe(damaged)
    expect(fresh.damaged).toMatchObject({ repaired: true, movedTo: expect.any(String) })
    expect(fresh.size()).toBe(101)
    expect(fresh.digestNow(64).root).toBe(c.store('p0', space, 0)!.digestNow(64).root)
    expect(fresh.peek('r7')?.row).toEqual({ id: 'r7', v: 7, note: 'n7' })
    for (const id of ['p0', 'p2']) expect(c.store(id, space, 0)!.peek('only-p1')?.version).toBe(onlyHere.version)
    const r = await drive(world, c.get('p1').replicator.read(space, 'r8', { consistency: 'one' }))
    expect(r.record?.row).toEqual({ id: 'r8', v: 8, note: 'n8' })
  })

  it('R = 1: the only replica keeps serving what it can read; a read of the damaged rows fails naming the file, and it is never marked repaired', async () => {
    const world = new SimWorld({ seed: 22 })
    const space = makeSpace('solo', 1, 1)
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(50), { consistency: 'all' }))
    const owner = ['p0', 'p1', 'p2'].find(id => c.store(id, space, 0)?.peek('r1') !== undefined)!
    const other = ['p0', 'p1', 'p2'].find(id => id !== owner)!
    const store = c.store(owner, space, 0)!
    store.corrupt(['r3'])

    const err = await drive(world, c.get(other).replicator.read(space, 'r3', { consistency: 'one' })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ReadIncompleteError)
    expect((err as Error).message).toMatch(/STORE_FAILED.*seg-00000001\.arrow/)
    expect(store.needsRepair()).toBe(true)
    await world.run(20_000)
    // Still the one store, still serving, never repaired: what the damaged block held is lost here.
    expect(c.storesById.get(owner)!.rebuilt).toEqual([])
    expect(c.get(owner).replicator.isReady(space, 0)).toBe(true)
    expect(store.damaged).toMatchObject({ repaired: false })
    const r = await drive(world, c.get(other).replicator.read(space, 'r4', { consistency: 'one' }))
    expect(r.record?.row).toEqual({ id: 'r4', v: 4, note: 'n4' })
  })

  it('a replica that a damaged segment keeps from opening after a restart is rebuilt from the others; with none it stays out of service, never emptied', async () => {
    const world = new SimWorld({ seed: 23 })
    const space = makeSpace('things', 1, 3)
    const solo = makeSpace('solo', 1, 1)
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    c.spaces.push(solo)
    await world.run(10_000)
    await drive(world, c.get('p0').replicator.write(space, rowsOf(100), { consistency: 'all' }))
    await drive(world, c.get('p0').replicator.write(solo, rowsOf(10), { consistency: 'all' }))
    const soloOwner = ['p0', 'p1', 'p2'].find(id => c.store(id, solo, 0)?.peek('r1') !== undefined)!
    const victim = soloOwner === 'p2' ? 'p1' : 'p2'
    c.crash(victim)
    c.crash(soloOwner)
    const file = (name: string): SegmentCorruptError => new SegmentCorruptError(`${name}/seg-00000003.idx`, 'bad batch directory: CRC mismatch')
    c.storesById.get(victim)!.openFails.set(MemoryStores.key(space, 0), file('things'))
    c.storesById.get(soloOwner)!.openFails.set(MemoryStores.key(solo, 0), file('solo'))
    const bootstrap = ['p0', 'p1', 'p2'].find(id => id !== victim && id !== soloOwner)!
    c.add(victim, bootstrap)
    c.add(soloOwner, bootstrap)

    const back = await world.runUntil(() => c.get(victim).replicator.isReady(space, 0), { maxMs: 60_000, checkEveryMs: 50 })
    expect(back).toBe(true)
    const fresh = c.store(victim, space, 0)!
    expect(fresh.damaged).toMatchObject({ file: 'things/seg-00000003.idx', repaired: true })
    expect(fresh.size()).toBe(100)
    expect(fresh.digestNow(64).root).toBe(c.store(bootstrap, space, 0)!.digestNow(64).root)

    // The only replica of `solo` cannot open and nothing can rebuild it: not ready, never emptied.
    await world.run(20_000)
    expect(c.get(soloOwner).replicator.isReady(solo, 0)).toBe(false)
    expect(c.storesById.get(soloOwner)!.openFails.size).toBe(1)
    expect(c.store(soloOwner, solo, 0)!.size()).toBe(10)
    expect(c.storesById.get(soloOwner)!.rebuilt).toEqual([])
    // A read fails (the partition has no ready replica) rather than answer "not found".
    const err = await drive(world, c.get(bootstrap).replicator.read(solo, 'r1', { consistency: 'one' })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
  })
})
