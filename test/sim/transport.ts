import type {
  MessageListener, PeerAddress, RequestContext, RequestHandler, RequestOptions, StreamHandler, Transport
} from '../../src/runtime/index.js'
import type { SimEvent } from './heap.js'
import type { SimPeer, SimWorld } from './world.js'

/** Resolves where a message goes: the id if given, else the first '/sim/<id>' address. */
export function simTargetId (to: PeerAddress): string | undefined {
  if (to.id !== undefined) return to.id
  for (const addr of to.addrs) {
    if (addr.startsWith('/sim/') && addr.length > 5) return addr.slice(5)
  }
  return undefined
}

/**
 * One peer's view of the simulated network. It only forwards to the world, which owns the event
 * queue; the handler maps live here because a restart must start with none.
 */
export class SimTransport implements Transport {
  /** @internal */ readonly handlers = new Map<string, RequestHandler>()
  /** @internal */ readonly streamHandlers = new Map<string, StreamHandler>()
  /** @internal */ readonly listeners = new Map<string, MessageListener>()
  readonly localPeerId: string

  constructor (private readonly world: SimWorld, private readonly peer: SimPeer) {
    this.localPeerId = peer.id
  }

  localAddrs (): string[] { return [`/sim/${this.localPeerId}`] }

  send (to: PeerAddress, method: string, body: unknown): void {
    this.world.netSend(this.peer, to, method, body)
  }

  request (to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): Promise<unknown> {
    return this.world.netRequest(this.peer, to, method, body, opts)
  }

  stream (to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): AsyncIterable<unknown> {
    const world = this.world
    const peer = this.peer
    // Each iteration opens its own stream, as iterating a real stream() result twice would.
    return { [Symbol.asyncIterator]: () => world.netStream(peer, to, method, body, opts) }
  }

  handle (method: string, handler: RequestHandler): void {
    if (this.handlers.has(method)) throw new Error(`${this.localPeerId}: a handler for ${method} is already registered`)
    this.handlers.set(method, handler)
  }

  handleStream (method: string, handler: StreamHandler): void {
    if (this.streamHandlers.has(method)) throw new Error(`${this.localPeerId}: a stream handler for ${method} is already registered`)
    this.streamHandlers.set(method, handler)
  }

  onMessage (method: string, listener: MessageListener): void {
    if (this.listeners.has(method)) throw new Error(`${this.localPeerId}: a listener for ${method} is already registered`)
    this.listeners.set(method, listener)
  }
}

/**
 * The handler's context. The AbortController is made only when a handler reads `signal`: most
 * handlers never do, and one controller per request is the largest allocation of a call.
 */
export class SimRequestContext implements RequestContext {
  private ctrl: AbortController | null = null
  private abortedBeforeRead = false

  constructor (readonly from: string) {}

  get signal (): AbortSignal {
    if (this.ctrl === null) {
      this.ctrl = new AbortController()
      if (this.abortedBeforeRead) this.ctrl.abort()
    }
    return this.ctrl.signal
  }

  /** @internal */
  abort (): void {
    if (this.ctrl === null) this.abortedBeforeRead = true
    else this.ctrl.abort()
  }
}

/** A request in flight: shared by both ends, since the simulator is the wire between them. */
export class Call {
  /** Settled at the caller. */
  done = false
  /** The request reached the server (its handler ran or NO_HANDLER was answered). */
  arrived = false
  /** The server answered (or the crash of the server was reported instead). */
  replied = false
  /** The caller's cancel overtook the request; the server drops it on arrival. */
  remoteCancelled = false
  server: SimPeer | null = null
  ctx: SimRequestContext | null = null
  timer: SimEvent | null = null
  onAbort: (() => void) | null = null

  constructor (
    readonly client: SimPeer,
    readonly serverId: string,
    readonly method: string,
    public body: unknown,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
    readonly resolve: (value: unknown) => void,
    readonly reject: (err: unknown) => void
  ) {}
}

export const STREAM_OPEN = 0
export const STREAM_ENDED = 1
export const STREAM_FAILED = 2
export const STREAM_CLOSED = 3

/**
 * One streamed call. The consumer side is this AsyncIterator; the producer side is the world's
 * pump loop, which reads the same object (the simulator is the connection).
 */
export class SimStream implements AsyncIterator<unknown>, AsyncIterable<unknown> {
  // consumer side
  state = STREAM_OPEN
  error: Error | null = null
  waiter: { resolve: (r: IteratorResult<unknown>) => void, reject: (err: unknown) => void } | null = null
  /** Fails the stream when its whole deadline (opts.timeoutMs) passes. */
  deadlineTimer: SimEvent | null = null
  private buf: unknown[] = []
  private head = 0
  /** A crashed peer's iterator never answers: dead code must not resume. */
  dead = false
  onAbort: (() => void) | null = null

  // shared (flow control): items the producer sent that the consumer has not taken yet
  unconsumed = 0
  /** Delivery times are kept non-decreasing per direction, so items arrive in order. */
  lastToClientMs = 0
  lastToServerMs = 0

  // producer side
  server: SimPeer | null = null
  arrived = false
  remoteCancelled = false
  stopped = false
  ctx: SimRequestContext | null = null
  resume: (() => void) | null = null
  creditPending = false

  constructor (
    private readonly world: SimWorld,
    readonly client: SimPeer,
    readonly serverId: string,
    readonly method: string,
    public body: unknown,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined
  ) {}

  [Symbol.asyncIterator] (): AsyncIterator<unknown> { return this }

  /** @internal */
  buffered (): number { return this.buf.length - this.head }

  /** @internal */
  enqueue (item: unknown): void { this.buf.push(item) }

  /** @internal */
  dropBuffer (): void { this.buf = []; this.head = 0 }

  next (): Promise<IteratorResult<unknown>> {
    if (this.dead) return new Promise(() => {})
    if (this.head < this.buf.length) {
      const value = this.buf[this.head]
      this.buf[this.head++] = undefined
      if (this.head > 1024 && this.head * 2 > this.buf.length) { this.buf = this.buf.slice(this.head); this.head = 0 }
      this.world.streamConsumed(this)
      return Promise.resolve({ value, done: false })
    }
    if (this.state === STREAM_FAILED) {
      const err = this.error
      this.state = STREAM_CLOSED
      return Promise.reject(err)
    }
    if (this.state !== STREAM_OPEN) return Promise.resolve({ value: undefined, done: true })
    if (this.waiter !== null) return Promise.reject(new Error('SimStream: next() called again before the previous next() settled'))
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
    })
  }

  return (): Promise<IteratorResult<unknown>> {
    if (!this.dead) this.world.streamClose(this)
    return Promise.resolve({ value: undefined, done: true })
  }
}
