/**
 * RpcTransport: the runtime Transport over libp2p. Every later layer (SWIM probes, replication,
 * scatter/gather) sends through it, so it is built for latency: long-lived streams per peer pair
 * carry all requests in both directions, frames are tiny positional msgpack arrays, and frames
 * that become ready together are written in one chunk. This file makes the calls and serves
 * them; which stream a call travels on is rpc-streams.ts, a stream with its frames and calls
 * rpc-session.ts.
 */
import type { Libp2p } from 'libp2p'
import { Packr } from 'msgpackr'
import { FrameTooLargeError, PeerUnreachableError, RpcCancelledError, RpcError } from '../runtime/errors.js'
import type { Logger } from '../runtime/log.js'
import { silentLogger } from '../runtime/log.js'
import { SystemClock } from '../runtime/real.js'
import { LastItem, type Clock, type EncodedBody, type MessageListener, type PeerAddress, type PeerId, type RequestHandler, type RequestOptions, type StreamHandler, type Transport } from '../runtime/types.js'
import {
  CREDIT, InCall, MAX_WINDOW, MSG, OutCall, PackedBody, REQ, RES, SREQ, Session, StreamState, END, ITEM,
  errorCode, errorMessage, isThenable, type RpcStats, type SessionHost
} from './rpc-session.js'
import { RpcStreams } from './rpc-streams.js'

export type { RpcStats } from './rpc-session.js'

export const RPC_PROTOCOL = '/shoal/rpc/1.0.0'
/** The protocol of the control streams (see Lane). */
export const RPC_CONTROL_PROTOCOL = '/shoal/rpc-control/1.0.0'

export type { Lane } from './rpc-session.js'

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
  /** RPC streams allowed per connection, direction and lane (both sides may open one at once). Default 4. */
  maxStreamsPerConnection?: number
  /** Methods (requests and one-way messages) sent on the control lane (see Lane). Default none. */
  controlMethods?: Iterable<string>
  /** Default RPC_CONTROL_PROTOCOL. */
  controlProtocol?: string
}

export class RpcTransport implements Transport, SessionHost {
  readonly localPeerId: PeerId
  readonly counters: RpcStats = { callsStarted: 0, callsSucceeded: 0, callsFailed: Object.create(null), callsServed: 0, protocolViolations: 0, streamsOpened: 0 }
  readonly clock: Clock
  readonly log: Logger
  readonly packr: Packr
  readonly maxFrameBytes: number
  private readonly libp2p: Libp2p<any>
  /** The streams the calls travel on (rpc-streams.ts). */
  private readonly streams: RpcStreams
  private readonly defaultTimeoutMs: number
  private readonly maxInbound: number
  private readonly maxPendingWriteBytes: number
  private readonly window: number
  private readonly handlers = new Map<string, RequestHandler>()
  private readonly streamHandlers = new Map<string, StreamHandler>()
  private readonly listeners = new Map<string, MessageListener>()
  /** Inbound calls running per peer, across its sessions. */
  private readonly inflight = new Map<string, number>()

  constructor (opts: RpcTransportOptions) {
    this.libp2p = opts.libp2p
    this.localPeerId = opts.libp2p.peerId.toString()
    this.clock = opts.clock ?? new SystemClock()
    this.log = opts.log ?? silentLogger
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 10_000
    this.maxFrameBytes = opts.maxFrameBytes ?? 8 * 1024 * 1024
    this.maxInbound = opts.maxInboundRequestsPerPeer ?? 1024
    this.maxPendingWriteBytes = opts.maxPendingWriteBytes ?? 32 * 1024 * 1024
    this.window = Math.max(1, Math.min(MAX_WINDOW, opts.streamWindow ?? 32))
    // Plain maps as objects, no records: every frame is self-describing, so either side can
    // restart without shared encoder state. Map keys named __proto__ decode as __proto_.
    this.packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
    this.streams = new RpcStreams({
      libp2p: opts.libp2p,
      host: this,
      protocol: opts.protocol ?? RPC_PROTOCOL,
      controlProtocol: opts.controlProtocol ?? RPC_CONTROL_PROTOCOL,
      controlMethods: new Set(opts.controlMethods ?? []),
      maxStreams: opts.maxStreamsPerConnection ?? 4
    })
  }

  /** Registers the protocol handlers. Calls made before start() may dial, but nothing is served. */
  async start (): Promise<void> { await this.streams.start() }

  /** Fails pending calls, aborts running handlers and closes every RPC stream. */
  async stop (): Promise<void> { await this.streams.stop() }

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
    const lane = this.streams.laneOf(method, to.id)
    const s = to.id !== undefined ? this.streams.pick(to.id, lane) : undefined
    if (s !== undefined) write(s)
    else this.streams.session(to, lane).then(write, (err: unknown) => { this.log.debug({ to, method, err: errorMessage(err) }, 'message dropped') })
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
      // The consumer stopped early (break, throw): tell the server to stop producing. (Not built
      // for a call already over: an error's stack costs more than the rest of a small call.)
      if (!call.settled) call.giveUp(new RpcCancelledError(call.peer, method))
    }
  }

  /** Attaches a new call to a session, dialling first if there is none yet. */
  private begin (to: PeerAddress, call: OutCall, body: unknown): void {
    const lane = this.streams.laneOf(call.method, to.id)
    const s = to.id !== undefined ? this.streams.pick(to.id, lane) : undefined
    if (s !== undefined) {
      this.dispatchCall(s, call, body)
      return
    }
    this.streams.session(to, lane).then(
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
        // The handler's last item: END goes in the same chunk (enqueued in the same run).
        const last = r.value instanceof LastItem
        let buf: Uint8Array
        try {
          buf = s.encode([ITEM, call.id, last ? (r.value as LastItem).value : r.value])
        } catch (err) {
          this.log.warn({ peer: s.peer, method, err: errorMessage(err) }, 'stream item not sent')
          finished = true
          if (this.release(s, call)) s.sendErr(call.id, err instanceof FrameTooLargeError ? err.code : 'ENCODE', errorMessage(err))
          return
        }
        call.credit--
        this.enqueueAnswer(s, buf)
        if (last) {
          finished = true
          if (this.release(s, call)) s.sendControl([END, call.id])
          // The handler said it has no more: end it, running its finally blocks.
          await it.return?.()?.catch?.(() => {})
          return
        }
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

  /** Called by Session.close. */
  removeSession (s: Session): void { this.streams.remove(s) }

  /** RPC streams open now, to every peer (for tests and metrics). */
  openStreams (): number { return this.streams.openStreams() }

  /** RPC streams open now to `peer`. */
  streamCount (peer: string): number { return this.streams.streamCount(peer) }
}

function noop (): void {}
