/**
 * Issue 13, "a graceful leave hands nothing off": a peer that decommissions first hands every
 * partition it holds to its next owners (they catch up from it, as after a join, and it pushes
 * them what they lack), waits until they are ready, then leaves. With replicas 1 its copies are
 * the only ones: without the hand-off every partition it held would be unavailable once it left.
 * Whole peers (real Swim, catalog, placement, replication) in virtual time.
 */
import { describe, expect, it } from 'vitest'
import { METHOD_WRITE, PartitionUnavailableError } from '../../src/replication/index.js'
import type { HandOffEvent } from '../../src/replication/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld, simAddress } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import type { WholeNode } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

const opts = {
  swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 5_000 },
  replication: { antiEntropyIntervalMs: 0, releaseGraceMs: 60_000, catchUpRetryMs: 1_000 }
}
const schema = [{ name: 'v', type: 'int32' as const, nullable: true }]
const ROWS = 300

async function setUp (seed: number, replicas: number): Promise<{ world: SimWorld, c: WholeCluster, space: SpaceDef }> {
  const world = new SimWorld({ seed })
  const c = await WholeCluster.form(world, 3, opts)
  c.get('p0').catalog.create({ name: 'kept', schema, partitions: 16, replicas })
  expect(await world.runUntil(() => c.settled('kept'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  const space = spaceOn(c.get('p0'), 'kept')
  expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
  await drive(world, c.get('p0').replicator.write(space, [...Array(ROWS).keys()].map(i => ({ id: `r${i}`, v: i })), { consistency: 'quorum' }))
  return { world, c, space }
}

/** What peer.ts does on SIGTERM or `shoal decommission`: hand off, leave, last push, stop. */
async function decommission (world: SimWorld, c: WholeCluster, node: WholeNode, timeoutMs: number, events: HandOffEvent[] = []): ReturnType<WholeNode['replicator']['handOff']> {
  const report = await drive(world, node.replicator.handOff({ timeoutMs, onProgress: ev => { events.push(ev) } }), timeoutMs + 10_000)
  await drive(world, node.swim.leave(2_000))
  await drive(world, node.replicator.finishHandOff({ timeoutMs: 5_000 }))
  c.crash(node.id)
  return report
}

/** Reads every acknowledged row at ALL through `coord`: the failures, as text. */
async function readAll (world: SimWorld, coord: WholeNode, space: SpaceDef, acked: Map<string, number>): Promise<string[]> {
  const wrong: string[] = []
  for (const [id, v] of acked) {
    try {
      const r = await drive(world, coord.replicator.read(space, id, { consistency: 'all' }))
      if (r.record?.row?.v !== v) wrong.push(`${id}: got ${String(r.record?.row?.v)} want ${v}`)
    } catch (err) {
      wrong.push(`${id}: ${err instanceof PartitionUnavailableError ? 'unavailable' : (err as Error).message}`)
    }
  }
  return wrong
}

describe('decommission (issue 13)', () => {
  it('replicas 1: hands every partition the leaving peer held to its next owners before it leaves; nothing is unavailable or lost, writes during the hand-off included', async () => {
    const { world, c, space } = await setUp(3, 1)
    const leaver = c.get('p1')
    const held = leaver.placement.ownedPartitions().map(o => o.partition)
    expect(held.length).toBeGreaterThan(0)
    const acked = new Map([...Array(ROWS).keys()].map(i => [`r${i}`, i]))

    // Writes through every peer, the leaving one too, all through the hand-off.
    let writing = true
    let n = 0
    const writer = (async () => {
      while (writing) {
        const coord = ['p0', 'p1', 'p2'][n % 3]!
        const id = `w${n}`
        const v = 10_000 + n++
        try {
          await c.get(coord).replicator.write(space, [{ id, v }], { consistency: n % 2 === 0 ? 'one' : 'quorum' })
          acked.set(id, v)
        } catch { /* not acknowledged: not checked */ }
        await new Promise<void>(resolve => { world.schedule(10, resolve) })
      }
    })()

    const events: HandOffEvent[] = []
    const report = await decommission(world, c, leaver, 60_000, events)
    writing = false
    await drive(world, writer)
    expect(report.complete, JSON.stringify(report.notHandedOff)).toBe(true)
    expect(report.total).toBe(held.length)
    expect(report.handedOff.map(h => h.partition).sort((a, b) => a - b)).toEqual(held.sort((a, b) => a - b))
    expect(events[0]).toMatchObject({ event: 'started', partitions: held.length })
    expect(events.filter(e => e.event === 'handed-off')).toHaveLength(held.length)
    expect(n).toBeGreaterThan(20)

    // The two that stay see it left, own everything, and serve every acknowledged row.
    for (const id of ['p0', 'p2']) expect(await world.runUntil(() => c.get(id).swim.member('p1')?.state === 'left', { maxMs: 10_000, checkEveryMs: 50 })).toBe(true)
    for (let p = 0; p < space.partitions; p++) {
      const pp = c.get('p0').placement.locate(space, p)
      expect(pp.owners).not.toContain('p1')
      expect(pp.readReplicas).toEqual(pp.owners)
    }
    expect(await readAll(world, c.get('p0'), space, acked)).toEqual([])
    expect(await readAll(world, c.get('p2'), space, acked)).toEqual([])
  })

  it('a write the leaving peer alone acknowledged after its hand-off (a coordinator that had not heard) reaches the new owners by the last push; after the leave it takes no more', async () => {
    const { world, c, space } = await setUp(4, 1)
    const leaver = c.get('p1')
    const p = leaver.placement.ownedPartitions()[0]!.partition
    const report = await drive(world, leaver.replicator.handOff({ timeoutMs: 60_000 }), 70_000)
    expect(report.complete).toBe(true)
    const newOwner = leaver.placement.locate(space, p).owners[0]!
    // A coordinator whose view still has p1 as the partition's only replica writes to it alone.
    const id = [...Array(1000).keys()].map(i => `late${i}`).find(x => leaver.placement.partitionOf(space, x) === p)!
    const version = Math.floor(c.get('p0').peer.clock.wallNow()) * 1024
    const write = async (from: string, v: number): Promise<unknown> => await c.get(from).peer.transport.request(simAddress('p1'), METHOD_WRITE,
      { space, partition: p, records: [{ id, version: version + v, deleted: false, row: { id, v } }], hlc: version + v }, { timeoutMs: 5_000 })
    await drive(world, write('p0', 1))
    expect(await drive(world, c.get(newOwner).replicator.read(space, id, { consistency: 'one' })).then(r => r.record)).toBeUndefined()

    await drive(world, leaver.swim.leave(2_000))
    const last = await drive(world, leaver.replicator.finishHandOff({ timeoutMs: 5_000 }))
    expect(last.failed).toEqual([])
    expect(last.partitions).toBeGreaterThan(0)
    // Closed to writes now: a late coordinator is refused, so it cannot count this peer.
    await expect(drive(world, write('p2', 2))).rejects.toMatchObject({ code: 'STOPPED' })
    c.crash('p1')
    const r = await drive(world, c.get('p2').replicator.read(space, id, { consistency: 'all' }))
    expect(r.record?.row?.v).toBe(1)
  })

  it('replicas 1 with nobody to hand off to (the others are leaving too): reports each partition and why, at once', async () => {
    const world = new SimWorld({ seed: 8 })
    const c = await WholeCluster.form(world, 2, opts)
    c.get('p0').catalog.create({ name: 'solo', schema, partitions: 4, replicas: 1 })
    expect(await world.runUntil(() => c.settled('solo'), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    const space = spaceOn(c.get('p0'), 'solo')
    expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    // p0 is leaving too (its meta says so), so p1's partitions have no next owner.
    c.get('p0').placement.setLeaving(true)
    expect(await world.runUntil(() => c.get('p1').placement.leavingMembers().includes('p0'), { maxMs: 10_000, checkEveryMs: 50 })).toBe(true)
    const held = c.get('p1').placement.ownedPartitions().length
    const startedAt = world.now()
    const report = await drive(world, c.get('p1').replicator.handOff({ timeoutMs: 60_000 }), 70_000)
    expect(world.now() - startedAt).toBeLessThan(5_000)
    expect(report.complete).toBe(false)
    expect(report.notHandedOff.length).toBeGreaterThanOrEqual(held)
    for (const n of report.notHandedOff) expect(n.reason).toMatch(/no other peer/)
  })

  it('a hand-off that times out names what was not handed off; cancelled, the peer owns its partitions again and nothing moved', async () => {
    const { world, c, space } = await setUp(6, 1)
    const leaver = c.get('p1')
    const held = leaver.placement.ownedPartitions().map(o => o.partition)
    // The next owners cannot be reached: nothing can be handed off.
    for (const other of ['p0', 'p2']) world.partition(['p1'], [other])
    const report = await drive(world, leaver.replicator.handOff({ timeoutMs: 3_000 }), 20_000)
    expect(report.complete).toBe(false)
    expect(report.notHandedOff.map(n => n.partition).sort((a, b) => a - b)).toEqual(held.sort((a, b) => a - b))
    // Its copies are the only ready ones (replicas 1): the report says so.
    for (const n of report.notHandedOff) expect(n.otherReplicas).toEqual([])
    leaver.replicator.cancelHandOff()
    world.heal()
    expect(leaver.placement.ownedPartitions().map(o => o.partition).sort((a, b) => a - b)).toEqual(held)
    expect(await world.runUntil(() => c.settled('kept') && c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    expect(await readAll(world, c.get('p0'), space, new Map([...Array(ROWS).keys()].map(i => [`r${i}`, i])))).toEqual([])
  })

  it('replicas 3, cut off from the others: not handed off, and the report says the other replicas hold the data', async () => {
    const { world, c, space } = await setUp(12, 3)
    const leaver = c.get('p2')
    world.partition(['p2'], ['p0', 'p1'])
    const report = await drive(world, leaver.replicator.handOff({ timeoutMs: 20_000 }), 60_000)
    expect(report.complete).toBe(false)
    expect(report.notHandedOff).toHaveLength(space.partitions)
    for (const n of report.notHandedOff) {
      expect([...n.otherReplicas].sort()).toEqual(['p0', 'p1'])
      expect(n.reason).toMatch(/pushing to p[01] failed|cannot be reached|not tried yet/)
    }
    // Once the detector gives up on them, the rest are not even tried: it names them unreachable.
    expect(report.notHandedOff.some(n => /p[01](, p[01])? cannot be reached/.test(n.reason))).toBe(true)
    leaver.replicator.cancelHandOff()
    world.heal()
  })

  it('replicas 3 on 3 peers: the other two already hold everything, so the hand-off is a push and takes no catch-up', async () => {
    const { world, c, space } = await setUp(7, 3)
    const leaver = c.get('p2')
    const before = c.get('p0').replicator.stats().catchUp.started + c.get('p1').replicator.stats().catchUp.started
    const report = await decommission(world, c, leaver, 60_000)
    expect(report.complete).toBe(true)
    expect(report.total).toBe(space.partitions)
    expect(c.get('p0').replicator.stats().catchUp.started + c.get('p1').replicator.stats().catchUp.started).toBe(before)
    expect(await readAll(world, c.get('p0'), space, new Map([...Array(ROWS).keys()].map(i => [`r${i}`, i])))).toEqual([])
  })
})
