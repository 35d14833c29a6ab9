import { describe, expect, it } from 'vitest'
import { hlcPhysicalMs, makeHlc } from '../../src/hlc/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import type { VersionedRecord } from '../../src/storage/index.js'
import { SimWorld } from './index.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'
import type { ReplNode } from './replication-cluster.js'

/**
 * Issue 13: a version from far in the future (stamped by a peer whose clock ran ahead) must not
 * reach other replicas by the side doors, anti-entropy, catch-up, read repair and hint replay,
 * any more than by a write, which replicas refuse past the skew bound (60 s by default). Applied,
 * it would win every later write to its id until real time caught up.
 */

/** Ten minutes ahead of `node`'s clock: far past the 60 s bound. */
const AHEAD_MS = 10 * 60_000

const future = (node: ReplNode, id: string, v: number): VersionedRecord =>
  ({ id, version: makeHlc(hlcPhysicalMs(node.hlc.now()) + AHEAD_MS, 0), deleted: false, row: { id, v, note: 'from the future' } })
const present = (node: ReplNode, id: string, v: number): VersionedRecord =>
  ({ id, version: node.hlc.now(), deleted: false, row: { id, v, note: 'now' } })

/** One partition, so every id of a test lands in the same one. */
const onePartition = (): SpaceDef => makeSpace('skewed', 1, 3)

describe('replication: versions past the skew bound stay where they are', () => {
  it('anti-entropy neither pulls nor pushes them, counts and passes on the rest, and takes them once real time catches up', async () => {
    const world = new SimWorld({ seed: 131 })
    const space = onePartition()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 1000 })
    const p0 = c.get('p0')
    const f = future(p0, 'f', 1)
    await c.store('p0', space, 0)!.apply([f, present(p0, 'g', 2)])
    // Rounds both ways between every pair: p1 and p2 pull from p0, p0 pushes to them.
    await world.run(30_000)
    for (const id of ['p1', 'p2']) {
      expect(c.store(id, space, 0)!.peek('g')?.row).toMatchObject({ v: 2 })
      expect(c.store(id, space, 0)!.peek('f')).toBeUndefined()
    }
    const refusals = c.get('p1').hlc.skew.count + c.get('p2').hlc.skew.count + p0.hlc.skew.count
    expect(refusals).toBeGreaterThan(0)
    // Once real time is within the bound of its version, the record is offered again and taken.
    await world.run(AHEAD_MS)
    for (const id of ['p1', 'p2']) expect(c.store(id, space, 0)!.peek('f')?.version).toBe(f.version)
  })

  it('catch-up streams the rest of a partition to a new owner, not them', async () => {
    const world = new SimWorld({ seed: 132 })
    const space = onePartition()
    const c = await ReplCluster.form(world, 2, space, { antiEntropyIntervalMs: 0 })
    for (const id of ['p0', 'p1']) {
      const n = c.get(id)
      await c.store(id, space, 0)!.apply([future(n, 'f', 1), present(n, 'g', 2)])
    }
    c.add('p2', 'p0')
    await c.settle(['p0', 'p1', 'p2'])
    const p2 = c.get('p2')
    expect(p2.replicator.stats().catchUp.recordsStreamed).toBeGreaterThan(0)
    expect(c.store('p2', space, 0)!.peek('g')?.row).toMatchObject({ v: 2 })
    expect(c.store('p2', space, 0)!.peek('f')).toBeUndefined()
    expect(p2.hlc.skew.count).toBeGreaterThan(0)
  })

  it('read repair neither returns nor repairs one: the answer holding it counts as failed', async () => {
    const world = new SimWorld({ seed: 133 })
    const space = onePartition()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    const p0 = c.get('p0')
    await drive(world, p0.replicator.write(space, [{ id: 'k', v: 1, note: 'real' }], { consistency: 'all' }))
    const real = c.store('p0', space, 0)!.peek('k')!
    await c.store('p1', space, 0)!.apply([future(c.get('p1'), 'k', 666)])
    // ALL cannot be met: one replica holds a version this coordinator refuses.
    const all = await drive(world, p0.replicator.read(space, 'k', { consistency: 'all' })).catch(e => e as Error)
    expect(all).toBeInstanceOf(Error)
    expect((all as Error).message).toContain('CLOCK_SKEW')
    // QUORUM is met by the other two, and answers what they hold.
    const quorum = await drive(world, p0.replicator.read(space, 'k', { consistency: 'quorum' }))
    expect(quorum.record?.row).toMatchObject({ v: 1 })
    await world.run(1000)
    expect(c.store('p0', space, 0)!.peek('k')).toEqual(real)
    expect(c.store('p2', space, 0)!.peek('k')).toEqual(real)
    expect(p0.hlc.skew.count).toBeGreaterThan(0)
    // Coordinated by the peer that holds it, a QUORUM read cannot repair the others with it.
    const there = await drive(world, c.get('p1').replicator.read(space, 'k', { consistency: 'quorum' })).catch(e => e as Error)
    expect((there as Error).name).toBe('ReadIncompleteError')
    expect(c.store('p2', space, 0)!.peek('k')).toEqual(real)
  })

  it('hint replay leaves them out and delivers the hints behind them', async () => {
    const world = new SimWorld({ seed: 134 })
    const space = onePartition()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0, hintReplayIntervalMs: 2000 })
    const p0 = c.get('p0')
    c.crash('p2')
    // A hint holding a record from the future, first in p2's queue (as a coordinator whose clock
    // ran ahead and was set right would hold one).
    const f = future(p0, 'f', 1)
    p0.replicator.hints.add({ target: 'p2', space, partition: 0, records: [f], createdAt: p0.peer.clock.now(), bytes: 100 })
    await drive(world, p0.replicator.write(space, [{ id: 'g', v: 2, note: 'hinted' }], { consistency: 'quorum' }))
    expect(p0.replicator.stats().hints.pendingRecords).toBe(2)
    c.add('p2', 'p0')
    const drained = await world.runUntil(() => p0.replicator.stats().hints.pending === 0, { maxMs: 60_000, checkEveryMs: 100 })
    expect(drained).toBe(true)
    expect(c.store('p2', space, 0)!.peek('g')?.row).toMatchObject({ v: 2 })
    expect(c.store('p2', space, 0)!.peek('f')).toBeUndefined()
    const hints = p0.replicator.stats().hints
    expect(hints.droppedSkewRecords).toBe(1)
    expect(hints.deliveredRecords).toBe(1)
  })
})

describe('replication: a write that loses everywhere says so', () => {
  it('answers stale, with the ids, for records every acknowledging replica held newer', async () => {
    const world = new SimWorld({ seed: 135 })
    const space = onePartition()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    // A version 30 s ahead (within the bound: a skewed writer's) on every replica.
    const ahead = makeHlc(hlcPhysicalMs(c.get('p0').hlc.now()) + 30_000, 0)
    for (const id of ['p0', 'p1', 'p2']) await c.store(id, space, 0)!.apply([{ id: 'k', version: ahead, deleted: false, row: { id: 'k', v: 9, note: 'ahead' } }])
    const res = await drive(world, c.get('p1').replicator.write(space, [{ id: 'k', v: 1, note: 'lost' }, { id: 'n', v: 2, note: 'new' }], { consistency: 'all' }))
    expect(res.written).toBe(2)
    expect(res.stale).toBe(1)
    expect(res.staleIds).toEqual(['k'])
    // Stale on only some replicas is not stale: the write reached the newest there.
    await c.store('p2', space, 0)!.apply([{ id: 'm', version: ahead, deleted: false, row: { id: 'm', v: 9, note: 'ahead' } }])
    const partly = await drive(world, c.get('p1').replicator.write(space, [{ id: 'm', v: 1, note: 'x' }], { consistency: 'all' }))
    expect(partly.stale).toBe(0)
    expect(partly.staleIds).toEqual([])
  })
})
