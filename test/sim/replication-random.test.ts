import { describe, expect, it } from 'vitest'
import { SimWorld } from './index.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'

/**
 * A seeded run: one client writes at QUORUM through random coordinators while peers crash,
 * restart and get partitioned away; then everything heals and anti-entropy runs. Every
 * acknowledged write must be readable at ALL with its last acknowledged value (or with the value
 * of a later write whose outcome was unknown or failed: those MAY have been applied).
 */
async function randomRun (seed: number): Promise<{ acked: number, failed: number }> {
  const world = new SimWorld({ seed })
  const space = makeSpace('rnd', 8, 3)
  const ids = ['p0', 'p1', 'p2', 'p3', 'p4']
  const c = await ReplCluster.form(world, 5, space, { antiEntropyIntervalMs: 1000, hintReplayIntervalMs: 1000, requestTimeoutMs: 1000, catchUpRetryMs: 1000 })
  const rnd = world.random
  /** Per id: the last acknowledged value, and values attempted after it without an acknowledgement. */
  const expected = new Map<string, { acked: number | undefined, since: Set<number> }>()
  let acked = 0
  let failed = 0
  let stop = false
  let value = 0
  const client = async (): Promise<void> => {
    while (!stop) {
      const coords = c.up()
      const coord = coords[rnd.int(coords.length)]!
      const batch = [...new Set([...Array(1 + rnd.int(3))].map(() => `k${rnd.int(40)}`))].map(id => ({ id, v: ++value, note: null }))
      for (const r of batch) {
        let e = expected.get(r.id)
        if (e === undefined) { e = { acked: undefined, since: new Set() }; expected.set(r.id, e) }
        e.since.add(r.v)
      }
      const outcome = await Promise.race([
        coord.replicator.write(space, batch, { consistency: 'quorum', timeoutMs: 1000 }).then(() => 'ok', () => 'failed'),
        // A coordinator that crashes never answers: the outcome is unknown.
        new Promise<string>(resolve => { world.schedule(3000, () => { resolve('unknown') }) })
      ])
      if (outcome === 'ok') {
        acked++
        for (const r of batch) expected.set(r.id, { acked: r.v, since: new Set() })
      } else {
        failed++
      }
      await new Promise<void>(resolve => { world.schedule(10 + rnd.int(30), resolve) })
    }
  }
  const running = client()
  const down = new Set<string>()
  for (let step = 0; step < 12; step++) {
    const action = rnd.int(4)
    const upIds = ids.filter(id => !down.has(id))
    if (action === 0 && down.size < 1) {
      const id = upIds[rnd.int(upIds.length)]!
      c.crash(id)
      down.add(id)
    } else if (action === 1 && down.size > 0) {
      const id = [...down][0]!
      down.delete(id)
      c.add(id, ids.find(x => !down.has(x) && x !== id))
    } else if (action === 2) {
      const id = upIds[rnd.int(upIds.length)]!
      world.partition([id], ids.filter(x => x !== id))
    } else {
      world.heal()
    }
    await world.run(1500 + rnd.int(1500))
  }
  stop = true
  await drive(world, running, 10_000)
  world.heal()
  for (const id of down) c.add(id, 'p0' === id ? 'p1' : 'p0')
  await c.settle(ids, 120_000)
  // Let anti-entropy and hint replay finish: every replica of every partition has the same digest.
  const converged = (): boolean => {
    const n = c.get('p0')
    for (let p = 0; p < space.partitions; p++) {
      const roots = n.placement.locate(space, p).owners.map(id => c.store(id, space, p)?.digestNow(64).root ?? 'none')
      if (new Set(roots).size !== 1) return false
    }
    return true
  }
  const ok = await world.runUntil(converged, { maxMs: 120_000, checkEveryMs: 500 })
  expect(ok).toBe(true)
  for (const [id, e] of expected) {
    const r = await drive(world, c.get(ids[rnd.int(ids.length)]!).replicator.read(space, id, { consistency: 'all' }))
    const got = r.record?.row?.v as number | undefined
    const allowed = new Set<number | undefined>([e.acked, ...e.since])
    expect(allowed.has(got), `${id}: got ${String(got)}, last acknowledged ${String(e.acked)}, later attempts ${[...e.since].join(',')}`).toBe(true)
    if (e.acked !== undefined) expect(got).not.toBeUndefined()
  }
  return { acked, failed }
}

describe('replication: randomized faults', () => {
  it('keeps every acknowledged QUORUM write (seed 7)', async () => {
    const { acked } = await randomRun(7)
    expect(acked).toBeGreaterThan(50)
  })
  it('keeps every acknowledged QUORUM write (seed 8)', async () => {
    const { acked } = await randomRun(8)
    expect(acked).toBeGreaterThan(50)
  })
})
