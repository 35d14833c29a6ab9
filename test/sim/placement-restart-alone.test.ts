/**
 * A peer that is the only owner and holder of its partitions (a one-peer cluster, replicas 1)
 * restarts: every partition on its disk is returning, not fresh, so it serves each only once its
 * catch-up has opened the store. Those catch-ups talk to nobody, and catchUpConcurrency (which
 * bounds the catch-ups that stream from other peers) must not queue them one by one: a real peer
 * with 1,024 such partitions answered its first full count 6-7 s after a restart that way, over
 * 30 s in a loaded CI run (docs/operations.md, "Limits a peer enforces").
 *
 * Whole peers on simulated disks; the disk holds every fsync until released (a slow disk), so
 * the catch-ups opening their stores are all seen under way at once, or one at a time.
 */
import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const PARTITIONS = 32

describe('a restarted peer alone with its partitions', () => {
  it('opens them all at once, not catchUpConcurrency at a time, and serves every row after', async () => {
    const world = new SimWorld({ seed: 5 })
    const c = await WholeCluster.form(world, 1, {
      disks: {},
      replication: { antiEntropyIntervalMs: 0, catchUpConcurrency: 1 }
    })
    c.get('p0').catalog.create({ name: 'solo', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions: PARTITIONS, replicas: 1 })
    expect(await world.runUntil(() => c.settled('solo'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    const space = spaceOn(c.get('p0'), 'solo')
    expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    const rows = [...Array(400).keys()].map(i => ({ id: `r${i}`, v: i }))
    expect((await drive(world, c.get('p0').replicator.write(space, rows, { consistency: 'all' }))).written).toBe(rows.length)

    c.crash('p0')
    const release = c.disks.get('p0')!.holdSyncs()
    const p0 = c.add('p0')
    let mostRunning = 0
    await world.runUntil(() => {
      mostRunning = Math.max(mostRunning, p0.replicator.stats().catchUp.running)
      return false
    }, { maxMs: 5_000, checkEveryMs: 10 })
    // Every partition's catch-up under way together, each waiting on the disk.
    expect(mostRunning).toBe(PARTITIONS)
    release()
    expect(await world.runUntil(() => [...Array(PARTITIONS).keys()].every(p => p0.replicator.isReady(space, p)), { maxMs: 10_000, checkEveryMs: 10 })).toBe(true)
    for (const r of rows.filter((_, i) => i % 10 === 0)) {
      expect((await drive(world, p0.replicator.read(space, r.id, { consistency: 'all' }))).record?.row).toMatchObject({ v: r.v })
    }
  })
})

describe('a restarted peer with many partitions to catch up from others', () => {
  // Every catch-up's end pumps the queue. It used to scan every waiting job, asking placement
  // whether each needed another peer: O(N) lookups a completion, O(N²) for a restart with N
  // partitions queued. Counted here as lookups (placement.locate) per partition caught up.
  it('starts each queued catch-up without scanning the whole queue at every completion', async () => {
    const partitions = 256
    const world = new SimWorld({ seed: 7 })
    const c = await WholeCluster.form(world, 3, { replication: { antiEntropyIntervalMs: 0, catchUpConcurrency: 1 } })
    c.get('p0').catalog.create({ name: 'many', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions, replicas: 3 })
    expect(await world.runUntil(() => c.settled('many'), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const space = spaceOn(c.get('p0'), 'many')
    expect(await world.runUntil(() => c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    c.crash('p2')
    await world.run(2_000)
    const p2 = c.add('p2')
    let lookups = 0
    const locate = p2.placement.locate.bind(p2.placement)
    p2.placement.locate = (s, p) => { lookups++; return locate(s, p) }
    expect(await world.runUntil(() => [...Array(partitions).keys()].every(p => p2.replicator.isReady(space, p)), { maxMs: 120_000, checkEveryMs: 50 })).toBe(true)
    const perPartition = lookups / partitions
    console.log(`catch-up of ${partitions} partitions, catchUpConcurrency 1: ${lookups} placement lookups (${perPartition.toFixed(1)} a partition)`)
    // A scan of the waiting jobs at every completion would be ~partitions / 2 a partition (128 here).
    expect(perPartition).toBeLessThan(32)
  })
})
