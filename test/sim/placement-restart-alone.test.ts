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
