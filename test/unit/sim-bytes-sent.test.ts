import { describe, expect, it } from 'vitest'
import { RpcTransport } from '../../src/net/rpc.js'
import { SimWorld, simAddress } from '../sim/index.js'

// The real transport's own encoder (its Packr), used without a connection: encodeBody is what a
// body costs inside a real frame.
const real = new RpcTransport({ libp2p: { peerId: { toString: () => 'local' } } as never })
const wireBytes = (body: unknown): number => real.encodeBody(body).encodedBytes

const ping = {
  v: 1,
  seq: 42,
  target: 'b',
  pb: [{ k: 'alive', id: 'c', i: 3, a: ['/sim/c'], m: { name: 'c', http: '127.0.0.1:7947' } }],
  blob: new Uint8Array([1, 2, 3]),
  big: 2 ** 40,
  half: 0.5,
  text: 'é'
}
const answer = { ok: true, members: ['a', 'b'] }

describe('SimWorld stats.bytesSent', () => {
  for (const serialize of [true, false]) {
    it(`counts the bodies of messages, requests, responses and stream items as msgpackr encodes them (serialize: ${serialize})`, async () => {
      const world = new SimWorld({ seed: 1, serialize, countBytes: true })
      const a = world.addPeer('a')
      const b = world.addPeer('b')
      const got: unknown[] = []
      b.transport.onMessage('m', body => { got.push(body) })
      b.transport.handle('q', () => answer)
      b.transport.handle('fail', () => { throw new Error('no') })
      b.transport.handleStream('s', async function * () { yield 'x'; yield answer })

      a.transport.send(simAddress('b'), 'm', ping)
      expect(world.stats.bytesSent).toBe(wireBytes(ping))
      const res = a.transport.request(simAddress('b'), 'q', ping)
      const failed = a.transport.request(simAddress('b'), 'fail', 7).catch((err: Error) => err.name)
      const items: unknown[] = []
      const streamed = (async () => { for await (const x of a.transport.stream(simAddress('b'), 's', 'go')) items.push(x) })()
      await world.run(100)

      expect(got).toHaveLength(1)
      expect(await res).toEqual(answer)
      expect(await failed).toBe('RemoteError')
      await streamed
      expect(items).toEqual(['x', answer])
      // One-way, request + response, request + error (no body), stream open + two items.
      expect(world.stats.sent).toBe(8)
      expect(world.stats.bytesSent).toBe(
        2 * wireBytes(ping) + wireBytes(answer) + wireBytes(7) + wireBytes('go') + wireBytes('x') + wireBytes(answer))
    })
  }

  it('counts nothing unless asked', async () => {
    const world = new SimWorld({ seed: 1 })
    const a = world.addPeer('a')
    world.addPeer('b').transport.onMessage('m', () => {})
    a.transport.send(simAddress('b'), 'm', ping)
    await world.run(10)
    expect(world.stats.sent).toBe(1)
    expect(world.stats.bytesSent).toBe(0)
  })
})
