/**
 * The HTTP client of the workloads: one request per operation, a per-operation timeout, and the
 * classification of every answer into ok / fail / info.
 *
 *   200                                   ok
 *   404 on a read                         ok (absent)
 *   other 4xx, 503 PARTITION_UNAVAILABLE  fail: refused before anything was sent
 *   connection refused (ECONNREFUSED)     fail: nothing reached the peer
 *   timeout, reset, 503 WRITE_INCOMPLETE, 504, other 5xx   info: may or may not have happened
 */

export type Outcome =
  | { type: 'ok', status: number, body: Record<string, unknown> }
  | { type: 'fail' | 'info', status: number, error: string }

export interface ClientOptions {
  /** Client-side timeout per operation, ms. */
  timeoutMs: number
  /** Server-side timeout passed as ?timeoutMs= (below the client's, so most slow ops get a real answer). */
  serverTimeoutMs: number
}

function errorCode (err: unknown): string {
  const e = err as { name?: string, code?: string, cause?: { code?: string, name?: string } }
  return e.cause?.code ?? e.code ?? e.cause?.name ?? e.name ?? String(err)
}

export async function request (url: string, init: { method: string, body?: string }, timeoutMs: number, isRead: boolean): Promise<Outcome> {
  let res: Response
  try {
    res = await fetch(url, {
      method: init.method,
      ...(init.body !== undefined ? { body: init.body, headers: { 'content-type': 'application/json' } } : {}),
      signal: AbortSignal.timeout(timeoutMs)
    })
  } catch (err) {
    const code = errorCode(err)
    return { type: code === 'ECONNREFUSED' ? 'fail' : 'info', status: 0, error: code }
  }
  let body: Record<string, unknown> = {}
  try {
    body = await res.json() as Record<string, unknown>
  } catch (err) {
    // Headers arrived but the body did not: the operation may have happened.
    if (res.status !== 200 && res.status !== 404 && !(res.status >= 400 && res.status < 500)) return { type: 'info', status: res.status, error: errorCode(err) }
    if (res.status === 200) return { type: 'info', status: res.status, error: `body: ${errorCode(err)}` }
  }
  if (res.status === 200) return { type: 'ok', status: 200, body }
  if (res.status === 404 && isRead) return { type: 'ok', status: 404, body: {} }
  const code = String((body.error as { code?: string } | undefined)?.code ?? res.status)
  if (res.status >= 400 && res.status < 500) return { type: 'fail', status: res.status, error: code }
  if (res.status === 503 && code === 'PARTITION_UNAVAILABLE') return { type: 'fail', status: res.status, error: code }
  return { type: 'info', status: res.status, error: code }
}

export class ShoalClient {
  constructor (private readonly opts: ClientOptions) {}

  /** `after`: the newest version this client has seen (a causality token, see docs/consistency.md). */
  async write (baseUrl: string, space: string, row: Record<string, unknown>, consistency: string, after?: number): Promise<Outcome> {
    return await request(`${baseUrl}/spaces/${space}/records?consistency=${consistency}&timeoutMs=${this.opts.serverTimeoutMs}${afterParam(after)}`,
      { method: 'POST', body: JSON.stringify([row]) }, this.opts.timeoutMs, false)
  }

  async read (baseUrl: string, space: string, id: string, consistency: string, timeoutMs = this.opts.timeoutMs, after?: number): Promise<Outcome> {
    return await request(`${baseUrl}/spaces/${space}/records/${encodeURIComponent(id)}?consistency=${consistency}&timeoutMs=${Math.min(this.opts.serverTimeoutMs, timeoutMs)}${afterParam(after)}`,
      { method: 'GET' }, timeoutMs, true)
  }
}

function afterParam (after: number | undefined): string {
  return after === undefined || after <= 0 ? '' : `&after=${after}`
}

/**
 * A single-threaded client's session: the newest version it has seen, sent as `after` with every
 * operation, so its writes are ordered by its own real-time order whatever the coordinators'
 * clocks say (without it, LWW under clock skew can drop a client's later write).
 */
export class Session {
  newest = 0
  saw (o: Outcome): void {
    if (o.type === 'ok' && typeof o.body.version === 'number' && o.body.version > this.newest) this.newest = o.body.version
  }
}
