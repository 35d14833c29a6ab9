/**
 * Hinted handoff in the simulator: hints to one failing partition of a target do not hold back
 * that target's other partitions.
 */
import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'

describe('hinted handoff', () => {
  it("hints to a replica whose one partition fails still reach the target's other partitions", async () => {
    const world = new SimWorld({ seed: 31 })
    const space = makeSpace('hinted', 4, 3)
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0, hintReplayIntervalMs: 2000, catchUpRetryMs: 2000 })
    const p0 = c.get('p0')
    c.crash('p2')
    await world.runUntil(() => !p0.detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    // The failing partition's hint first in p2's queue, then hints for every partition.
    const rows = [...Array(40).keys()].map(i => ({ id: `h${i}`, v: i, note: 'hinted' }))
    const failing = p0.placement.partitionOf(space, 'h0')
    await drive(world, p0.replicator.write(space, rows.slice(0, 1)))
    await drive(world, p0.replicator.write(space, rows.slice(1)))
    const others = rows.slice(1).filter(r => p0.placement.partitionOf(space, r.id) !== failing)
    expect(new Set(others.map(r => p0.placement.partitionOf(space, r.id))).size).toBe(space.partitions - 1)
    const heldBefore = p0.replicator.stats().hints
    expect(heldBefore.pendingRecords).toBe(40)

    // p2 comes back with its replica of that partition failing every write (a failed disk).
    c.store('p2', space, failing)!.failWith = new Error('EIO: i/o error, write (test)')
    c.add('p2', 'p0')
    const othersDelivered = (): boolean => p0.replicator.stats().hints.deliveredRecords >= others.length
    const ok = await world.runUntil(othersDelivered, { maxMs: 60_000, checkEveryMs: 100 })
    const hints = p0.replicator.stats().hints
    expect(ok ? 'delivered' : `${hints.deliveredRecords} of ${others.length} records to the healthy partitions delivered; ${hints.pendingRecords} pending`).toBe('delivered')
    // The failing partition's hints stay, to be retried; once its replica works again they go too.
    expect(hints.pendingRecords).toBe(40 - others.length)
    c.store('p2', space, failing)!.failWith = undefined
    expect(await world.runUntil(() => p0.replicator.stats().hints.pending === 0, { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    for (const r of rows) expect(c.store('p2', space, p0.placement.partitionOf(space, r.id))?.peek(r.id)?.row).toMatchObject(r)
  })
})

describe('hinted handoff: hint files', () => {
  it('hints survive a power loss of their coordinator and are delivered after its restart', async () => {
    const world = new SimWorld({ seed: 37 })
    const space = makeSpace('durable', 4, 3)
    const c = new ReplCluster(world, { antiEntropyIntervalMs: 0, hintReplayIntervalMs: 2000 })
    c.spaces.push(space)
    await c.addWithHintFiles('p0')
    c.add('p1', 'p0')
    c.add('p2', 'p0')
    await c.settle(['p0', 'p1', 'p2'])
    c.crash('p2')
    await world.runUntil(() => !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    const rows = [...Array(30).keys()].map(i => ({ id: `d${i}`, v: i, note: 'hinted' }))
    await drive(world, c.get('p0').replicator.write(space, rows, { consistency: 'quorum' }))
    expect(c.get('p0').replicator.stats().hints.pendingRecords).toBe(30)

    // A power cut right after the answer: the coordinator's disk keeps only what it synced.
    c.crash('p0', { powerLoss: true })
    await world.run(1000)
    const p0 = await c.addWithHintFiles('p0', 'p1')
    const held = p0.replicator.stats().hints
    expect(held.pendingRecords, 'hinted records held after the restart').toBe(30)
    expect(held.loadedRecords).toBe(30)

    c.add('p2', 'p1')
    expect(await world.runUntil(() => p0.replicator.stats().hints.pending === 0, { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    expect(p0.replicator.stats().hints).toMatchObject({ deliveredRecords: 30, dropped: 0, diskBytes: 0 })
    // Delivered, the files are gone.
    expect([...c.disks.get('p0')!.files('/data/hints').keys()]).toEqual([])
    for (const r of rows) expect(c.store('p2', space, p0.placement.partitionOf(space, r.id))?.peek(r.id)?.row).toMatchObject(r)
  })

  it('a write whose replica failed is answered only once that replica\'s hint is synced', async () => {
    const world = new SimWorld({ seed: 41 })
    const space = makeSpace('synced', 1, 3)
    const c = new ReplCluster(world, { antiEntropyIntervalMs: 0 })
    c.spaces.push(space)
    await c.addWithHintFiles('p0')
    c.add('p1', 'p0')
    c.add('p2', 'p0')
    await c.settle(['p0', 'p1', 'p2'])
    c.crash('p2')
    await world.runUntil(() => !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    const release = c.disks.get('p0')!.holdSyncs()
    let answered = false
    const write = c.get('p0').replicator.write(space, [{ id: 'w', v: 1, note: 'slow disk' }], { consistency: 'quorum' })
      .then(res => { answered = true; return res })
    await world.run(2000)
    // p0 and p1 acknowledged long ago; the answer waits for p2's hint to be durable.
    expect(c.store('p1', space, 0)?.peek('w')).toBeDefined()
    expect(answered).toBe(false)
    release()
    const res = await drive(world, write)
    expect(res.partitions[0]).toMatchObject({ acks: 2, hinted: 1 })
  })
})
