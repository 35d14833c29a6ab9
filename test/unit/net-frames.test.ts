/**
 * How many yamux frames an RPC costs (src/net/yamux-window.ts, Session.scheduleFlush): on
 * loopback each frame is a noise message and a socket write that wakes the other process, so a
 * call should cost one frame each way. Counted at the muxers of both ends of a real connection.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { afterEach, describe, expect, it } from 'vitest'
import { createHost, RpcTransport, type Host } from '../../src/net/index.js'
import { LastItem, type PeerAddress } from '../../src/runtime/types.js'

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => {})
})

interface Node { host: Host, rpc: RpcTransport, addr: PeerAddress }

async function node (): Promise<Node> {
  const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  const host = await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], gossipsub: false })
  const rpc = new RpcTransport({ libp2p: host.libp2p })
  await rpc.start()
  cleanup.push(async () => { await rpc.stop(); await host.stop() })
  return { host, rpc, addr: { id: host.peerId, addrs: host.multiaddrs() } }
}

/** Counts the frames one side's muxer sends on its connection to `to`, by yamux frame type. */
function countFrames (from: Node, to: Node): { data: number, windowUpdates: number } {
  const conn = from.host.libp2p.getConnections(peerIdFromString(to.host.peerId))[0]!
  // Every frame the muxer sends is one push to its source (@chainsafe/libp2p-yamux muxer.sendFrame).
  const source = (conn as unknown as { muxer: { source: { push: (frame: Uint8Array | { get: (i: number) => number }) => void } } }).muxer.source
  const counts = { data: 0, windowUpdates: 0 }
  const push = source.push.bind(source)
  source.push = (frame) => {
    // The header's second byte is the frame type: 0 data, 1 window update, 2 ping, 3 go away.
    const type = frame instanceof Uint8Array ? frame[1] : frame.get(1)
    if (type === 0) counts.data++
    if (type === 1) counts.windowUpdates++
    push(frame)
  }
  return counts
}

describe('frames per call', () => {
  it('a request and its answer are one frame each way, with no window updates', async () => {
    const a = await node(); const b = await node()
    b.rpc.handle('echo', (body) => body)
    expect(await a.rpc.request(b.addr, 'echo', 'warm')).toBe('warm')
    const sent = countFrames(a, b); const answered = countFrames(b, a)
    const calls = 200
    for (let i = 0; i < calls; i++) expect(await a.rpc.request(b.addr, 'echo', { i, pad: 'x'.repeat(100) })).toEqual({ i, pad: 'x'.repeat(100) })
    expect(sent.data).toBe(calls)
    expect(answered.data).toBe(calls)
    // Without the half-window rule: one update per read on each side (about 2 x 200).
    expect(sent.windowUpdates + answered.windowUpdates).toBeLessThanOrEqual(2)
  })

  it('a streamed answer marked LastItem ends in the frame of its last item, and the caller sends no cancel', async () => {
    const a = await node(); const b = await node()
    // As query.fragment's handler (serveRemoteFragments) marks its last partition's item.
    b.rpc.handleStream('one', async function * (body) { yield new LastItem({ got: body }) })
    const collect = async (i: number): Promise<unknown[]> => { const out: unknown[] = []; for await (const x of a.rpc.stream(b.addr, 'one', i)) out.push(x); return out }
    expect(await collect(-1)).toEqual([{ got: -1 }])
    const sent = countFrames(a, b); const answered = countFrames(b, a)
    const calls = 200
    for (let i = 0; i < calls; i++) expect(await collect(i)).toEqual([{ got: i }])
    // The request, then ITEM with END. Unmarked, END went a few promise hops later, in a frame of
    // its own, and a caller done with the item had already sent a CANCEL for it.
    expect(sent.data).toBe(calls)
    expect(answered.data).toBe(calls)
    expect(sent.windowUpdates + answered.windowUpdates).toBeLessThanOrEqual(2)
  })

  it('an unmarked last item still ends the stream, with the END in a frame of its own', async () => {
    const a = await node(); const b = await node()
    b.rpc.handleStream('plain', async function * (body) { yield body; yield new LastItem('end') })
    const out: unknown[] = []
    for await (const x of a.rpc.stream(b.addr, 'plain', 'first')) out.push(x)
    expect(out).toEqual(['first', 'end'])
    b.rpc.handleStream('unmarked', async function * () { yield 1; yield 2 })
    const got: unknown[] = []
    for await (const x of a.rpc.stream(b.addr, 'unmarked', null)) got.push(x)
    expect(got).toEqual([1, 2])
  })

  it('a stream of many large items still flows under the half-window rule', async () => {
    const a = await node(); const b = await node()
    const item = 'y'.repeat(64 * 1024)
    b.rpc.handleStream('big', async function * () { for (let i = 0; i < 200; i++) yield { i, item } })
    let n = 0
    for await (const x of a.rpc.stream(b.addr, 'big', null, { timeoutMs: 20_000 })) {
      expect((x as { i: number }).i).toBe(n++)
    }
    // 12.5 MiB through a window of 1 MiB: the sender waited on updates and got them.
    expect(n).toBe(200)
  })
})
