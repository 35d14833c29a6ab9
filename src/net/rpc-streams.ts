/**
 * The streams an RpcTransport's calls travel on: one per peer and lane, opened on the first call
 * (dialling first when there is no connection) and shared by concurrent callers, the streams
 * peers open to us, and their end when their connection closes. rpc.ts makes and serves the
 * calls; rpc-session.ts is one stream with its frames.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import { PeerUnreachableError } from '../runtime/errors.js'
import type { PeerAddress } from '../runtime/types.js'
import { Session, errorMessage, type Lane, type SessionHost } from './rpc-session.js'

export interface RpcStreamsOptions {
  libp2p: Libp2p<any>
  /** The transport: the sessions' host (it serves what they carry). */
  host: SessionHost
  /** The data lane's protocol and the control lane's (they must differ). */
  protocol: string
  controlProtocol: string
  /** Methods sent on the control lane (see Lane). */
  controlMethods: ReadonlySet<string>
  /** RPC streams allowed per connection, direction and lane. */
  maxStreams: number
}

export class RpcStreams {
  private readonly libp2p: Libp2p<any>
  private readonly host: SessionHost
  private readonly protocol: string
  private readonly controlProtocol: string
  private readonly controlMethods: ReadonlySet<string>
  private readonly maxStreams: number
  /** Peers that do not speak the control protocol (an older version): their control calls go on the data lane. */
  private readonly noControlLane = new Set<string>()
  /** Live sessions per peer, of both lanes; the first of a lane is used for our calls on it, all of them serve the peer's. */
  private readonly sessions = new Map<string, Session[]>()
  /** Dials in progress, keyed by peer id or by bootstrap address, shared by concurrent callers. */
  private readonly opening = new Map<string, Promise<Session>>()
  private started = false
  private stopped = false

  constructor (opts: RpcStreamsOptions) {
    if (opts.controlProtocol === opts.protocol) throw new Error('the control and data lanes need different protocols')
    this.libp2p = opts.libp2p
    this.host = opts.host
    this.protocol = opts.protocol
    this.controlProtocol = opts.controlProtocol
    this.controlMethods = opts.controlMethods
    this.maxStreams = opts.maxStreams
  }

  /** Accepts the streams peers open, on both lanes. */
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

  /** Closes every stream (their pending calls fail) and stops accepting new ones. */
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

  /** The lane `method` goes on to `peer` (the data lane for a peer without the control protocol). */
  laneOf (method: string, peer: string | undefined): Lane {
    if (!this.controlMethods.has(method)) return 'data'
    return peer !== undefined && this.noControlLane.has(peer) ? 'data' : 'control'
  }

  /** The open session of `lane` to `peer`, if there is one. */
  pick (peer: string, lane: Lane): Session | undefined {
    const list = this.sessions.get(peer)
    if (list === undefined) return undefined
    for (const s of list) if (!s.closed && s.lane === lane) return s
    return undefined
  }

  /** The session of `lane` to `to`, opening one (shared with concurrent callers) when there is none. */
  async session (to: PeerAddress, lane: Lane): Promise<Session> {
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

  /** A session closed (Session.close through its host): forget it. */
  remove (s: Session): void {
    const list = this.sessions.get(s.peer)
    if (list === undefined) return
    const i = list.indexOf(s)
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.sessions.delete(s.peer)
    this.host.log.debug({ peer: s.peer }, 'rpc stream closed')
  }

  /** RPC streams open now, to every peer (for tests and metrics). */
  openStreams (): number {
    let n = 0
    for (const list of this.sessions.values()) n += list.length
    return n
  }

  /** RPC streams open now to `peer`. */
  streamCount (peer: string): number {
    return this.sessions.get(peer)?.length ?? 0
  }

  private protocolOf (lane: Lane): string {
    return lane === 'control' ? this.controlProtocol : this.protocol
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
        this.host.log.debug({ peer }, 'peer has no rpc control streams; using the data streams')
        return await this.session({ id: peer, addrs: to.addrs }, 'data')
      }
      if (!reused) throw new PeerUnreachableError(conn.remotePeer.toString(), `cannot open rpc stream: ${errorMessage(err)}`, err)
      // A connection libp2p still lists as open can be half torn down (e.g. just refused by
      // the remote's gater); drop it and try once more on a fresh one.
      this.host.log.debug({ peer: conn.remotePeer.toString(), err: errorMessage(err) }, 'stale connection, re-dialling')
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
    const s = new Session(this.host, stream, conn, lane)
    this.host.counters.streamsOpened++
    const list = this.sessions.get(s.peer)
    if (list === undefined) this.sessions.set(s.peer, [s])
    else list.push(s)
    this.host.log.debug({ peer: s.peer, direction: stream.direction, lane }, 'rpc stream open')
    s.start()
    return s
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
}

/** `addr` with /p2p/<id> appended unless it already names a peer. */
function withPeerId (addr: string, id: string): ReturnType<typeof multiaddr> {
  const ma = multiaddr(addr)
  return ma.getPeerId() == null ? ma.encapsulate(`/p2p/${id}`) : ma
}
