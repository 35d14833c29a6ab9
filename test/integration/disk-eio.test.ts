/**
 * A replica whose disk fails fsync (EIO), injected on a live peer through POST /admin/faults
 * {disk: [...]} (only with --enable-fault-injection): under QUORUM writes the cluster keeps
 * acknowledging; the failing peer stays up, is not green, names each failed partition and EIO;
 * once the fault is cleared its replicas are rebuilt from the others and it turns green again
 * without a restart; every acknowledged row reads back at ALL. Bad rules are refused with a 400
 * naming the field. Needs no root (the fault is in the peer, not the kernel).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

interface Failed { space: string, partition: number, kind: string, code: string, inService: boolean }
interface Health { status: string, failed?: Failed[] }

async function health (p: PeerProcess): Promise<Health> { return await p.health() as unknown as Health }

async function writeBatch (via: PeerProcess, batch: number): Promise<{ status: number, ids: string[], body: string }> {
  const rows = Array.from({ length: 20 }, (_, i) => ({ id: `k${batch}-${i}`, n: batch * 20 + i }))
  const res = await fetch(`${via.url}/spaces/eio/records?consistency=quorum`, {
    method: 'POST', body: JSON.stringify(rows), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000)
  })
  const body = await res.text()
  return { status: res.status, ids: res.status === 200 ? rows.map(r => r.id) : [], body }
}

describe('a replica whose disk fails fsync, injected on a live peer', () => {
  let cluster: TestCluster | undefined
  afterAll(async () => { await cluster?.stopAll() })

  it('keeps acknowledging at QUORUM; the failing peer is not green naming EIO, and is rebuilt and green again once the fault clears; every acknowledged row reads at ALL', async () => {
    cluster = await TestCluster.create({ config: { replication: { reconcileIntervalMs: 1000, catchUpRetryMs: 1000 } } })
    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    const peers = [a, b, c]
    for (const p of peers) await waitFor(async () => (await p.members()).filter(m => m.state === 'alive').length === 3, { timeoutMs: 30_000 })
    expect((await a.post('/spaces', { name: 'eio', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }], partitions: 4, replicas: 3 })).status).toBe(201)
    for (const p of peers) await waitFor(async () => (await health(p)).status === 'green', { timeoutMs: 30_000, describe: async () => JSON.stringify(await health(p)) })
    // Every replica ready and announced in every view (not merely fresh): a QUORUM write then
    // needs any two of the three, so b's failing leaves a and c.
    const settled = async (p: PeerProcess): Promise<boolean> => {
      const view = await p.get('/spaces/eio') as { placement: Array<{ readReplicas: string[], fresh: boolean }> }
      return view.placement.every(x => !x.fresh && x.readReplicas.length === 3)
    }
    for (const p of peers) await waitFor(async () => await settled(p), { timeoutMs: 30_000, describe: async () => JSON.stringify(await p.get('/spaces/eio')) })

    // Bad rules: 400 naming the field, nothing changed.
    const bad = await b.post('/admin/faults', { disk: [{ op: 'fsync', code: 'EIO' }] })
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).toContain("disk[0].op")
    const badCode = await b.post('/admin/faults', { disk: [{ op: 'sync', code: 'EPERM' }] })
    expect(badCode.status).toBe(400)
    expect(JSON.stringify(badCode.body)).toContain("disk[0].code")

    const acked: string[] = []
    const failures: string[] = []
    let batch = 0
    const round = async (): Promise<void> => {
      const results = await Promise.all(peers.map(async (via, i) => await writeBatch(via, batch + i)))
      batch += peers.length
      for (const [i, r] of results.entries()) {
        if (r.status === 200) acked.push(...r.ids)
        else failures.push(`via ${peers[i]!.name}: ${r.status} ${r.body.slice(0, 500)}`)
      }
    }
    await round()

    // b's WAL fsyncs fail from now on.
    const set = await b.post('/admin/faults', { disk: [{ op: 'sync', code: 'EIO', path: 'wal-' }] })
    expect(set.status).toBe(200)
    expect(set.body).toMatchObject({ disk: [{ op: 'sync', code: 'EIO', path: 'wal-' }] })
    await waitFor(async () => { await round(); return ((await health(b)).failed?.length ?? 0) > 0 }, { timeoutMs: 60_000, describe: async () => JSON.stringify(await health(b)) })
    await round()
    expect(failures).toEqual([])
    const failing = await health(b)
    expect(failing.status).not.toBe('green')
    for (const f of failing.failed!) expect(f).toMatchObject({ space: 'eio', kind: 'io', code: 'EIO' })
    const state = await b.get('/admin/faults') as { diskFaultsInjected: number }
    expect(state.diskFaultsInjected).toBeGreaterThan(0)
    const pidB = b.pid

    // The disk works again: b rebuilds its failed replicas from the others and is green, same process.
    expect((await b.post('/admin/faults', { disk: [] })).status).toBe(200)
    await waitFor(async () => (await health(b)).status === 'green', { timeoutMs: 60_000, describe: async () => JSON.stringify(await health(b)) })
    expect(b.pid).toBe(pidB)
    await round()
    expect(failures).toEqual([])

    const unread: string[] = []
    for (const id of acked) {
      const res = await fetch(`${a.url}/spaces/eio/records/${id}?consistency=all`)
      if (res.status !== 200) unread.push(`${id}: ${res.status}`)
    }
    expect(unread).toEqual([])
    expect(acked.length).toBeGreaterThan(100)
  }, 240_000)
})
