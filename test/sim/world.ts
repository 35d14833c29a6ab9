import { promiseHooks } from 'node:v8'
import {
  FrameTooLargeError, LastItem, PeerUnreachableError, RemoteError, RpcCancelledError, RpcTimeoutError, SeededRandom
} from '../../src/runtime/index.js'
import type { Clock, PeerAddress, Random, RequestOptions, Timer } from '../../src/runtime/index.js'
import { wireDecode, wireEncode, wireSize } from './codec.js'
import {
  EventHeap, SimEvent, K_CALL_FAIL, K_CALL_TIMEOUT, K_CANCEL, K_DEAD, K_MSG, K_REQ, K_RESP, K_STALL_END,
  K_STREAM_CANCEL, K_STREAM_CREDIT, K_STREAM_END, K_STREAM_ITEM, K_STREAM_OPEN, K_STREAM_TIMEOUT, K_TIMER, K_WORLD
} from './heap.js'
import {
  Call, SimRequestContext, SimStream, SimTransport, simTargetId, STREAM_CLOSED, STREAM_ENDED, STREAM_FAILED, STREAM_OPEN
} from './transport.js'

/** One-way latency: uniform in [min, max] ms, or computed per message. */
export type LatencySpec = { min: number, max: number } | ((from: string, to: string, random: Random) => number)

export interface SimOptions {
  seed: number
  /** One-way latency per message; default uniform 1..5 ms. A function gets (from, to, random). */
  latencyMs?: LatencySpec
  /** Probability that any one message (request, response, one-way) is dropped; default 0. Streams are reliable. */
  lossRate?: number
  /** Encode every body with msgpackr to catch non-serializable values and enforce maxMessageBytes; default true. */
  serialize?: boolean
  /** Default 4 MiB. */
  maxMessageBytes?: number
  /**
   * Count the encoded size of every body sent in stats.bytesSent; default false. With serialize
   * on, the size of the encoding the round trip makes anyway; without, each body is encoded once
   * more just to measure it (and a body msgpackr cannot encode throws, as with serialize).
   */
  countBytes?: boolean
  /** Deadline of request() without opts.timeoutMs, and whole-stream deadline of stream(); default 5000. */
  defaultRequestTimeoutMs?: number
  /** wallNow() = epochMs + now() + peer skew; default 1_700_000_000_000. */
  epochMs?: number
  /**
   * How to let promise continuations run between events. 'auto' (default): after an event that
   * created or settled a promise (seen through node:v8 promiseHooks), await until the promise job
   * queue is empty. 'always': a real setImmediate after every event; slower, but also waits for
   * queueMicrotask and process.nextTick callbacks, which the hooks cannot see.
   */
  flush?: 'auto' | 'always'
  /** Deliveries queued for one stalled peer beyond this are dropped (its socket buffers overflow); default 100_000. */
  maxDeferredPerPeer?: number
  /**
   * At the end of a stall, run the peer's timers that fell due during it before the messages that
   * reached it meanwhile, as Node does after a long synchronous stretch (its timers phase comes
   * before the poll phase that reads sockets). Default false: everything in its original order.
   */
  stallTimersFirst?: boolean
}

export interface SimStats {
  /** Messages put on the wire: one-way, requests, responses, stream opens and items. */
  sent: number
  /**
   * Bytes of the msgpack-encoded bodies of those messages, as the real transport encodes them
   * (the body only: not the frame around it, nor error answers, which carry no body). Counted only
   * with SimOptions.countBytes, else 0.
   */
  bytesSent: number
  /** Messages that reached an up peer. */
  delivered: number
  /** Messages lost to lossRate, partitions, crashed peers or overflowing stall queues. */
  dropped: number
  /** Events run (cancelled timers not counted). */
  events: number
}

const DEFAULT_EPOCH_MS = 1_700_000_000_000
/** Flow control of streams: the producer pauses at HIGH unconsumed items and resumes at LOW. */
const STREAM_HIGH_WATER = 64
const STREAM_LOW_WATER = 32
const TRACE_STRING_CACHE_LIMIT = 200_000

// Captured at load time so a test that installs fake timers cannot freeze the simulator.
const realSetImmediate = globalThis.setImmediate
const flushMacrotask = (): Promise<void> => new Promise(resolve => { realSetImmediate(resolve) })

const NEVER = new Promise<never>(() => {})
const DEAD_TIMER: Timer = { cancel () {} }

/** Virtual time for one peer: the world's clock, plus that peer's skew on the wall clock. */
export class SimClock implements Clock {
  constructor (private readonly world: SimWorld, private readonly peer: SimPeer) {}
  now (): number { return this.world.now() }
  wallNow (): number { return this.world.wallNowOf(this.peer.id) }
  setTimer (delayMs: number, fn: () => void): Timer { return this.world.addTimer(this.peer, delayMs, fn) }
}

/**
 * One incarnation of a simulated peer. A restart makes a new SimPeer with the same id; events
 * addressed to the old incarnation die with it.
 */
export class SimPeer {
  readonly clock: SimClock
  readonly transport: SimTransport
  /** @internal */ alive = true
  /** @internal Deliveries and timers queue here while stalled at or before this time. */
  stalledUntilMs = -Infinity
  /** @internal */ deferred: SimEvent[] = []

  constructor (world: SimWorld, readonly id: string, readonly random: SeededRandom) {
    this.clock = new SimClock(world, this)
    this.transport = new SimTransport(world, this)
  }

  get up (): boolean { return this.alive }
}

interface Partition { a: Set<string>, b: Set<string>, oneWay: boolean }

function isThenable (v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function'
}

function toRemoteError (peer: string, err: unknown): RemoteError {
  const e = err as { code?: unknown, message?: unknown } | null | undefined
  const code = typeof e?.code === 'string' ? e.code : 'HANDLER_ERROR'
  const message = typeof e?.message === 'string' ? e.message : String(err)
  return new RemoteError(peer, code, message)
}

function isMessageKind (kind: number): boolean {
  return kind === K_MSG || kind === K_REQ || kind === K_RESP
}

// Counts promise activity (creation, settlement, reaction jobs) seen by node:v8 promiseHooks.
// The drain loop reads it across microtask ticks, so two worlds running at once would reset each
// other's count: hence one running world per process (runningWorld).
let runningWorld: SimWorld | null = null
let promiseActivity = 0
function bump (): void { promiseActivity++ }
let stopHooks: (() => void) | null = null
function hooksOn (): void {
  stopHooks = promiseHooks.createHook({ init: bump, settled: bump, before: bump }) as () => void
}
function hooksOff (): void {
  if (stopHooks !== null) { stopHooks(); stopHooks = null }
}
/** Promise activity of one idle `await resolved` tick of the drain loop itself; measured once. */
let idleTickActivity = -1
const resolved = Promise.resolve()
/** A longer chain of continuations than this gets a real macrotask to finish in. */
const MAX_DRAIN_TICKS = 10_000

/** Float64 → two uint32 for hashing event times. */
const f64 = new Float64Array(1)
const u32 = new Uint32Array(f64.buffer)

export class SimWorld {
  /** The world's own stream, for test scripts; peers and the network have forks of their own. */
  readonly random: SeededRandom
  readonly stats: SimStats = { sent: 0, bytesSent: 0, delivered: 0, dropped: 0, events: 0 }
  readonly maxMessageBytes: number
  readonly defaultRequestTimeoutMs: number

  private nowMs = 0
  private seq = 0
  private readonly heap = new EventHeap()
  private ready: SimEvent[] = []
  private readyHead = 0
  private readonly byId = new Map<string, SimPeer>()
  private readonly netRandom: SeededRandom
  private latencyFn: ((from: string, to: string, random: Random) => number) | null = null
  private latMinMs = 1
  private latSpanMs = 4
  private lossRate = 0
  private readonly serialize: boolean
  private readonly countBytes: boolean
  /** Encoded size of the body the last toWire() carried (set when serializing or counting bytes). */
  private wireBytes = 0
  private readonly epochMs: number
  private readonly flushAlways: boolean
  private readonly maxDeferred: number
  private readonly stallTimersFirst: boolean
  private readonly skewMs = new Map<string, number>()
  private partitions: Partition[] = []
  private readonly blocks = new Set<string>()
  /** partitions.length + blocks.size: the common no-fault case skips blocked() entirely. */
  private cuts = 0
  private readonly openCalls = new Set<Call>()
  private readonly openStreams = new Set<SimStream>()
  private running = false
  private h1 = 0x811c9dc5
  private h2 = 0x9747b28c
  private traced = 0
  private readonly stringHashes = new Map<string, number>()

  constructor (opts: SimOptions) {
    this.random = new SeededRandom(opts.seed)
    this.netRandom = this.random.fork()
    this.setLatency(opts.latencyMs ?? { min: 1, max: 5 })
    this.setLossRate(opts.lossRate ?? 0)
    this.serialize = opts.serialize ?? true
    this.countBytes = opts.countBytes ?? false
    this.maxMessageBytes = opts.maxMessageBytes ?? 4 * 1024 * 1024
    this.defaultRequestTimeoutMs = opts.defaultRequestTimeoutMs ?? 5000
    this.epochMs = opts.epochMs ?? DEFAULT_EPOCH_MS
    this.flushAlways = opts.flush === 'always'
    this.maxDeferred = opts.maxDeferredPerPeer ?? 100_000
    this.stallTimersFirst = opts.stallTimersFirst ?? false
  }

  /** Virtual milliseconds since the world started. */
  now (): number { return this.nowMs }

  // ---------------------------------------------------------------- peers

  addPeer (id: string): SimPeer {
    if (this.byId.has(id)) throw new Error(`peer ${id} already exists`)
    const peer = new SimPeer(this, id, this.random.fork())
    this.byId.set(id, peer)
    return peer
  }

  /** The current incarnation of `id`. */
  peer (id: string): SimPeer {
    const peer = this.byId.get(id)
    if (peer === undefined) throw new Error(`no peer ${id}`)
    return peer
  }

  /** Current incarnations, crashed ones included, in the order they were added. */
  peers (): SimPeer[] { return [...this.byId.values()] }

  // ---------------------------------------------------------------- faults

  setLossRate (rate: number): void {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`lossRate must be in [0, 1], got ${rate}`)
    this.lossRate = rate
  }

  setLatency (latency: LatencySpec): void {
    if (typeof latency === 'function') {
      this.latencyFn = latency
      return
    }
    if (!(latency.min >= 0 && latency.max >= latency.min)) throw new RangeError(`latency needs 0 <= min <= max, got ${latency.min}..${latency.max}`)
    this.latencyFn = null
    this.latMinMs = latency.min
    this.latSpanMs = latency.max - latency.min
  }

  /** Messages from A to B are dropped (and B to A unless oneWay); streams across the cut break. */
  partition (groupA: string[], groupB: string[], opts: { oneWay?: boolean } = {}): void {
    this.partitions.push({ a: new Set(groupA), b: new Set(groupB), oneWay: opts.oneWay ?? false })
    this.cuts = this.partitions.length + this.blocks.size
    this.breakCutStreams()
  }

  /** Drops messages from `from` to `to` (one direction). */
  block (from: string, to: string): void {
    this.blocks.add(linkKey(from, to))
    this.cuts = this.partitions.length + this.blocks.size
    this.breakCutStreams()
  }

  unblock (from: string, to: string): void {
    this.blocks.delete(linkKey(from, to))
    this.cuts = this.partitions.length + this.blocks.size
  }

  /** Removes every partition and block. */
  heal (): void {
    this.partitions = []
    this.blocks.clear()
    this.cuts = 0
  }

  /**
   * The peer stops: its timers never fire, messages to it vanish, callers waiting on it get
   * PeerUnreachableError after one latency, and servers working for it see ctx.signal abort.
   * Its own pending requests never settle (dead code must not resume).
   */
  crash (id: string): void {
    const peer = this.peer(id)
    if (!peer.alive) return
    peer.alive = false
    for (const ev of peer.deferred) if (isMessageKind(ev.kind)) this.stats.dropped++
    peer.deferred = []
    for (const call of this.openCalls) {
      if (call.client === peer) {
        this.openCalls.delete(call)
        const server = call.server
        if (server !== null && server.alive && !call.replied) {
          this.push(this.nowMs + this.latencyMs(id, server.id), K_CANCEL, server, call, null, null)
        }
      } else if (call.server === peer && !call.replied) {
        call.replied = true
        this.push(this.nowMs + this.latencyMs(id, call.client.id), K_CALL_FAIL, call.client, call, null,
          new PeerUnreachableError(id, 'peer crashed'))
      }
    }
    for (const s of this.openStreams) {
      if (s.server === peer) {
        this.openStreams.delete(s)
        if (s.client.alive) this.failStreamLater(s, new PeerUnreachableError(id, 'peer crashed mid-stream'))
      } else if (s.client === peer) {
        this.openStreams.delete(s)
        s.dead = true
        this.cancelStreamAtServer(s, false)
      }
    }
  }

  /** A fresh incarnation of `id` (new clock, random and transport, no handlers), crashing the old one if it is up. */
  restart (id: string): SimPeer {
    const old = this.peer(id)
    if (old.alive) this.crash(id)
    const peer = new SimPeer(this, id, this.random.fork())
    this.byId.set(id, peer)
    return peer
  }

  /**
   * The peer runs nothing for durationMs (a GC pause, an overloaded event loop): its timers and
   * inbound deliveries wait until the stall ends, then run in their original order.
   */
  stall (id: string, durationMs: number): void {
    const peer = this.peer(id)
    if (!peer.alive) return
    const untilMs = this.nowMs + Math.max(0, durationMs)
    if (untilMs <= peer.stalledUntilMs) return
    peer.stalledUntilMs = untilMs
    this.push(untilMs, K_STALL_END, null, peer, null, null)
  }

  /** Shifts that peer's wallNow() (HLC timestamps); now() and timers are unaffected. */
  setClockSkew (id: string, offsetMs: number): void {
    this.skewMs.set(id, offsetMs)
  }

  /** A world-level event for test scripts (not tied to any peer, never stalled); cancellable. */
  schedule (delayMs: number, fn: () => void): Timer {
    return this.push(this.nowMs + Math.max(0, delayMs || 0), K_WORLD, null, fn, null, null)
  }

  // ---------------------------------------------------------------- running

  /** Advances virtual time by forMs, running every due event in (time, scheduling order). */
  async run (forMs: number): Promise<void> {
    if (!(forMs >= 0)) throw new RangeError(`run(forMs) needs forMs >= 0, got ${forMs}`)
    await this.advanceTo(this.nowMs + forMs)
  }

  /**
   * Runs until predicate() holds (checked every checkEveryMs of virtual time, default 10) or maxMs
   * pass. Resolves with whether it held; now() is then the time of the check that saw it.
   */
  async runUntil (predicate: () => boolean, opts: { maxMs: number, checkEveryMs?: number }): Promise<boolean> {
    const stepMs = opts.checkEveryMs ?? 10
    if (!(stepMs > 0)) throw new RangeError(`checkEveryMs must be > 0, got ${stepMs}`)
    if (predicate()) return true
    const deadlineMs = this.nowMs + opts.maxMs
    while (this.nowMs < deadlineMs) {
      await this.advanceTo(Math.min(this.nowMs + stepMs, deadlineMs))
      if (predicate()) return true
    }
    return false
  }

  /** Hash of the (time, kind, from, to, method) sequence of delivered events and fired timers. */
  traceHash (): string {
    return (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0') +
      '-' + this.traced.toString(36)
  }

  private async advanceTo (endMs: number): Promise<void> {
    if (this.running) throw new Error('SimWorld is already running: await run()/runUntil() before starting another')
    if (runningWorld !== null) throw new Error('another SimWorld is running in this process: run worlds one after another, not at once')
    this.running = true
    runningWorld = this
    const auto = !this.flushAlways
    if (auto) hooksOn()
    try {
      // Whatever the test started before run() (a request, a handler) gets going at the current time.
      await flushMacrotask()
      if (auto && idleTickActivity < 0) {
        let min = Infinity
        for (let i = 0; i < 5; i++) {
          promiseActivity = 0
          await resolved
          min = Math.min(min, promiseActivity)
        }
        idleTickActivity = min
      }
      for (;;) {
        let ev: SimEvent
        if (this.readyHead < this.ready.length) {
          ev = this.ready[this.readyHead++]!
          if (this.readyHead === this.ready.length) { this.ready = []; this.readyHead = 0 }
        } else {
          const top = this.heap.peek()
          if (top === undefined || top.timeMs > endMs) break
          this.heap.pop()
          this.nowMs = top.timeMs
          ev = top
        }
        promiseActivity = 0
        this.dispatch(ev)
        // Continuations of what this event resolved must run now, at this virtual time, before the
        // next event. A real macrotask (setImmediate) drains everything but costs a trip round the
        // libuv loop; awaiting a resolved promise until one tick passes with no promise activity
        // but our own drains promise chains at a quarter of the cost.
        if (!auto) {
          await flushMacrotask()
        } else if (promiseActivity > 0) {
          let ticks = 0
          do {
            promiseActivity = 0
            await resolved
          } while (promiseActivity > idleTickActivity && ++ticks < MAX_DRAIN_TICKS)
          if (ticks >= MAX_DRAIN_TICKS) await flushMacrotask()
        }
      }
      if (endMs > this.nowMs) this.nowMs = endMs
    } finally {
      if (auto) hooksOff()
      runningWorld = null
      this.running = false
    }
  }

  private dispatch (ev: SimEvent): void {
    const kind = ev.kind
    if (kind === K_DEAD) return
    const target = ev.target
    if (target !== null) {
      if (!target.alive) {
        if (isMessageKind(kind)) this.stats.dropped++
        return
      }
      if (target.stalledUntilMs >= this.nowMs) {
        if (target.deferred.length >= this.maxDeferred && isMessageKind(kind)) this.stats.dropped++
        else target.deferred.push(ev)
        return
      }
    }
    this.stats.events++
    switch (kind) {
      case K_TIMER:
        this.trace(K_TIMER, target!.id, '', '')
        ;(ev.a as () => void)()
        return
      case K_WORLD:
        (ev.a as () => void)()
        return
      case K_MSG: {
        const from = ev.a as string
        const method = ev.b as string
        if (this.cuts !== 0 && this.blocked(from, target!.id)) { this.stats.dropped++; return }
        this.stats.delivered++
        this.trace(K_MSG, from, target!.id, method)
        const listener = target!.transport.listeners.get(method)
        if (listener !== undefined) listener(ev.c, from)
        return
      }
      case K_REQ:
        this.deliverRequest(ev.a as Call)
        return
      case K_RESP: {
        const call = ev.a as Call
        if (this.cuts !== 0 && this.blocked(call.serverId, call.client.id)) { this.stats.dropped++; return }
        this.stats.delivered++
        this.trace(K_RESP, call.serverId, call.client.id, call.method)
        this.settle(call, ev.b as boolean, ev.c)
        return
      }
      case K_CALL_FAIL: {
        const call = ev.a as Call
        this.trace(K_CALL_FAIL, call.serverId, call.client.id, call.method)
        this.settle(call, false, ev.c)
        return
      }
      case K_CALL_TIMEOUT: {
        const call = ev.a as Call
        if (call.done) return
        this.trace(K_CALL_TIMEOUT, call.serverId, call.client.id, call.method)
        this.settle(call, false, new RpcTimeoutError(call.serverId, call.method, call.timeoutMs))
        this.cancelAtServer(call)
        return
      }
      case K_CANCEL: {
        const call = ev.a as Call
        if (!call.arrived) call.remoteCancelled = true
        else if (!call.replied && call.ctx !== null) call.ctx.abort()
        return
      }
      case K_STALL_END: {
        const peer = ev.a as SimPeer
        if (!peer.alive || peer.stalledUntilMs > this.nowMs) return
        peer.stalledUntilMs = -Infinity
        const deferred = peer.deferred
        peer.deferred = []
        if (this.stallTimersFirst) {
          for (const d of deferred) if (d.kind === K_TIMER) this.ready.push(d)
          for (const d of deferred) if (d.kind !== K_TIMER) this.ready.push(d)
        } else {
          for (const d of deferred) this.ready.push(d)
        }
        return
      }
      case K_STREAM_OPEN:
        this.openStreamAtServer(ev.a as SimStream)
        return
      case K_STREAM_ITEM:
        this.deliverStreamItem(ev.a as SimStream, ev.b)
        return
      case K_STREAM_END:
        this.deliverStreamEnd(ev.a as SimStream, ev.b as Error | null)
        return
      case K_STREAM_CANCEL: {
        const s = ev.a as SimStream
        if (!s.arrived) { s.remoteCancelled = true; return }
        if (s.stopped) return
        s.stopped = true
        s.ctx?.abort()
        this.resumeProducer(s)
        return
      }
      case K_STREAM_CREDIT: {
        const s = ev.a as SimStream
        s.creditPending = false
        this.resumeProducer(s)
        return
      }
      case K_STREAM_TIMEOUT: {
        const s = ev.a as SimStream
        if (s.state !== STREAM_OPEN) return
        this.trace(K_STREAM_TIMEOUT, s.serverId, s.client.id, s.method)
        this.failStreamNow(s, new RpcTimeoutError(s.serverId, s.method, s.timeoutMs))
        this.cancelStreamAtServer(s, true)
      }
    }
  }

  // ---------------------------------------------------------------- internals used by SimClock / SimTransport

  /** @internal */
  wallNowOf (id: string): number {
    return this.epochMs + this.nowMs + (this.skewMs.get(id) ?? 0)
  }

  /** @internal */
  addTimer (peer: SimPeer, delayMs: number, fn: () => void): Timer {
    if (!peer.alive) return DEAD_TIMER
    return this.push(this.nowMs + (delayMs > 0 ? delayMs : 0), K_TIMER, peer, fn, null, null)
  }

  /** @internal */
  netSend (from: SimPeer, to: PeerAddress, method: string, body: unknown): void {
    if (!from.alive) return
    const toId = simTargetId(to)
    if (toId === undefined) return
    if (this.serialize || this.countBytes) body = this.toWire(body, toId)
    this.stats.sent++
    if (this.countBytes) this.stats.bytesSent += this.wireBytes
    const dest = this.byId.get(toId)
    if (dest === undefined || !dest.alive || (this.cuts !== 0 && this.blocked(from.id, toId)) ||
        (this.lossRate > 0 && this.netRandom.next() < this.lossRate)) {
      this.stats.dropped++
      return
    }
    this.push(this.nowMs + this.latencyMs(from.id, toId), K_MSG, dest, from.id, method, body)
  }

  /** @internal */
  netRequest (client: SimPeer, to: PeerAddress, method: string, body: unknown, opts: RequestOptions | undefined): Promise<unknown> {
    if (!client.alive) return NEVER
    const serverId = simTargetId(to)
    const timeoutMs = opts?.timeoutMs ?? this.defaultRequestTimeoutMs
    const signal = opts?.signal
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) { reject(new RpcCancelledError(serverId, method)); return }
      if (serverId === undefined) { reject(new PeerUnreachableError(undefined, `no /sim/<id> address in ${JSON.stringify(to.addrs)}`)); return }
      if (this.serialize || this.countBytes) body = this.toWire(body, serverId)
      const call = new Call(client, serverId, method, body, timeoutMs, signal, resolve, reject)
      this.openCalls.add(call)
      call.timer = this.push(this.nowMs + Math.max(0, timeoutMs), K_CALL_TIMEOUT, client, call, null, null)
      if (signal !== undefined) {
        call.onAbort = () => {
          if (call.done) return
          this.settle(call, false, new RpcCancelledError(serverId, method))
          this.cancelAtServer(call)
        }
        signal.addEventListener('abort', call.onAbort, { once: true })
      }
      this.stats.sent++
      if (this.countBytes) this.stats.bytesSent += this.wireBytes
      if (this.cuts !== 0 && this.blocked(client.id, serverId)) { this.stats.dropped++; return }
      const server = this.byId.get(serverId)
      const latencyMs = this.latencyMs(client.id, serverId)
      if (server === undefined || !server.alive) {
        // A dial to a dead host is refused rather than ignored, so the caller learns quickly.
        this.stats.dropped++
        this.push(this.nowMs + latencyMs, K_CALL_FAIL, client, call, null,
          new PeerUnreachableError(serverId, server === undefined ? 'unknown peer' : 'peer is down'))
        return
      }
      if (this.lossRate > 0 && this.netRandom.next() < this.lossRate) { this.stats.dropped++; return }
      call.server = server
      this.push(this.nowMs + latencyMs, K_REQ, server, call, null, null)
    })
  }

  /** @internal */
  netStream (client: SimPeer, to: PeerAddress, method: string, body: unknown, opts: RequestOptions | undefined): SimStream {
    const serverId = simTargetId(to)
    const signal = opts?.signal
    const s = new SimStream(this, client, serverId ?? '', method, body, opts?.timeoutMs ?? this.defaultRequestTimeoutMs, signal)
    if (!client.alive) { s.dead = true; return s }
    if (signal?.aborted === true) { this.failStreamNow(s, new RpcCancelledError(serverId, method)); return s }
    if (serverId === undefined) {
      this.failStreamNow(s, new PeerUnreachableError(undefined, `no /sim/<id> address in ${JSON.stringify(to.addrs)}`))
      return s
    }
    if (this.serialize || this.countBytes) {
      try {
        s.body = this.toWire(body, serverId)
      } catch (err) {
        this.failStreamNow(s, err as Error)
        return s
      }
    }
    this.openStreams.add(s)
    // The deadline covers the whole stream, as in net/rpc.ts: a query's deadline bounds all of it.
    if (Number.isFinite(s.timeoutMs)) {
      s.deadlineTimer = this.push(this.nowMs + Math.max(0, s.timeoutMs), K_STREAM_TIMEOUT, s.client, s, null, null)
    }
    if (signal !== undefined) {
      s.onAbort = () => {
        if (s.state !== STREAM_OPEN) return
        this.failStreamNow(s, new RpcCancelledError(serverId, method))
        this.cancelStreamAtServer(s, true)
      }
      signal.addEventListener('abort', s.onAbort, { once: true })
    }
    const server = this.byId.get(serverId)
    if (server === undefined || !server.alive || (this.cuts !== 0 && (this.blocked(client.id, serverId) || this.blocked(serverId, client.id)))) {
      this.openStreams.delete(s)
      this.failStreamLater(s, new PeerUnreachableError(serverId, server === undefined ? 'unknown peer' : server.alive ? 'link is partitioned' : 'peer is down'))
      return s
    }
    s.server = server
    this.stats.sent++
    if (this.countBytes) this.stats.bytesSent += this.wireBytes
    s.lastToServerMs = this.nowMs + this.latencyMs(client.id, serverId)
    this.push(s.lastToServerMs, K_STREAM_OPEN, server, s, null, null)
    return s
  }

  /** @internal The consumer took one item. */
  streamConsumed (s: SimStream): void {
    s.unconsumed--
    const server = s.server
    if (s.resume !== null && !s.creditPending && s.unconsumed <= STREAM_LOW_WATER && server !== null && server.alive) {
      s.creditPending = true
      s.lastToServerMs = Math.max(s.lastToServerMs, this.nowMs + this.latencyMs(s.client.id, server.id))
      this.push(s.lastToServerMs, K_STREAM_CREDIT, server, s, null, null)
    }
  }

  /** @internal The consumer stopped early (break out of for-await). */
  streamClose (s: SimStream): void {
    if (s.state === STREAM_OPEN) {
      s.state = STREAM_CLOSED
      this.finishStreamAtClient(s)
      this.cancelStreamAtServer(s, true)
      const waiter = s.waiter
      s.waiter = null
      waiter?.resolve({ value: undefined, done: true })
    } else {
      s.state = STREAM_CLOSED
    }
    s.dropBuffer()
  }

  // ---------------------------------------------------------------- requests

  private deliverRequest (call: Call): void {
    if (call.remoteCancelled) return
    const server = call.server!
    const clientId = call.client.id
    if (this.cuts !== 0 && this.blocked(clientId, server.id)) { this.stats.dropped++; return }
    this.stats.delivered++
    this.trace(K_REQ, clientId, server.id, call.method)
    call.arrived = true
    const handler = server.transport.handlers.get(call.method)
    if (handler === undefined) {
      this.reply(call, false, new RemoteError(server.id, 'NO_HANDLER', `no handler for ${call.method}`))
      return
    }
    const ctx = new SimRequestContext(clientId)
    call.ctx = ctx
    let result: unknown
    try {
      result = handler(call.body, ctx)
    } catch (err) {
      this.reply(call, false, toRemoteError(server.id, err))
      return
    }
    if (isThenable(result)) {
      result.then(value => { this.reply(call, true, value) }, err => { this.reply(call, false, toRemoteError(server.id, err)) })
    } else {
      this.reply(call, true, result)
    }
  }

  private reply (call: Call, ok: boolean, value: unknown): void {
    if (call.replied) return
    call.replied = true
    const server = call.server!
    // A crashed server's handler may still finish in a microtask; the crash already told the caller.
    if (!server.alive || call.done) return
    const client = call.client
    let bytes = 0
    if (ok && (this.serialize || this.countBytes)) {
      try {
        value = this.toWire(value, client.id)
        bytes = this.wireBytes
      } catch (err) {
        ok = false
        value = err instanceof FrameTooLargeError
          ? new RemoteError(server.id, 'FRAME_TOO_LARGE', err.message)
          : new RemoteError(server.id, 'HANDLER_ERROR', (err as Error).message)
      }
    }
    this.stats.sent++
    if (this.countBytes) this.stats.bytesSent += bytes
    if (!client.alive || (this.cuts !== 0 && this.blocked(server.id, client.id)) ||
        (this.lossRate > 0 && this.netRandom.next() < this.lossRate)) {
      this.stats.dropped++
      return
    }
    this.push(this.nowMs + this.latencyMs(server.id, client.id), K_RESP, client, call, ok, value)
  }

  private settle (call: Call, ok: boolean, value: unknown): void {
    if (call.done) return
    call.done = true
    this.openCalls.delete(call)
    if (call.timer !== null) call.timer.cancel()
    if (call.onAbort !== null) call.signal!.removeEventListener('abort', call.onAbort)
    if (ok) call.resolve(value)
    else call.reject(value)
  }

  /** Tells the server the caller gave up, so its ctx.signal aborts (a stream reset, not subject to loss). */
  private cancelAtServer (call: Call): void {
    const server = call.server
    if (server === null || !server.alive || call.replied) return
    if (this.cuts !== 0 && this.blocked(call.client.id, server.id)) return
    this.push(this.nowMs + this.latencyMs(call.client.id, server.id), K_CANCEL, server, call, null, null)
  }

  // ---------------------------------------------------------------- streams

  private openStreamAtServer (s: SimStream): void {
    if (s.remoteCancelled) return
    const server = s.server!
    this.stats.delivered++
    this.trace(K_STREAM_OPEN, s.client.id, server.id, s.method)
    s.arrived = true
    const handler = server.transport.streamHandlers.get(s.method)
    if (handler === undefined) {
      this.endStreamFromServer(s, new RemoteError(server.id, 'NO_HANDLER', `no stream handler for ${s.method}`))
      return
    }
    s.ctx = new SimRequestContext(s.client.id)
    let iterable: AsyncIterable<unknown>
    try {
      iterable = handler(s.body, s.ctx)
    } catch (err) {
      this.endStreamFromServer(s, toRemoteError(server.id, err))
      return
    }
    void this.pump(s, server, iterable)
  }

  /** The producer loop: pulls the handler's items and puts them on the wire, pausing at the high-water mark. */
  private async pump (s: SimStream, server: SimPeer, iterable: AsyncIterable<unknown>): Promise<void> {
    let it: AsyncIterator<unknown> | undefined
    try {
      it = iterable[Symbol.asyncIterator]()
      for (;;) {
        while (s.unconsumed >= STREAM_HIGH_WATER && !s.stopped && server.alive) {
          await new Promise<void>(resolve => { s.resume = resolve })
        }
        if (s.stopped || !server.alive) break
        const r = await it.next()
        if (s.stopped || !server.alive) break
        if (r.done === true) { this.endStreamFromServer(s, null); return }
        // A handler's last item (LastItem): delivered, then the end, as the libp2p transport does.
        const last = r.value instanceof LastItem
        let item = last ? (r.value as LastItem).value : r.value
        if (this.serialize || this.countBytes) {
          try {
            item = this.toWire(item, s.client.id)
          } catch (err) {
            this.endStreamFromServer(s, err instanceof FrameTooLargeError
              ? new RemoteError(server.id, 'FRAME_TOO_LARGE', err.message)
              : new RemoteError(server.id, 'HANDLER_ERROR', (err as Error).message))
            break
          }
        }
        this.stats.sent++
        if (this.countBytes) this.stats.bytesSent += this.wireBytes
        s.unconsumed++
        s.lastToClientMs = Math.max(s.lastToClientMs, this.nowMs + this.latencyMs(server.id, s.client.id))
        this.push(s.lastToClientMs, K_STREAM_ITEM, s.client, s, item, null)
        if (last) {
          this.endStreamFromServer(s, null)
          await it.return?.()
          return
        }
      }
      // Stopped early: let the handler's generator run its finally blocks.
      if (it !== undefined && server.alive) await it.return?.()
    } catch (err) {
      if (!s.stopped && server.alive) this.endStreamFromServer(s, toRemoteError(server.id, err))
    }
  }

  private endStreamFromServer (s: SimStream, err: Error | null): void {
    s.stopped = true
    const server = s.server!
    s.lastToClientMs = Math.max(s.lastToClientMs, this.nowMs + this.latencyMs(server.id, s.client.id))
    this.push(s.lastToClientMs, K_STREAM_END, s.client, s, err, null)
  }

  private resumeProducer (s: SimStream): void {
    const resume = s.resume
    s.resume = null
    if (resume !== null) resume()
  }

  private deliverStreamItem (s: SimStream, item: unknown): void {
    if (s.state !== STREAM_OPEN) return
    this.stats.delivered++
    this.trace(K_STREAM_ITEM, s.serverId, s.client.id, s.method)
    const waiter = s.waiter
    if (waiter !== null) {
      s.waiter = null
      this.streamConsumed(s)
      waiter.resolve({ value: item, done: false })
    } else {
      s.enqueue(item)
    }
  }

  private deliverStreamEnd (s: SimStream, err: Error | null): void {
    if (s.state !== STREAM_OPEN) return
    this.trace(K_STREAM_END, s.serverId, s.client.id, s.method)
    if (err === null) {
      s.state = STREAM_ENDED
      this.finishStreamAtClient(s)
      const waiter = s.waiter
      s.waiter = null
      waiter?.resolve({ value: undefined, done: true })
    } else {
      this.failStreamNow(s, err)
    }
  }

  /** Fails the consumer side now; buffered items are still read first, then the error. */
  private failStreamNow (s: SimStream, err: Error): void {
    if (s.state !== STREAM_OPEN) return
    s.state = STREAM_FAILED
    s.error = err
    this.finishStreamAtClient(s)
    const waiter = s.waiter
    if (waiter !== null) {
      s.waiter = null
      s.state = STREAM_CLOSED
      waiter.reject(err)
    }
  }

  /** The consumer learns of a broken connection one latency from now. */
  private failStreamLater (s: SimStream, err: Error): void {
    const latencyMs = this.latencyMs(s.serverId, s.client.id)
    this.push(this.nowMs + latencyMs, K_STREAM_END, s.client, s, err, null)
  }

  private finishStreamAtClient (s: SimStream): void {
    this.openStreams.delete(s)
    if (s.deadlineTimer !== null) { s.deadlineTimer.cancel(); s.deadlineTimer = null }
    if (s.onAbort !== null) { s.signal!.removeEventListener('abort', s.onAbort); s.onAbort = null }
  }

  /** The server learns the consumer left (ctx.signal aborts, the producer stops). */
  private cancelStreamAtServer (s: SimStream, ordered: boolean): void {
    const server = s.server
    if (server === null || !server.alive || s.stopped) return
    const atMs = this.nowMs + this.latencyMs(s.client.id, server.id)
    s.lastToServerMs = ordered ? Math.max(s.lastToServerMs, atMs) : atMs
    this.push(s.lastToServerMs, K_STREAM_CANCEL, server, s, null, null)
  }

  /** A stream is a connection: a cut between its ends resets it on both sides. */
  private breakCutStreams (): void {
    for (const s of this.openStreams) {
      const server = s.server
      if (server === null) continue
      if (this.blocked(s.client.id, server.id) || this.blocked(server.id, s.client.id)) {
        this.openStreams.delete(s)
        this.failStreamLater(s, new PeerUnreachableError(server.id, 'link partitioned mid-stream'))
        this.cancelStreamAtServer(s, false)
      }
    }
  }

  // ---------------------------------------------------------------- network helpers

  /**
   * The body as its receiver gets it: with serialize, a copy through msgpack (see codec.ts), else
   * the body itself. Leaves its encoded size in wireBytes when serializing or counting bytes.
   */
  private toWire (body: unknown, peer: string): unknown {
    if (this.serialize) {
      const bytes = wireEncode(body, this.maxMessageBytes, peer)
      this.wireBytes = bytes.length
      return wireDecode(bytes)
    }
    this.wireBytes = wireSize(body)
    return body
  }

  private push (timeMs: number, kind: number, target: SimPeer | null, a: unknown, b: unknown, c: unknown): SimEvent {
    const ev = new SimEvent(timeMs, this.seq++, kind, target, a, b, c)
    this.heap.push(ev)
    return ev
  }

  private latencyMs (from: string, to: string): number {
    const fn = this.latencyFn
    const ms = fn === null ? this.latMinMs + this.netRandom.next() * this.latSpanMs : fn(from, to, this.netRandom)
    return ms > 0 ? ms : 0
  }

  private blocked (from: string, to: string): boolean {
    if (this.blocks.size !== 0 && this.blocks.has(linkKey(from, to))) return true
    for (const p of this.partitions) {
      if (p.a.has(from) && p.b.has(to)) return true
      if (!p.oneWay && p.b.has(from) && p.a.has(to)) return true
    }
    return false
  }

  private trace (kind: number, from: string, to: string, method: string): void {
    f64[0] = this.nowMs
    this.mix(u32[0]!)
    this.mix(u32[1]!)
    this.mix(kind)
    this.mix(this.stringHash(from))
    this.mix(this.stringHash(to))
    this.mix(this.stringHash(method))
    this.traced++
  }

  private mix (x: number): void {
    this.h1 = Math.imul(this.h1 ^ x, 0x01000193)
    const h2 = Math.imul(this.h2 ^ x, 0x5bd1e995)
    this.h2 = h2 ^ (h2 >>> 15)
  }

  private stringHash (s: string): number {
    let h = this.stringHashes.get(s)
    if (h !== undefined) return h
    h = 0x811c9dc5
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
    if (this.stringHashes.size >= TRACE_STRING_CACHE_LIMIT) this.stringHashes.clear()
    this.stringHashes.set(s, h)
    return h
  }
}

function linkKey (from: string, to: string): string { return `${from}\u0000${to}` }

