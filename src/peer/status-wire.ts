/**
 * The two RPC methods behind `shoal status` and `shoal repair` (cluster-status.ts), their message
 * shapes, and the checks every decoded body goes through: bodies are untrusted input, bounded in
 * size, and a field this version does not know is ignored (a newer peer may add some).
 *
 * ```
 * ops.status  {}                                         → PeerStatus (this peer's figures and its replicas' digest roots)
 * ops.repair  { spaces: string[] | null, covered: id[] } → RepairReport (replication's on-demand.ts)
 * ```
 */
import { MAX_REPORTED_FAILURES, type RepairFailure, type RepairReport } from '../replication/index.js'

export const METHOD_STATUS = 'ops.status'
export const METHOD_REPAIR = 'ops.repair'

/** Replicas listed in one status answer: 65,536 of ~80 bytes fit the RPC's 8 MiB frames many times. */
export const MAX_STATUS_REPLICAS = 65_536
/** Spaces and peers named in one repair request: far beyond any catalog or cluster we run. */
export const MAX_REPAIR_SPACES = 4096
export const MAX_REPAIR_PEERS = 4096
/** Longest name, uid, version, digest or error text accepted. */
const MAX_TEXT = 1024

/** One replica this peer holds (open), as a status answer lists it. */
export interface ReplicaStatus {
  /** The space's uid: the same name re-created is another space. */
  uid: string
  space: string
  partition: number
  /** Caught up and serving reads. */
  ready: boolean
  /** The partition digest's root (anti-entropy's, storage/digest.ts); null when the replica could not compute it (a failed disk). */
  digest: string | null
  /** Live rows (tombstones not counted). */
  rows: number
}

/** One peer's own figures, as it reports them (ops.status). */
export interface PeerStatus {
  peerId: string
  name: string
  version: string
  uptimeMs: number
  /** Start-up done: synced with the cluster and every owned partition caught up (GET /health's `ready`). */
  ready: boolean
  /** Partition replicas held, and of those, ready. */
  partitions: { held: number, ready: number }
  /** Live rows and tombstones over every replica held (a row counts once per replica). */
  rows: number
  tombstones: number
  /** Bytes of the replicas' segment files and WAL. */
  diskBytes: number
  /** Hints held for replicas that have not taken them yet. */
  hintsPending: number
  replicas: ReplicaStatus[]
}

export interface RepairRpcRequest {
  /** Names of the spaces to repair; null: every space. */
  spaces: string[] | null
  /** The peers asked to run this repair (on-demand.ts: which side of a pair syncs it). */
  covered: string[]
}

export class StatusWireError extends Error {
  override name = 'StatusWireError'
  readonly code = 'BAD_REQUEST'
}

function bad (what: string): StatusWireError { return new StatusWireError(what) }

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function text (v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length > MAX_TEXT) throw bad(`${field} must be a string of at most ${MAX_TEXT} characters`)
  return v
}

function count (v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${field} must be a non-negative integer`)
  return v
}

function bool (v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw bad(`${field} must be true or false`)
  return v
}

function texts (v: unknown, field: string, max: number): string[] {
  if (!Array.isArray(v)) throw bad(`${field} must be an array`)
  if (v.length > max) throw bad(`${field} has ${v.length} entries; at most ${max}`)
  return v.map((x, i) => text(x, `${field}[${i}]`))
}

/** ops.status takes no parameters yet: any object (fields a newer peer adds are ignored). */
export function parseStatusRequest (body: unknown): Record<string, never> {
  if (body !== undefined && body !== null && !isObject(body)) throw bad('ops.status body must be an object')
  return {}
}

export function parseStatusAnswer (body: unknown): PeerStatus {
  if (!isObject(body)) throw bad('ops.status answer must be an object')
  const partitions = body.partitions
  if (!isObject(partitions)) throw bad('partitions must be an object')
  if (!Array.isArray(body.replicas)) throw bad('replicas must be an array')
  if (body.replicas.length > MAX_STATUS_REPLICAS) throw bad(`replicas has ${body.replicas.length} entries; at most ${MAX_STATUS_REPLICAS}`)
  const held = count(partitions.held, 'partitions.held')
  const ready = count(partitions.ready, 'partitions.ready')
  if (ready > held) throw bad('partitions.ready must not exceed partitions.held')
  return {
    peerId: text(body.peerId, 'peerId'),
    name: text(body.name, 'name'),
    version: text(body.version, 'version'),
    uptimeMs: count(body.uptimeMs, 'uptimeMs'),
    ready: bool(body.ready, 'ready'),
    partitions: { held, ready },
    rows: count(body.rows, 'rows'),
    tombstones: count(body.tombstones, 'tombstones'),
    diskBytes: count(body.diskBytes, 'diskBytes'),
    hintsPending: count(body.hintsPending, 'hintsPending'),
    replicas: body.replicas.map((r: unknown, i) => parseReplica(r, `replicas[${i}]`))
  }
}

function parseReplica (r: unknown, field: string): ReplicaStatus {
  if (!isObject(r)) throw bad(`${field} must be an object`)
  return {
    uid: text(r.uid, `${field}.uid`),
    space: text(r.space, `${field}.space`),
    partition: count(r.partition, `${field}.partition`),
    ready: bool(r.ready, `${field}.ready`),
    digest: r.digest === null ? null : text(r.digest, `${field}.digest`),
    rows: count(r.rows, `${field}.rows`)
  }
}

export function parseRepairRequest (body: unknown): RepairRpcRequest {
  if (!isObject(body)) throw bad('ops.repair body must be an object')
  return {
    spaces: body.spaces === null || body.spaces === undefined ? null : texts(body.spaces, 'spaces', MAX_REPAIR_SPACES),
    covered: texts(body.covered, 'covered', MAX_REPAIR_PEERS)
  }
}

export function parseRepairAnswer (body: unknown): RepairReport {
  if (!isObject(body)) throw bad('ops.repair answer must be an object')
  if (!Array.isArray(body.failures)) throw bad('failures must be an array')
  if (body.failures.length > MAX_REPORTED_FAILURES) throw bad(`failures has ${body.failures.length} entries; at most ${MAX_REPORTED_FAILURES}`)
  return {
    partitions: count(body.partitions, 'partitions'),
    syncs: count(body.syncs, 'syncs'),
    syncsFailed: count(body.syncsFailed, 'syncsFailed'),
    bucketsCompared: count(body.bucketsCompared, 'bucketsCompared'),
    bucketsDiffering: count(body.bucketsDiffering, 'bucketsDiffering'),
    recordsPulled: count(body.recordsPulled, 'recordsPulled'),
    recordsPushed: count(body.recordsPushed, 'recordsPushed'),
    failures: body.failures.map((f: unknown, i): RepairFailure => {
      if (!isObject(f)) throw bad(`failures[${i}] must be an object`)
      return { space: text(f.space, `failures[${i}].space`), partition: count(f.partition, `failures[${i}].partition`), peer: text(f.peer, `failures[${i}].peer`), error: text(f.error, `failures[${i}].error`) }
    }),
    cancelled: bool(body.cancelled, 'cancelled')
  }
}
