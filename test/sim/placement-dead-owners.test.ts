/**
 * Issue 13, "invented partitions": when every holder of a partition has been dead past
 * deadOwnerTimeoutMs, its new owners must not take it for a fresh (empty) partition. It stays
 * unavailable (reads fail naming it) until a holder returns, or until an operator removes the
 * holders on purpose, which gives their data up. Whole peers (real Swim, catalog, placement,
 * replication) in virtual time.
 */
import { describe, expect, it } from 'vitest'
import { PartitionUnavailableError } from '../../src/replication/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import type { WholeNode } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const TIMEOUT_MS = 30_000
const opts = {
  swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 5_000 },
  placement: { deadOwnerTimeoutMs: TIMEOUT_MS },
  replication: { antiEntropyIntervalMs: 0, releaseGraceMs: 2_000, catchUpRetryMs: 1_000 }
}
const schema = [{ name: 'v', type: 'int32' as const, nullable: true }]
const ROWS = 200

type Outcome = 'ok' | 'wrong' | 'missing' | 'unavailable' | 'error'

/** A QUORUM read of row `i` through `coord`: its value, a 404, or a 503. */
async function readRow (world: SimWorld, coord: WholeNode, space: SpaceDef, i: number): Promise<Outcome> {
  try {
    const r = await drive(world, coord.replicator.read(space, `r${i}`, { consistency: 'quorum' }))
    if (r.record === undefined) return 'missing'
    return r.record.row?.v === i ? 'ok' : 'wrong'
  } catch (err) {
    return err instanceof PartitionUnavailableError ? 'unavailable' : 'error'
  }
}

async function readAll (world: SimWorld, coord: WholeNode, space: SpaceDef): Promise<Map<number, Outcome[]>> {
  const byPartition = new Map<number, Outcome[]>()
  for (let i = 0; i < ROWS; i++) {
    const p = coord.placement.partitionOf(space, `r${i}`)
    const out = await readRow(world, coord, space, i)
    byPartition.set(p, [...(byPartition.get(p) ?? []), out])
  }
  return byPartition
}

/** Five peers, a space of 16 partitions × 2 replicas, 200 rows at QUORUM; the two owners of partition 0 are the victims. */
async function setUp (seed: number): Promise<{ world: SimWorld, c: WholeCluster, space: SpaceDef, victims: string[], survivors: string[], lost: number[] }> {
  const world = new SimWorld({ seed })
  const c = await WholeCluster.form(world, 5, opts)
  c.get('p0').catalog.create({ name: 'keep', schema, partitions: 16, replicas: 2 })
  expect(await world.runUntil(() => c.settled('keep'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  const space = spaceOn(c.get('p0'), 'keep')
  expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  const victims = c.get('p0').placement.ownersOf(space, 0)
  const survivors = ['p0', 'p1', 'p2', 'p3', 'p4'].filter(id => !victims.includes(id))
  const coord = c.get(survivors[0]!)
  await drive(world, coord.replicator.write(space, [...Array(ROWS).keys()].map(i => ({ id: `r${i}`, v: i })), { consistency: 'quorum' }))
  // The partitions whose every copy is on the victims.
  const lost = [...Array(16).keys()].filter(p => coord.placement.ownersOf(space, p).every(o => victims.includes(o)))
  expect(lost).toContain(0)
  for (const v of victims) c.crash(v)
  // Dead everywhere, then past the timeout: the survivors (a majority of 3 of 5) move ownership.
  expect(await world.runUntil(() => survivors.every(s => victims.every(v => c.get(s).swim.member(v)?.state === 'dead')), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
  expect(await world.runUntil(() => survivors.every(s => c.get(s).placement.members().join(',') === survivors.join(',')), { maxMs: TIMEOUT_MS + 10_000, checkEveryMs: 100 })).toBe(true)
  // Long enough for new owners to have caught up (or, before the fix, to have marked it fresh).
  await world.run(10_000)
  return { world, c, space, victims, survivors, lost }
}

describe('partitions whose holders are all gone (issue 13)', () => {
  it('stay unavailable past deadOwnerTimeoutMs (never fresh, never a 404), and come back when a holder returns', async () => {
    const { world, c, space, victims, survivors, lost } = await setUp(5)
    // No read answers 404 for a written row: 503 for the partitions only the victims held.
    const during = await readAll(world, c.get(survivors[1]!), space)
    for (const [p, outcomes] of during) {
      if (lost.includes(p)) expect(outcomes.every(o => o === 'unavailable'), `partition ${p}: ${outcomes.join(',')}`).toBe(true)
      else expect(outcomes.every(o => o === 'ok'), `partition ${p}: ${outcomes.join(',')}`).toBe(true)
    }

    for (const s of survivors) {
      const n = c.get(s)
      for (const p of lost) {
        const pp = n.placement.locate(space, p)
        // Not fresh: nobody may start it over empty.
        expect(pp.fresh, `${s} partition ${p}`).toBe(false)
        // Its owners moved to live peers, but they have nothing to catch up from: not ready.
        expect(pp.owners.every(o => survivors.includes(o))).toBe(true)
        expect(pp.readReplicas.every(r => victims.includes(r))).toBe(true)
        for (const o of pp.owners) expect(c.get(o).replicator.isReady(space, p)).toBe(false)
      }
    }
    // One holder comes back with its data: the partitions it held are readable again, whole.
    c.add(victims[0]!, survivors[0])
    const back = c.get(victims[0]!)
    expect(await world.runUntil(() => c.get(survivors[1]!).swim.member(back.id)?.state === 'alive' &&
      lost.every(p => back.replicator.isReady(space, p) && c.get(survivors[1]!).placement.locate(space, p).readReplicas.includes(back.id)),
    { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const after = await readAll(world, c.get(survivors[1]!), space)
    for (const [p, outcomes] of after) expect(outcomes.every(o => o === 'ok'), `partition ${p}: ${outcomes.join(',')}`).toBe(true)
  })

  it('remove-peer: lists what it gives up, then the partitions are fresh (empty) on their new owners', async () => {
    const { world, c, space, victims, survivors, lost } = await setUp(9)
    const op = c.get(survivors[0]!)
    // Each victim's copies are shared with the other: removing the first gives up nothing yet.
    expect(op.placement.partitionsOnlyOn(victims[0]!)).toEqual([])
    expect(op.swim.forceRemove(victims[0]!)).toMatchObject({ state: 'left', removed: true })
    expect(op.placement.partitionsOnlyOn(victims[1]!).map(x => x.partition)).toEqual(expect.arrayContaining(lost))
    // Still unavailable: the second holder may come back.
    expect(op.placement.locate(space, lost[0]!).fresh).toBe(false)
    op.swim.forceRemove(victims[1]!)
    // The removal spreads; every survivor then takes those partitions as fresh: their owners are
    // ready at once with nothing, announce it, and serve them (empty).
    expect(await world.runUntil(() => survivors.every(s => lost.every(p => {
      const pp = c.get(s).placement.locate(space, p)
      return pp.owners.every(o => c.get(o).replicator.isReady(space, p)) && [...pp.readReplicas].sort().join() === [...pp.owners].sort().join()
    })), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    const after = await readAll(world, c.get(survivors[2]!), space)
    for (const [p, outcomes] of after) {
      const want: Outcome = lost.includes(p) ? 'missing' : 'ok'
      expect(outcomes.every(o => o === want), `partition ${p}: ${outcomes.join(',')}`).toBe(true)
    }
  })
})
