import { HttpError, type HttpServer } from './server.js'
import { guardAsync } from './data.js'

/** What the status and repair endpoints need (src/peer/cluster-status.ts implements it). */
export interface OpsApi {
  status(opts: { timeoutMs: number }): Promise<unknown>
  repair(opts: { space?: string, timeoutMs: number, signal?: AbortSignal }): Promise<unknown>
}

/** How long the peer asked waits for each other peer's status: default 3 s, from 100 ms to 60 s. */
export const STATUS_TIMEOUT_MS = { default: 3000, min: 100, max: 60_000 }
/** How long it waits for each peer's part of a repair: default 10 min, from 1 s to 24 h. */
export const REPAIR_TIMEOUT_MS = { default: 600_000, min: 1000, max: 86_400_000 }
/** Longest space name accepted (the catalog's names are shorter). */
const MAX_SPACE_NAME = 256

/**
 * The cluster-wide status and on-demand repair (docs/operations.md, "Cluster status" and
 * "Repair"):
 *
 * ```
 * GET  /cluster/status?timeoutMs=N     {peer, name, at, tookMs, timeoutMs, health, majority, peers: [...], spaces: [...]}
 * POST /cluster/repair {space?, timeoutMs?}
 *                                      {peer, name, spaces, tookMs, ok, peers: [{peerId, name, ok, error?, report?}], notAsked, totals}
 *                                      (200 once the repair ran: `ok` says whether every peer's part completed;
 *                                      409 REPAIR_RUNNING while another repair asked through this peer runs)
 * ```
 */
export function registerOpsApi (server: HttpServer, api: OpsApi): void {
  server.route('GET', '/cluster/status', async (req) => {
    const timeoutMs = parseStatusQuery(req.query)
    return { body: await guardAsync(async () => await api.status({ timeoutMs })) }
  })
  server.route('POST', '/cluster/repair', async (req) => {
    const opts = parseRepairBody(await req.text())
    return { body: await guardAsync(async () => await api.repair({ ...opts, signal: req.signal })) }
  })
}

/** `timeoutMs` of GET /cluster/status, or its default. */
export function parseStatusQuery (query: URLSearchParams): number {
  for (const key of query.keys()) {
    if (key !== 'timeoutMs') throw new HttpError(400, 'BAD_REQUEST', `unknown query parameter '${key.slice(0, 40)}'; expected timeoutMs`)
  }
  const t = query.get('timeoutMs')
  return t === null ? STATUS_TIMEOUT_MS.default : timeout(/^\d{1,9}$/.test(t) ? Number(t) : t, 'query parameter', STATUS_TIMEOUT_MS)
}

/** The body of POST /cluster/repair: empty, or `{space?, timeoutMs?}`. */
export function parseRepairBody (text: string): { space?: string, timeoutMs: number } {
  if (text.trim() === '') return { timeoutMs: REPAIR_TIMEOUT_MS.default }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new HttpError(400, 'BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`)
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object like {"space": "people"}, or empty for every space')
  for (const key of Object.keys(body)) {
    if (key !== 'space' && key !== 'timeoutMs') throw new HttpError(400, 'BAD_REQUEST', `unknown field '${key.slice(0, 40)}'; expected space, timeoutMs`)
  }
  const { space, timeoutMs } = body as Record<string, unknown>
  if (space !== undefined && space !== null && (typeof space !== 'string' || space === '' || space.length > MAX_SPACE_NAME)) {
    throw new HttpError(400, 'BAD_REQUEST', `field 'space' must be a space name (1 to ${MAX_SPACE_NAME} characters)`)
  }
  const out: { space?: string, timeoutMs: number } = {
    timeoutMs: timeoutMs === undefined || timeoutMs === null ? REPAIR_TIMEOUT_MS.default : timeout(timeoutMs, 'field', REPAIR_TIMEOUT_MS)
  }
  if (typeof space === 'string') out.space = space
  return out
}

function timeout (value: unknown, where: string, bounds: { min: number, max: number }): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < bounds.min || value > bounds.max) {
    throw new HttpError(400, 'BAD_REQUEST', `${where} 'timeoutMs' must be an integer from ${bounds.min} to ${bounds.max} (milliseconds)`)
  }
  return value
}

