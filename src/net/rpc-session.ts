/**
 * One RPC stream to one peer (Session) and the calls it carries (OutCall, InCall), with the wire
 * format they speak. The transport (rpc.ts) opens and picks the sessions; a session frames,
 * writes, reads and routes, and asks its host (the transport) to serve what the remote calls.
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
import type { Connection, Stream } from '@libp2p/interface'
import { RESERVE_START_SPACE, type Packr } from 'msgpackr'
import { FrameTooLargeError, PeerUnreachableError, RemoteError, RpcCancelledError, RpcError, RpcTimeoutError } from '../runtime/errors.js'
import type { Logger } from '../runtime/log.js'
import type { Clock, EncodedBody, PeerId, RequestContext, Timer } from '../runtime/types.js'

export const REQ = 0
export const RES = 1
export const ERR = 2
export const MSG = 3
export const SREQ = 4
export const ITEM = 5
export const END = 6
export const CREDIT = 7
export const CANCEL = 8

const MAX_ID = 0x7fffffff
const MAX_METHOD_LENGTH = 256
/** Upper bound on the credit a caller may grant at once, so a peer cannot disable flow control. */
export const MAX_WINDOW = 4096
/** Frames queued together are coalesced up to this many bytes per write. */
const MAX_BATCH_BYTES = 256 * 1024
/** How long a stream closed for a protocol violation may take to flush its last ERR frame. */
const FATAL_FLUSH_MS = 1000

/**
 * Which streams a call goes on (RpcTransportOptions.controlMethods). A stream is FIFO: a
 * membership ping queued behind a catch-up's megabytes waits for all of them, and on a slow link
 * that is longer than the ping's timeout, so a healthy peer gets suspected. Control methods
 * (membership's probes and gossip: small frames that must not wait) travel on streams of their
 * own protocol that carry nothing else; everything else on the data streams. Both sides tell a
 * stream's lane by its protocol, so answers go back on the lane the call came on.
 */
export type Lane = 'control' | 'data'

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

/** What sessions and calls need of the transport that owns them. */
export interface SessionHost {
  readonly clock: Clock
  readonly log: Logger
  readonly packr: Packr
  readonly maxFrameBytes: number
  readonly counters: RpcStats
  /** Serves one inbound call. */
  serve (s: Session, streamed: boolean, id: number, method: string, body: unknown, timeoutMs: number, window: number): void
  /** Hands a one-way message to its listener. */
  deliver (from: string, method: string, body: unknown): void
  /** The session closed: forget it. */
  removeSession (s: Session): void
}

/**
 * A request body msgpack-encoded once (RpcTransport.encodeBody) and spliced into the REQ frame of
 * every call that sends it, so a body sent to several peers is encoded once, not once per peer.
 */
export class PackedBody implements EncodedBody {
  constructor (readonly bytes: Uint8Array) {}
  get encodedBytes (): number { return this.bytes.length }
}

export type Resolve = (value: unknown) => void
export type Reject = (err: Error) => void

/** Client-side state of a streamed call: items received but not yet consumed. */
export class StreamState {
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
export class OutCall {
  id = -1
  session: Session | undefined
  settled = false
  readonly deadline: number
  private readonly timer: Timer
  private readonly onAbort: (() => void) | undefined

  constructor (
    private readonly t: SessionHost,
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
export class InCall implements RequestContext {
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
export class Session {
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

  constructor (
    readonly t: SessionHost,
    readonly stream: Stream,
    readonly connection: Connection,
    /** The lane it carries (rpc.ts, Lane): told by its protocol, the same on both sides. */
    readonly lane: Lane = 'data'
  ) {
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
   * run (a burst of concurrent requests or responses, a stream's last item with its END) leave
   * as one chunk: each chunk is a yamux frame, a noise message and a socket write.
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

export function isId (x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

export function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' || typeof code === 'number' ? String(code) : 'HANDLER_ERROR'
}

export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export function isThenable (x: unknown): x is PromiseLike<unknown> {
  return x !== null && (typeof x === 'object' || typeof x === 'function') && typeof (x as { then?: unknown }).then === 'function'
}
