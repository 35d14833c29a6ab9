import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * A peer under `ulimit -n 1024` (a common default) stays usable whatever one request asks of it
 * (issue 11, item 4): a space of 1,024 partitions, a thousand idle HTTP connections, a restart.
 */
async function postSlow (p: PeerProcess, path: string, body: unknown): Promise<{ status: number, body: unknown }> {
  const res = await fetch(p.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(60_000) })
  return { status: res.status, body: await res.json() }
}

describe('a peer within its open-file limit', () => {
  let cluster: TestCluster
  let a: PeerProcess
  const idle: Socket[] = []

  beforeAll(async () => {
    cluster = await TestCluster.create()
    a = await cluster.startPeer('a', { openFileLimit: 1024 })
  })
  afterAll(async () => {
    for (const s of idle) s.destroy()
    await cluster?.stopAll()
  })

  it('refuses to start below the limit it needs, saying what to raise', async () => {
    const low = await cluster.startPeer('low', { openFileLimit: 150, waitReady: false })
    expect(await low.waitExit()).toBe(1)
    expect(await low.logs()).toMatch(/open-file limit \(ulimit -n\) is 150; a peer needs at least 192 \(64 fixed, 64 libp2p connections/)
  })

  it('serves a space of 1,024 partitions, across a restart', async () => {
    const created = await a.post('/spaces', { name: 'wide', schema: [{ name: 'n', type: 'int64' }], partitions: 1024, replicas: 1 })
    expect(created.status).toBe(201)
    const rows = Array.from({ length: 6000 }, (_, i) => ({ id: `r${i}`, n: i }))
    for (let i = 0; i < rows.length; i += 2000) {
      // The first write opens 1,024 partitions (about 1.4 s on a quiet machine): more than the
      // cluster helper's 5 s on a busy one.
      const res = await postSlow(a, '/spaces/wide/records?consistency=all', rows.slice(i, i + 2000))
      expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200)
    }
    const count = async (): Promise<unknown> => ((await a.post('/query', { sql: 'SELECT count(*) AS n FROM wide' })).body as { rows: unknown[] }).rows
    expect(await count()).toEqual([{ n: 6000 }])
    await a.kill()
    await cluster.restart('a')
    await waitFor(async () => JSON.stringify(await count().catch(() => null)) === JSON.stringify([{ n: 6000 }]), { timeoutMs: 30_000 })
    expect((await a.post('/spaces/wide/records?consistency=all', [{ id: 'after', n: 1 }])).status).toBe(200)
  })

  it('keeps answering with a thousand idle connections open, closing idle ones at its cap', async () => {
    for (let i = 0; i < 1000; i++) {
      const s = connect(a.httpPort, '127.0.0.1')
      s.on('error', () => {})
      idle.push(s)
    }
    await waitFor(async () => idle.every(s => !s.connecting), { timeoutMs: 10_000 })
    const health = await fetch(`${a.url}/health`, { signal: AbortSignal.timeout(5000) })
    expect(health.status).toBe(200)
    const write = await a.post('/spaces/wide/records?consistency=all', [{ id: 'busy', n: 2 }])
    expect(write.status).toBe(200)
    const metrics = await fetch(`${a.url}/metrics`).then(async r => await r.text())
    expect(metrics).toMatch(/shoal_http_connections_closed_at_cap_total\{reason="shed"\} [1-9]/)
    const open = Number(/^shoal_http_connections (\d+)/m.exec(metrics)?.[1])
    expect(open).toBeLessThan(1000)
  })
})
