/**
 * The peer's HTTP API as the console calls it: the same origin that served the page, with the
 * bearer token the user gave when the API first answered 401 (kept in sessionStorage: it lasts
 * as long as the tab, and no other site can read it). The shapes below are the parts of the
 * answers the console reads (docs/operations.md has them whole).
 */

const TOKEN_KEY = 'shoal.token'
/** A poll that takes longer than this has failed: the next one is due soon anyway. */
const POLL_TIMEOUT_MS = 5000
/** A query the user typed may take as long as the peer lets it (its own default is 30 s). */
const QUERY_TIMEOUT_MS = 120_000

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

export interface Member { peerId: string, name: string | null, addrs: string[], http: string | null, version: string | null, state: MemberState, leaving?: true, removed?: true }
export interface Health { status: 'green' | 'yellow' | 'red', peer: string, name: string, version?: string, majority: boolean, ready?: boolean }
export interface Column { name: string, type: string, nullable?: boolean }
export interface Placement { partition: number, owners: string[], readReplicas: string[], writeReplicas: string[], quorum: number }
export interface Space { name: string, schema: Column[], partitions: number, replicas: number, placement?: Placement[] }
export interface StatusPeer { peerId: string, reachable: boolean, error?: string, ready: boolean | null, partitions: { held: number, ready: number } | null, rows: number | null, uptimeMs: number | null }
export interface Status { peers: StatusPeer[], spaces: Array<{ name: string, unavailable: number[], belowQuorum: number[] }> }
export interface Coverage { total: number, answered: number, missing: unknown[] }
export interface QueryAnswer { columns: Column[], rows?: Array<Record<string, unknown>>, aggregations?: unknown, coverage: Coverage, confidence: number, tookMs: number }
export interface PeerAnalysis { peer: string, name: string | null, partitions: number, rows: number, rowsOut: number, bytes: number, ms: number, roundTripMs: number }
export interface Explain { text: string, analyze?: { peers: PeerAnalysis[], tookMs: number } }

/** An answer other than 2xx: the API's `{error: {code, message}}`, or what the network said. */
export class ApiError extends Error {
  override name = 'ApiError'
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

export function savedToken (): string | null {
  return sessionStorage.getItem(TOKEN_KEY)
}

export function saveToken (token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY)
  else sessionStorage.setItem(TOKEN_KEY, token)
}

async function call (path: string, init: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<Response> {
  const headers: Record<string, string> = {}
  const token = savedToken()
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(path, {
      method: init.method ?? 'GET',
      headers,
      cache: 'no-store',
      signal: AbortSignal.timeout(init.timeoutMs ?? POLL_TIMEOUT_MS),
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {})
    })
  } catch (err) {
    throw new ApiError(0, 'UNREACHABLE', `the peer did not answer ${path}: ${(err as Error).message}`)
  }
  if (res.ok) return res
  let code = `HTTP_${res.status}`
  let message = res.statusText
  try {
    const body = await res.json() as { error?: { code?: string, message?: string } }
    code = body.error?.code ?? code
    message = body.error?.message ?? message
  } catch {
    // Not the API's error shape (a proxy's page): the status says enough.
  }
  throw new ApiError(res.status, code, message)
}

export async function getJson<T> (path: string): Promise<T> {
  return await (await call(path)).json() as T
}

export async function getText (path: string): Promise<string> {
  return await (await call(path)).text()
}

export async function query (sql: string): Promise<QueryAnswer> {
  // Partial answers allowed: the console shows coverage beside the rows rather than nothing.
  return await (await call('/query', { method: 'POST', body: { sql, allowPartial: true }, timeoutMs: QUERY_TIMEOUT_MS })).json() as QueryAnswer
}

export async function explainAnalyze (sql: string): Promise<Explain> {
  return await (await call('/query/explain', { method: 'POST', body: { sql, analyze: true, allowPartial: true }, timeoutMs: QUERY_TIMEOUT_MS })).json() as Explain
}
