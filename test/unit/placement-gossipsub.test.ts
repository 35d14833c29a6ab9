/** GossipsubBroadcaster over two real libp2p hosts on loopback. */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { createHost, GossipsubBroadcaster } from '../../src/net/index.js'
import { silentLogger } from '../../src/runtime/index.js'

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function until (cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('GossipsubBroadcaster', () => {
  it('delivers a published message to a subscribed peer, with the sender', async () => {
    const hosts = await Promise.all([0, 1].map(async () => {
      const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
      const host = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
      const bus = new GossipsubBroadcaster({ libp2p: host.libp2p, log: silentLogger }, { maxMessageBytes: 1024 })
      cleanup.push(async () => { bus.stop(); await host.stop() })
      return { host, bus }
    }))
    const [a, b] = hosts as [typeof hosts[0], typeof hosts[0]]
    const got: Array<{ data: number[], from?: string }> = []
    b.bus.subscribe('t', (data, from) => { got.push({ data: [...data], from }) })
    a.bus.subscribe('t', () => {})
    await a.host.libp2p.dial(multiaddr(b.host.multiaddrs()[0]!))
    // Publish until the gossipsub mesh has formed (its heartbeat runs every second).
    await until(() => {
      if (got.length === 0) a.bus.publish('t', new Uint8Array([7, 8]))
      return got.length > 0
    })
    expect(got[0]).toEqual({ data: [7, 8], from: a.host.peerId })
    // Oversize is neither sent nor delivered; publishing never throws.
    a.bus.publish('t', new Uint8Array(2048))
    a.bus.publish('other', new Uint8Array([1]))
  }, 20_000)
})
