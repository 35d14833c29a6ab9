/**
 * Dead-connection detection, as libp2p's own connection monitor does it (libp2p 2.x
 * connection-monitor.js: every 10 s a ping on each open connection; no answer within its timeout,
 * 5 s, aborts the connection), but with the stream muxer's ping frame instead of a new stream per
 * ping. libp2p opened a stream for /ipfs/ping/1.0.0 on every connection every 10 s (our peers run
 * no ping service, so each ended in a multistream-select "na", which libp2p counts as alive):
 * stream set-up, negotiation and teardown on both sides, several frames each way through Noise
 * and pnet. On an idle 10-peer cluster that was about 1 % of a core per peer, a third of its idle
 * cost (scripts/bench/idle-cpu.ts), and it grows with the number of connections. A yamux
 * ping is one 12-byte frame each way, answered by the remote's muxer as it reads the connection:
 * the same proof that the remote process is there and the path works both ways.
 *
 * Why it is needed at all: SWIM notices a dead peer, but a libp2p connection to a peer that
 * vanished without a FIN or RST (a partition that drops packets, a host lost) stays open, and the
 * RPC sessions on it with it, until TCP gives up (minutes); the abort lets the next call dial anew.
 *
 * A connection whose muxer has no ping (another muxer, or a libp2p whose Connection no longer
 * exposes it) is pinged as libp2p did: a stream for the ping protocol is opened, and an answer
 * (even "protocol not supported") counts as alive.
 */
import type { Connection } from '@libp2p/interface'
import type { Logger } from '../runtime/log.js'

/** libp2p's DEFAULT_PING_INTERVAL_MS. */
export const DEFAULT_CONNECTION_PING_INTERVAL_MS = 10_000
/**
 * The timeout libp2p's monitor applied: its AdaptiveTimeout never learns (the monitor does not
 * report outcomes to it), so it always gave its minimum, 5 s.
 */
export const DEFAULT_CONNECTION_PING_TIMEOUT_MS = 5_000
/** The protocol libp2p's monitor pinged with, for connections without a muxer ping. */
const PING_PROTOCOL = '/ipfs/ping/1.0.0'

export interface ConnectionMonitorOptions {
  /** ms between pings of a connection. Default DEFAULT_CONNECTION_PING_INTERVAL_MS. */
  intervalMs?: number
  /** ms a ping may take before its connection is aborted. Default DEFAULT_CONNECTION_PING_TIMEOUT_MS. */
  timeoutMs?: number
}

/** What a round did (tests). */
export interface PingRound { pinged: number, byMuxer: number, aborted: number }

/** The part of yamux's muxer (@chainsafe/libp2p-yamux YamuxMuxer) the monitor uses. */
interface PingingMuxer { ping: () => Promise<number> }

function muxerOf (conn: Connection): PingingMuxer | undefined {
  // libp2p's Connection keeps its muxer in `muxer` (not part of the interface's type).
  const muxer = (conn as unknown as { muxer?: Partial<PingingMuxer> }).muxer
  return typeof muxer?.ping === 'function' ? muxer as PingingMuxer : undefined
}

export class ConnectionMonitor {
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private timer: ReturnType<typeof setInterval> | undefined

  constructor (
    private readonly libp2p: { getConnections: () => Connection[] },
    private readonly log: Logger,
    opts: ConnectionMonitorOptions = {}
  ) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_CONNECTION_PING_INTERVAL_MS
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECTION_PING_TIMEOUT_MS
  }

  start (): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => { void this.round() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Pings every open connection once, aborting those that do not answer in time. */
  async round (): Promise<PingRound> {
    const result: PingRound = { pinged: 0, byMuxer: 0, aborted: 0 }
    await Promise.all(this.libp2p.getConnections().filter(c => c.status === 'open').map(async conn => {
      result.pinged++
      const muxer = muxerOf(conn)
      if (muxer !== undefined) result.byMuxer++
      try {
        const rtt = await this.withTimeout(async signal => muxer !== undefined ? await muxer.ping() : await this.pingByStream(conn, signal))
        if (rtt !== undefined) conn.rtt = rtt
      } catch (err) {
        if (conn.status !== 'open') return // closed meanwhile: nothing to abort
        result.aborted++
        this.log.debug({ peer: conn.remotePeer.toString(), err: (err as Error)?.message ?? String(err) }, 'connection did not answer a ping; aborting it')
        conn.abort(err instanceof Error ? err : new Error(String(err)))
      }
    }))
    return result
  }

  /** libp2p's ping as its monitor sent it to our peers: a negotiated (or refused) stream is an answer. */
  private async pingByStream (conn: Connection, signal: AbortSignal): Promise<number | undefined> {
    const start = Date.now()
    try {
      const stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
      stream.abort(new Error('ping done'))
      return Date.now() - start
    } catch (err) {
      // Negotiation took two round trips to be refused, as libp2p counted it.
      if ((err as Error)?.name === 'UnsupportedProtocolError') return (Date.now() - start) / 2
      throw err
    }
  }

  private async withTimeout<T> (fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController()
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((resolve, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`no answer to a ping within ${this.timeoutMs} ms`)
        err.name = 'TimeoutError'
        controller.abort(err)
        reject(err)
      }, this.timeoutMs)
      timer.unref()
    })
    try {
      return await Promise.race([fn(controller.signal), timeout])
    } finally {
      clearTimeout(timer)
    }
  }
}
