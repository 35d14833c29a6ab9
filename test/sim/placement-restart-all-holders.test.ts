/**
 * Every holder of a partition restarted, one after another, none caught up in between: nobody
 * announces it ready any more, and it used to pass for fresh. The first owner to run its catch-up
 * then took its own copy for the whole partition, and reads answered from it alone. A Jepsen
 * ci-kills run lost 7 acknowledged adds so (replicas 3): n4 was killed, restarted and killed
 * again before it caught up; n5 restarted while n2 was alive, n2 died before n5 had caught up
 * from it; n4 came back; then n2 restarted, replacing the last ready announcement, and n4, which
 * held the least, marked the partition ready with no source and answered the final reads alone.
 *
 * Whole peers (real Swim, catalog, placement, replication) in virtual time, that schedule.
 */
import { describe, expect, it } from 'vitest'
import { PartitionUnavailableError, ReadIncompleteError } from '../../src/replication/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import type { WholeNode } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const opts = {
  swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 5_000 },
  placement: { deadOwnerTimeoutMs: 300_000 },
  replication: { antiEntropyIntervalMs: 0, releaseGraceMs: 2_000, catchUpRetryMs: 3_000 }
}
const schema = [{ name: 'v', type: 'int32' as const, nullable: true }]

type Outcome = 'ok' | 'wrong' | 'missing' | 'unavailable' | 'incomplete' | 'error'

async function readRow (world: SimWorld, coord: WholeNode, space: SpaceDef, id: string, v: number, consistency: 'quorum' | 'all'): Promise<Outcome> {
  try {
    const r = await drive(world, coord.replicator.read(space, id, { consistency }))
    if (r.record === undefined) return 'missing'
    return r.record.row?.v === v ? 'ok' : 'wrong'
  } catch (err) {
    return err instanceof PartitionUnavailableError ? 'unavailable' : err instanceof ReadIncompleteError ? 'incomplete' : 'error'
  }
}

async function restartAllHolders (seed: number): Promise<void> {
  const world = new SimWorld({ seed })
  const c = await WholeCluster.form(world, 5, opts)
  c.get('p0').catalog.create({ name: 'set', schema, partitions: 8, replicas: 3 })
  expect(await world.runUntil(() => c.settled('set'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  const space = spaceOn(c.get('p0'), 'set')
  expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)

  const P = 5
  // n4, n2 and n5 of the Jepsen run.
  const [n4, n2, n5] = c.get('p0').placement.ownersOf(space, P) as [string, string, string]
  const [o1, o2] = ['p0', 'p1', 'p2', 'p3', 'p4'].filter(id => ![n4, n2, n5].includes(id)) as [string, string]
  const ids = [...Array(600).keys()].map(i => `r${i}`).filter(id => c.get('p0').placement.partitionOf(space, id) === P).slice(0, 12)
  expect(ids.length).toBe(12)
  const dead = (id: string, seenBy: string): boolean => c.get(seenBy).swim.member(id)?.state === 'dead'

  // n4 is down while n2 (the coordinator, whose hint for n4 dies with it) and n5 take the writes.
  c.crash(n4)
  const res = await drive(world, c.get(n2).replicator.write(space, ids.map((id, i) => ({ id, v: i })), { consistency: 'quorum' }))
  expect(res.written).toBe(ids.length)
  expect(await world.runUntil(() => dead(n4, o1), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)

  // n4 restarts, and is killed with n5 as soon as the cluster has heard of its new life: its
  // restart replaced its ready announcement, and it never caught up.
  const before = c.get(o1).swim.member(n4)!.incarnation
  c.add(n4, o1)
  expect(await world.runUntil(() => (c.get(o1).swim.member(n4)?.incarnation ?? 0) > before && c.get(o1).swim.member(n4)?.state === 'alive',
    { maxMs: 30_000, checkEveryMs: 10 })).toBe(true)
  expect(c.get(n4).replicator.isReady(space, P)).toBe(false)
  c.crash(n4)
  c.crash(n5)
  expect(await world.runUntil(() => dead(n4, o1) && dead(n5, o1), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)

  // n5 restarts while n2 is up; n2 dies before n5 has caught up from it.
  c.add(n5, o1)
  c.crash(n2)
  expect(await world.runUntil(() => dead(n2, o1) && dead(n2, n5), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
  expect(c.get(n5).replicator.isReady(space, P)).toBe(false)

  // n4 comes back; then n2, whose restart replaces the last ready announcement of P.
  c.add(n4, o1)
  await world.run(5_000)
  expect(c.get(n4).replicator.isReady(space, P)).toBe(false)
  c.add(n2, o2)
  // n2 is slow to open its storage (a loaded machine) and n5 waits for its next catch-up retry:
  // n4, which holds the least, runs its catch-up first.
  world.stall(n2, 8_000)
  world.stall(n5, 8_000)

  // From the moment an owner is ready and the others have heard it, reads through any peer
  // answer every row, or fail saying so; never without a row.
  const owners = [n4, n2, n5]
  const everyoneReady = (): boolean => owners.every(o => c.get(o).peer.up && c.get(o).replicator.isReady(space, P))
  let firstReady: string | undefined
  expect(await world.runUntil(() => {
    firstReady ??= owners.find(o => c.get(o).replicator.isReady(space, P))
    return firstReady !== undefined && c.get(o1).placement.locate(space, P).readReplicas.includes(firstReady)
  }, { maxMs: 120_000, checkEveryMs: 10 })).toBe(true)
  for (const coord of [c.get(o1), c.get(firstReady!)]) {
    for (const consistency of ['quorum', 'all'] as const) {
      for (const [i, id] of ids.entries()) {
        const got = await readRow(world, coord, space, id, i, consistency)
        expect(['ok', 'unavailable', 'incomplete'], `first ready ${firstReady}; ${coord.id} reads ${id} at ${consistency}`).toContain(got)
      }
    }
  }
  expect(await world.runUntil(everyoneReady, { maxMs: 120_000, checkEveryMs: 100 })).toBe(true)
  for (const coord of c.up()) {
    for (const [i, id] of ids.entries()) expect(await readRow(world, coord, space, id, i, 'quorum'), `${coord.id} reads ${id}`).toBe('ok')
  }
}

describe('a partition whose holders all restarted, none caught up in between', () => {
  it.each([1, 2, 3, 4])('is not fresh: its first ready owner took in every returning copy and the other owners (seed %i)', async (seed) => {
    await restartAllHolders(seed)
  })
})
