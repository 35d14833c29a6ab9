import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConnectionMonitor, createHost, RpcTransport, type Host } from '../../src/net/index.js'
import { silentLogger } from '../../src/runtime/index.js'

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

async function host (): Promise<{ host: Host, rpc: RpcTransport }> {
  const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  const h = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] })
  const rpc = new RpcTransport({ libp2p: h.libp2p, defaultTimeoutMs: 3000 })
  await rpc.start()
  rpc.handle('ping', () => 'pong')
  cleanup.push(async () => { await rpc.stop(); await h.stop() })
  return { host: h, rpc }
}

/** A connection that is open and answers (or not) as told. */
function fakeConnection (parts: { muxer?: unknown, newStream?: () => Promise<unknown> }): Connection & { abort: ReturnType<typeof vi.fn> } {
  const conn = {
    status: 'open',
    remotePeer: { toString: () => 'fake-peer' },
    muxer: parts.muxer,
    newStream: parts.newStream ?? (async () => { throw new Error('no streams here') }),
    abort: vi.fn(() => { conn.status = 'closed' })
  }
  return conn as unknown as Connection & { abort: ReturnType<typeof vi.fn> }
}

describe('ConnectionMonitor', () => {
  it('pings a live libp2p connection with the muxer, not a stream, and leaves it open', async () => {
    const a = await host()
    const b = await host()
    expect(await a.rpc.request({ id: b.host.peerId, addrs: b.host.multiaddrs() }, 'ping', null)).toBe('pong')
    const conn = a.host.libp2p.getConnections(peerIdFromString(b.host.peerId))[0]!
    const newStream = vi.spyOn(conn, 'newStream')
    const round = await new ConnectionMonitor(a.host.libp2p, silentLogger).round()
    // If this fails with byMuxer 0, libp2p or yamux no longer expose the muxer's ping: every
    // ping falls back to a stream per connection, libp2p's old cost (connection-monitor.ts).
    expect(round).toEqual({ pinged: 1, byMuxer: 1, aborted: 0 })
    expect(newStream).not.toHaveBeenCalled()
    expect(conn.status).toBe('open')
    expect(conn.rtt).toBeGreaterThanOrEqual(0)
    expect(await a.rpc.request({ id: b.host.peerId, addrs: b.host.multiaddrs() }, 'ping', null)).toBe('pong')
  })

  it('aborts a connection whose muxer does not answer the ping in time', async () => {
    const silent = fakeConnection({ muxer: { ping: async () => await new Promise<number>(() => {}) } })
    const answering = fakeConnection({ muxer: { ping: async () => 3 } })
    const monitor = new ConnectionMonitor({ getConnections: () => [silent, answering] }, silentLogger, { timeoutMs: 50 })
    expect(await monitor.round()).toEqual({ pinged: 2, byMuxer: 2, aborted: 1 })
    expect(silent.abort).toHaveBeenCalledTimes(1)
    expect((silent.abort.mock.calls[0]![0] as Error).message).toMatch(/no answer to a ping within 50 ms/)
    expect(answering.abort).not.toHaveBeenCalled()
    expect(answering.rtt).toBe(3)
  })

  it('aborts a connection whose muxer ping fails', async () => {
    const broken = fakeConnection({ muxer: { ping: async () => { throw new Error('muxer closed') } } })
    expect(await new ConnectionMonitor({ getConnections: () => [broken] }, silentLogger).round()).toEqual({ pinged: 1, byMuxer: 1, aborted: 1 })
    expect(broken.abort).toHaveBeenCalledTimes(1)
  })

  it('without a muxer ping, pings with a stream as libp2p did: a refused protocol is an answer, a failure is not', async () => {
    const refused = Object.assign(new Error('protocol selection failed'), { name: 'UnsupportedProtocolError' })
    const alive = fakeConnection({ newStream: async () => { throw refused } })
    const dead = fakeConnection({ newStream: async () => { throw new Error('stream reset') } })
    const hung = fakeConnection({ newStream: async () => await new Promise(() => {}) })
    const monitor = new ConnectionMonitor({ getConnections: () => [alive, dead, hung] }, silentLogger, { timeoutMs: 50 })
    expect(await monitor.round()).toEqual({ pinged: 3, byMuxer: 0, aborted: 2 })
    expect(alive.abort).not.toHaveBeenCalled()
    expect(dead.abort).toHaveBeenCalledTimes(1)
    expect(hung.abort).toHaveBeenCalledTimes(1)
  })

  it('skips connections that are not open', async () => {
    const closing = fakeConnection({ muxer: { ping: async () => 1 } })
    ;(closing as { status: string }).status = 'closing'
    expect(await new ConnectionMonitor({ getConnections: () => [closing] }, silentLogger).round()).toEqual({ pinged: 0, byMuxer: 0, aborted: 0 })
  })
})
