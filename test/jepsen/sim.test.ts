import { describe, expect, it } from 'vitest'
import { SimWorld } from '../sim/index.js'
import { MemoryStores } from '../sim/memory-store.js'
import { WholeCluster, spaceOn } from '../sim/placement-replication-cluster.js'
import { ReplCluster, drive, makeSpace } from '../sim/replication-cluster.js'
import { checkHistory, checkSet } from './checkers/index.js'
import { simHistory, simSetClient, type SimOp } from './sim.js'

/**
 * The set workload in the simulator: two single-threaded clients add unique ids at QUORUM through
 * random coordinators while a peer is partitioned away and another crashes and restarts; after
 * the heal every id is read at ALL. The history goes through the same checker as a real run's.
 */
describe('checkers on simulator histories', () => {
  it('the set checker judges a simulated run: no lost acknowledged add', async () => {
    const world = new SimWorld({ seed: 21 })
    const space = makeSpace('jset', 8, 3)
    const ids = ['p0', 'p1', 'p2', 'p3', 'p4']
    const c = await ReplCluster.form(world, 5, space, { antiEntropyIntervalMs: 1000, hintReplayIntervalMs: 1000, requestTimeoutMs: 1000, catchUpRetryMs: 1000 })
    const rnd = world.random
    const ops: SimOp[] = []
    let stop = false
    const client = async (process: number): Promise<void> => {
      let n = 0
      while (!stop) {
        const up = c.up()
        const coord = up[rnd.int(up.length)]!
        const id = `s${process}-${n++}`
        ops.push({ process, type: 'invoke', f: 'add', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
        const outcome = await Promise.race([
          coord.replicator.write(space, [{ id, v: 1, note: null }], { consistency: 'quorum', timeoutMs: 1000 })
            .then(() => 'ok' as const, (err: Error) => err.name === 'PartitionUnavailableError' ? 'fail' as const : 'info' as const),
          new Promise<'info'>(resolve => { world.schedule(3000, () => { resolve('info') }) })
        ])
        ops.push({ process, type: outcome, f: 'add', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
        await new Promise<void>(resolve => { world.schedule(10 + rnd.int(30), resolve) })
      }
    }
    const running = [client(0), client(1)]
    await world.run(2000)
    world.partition(['p4'], ['p0', 'p1', 'p2', 'p3'])
    ops.push({ process: 'nemesis', type: 'info', f: 'start-partition', workload: 'set', key: '', value: { isolated: 'p4' }, time: world.now() })
    await world.run(3000)
    world.heal()
    ops.push({ process: 'nemesis', type: 'info', f: 'stop-partition', workload: 'set', key: '', value: null, time: world.now() })
    c.crash('p3')
    await world.run(3000)
    c.add('p3', 'p0')
    await world.run(2000)
    stop = true
    await drive(world, Promise.all(running), 10_000)
    await c.settle(ids, 60_000)
    const attempted = [...new Set(ops.filter(o => o.f === 'add').map(o => o.key))]
    for (const id of attempted) {
      ops.push({ process: 'final', type: 'invoke', f: 'final-read', workload: 'set', key: id, value: null, time: world.now() })
      const r = await drive(world, c.get('p0').replicator.read(space, id, { consistency: 'all' }))
      ops.push({ process: 'final', type: 'ok', f: 'final-read', workload: 'set', key: id, value: r.record !== undefined, time: world.now() })
    }
    const history = simHistory(ops)
    const result = checkSet(history)
    expect(result.acknowledged).toBeGreaterThan(50)
    expect(result.lost).toEqual([])
    expect(result.unexpected).toEqual([])
    expect(result.valid).toBe(true)
    expect(checkHistory(history).valid).toBe(true)

    // And the checker does catch a loss in a simulated history: drop one acknowledged id's final read.
    const firstAcked = history.find(o => o.f === 'add' && o.type === 'ok')!.key!
    const tampered = history.map(o => o.f === 'final-read' && o.type === 'ok' && o.key === firstAcked ? { ...o, value: false } : o)
    expect(checkSet(tampered).lost).toEqual([firstAcked])
  }, 120_000)

  /**
   * The long-outage nemesis (issue 13): one replica down longer than a shortened tombstone grace
   * while the clients go on adding ids and removing acknowledged ones at QUORUM, and the others
   * compact. Whole peers (real Swim, catalog, placement, replication), stores that purge
   * tombstones as storage does. The set checker fails a history whose acknowledged removes come
   * back; before the purge waited for repairs and a returning stale replica was rebuilt, this
   * schedule brought back removed ids.
   */
  it('the long-outage nemesis: a replica away longer than the tombstone grace, removes in between; no acknowledged remove is undone', async () => {
    const GRACE_MS = 10_000
    const world = new SimWorld({ seed: 23 })
    const names = ['p0', 'p1', 'p2', 'p3', 'p4']
    const c = new WholeCluster(world, {
      swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 2_000 },
      placement: { deadOwnerTimeoutMs: 5_000 },
      replication: { antiEntropyIntervalMs: 500, hintWindowMs: 3_000, hintReplayIntervalMs: 1000, requestTimeoutMs: 1000, catchUpRetryMs: 1000, releaseGraceMs: 2_000 }
    })
    for (const id of names) c.storesById.set(id, new MemoryStores({ tombstoneGraceMs: GRACE_MS, wallNow: () => world.wallNowOf(id) }))
    c.add('p0')
    for (const id of names.slice(1)) c.add(id, 'p0')
    c.get('p0').catalog.create({ name: 'jset', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions: 8, replicas: 3 })
    expect(await world.runUntil(() => c.up().length === 5 && c.settled('jset'), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    const space = spaceOn(c.get('p0'), 'jset')
    expect(await world.runUntil(() => c.announced(space), { maxMs: 30_000, checkEveryMs: 100 })).toBe(true)
    // Storage's periodic compaction check on every up peer.
    const compact = (): void => {
      for (const n of c.up()) for (const st of n.stores.stores.values()) st.compact(n.peer.clock.wallNow())
      world.schedule(1_000, compact)
    }
    world.schedule(1_000, compact)

    const ops: SimOp[] = []
    let stop = false
    const client = async (process: number): Promise<void> => {
      await simSetClient(process, { world, coordinators: () => c.up(), space, ops, stopped: () => stop, removeRate: 0.4, thinkMs: 20, thinkSpreadMs: 40, session: false })
    }
    const running = [client(0), client(1)]
    await world.run(3_000)
    c.crash('p4')
    ops.push({ process: 'nemesis', type: 'info', f: 'start-outage', workload: 'set', key: '', value: { node: 'p4', graceMs: GRACE_MS }, time: world.now() })
    await world.run(3 * GRACE_MS)
    c.add('p4', 'p0')
    ops.push({ process: 'nemesis', type: 'info', f: 'stop-outage', workload: 'set', key: '', value: null, time: world.now() })
    await world.run(10_000)
    stop = true
    await drive(world, Promise.all(running), 10_000)
    expect(await world.runUntil(() => c.settled('jset') && c.announced(space), { maxMs: 60_000, checkEveryMs: 100 })).toBe(true)
    await world.run(2 * GRACE_MS)
    const attempted = [...new Set(ops.filter(o => o.f === 'add').map(o => o.key))]
    for (const id of attempted) {
      ops.push({ process: 'final', type: 'invoke', f: 'final-read', workload: 'set', key: id, value: null, time: world.now() })
      const r = await drive(world, c.get('p0').replicator.read(space, id, { consistency: 'all' }))
      ops.push({ process: 'final', type: 'ok', f: 'final-read', workload: 'set', key: id, value: r.record !== undefined, time: world.now() })
    }
    const result = checkSet(simHistory(ops))
    console.log(`long outage: ${JSON.stringify({ acknowledged: result.acknowledged, removes: result.removes, resurrected: result.resurrected.length, lost: result.lost.length, purged: c.up().reduce((k, n) => k + [...n.stores.stores.values()].reduce((j, st) => j + st.tombstonesPurged, 0), 0), p4: c.get('p4').replicator.stats().repair })}`)
    expect(result.acknowledged).toBeGreaterThan(200)
    expect(result.removes.ok).toBeGreaterThan(50)
    expect(result.resurrected).toEqual([])
    // Each replica of the returning peer found stale was rebuilt, none marked ready as it was.
    const p4 = c.get('p4').replicator.stats().repair
    expect(p4.staleRebuilt).toBe(p4.staleReplicas)
    expect(result.lost).toEqual([])
    expect(result.unexpected).toEqual([])
    expect(result.valid).toBe(true)
  }, 180_000)
})
