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

import type { QueryCoverage } from './history.js'

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
  const e = err as { name?: string, code?: unknown, cause?: { code?: unknown, name?: string } }
  // A DOMException's code is a number (23 for TimeoutError): its name says more.
  const str = (c: unknown): string | undefined => typeof c === 'string' ? c : undefined
  return str(e.cause?.code) ?? str(e.code) ?? e.cause?.name ?? e.name ?? String(err)
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

  /** DELETE of one record (a tombstone), `after` as for write. */
  async remove (baseUrl: string, space: string, id: string, consistency: string, after?: number): Promise<Outcome> {
    return await request(`${baseUrl}/spaces/${space}/records/${encodeURIComponent(id)}?consistency=${consistency}&timeoutMs=${this.opts.serverTimeoutMs}${afterParam(after)}`,
      { method: 'DELETE' }, this.opts.timeoutMs, false)
  }

  /** POST /query with the server deadline (`timeoutMs`) below the client's. */
  async query (baseUrl: string, sql: string, allowPartial: boolean): Promise<QueryOutcome> {
    return await queryRequest(baseUrl, { sql, allowPartial, timeoutMs: this.opts.serverTimeoutMs }, this.opts.timeoutMs)
  }

  async read (baseUrl: string, space: string, id: string, consistency: string, timeoutMs = this.opts.timeoutMs, after?: number): Promise<Outcome> {
    return await request(`${baseUrl}/spaces/${space}/records/${encodeURIComponent(id)}?consistency=${consistency}&timeoutMs=${Math.min(this.opts.serverTimeoutMs, timeoutMs)}${afterParam(after)}`,
      { method: 'GET' }, timeoutMs, true)
  }
}

/**
 * The answer to POST /query. A query has no effect, so: ok = 200 with rows, coverage and
 * confidence; fail = an error answer from the server (any status, with its code, and the coverage
 * of a 503 PARTIAL_RESULT), or connection refused; info = no answer (timeout, reset, a body that
 * did not arrive or parse).
 */
export type QueryOutcome =
  | { type: 'ok', status: 200, rows: unknown[], coverage: QueryCoverage, confidence: number }
  | { type: 'fail' | 'info', status: number, error: string, coverage?: QueryCoverage }

export async function queryRequest (baseUrl: string, body: Record<string, unknown>, timeoutMs: number): Promise<QueryOutcome> {
  let res: Response
  try {
    res = await fetch(`${baseUrl}/query`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    const code = errorCode(err)
    return { type: code === 'ECONNREFUSED' ? 'fail' : 'info', status: 0, error: code }
  }
  let b: Record<string, unknown>
  try {
    b = await res.json() as Record<string, unknown>
  } catch (err) {
    return { type: 'info', status: res.status, error: `body: ${errorCode(err)}` }
  }
  if (res.status === 200) {
    if (!Array.isArray(b.rows) || typeof b.coverage !== 'object' || b.coverage === null || typeof b.confidence !== 'number') {
      // Kept as ok, so the checker sees (and flags) an answer without rows, coverage or confidence.
      return { type: 'ok', status: 200, rows: Array.isArray(b.rows) ? b.rows : [], coverage: (b.coverage ?? { total: -1, answered: -1, missing: [] }) as QueryCoverage, confidence: typeof b.confidence === 'number' ? b.confidence : NaN }
    }
    return { type: 'ok', status: 200, rows: b.rows, coverage: b.coverage as QueryCoverage, confidence: b.confidence }
  }
  const e = b.error as { code?: string, coverage?: QueryCoverage } | undefined
  return { type: 'fail', status: res.status, error: String(e?.code ?? res.status), ...(e?.coverage !== undefined ? { coverage: e.coverage } : {}) }
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
