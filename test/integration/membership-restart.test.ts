import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { PeerProcess, TestCluster, freePort, waitFor } from '../cluster/index.js'

/**
 * Issue 13 with real `shoal start` processes: a peer killed and started again on its data dir
 * with a new --http port is shown with the new address by the other peer. Probing and
 * anti-entropy are slowed right down, so the other peer does not notice the restart (no
 * suspicion for the restarted peer to refute): the new address can only win on its incarnation.
 */
describe('a peer restarted with a new HTTP port', () => {
  let cluster: TestCluster | undefined

  afterAll(async () => {
    await cluster?.stopAll()
  })

  it('is seen at the new address on /cluster/members of another peer', async () => {
    cluster = await TestCluster.create({
      membership: { probeIntervalMs: 600_000, probeTimeoutMs: 500, gossipIntervalMs: 50, pushPullIntervalMs: 600_000, reconnectIntervalMs: 500 }
    })
    const p0 = await cluster.startPeer('p0')
    const p1 = await cluster.startPeer('p1', { bootstrap: [p0.multiaddr()] })
    const oldHttp = `http://127.0.0.1:${p1.httpPort}`
    const viewOf = async (): Promise<{ http: string | null, state: string, incarnation: number } | undefined> => (await p0.members()).find(m => m.peerId === p1.peerId)
    await waitFor(async () => (await viewOf())?.http === oldHttp, { timeoutMs: 20_000, describe: async () => JSON.stringify(await viewOf()) })
    const before = (await viewOf())!
    // Saved in the data dir before it was announced.
    expect(existsSync(join(p1.dataDir, 'incarnation'))).toBe(true)

    await p1.kill('SIGKILL')
    const httpPort = await freePort()
    const args = [
      '--data-dir', p1.dataDir,
      '--listen', `/ip4/127.0.0.1/tcp/${p1.p2pPort}`,
      '--http', `127.0.0.1:${httpPort}`,
      '--name', 'p1',
      '--config', cluster.configFile,
      '--log-level', 'debug',
      ...(cluster.swarmKeyFile !== undefined ? ['--swarm-key', cluster.swarmKeyFile] : []),
      '--bootstrap', p0.multiaddr()
    ]
    const again = new PeerProcess('p1', p1.dataDir, p1.p2pPort, httpPort, p1.logFile, args)
    cluster.peers.set('p1', again)
    again.spawn()
    await again.waitReady()
    expect(again.peerId).toBe(p1.peerId)

    const newHttp = `http://127.0.0.1:${httpPort}`
    const tookMs = await waitFor(async () => {
      const v = await viewOf()
      return v?.http === newHttp && v.state === 'alive'
    }, { timeoutMs: 20_000, describe: async () => JSON.stringify(await viewOf()) })
    console.log(`new HTTP address seen by the other peer ${tookMs} ms after the restart was ready`)
    expect((await viewOf())!.incarnation).toBeGreaterThan(before.incarnation)
  })
})
