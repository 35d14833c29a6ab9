/**
 * Issue 13: hints kept for a replica that is down while their space is dropped (and a space of the
 * same name created again) are not delivered when it returns: delivered, they would re-create the
 * dropped space's data on it (its engine, restarted, does not know the uid was dropped). The
 * coordinator drops them (its catalog knows the space is gone), and a replica refuses writes for
 * a space its catalog knows is gone (SPACE_GONE), for a coordinator whose catalog is behind.
 */
import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'
import { METHOD_WRITE } from '../../src/replication/wire.js'

describe('hints of a dropped space', () => {
  it('are dropped, not delivered, when their target returns after the space was dropped and re-created', async () => {
    const world = new SimWorld({ seed: 5, flush: 'always' })
    const c = new WholeCluster(world, {
      swim: { pushPullIntervalMs: 2_000 },
      replication: { antiEntropyIntervalMs: 0, hintReplayIntervalMs: 500, requestTimeoutMs: 1000, catchUpRetryMs: 1000 },
      disks: {}
    })
    c.add('p0')
    c.add('p1', 'p0')
    c.add('p2', 'p0')
    c.get('p0').catalog.create({ name: 'gone', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions: 2, replicas: 3 })
    expect(await world.runUntil(() => c.up().length === 3 && c.settled('gone'), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const old = spaceOn(c.get('p0'), 'gone')
    expect(await world.runUntil(() => c.announced(old), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)

    c.crash('p2')
    await world.runUntil(() => !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    const rows = Array.from({ length: 20 }, (_, i) => ({ id: `h${i}`, v: i }))
    await drive(world, c.get('p0').replicator.write(old, rows, { consistency: 'quorum' }))
    expect(c.get('p0').replicator.stats().hints.pendingRecords).toBe(20)

    // Dropped and created again while p2 is down.
    c.get('p0').catalog.drop('gone')
    await world.run(2_000)
    c.get('p0').catalog.create({ name: 'gone', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions: 2, replicas: 3 })
    await world.run(2_000)
    c.add('p2', 'p0')
    expect(await world.runUntil(() => c.get('p0').replicator.stats().hints.pending === 0, { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const hints = c.get('p0').replicator.stats().hints
    expect(hints).toMatchObject({ droppedGone: 20, deliveredRecords: 0 })
    // p2 holds none of the hinted rows under the old uid: its replicas of it, from before its
    // crash, are deleted once it has synced (as a real peer does, src/peer/stack.ts), and no
    // hint re-created them.
    await world.run(5_000)
    const onDisk = await drive(world, c.get('p2').engine!.listOnDisk())
    expect(onDisk.filter(r => r.uid === old.uid)).toEqual([])
    expect(onDisk.some(r => r.uid === spaceOn(c.get('p2'), 'gone').uid)).toBe(true)

    // A replica refuses a write for a space it knows is gone, for good (SPACE_GONE).
    const refused = await drive(world, c.get('p0').peer.transport.request({ id: 'p1', addrs: [] }, METHOD_WRITE, { space: old, partition: 0, records: [], hlc: 0 }).catch((err: Error) => err))
    expect(refused).toMatchObject({ code: 'SPACE_GONE' })
    for (const n of c.up()) await n.engine?.close()
  }, 60_000)
})
