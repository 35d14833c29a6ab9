import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import { ShoalError, ShoalUnavailableError, errorFromAnswer, type PeerAttempt } from './errors.js'

/**
 * The HTTP side of ShoalClient: one keep-alive agent per scheme, a list of peers, and failover.
 *
 * Keep-alive because a round trip on a fresh connection costs a TCP handshake: a count(*) the
 * server answered in 0.4 ms took 2.0-2.2 ms through global fetch and 1.2 ms through
 * http.request with a keep-alive agent (measured on this project). Node's agent honours the
 * server's `Keep-Alive: timeout=5` hint (minus a second), so it does not reuse a socket the server
 * is about to close.
 */

/**
 * Whether a request may be sent again to another peer when the first gave no answer.
 * - `read`: GETs and queries. Safe to repeat anywhere: retried on any failure before an answer
 *   began (refused, reset, timed out), and on the 503s that mean "this peer cannot, another may".
 * - `write`: everything that changes data or the catalog. Retried only when the request provably
 *   never reached a peer: its connection was never established (refused, unreachable, timed out
 *   while connecting). A reset or timeout after connecting may follow a write the peer applied,
 *   and repeating it elsewhere is the caller's decision (writes are idempotent by id; a space
 *   create is not), so it is raised as ShoalUnavailableError with `sent: true`.
 */
export type RetryClass = 'read' | 'write'

/**
 * 503 codes a read is retried on at another peer (src/http/data.ts toHttpError, src/query):
 * the peer asked has not synced since it started (NOT_SYNCED), or cannot reach enough replicas
 * from where it stands (PARTITION_UNAVAILABLE, UNREACHABLE, READ_INCOMPLETE), so another peer,
 * perhaps on the majority side, may answer. Not PARTIAL_RESULT: the query already waited for its
 * replicas, and another coordinator would read the same ones.
 */
export const RETRY_ELSEWHERE_CODES: ReadonlySet<string> = new Set(['NOT_SYNCED', 'PARTITION_UNAVAILABLE', 'UNREACHABLE', 'READ_INCOMPLETE'])

/**
 * Error answers after which a request that routing sent to a peer (PeerRequest.prefer), a write
 * too, goes on to the peers in the usual order: the routed peer refused before doing anything,
 * for a reason of its own that the peer the caller would have asked may not share. It has not
 * heard of the space yet (UNKNOWN_SPACE: a space just made reaches peers by gossip), or has not
 * synced since it started (NOT_SYNCED: "nothing was written").
 */
const ROUTED_ELSEWHERE_CODES: ReadonlySet<string> = new Set(['UNKNOWN_SPACE', 'NOT_SYNCED'])

export interface TransportOptions {
  /** Bearer token sent as `Authorization: Bearer <token>` on every request. */
  token?: string
  /** CA certificate(s) trusted for https peers (PEM), e.g. a private cluster's own CA. */
  ca?: string | Buffer | Array<string | Buffer>
  /** Default per-request timeout: ms, default 30,000. */
  timeoutMs?: number
  /** Sockets per peer at most: default 16, so a burst of calls cannot open thousands. */
  maxSocketsPerPeer?: number
}

export interface PeerRequest {
  method: 'GET' | 'POST' | 'DELETE'
  /** Path and query, already encoded: `/spaces/t/records?id=x`. */
  path: string
  body?: string
  contentType?: string
  accept?: string
  retry: RetryClass
  /**
   * Sent to the current peer only, never to another: for requests about the peer itself (its
   * decommission), where another peer's answer would be about the wrong one.
   */
  pinned?: boolean
  /**
   * Indices of the configured peers to try first, in order (owner routing, routing.ts); the rest
   * follow in the usual order. Ignored when `pinned` or `only` is given.
   */
  prefer?: readonly number[]
  /** Sent to the configured peer at this index only (never another), e.g. to ask a given peer who it is. */
  only?: number
  /** ms for this request, answer included; default the client's; Infinity: none (a stream aborted by `signal`). */
  timeoutMs?: number
  /** Aborts the request (or the reading of its streamed answer). */
  signal?: AbortSignal
}

export interface PeerAnswer {
  status: number
  headers: IncomingMessage['headers']
  body: Buffer
  peer: string
}

/** A successful answer whose body is read as it arrives. */
export interface PeerStream {
  status: number
  headers: IncomingMessage['headers']
  peer: string
  /** The body's chunks. A body cut short throws INCOMPLETE_ANSWER; leaving the loop early releases the connection. */
  body: AsyncIterable<Buffer>
  /** Drops the answer unread (its connection is closed, not reused). */
  cancel: () => void
}

/** Default request timeout: 30 s, longer than a query's default budget on the server. */
export const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_MAX_SOCKETS_PER_PEER = 16
/** Largest answer body read whole: 1 GiB, a bound so a runaway answer fails instead of exhausting memory. */
const MAX_ANSWER_BYTES = 1024 * 1024 * 1024

/** A failure before any answer arrived, and whether the request may have reached the peer. */
class NoAnswer extends Error {
  constructor (readonly reason: string, readonly sent: boolean, cause: unknown) {
    super(reason, { cause })
  }
}

export class PeerTransport {
  private readonly peers: URL[]
  /** The peer that answered last: tried first next time. */
  private current = 0
  private readonly httpAgent: HttpAgent
  private readonly httpsAgent: HttpsAgent | undefined
  private readonly timeoutMs: number
  private closed = false

  constructor (urls: readonly string[], private readonly options: TransportOptions = {}) {
    if (urls.length === 0) throw new ShoalError('BAD_ARGUMENT', 'at least one peer URL is needed, e.g. http://127.0.0.1:7947')
    this.peers = urls.map(parsePeerUrl)
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    if (!(this.timeoutMs > 0)) throw new ShoalError('BAD_ARGUMENT', `timeoutMs must be positive; got ${String(options.timeoutMs)}`)
    const maxSockets = options.maxSocketsPerPeer ?? DEFAULT_MAX_SOCKETS_PER_PEER
    this.httpAgent = new HttpAgent({ keepAlive: true, maxSockets })
    this.httpsAgent = this.peers.some(u => u.protocol === 'https:')
      ? new HttpsAgent({ keepAlive: true, maxSockets, ...(options.ca !== undefined ? { ca: options.ca } : {}) })
      : undefined
  }

  /** The peer URL requests go to first (the one that answered last). */
  get currentPeer (): string { return this.peers[this.current]!.origin }

  /** The request's whole answer: see stream() for where it goes and what throws. */
  async send (req: PeerRequest): Promise<PeerAnswer> {
    const answer = await this.stream(req)
    return { status: answer.status, headers: answer.headers, peer: answer.peer, body: await readAll(answer) }
  }

  /**
   * Sends the request to the current peer, then to the others in order while none answers (see
   * RetryClass for what is repeated), and gives the successful answer once its headers arrive.
   * An answer with an error status throws ShoalError; a 503 a read may retry elsewhere moves on,
   * and the last such error is thrown if every peer gives one.
   */
  async stream (req: PeerRequest): Promise<PeerStream> {
    if (this.closed) throw new ShoalError('CLOSED', 'this ShoalClient was closed')
    const tried: PeerAttempt[] = []
    let lastAnswerError: ShoalError | undefined
    let lastCause: unknown
    for (const index of this.order(req)) {
      const peer = this.peers[index]!
      let answer: PeerStream
      try {
        answer = await this.once(peer, req)
      } catch (err) {
        if (!(err instanceof NoAnswer)) throw err
        tried.push({ peer: peer.origin, reason: err.reason })
        lastCause = err
        if (req.retry === 'write' && err.sent) {
          throw new ShoalUnavailableError(tried, `peer ${peer.origin} gave no answer to a ${req.method} ${pathOnly(req.path)} (${err.reason}) after the request may have reached it; not retried on another peer, as it may have been applied`, err)
        }
        continue
      }
      // Any answer, even an error, means this peer is up: start there next time. Not for a
      // routed or addressed request: where it went says nothing of the others, and `current` is
      // also the peer a pinned request (a decommission) is about, which routing must not move.
      if (req.only === undefined && (req.prefer === undefined || req.prefer.length === 0)) this.current = index
      if (answer.status < 400) return answer
      const error = errorFromAnswer(answer.status, (await readAll(answer)).toString('utf8'), peer.origin)
      if (req.retry === 'read' && answer.status === 503 && RETRY_ELSEWHERE_CODES.has(error.code)) {
        lastAnswerError = error
        continue
      }
      if (req.prefer?.includes(index) === true && ROUTED_ELSEWHERE_CODES.has(error.code)) {
        lastAnswerError = error
        continue
      }
      throw error
    }
    if (lastAnswerError !== undefined) throw lastAnswerError
    throw new ShoalUnavailableError(tried, `no peer answered ${req.method} ${pathOnly(req.path)}: ${tried.map(t => `${t.peer} ${t.reason}`).join(', ')}`, lastCause)
  }

  /** How many peer URLs the transport was given. */
  get size (): number { return this.peers.length }

  /** The configured peers a request goes to, in order: see PeerRequest's pinned, only and prefer. */
  private order (req: PeerRequest): number[] {
    if (req.only !== undefined) {
      if (!Number.isInteger(req.only) || req.only < 0 || req.only >= this.peers.length) throw new ShoalError('BAD_ARGUMENT', `no configured peer ${req.only}`)
      return [req.only]
    }
    if (req.pinned === true) return [this.current]
    const out: number[] = []
    for (const i of req.prefer ?? []) if (i >= 0 && i < this.peers.length && !out.includes(i)) out.push(i)
    for (let k = 0; k < this.peers.length; k++) {
      const i = (this.current + k) % this.peers.length
      if (!out.includes(i)) out.push(i)
    }
    return out
  }

  /** Destroys the agents' sockets; later calls throw CLOSED. */
  close (): void {
    this.closed = true
    this.httpAgent.destroy()
    this.httpsAgent?.destroy()
  }

  /** One request to one peer: its answer once the headers arrive, or NoAnswer when none began. */
  private async once (peer: URL, req: PeerRequest): Promise<PeerStream> {
    if (req.signal?.aborted === true) throw aborted(peer.origin, req.signal)
    const https = peer.protocol === 'https:'
    const headers: Record<string, string> = {}
    if (req.body !== undefined) {
      headers['content-type'] = req.contentType ?? 'application/json'
      headers['content-length'] = String(Buffer.byteLength(req.body))
    }
    if (req.accept !== undefined) headers.accept = req.accept
    if (this.options.token !== undefined) headers.authorization = `Bearer ${this.options.token}`
    const timeoutMs = req.timeoutMs ?? this.timeoutMs
    const basePath = peer.pathname.replace(/\/+$/, '')
    return await new Promise<PeerStream>((resolve, reject) => {
      let connected = false
      let answered = false
      /** Why the client itself ended the request (its timeout, an abort), for the body's reader. */
      let stopped: Error | undefined
      const stop = (why: Error): void => { stopped = why; r.destroy(why) }
      const options = { hostname: peer.hostname, port: peer.port, path: basePath + req.path, method: req.method, headers }
      const r: ClientRequest = https ? httpsRequest({ ...options, agent: this.httpsAgent }) : httpRequest({ ...options, agent: this.httpAgent })
      // Bounds the whole request, the reading of a streamed body included.
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => { stop(new TimeoutError(timeoutMs)) }, timeoutMs) : undefined
      const onAbort = (): void => { stop(aborted(peer.origin, req.signal!)) }
      req.signal?.addEventListener('abort', onAbort, { once: true })
      const settle = (): void => { clearTimeout(timer); req.signal?.removeEventListener('abort', onAbort) }
      r.on('socket', (socket: Socket) => {
        // A reused keep-alive socket is connected already: whatever is written may arrive.
        if (!socket.connecting) connected = true
        else socket.once('connect', () => { connected = true })
      })
      r.on('error', (err: NodeJS.ErrnoException) => {
        settle()
        if (answered) return // the body's reader reports it
        if (err instanceof ShoalError) { reject(err); return }
        reject(new NoAnswer(err instanceof TimeoutError ? 'TIMEOUT' : err.code ?? err.message, connected, err))
      })
      r.on('response', (res: IncomingMessage) => {
        answered = true
        res.on('close', settle)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, peer: peer.origin, body: bodyOf(res, peer.origin, () => stopped), cancel: () => { res.destroy() } })
      })
      r.end(req.body)
    })
  }
}

/**
 * The chunks of an answer's body. A streamed answer cut short (the server failed mid-stream, the
 * request timed out or was aborted) ends with an error or a close before 'end': the caller sees
 * INCOMPLETE_ANSWER (or the abort), never a complete-looking partial body.
 */
async function * bodyOf (res: IncomingMessage, peer: string, stopped: () => Error | undefined): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of res) yield chunk as Buffer
  } catch (err) {
    const reason = stopped() ?? err
    if (reason instanceof ShoalError) throw reason
    throw new ShoalError('INCOMPLETE_ANSWER', `peer ${peer} cut its answer short (${reason instanceof TimeoutError ? 'TIMEOUT' : (reason as Error).message})`, { status: res.statusCode, peer, cause: reason })
  }
  const reason = stopped()
  if (reason instanceof ShoalError) throw reason
  if (!res.complete) throw new ShoalError('INCOMPLETE_ANSWER', `peer ${peer} closed the connection before its answer was complete`, { status: res.statusCode, peer })
}

async function readAll (answer: PeerStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of answer.body) {
    total += chunk.length
    if (total > MAX_ANSWER_BYTES) throw new ShoalError('INCOMPLETE_ANSWER', `peer ${answer.peer}'s answer is larger than ${MAX_ANSWER_BYTES} bytes; not read further`, { status: answer.status, peer: answer.peer })
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, total)
}

function aborted (peer: string, signal: AbortSignal): ShoalError {
  return new ShoalError('ABORTED', `the request to ${peer} was aborted`, { peer, cause: signal.reason })
}

class TimeoutError extends Error {
  override name = 'TimeoutError'
  constructor (timeoutMs: number) { super(`no complete answer within ${timeoutMs} ms`) }
}

function parsePeerUrl (raw: string): URL {
  // `host:port` alone, as the CLI's --peer takes it, means http.
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ShoalError('BAD_ARGUMENT', `'${raw}' is not a peer URL (expected e.g. http://127.0.0.1:7947)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ShoalError('BAD_ARGUMENT', `peer URL '${raw}' must be http or https`)
  return url
}

function pathOnly (path: string): string {
  const q = path.indexOf('?')
  return q < 0 ? path : path.slice(0, q)
}
