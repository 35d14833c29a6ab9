import { describe, expect, it } from 'vitest'
import { PartitionUnavailableError, WriteIncompleteError } from '../../src/replication/index.js'
import { RemoteError } from '../../src/runtime/index.js'
import { simAddress } from './index.js'
import type { WriteResult } from '../../src/replication/index.js'
import { SimWorld } from './index.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'

const rowsOf = (n: number, prefix = 'r', v = 1): Array<{ id: string, v: number, note: string }> =>
  [...Array(n).keys()].map(i => ({ id: `${prefix}${i}`, v: v + i, note: `n${i}` }))

describe('replication in the simulator', () => {
  it('writes at QUORUM and reads back at every level', async () => {
    const world = new SimWorld({ seed: 1 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space)
    const res = await drive(world, c.get('p1').replicator.write(space, rowsOf(20)))
    expect(res.written).toBe(20)
    for (const p of res.partitions) expect(p.acks).toBeGreaterThanOrEqual(p.needed)
    for (const level of ['one', 'quorum', 'all'] as const) {
      const r = await drive(world, c.get('p2').replicator.read(space, 'r7', { consistency: level }))
      expect(r.record?.row).toMatchObject({ id: 'r7', v: 8, note: 'n7' })
    }
    await drive(world, c.get('p0').replicator.remove(space, ['r7']))
    const gone = await drive(world, c.get('p2').replicator.read(space, 'r7'))
    expect(gone.record).toBeUndefined()
    expect(gone.version).toBeGreaterThan(0)
  })

  it('QUORUM with one replica crashed succeeds and hints; the hints are delivered after restart', async () => {
    const world = new SimWorld({ seed: 2 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space, { hintReplayIntervalMs: 2000, antiEntropyIntervalMs: 0 })
    c.crash('p2')
    const res: WriteResult = await drive(world, c.get('p0').replicator.write(space, rowsOf(30), { consistency: 'quorum' }))
    expect(res.written).toBe(30)
    await world.run(100)
    const hints = c.get('p0').replicator.stats().hints
    expect(hints.written).toBeGreaterThan(0)
    expect(hints.pendingRecords).toBe(30)
    // ONE also succeeds with a replica down.
    await drive(world, c.get('p1').replicator.write(space, rowsOf(5, 'one'), { consistency: 'one' }))
    // ALL fails, naming the partitions that fell short.
    const err = await drive(world, c.get('p1').replicator.write(space, rowsOf(5, 'all'), { consistency: 'all' })).catch(e => e)
    expect(err).toBeInstanceOf(WriteIncompleteError)
    expect((err as WriteIncompleteError).outcomes.some(o => !o.met)).toBe(true)
    expect((err as Error).message).toMatch(/may have been applied/)

    c.add('p2', 'p0')
    const delivered = await world.runUntil(() => c.get('p0').replicator.stats().hints.pending === 0, { maxMs: 60_000, checkEveryMs: 100 })
    expect(delivered).toBe(true)
    expect(c.get('p0').replicator.stats().hints.deliveredRecords).toBe(30)
    for (const row of rowsOf(30)) {
      const p = c.get('p0').placement.partitionOf(space, row.id)
      expect(c.store('p2', space, p)?.peek(row.id)?.row).toMatchObject(row)
    }
  })

  it('QUORUM read repairs a stale replica before answering', async () => {
    const world = new SimWorld({ seed: 3 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    await drive(world, c.get('p0').replicator.write(space, [{ id: 'k', v: 1, note: 'old' }], { consistency: 'all' }))
    const p = c.get('p0').placement.partitionOf(space, 'k')
    // Make p1 and p2 stale by writing a newer version to p0's store only.
    const newer = { id: 'k', version: c.get('p0').hlc.now(), deleted: false, row: { id: 'k', v: 2, note: 'new' } }
    await c.store('p0', space, p)!.apply([newer])
    const r = await drive(world, c.get('p0').replicator.read(space, 'k', { consistency: 'all' }))
    expect(r.record?.row).toMatchObject({ v: 2, note: 'new' })
    expect(r.repaired).toBe(2)
    expect(c.store('p1', space, p)!.peek('k')?.row).toMatchObject({ v: 2 })
    expect(c.store('p2', space, p)!.peek('k')?.row).toMatchObject({ v: 2 })
    // A missing record is repaired too.
    const only = { id: 'm', version: c.get('p1').hlc.now(), deleted: false, row: { id: 'm', v: 9, note: null } }
    const pm = c.get('p0').placement.partitionOf(space, 'm')
    await c.store('p1', space, pm)!.apply([only])
    const r2 = await drive(world, c.get('p2').replicator.read(space, 'm', { consistency: 'all' }))
    expect(r2.record?.row).toMatchObject({ v: 9 })
    expect(c.store('p2', space, pm)!.peek('m')?.version).toBe(only.version)
    expect(c.store('p0', space, pm)!.peek('m')?.version).toBe(only.version)
  })

  it('QUORUM read from a peer that has heard only its own copy ready asks a majority of the owners too', async () => {
    // Just after a space is created each owner announces its own copy ready, and gossip carries
    // the others' announcements a moment later: a peer whose view lists only itself ready took one
    // copy for a quorum, and missed a write the other two owners acknowledged (one in its view).
    const world = new SimWorld({ seed: 31 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0 })
    const p0 = c.get('p0')
    const p = p0.placement.partitionOf(space, 'k')
    const owners = p0.placement.locate(space, p).owners
    expect([...owners].sort()).toEqual(['p0', 'p1', 'p2'])
    const w = { id: 'k', version: c.get('p1').hlc.now(), deleted: false, row: { id: 'k', v: 7, note: 'on two' } }
    await c.store('p1', space, p)!.apply([w])
    await c.store('p2', space, p)!.apply([w])
    const real = p0.placement.locate.bind(p0.placement)
    p0.placement.locate = (s, q) => ({ ...real(s, q), readReplicas: ['p0'], quorum: 1 })
    const r = await drive(world, p0.replicator.read(space, 'k', { consistency: 'quorum' }))
    expect(r.record?.row).toMatchObject({ v: 7, note: 'on two' })
    // And read repair brought p0's own copy up to date before the answer.
    expect(c.store('p0', space, p)!.peek('k')?.version).toBe(w.version)
    // With two of the three owners cut off, the read is refused up front rather than answered from one copy.
    world.partition(['p0'], ['p1', 'p2'])
    await world.runUntil(() => !p0.detector.isReachable('p1') && !p0.detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    const err = await drive(world, p0.replicator.read(space, 'k', { consistency: 'quorum' })).catch(e => e)
    expect(err).toBeInstanceOf(PartitionUnavailableError)
    expect([(err as PartitionUnavailableError).needed, (err as PartitionUnavailableError).reachable]).toEqual([2, 1])
  })

  it('fails fast with PartitionUnavailableError when 2 of 3 replicas are partitioned away', async () => {
    const world = new SimWorld({ seed: 4 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space)
    world.partition(['p0'], ['p1', 'p2'])
    const detected = await world.runUntil(() => !c.get('p0').detector.isReachable('p1') && !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    expect(detected).toBe(true)
    const t0 = world.now()
    const err = await drive(world, c.get('p0').replicator.write(space, rowsOf(3), { consistency: 'quorum', timeoutMs: 5000 })).catch(e => e)
    expect(err).toBeInstanceOf(PartitionUnavailableError)
    expect(world.now() - t0).toBeLessThan(50)
    const pu = err as PartitionUnavailableError
    expect(pu.partition).toBeGreaterThanOrEqual(0)
    expect(pu.needed).toBe(2)
    expect(pu.reachable).toBe(1)
    expect(pu.message).toMatch(new RegExp(`partition ${pu.partition} of space 'things'`))
    const rerr = await drive(world, c.get('p0').replicator.read(space, 'r1', { consistency: 'quorum' })).catch(e => e)
    expect(rerr).toBeInstanceOf(PartitionUnavailableError)
    // ONE still works on the minority side.
    await drive(world, c.get('p0').replicator.write(space, rowsOf(3, 'minority'), { consistency: 'one' }))
  })

  it('anti-entropy converges replicas that diverged during a partition, without reads', async () => {
    const world = new SimWorld({ seed: 5 })
    const space = makeSpace('things', 4, 3)
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 1000, hintWindowMs: 1 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(40, 'a')))
    world.partition(['p2'], ['p0', 'p1'])
    await world.runUntil(() => !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(40, 'b', 100)))
    await drive(world, c.get('p2').replicator.write(space, rowsOf(20, 'c', 500), { consistency: 'one' }))
    await drive(world, c.get('p1').replicator.remove(space, ['a1', 'a2']))
    world.heal()
    const digestsEqual = (): boolean => {
      for (let p = 0; p < space.partitions; p++) {
        const roots = ['p0', 'p1', 'p2'].map(id => c.store(id, space, p)?.digestNow(64).root)
        if (new Set(roots).size !== 1) return false
      }
      return true
    }
    expect(digestsEqual()).toBe(false)
    const ok = await world.runUntil(digestsEqual, { maxMs: 120_000, checkEveryMs: 500 })
    expect(ok).toBe(true)
    const stats = ['p0', 'p1', 'p2'].map(id => c.get(id).replicator.stats().antiEntropy)
    expect(stats.reduce((s, x) => s + x.recordsPulled + x.recordsPushed, 0)).toBeGreaterThan(0)
    for (const id of ['p0', 'p1', 'p2']) {
      const total = [...Array(space.partitions).keys()].reduce((s, p) => s + (c.store(id, space, p)?.size() ?? 0), 0)
      expect(total).toBe(100)
    }
  })

  it('a restarted replica catches up by comparing digests: it pulls only what it missed, not the whole partition', async () => {
    const world = new SimWorld({ seed: 9 })
    const space = makeSpace('things', 4, 3)
    // No hints and no anti-entropy: what p2 missed reaches it only through its catch-up.
    const c = await ReplCluster.form(world, 3, space, { antiEntropyIntervalMs: 0, hintWindowMs: 1 })
    await drive(world, c.get('p0').replicator.write(space, rowsOf(2000, 'a')))
    c.crash('p2')
    await world.runUntil(() => !c.get('p0').detector.isReachable('p2'), { maxMs: 60_000, checkEveryMs: 100 })
    const missed = rowsOf(20, 'late', 5000)
    await drive(world, c.get('p0').replicator.write(space, missed, { consistency: 'quorum' }))
    await drive(world, c.get('p1').replicator.remove(space, ['a7']))
    c.add('p2', 'p0')
    await c.settle(['p0', 'p1', 'p2'], 120_000)
    const stats = c.get('p2').replicator.stats().catchUp
    expect(stats.recordsStreamed).toBe(0)
    expect(stats.digestSyncs).toBeGreaterThanOrEqual(space.partitions)
    expect(stats.recordsPulled).toBe(21)
    for (const row of missed) {
      const p = c.get('p0').placement.partitionOf(space, row.id)
      expect(c.store('p2', space, p)?.peek(row.id)?.row).toMatchObject(row)
    }
    expect(c.store('p2', space, c.get('p0').placement.partitionOf(space, 'a7'))?.peek('a7')?.deleted).toBe(true)
  })

  it('answers bad or skewed replica requests with a clear code and keeps serving', async () => {
    const world = new SimWorld({ seed: 6 })
    const space = makeSpace()
    const c = await ReplCluster.form(world, 3, space)
    const t = c.get('p1').peer.transport
    const to = simAddress('p0')
    for (const [method, body] of [['repl.write', { space, partition: 99, records: [], hlc: 1 }], ['repl.write', 'junk'],
      ['repl.read', { space, partition: 0, ids: [1] }], ['repl.digest', { space, partition: 0, buckets: 0 }],
      ['repl.bucket', { space, partition: 0, index: 64, buckets: 64 }]] as const) {
      const err = await drive(world, t.request(to, method, body)).catch(e => e)
      expect(err, method).toBeInstanceOf(RemoteError)
      expect((err as RemoteError).code, method).toBe('BAD_REQUEST')
    }
    const scanErr = await drive(world, (async () => { for await (const _ of t.stream(to, 'repl.scan', { space, partition: 0 })) { /* none */ } })()).catch(e => e)
    expect((scanErr as RemoteError).code).toBe('BAD_REQUEST')
    // A version two hours ahead of p0's clock is refused, and nothing is written.
    const future = c.get('p1').hlc.now() + 2 * 3600 * 1000 * 1024
    const skewErr = await drive(world, t.request(to, 'repl.write', { space, partition: 0, records: [{ id: 'zz', version: future, deleted: false, row: { id: 'zz' } }], hlc: future })).catch(e => e)
    expect((skewErr as RemoteError).code).toBe('CLOCK_SKEW')
    expect(c.store('p0', space, 0)?.peek('zz')).toBeUndefined()
    expect(c.get('p0').replicator.stats().replica.badRequests).toBe(6)
    // Still serving.
    await drive(world, c.get('p1').replicator.write(space, rowsOf(3), { consistency: 'all' }))
  })
})
