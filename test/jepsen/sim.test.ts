import { describe, expect, it } from 'vitest'
import { SimWorld } from '../sim/index.js'
import { ReplCluster, drive, makeSpace } from '../sim/replication-cluster.js'
import { checkHistory, checkSet } from './checkers/index.js'
import { simHistory, type SimOp } from './sim.js'

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
})
