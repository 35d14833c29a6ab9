import { describe, expect, it } from 'vitest'
import { METHOD_SCAN, ReplicaRequestError } from '../../src/replication/index.js'
import { SimWorld } from './index.js'
import type { SimTransport } from './index.js'
import { MemoryPartitionStore, MemoryStores } from './memory-store.js'
import { ReplCluster, drive, makeSpace } from './replication-cluster.js'

describe('replication: ownership moves', () => {
  it('a 4th peer catches up the partitions it now owns; former owners release only after; nothing is lost', async () => {
    const world = new SimWorld({ seed: 11 })
    const space = makeSpace('moves', 8, 3)
    const c = await ReplCluster.form(world, 3, space, { releaseGraceMs: 2000, antiEntropyIntervalMs: 0, scanBatchRecords: 7 })
    const acked = new Map<string, number>()
    const rows = [...Array(120).keys()].map(i => ({ id: `m${i}`, v: i, note: 'before' }))
    await drive(world, c.get('p0').replicator.write(space, rows))
    for (const r of rows) acked.set(r.id, r.v)

    // Reads and writes keep going during the move.
    let stop = false
    let readsOk = 0
    const readErrors: string[] = []
    let next = 1000
    const loop = async (): Promise<void> => {
      while (!stop) {
        // A peer that has not joined yet owns nothing and answers PartitionUnavailable: not a coordinator yet.
        const coords = c.up().filter(n => n.placement.members().length > 1)
        const coord = coords[world.random.int(coords.length)]!
        const id = `m${world.random.int(120)}`
        try {
          const r = await coord.replicator.read(space, id, { consistency: 'quorum' })
          if (r.record?.row?.v !== acked.get(id)) readErrors.push(`${id}: got ${String(r.record?.row?.v)} want ${acked.get(id)}`)
          else readsOk++
        } catch (err) {
          readErrors.push(`${id}: ${(err as Error).message}`)
        }
        const wid = `w${next++}`
        try {
          await coord.replicator.write(space, [{ id: wid, v: next, note: 'during' }])
          acked.set(wid, next)
        } catch { /* not acknowledged: not checked */ }
        await new Promise<void>(resolve => { world.schedule(20, resolve) })
      }
    }
    const looping = loop()

    c.add('p3', 'p0')
    await c.settle(['p0', 'p1', 'p2', 'p3'])
    const p3 = c.get('p3')
    const owned = p3.placement.ownedPartitions()
    expect(owned.length).toBeGreaterThan(0)
    expect(p3.replicator.stats().catchUp.completed).toBeGreaterThanOrEqual(owned.length)
    expect(p3.replicator.stats().catchUp.recordsStreamed).toBeGreaterThan(0)
    // Releases come after the new owner's ready, and stores are dropped after the grace period.
    await world.runUntil(() => [...c.storesById.values()].reduce((s, x) => s + x.dropped, 0) >= owned.length, { maxMs: 30_000, checkEveryMs: 100 })
    stop = true
    await drive(world, looping)
    const hist = c.directory.history
    const released = hist.filter(h => h.event === 'released')
    expect(released.length).toBeGreaterThanOrEqual(owned.length)
    for (const rel of released) {
      const relAt = hist.indexOf(rel)
      const p = Number(rel.key.split('/')[1])
      const owners = p3.placement.locate(space, p).owners
      for (const o of owners) {
        const readyAt = hist.findIndex(h => h.peer === o && h.key === rel.key && h.event === 'ready')
        expect(readyAt).toBeGreaterThanOrEqual(0)
        expect(readyAt).toBeLessThan(relAt)
      }
    }
    // Each partition is now held by exactly its owners.
    for (let p = 0; p < space.partitions; p++) {
      const owners = p3.placement.locate(space, p).owners
      for (const id of ['p0', 'p1', 'p2', 'p3']) {
        expect(c.store(id, space, p) !== undefined).toBe(owners.includes(id))
      }
    }
    expect(readErrors).toEqual([])
    expect(readsOk).toBeGreaterThan(10)
    for (const [id, v] of acked) {
      const r = await drive(world, c.get('p1').replicator.read(space, id, { consistency: 'all' }))
      expect(r.record?.row?.v, id).toBe(v)
    }
  })
})

describe('replication: QUORUM during an ownership move', () => {
  /**
   * A space of replicas 3 on one peer, then two peers join: they own every partition but stay
   * pending (p0 refuses their catch-up streams), so p0 is the only ready replica. A QUORUM write
   * must still end up on a majority of min(R, peers) = 3 owners, the pending ones counting.
   */
  it('a QUORUM write is acknowledged only once a majority of min(R, peers) owners hold it, pending owners counting', async () => {
    const world = new SimWorld({ seed: 23 })
    const space = makeSpace('grow', 1, 3)
    const c = await ReplCluster.form(world, 1, space, { antiEntropyIntervalMs: 0, catchUpRetryMs: 1000, hintReplayIntervalMs: 600_000 })
    await drive(world, c.get('p0').replicator.write(space, [{ id: 'before', v: 0, note: 'alone' }]))
    // p0 refuses every catch-up stream: the new owners stay pending for the whole test.
    const p0transport = c.get('p0').peer.transport as SimTransport
    p0transport.streamHandlers.set(METHOD_SCAN, async function * () { throw new ReplicaRequestError('STORE_FAILED', 'scan refused by the test') })
    // The new owners' replicas refuse writes until the test lets them (as a failing disk would).
    const failing = new Map<string, MemoryPartitionStore>()
    for (const id of ['p1', 'p2']) {
      const stores = new MemoryStores()
      const s = new MemoryPartitionStore(space, 0)
      s.failWith = new Error('disk failed (test)')
      stores.stores.set(MemoryStores.key(space, 0), s)
      c.storesById.set(id, stores)
      failing.set(id, s)
    }
    c.add('p1', 'p0')
    c.add('p2', 'p0')
    const moving = await world.runUntil(() => {
      const pp = c.get('p0').placement.locate(space, 0)
      return pp.owners.length === 3 && pp.readReplicas.join() === 'p0'
    }, { maxMs: 30_000, checkEveryMs: 100 })
    expect(moving).toBe(true)

    const copies = (id: string): number => ['p0', 'p1', 'p2'].filter(p => c.store(p, space, 0)?.peek(id) !== undefined).length
    const attempt = async (id: string): Promise<{ acked: boolean, copiesAtAck: number, needed?: number, message?: string }> => {
      const write = c.get('p0').replicator.write(space, [{ id, v: 1, note: 'during the move' }], { consistency: 'quorum' })
      // Copies are counted the moment the coordinator answers, before anything else runs.
      const answered = write.then(res => ({ acked: true, copiesAtAck: copies(id), needed: res.partitions[0]?.needed }),
        (err: Error) => ({ acked: false, copiesAtAck: copies(id), message: err.message }))
      return await drive(world, answered)
    }

    // Both pending owners refuse: a majority of 3 cannot hold the write, so it is not acknowledged.
    const refused = await attempt('both-refuse')
    expect(refused.acked ? `acknowledged with ${refused.copiesAtAck} of 3 copies` : 'not acknowledged').toBe('not acknowledged')
    // The group that fell short is named by its own counts: the owners, 1 of the 2 needed.
    expect(refused.message).toMatch(/got 1\/2 acks/)

    // One pending owner takes writes: p0 and p1 make the majority.
    failing.get('p1')!.failWith = undefined
    const one = await attempt('one-refuses')
    expect(one).toEqual({ acked: true, copiesAtAck: 2, needed: 2 })
  })
})
