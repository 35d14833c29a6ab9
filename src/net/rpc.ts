/**
 * RpcTransport: the runtime Transport over libp2p. Every later layer (SWIM probes, replication,
 * scatter/gather) sends through it, so it is built for latency: one long-lived stream per peer
 * pair carries all requests in both directions, frames are tiny positional msgpack arrays, and
 * frames that become ready together are written in one chunk.
 *
 * Wire format: uint32 big-endian body length, then a msgpack array whose first element is the
 * frame type:
 *
 *   REQ    [0, id, method, body, timeoutMs]          request/response call
 *   RES    [1, id, body]
 *   ERR    [2, id, code, message]
 *   MSG    [3, method, body]                          one-way, no id
 *   SREQ   [4, id, method, body, timeoutMs, window]   streamed call; window = initial credit
 *   ITEM   [5, id, body]                              one streamed item (costs one credit)
 *   END    [6, id]                                    streamed call finished
 *   CREDIT [7, id, n]                                 receiver grants n more items
 *   CANCEL [8, id]                                    caller gave up (abort, timeout, break)
 *
 * Ids are chosen by the side that starts a call, so each direction has its own id space: REQ,
 * SREQ, CREDIT and CANCEL name the remote's calls; RES, ERR, ITEM and END name ours.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { Packr, RESERVE_START_SPACE } from 'msgpackr'
import { FrameTooLargeError, PeerUnreachableError, RemoteError, RpcCancelledError, RpcError, RpcTimeoutError } from '../runtime/errors.js'
import type { Logger } from '../runtime/log.js'
import { silentLogger } from '../runtime/log.js'
import { SystemClock } from '../runtime/real.js'
import type { Clock, EncodedBody, MessageListener, PeerAddress, PeerId, RequestContext, RequestHandler, RequestOptions, StreamHandler, Timer, Transport } from '../runtime/types.js'

export const RPC_PROTOCOL = '/shoal/rpc/1.0.0'

const REQ = 0
const RES = 1
const ERR = 2
const MSG = 3
const SREQ = 4
const ITEM = 5
const END = 6
const CREDIT = 7
const CANCEL = 8

const MAX_ID = 0x7fffffff
const MAX_METHOD_LENGTH = 256
/** Upper bound on the credit a caller may grant at once, so a peer cannot disable flow control. */
const MAX_WINDOW = 4096
/** Frames queued together are coalesced up to this many bytes per write. */
const MAX_BATCH_BYTES = 256 * 1024
/** How long a stream closed for a protocol violation may take to flush its last ERR frame. */
const FATAL_FLUSH_MS = 1000

/** The local write queue to a peer is over maxPendingWriteBytes: the peer is not reading. */
export class RpcBackpressureError extends RpcError {
  override name = 'RpcBackpressureError'
  constructor (peer: string, queuedBytes: number, limitBytes: number) {
    super('BACKPRESSURE', `write queue to ${peer} holds ${queuedBytes} bytes (limit ${limitBytes}); peer is not reading`, { peer })
  }
}

export interface RpcTransportOptions {
  /** A started (or soon started) libp2p node; see createHost. */
  libp2p: Libp2p<any>
  /** Timers for deadlines. Default SystemClock. */
  clock?: Clock
  log?: Logger
  /** Default RPC_PROTOCOL. */
  protocol?: string
  /** Deadline of a call without its own timeoutMs. Default 10000. */
  defaultTimeoutMs?: number
  /** Largest frame body sent or accepted. Default 8 MiB. */
  maxFrameBytes?: number
  /** Calls one peer may have running here at once; more get ERR 'BUSY'. Default 1024. */
  maxInboundRequestsPerPeer?: number
  /** Bytes queued to one stream before new calls fail with RpcBackpressureError. Default 32 MiB. */
  maxPendingWriteBytes?: number
  /** Items a streamed call may have in flight before the sender waits for credit. Default 32. */
  streamWindow?: number
  /** RPC streams allowed per connection and direction (both sides may open one at once). Default 4. */
  maxStreamsPerConnection?: number
}

/**
 * A request body msgpack-encoded once (RpcTransport.encodeBody) and spliced into the REQ frame of
 * every call that sends it, so a body sent to several peers is encoded once, not once per peer.
 */
class PackedBody implements EncodedBody {
  constructor (readonly bytes: Uint8Array) {}
  get encodedBytes (): number { return this.bytes.length }
}

type Resolve = (value: unknown) => void
type Reject = (err: Error) => void

/** Client-side state of a streamed call: items received but not yet consumed. */
class StreamState {
  items: unknown[] = []
  head = 0
  ended = false
  error: Error | undefined
  wake: (() => void) | undefined
  /** Items the server may still send before it must wait for our credit. */
  allowance: number
  /** Items consumed since the last CREDIT frame. */
  consumed = 0
  constructor (readonly window: number) {
    this.allowance = window
  }

  notify (): void {
    const w = this.wake
    if (w !== undefined) {
      this.wake = undefined
      w()
    }
  }
}

/** One call this side started (request or streamed), from creation to settlement. */
class OutCall {
  id = -1
  session: Session | undefined
  settled = false
  readonly deadline: number
  private readonly timer: Timer
  private readonly onAbort: (() => void) | undefined

  constructor (
    private readonly t: RpcTransport,
    public peer: string | undefined,
    readonly method: string,
    readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
    private readonly resolve: Resolve,
    private readonly reject: Reject,
    readonly stream: StreamState | undefined
  ) {
    this.deadline = t.clock.now() + timeoutMs
    t.counters.callsStarted++
    this.timer = t.clock.setTimer(timeoutMs, () => {
      this.giveUp(new RpcTimeoutError(this.peer, method, timeoutMs))
    })
    if (signal !== undefined) {
      if (signal.aborted) {
        this.onAbort = undefined
        this.fail(new RpcCancelledError(this.peer, method))
        return
      }
      this.onAbort = () => { this.giveUp(new RpcCancelledError(this.peer, method)) }
      signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  /** Ends the call locally and tells the server to stop working on it. */
  giveUp (err: Error): void {
    if (this.settled) return
    const s = this.session
    this.fail(err)
    if (s !== undefined && !s.closed) s.sendControl([CANCEL, this.id])
  }

  succeed (value: unknown): void {
    if (this.settled) return
    this.t.counters.callsSucceeded++
    this.settle()
    this.resolve(value)
  }

  fail (err: Error): void {
    if (this.settled) return
    const code = err instanceof RpcError ? err.code : 'ERROR'
    this.t.counters.callsFailed[code] = (this.t.counters.callsFailed[code] ?? 0) + 1
    this.settle()
    const st = this.stream
    if (st !== undefined) {
      st.error = err
      st.notify()
    }
    this.reject(err)
  }

  /** Marks the call finished and drops every reference to it (timer, signal, session table). */
  settle (): void {
    this.settled = true
    this.timer.cancel()
    if (this.onAbort !== undefined) this.signal?.removeEventListener('abort', this.onAbort)
    if (this.session !== undefined) this.session.out.delete(this.id)
  }
}

/**
 * One call the remote started, being served here. It is also the handler's RequestContext: the
 * AbortController and deadline timer exist only once a handler reads `signal`, because most
 * handlers (SWIM acks, small reads) never look at it and the hot path should not pay for them.
 */
class InCall implements RequestContext {
  readonly from: PeerId
  cancelled = false
  done = false
  /** Streamed calls: items we may send before waiting for CREDIT. */
  credit = 0
  creditWaiter: (() => void) | undefined
  private ctrl: AbortController | undefined
  private timer: Timer | undefined

  constructor (
    private readonly session: Session,
    readonly id: number,
    readonly timeoutMs: number,
    readonly deadline: number
  ) {
    this.from = session.peer
  }

  get signal (): AbortSignal {
    if (this.ctrl === undefined) {
      this.ctrl = new AbortController()
      if (this.cancelled) {
        this.ctrl.abort(new RpcCancelledError(this.from, 'inbound request'))
      } else if (!this.done) {
        const clock = this.session.t.clock
        this.timer = clock.setTimer(this.deadline - clock.now(), () => {
          this.ctrl?.abort(new RpcTimeoutError(this.from, 'inbound request', this.timeoutMs))
        })
      }
    }
    return this.ctrl.signal
  }

  /** The caller cancelled, timed out or went away: abort the handler, send nothing more. */
  cancel (reason: string): void {
    if (this.cancelled) return
    this.cancelled = true
    this.timer?.cancel()
    if (this.ctrl !== undefined && !this.ctrl.signal.aborted) this.ctrl.abort(new RpcCancelledError(this.from, reason))
    this.wakeCredit()
  }

  wakeCredit (): void {
    const w = this.creditWaiter
    if (w !== undefined) {
      this.creditWaiter = undefined
      w()
    }
  }

  finish (): void {
    this.done = true
    this.timer?.cancel()
  }
}

/**
 * One libp2p stream to one peer, carrying calls both ways. Owns the frame writer (a pull source
 * handed to stream.sink) and the frame reader (parses stream.source without copying when a frame
 * lies inside one chunk).
 */
class Session {
  readonly peer: string
  readonly out = new Map<number, OutCall>()
  readonly inb = new Map<number, InCall>()
  closed = false
  queuedBytes = 0
  private nextId = 0
  private parts: Uint8Array[] = []
  private ending = false
  private pullWaiter: ((r: IteratorResult<Uint8Array>) => void) | undefined
  private flushScheduled = false
  private rbufs: Uint8Array[] = []
  private rTotal = 0

  constructor (readonly t: RpcTransport, readonly stream: Stream, readonly connection: Connection) {
    this.peer = connection.remotePeer.toString()
  }

  start (): void {
    const source: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: () => this.pull(),
        return: async () => {
          this.ending = true
          return { done: true, value: undefined }
        }
      })
    }
    this.stream.sink(source).catch((err: unknown) => {
      this.close('write failed', err)
    })
    void this.readLoop()
  }

  allocId (): number {
    do {
      this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1
    } while (this.out.has(this.nextId))
    return this.nextId
  }

  /**
   * Encodes a frame with its length prefix in one buffer: msgpackr reserves 4 bytes in front of
   * the body, so no second allocation or copy is needed. Throws FrameTooLargeError when over
   * the limit, before anything is queued.
   */
  encode (frame: unknown[]): Uint8Array {
    const buf = this.t.packr.pack(frame, RESERVE_START_SPACE | 4)
    const len = buf.length - 4
    if (len > this.t.maxFrameBytes) throw new FrameTooLargeError(len, this.t.maxFrameBytes, this.peer)
    buf[0] = len >>> 24
    buf[1] = (len >>> 16) & 0xff
    buf[2] = (len >>> 8) & 0xff
    buf[3] = len & 0xff
    return buf
  }

  /**
   * A REQ frame around a pre-encoded body, as parts (length prefix and the fields before the
   * body; the body itself, shared and uncopied; the field after it) queued back to back. A
   * positional array is its elements' encodings one after another, so the result is the same
   * bytes encode() would give.
   */
  encodePacked (id: number, method: string, body: PackedBody, remainingMs: number): Uint8Array[] {
    const head = this.t.packr.pack([REQ, id, method], RESERVE_START_SPACE | 4)
    const tail = this.t.packr.pack(remainingMs)
    // head[4] is the fixarray marker of 3 elements (0x93); the frame has 5.
    if (head[4] !== 0x93) throw new Error('unexpected msgpack array header')
    head[4] = 0x95
    const len = head.length - 4 + body.bytes.length + tail.length
    if (len > this.t.maxFrameBytes) throw new FrameTooLargeError(len, this.t.maxFrameBytes, this.peer)
    head[0] = len >>> 24
    head[1] = (len >>> 16) & 0xff
    head[2] = (len >>> 8) & 0xff
    head[3] = len & 0xff
    return [head, body.bytes, tail]
  }

  enqueue (buf: Uint8Array): void {
    if (this.closed || this.ending) return
    this.parts.push(buf)
    this.queuedBytes += buf.length
    this.scheduleFlush()
  }

  /** Small frames whose encoding cannot fail (CANCEL, CREDIT, END, ERR with short strings). */
  sendControl (frame: unknown[]): void {
    try {
      this.enqueue(this.encode(frame))
    } catch (err) {
      this.t.log.warn({ peer: this.peer, err: String(err) }, 'cannot encode control frame')
    }
  }

  sendErr (id: number, code: string, message: string): void {
    // Bound the message so an ERR can never itself be too large.
    this.sendControl([ERR, id, code, message.length > 4096 ? `${message.slice(0, 4096)}...` : message])
  }

  /**
   * Wakes the sink in a microtask rather than at once, so frames queued in the same synchronous
   * run (a burst of concurrent requests or responses) leave as one chunk.
   */
  private scheduleFlush (): void {
    if (this.pullWaiter === undefined || this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(this.flush)
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const w = this.pullWaiter
    if (w === undefined) return
    if (this.parts.length > 0) {
      this.pullWaiter = undefined
      w({ done: false, value: this.take() })
    } else if (this.ending) {
      this.pullWaiter = undefined
      w({ done: true, value: undefined })
    }
  }

  private async pull (): Promise<IteratorResult<Uint8Array>> {
    if (this.parts.length > 0) return { done: false, value: this.take() }
    if (this.ending || this.closed) return { done: true, value: undefined }
    return await new Promise(resolve => { this.pullWaiter = resolve })
  }

  /** Coalesces queued frames into one chunk (large frames go alone, uncopied). */
  private take (): Uint8Array {
    const parts = this.parts
    const first = parts[0]
    if (parts.length === 1 || first.length >= MAX_BATCH_BYTES) {
      if (parts.length === 1) this.parts = []
      else parts.shift()
      this.queuedBytes -= first.length
      return first
    }
    let n = 0
    let total = 0
    while (n < parts.length && total + parts[n].length <= MAX_BATCH_BYTES) total += parts[n++].length
    const chunk = Buffer.concat(n === parts.length ? parts : parts.slice(0, n), total)
    this.parts = n === parts.length ? [] : parts.slice(n)
    this.queuedBytes -= total
    return chunk
  }

  private async readLoop (): Promise<void> {
    try {
      for await (const chunk of this.stream.source) {
        // A Uint8ArrayList iterates over its underlying buffers: no copy.
        for (const buf of chunk) {
          if (buf.length === 0) continue
          this.rbufs.push(buf)
          this.rTotal += buf.length
        }
        if (!this.parseFrames()) return
      }
      this.close('stream closed by remote')
    } catch (err) {
      this.close('stream failed', err)
    }
  }

  /** Dispatches every complete frame in the read buffer; false once the stream is unusable. */
  private parseFrames (): boolean {
    while (this.rTotal >= 4 && !this.closed) {
      const len = this.peekLength()
      if (len > this.t.maxFrameBytes) {
        // Cannot skip the body safely (it may never arrive) nor resync: drop the stream.
        return this.fatal(`incoming frame length ${len} exceeds the limit of ${this.t.maxFrameBytes} bytes`)
      }
      if (this.rTotal < 4 + len) return true
      this.consume(4)
      const body = this.consume(len)
      let frame: unknown
      try {
        frame = this.t.packr.unpack(body)
      } catch (err) {
        return this.fatal(`undecodable frame (${len} bytes): ${err instanceof Error ? err.message : String(err)}`)
      }
      if (!this.dispatch(frame)) return false
    }
    return !this.closed
  }

  private peekLength (): number {
    const first = this.rbufs[0]
    if (first.length >= 4) return ((first[0] << 24) >>> 0) + (first[1] << 16) + (first[2] << 8) + first[3]
    let v = 0
    let got = 0
    for (const b of this.rbufs) {
      for (let i = 0; i < b.length && got < 4; i++, got++) v = v * 256 + b[i]
      if (got === 4) break
    }
    return v
  }

  /** Removes n bytes from the front of the read buffer: a view when they lie in one buffer. */
  private consume (n: number): Uint8Array {
    this.rTotal -= n
    const first = this.rbufs[0]
    if (first.length >= n) {
      if (first.length === n) this.rbufs.shift()
      else this.rbufs[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const b = this.rbufs[0]
      const take = Math.min(b.length, n - off)
      out.set(take === b.length ? b : b.subarray(0, take), off)
      off += take
      if (take === b.length) this.rbufs.shift()
      else this.rbufs[0] = b.subarray(take)
    }
    return out
  }

  /** Validates and routes one decoded frame; false when it was a protocol violation. */
  private dispatch (f: unknown): boolean {
    if (!Array.isArray(f) || f.length < 2) return this.fatal('frame is not an array of at least 2 elements')
    const type = f[0]
    const id = f[1]
    switch (type) {
      case REQ:
      case SREQ: {
        if (!isId(id)) return this.fatal(`bad ${type === REQ ? 'REQ' : 'SREQ'} id`)
        const method = f[2]
        const timeoutMs = f[4]
        if (f.length !== (type === REQ ? 5 : 6)) return this.fatal('bad request frame length', id)
        if (typeof method !== 'string' || method.length > MAX_METHOD_LENGTH) return this.fatal('bad method', id)
        if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) return this.fatal('bad timeoutMs', id)
        if (type === SREQ) {
          const window = f[5]
          if (!Number.isSafeInteger(window) || window < 1 || window > MAX_WINDOW) return this.fatal('bad window', id)
        }
        if (this.inb.has(id)) return this.fatal(`duplicate request id ${id}`)
        this.t.serve(this, type === SREQ, id, method, f[3], timeoutMs, type === SREQ ? f[5] as number : 0)
        return true
      }
      case RES: {
        if (!isId(id) || f.length !== 3) return this.fatal('bad RES frame')
        const call = this.out.get(id)
        // Unknown ids are normal: the call timed out or was cancelled before the answer came.
        if (call !== undefined && call.stream === undefined) call.succeed(f[2])
        return true
      }
      case ERR: {
        const code = f[2]
        const message = f[3]
        if (!isId(id) || f.length !== 4 || typeof code !== 'string' || typeof message !== 'string') return this.fatal('bad ERR frame')
        const call = this.out.get(id)
        if (call !== undefined) call.fail(new RemoteError(this.peer, code, message))
        return true
      }
      case MSG: {
        if (typeof id !== 'string' || id.length > MAX_METHOD_LENGTH || f.length !== 3) return this.fatal('bad MSG frame')
        this.t.deliver(this.peer, id, f[2])
        return true
      }
      case ITEM: {
        if (!isId(id) || f.length !== 3) return this.fatal('bad ITEM frame')
        const call = this.out.get(id)
        const st = call?.stream
        if (st === undefined) return true
        if (st.allowance <= 0) return this.fatal(`peer sent ITEM for call ${id} without credit`)
        st.allowance--
        st.items.push(f[2])
        st.notify()
        return true
      }
      case END: {
        if (!isId(id) || f.length !== 2) return this.fatal('bad END frame')
        const call = this.out.get(id)
        const st = call?.stream
        if (call === undefined || st === undefined) return true
        st.ended = true
        call.succeed(undefined)
        st.notify()
        return true
      }
      case CREDIT: {
        const n = f[2]
        if (!isId(id) || f.length !== 3 || !Number.isSafeInteger(n) || n < 1 || n > MAX_WINDOW) return this.fatal('bad CREDIT frame')
        const call = this.inb.get(id)
        if (call !== undefined) {
          // Cap so a peer cannot accumulate unbounded credit.
          call.credit = Math.min(call.credit + (n as number), MAX_WINDOW)
          call.wakeCredit()
        }
        return true
      }
      case CANCEL: {
        if (!isId(id) || f.length !== 2) return this.fatal('bad CANCEL frame')
        this.inb.get(id)?.cancel('cancelled by caller')
        return true
      }
      default:
        return this.fatal(`unknown frame type ${String(type)}`, undefined)
    }
  }

  /**
   * A protocol violation: answer the offending call when its id is known, log who did it, and
   * close the stream (after a short flush) — the peer's other streams and peers are unaffected,
   * and the next call to it opens a fresh stream.
   */
  fatal (reason: string, requestId?: number): false {
    if (this.closed) return false
    this.t.counters.protocolViolations++
    this.t.log.warn({ peer: this.peer, reason }, 'rpc protocol violation; closing stream')
    if (requestId !== undefined) this.sendErr(requestId, 'BAD_FRAME', reason)
    this.close(`protocol violation: ${reason}`, undefined, true)
    return false
  }

  /**
   * Fails every pending call with PeerUnreachableError, aborts every handler's signal and closes
   * the stream. `flush` lets already queued frames (a final ERR) go out first.
   */
  close (reason: string, cause?: unknown, flush = false): void {
    if (this.closed) return
    this.closed = true
    this.t.removeSession(this)
    if (this.out.size > 0) {
      const err = new PeerUnreachableError(this.peer, reason, cause)
      for (const call of [...this.out.values()]) call.fail(err)
      this.out.clear()
    }
    for (const call of this.inb.values()) call.cancel(reason)
    this.inb.clear()
    this.rbufs = []
    this.rTotal = 0
    const abort = (): void => { this.stream.abort(new Error(`rpc stream closed: ${reason}`)) }
    if (flush && this.parts.length > 0) {
      this.ending = true
      const timer = this.t.clock.setTimer(FATAL_FLUSH_MS, abort)
      // Once the sink has written the queued frames it returns done; then the stream can go.
      const check = (): void => {
        if (this.parts.length === 0) {
          timer.cancel()
          this.t.clock.setTimer(10, abort)
        } else {
          this.t.clock.setTimer(10, check)
        }
      }
      this.scheduleFlush()
      check()
    } else {
      this.parts = []
      this.queuedBytes = 0
      this.ending = true
      this.flush()
      abort()
    }
  }
}

function isId (x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' || typeof code === 'number' ? String(code) : 'HANDLER_ERROR'
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function isThenable (x: unknown): x is PromiseLike<unknown> {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof (x as { then?: unknown }).then === 'function'
}

/** `addr` with /p2p/<id> appended unless it already names a peer. */
function withPeerId (addr: string, id: string): ReturnType<typeof multiaddr> {
  const ma = multiaddr(addr)
  return ma.getPeerId() == null ? ma.encapsulate(`/p2p/${id}`) : ma
}

/** Running totals for metrics; read by the peer at scrape time. */
export interface RpcStats {
  callsStarted: number
  callsSucceeded: number
  /** Failed calls by error code (TIMEOUT, UNREACHABLE, CANCELLED, NO_HANDLER, ...). */
  callsFailed: Record<string, number>
  callsServed: number
  protocolViolations: number
  streamsOpened: number
}

export class RpcTransport implements Transport {
  readonly localPeerId: PeerId
  readonly counters: RpcStats = { callsStarted: 0, callsSucceeded: 0, callsFailed: Object.create(null), callsServed: 0, protocolViolations: 0, streamsOpened: 0 }
  readonly clock: Clock
  readonly log: Logger
  readonly packr: Packr
  readonly maxFrameBytes: number
  private readonly libp2p: Libp2p<any>
  private readonly protocol: string
  private readonly defaultTimeoutMs: number
  private readonly maxInbound: number
  private readonly maxPendingWriteBytes: number
  private readonly window: number
  private readonly maxStreams: number
  private readonly handlers = new Map<string, RequestHandler>()
  private readonly streamHandlers = new Map<string, StreamHandler>()
  private readonly listeners = new Map<string, MessageListener>()
  /** Live sessions per peer; the first is used for our calls, all of them serve the peer's. */
  private readonly sessions = new Map<string, Session[]>()
  /** Dials in progress, keyed by peer id or by bootstrap address, shared by concurrent callers. */
  private readonly opening = new Map<string, Promise<Session>>()
  /** Inbound calls running per peer, across its sessions. */
  private readonly inflight = new Map<string, number>()
  private started = false
  private stopped = false

  constructor (opts: RpcTransportOptions) {
    this.libp2p = opts.libp2p
    this.localPeerId = opts.libp2p.peerId.toString()
    this.clock = opts.clock ?? new SystemClock()
    this.log = opts.log ?? silentLogger
    this.protocol = opts.protocol ?? RPC_PROTOCOL
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 10_000
    this.maxFrameBytes = opts.maxFrameBytes ?? 8 * 1024 * 1024
    this.maxInbound = opts.maxInboundRequestsPerPeer ?? 1024
    this.maxPendingWriteBytes = opts.maxPendingWriteBytes ?? 32 * 1024 * 1024
    this.window = Math.max(1, Math.min(MAX_WINDOW, opts.streamWindow ?? 32))
    this.maxStreams = opts.maxStreamsPerConnection ?? 4
    // Plain maps as objects, no records: every frame is self-describing, so either side can
    // restart without shared encoder state. Map keys named __proto__ decode as __proto_.
    this.packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
  }

  /** Registers the protocol handler. Calls made before start() may dial, but nothing is served. */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.libp2p.handle(this.protocol, ({ stream, connection }) => {
      if (this.stopped) {
        stream.abort(new Error('rpc transport stopped'))
        return
      }
      this.addSession(connection, stream)
    }, { maxInboundStreams: this.maxStreams, maxOutboundStreams: this.maxStreams })
    this.libp2p.addEventListener('connection:close', this.onConnectionClose)
  }

  /** Fails pending calls, aborts running handlers and closes every RPC stream. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.libp2p.removeEventListener('connection:close', this.onConnectionClose)
    for (const list of [...this.sessions.values()]) {
      for (const s of [...list]) s.close('transport stopped')
    }
    if (this.started) await this.libp2p.unhandle(this.protocol).catch(() => {})
  }

  localAddrs (): string[] {
    return this.libp2p.getMultiaddrs().map(String)
  }

  handle (method: string, handler: RequestHandler): void {
    if (this.handlers.has(method) || this.streamHandlers.has(method)) throw new Error(`a handler for ${method} is already registered`)
    this.handlers.set(method, handler)
  }

  handleStream (method: string, handler: StreamHandler): void {
    if (this.handlers.has(method) || this.streamHandlers.has(method)) throw new Error(`a handler for ${method} is already registered`)
    this.streamHandlers.set(method, handler)
  }

  onMessage (method: string, listener: MessageListener): void {
    if (this.listeners.has(method)) throw new Error(`a listener for ${method} is already registered`)
    this.listeners.set(method, listener)
  }

  send (to: PeerAddress, method: string, body: unknown): void {
    const write = (s: Session): void => {
      if (s.closed || s.queuedBytes > this.maxPendingWriteBytes) return
      try {
        s.enqueue(s.encode([MSG, method, body]))
      } catch (err) {
        this.log.debug({ peer: s.peer, method, err: errorMessage(err) }, 'message dropped')
      }
    }
    const s = to.id !== undefined ? this.pick(to.id) : undefined
    if (s !== undefined) write(s)
    else this.session(to).then(write, (err: unknown) => { this.log.debug({ to, method, err: errorMessage(err) }, 'message dropped') })
  }

  /** Encodes a request body once, to send it to several peers (see Transport.encodeBody). */
  encodeBody (body: unknown): EncodedBody {
    const bytes = this.packr.pack(body)
    if (bytes.length > this.maxFrameBytes) throw new FrameTooLargeError(bytes.length, this.maxFrameBytes)
    return new PackedBody(bytes)
  }

  async request (to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): Promise<unknown> {
    return await new Promise((resolve, reject) => {
      const call = new OutCall(this, to.id ?? to.addrs[0], method, opts?.timeoutMs ?? this.defaultTimeoutMs, opts?.signal, resolve, reject, undefined)
      if (call.settled) return
      this.begin(to, call, body)
    })
  }

  stream (to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): AsyncIterable<unknown> {
    return { [Symbol.asyncIterator]: () => this.runStream(to, method, body, opts) }
  }

  private async * runStream (to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): AsyncGenerator<unknown> {
    const st = new StreamState(this.window)
    // Errors reach the consumer through st.error; the promise callbacks are not needed.
    const call = new OutCall(this, to.id ?? to.addrs[0], method, opts?.timeoutMs ?? this.defaultTimeoutMs, opts?.signal, noop, noop, st)
    if (!call.settled) this.begin(to, call, body)
    try {
      for (;;) {
        if (st.head < st.items.length) {
          const item = st.items[st.head]
          st.items[st.head++] = undefined
          if (st.head === st.items.length) {
            st.items = []
            st.head = 0
          }
          yield item
          // Grant credit in half-window batches: fewer CREDIT frames, and the sender never stalls
          // while the consumer keeps up.
          if (!call.settled && ++st.consumed >= Math.max(1, st.window >> 1)) {
            const s = call.session
            if (s !== undefined && !s.closed) {
              st.allowance += st.consumed
              s.sendControl([CREDIT, call.id, st.consumed])
            }
            st.consumed = 0
          }
          continue
        }
        if (st.error !== undefined) throw st.error
        if (st.ended) return
        await new Promise<void>(resolve => { st.wake = resolve })
      }
    } finally {
      // The consumer stopped early (break, throw): tell the server to stop producing.
      call.giveUp(new RpcCancelledError(call.peer, method))
    }
  }

  /** Attaches a new call to a session, dialling first if there is none yet. */
  private begin (to: PeerAddress, call: OutCall, body: unknown): void {
    const s = to.id !== undefined ? this.pick(to.id) : undefined
    if (s !== undefined) {
      this.dispatchCall(s, call, body)
      return
    }
    this.session(to).then(
      s => { this.dispatchCall(s, call, body) },
      (err: unknown) => { call.fail(err instanceof Error ? err : new PeerUnreachableError(call.peer, String(err))) }
    )
  }

  private dispatchCall (s: Session, call: OutCall, body: unknown): void {
    if (call.settled) return
    call.peer = s.peer
    if (s.closed) {
      call.fail(new PeerUnreachableError(s.peer, 'stream closed'))
      return
    }
    if (s.queuedBytes > this.maxPendingWriteBytes) {
      call.fail(new RpcBackpressureError(s.peer, s.queuedBytes, this.maxPendingWriteBytes))
      return
    }
    const id = s.allocId()
    // Send the time left, not the original timeout: dialling may have used some of it.
    const remainingMs = Math.max(1, Math.ceil(call.deadline - this.clock.now()))
    let bufs: Uint8Array | Uint8Array[]
    try {
      if (body instanceof PackedBody) {
        if (call.stream !== undefined) throw new Error('a pre-encoded body cannot start a streamed call')
        bufs = s.encodePacked(id, call.method, body, remainingMs)
      } else {
        bufs = s.encode(call.stream === undefined
          ? [REQ, id, call.method, body, remainingMs]
          : [SREQ, id, call.method, body, remainingMs, call.stream.window])
      }
    } catch (err) {
      call.fail(err instanceof RpcError ? err : new RpcError('ENCODE', `cannot encode request ${call.method}: ${errorMessage(err)}`, { peer: s.peer, cause: err }))
      return
    }
    call.id = id
    call.session = s
    s.out.set(id, call)
    if (bufs instanceof Uint8Array) s.enqueue(bufs)
    else for (const b of bufs) s.enqueue(b)
  }

  /** Serves one inbound call (from Session.dispatch). */
  serve (s: Session, streamed: boolean, id: number, method: string, body: unknown, timeoutMs: number, window: number): void {
    const handler = streamed ? this.streamHandlers.get(method) : this.handlers.get(method)
    if (handler === undefined) {
      s.sendErr(id, 'NO_HANDLER', `no ${streamed ? 'stream ' : ''}handler for ${method}`)
      return
    }
    const running = this.inflight.get(s.peer) ?? 0
    if (running >= this.maxInbound) {
      s.sendErr(id, 'BUSY', `${running} requests from this peer are already running`)
      return
    }
    this.inflight.set(s.peer, running + 1)
    this.counters.callsServed++
    const call = new InCall(s, id, timeoutMs, this.clock.now() + timeoutMs)
    s.inb.set(id, call)
    if (streamed) {
      call.credit = window
      void this.serveStream(s, call, handler as StreamHandler, body, method)
      return
    }
    let result: unknown
    try {
      result = (handler as RequestHandler)(body, call)
    } catch (err) {
      this.answerError(s, call, err, method)
      return
    }
    if (isThenable(result)) {
      result.then(v => { this.answer(s, call, v, method) }, (err: unknown) => { this.answerError(s, call, err, method) })
    } else {
      this.answer(s, call, result, method)
    }
  }

  /** Releases the slot of a finished inbound call; false when its answer is no longer wanted. */
  private release (s: Session, call: InCall): boolean {
    call.finish()
    if (s.inb.get(call.id) === call) s.inb.delete(call.id)
    const n = (this.inflight.get(s.peer) ?? 1) - 1
    if (n <= 0) this.inflight.delete(s.peer)
    else this.inflight.set(s.peer, n)
    // Past the deadline the caller has given up; answering would only cost bandwidth.
    return !call.cancelled && !s.closed && this.clock.now() <= call.deadline
  }

  private answer (s: Session, call: InCall, value: unknown, method: string): void {
    if (!this.release(s, call)) return
    let buf: Uint8Array
    try {
      buf = s.encode([RES, call.id, value])
    } catch (err) {
      this.log.warn({ peer: s.peer, method, err: errorMessage(err) }, 'response not sent')
      s.sendErr(call.id, err instanceof FrameTooLargeError ? err.code : 'ENCODE', errorMessage(err))
      return
    }
    this.enqueueAnswer(s, buf)
  }

  private answerError (s: Session, call: InCall, err: unknown, method: string): void {
    if (!this.release(s, call)) return
    this.log.debug({ peer: s.peer, method, err: errorMessage(err) }, 'handler failed')
    s.sendErr(call.id, errorCode(err), errorMessage(err))
  }

  /**
   * Answers are bounded by the inbound call limit, so a queue far over the limit means the peer
   * sends requests but does not read the answers; drop its stream rather than buffer forever.
   */
  private enqueueAnswer (s: Session, buf: Uint8Array): void {
    if (s.queuedBytes > 2 * this.maxPendingWriteBytes) {
      s.fatal(`write queue over ${2 * this.maxPendingWriteBytes} bytes; peer is not reading`)
      return
    }
    s.enqueue(buf)
  }

  private async serveStream (s: Session, call: InCall, handler: StreamHandler, body: unknown, method: string): Promise<void> {
    let it: AsyncIterator<unknown> | undefined
    let finished = false
    try {
      it = handler(body, call)[Symbol.asyncIterator]()
      for (;;) {
        while (call.credit <= 0 && !call.cancelled && !s.closed) {
          await new Promise<void>(resolve => { call.creditWaiter = resolve })
        }
        if (call.cancelled || s.closed || this.clock.now() > call.deadline) break
        const r = await it.next()
        if (r.done === true) {
          finished = true
          if (this.release(s, call)) s.sendControl([END, call.id])
          return
        }
        if (call.cancelled || s.closed) break
        let buf: Uint8Array
        try {
          buf = s.encode([ITEM, call.id, r.value])
        } catch (err) {
          this.log.warn({ peer: s.peer, method, err: errorMessage(err) }, 'stream item not sent')
          finished = true
          if (this.release(s, call)) s.sendErr(call.id, err instanceof FrameTooLargeError ? err.code : 'ENCODE', errorMessage(err))
          return
        }
        call.credit--
        this.enqueueAnswer(s, buf)
      }
    } catch (err) {
      finished = true
      if (this.release(s, call)) {
        this.log.debug({ peer: s.peer, method, err: errorMessage(err) }, 'stream handler failed')
        s.sendErr(call.id, errorCode(err), errorMessage(err))
      }
      return
    } finally {
      if (!finished) {
        this.release(s, call)
        // Let the handler run its own finally blocks (close cursors, files).
        await it?.return?.()?.catch?.(() => {})
      }
    }
  }

  /** Hands a one-way message to its listener; listener errors stay here. */
  deliver (from: string, method: string, body: unknown): void {
    const listener = this.listeners.get(method)
    if (listener === undefined) {
      this.log.debug({ peer: from, method }, 'message for unknown method dropped')
      return
    }
    try {
      listener(body, from)
    } catch (err) {
      this.log.warn({ peer: from, method, err: errorMessage(err) }, 'message listener failed')
    }
  }

  private pick (peer: string): Session | undefined {
    const list = this.sessions.get(peer)
    if (list === undefined) return undefined
    for (const s of list) if (!s.closed) return s
    return undefined
  }

  /** The session to `to`, opening one (shared with concurrent callers) when there is none. */
  private async session (to: PeerAddress): Promise<Session> {
    if (to.id !== undefined) {
      const s = this.pick(to.id)
      if (s !== undefined) return s
    }
    const key = to.id ?? `addr:${to.addrs.join(',')}`
    let p = this.opening.get(key)
    if (p === undefined) {
      p = this.open(to).finally(() => { this.opening.delete(key) })
      this.opening.set(key, p)
    }
    return await p
  }

  private async open (to: PeerAddress): Promise<Session> {
    const label = to.id ?? to.addrs[0]
    if (this.stopped) throw new PeerUnreachableError(label, 'transport stopped')
    let conn = this.existingConnection(to)
    const reused = conn !== undefined
    conn ??= await this.dial(to, false)
    const existing = this.pick(conn.remotePeer.toString())
    if (existing !== undefined) return existing
    let stream: Stream
    try {
      stream = await conn.newStream(this.protocol, { maxOutboundStreams: this.maxStreams })
    } catch (err) {
      if (!reused) throw new PeerUnreachableError(conn.remotePeer.toString(), `cannot open rpc stream: ${errorMessage(err)}`, err)
      // A connection libp2p still lists as open can be half torn down (e.g. just refused by
      // the remote's gater); drop it and try once more on a fresh one.
      this.log.debug({ peer: conn.remotePeer.toString(), err: errorMessage(err) }, 'stale connection, re-dialling')
      conn.abort(err instanceof Error ? err : new Error(String(err)))
      conn = await this.dial(to, true)
      try {
        stream = await conn.newStream(this.protocol, { maxOutboundStreams: this.maxStreams })
      } catch (err2) {
        throw new PeerUnreachableError(conn.remotePeer.toString(), `cannot open rpc stream: ${errorMessage(err2)}`, err2)
      }
    }
    if (this.stopped) {
      stream.abort(new Error('rpc transport stopped'))
      throw new PeerUnreachableError(conn.remotePeer.toString(), 'transport stopped')
    }
    return this.addSession(conn, stream)
  }

  private existingConnection (to: PeerAddress): Connection | undefined {
    if (to.id === undefined) return undefined
    let pid
    try {
      pid = peerIdFromString(to.id)
    } catch {
      return undefined
    }
    return this.libp2p.getConnections(pid).find(c => c.status === 'open')
  }

  private async dial (to: PeerAddress, force: boolean): Promise<Connection> {
    const label = to.id ?? to.addrs[0]
    try {
      if (to.id !== undefined) {
        const id = to.id
        const target = to.addrs.length > 0 ? to.addrs.map(a => withPeerId(a, id)) : peerIdFromString(id)
        return await this.libp2p.dial(target, { force })
      }
      if (to.addrs.length === 0) throw new Error('no address to dial')
      // A bootstrap address: the remote's id is learnt from the authenticated connection.
      return await this.libp2p.dial(to.addrs.map(a => multiaddr(a)), { force })
    } catch (err) {
      throw new PeerUnreachableError(label, `dial failed: ${errorMessage(err)}`, err)
    }
  }

  private addSession (conn: Connection, stream: Stream): Session {
    const s = new Session(this, stream, conn)
    this.counters.streamsOpened++
    const list = this.sessions.get(s.peer)
    if (list === undefined) this.sessions.set(s.peer, [s])
    else list.push(s)
    this.log.debug({ peer: s.peer, direction: stream.direction }, 'rpc stream open')
    s.start()
    return s
  }

  /** Called by Session.close. */
  removeSession (s: Session): void {
    const list = this.sessions.get(s.peer)
    if (list === undefined) return
    const i = list.indexOf(s)
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.sessions.delete(s.peer)
    this.log.debug({ peer: s.peer }, 'rpc stream closed')
  }

  /** Belt and braces: the muxer aborts the streams of a closed connection, but fail fast anyway. */
  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const list = this.sessions.get(conn.remotePeer.toString())
    if (list === undefined) return
    for (const s of [...list]) if (s.connection.id === conn.id) s.close('connection closed')
  }

  /** For tests and metrics: open RPC streams per peer. */
  /** RPC streams open now, to every peer. */
  openStreams (): number {
    let n = 0
    for (const list of this.sessions.values()) n += list.length
    return n
  }

  streamCount (peer: string): number {
    return this.sessions.get(peer)?.length ?? 0
  }
}

function noop (): void {}
