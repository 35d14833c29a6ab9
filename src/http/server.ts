import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { isOpen, readOnlyMay, roleOf, type TokenEntry } from './guard.js'
import type { Socket } from 'node:net'
import { CounterFamily, HistogramFamily, type Logger } from '../runtime/index.js'

/** An error meant for the HTTP caller: status, stable code, and a message naming the field. */
export class HttpError extends Error {
  override name = 'HttpError'
  constructor (readonly status: number, readonly code: string, message: string, readonly details?: Record<string, unknown>) {
    super(message)
  }
}

export interface RouteRequest {
  method: string
  path: string
  params: Record<string, string>
  query: URLSearchParams
  headers: IncomingMessage['headers']
  /** Reads and parses the JSON body (bounded by the route's maxBodyBytes). */
  json(): Promise<unknown>
  /** Reads the body as UTF-8 text (bounded by the route's maxBodyBytes). */
  text(): Promise<string>
  /** Aborted when the client goes away before the answer is sent (a cancelled query stops its work). */
  signal: AbortSignal
}

export interface RouteResponse {
  status?: number
  /** JSON-encoded unless `text` or `bytes` is given. */
  body?: unknown
  text?: string
  /** A body sent as it is (the console's files), content type `contentType` (default application/octet-stream). */
  bytes?: Uint8Array
  /**
   * An answer written as it is produced (a large query answer), chunk by chunk, waiting for the
   * client to take each one before producing the next; content type JSON unless `contentType`
   * says otherwise. A failure once it has started cuts the connection: the client sees an
   * incomplete answer, never a complete-looking wrong one.
   */
  stream?: Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>
  contentType?: string
  headers?: Record<string, string>
}

export type RouteHandler = (req: RouteRequest) => Promise<RouteResponse> | RouteResponse

/** A route's path split into segments; `:key` segments capture one percent-decoded segment each. */
interface Route { method: string, path: string, segments: Array<{ literal: string } | { key: string }>, handler: RouteHandler, maxBodyBytes: number | undefined }

export interface RouteOptions {
  /** Largest body this route accepts; default the server's maxBodyBytes. */
  maxBodyBytes?: number
}

export interface HttpServerOptions {
  host: string
  port: number
  /** Largest request body accepted. Default 1 MiB (admin and control bodies are small). */
  maxBodyBytes?: number
  /**
   * Most connections open at once. At the cap a new connection closes the oldest one that has no
   * request in flight (an idle keep-alive, or one that never sent a request); when every one is
   * busy, the new one is refused. Each connection holds a file descriptor, so without a cap a
   * thousand idle sockets exhaust `ulimit -n` and lock the API out. Default 1024.
   */
  maxConnections?: number
  /** A connection must send its request headers within this. ms, default 20,000 (Node's is 60 s). */
  headersTimeoutMs?: number
  /** Monotonic milliseconds, for the request durations (the peer's Clock.now). Default performance.now. */
  now?: () => number
  /** HTTPS with this certificate chain and key (PEM): the API speaks TLS only. */
  tls?: { cert: string | Buffer, key: string | Buffer }
  /** Bearer tokens (guard.ts): every request but GET /health and the console's files needs one, read-only ones only read. */
  tokens?: readonly TokenEntry[]
}

/**
 * Requests served, for /metrics: durations by method and route (the route's pattern, e.g.
 * `/spaces/:name/records`, never the path asked for, so a caller cannot grow the label set;
 * `unmatched` for a path no route has), and counts by method, route and status (`none` when the
 * connection closed before an answer was sent). A request ends when its answer's last byte is
 * written, or the connection closed: a streamed query answer counts its streaming.
 */
export interface HttpRequestStats {
  readonly durations: HistogramFamily
  readonly requests: CounterFamily
}

/** Default of HttpServerOptions.maxConnections. */
export const DEFAULT_MAX_HTTP_CONNECTIONS = 1024

/**
 * A tiny router over node:http. JSON in and out (besides /metrics' text and the console's files,
 * answered as `text` or `bytes` with their content type), every failure as `{error: {code,
 * message}}`, and a body size limit so a caller cannot make the peer buffer without bound.
 */
export class HttpServer {
  private readonly routes: Route[] = []
  private server: Server | undefined
  private readonly maxBodyBytes: number
  /** Open connections, oldest first, with how many requests each has in flight. */
  private readonly connections = new Map<Socket, { busy: number }>()
  /** Connections closed at the cap: idle ones shed to make room, and new ones refused while all were busy. */
  readonly connectionCounters = { shed: 0, refused: 0 }
  readonly requestStats: HttpRequestStats = { durations: new HistogramFamily(['method', 'route']), requests: new CounterFamily(['method', 'route', 'status']) }
  private readonly now: () => number

  constructor (private readonly options: HttpServerOptions, private readonly log: Logger) {
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024
    this.now = options.now ?? (() => performance.now())
  }

  route (method: string, path: string, handler: RouteHandler, options: RouteOptions = {}): void {
    const segments = splitPath(path).map(seg => seg.startsWith(':') ? { key: seg.slice(1) } : { literal: seg })
    this.routes.push({ method, path, segments, handler, maxBodyBytes: options.maxBodyBytes })
  }

  async start (): Promise<{ host: string, port: number }> {
    const headersTimeout = this.options.headersTimeoutMs ?? 20_000
    // A request (headers and body) must arrive within Node's 5 min: a client trickling a body would
    // otherwise hold a busy connection, which the cap cannot shed, for ever.
    const serverOptions = { headersTimeout, requestTimeout: 300_000, connectionsCheckingInterval: Math.min(5000, headersTimeout) }
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => { void this.dispatch(req, res) }
    const tls = this.options.tls
    // With TLS a plain-HTTP client gets no answer at all: its bytes are not a TLS handshake.
    const server = tls !== undefined
      ? createHttpsServer({ ...serverOptions, cert: tls.cert, key: tls.key, handshakeTimeout: headersTimeout }, onRequest)
      : createServer(serverOptions, onRequest)
    // Keep-alive sockets would hold a draining peer open; close idle ones quickly.
    server.keepAliveTimeout = 5000
    // The connection a request arrives on: the TLS socket (after its handshake) under HTTPS.
    server.on(tls !== undefined ? 'secureConnection' : 'connection', (socket: Socket) => { this.admit(socket) })
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const c = this.connections.get(req.socket)
      if (c === undefined) return
      c.busy++
      res.once('close', () => { c.busy-- })
    })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        server.off('listening', onListening)
        reject(new HttpListenError(this.options.host, this.options.port, err))
      }
      const onListening = (): void => { server.off('error', onError); resolve() }
      server.once('error', onError)
      server.once('listening', onListening)
      server.listen(this.options.port, this.options.host)
    })
    const addr = server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.options.port
    return { host: this.options.host, port }
  }

  /**
   * Stops accepting connections, lets requests in flight finish for up to `graceMs`, then closes
   * whatever is left: a draining peer answers what it started instead of resetting clients.
   */
  async stop (graceMs = 5000): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { server.closeAllConnections() }, graceMs)
      timer.unref()
      server.close(() => { clearTimeout(timer); resolve() })
      server.closeIdleConnections()
    })
  }

  /** Tracks a new connection; at the cap, makes room by closing the oldest idle one, or refuses it. */
  private admit (socket: Socket): void {
    const cap = this.options.maxConnections ?? DEFAULT_MAX_HTTP_CONNECTIONS
    if (this.connections.size >= cap) {
      let idle: Socket | undefined
      for (const [s, c] of this.connections) if (c.busy === 0) { idle = s; break }
      if (idle === undefined) {
        this.connectionCounters.refused++
        this.warnAtCap(cap)
        socket.destroy()
        return
      }
      this.connectionCounters.shed++
      this.warnAtCap(cap)
      this.connections.delete(idle)
      idle.destroy()
    }
    this.connections.set(socket, { busy: 0 })
    socket.once('close', () => { this.connections.delete(socket) })
  }

  /** Warns on the first connection closed at the cap and every 1,000th after (a flood must not flood the log). */
  private warnAtCap (cap: number): void {
    if ((this.connectionCounters.shed + this.connectionCounters.refused) % 1000 !== 1) return
    this.log.warn({ maxConnections: cap, ...this.connectionCounters }, 'HTTP connection cap reached: closing idle connections, refusing new ones while all are busy')
  }

  /** Open HTTP connections. */
  get openConnections (): number { return this.connections.size }

  private async dispatch (req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The path is matched as sent: no URL parser, which would fold `.` and `..` segments
    // (`/spaces/t/records/%2E%2E` must stay a record id, never become `/spaces/t/`).
    const target = req.url ?? '/'
    const q = target.indexOf('?')
    const pathname = q < 0 ? target : target.slice(0, q)
    const method = req.method ?? 'GET'
    const t0 = this.now()
    let routeLabel = 'unmatched'
    res.once('close', () => {
      // Node's parser admits only the methods it knows, so `method` is a bounded label too.
      this.requestStats.durations.observe([method, routeLabel], (this.now() - t0) / 1000)
      this.requestStats.requests.inc([method, routeLabel, res.headersSent ? String(res.statusCode) : 'none'])
    })
    const tokens = this.options.tokens
    if (tokens !== undefined && !isOpen(method, pathname)) {
      const role = roleOf(tokens, req.headers.authorization)
      if (role === undefined) {
        routeLabel = 'unauthorized'
        const given = req.headers.authorization !== undefined
        this.send(res, 401, {
          body: { error: { code: 'UNAUTHORIZED', message: given ? 'the bearer token is not one this peer accepts' : 'this peer needs a bearer token: Authorization: Bearer <token>' } },
          headers: { 'www-authenticate': `Bearer realm="shoal"${given ? ', error="invalid_token"' : ''}` }
        })
        return
      }
      if (role === 'read-only' && !readOnlyMay(method, pathname)) {
        routeLabel = 'forbidden'
        this.send(res, 403, { body: { error: { code: 'FORBIDDEN', message: `a read-only token may read and query, not ${method} ${pathname}` } } })
        return
      }
    }
    try {
      const segments = splitPath(pathname)
      let pathMatched = false
      for (const route of this.routes) {
        const params = matchRoute(route, segments)
        if (params === undefined) continue
        pathMatched = true
        // A known path asked with another method (405) is counted under its route, not 'unmatched'.
        routeLabel = route.path
        if (route.method !== method) continue
        const limit = route.maxBodyBytes ?? this.maxBodyBytes
        const gone = new AbortController()
        res.once('close', () => { if (!res.writableFinished) gone.abort() })
        const result = await route.handler({
          signal: gone.signal,
          method,
          path: pathname,
          params,
          query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)),
          headers: req.headers,
          json: async () => await this.readJson(req, limit),
          text: async () => await this.readText(req, limit)
        })
        this.send(res, result.status ?? 200, result)
        return
      }
      if (pathMatched) throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${pathname}`)
      throw new HttpError(404, 'NOT_FOUND', `no endpoint ${method} ${pathname}`)
    } catch (err) {
      if (err instanceof HttpError) {
        this.send(res, err.status, { body: { error: { code: err.code, message: err.message }, ...err.details } })
      } else {
        this.log.error({ err, method, path: pathname }, 'http handler failed')
        this.send(res, 500, { body: { error: { code: 'INTERNAL', message: (err as Error).message } } })
      }
    }
  }

  private send (res: ServerResponse, status: number, result: RouteResponse): void {
    if (res.headersSent) return
    if (result.stream !== undefined) {
      res.writeHead(status, { ...result.headers, 'content-type': result.contentType ?? 'application/json; charset=utf-8' })
      void this.pump(res, result.stream)
      return
    }
    if (result.text !== undefined) {
      res.writeHead(status, { ...result.headers, 'content-type': result.contentType ?? 'text/plain; charset=utf-8' })
      res.end(result.text)
      return
    }
    if (result.bytes !== undefined) {
      // A 304 has no body, and the length it would state is the file's (RFC 9110 8.6), not 0.
      res.writeHead(status, { ...result.headers, 'content-type': result.contentType ?? 'application/octet-stream', ...(status !== 304 ? { 'content-length': result.bytes.byteLength } : {}) })
      res.end(result.bytes)
      return
    }
    const payload = JSON.stringify(result.body ?? null)
    res.writeHead(status, { ...result.headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload) })
    res.end(payload)
  }

  /** Writes a streamed answer with back-pressure: the next chunk is made once the socket took the last. */
  private async pump (res: ServerResponse, chunks: Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>): Promise<void> {
    try {
      for await (const chunk of chunks) {
        if (res.destroyed) return
        if (!res.write(chunk)) {
          await new Promise<void>(resolve => {
            const done = (): void => { res.off('drain', done); res.off('close', done); resolve() }
            res.on('drain', done)
            res.on('close', done)
          })
        }
      }
      res.end()
    } catch (err) {
      this.log.error({ err }, 'http answer failed while streaming')
      res.destroy(err as Error)
    }
  }

  private async readText (req: IncomingMessage, limit: number): Promise<string> {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > limit) throw new HttpError(413, 'BODY_TOO_LARGE', `request body of ${declared} bytes exceeds the limit of ${limit} bytes`)
    const chunks: Buffer[] = []
    let total = 0
    for await (const chunk of req) {
      total += (chunk as Buffer).length
      if (total > limit) throw new HttpError(413, 'BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`)
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks).toString('utf8')
  }

  private async readJson (req: IncomingMessage, limit: number): Promise<unknown> {
    const text = await this.readText(req, limit)
    if (text.trim() === '') throw new HttpError(400, 'BAD_REQUEST', 'request body is empty; expected JSON')
    try {
      // JSON.parse never assigns through __proto__ (it creates an own property), so parsing is
      // safe; handlers still copy only the fields they know.
      return JSON.parse(text)
    } catch (err) {
      throw new HttpError(400, 'BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`)
    }
  }
}

/**
 * The segments of a request path, still percent-encoded: `/a/b` → ['a', 'b'], `/` → []. A
 * trailing slash or an empty segment (`//`) is kept as an empty segment, so it matches no route:
 * `/spaces/t/` is not `/spaces/t`, and no destructive route is reached by a path folded for us.
 */
function splitPath (path: string): string[] {
  if (path === '/' || path === '') return []
  return (path.startsWith('/') ? path.slice(1) : path).split('/')
}

/** The route's params if `segments` match it, each decoded exactly once; undefined if not. */
function matchRoute (route: Route, segments: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== route.segments.length) return undefined
  for (let i = 0; i < segments.length; i++) {
    const want = route.segments[i]!
    if ('literal' in want && want.literal !== segments[i]) return undefined
    if ('key' in want && segments[i] === '') return undefined
  }
  const params: Record<string, string> = Object.create(null)
  for (let i = 0; i < segments.length; i++) {
    const want = route.segments[i]!
    if (!('key' in want)) continue
    try {
      params[want.key] = decodeURIComponent(segments[i]!)
    } catch {
      // A malformed escape (`%zz`, `%E0%A4`) or bytes that are not UTF-8: the caller's mistake.
      throw new HttpError(400, 'BAD_PATH', `path segment ${i + 1} ('${segments[i]!.slice(0, 100)}') has a malformed percent-escape or is not UTF-8; parameter '${want.key}'`)
    }
  }
  return params
}

export class HttpListenError extends Error {
  override name = 'HttpListenError'
  constructor (readonly host: string, readonly port: number, cause: NodeJS.ErrnoException) {
    super(cause.code === 'EADDRINUSE'
      ? `HTTP address ${host}:${port} is already in use (another peer running? choose another with --http HOST:PORT)`
      : `cannot listen for HTTP on ${host}:${port}: ${cause.message}`, { cause })
  }
}
