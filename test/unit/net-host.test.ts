import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { createHost, generateSwarmKey, HostListenError, parseSwarmKey, RpcTransport, SWARM_KEY_MISMATCH, type Host } from '../../src/net/index.js'
import type { Logger } from '../../src/runtime/index.js'
import type { PeerAddress } from '../../src/runtime/types.js'
import { recordingLogger } from './storage-helpers.js'

interface Node { host: Host, rpc: RpcTransport, addr: PeerAddress }

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function node (opts: { swarmKey?: Uint8Array, listen?: string[], log?: Logger } = {}): Promise<Node> {
  const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  const host = await createHost({ privateKey, listen: opts.listen ?? ['/ip4/127.0.0.1/tcp/0'], ...(opts.swarmKey !== undefined ? { swarmKey: opts.swarmKey } : {}), ...(opts.log !== undefined ? { log: opts.log } : {}) })
  const rpc = new RpcTransport({ libp2p: host.libp2p, defaultTimeoutMs: 3000 })
  await rpc.start()
  rpc.handle('ping', () => 'pong')
  cleanup.push(async () => { await rpc.stop(); await host.stop() })
  return { host, rpc, addr: { id: host.peerId, addrs: host.multiaddrs() } }
}

function connected (a: Node, b: Node): boolean {
  return a.host.libp2p.getConnections(peerIdFromString(b.host.peerId)).some(c => c.status === 'open')
}

async function until (cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('host', () => {
  it('starts with gossipsub and identify services on loopback', async () => {
    const a = await node()
    expect(a.host.libp2p.services.pubsub).toBeDefined()
    expect(a.host.libp2p.services.identify).toBeDefined()
    expect(a.host.multiaddrs()[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)
  })

  it('reports a port in use as HostListenError naming the address', async () => {
    const a = await node()
    const port = multiaddr(a.host.multiaddrs()[0]).toOptions().port
    const addr = `/ip4/127.0.0.1/tcp/${port}`
    const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
    const err = await createHost({ privateKey, listen: [addr] }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(HostListenError)
    expect((err as Error).message).toContain(addr)
    expect((err as Error).message).toMatch(/in use/)
    const err2 = await createHost({ privateKey, listen: ['not-a-multiaddr'] }).catch((e: Error) => e)
    expect(err2).toBeInstanceOf(HostListenError)
  })

  it('deny list cuts an existing connection, refuses both dial directions, and clearing restores contact', async () => {
    const a = await node()
    const b = await node()
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
    expect(connected(a, b)).toBe(true)

    await a.host.denyList.setDenied([b.host.peerId])
    expect(a.host.denyList.denied()).toEqual([b.host.peerId])
    await until(() => !connected(a, b) && !connected(b, a))

    // a refuses to dial b ...
    const e1 = await a.rpc.request(b.addr, 'ping', null).catch((e: Error) => e)
    expect((e1 as Error).name).toBe('PeerUnreachableError')
    // ... and b's dials to a are refused by a, even though b has no rule.
    const e2 = await b.rpc.request(a.addr, 'ping', null).catch((e: Error) => e)
    expect((e2 as Error).name).toBe('PeerUnreachableError')
    expect(connected(a, b)).toBe(false)

    await a.host.denyList.setDenied([])
    expect(await b.rpc.request(a.addr, 'ping', null)).toBe('pong')
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
  })

  it('hosts with different swarm keys cannot connect; same-key hosts can', async () => {
    const k1 = parseSwarmKey(generateSwarmKey())
    const k2 = parseSwarmKey(generateSwarmKey())
    const a = await node({ swarmKey: k1 })
    const b = await node({ swarmKey: k1 })
    const c = await node({ swarmKey: k2 })
    const open = await node()
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
    // With the wrong key the handshake sees noise: it fails at once or stalls until the deadline.
    await expect(a.host.libp2p.dial(multiaddr(c.addr.addrs[0]), { signal: AbortSignal.timeout(2000) })).rejects.toThrow()
    const err = await a.rpc.request(c.addr, 'ping', null, { timeoutMs: 1000 }).catch((e: Error) => e)
    expect(['PeerUnreachableError', 'RpcTimeoutError']).toContain((err as Error).name)
    // A host without a key cannot reach a keyed one either.
    const err2 = await open.rpc.request(a.addr, 'ping', null, { timeoutMs: 1000 }).catch((e: Error) => e)
    expect(['PeerUnreachableError', 'RpcTimeoutError']).toContain((err2 as Error).name)
    expect(connected(a, c)).toBe(false)
    expect(connected(open, a)).toBe(false)
    // Same-key contact still works after the failed attempts.
    expect(await b.rpc.request(a.addr, 'ping', null)).toBe('pong')
  })

  it('says "swarm key mismatch or not a Shoal peer" on both sides of a refused connection', async () => {
    const k1 = parseSwarmKey(generateSwarmKey())
    const k2 = parseSwarmKey(generateSwarmKey())
    const keyedLog = recordingLogger()
    const keyed = await node({ swarmKey: k1, log: keyedLog })
    const strangerLog = recordingLogger()
    const stranger = await node({ log: strangerLog })
    const other = await node({ swarmKey: k2 })
    const refusals = (log: ReturnType<typeof recordingLogger>): string[] =>
      log.entries.filter(e => e.level === 'warn' && (e.msg ?? '').includes(SWARM_KEY_MISMATCH)).map(e => e.msg!)

    // A peer without the key is told plainly why, and the keyed peer logs the refusal.
    const fromStranger = await stranger.rpc.request(keyed.addr, 'ping', null, { timeoutMs: 3000 }).catch((e: Error) => e)
    expect((fromStranger as Error).message).toContain(SWARM_KEY_MISMATCH)
    await until(() => refusals(keyedLog).length > 0)
    expect(refusals(strangerLog).length).toBeGreaterThan(0)
    // So is a peer of another cluster, dialling or dialled.
    const fromOther = await other.rpc.request(keyed.addr, 'ping', null, { timeoutMs: 3000 }).catch((e: Error) => e)
    expect((fromOther as Error).message).toContain(SWARM_KEY_MISMATCH)
    const toOther = await keyed.rpc.request(other.addr, 'ping', null, { timeoutMs: 3000 }).catch((e: Error) => e)
    expect((toOther as Error).message).toContain(SWARM_KEY_MISMATCH)
    // The guard costs nothing to a good connection: keyed and keyless pairs still talk.
    const friend = await node({ swarmKey: k1 })
    expect(await friend.rpc.request(keyed.addr, 'ping', null)).toBe('pong')
    const open = await node()
    expect(await open.rpc.request(stranger.addr, 'ping', null)).toBe('pong')
  })

  it('keeps its PeerId across restarts with the same key', async () => {
    const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
    const h1 = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], gossipsub: false })
    const id = h1.peerId
    await h1.stop()
    const h2 = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], gossipsub: false })
    cleanup.push(async () => { await h2.stop() })
    expect(h2.peerId).toBe(id)
  })
})
