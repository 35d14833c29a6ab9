/**
 * A peer that restarts while holders of a partition are dead must still count those holders'
 * readiness. SWIM used to pass dead members on only to peers that already knew them, so the
 * restarted peer never heard of them, saw no holder at all, took the partition for fresh and
 * served its own stale copy as complete: a QUORUM read through it answered 404 for a write that
 * had been acknowledged at QUORUM (a Jepsen ci-kills run lost a write this way, replicas 3).
 * Whole peers (real Swim, catalog, placement, replication) in virtual time.
 */
import { describe, expect, it } from 'vitest'
import { PartitionUnavailableError } from '../../src/replication/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import type { WholeNode } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const opts = {
  swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 5_000 },
  // Long enough that no dead member stops owning during the test (the default is 5 min).
  placement: { deadOwnerTimeoutMs: 300_000 },
  replication: { antiEntropyIntervalMs: 0, releaseGraceMs: 2_000, catchUpRetryMs: 1_000 }
}
const schema = [{ name: 'v', type: 'int32' as const, nullable: true }]

type Outcome = 'ok' | 'wrong' | 'missing' | 'unavailable' | 'error'

async function readRow (world: SimWorld, coord: WholeNode, space: SpaceDef, id: string, v: number): Promise<Outcome> {
  try {
    const r = await drive(world, coord.replicator.read(space, id, { consistency: 'quorum' }))
    if (r.record === undefined) return 'missing'
    return r.record.row?.v === v ? 'ok' : 'wrong'
  } catch (err) {
    return err instanceof PartitionUnavailableError ? 'unavailable' : 'error'
  }
}

describe('a peer restarted while holders of a partition are dead', () => {
  it('does not take the partition for fresh: no QUORUM read answers 404 for an acknowledged write, and it comes back whole when a holder returns', async () => {
    const world = new SimWorld({ seed: 12 })
    const c = await WholeCluster.form(world, 5, opts)
    c.get('p0').catalog.create({ name: 'keep', schema, partitions: 16, replicas: 3 })
    expect(await world.runUntil(() => c.settled('keep'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    const space = spaceOn(c.get('p0'), 'keep')
    expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)

    const P = 0
    const [stale, a, b] = c.get('p0').placement.ownersOf(space, P) as [string, string, string]
    const others = ['p0', 'p1', 'p2', 'p3', 'p4'].filter(id => ![stale, a, b].includes(id))
    const ids = [...Array(400).keys()].map(i => `r${i}`).filter(id => c.get('p0').placement.partitionOf(space, id) === P).slice(0, 10)
    expect(ids.length).toBe(10)

    // One holder is down while the others acknowledge a QUORUM write; the coordinator is a holder
    // that dies next, so no hint brings the write to the stale copy later.
    c.crash(stale)
    const res = await drive(world, c.get(a).replicator.write(space, ids.map((id, i) => ({ id, v: i })), { consistency: 'quorum' }))
    expect(res.written).toBe(ids.length)
    c.crash(a)
    c.crash(b)
    expect(await world.runUntil(() => others.every(o => [stale, a, b].every(v => c.get(o).swim.member(v)?.state === 'dead')),
      { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)

    // The stale holder restarts while both other holders are dead.
    const back = c.add(stale, others[0])
    expect(await world.runUntil(() => back.swim.hasSynced(), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    await world.run(20_000)
    // Its copy lacks the write, and nothing it can reach has it: reads fail naming the partition
    // (never a 404), and it is not ready.
    for (const coord of [back, c.get(others[0]!)]) {
      for (const [i, id] of ids.entries()) expect(await readRow(world, coord, space, id, i), `${coord.id} reads ${id}`).toBe('unavailable')
    }
    expect(back.placement.locate(space, P).fresh).toBe(false)
    expect(back.replicator.isReady(space, P)).toBe(false)
    // It has heard of the dead holders (and so of what they announced).
    for (const v of [a, b]) expect(back.swim.member(v)?.state, `${stale} knows ${v}`).toBe('dead')

    // A holder that has the write returns: the partition is whole again, through every peer.
    c.add(a, others[0])
    // The returning holder with the write takes in the stale one's copy and is ready; the stale one
    // then catches up from it; every peer hears both announce it.
    expect(await world.runUntil(() => c.up().every(n => [a, stale].every(h => n.placement.locate(space, P).readReplicas.includes(h))),
      { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    for (const coord of c.up()) {
      for (const [i, id] of ids.entries()) expect(await readRow(world, coord, space, id, i), `${coord.id} reads ${id}`).toBe('ok')
    }
  })
})
