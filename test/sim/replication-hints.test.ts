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
