/**
 * `shoal status` and `shoal repair` against 3 real peers (issue 14, item 5): the status of the
 * whole cluster through one peer, a replica that missed writes found by its digests and repaired
 * on demand, and a repair that exits 1 when a peer does not answer.
 *
 * A replica misses writes here the way it does in production when hints are lost: peer a (the
 * coordinator) is cut off from c alone, so c stays alive through b's indirect probes while a's
 * QUORUM writes reach a and b only; hints are off (hintMaxBytes 0) and background anti-entropy
 * too (antiEntropyIntervalMs 0), so nothing but `shoal repair` brings c up to date.
 */
import { readFileSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import type { ClusterRepair, ClusterStatus } from '../../src/peer/cluster-status.js'
import { runCli, TestCluster, waitAllAlive, waitFor, type PeerProcess } from '../cluster/index.js'

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

async function status (peer: PeerProcess): Promise<ClusterStatus> {
  const res = await runCli(['status', '--json', '--peer', peer.url])
  if (res.code !== 0) throw new Error(`shoal status exited ${res.code}: ${res.stderr}`)
  return JSON.parse(res.stdout) as ClusterStatus
}

async function write (peer: PeerProcess, rows: Array<{ id: string, n: number }>): Promise<void> {
  const res = await peer.post('/spaces/kept/records?consistency=quorum', rows)
  expect(res.status, JSON.stringify(res.body)).toBe(200)
}

describe('shoal status and shoal repair on 3 peers', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('shows every peer and space, finds a replica that missed writes, repairs it, and fails a repair a peer does not answer', async () => {
    cluster = await TestCluster.create({ config: { replication: { hintMaxBytes: 0, antiEntropyIntervalMs: 0 } } })
    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    await waitAllAlive([a, b, c])
    expect((await a.post('/spaces', { name: 'kept', schema: [{ name: 'n', type: 'int64' }], partitions: 4, replicas: 3 })).status).toBe(201)
    await waitFor(async () => (await b.get('/spaces/kept') as { name?: string }).name === 'kept' && (await c.get('/spaces/kept') as { name?: string }).name === 'kept', { timeoutMs: 10_000 })
    await write(a, Array.from({ length: 100 }, (_, i) => ({ id: `r${i}`, n: i })))

    // Every peer alive with its version and figures; the replicas agree once the third copies land.
    let before: ClusterStatus | undefined
    await waitFor(async () => {
      before = await status(b)
      return before.peers.every(p => p.partitions?.ready === 4) && before.spaces[0]?.digests.state === 'agree'
    }, { timeoutMs: 20_000, intervalMs: 500, describe: () => JSON.stringify(before) })
    expect(before!.name).toBe('b')
    expect(before!.peers.map(p => p.name)).toEqual(['a', 'b', 'c'])
    for (const p of before!.peers) {
      expect(p).toMatchObject({ state: 'alive', reachable: true, version: PACKAGE_VERSION, ready: true, partitions: { held: 4, ready: 4 }, rows: 100, hintsPending: 0 })
      expect(p.diskBytes).toBeGreaterThan(0)
      expect(p.uptimeMs).toBeGreaterThan(0)
    }
    expect(before!.spaces).toEqual([{
      name: 'kept', partitions: 4, replicas: { wanted: 3, fewestLive: 3, mostLive: 3 }, partitionsShort: 0, belowQuorum: [], unavailable: [], digests: { state: 'agree', differing: [], unknown: [] }
    }])
    const table = await runCli(['status', '--peer', a.url])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/^PEER +STATE +VERSION +UPTIME +HELD +READY +ROWS +DISK +HINTS$/m)
    expect(table.stdout).toMatch(/^c +alive +\S+ +\S+ +4 +4 +100 /m)
    expect(table.stdout).toMatch(/^kept +4 +3\/3 +0 +0 +0 +agree$/m)

    // a cannot reach c: its writes land on a and b only, and its status lists c as not answering.
    await a.deny([c.peerId])
    try {
      await write(a, Array.from({ length: 60 }, (_, i) => ({ id: i < 10 ? `r${i}` : `new${i}`, n: 1000 + i })))
      const cutOff = await status(a)
      expect(cutOff.peers.find(p => p.name === 'c')).toMatchObject({ reachable: false, rows: null })
      expect(cutOff.peers.find(p => p.name === 'c')!.error).toBeDefined()
    } finally {
      await a.deny([])
    }
    let differ: ClusterStatus | undefined
    await waitFor(async () => {
      differ = await status(a)
      return differ.peers.every(p => p.reachable) && differ.spaces[0]!.digests.state === 'differ'
    }, { timeoutMs: 30_000, intervalMs: 500, describe: () => JSON.stringify(differ) })
    expect(differ!.peers.find(p => p.name === 'c')!.rows).toBe(100)
    expect(differ!.peers.find(p => p.name === 'a')!.rows).toBe(150)

    // shoal repair copies what c missed, and says so; the digests then agree.
    const res = await runCli(['repair', '--json', '--peer', a.url], { timeoutMs: 60_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const repair = JSON.parse(res.stdout) as ClusterRepair
    expect(repair.ok).toBe(true)
    expect(repair.spaces).toBeNull()
    expect(repair.peers.map(p => [p.name, p.ok])).toEqual([['a', true], ['b', true], ['c', true]])
    // Each partition synced by one of its replicas (its leader) with the two others.
    expect(repair.totals).toMatchObject({ partitions: 4, syncs: 8, syncsFailed: 0 })
    expect(repair.totals.bucketsDiffering).toBeGreaterThan(0)
    // c held none of the 50 new rows and old versions of 10: each copied to it once.
    expect(repair.totals.recordsPulled + repair.totals.recordsPushed).toBe(60)
    const after = await status(c)
    expect(after.spaces[0]!.digests).toEqual({ state: 'agree', differing: [], unknown: [] })
    expect(after.peers.map(p => p.rows)).toEqual([150, 150, 150])
    const again = await runCli(['repair', 'kept', '--peer', a.url], { timeoutMs: 60_000 })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toContain('repair of space kept through a: 3 peers')
    expect(again.stdout).toContain('nothing to repair: every replica compared agreed')
    expect(again.stdout).toMatch(/^total +4 +8 +512 +0 +0 +0 +ok$/m)

    const unknown = await runCli(['repair', 'nope', '--peer', a.url])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('404 UNKNOWN_SPACE')

    // A peer that does not answer its part fails the repair: exit 1, naming it.
    await a.deny([c.peerId])
    try {
      const failed = await runCli(['repair', '--peer', a.url, '--timeout', '3000'], { timeoutMs: 60_000 })
      expect(failed.code, failed.stdout + failed.stderr).toBe(1)
      expect(failed.stdout).toMatch(/^c( +-){6} +FAILED$/m)
      expect(failed.stdout).toMatch(/did not complete/)
    } finally {
      await a.deny([])
    }
  })
})
