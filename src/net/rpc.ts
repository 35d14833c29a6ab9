/**
 * RpcTransport: the runtime Transport over libp2p. Every later layer (SWIM probes, replication,
 * scatter/gather) sends through it, so it is built for latency: long-lived streams per peer pair
 * carry all requests in both directions, frames are tiny positional msgpack arrays, and frames
 * that become ready together are written in one chunk. The streams, their frames and calls are
 * rpc-session.ts.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { Packr } from 'msgpackr'
import { FrameTooLargeError, PeerUnreachableError, RpcCancelledError, RpcError } from '../runtime/errors.js'
import type { Logger } from '../runtime/log.js'
import { silentLogger } from '../runtime/log.js'
import { SystemClock } from '../runtime/real.js'
import { LastItem, type Clock, type EncodedBody, type MessageListener, type PeerAddress, type PeerId, type RequestHandler, type RequestOptions, type StreamHandler, type Transport } from '../runtime/types.js'
import {
  CREDIT, InCall, MAX_WINDOW, MSG, OutCall, PackedBody, REQ, RES, SREQ, Session, StreamState, END, ITEM,
  errorCode, errorMessage, isThenable, type Lane, type RpcStats, type SessionHost
} from './rpc-session.js'

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
  private readonly protocol: string
  private readonly controlProtocol: string
  private readonly controlMethods: ReadonlySet<string>
  /** Peers that do not speak the control protocol (an older version): their control calls go on the data lane. */
  private readonly noControlLane = new Set<string>()
  private readonly defaultTimeoutMs: number
  private readonly maxInbound: number
  private readonly maxPendingWriteBytes: number
  private readonly window: number
  private readonly maxStreams: number
  private readonly handlers = new Map<string, RequestHandler>()
  private readonly streamHandlers = new Map<string, StreamHandler>()
  private readonly listeners = new Map<string, MessageListener>()
  /** Live sessions per peer, of both lanes; the first of a lane is used for our calls on it, all of them serve the peer's. */
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
    this.controlProtocol = opts.controlProtocol ?? RPC_CONTROL_PROTOCOL
    if (this.controlProtocol === this.protocol) throw new Error('the control and data lanes need different protocols')
    this.controlMethods = new Set(opts.controlMethods ?? [])
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
    for (const lane of ['data', 'control'] as const) {
      await this.libp2p.handle(this.protocolOf(lane), ({ stream, connection }) => {
        if (this.stopped) {
          stream.abort(new Error('rpc transport stopped'))
          return
        }
        this.addSession(connection, stream, lane)
      }, { maxInboundStreams: this.maxStreams, maxOutboundStreams: this.maxStreams })
    }
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
    if (this.started) {
      await this.libp2p.unhandle(this.protocol).catch(() => {})
      await this.libp2p.unhandle(this.controlProtocol).catch(() => {})
    }
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
    const lane = this.laneOf(method, to.id)
    const s = to.id !== undefined ? this.pick(to.id, lane) : undefined
    if (s !== undefined) write(s)
    else this.session(to, lane).then(write, (err: unknown) => { this.log.debug({ to, method, err: errorMessage(err) }, 'message dropped') })
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
    const lane = this.laneOf(call.method, to.id)
    const s = to.id !== undefined ? this.pick(to.id, lane) : undefined
    if (s !== undefined) {
      this.dispatchCall(s, call, body)
      return
    }
    this.session(to, lane).then(
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

  /** The lane `method` goes on to `peer` (the data lane for a peer without the control protocol). */
  private laneOf (method: string, peer: string | undefined): Lane {
    if (!this.controlMethods.has(method)) return 'data'
    return peer !== undefined && this.noControlLane.has(peer) ? 'data' : 'control'
  }

  private protocolOf (lane: Lane): string {
    return lane === 'control' ? this.controlProtocol : this.protocol
  }

  private pick (peer: string, lane: Lane): Session | undefined {
    const list = this.sessions.get(peer)
    if (list === undefined) return undefined
    for (const s of list) if (!s.closed && s.lane === lane) return s
    return undefined
  }

  /** The session of `lane` to `to`, opening one (shared with concurrent callers) when there is none. */
  private async session (to: PeerAddress, lane: Lane): Promise<Session> {
    if (to.id !== undefined) {
      const s = this.pick(to.id, lane)
      if (s !== undefined) return s
    }
    const key = `${lane}|${to.id ?? `addr:${to.addrs.join(',')}`}`
    let p = this.opening.get(key)
    if (p === undefined) {
      p = this.open(to, lane).finally(() => { this.opening.delete(key) })
      this.opening.set(key, p)
    }
    return await p
  }

  private async open (to: PeerAddress, lane: Lane): Promise<Session> {
    const label = to.id ?? to.addrs[0]
    if (this.stopped) throw new PeerUnreachableError(label, 'transport stopped')
    let conn = this.existingConnection(to)
    const reused = conn !== undefined
    conn ??= await this.dial(to, false)
    const peer = conn.remotePeer.toString()
    const existing = this.pick(peer, lane)
    if (existing !== undefined) return existing
    const protocol = this.protocolOf(lane)
    let stream: Stream
    try {
      stream = await conn.newStream(protocol, { maxOutboundStreams: this.maxStreams })
    } catch (err) {
      if (lane === 'control' && (err as { name?: unknown } | null)?.name === 'UnsupportedProtocolError') {
        // A peer of an older version, without control streams: its control calls share the data lane.
        this.noControlLane.add(peer)
        this.log.debug({ peer }, 'peer has no rpc control streams; using the data streams')
        return await this.session({ id: peer, addrs: to.addrs }, 'data')
      }
      if (!reused) throw new PeerUnreachableError(conn.remotePeer.toString(), `cannot open rpc stream: ${errorMessage(err)}`, err)
      // A connection libp2p still lists as open can be half torn down (e.g. just refused by
      // the remote's gater); drop it and try once more on a fresh one.
      this.log.debug({ peer: conn.remotePeer.toString(), err: errorMessage(err) }, 'stale connection, re-dialling')
      conn.abort(err instanceof Error ? err : new Error(String(err)))
      conn = await this.dial(to, true)
      try {
        stream = await conn.newStream(protocol, { maxOutboundStreams: this.maxStreams })
      } catch (err2) {
        throw new PeerUnreachableError(conn.remotePeer.toString(), `cannot open rpc stream: ${errorMessage(err2)}`, err2)
      }
    }
    if (this.stopped) {
      stream.abort(new Error('rpc transport stopped'))
      throw new PeerUnreachableError(conn.remotePeer.toString(), 'transport stopped')
    }
    return this.addSession(conn, stream, lane)
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

  private addSession (conn: Connection, stream: Stream, lane: Lane): Session {
    const s = new Session(this, stream, conn, lane)
    this.counters.streamsOpened++
    const list = this.sessions.get(s.peer)
    if (list === undefined) this.sessions.set(s.peer, [s])
    else list.push(s)
    this.log.debug({ peer: s.peer, direction: stream.direction, lane }, 'rpc stream open')
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
    // The peer may come back upgraded, with control streams: ask again on the next connection.
    this.noControlLane.delete(conn.remotePeer.toString())
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


/** `addr` with /p2p/<id> appended unless it already names a peer. */
function withPeerId (addr: string, id: string): ReturnType<typeof multiaddr> {
  const ma = multiaddr(addr)
  return ma.getPeerId() == null ? ma.encapsulate(`/p2p/${id}`) : ma
}

function noop (): void {}
