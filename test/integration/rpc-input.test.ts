import { readFile } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHost, parseSwarmKey, RPC_PROTOCOL, type Host } from '../../src/net/index.js'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * Hostile input against a real peer process: a client holding the swarm key opens the RPC
 * protocol by hand and sends bytes no Shoal peer would. The peer must log, close that stream,
 * and go on serving its cluster.
 */
describe('a real peer receiving malformed RPC frames', () => {
  let cluster: TestCluster
  let a: PeerProcess
  let b: PeerProcess
  let attacker: Host

  beforeAll(async () => {
    cluster = await TestCluster.create()
    a = await cluster.startPeer('a')
    b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const privateKey = await generateKeyPair('Ed25519')
    attacker = await createHost({
      privateKey: privateKey as never,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      swarmKey: parseSwarmKey(await readFile(cluster.swarmKeyFile!, 'utf8')),
      gossipsub: false
    })
  })

  afterAll(async () => {
    await attacker?.stop()
    await cluster?.stopAll()
  })

  const sendRaw = async (bytes: Uint8Array): Promise<void> => {
    const stream = await attacker.libp2p.dialProtocol(multiaddr(a.multiaddr()), RPC_PROTOCOL)
    const reading = (async () => { for await (const _ of stream.source) { /* the peer may answer ERR */ } })().catch(() => {})
    await stream.sink([bytes]).catch(() => {})
    // The peer closes the stream on a protocol violation; the read side ends when it does.
    await Promise.race([reading, new Promise(resolve => setTimeout(resolve, 5000))])
  }

  it('closes the stream on garbage and on an oversized length prefix, and keeps serving', async () => {
    await sendRaw(new Uint8Array([0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1]))
    await sendRaw(new Uint8Array([0xff, 0xff, 0xff, 0xf0, 1, 2, 3]))
    const health = await a.health()
    expect(health.peer).toBe(a.peerId)
    expect(a.running).toBe(true)
    // The cluster is undisturbed: both peers still see each other alive.
    await waitFor(async () => (await b.members()).every(m => m.state === 'alive') && (await a.members()).length === 2, { timeoutMs: 5000 })
    const metrics = await fetch(`${a.url}/metrics`).then(async r => await r.text())
    expect(metrics).toMatch(/shoal_rpc_protocol_violations_total [2-9]/)
    expect(await a.logs()).toContain('rpc protocol violation')
  })
})
