import { HttpError, type HttpServer } from './server.js'
import { registerConsole } from './console.js'
import { DISK_FAULT_CODES, DISK_OPS, type DiskFaultCode, type DiskOp } from '../runtime/index.js'

/** One member as the HTTP contract shows it (DESIGN.md section 8). */
export interface MemberView {
  peerId: string
  name: string | null
  addrs: string[]
  http: string | null
  /** The member's build (its membership meta); null for a peer older than versions in meta. */
  version: string | null
  state: 'alive' | 'suspect' | 'dead' | 'left'
  incarnation: number
  /** Present (true) when the member left because an operator removed it (POST /cluster/remove). */
  removed?: true
  /** Present (true) while the member decommissions: it owns nothing and hands its partitions off before it leaves. */
  leaving?: true
}

export interface HealthReport {
  status: 'green' | 'yellow' | 'red'
  peer: string
  name: string
  addrs: string[]
  majority: boolean
  [extra: string]: unknown
}

export interface FaultState {
  deny: string[]
  clockOffsetMs: number
  clockDriftPpm: number
  /** Every query fragment this peer serves waits this long first (a slow peer, for hedging and cancellation tests). */
  queryDelayMs: number
  /** Disk fault rules in force (paths as substrings), and the file operations they failed so far. */
  disk: DiskFaultView[]
  diskFaultsInjected: number
}

/** One disk fault rule as the API takes and shows it (src/runtime/disk-faults.ts). */
export interface DiskFaultView { op: DiskOp, code: DiskFaultCode | string, path?: string, times?: number }

/** Fault injection hooks; present only when the peer runs with --enable-fault-injection. */
export interface FaultControl {
  setDenied(peerIds: string[]): Promise<void>
  /** Skews this peer's HLC physical clock: a fixed offset plus a drift in parts per million. */
  setClockSkew(offsetMs: number, driftPpm: number): void
  setQueryDelay(ms: number): void
  /** Replaces the disk fault rules ([] clears them): this peer's file operations that match fail with the rule's errno. */
  setDiskFaults(rules: DiskFaultView[]): void
  state(): FaultState
}

/** One partition whose only ready copies were on a removed peer. */
export interface GivenUpPartition { space: string, partition: number }

/** The answer of POST /cluster/remove. */
export interface RemovePeerAnswer {
  peerId: string
  name: string | null
  /** The member's state as this peer sees it after the request (left once removed). */
  state: 'alive' | 'suspect' | 'dead' | 'left'
  /** True once the cluster has been told to forget the peer (now, or by an earlier request). */
  removed: boolean
  /** Partitions whose only ready copies were on the peer: their data is given up by the removal. */
  givesUp: GivenUpPartition[]
  message: string
}

/** What the HTTP API needs from a peer (peer.ts implements it). */
export interface ApiPeer {
  health(): HealthReport
  members(): MemberView[]
  clusterHealth(): unknown
  /** This peer's partition replicas with their digests (for convergence checks). */
  localPartitions(): Promise<unknown>
  metrics(): Promise<{ contentType: string, text: string }>
  /**
   * Removes a dead (or left) member on purpose: without `confirm`, only says what that gives up;
   * with it, the cluster forgets the member's data. Throws HttpError (404 unknown, 409 not dead,
   * 503 not on the majority side).
   */
  removePeer(peerId: string, confirm: boolean): RemovePeerAnswer
  /**
   * Starts this peer's decommission (POST /admin/decommission): its progress as NDJSON lines, the
   * last one the summary (`{"event": "done", ...}`). Throws HttpError when it cannot start.
   */
  decommission(opts: { timeoutMs?: number }): AsyncIterable<string>
  readonly faults: FaultControl | undefined
}

/** timeoutMs of POST /admin/decommission: from 0 (hand nothing off: fails unless there is nothing to hand) to a day. */
export const DECOMMISSION_TIMEOUT_MS = { min: 0, max: 86_400_000 }

/** Largest deny list accepted: more peers than any cluster we run, small enough to bound work. */
const MAX_DENY = 1024

/** Registers the endpoints of the contract that this layer serves, and the console (GET /, docs/console.md). */
export function registerApi (server: HttpServer, peer: ApiPeer): void {
  registerConsole(server)
  server.route('GET', '/health', () => ({ body: peer.health() }))
  server.route('GET', '/cluster/members', () => ({ body: peer.members() }))
  server.route('GET', '/cluster/health', () => ({ body: peer.clusterHealth() }))
  server.route('GET', '/cluster/partitions', async () => ({ body: await peer.localPartitions() }))
  server.route('GET', '/metrics', async () => {
    const { contentType, text } = await peer.metrics()
    return { text, contentType }
  })
  server.route('POST', '/cluster/remove', async (req) => {
    const { peerId, confirm } = parseRemove(await req.json())
    return { body: peer.removePeer(peerId, confirm) }
  })
  // The answer streams the progress; `connection: close` so the peer's HTTP server, stopping
  // right after a complete decommission, need not wait for this keep-alive socket.
  server.route('POST', '/admin/decommission', async (req) => {
    const opts = parseDecommissionBody(await req.text())
    return { stream: peer.decommission(opts), contentType: 'application/x-ndjson', headers: { connection: 'close' } }
  })
  server.route('GET', '/admin/faults', () => ({ body: requireFaults(peer).state() }))
  server.route('POST', '/admin/faults', async (req) => {
    const faults = requireFaults(peer)
    const body = await req.json()
    const change = parseFaults(body)
    if (change.deny !== undefined) await faults.setDenied(change.deny)
    if (change.clockOffsetMs !== undefined || change.clockDriftPpm !== undefined) {
      const current = faults.state()
      faults.setClockSkew(change.clockOffsetMs ?? current.clockOffsetMs, change.clockDriftPpm ?? current.clockDriftPpm)
    }
    if (change.queryDelayMs !== undefined) faults.setQueryDelay(change.queryDelayMs)
    if (change.disk !== undefined) faults.setDiskFaults(change.disk)
    return { body: faults.state() }
  })
}

const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{20,128}$/

function parseRemove (body: unknown): { peerId: string, confirm: boolean } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object like {"peerId": "<peerId>", "confirm": true}')
  for (const key of Object.keys(body)) {
    if (key !== 'peerId' && key !== 'confirm') throw new HttpError(400, 'BAD_REQUEST', `unknown field '${key}'; expected peerId, confirm`)
  }
  const { peerId, confirm } = body as Record<string, unknown>
  if (typeof peerId !== 'string' || !PEER_ID.test(peerId)) throw new HttpError(400, 'BAD_REQUEST', "field 'peerId' must be the peer id of a member (see GET /cluster/members)")
  if (confirm !== undefined && typeof confirm !== 'boolean') throw new HttpError(400, 'BAD_REQUEST', "field 'confirm' must be true or false")
  return { peerId, confirm: confirm === true }
}

/** The body of POST /admin/decommission: empty, or `{timeoutMs?}`. */
export function parseDecommissionBody (text: string): { timeoutMs?: number } {
  if (text.trim() === '') return {}
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (err) {
    throw new HttpError(400, 'BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`)
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object like {"timeoutMs": 120000}, or empty')
  for (const key of Object.keys(body)) {
    if (key !== 'timeoutMs') throw new HttpError(400, 'BAD_REQUEST', `unknown field '${key.slice(0, 40)}'; expected timeoutMs`)
  }
  const { timeoutMs } = body as { timeoutMs?: unknown }
  if (timeoutMs === undefined || timeoutMs === null) return {}
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < DECOMMISSION_TIMEOUT_MS.min || timeoutMs > DECOMMISSION_TIMEOUT_MS.max) {
    throw new HttpError(400, 'BAD_REQUEST', `field 'timeoutMs' must be an integer from ${DECOMMISSION_TIMEOUT_MS.min} to ${DECOMMISSION_TIMEOUT_MS.max} (milliseconds)`)
  }
  return { timeoutMs }
}

function requireFaults (peer: ApiPeer): FaultControl {
  if (peer.faults === undefined) {
    throw new HttpError(403, 'FAULT_INJECTION_DISABLED', 'fault injection is disabled; start the peer with --enable-fault-injection to use /admin/faults')
  }
  return peer.faults
}

/** Largest clock offset accepted: a day either way covers every skew test worth running. */
const MAX_CLOCK_OFFSET_MS = 86_400_000
/** Largest drift accepted: 10% (100,000 ppm); real quartz drifts by tens of ppm. */
const MAX_CLOCK_DRIFT_PPM = 100_000
const FAULT_FIELDS = ['deny', 'clockOffsetMs', 'clockDriftPpm', 'queryDelayMs', 'disk']
/** Most disk fault rules at once. */
const MAX_DISK_RULES = 32
const DISK_RULE_FIELDS = ['op', 'code', 'path', 'times']
/** Longest injected query delay: ten minutes. */
const MAX_QUERY_DELAY_MS = 600_000

interface FaultChange { deny?: string[], clockOffsetMs?: number, clockDriftPpm?: number, queryDelayMs?: number, disk?: DiskFaultView[] }

function parseFaults (body: unknown): FaultChange {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object like {"deny": ["<peerId>", ...], "clockOffsetMs": 0, "clockDriftPpm": 0}')
  for (const key of Object.keys(body)) {
    if (!FAULT_FIELDS.includes(key)) throw new HttpError(400, 'BAD_REQUEST', `unknown field '${key}'; expected ${FAULT_FIELDS.join(', ')}`)
  }
  const { deny, clockOffsetMs, clockDriftPpm, queryDelayMs, disk } = body as Record<string, unknown>
  const out: FaultChange = {}
  if (disk !== undefined) out.disk = parseDiskFaults(disk)
  if (queryDelayMs !== undefined) {
    if (typeof queryDelayMs !== 'number' || !Number.isInteger(queryDelayMs) || queryDelayMs < 0 || queryDelayMs > MAX_QUERY_DELAY_MS) throw new HttpError(400, 'BAD_REQUEST', `field 'queryDelayMs' must be an integer from 0 to ${MAX_QUERY_DELAY_MS}`)
    out.queryDelayMs = queryDelayMs
  }
  if (deny !== undefined) out.deny = parseDeny(deny)
  if (clockOffsetMs !== undefined) {
    if (typeof clockOffsetMs !== 'number' || !Number.isInteger(clockOffsetMs) || Math.abs(clockOffsetMs) > MAX_CLOCK_OFFSET_MS) throw new HttpError(400, 'BAD_REQUEST', `field 'clockOffsetMs' must be an integer within ±${MAX_CLOCK_OFFSET_MS}`)
    out.clockOffsetMs = clockOffsetMs
  }
  if (clockDriftPpm !== undefined) {
    if (typeof clockDriftPpm !== 'number' || !Number.isFinite(clockDriftPpm) || Math.abs(clockDriftPpm) > MAX_CLOCK_DRIFT_PPM) throw new HttpError(400, 'BAD_REQUEST', `field 'clockDriftPpm' must be a number within ±${MAX_CLOCK_DRIFT_PPM}`)
    out.clockDriftPpm = clockDriftPpm
  }
  return out
}

/** `disk`: an array of {op, code, path?, times?}; [] clears the rules. */
function parseDiskFaults (disk: unknown): DiskFaultView[] {
  if (!Array.isArray(disk)) throw new HttpError(400, 'BAD_REQUEST', "field 'disk' must be an array of rules like {\"op\": \"sync\", \"code\": \"EIO\", \"path\": \"wal-\"} ([] clears them)")
  if (disk.length > MAX_DISK_RULES) throw new HttpError(400, 'BAD_REQUEST', `field 'disk' has ${disk.length} rules; at most ${MAX_DISK_RULES}`)
  return disk.map((rule: unknown, i) => {
    const at = `disk[${i}]`
    if (rule === null || typeof rule !== 'object' || Array.isArray(rule)) throw new HttpError(400, 'BAD_REQUEST', `field '${at}' must be an object {op, code, path?, times?}`)
    for (const key of Object.keys(rule)) if (!DISK_RULE_FIELDS.includes(key)) throw new HttpError(400, 'BAD_REQUEST', `unknown field '${at}.${key.slice(0, 40)}'; expected ${DISK_RULE_FIELDS.join(', ')}`)
    const { op, code, path, times } = rule as Record<string, unknown>
    if (typeof op !== 'string' || !(DISK_OPS as readonly string[]).includes(op)) throw new HttpError(400, 'BAD_REQUEST', `field '${at}.op' must be one of ${DISK_OPS.join(', ')}`)
    if (typeof code !== 'string' || !(DISK_FAULT_CODES as readonly string[]).includes(code)) throw new HttpError(400, 'BAD_REQUEST', `field '${at}.code' must be one of ${DISK_FAULT_CODES.join(', ')}`)
    if (path !== undefined && (typeof path !== 'string' || path.length === 0 || path.length > 256)) throw new HttpError(400, 'BAD_REQUEST', `field '${at}.path' must be a non-empty string of at most 256 characters (a substring of the paths to fail)`)
    if (times !== undefined && (typeof times !== 'number' || !Number.isInteger(times) || times < 1 || times > 1_000_000)) throw new HttpError(400, 'BAD_REQUEST', `field '${at}.times' must be an integer from 1 to 1000000`)
    return { op: op as DiskOp, code, ...(path !== undefined ? { path: path as string } : {}), ...(times !== undefined ? { times: times as number } : {}) }
  })
}

function parseDeny (deny: unknown): string[] {
  if (!Array.isArray(deny)) throw new HttpError(400, 'BAD_REQUEST', "field 'deny' must be an array of peer ids")
  if (deny.length > MAX_DENY) throw new HttpError(400, 'BAD_REQUEST', `field 'deny' has ${deny.length} entries; at most ${MAX_DENY}`)
  deny.forEach((id, i) => {
    if (typeof id !== 'string' || !PEER_ID.test(id)) throw new HttpError(400, 'BAD_REQUEST', `field 'deny[${i}]' is not a peer id`)
  })
  return [...new Set(deny as string[])]
}
