import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import { createHost, RPC_PROTOCOL, RpcTransport, type Host, type RpcTransportOptions } from '../../src/net/index.js'
import { RPC_CONTROL_PROTOCOL } from '../../src/net/rpc.js'
import type { Logger } from '../../src/runtime/log.js'
import type { PeerAddress } from '../../src/runtime/types.js'

interface Node { host: Host, rpc: RpcTransport, addr: PeerAddress, warnings: Array<Record<string, unknown>> }

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

function recordingLogger (warnings: Array<Record<string, unknown>>): Logger {
  const log: Logger = {
    debug: () => {},
    info: () => {},
    warn: (obj, msg) => { warnings.push({ ...obj, msg }) },
    error: (obj, msg) => { warnings.push({ ...obj, msg }) },
    child: () => log
  }
  return log
}

async function node (opts: Partial<RpcTransportOptions> = {}): Promise<Node> {
  const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  const host = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], gossipsub: false })
  const warnings: Array<Record<string, unknown>> = []
  const rpc = new RpcTransport({ libp2p: host.libp2p, log: recordingLogger(warnings), ...opts })
  await rpc.start()
  cleanup.push(async () => { await rpc.stop(); await host.stop() })
  return { host, rpc, addr: { id: host.peerId, addrs: host.multiaddrs() }, warnings }
}

async function pair (a: Partial<RpcTransportOptions> = {}, b: Partial<RpcTransportOptions> = {}): Promise<[Node, Node]> {
  return [await node(a), await node(b)]
}

function rpcStreams (n: Node, peer: string): number {
  return n.host.libp2p.getConnections(peerIdFromString(peer))
    .flatMap(c => c.streams)
    .filter(s => s.protocol === RPC_PROTOCOL && s.status === 'open').length
}

async function until (cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('RpcTransport', () => {
  it('round-trips a request', async () => {
    const [a, b] = await pair()
    b.rpc.handle('echo', (body, ctx) => ({ body, from: ctx.from }))
    const res = await a.rpc.request(b.addr, 'echo', { x: 1, bytes: new Uint8Array([1, 2, 3]), s: 'hé' })
    expect(res).toEqual({ body: { x: 1, bytes: expect.any(Uint8Array), s: 'hé' }, from: a.host.peerId })
    expect([...(res as { body: { bytes: Uint8Array } }).body.bytes]).toEqual([1, 2, 3])
    expect(a.rpc.localPeerId).toBe(a.host.peerId)
    expect(a.rpc.localAddrs()[0]).toContain('/p2p/' + a.host.peerId)
  })

  it('shares one stream among 100 concurrent requests, in both directions', async () => {
    const [a, b] = await pair()
    b.rpc.handle('add', (body) => (body as number) + 1)
    a.rpc.handle('add', (body) => (body as number) + 1)
    const results = await Promise.all(Array.from({ length: 100 }, async (_, i) => await a.rpc.request(b.addr, 'add', i)))
    expect(results).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(rpcStreams(a, b.host.peerId)).toBe(1)
    expect(rpcStreams(b, a.host.peerId)).toBe(1)
    // The reverse direction reuses the stream a opened.
    expect(await b.rpc.request(a.addr, 'add', 41)).toBe(42)
    expect(rpcStreams(b, a.host.peerId)).toBe(1)
    expect(a.host.libp2p.getConnections(peerIdFromString(b.host.peerId))).toHaveLength(1)
  })

  it('streams more items than the credit window, in order', async () => {
    const [a, b] = await pair({ streamWindow: 8 }, {})
    let maxAhead = 0
    let produced = 0
    let consumed = 0
    b.rpc.handleStream('count', async function * (body) {
      for (let i = 0; i < (body as number); i++) {
        produced++
        maxAhead = Math.max(maxAhead, produced - consumed)
        yield i
      }
    })
    const got: number[] = []
    for await (const item of a.rpc.stream(b.addr, 'count', 200)) {
      got.push(item as number)
      consumed++
      if (consumed % 50 === 0) await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i))
    // Flow control held the producer to the window (plus the item being consumed).
    expect(maxAhead).toBeLessThanOrEqual(8 + 1)
  })

  it('stops the remote producer when the consumer breaks early', async () => {
    const [a, b] = await pair()
    let finallyRan = false
    b.rpc.handleStream('forever', async function * () {
      try {
        for (let i = 0; ; i++) yield i
      } finally {
        finallyRan = true
      }
    })
    let n = 0
    for await (const _ of a.rpc.stream(b.addr, 'forever', null)) {
      if (++n === 5) break
    }
    await until(() => finallyRan)
    expect(await a.rpc.request(b.addr, 'nope', null).catch((e: Error) => e.name)).toBe('RemoteError')
  })

  it('times out with RpcTimeoutError and aborts the remote signal', async () => {
    const [a, b] = await pair()
    let aborted: unknown
    b.rpc.handle('slow', async (_body, ctx) => {
      await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => { aborted = ctx.signal.reason; resolve() }))
      return 'late'
    })
    const start = Date.now()
    const err = await a.rpc.request(b.addr, 'slow', null, { timeoutMs: 300 }).catch((e: Error) => e)
    expect((err as Error).name).toBe('RpcTimeoutError')
    expect((err as { code: string }).code).toBe('TIMEOUT')
    expect(Date.now() - start).toBeLessThan(2000)
    await until(() => aborted !== undefined)
    // The stream is still usable afterwards.
    b.rpc.handle('ping', () => 'pong')
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
  })

  it('cancels with RpcCancelledError and aborts the remote signal', async () => {
    const [a, b] = await pair()
    let started = false
    let aborted = false
    b.rpc.handle('wait', async (_body, ctx) => {
      started = true
      await new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => { aborted = true; resolve() }))
    })
    const ctrl = new AbortController()
    const p = a.rpc.request(b.addr, 'wait', null, { signal: ctrl.signal, timeoutMs: 30_000 }).catch((e: Error) => e)
    await until(() => started)
    ctrl.abort()
    const err = await p
    expect((err as Error).name).toBe('RpcCancelledError')
    await until(() => aborted)
    // An already aborted signal fails at once.
    const err2 = await a.rpc.request(b.addr, 'wait', null, { signal: ctrl.signal }).catch((e: Error) => e)
    expect((err2 as Error).name).toBe('RpcCancelledError')
  })

  it('reports handler errors with their code, and NO_HANDLER', async () => {
    const [a, b] = await pair()
    b.rpc.handle('boom', () => { throw Object.assign(new Error('disk full'), { code: 'ENOSPC' }) })
    b.rpc.handle('reject', async () => { throw new Error('plain') })
    b.rpc.handleStream('halfway', async function * () { yield 1; throw Object.assign(new Error('cursor lost'), { code: 'CURSOR' }) })
    const e1 = await a.rpc.request(b.addr, 'boom', null).catch((e: Error) => e) as { name: string, code: string, message: string, peer: string }
    expect(e1.name).toBe('RemoteError')
    expect(e1.code).toBe('ENOSPC')
    expect(e1.message).toContain('disk full')
    expect(e1.peer).toBe(b.host.peerId)
    const e2 = await a.rpc.request(b.addr, 'reject', null).catch((e: Error) => e) as { code: string }
    expect(e2.code).toBe('HANDLER_ERROR')
    const e3 = await a.rpc.request(b.addr, 'missing', null).catch((e: Error) => e) as { name: string, code: string }
    expect(e3.name).toBe('RemoteError')
    expect(e3.code).toBe('NO_HANDLER')
    const items: unknown[] = []
    const e4 = await (async () => { for await (const x of a.rpc.stream(b.addr, 'halfway', null)) items.push(x) })().catch((e: Error) => e) as unknown as { code: string }
    expect(items).toEqual([1])
    expect(e4.code).toBe('CURSOR')
  })

  it('fails pending requests promptly with PeerUnreachableError when the peer stops, then re-dials', async () => {
    const [a, b] = await pair()
    let started = false
    b.rpc.handle('hang', async () => { started = true; await new Promise(() => {}) })
    const start = Date.now()
    const p = a.rpc.request(b.addr, 'hang', null, { timeoutMs: 20_000 }).catch((e: Error) => e)
    await until(() => started)
    // Stop only the host (not the transport first), as a crashing or departing peer would.
    await b.host.stop()
    const err = await p
    expect((err as Error).name).toBe('PeerUnreachableError')
    expect(Date.now() - start).toBeLessThan(3000)
    // Nobody listens any more: the next request fails to dial, still as PeerUnreachableError.
    const err2 = await a.rpc.request(b.addr, 'hang', null, { timeoutMs: 5000 }).catch((e: Error) => e)
    expect((err2 as Error).name).toBe('PeerUnreachableError')
  })

  it('re-dials after the connection is closed', async () => {
    const [a, b] = await pair()
    b.rpc.handle('ping', () => 'pong')
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
    await a.host.libp2p.hangUp(peerIdFromString(b.host.peerId))
    await until(() => a.rpc.streamCount(b.host.peerId) === 0)
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
  })

  it('refuses an oversized outgoing frame without sending it', async () => {
    const [a, b] = await pair({ maxFrameBytes: 1024 }, { maxFrameBytes: 1024 })
    let calls = 0
    b.rpc.handle('sink', () => { calls++; return 'ok' })
    b.rpc.handle('big', () => new Uint8Array(4096))
    const err = await a.rpc.request(b.addr, 'sink', new Uint8Array(2048)).catch((e: Error) => e) as { name: string, code: string }
    expect(err.name).toBe('FrameTooLargeError')
    expect(calls).toBe(0)
    // An oversized answer becomes an ERR, not a broken stream.
    const err2 = await a.rpc.request(b.addr, 'big', null).catch((e: Error) => e) as { name: string, code: string }
    expect(err2.name).toBe('RemoteError')
    expect(err2.code).toBe('FRAME_TOO_LARGE')
    expect(await a.rpc.request(b.addr, 'sink', new Uint8Array(100))).toBe('ok')
    expect(calls).toBe(1)
  })

  it('survives garbage and an oversized length prefix on a raw stream', async () => {
    const [a, b] = await pair({}, { maxFrameBytes: 1024 * 1024 })
    b.rpc.handle('ping', () => 'pong')
    const bAddr = multiaddr(b.addr.addrs[0])

    // 1. A frame whose body is not msgpack.
    const raw1 = await a.host.libp2p.dialProtocol(bAddr, RPC_PROTOCOL)
    const frames1: Uint8Array[] = []
    const reader1 = (async () => { for await (const c of raw1.source) frames1.push(c.subarray()) })().catch(() => {})
    await raw1.sink([new Uint8Array([0, 0, 0, 3, 0xc1, 0xc1, 0xc1])])
    await reader1
    expect(raw1.status === 'open' && raw1.readStatus === 'ready').toBe(false)

    // 2. A well-formed REQ with a bad method: answered with ERR naming the id, then closed.
    const raw2 = await a.host.libp2p.dialProtocol(bAddr, RPC_PROTOCOL)
    const got2: Uint8Array[] = []
    const reader2 = (async () => { for await (const c of raw2.source) got2.push(c.subarray()) })().catch(() => {})
    const { Packr } = await import('msgpackr')
    const body = new Packr({ useRecords: false }).pack([0, 7, 42, null, 1000])
    const frame = new Uint8Array(4 + body.length)
    new DataView(frame.buffer).setUint32(0, body.length)
    frame.set(body, 4)
    void raw2.sink((async function * () { yield frame; await new Promise(resolve => setTimeout(resolve, 2000)) })()).catch(() => {})
    await reader2
    const reply = Buffer.concat(got2)
    const decoded = new Packr({ useRecords: false }).unpack(reply.subarray(4)) as unknown[]
    expect(decoded.slice(0, 3)).toEqual([2, 7, 'BAD_FRAME'])

    // 3. An oversized length prefix.
    const raw3 = await a.host.libp2p.dialProtocol(bAddr, RPC_PROTOCOL)
    const reader3 = (async () => { for await (const _ of raw3.source) { /* drain */ } })().catch(() => {})
    await raw3.sink([new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3])]).catch(() => {})
    await reader3

    expect(b.warnings.filter(w => w.msg === 'rpc protocol violation; closing stream').every(w => w.peer === a.host.peerId)).toBe(true)
    expect(b.warnings.length).toBeGreaterThanOrEqual(3)
    // b is still up and answers normal requests, over its RPC stream.
    expect(await a.rpc.request(b.addr, 'ping', null)).toBe('pong')
  })

  it('answers BUSY past the per-peer inbound limit', async () => {
    const [a, b] = await pair({}, { maxInboundRequestsPerPeer: 4 })
    const release: Array<() => void> = []
    b.rpc.handle('hold', async () => { await new Promise<void>(resolve => release.push(resolve)); return 'done' })
    const held = Array.from({ length: 4 }, async () => await a.rpc.request(b.addr, 'hold', null))
    await until(() => release.length === 4)
    const err = await a.rpc.request(b.addr, 'hold', null).catch((e: Error) => e) as { code: string }
    expect(err.code).toBe('BUSY')
    for (const r of release) r()
    expect(await Promise.all(held)).toEqual(['done', 'done', 'done', 'done'])
  })

  it('bootstraps by multiaddr without knowing the peer id', async () => {
    const [a, b] = await pair()
    b.rpc.handle('who', (_body, ctx) => ctx.from)
    const addr = b.host.multiaddrs()[0].replace(/\/p2p\/.*$/, '')
    const results = await Promise.all([
      a.rpc.request({ addrs: [addr] }, 'who', null),
      a.rpc.request({ addrs: [addr] }, 'who', null)
    ])
    expect(results).toEqual([a.host.peerId, a.host.peerId])
    expect(a.rpc.streamCount(b.host.peerId)).toBe(1)
    // Now known by id: reuses the same stream.
    expect(await a.rpc.request({ id: b.host.peerId, addrs: [] }, 'who', null)).toBe(a.host.peerId)
    expect(rpcStreams(a, b.host.peerId)).toBe(1)
  })

  it('delivers one-way messages', async () => {
    const [a, b] = await pair()
    const got: Array<[unknown, string]> = []
    b.rpc.onMessage('gossip', (body, from) => { got.push([body, from]) })
    a.rpc.send(b.addr, 'gossip', { n: 1 })
    a.rpc.send(b.addr, 'gossip', { n: 2 })
    a.rpc.send(b.addr, 'unknown', { n: 3 })
    await until(() => got.length === 2)
    expect(got).toEqual([[{ n: 1 }, a.host.peerId], [{ n: 2 }, a.host.peerId]])
  })

  it('reports an unreachable address as PeerUnreachableError', async () => {
    const [a] = await pair()
    const err = await a.rpc.request({ addrs: ['/ip4/127.0.0.1/tcp/1'] }, 'x', null, { timeoutMs: 5000 }).catch((e: Error) => e)
    expect((err as Error).name).toBe('PeerUnreachableError')
  })

  describe('lanes', () => {
    const ITEM_BYTES = 2 << 20
    const ITEMS = 32 // 64 MiB, as a catch-up streams a partition

    /**
     * Streams ITEMS items of ITEM_BYTES from b to a and, once the first has arrived, calls `ping`
     * on b: how many items a received while the ping was in flight, and whether it was answered
     * before the stream ended.
     */
    async function pingDuringBulk (a: Node, b: Node, ping: string): Promise<{ itemsWhilePinging: number, answeredBeforeEnd: boolean, items: number }> {
      const chunk = new Uint8Array(ITEM_BYTES).fill(7)
      b.rpc.handleStream('bulk', async function * () { for (let i = 0; i < ITEMS; i++) yield chunk })
      b.rpc.handle(ping, () => 'pong')
      // The ping's stream is open before the bulk starts (as a peer's probes open it long before
      // any catch-up): what is measured is the wait behind the data, not a stream's opening.
      expect(await a.rpc.request(b.addr, ping, {}, { timeoutMs: 60_000 })).toBe('pong')
      let items = 0
      let ended = false
      let first!: () => void
      const firstArrived = new Promise<void>(resolve => { first = resolve })
      const bulk = (async () => {
        for await (const item of a.rpc.stream(b.addr, 'bulk', {}, { timeoutMs: 120_000 })) {
          expect((item as Uint8Array).length).toBe(ITEM_BYTES)
          if (++items === 1) first()
        }
        ended = true
      })()
      await firstArrived
      const before = items
      expect(await a.rpc.request(b.addr, ping, {}, { timeoutMs: 60_000 })).toBe('pong')
      const result = { itemsWhilePinging: items - before, answeredBeforeEnd: !ended, items: 0 }
      console.log(`${ping}: ${result.itemsWhilePinging} items of 2 MiB arrived while it was in flight`)
      await bulk
      result.items = items
      return result
    }

    it('a control-lane call is answered while 64 MiB stream between the same two peers, not after what was queued', async () => {
      // The stream's window lets b queue 8 items (16 MiB) ahead of anything else it sends on it.
      const [a, b] = await pair({ controlMethods: ['ping'], streamWindow: 8 }, { controlMethods: ['ping'] })
      const r = await pingDuringBulk(a, b, 'ping')
      expect(r.items).toBe(ITEMS)
      expect(r.answeredBeforeEnd).toBe(true)
      // Answered on its own stream: at most the item being written when it came went first.
      expect(r.itemsWhilePinging).toBeLessThanOrEqual(2)
      expect(a.rpc.streamCount(b.host.peerId)).toBe(2)
    })

    it('a data-lane call waits behind what is queued on the stream (why the control lane exists)', async () => {
      const [a, b] = await pair({ streamWindow: 8 })
      const r = await pingDuringBulk(a, b, 'ping')
      expect(r.items).toBe(ITEMS)
      expect(r.itemsWhilePinging).toBeGreaterThan(2)
      expect(a.rpc.streamCount(b.host.peerId)).toBe(1)
    })

    it('falls back to the data lane for a peer without control streams (an older version)', async () => {
      const [a, b] = await pair({ controlMethods: ['ping'] }, { controlProtocol: '/shoal/rpc-control-other/1.0.0' })
      b.rpc.handle('ping', () => 'pong')
      b.rpc.onMessage('note', () => {})
      expect(await a.rpc.request(b.addr, 'ping', {}, { timeoutMs: 5000 })).toBe('pong')
      expect(await a.rpc.request(b.addr, 'ping', {}, { timeoutMs: 5000 })).toBe('pong')
      expect(a.rpc.streamCount(b.host.peerId)).toBe(1)
      // b comes back upgraded (control streams now): once the old connection is gone, a asks again.
      await a.host.libp2p.hangUp(peerIdFromString(b.host.peerId))
      await b.rpc.stop()
      const upgraded = new RpcTransport({ libp2p: b.host.libp2p, controlMethods: ['ping'] })
      upgraded.handle('ping', () => 'pong')
      await upgraded.start()
      cleanup.push(async () => { await upgraded.stop() })
      await until(() => a.rpc.streamCount(b.host.peerId) === 0)
      expect(await a.rpc.request(b.addr, 'ping', {}, { timeoutMs: 5000 })).toBe('pong')
      expect(rpcStreams(a, b.host.peerId)).toBe(0)
      expect(a.rpc.streamCount(b.host.peerId)).toBe(1)
      expect(a.host.libp2p.getConnections(peerIdFromString(b.host.peerId)).flatMap(c => c.streams).filter(st => st.protocol === RPC_CONTROL_PROTOCOL && st.status === 'open')).toHaveLength(1)
    })
  })
})
