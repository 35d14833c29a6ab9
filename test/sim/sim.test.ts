import { describe, expect, it } from 'vitest'
import {
  FrameTooLargeError, PeerUnreachableError, RemoteError, RpcCancelledError, RpcTimeoutError
} from '../../src/runtime/index.js'
import type { RequestContext } from '../../src/runtime/index.js'
import { SimWorld, UnserializableBodyError, simAddress } from './index.js'
import type { SimOptions } from './index.js'

const FIXED_3MS = { min: 3, max: 3 }

function world (opts: Partial<SimOptions> = {}): SimWorld {
  return new SimWorld({ seed: 1, latencyMs: FIXED_3MS, ...opts })
}

/** Records which settlement a promise reached and at what virtual time. */
function track<T> (w: SimWorld, p: Promise<T>): { value?: T, error?: unknown, atMs?: number } {
  const out: { value?: T, error?: unknown, atMs?: number } = {}
  p.then(v => { out.value = v; out.atMs = w.now() }, (e: unknown) => { out.error = e; out.atMs = w.now() })
  return out
}

describe('latency and loss', () => {
  it('delivers each message after its one-way latency, so a faster link overtakes a slower one', async () => {
    const w = world({ latencyMs: (from) => from === 'a' ? 10 : 2 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    const c = w.addPeer('c')
    const got: Array<[string, number]> = []
    c.transport.onMessage('m', (_body, from) => { got.push([from, w.now()]) })
    a.transport.send(simAddress('c'), 'm', 1)
    b.transport.send(simAddress('c'), 'm', 2)
    await w.run(20)
    expect(got).toEqual([['b', 2], ['a', 10]])
  })

  it('keeps the default latency between 1 and 5 ms', async () => {
    const w = new SimWorld({ seed: 3 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    const times: number[] = []
    b.transport.onMessage('m', () => { times.push(w.now()) })
    for (let i = 0; i < 200; i++) a.transport.send(simAddress('b'), 'm', i)
    await w.run(10)
    expect(times).toHaveLength(200)
    expect(Math.min(...times)).toBeGreaterThanOrEqual(1)
    expect(Math.max(...times)).toBeLessThanOrEqual(5)
  })

  it('drops roughly lossRate of the messages, and counts them', async () => {
    const w = world({ lossRate: 0.3 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let got = 0
    b.transport.onMessage('m', () => { got++ })
    for (let i = 0; i < 10_000; i++) a.transport.send(simAddress('b'), 'm', i)
    await w.run(10)
    expect(got / 10_000).toBeGreaterThan(0.67)
    expect(got / 10_000).toBeLessThan(0.73)
    expect(w.stats).toMatchObject({ sent: 10_000, delivered: got, dropped: 10_000 - got })
  })

  it('addresses a peer by its /sim/<id> address when no id is given', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('echo', body => body)
    expect(b.transport.localAddrs()).toEqual(['/sim/b'])
    const r = track(w, a.transport.request({ addrs: ['/ip4/1.2.3.4/tcp/1', ...b.transport.localAddrs()] }, 'echo', 'hi'))
    await w.run(10)
    expect(r.value).toBe('hi')
  })
})

describe('partitions', () => {
  /** Every peer sends to every other; returns who reached whom. */
  async function exchange (w: SimWorld): Promise<string[]> {
    const got: string[] = []
    const ids = w.peers().map(p => p.id)
    for (const id of ids) {
      const t = w.peer(id).transport
      if (!t.listeners.has('m')) t.onMessage('m', (_b, from) => { exchangeLog.get(w)!.push(`${from}->${id}`) })
    }
    exchangeLog.set(w, got)
    for (const from of ids) for (const to of ids) if (from !== to) w.peer(from).transport.send(simAddress(to), 'm', null)
    await w.run(10)
    return got.sort()
  }
  const exchangeLog = new WeakMap<SimWorld, string[]>()

  it('drops messages both ways across a two-way partition until heal', async () => {
    const w = world()
    for (const id of ['a', 'b', 'c']) w.addPeer(id)
    w.partition(['a'], ['b', 'c'])
    expect(await exchange(w)).toEqual(['b->c', 'c->b'])
    w.heal()
    expect(await exchange(w)).toEqual(['a->b', 'a->c', 'b->a', 'b->c', 'c->a', 'c->b'])
  })

  it('drops only A to B messages in a one-way partition', async () => {
    const w = world()
    w.addPeer('a'); w.addPeer('b')
    w.partition(['a'], ['b'], { oneWay: true })
    expect(await exchange(w)).toEqual(['b->a'])
  })

  it('blocks and unblocks a single direction of a single link', async () => {
    const w = world()
    w.addPeer('a'); w.addPeer('b')
    w.block('b', 'a')
    expect(await exchange(w)).toEqual(['a->b'])
    w.unblock('b', 'a')
    expect(await exchange(w)).toEqual(['a->b', 'b->a'])
  })

  it('loses messages already in flight when the link is cut before they arrive', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let got = 0
    b.transport.onMessage('m', () => { got++ })
    a.transport.send(simAddress('b'), 'm', null)
    w.schedule(1, () => { w.partition(['a'], ['b']) })
    await w.run(10)
    expect(got).toBe(0)
  })

  it('turns a request across a partition into a timeout', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('echo', body => body)
    w.partition(['a'], ['b'])
    const r = track(w, a.transport.request(simAddress('b'), 'echo', 1, { timeoutMs: 100 }))
    await w.run(200)
    expect(r.error).toBeInstanceOf(RpcTimeoutError)
    expect(r.atMs).toBe(100)
  })
})

describe('crash and restart', () => {
  it('stops the timers of a crashed peer', async () => {
    const w = world()
    const a = w.addPeer('a')
    let fired = 0
    const tick = (): void => { fired++; a.clock.setTimer(10, tick) }
    a.clock.setTimer(10, tick)
    await w.run(35)
    w.crash('a')
    await w.run(100)
    expect(fired).toBe(3)
    expect(a.up).toBe(false)
  })

  it('fails requests to a crashed peer with PeerUnreachableError after one latency', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('echo', body => body)
    w.crash('b')
    const r = track(w, a.transport.request(simAddress('b'), 'echo', 1))
    await w.run(100)
    expect(r.error).toBeInstanceOf(PeerUnreachableError)
    expect(r.atMs).toBe(3)
  })

  it('fails a request whose server crashes while handling it', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('slow', () => new Promise(resolve => { b.clock.setTimer(50, () => { resolve('late') }) }))
    const r = track(w, a.transport.request(simAddress('b'), 'slow', 1))
    w.schedule(20, () => { w.crash('b') })
    await w.run(100)
    expect(r.error).toBeInstanceOf(PeerUnreachableError)
    expect(r.atMs).toBe(23)
  })

  it('still delivers messages a peer sent before it crashed, but none sent to it', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    const got: string[] = []
    a.transport.onMessage('m', (body) => { got.push(`a got ${String(body)}`) })
    b.transport.onMessage('m', (body) => { got.push(`b got ${String(body)}`) })
    a.transport.send(simAddress('b'), 'm', 'from a')
    b.transport.send(simAddress('a'), 'm', 'from b')
    w.crash('a')
    a.transport.send(simAddress('b'), 'm', 'from dead a')
    await w.run(10)
    expect(got).toEqual(['b got from a'])
  })

  it('never settles the requests of a crashed caller, and aborts the handler working for it', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let abortedAtMs = -1
    b.transport.handle('wait', (_body, ctx) => new Promise(() => {
      ctx.signal.addEventListener('abort', () => { abortedAtMs = w.now() })
    }))
    const r = track(w, a.transport.request(simAddress('b'), 'wait', null, { timeoutMs: 50 }))
    w.schedule(10, () => { w.crash('a') })
    await w.run(200)
    expect(r).toEqual({})
    expect(abortedAtMs).toBe(13)
  })

  it('restarts a peer as a fresh incarnation with no handlers, whose old timers stay dead', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('who', () => 'old')
    let oldFired = 0
    b.clock.setTimer(50, () => { oldFired++ })
    w.crash('b')
    const b2 = w.restart('b')
    expect(b2).not.toBe(b)
    expect(b2.up).toBe(true)
    expect(w.peer('b')).toBe(b2)
    const before = track(w, a.transport.request(simAddress('b'), 'who', null))
    await w.run(10)
    expect((before.error as RemoteError).code).toBe('NO_HANDLER')
    b2.transport.handle('who', () => 'new')
    const after = track(w, a.transport.request(simAddress('b'), 'who', null))
    await w.run(100)
    expect(after.value).toBe('new')
    expect(oldFired).toBe(0)
  })
})

describe('stalls', () => {
  it('defers the timers of a stalled peer to the end of the stall', async () => {
    const w = world()
    const a = w.addPeer('a')
    const fired: number[] = []
    a.clock.setTimer(10, () => { fired.push(w.now()) })
    a.clock.setTimer(20, () => { fired.push(w.now()) })
    a.clock.setTimer(150, () => { fired.push(w.now()) })
    w.stall('a', 100)
    await w.run(200)
    expect(fired).toEqual([100, 100, 150])
  })

  it('defers deliveries to a stalled peer and then runs them in their original order', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    const got: Array<[unknown, number]> = []
    b.transport.onMessage('m', (body) => { got.push([body, w.now()]) })
    w.stall('b', 50)
    for (let i = 0; i < 5; i++) w.schedule(i * 10, () => { a.transport.send(simAddress('b'), 'm', i) })
    w.schedule(60, () => { a.transport.send(simAddress('b'), 'm', 'after') })
    await w.run(100)
    expect(got).toEqual([[0, 50], [1, 50], [2, 50], [3, 50], [4, 50], ['after', 63]])
  })

  it('lets a stalled caller time out only when the stall ends, even if the answer arrived', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('echo', body => body)
    const r = track(w, a.transport.request(simAddress('b'), 'echo', 1, { timeoutMs: 20 }))
    w.stall('a', 30)
    await w.run(100)
    // The answer (at 6 ms) and the deadline (at 20 ms) both wait; the answer was first in line.
    expect(r.value).toBe(1)
    expect(r.atMs).toBe(30)
  })
})

describe('requests', () => {
  it('answers with the handler result after a round trip, and tells the handler who asked', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let seenFrom = ''
    b.transport.handle('add', (body, ctx) => {
      seenFrom = ctx.from
      const { x, y } = body as { x: number, y: number }
      return { sum: x + y }
    })
    const r = track(w, a.transport.request(simAddress('b'), 'add', { x: 2, y: 3 }))
    await w.run(100)
    expect(r).toEqual({ value: { sum: 5 }, atMs: 6 })
    expect(seenFrom).toBe('a')
  })

  it('runs async handler continuations at the virtual time their timer fires', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    const sleep = (ms: number): Promise<void> => new Promise(resolve => { b.clock.setTimer(ms, resolve) })
    const steps: number[] = []
    b.transport.handle('slow', async () => {
      steps.push(w.now())
      await sleep(40)
      steps.push(w.now())
      await sleep(0)
      await Promise.resolve()
      steps.push(w.now())
      return 'done'
    })
    const r = track(w, a.transport.request(simAddress('b'), 'slow', null))
    await w.run(100)
    expect(steps).toEqual([3, 43, 43])
    expect(r).toEqual({ value: 'done', atMs: 46 })
  })

  it('resumes code awaiting a one-way reply at the virtual time the reply arrived, before later events', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.onMessage('ping', (_body, from) => { b.transport.send(simAddress(from), 'ack', null) })
    let acked: (() => void) | undefined
    a.transport.onMessage('ack', () => { acked?.() })
    const order: string[] = []
    const probe = (async () => {
      const ack = new Promise<void>(resolve => { acked = resolve })
      a.transport.send(simAddress('b'), 'ping', null)
      await ack
      order.push(`resumed@${w.now()}`)
    })()
    w.schedule(5, () => { order.push(`world@${w.now()}`) })
    w.schedule(7, () => { order.push(`world@${w.now()}`) })
    await w.run(10)
    await probe
    // The ack arrives at 6 ms (two hops of 3 ms); the continuation runs then, not at the next event.
    expect(order).toEqual(['world@5', 'resumed@6', 'world@7'])
  })

  it('chains requests from async protocol code at the right virtual times', async () => {
    const w = world()
    const [a, b, c] = ['a', 'b', 'c'].map(id => w.addPeer(id))
    c.transport.handle('leaf', () => 'leaf')
    b.transport.handle('mid', async () => `mid+${String(await b.transport.request(simAddress('c'), 'leaf', null))}`)
    const r = track(w, a!.transport.request(simAddress('b'), 'mid', null))
    await w.run(100)
    expect(r).toEqual({ value: 'mid+leaf', atMs: 12 })
  })

  it('fails with RpcTimeoutError on the caller clock and aborts the handler signal', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let abortedAtMs = -1
    b.transport.handle('never', (_body, ctx) => {
      ctx.signal.addEventListener('abort', () => { abortedAtMs = w.now() })
      return new Promise(() => {})
    })
    const r = track(w, a.transport.request(simAddress('b'), 'never', null, { timeoutMs: 250 }))
    await w.run(1000)
    expect(r.error).toBeInstanceOf(RpcTimeoutError)
    expect((r.error as RpcTimeoutError).code).toBe('TIMEOUT')
    expect(r.atMs).toBe(250)
    expect(abortedAtMs).toBe(253)
  })

  it('uses defaultRequestTimeoutMs when the caller gives no deadline', async () => {
    const w = world({ defaultRequestTimeoutMs: 700 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('never', () => new Promise(() => {}))
    const r = track(w, a.transport.request(simAddress('b'), 'never', null))
    await w.run(1000)
    expect(r.atMs).toBe(700)
  })

  it('answers NO_HANDLER for a method nobody registered', async () => {
    const w = world()
    const a = w.addPeer('a')
    w.addPeer('b')
    const r = track(w, a.transport.request(simAddress('b'), 'nope', null))
    await w.run(100)
    expect(r.error).toBeInstanceOf(RemoteError)
    expect((r.error as RemoteError).code).toBe('NO_HANDLER')
    expect((r.error as RemoteError).peer).toBe('b')
    expect(r.atMs).toBe(6)
  })

  it('carries the code of a handler error, or HANDLER_ERROR when it has none', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('coded', () => { throw Object.assign(new Error('no such key'), { code: 'NOT_FOUND' }) })
    b.transport.handle('plain', async () => { throw new Error('boom') })
    const coded = track(w, a.transport.request(simAddress('b'), 'coded', null))
    const plain = track(w, a.transport.request(simAddress('b'), 'plain', null))
    await w.run(100)
    expect(coded.error).toBeInstanceOf(RemoteError)
    expect((coded.error as RemoteError).code).toBe('NOT_FOUND')
    expect((coded.error as RemoteError).message).toContain('no such key')
    expect((plain.error as RemoteError).code).toBe('HANDLER_ERROR')
  })

  it('cancels with RpcCancelledError when the caller aborts, and aborts the remote signal one latency later', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let remote: RequestContext | undefined
    let abortedAtMs = -1
    b.transport.handle('wait', (_body, ctx) => {
      remote = ctx
      ctx.signal.addEventListener('abort', () => { abortedAtMs = w.now() })
      return new Promise(() => {})
    })
    const ctrl = new AbortController()
    const r = track(w, a.transport.request(simAddress('b'), 'wait', null, { signal: ctrl.signal }))
    w.schedule(10, () => { ctrl.abort() })
    await w.run(100)
    expect(r.error).toBeInstanceOf(RpcCancelledError)
    expect(r.atMs).toBe(10)
    expect(remote?.signal.aborted).toBe(true)
    expect(abortedAtMs).toBe(13)
  })

  it('rejects at once when the signal is already aborted', async () => {
    const w = world()
    const a = w.addPeer('a')
    w.addPeer('b')
    await expect(a.transport.request(simAddress('b'), 'x', null, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(RpcCancelledError)
  })

  it('fails with PeerUnreachableError for an address with no sim id', async () => {
    const w = world()
    const a = w.addPeer('a')
    await expect(a.transport.request({ addrs: ['/ip4/10.0.0.1/tcp/4001'] }, 'x', null)).rejects.toBeInstanceOf(PeerUnreachableError)
  })

  it('refuses a second handler for the same method', () => {
    const w = world()
    const a = w.addPeer('a')
    a.transport.handle('x', () => 1)
    expect(() => { a.transport.handle('x', () => 2) }).toThrow(/already registered/)
  })
})

describe('streams', () => {
  async function * count (n: number): AsyncGenerator<number> {
    for (let i = 0; i < n; i++) yield i
  }

  it('delivers the handler items in order, each after the link latency', async () => {
    const w = world({ latencyMs: { min: 1, max: 9 } })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handleStream('count', (body) => count(body as number))
    const got: number[] = []
    const done = (async () => {
      for await (const item of a.transport.stream(simAddress('b'), 'count', 100)) got.push(item as number)
      return w.now()
    })()
    const r = track(w, done)
    await w.run(1000)
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(r.atMs).toBeGreaterThanOrEqual(2)
  })

  it('pauses the producer when about 64 items are unconsumed', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let produced = 0
    let consumed = 0
    let maxAhead = 0
    b.transport.handleStream('many', async function * () {
      for (let i = 0; i < 500; i++) {
        produced++
        maxAhead = Math.max(maxAhead, produced - consumed)
        yield i
      }
    })
    const sleep = (ms: number): Promise<void> => new Promise(resolve => { a.clock.setTimer(ms, resolve) })
    const r = track(w, (async () => {
      for await (const _ of a.transport.stream(simAddress('b'), 'many', null)) {
        consumed++
        await sleep(1)
      }
    })())
    await w.run(5000)
    expect(r.error).toBeUndefined()
    expect(consumed).toBe(500)
    expect(maxAhead).toBeLessThanOrEqual(66)
  })

  it('fails the consumer with PeerUnreachableError when the link is partitioned mid-stream', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let serverAborted = false
    b.transport.handleStream('slow', async function * (_body, ctx) {
      ctx.signal.addEventListener('abort', () => { serverAborted = true })
      for (let i = 0; ; i++) {
        await new Promise<void>(resolve => { b.clock.setTimer(10, resolve) })
        yield i
      }
    })
    const got: unknown[] = []
    const r = track(w, (async () => {
      for await (const item of a.transport.stream(simAddress('b'), 'slow', null)) got.push(item)
    })())
    w.schedule(55, () => { w.partition(['a'], ['b']) })
    await w.run(200)
    expect(r.error).toBeInstanceOf(PeerUnreachableError)
    expect(r.atMs).toBe(58)
    expect(got).toEqual([0, 1, 2, 3, 4])
    expect(serverAborted).toBe(true)
  })

  it('fails the consumer when the producer crashes mid-stream', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handleStream('slow', async function * () {
      for (let i = 0; ; i++) {
        await new Promise<void>(resolve => { b.clock.setTimer(10, resolve) })
        yield i
      }
    })
    const r = track(w, (async () => {
      for await (const _ of a.transport.stream(simAddress('b'), 'slow', null)) { /* drain */ }
    })())
    w.schedule(35, () => { w.crash('b') })
    await w.run(200)
    expect(r.error).toBeInstanceOf(PeerUnreachableError)
  })

  it('stops the producer and aborts its signal when the consumer breaks out', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    let finallyAtMs = -1
    let aborted = false
    b.transport.handleStream('inf', async function * (_body, ctx) {
      ctx.signal.addEventListener('abort', () => { aborted = true })
      try {
        for (let i = 0; ; i++) {
          await new Promise<void>(resolve => { b.clock.setTimer(5, resolve) })
          yield i
        }
      } finally {
        finallyAtMs = w.now()
      }
    })
    const got: unknown[] = []
    const r = track(w, (async () => {
      for await (const item of a.transport.stream(simAddress('b'), 'inf', null)) {
        got.push(item)
        if (got.length === 3) break
      }
    })())
    await w.run(200)
    expect(r.error).toBeUndefined()
    expect(got).toEqual([0, 1, 2])
    expect(aborted).toBe(true)
    expect(finallyAtMs).toBeGreaterThan(0)
  })

  it('reports NO_HANDLER and handler errors after the items sent before them', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handleStream('bad', async function * () {
      yield 1
      yield 2
      throw Object.assign(new Error('disk on fire'), { code: 'IO' })
    })
    const got: unknown[] = []
    const bad = track(w, (async () => { for await (const item of a.transport.stream(simAddress('b'), 'bad', null)) got.push(item) })())
    const none = track(w, (async () => { for await (const _ of a.transport.stream(simAddress('b'), 'none', null)) { /* nothing */ } })())
    await w.run(100)
    expect(got).toEqual([1, 2])
    expect((bad.error as RemoteError).code).toBe('IO')
    expect((none.error as RemoteError).code).toBe('NO_HANDLER')
  })

  it('fails a stream when its whole deadline passes, even while items keep coming', async () => {
    const w = world()
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    // One item every 30 ms: an idle timeout would never fire, a whole-stream deadline must.
    b.transport.handleStream('slow', async function * () {
      for (let i = 0; ; i++) {
        yield i
        await new Promise<void>(resolve => { b.clock.setTimer(30, resolve) })
      }
    })
    const got: unknown[] = []
    const r = track(w, (async () => {
      for await (const item of a.transport.stream(simAddress('b'), 'slow', null, { timeoutMs: 100 })) got.push(item)
    })())
    await w.run(500)
    expect(r.error).toBeInstanceOf(RpcTimeoutError)
    expect(r.atMs).toBe(100)
    expect(got.length).toBeGreaterThanOrEqual(3)
    expect(got.length).toBeLessThanOrEqual(4)
  })
})

describe('serialization', () => {
  it('rejects a body over maxMessageBytes with FrameTooLargeError', async () => {
    const w = world({ maxMessageBytes: 1000 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('echo', body => body)
    const big = 'x'.repeat(2000)
    await expect(a.transport.request(simAddress('b'), 'echo', big)).rejects.toBeInstanceOf(FrameTooLargeError)
    expect(() => { a.transport.send(simAddress('b'), 'echo', big) }).toThrow(FrameTooLargeError)
  })

  it('answers FRAME_TOO_LARGE when the response is over the limit', async () => {
    const w = world({ maxMessageBytes: 1000 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    b.transport.handle('big', () => 'y'.repeat(5000))
    const r = track(w, a.transport.request(simAddress('b'), 'big', null))
    await w.run(100)
    expect((r.error as RemoteError).code).toBe('FRAME_TOO_LARGE')
  })

  it('rejects functions, Maps and class instances that msgpackr would silently mangle', async () => {
    const w = world()
    const a = w.addPeer('a')
    w.addPeer('b')
    class Point { x = 1 }
    for (const body of [{ f: () => 1 }, { m: new Map([[1, 2]]) }, [new Point()], { s: Symbol('s') }]) {
      expect(() => { a.transport.send(simAddress('b'), 'm', body) }).toThrow(UnserializableBodyError)
      await expect(a.transport.request(simAddress('b'), 'm', body)).rejects.toBeInstanceOf(UnserializableBodyError)
    }
  })

  it('hands the receiver a copy, not the sender object, unless serialize is off', async () => {
    for (const serialize of [true, false]) {
      const w = world({ serialize })
      const a = w.addPeer('a')
      const b = w.addPeer('b')
      let received: unknown
      b.transport.onMessage('m', (body) => { received = body })
      const body = { bytes: new Uint8Array([1, 2, 3]), nested: [{ n: 1 }, null, 'x'] }
      a.transport.send(simAddress('b'), 'm', body)
      await w.run(10)
      const r = received as typeof body
      // msgpackr decodes binary as Buffer, a Uint8Array subclass, as the real transport will.
      expect(r.bytes).toBeInstanceOf(Uint8Array)
      expect([...r.bytes]).toEqual([1, 2, 3])
      expect(r.nested).toEqual(body.nested)
      expect(received === body).toBe(!serialize)
    }
  })
})

describe('clocks and scripting', () => {
  it('applies clock skew to wallNow only', async () => {
    const w = world({ epochMs: 1_000_000 })
    const a = w.addPeer('a')
    const b = w.addPeer('b')
    w.setClockSkew('b', -250)
    await w.run(40)
    expect(a.clock.now()).toBe(40)
    expect(b.clock.now()).toBe(40)
    expect(a.clock.wallNow()).toBe(1_000_040)
    expect(b.clock.wallNow()).toBe(999_790)
  })

  it('does not fire a cancelled timer', async () => {
    const w = world()
    const a = w.addPeer('a')
    let fired = false
    const t = a.clock.setTimer(10, () => { fired = true })
    t.cancel()
    t.cancel()
    await w.run(20)
    expect(fired).toBe(false)
  })

  it('runs until a predicate holds, or reports false after maxMs', async () => {
    const w = world()
    let flag = false
    w.schedule(123, () => { flag = true })
    expect(await w.runUntil(() => flag, { maxMs: 1000, checkEveryMs: 1 })).toBe(true)
    expect(w.now()).toBe(123)
    expect(await w.runUntil(() => false, { maxMs: 500 })).toBe(false)
    expect(w.now()).toBe(623)
  })

  it('refuses a second run while one is in progress', async () => {
    const w = world()
    const first = w.run(10)
    await expect(w.run(10)).rejects.toThrow(/already running/)
    await first
  })

  it('refuses to run two worlds at once, since their runs would interleave unrepeatably', async () => {
    const first = world().run(10)
    await expect(world().run(10)).rejects.toThrow(/another SimWorld is running/)
    await first
  })
})

describe('determinism', () => {
  /** Gossip, requests, loss, a partition and a crash, all driven by the world's seed. */
  async function scenario (seed: number): Promise<{ hash: string, stats: object, log: string[] }> {
    const w = new SimWorld({ seed, lossRate: 0.05 })
    const n = 30
    const log: string[] = []
    for (let i = 0; i < n; i++) {
      const p = w.addPeer(`p${i}`)
      p.transport.onMessage('gossip', (body) => { log.push(`${p.id}<${String(body)}@${w.now().toFixed(3)}`) })
      p.transport.handle('ask', async (body) => {
        await new Promise<void>(resolve => { p.clock.setTimer(p.random.int(20), resolve) })
        return `${p.id}:${String(body)}`
      })
      const tick = (): void => {
        p.transport.send(simAddress(`p${p.random.int(n)}`), 'gossip', p.random.int(1000))
        p.transport.request(simAddress(`p${p.random.int(n)}`), 'ask', p.id, { timeoutMs: 50 })
          .then(v => { log.push(`${p.id} ok ${String(v)}@${w.now().toFixed(3)}`) }, (e: Error) => { log.push(`${p.id} ${e.name}@${w.now().toFixed(3)}`) })
        p.clock.setTimer(10 + p.random.int(10), tick)
      }
      p.clock.setTimer(p.random.int(10), tick)
    }
    w.schedule(200, () => { w.partition(['p0', 'p1', 'p2'], ['p3', 'p4', 'p5']) })
    w.schedule(300, () => { w.crash('p7') })
    w.schedule(350, () => { w.stall('p8', 40) })
    w.schedule(400, () => { w.heal() })
    await w.run(600)
    return { hash: w.traceHash(), stats: { ...w.stats }, log }
  }

  it('gives the same trace for the same seed and a different one for another seed', async () => {
    const first = await scenario(7)
    const second = await scenario(7)
    const other = await scenario(8)
    expect(first.stats).toEqual(second.stats)
    expect(first.log).toEqual(second.log)
    expect(second.hash).toBe(first.hash)
    expect(other.hash).not.toBe(first.hash)
  })

  it('gives the same trace whether continuations are drained by promise jobs or by setImmediate', async () => {
    const run = async (flush: 'auto' | 'always'): Promise<string> => {
      const w = new SimWorld({ seed: 5, flush })
      const a = w.addPeer('a')
      const b = w.addPeer('b')
      b.transport.handle('twice', async (body) => {
        await new Promise<void>(resolve => { b.clock.setTimer(1, resolve) })
        return (body as number) * 2
      })
      let x = 1
      const loop = async (): Promise<void> => {
        for (let i = 0; i < 50; i++) x = await a.transport.request(simAddress('b'), 'twice', x % 1000) as number
      }
      const done = loop()
      await w.run(10_000)
      await done
      return w.traceHash()
    }
    expect(await run('auto')).toBe(await run('always'))
  })
})

describe('throughput', () => {
  it('runs a million cheap events in a few seconds', async () => {
    const w = new SimWorld({ seed: 1, serialize: false })
    const n = 1000
    const peers = Array.from({ length: n }, (_, i) => w.addPeer(`p${i}`))
    const addrs = peers.map(p => simAddress(p.id))
    for (const p of peers) {
      p.transport.onMessage('ping', () => {})
      const tick = (): void => {
        p.transport.send(addrs[p.random.int(n)]!, 'ping', 1)
        p.clock.setTimer(10, tick)
      }
      p.clock.setTimer(p.random.int(10), tick)
    }
    const started = performance.now()
    await w.run(5000)
    const seconds = (performance.now() - started) / 1000
    console.log(`sim throughput: ${w.stats.events} events in ${seconds.toFixed(2)} s = ${Math.round(w.stats.events / seconds)} events/s`)
    expect(w.stats.events).toBeGreaterThan(990_000)
    expect(seconds).toBeLessThan(10)
  })
})
