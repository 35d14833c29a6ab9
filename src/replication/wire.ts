/**
 * Replication RPC methods, their message shapes, and the validation every decoded request and
 * answer goes through (bodies are untrusted input).
 *
 * ```
 * repl.write   { space: SpaceDef, partition, records: VersionedRecord[], hlc }  → { applied, stale }
 *              or { space, partition, packed, hlc }: packed = msgpack bytes of [id, version, deleted,
 *              values | null, ...] flat, 4 entries per record, values[i] the value of space.schema[i]
 *              (no column names; storage's PackedRecords, which a replica logs as they came)
 * repl.read    { space, partition, ids: string[] }                            → { records: (VersionedRecord | null)[] }
 * repl.digest  { space, partition, buckets, repair? }                         → { digest: PartitionDigest, repair? }
 *              repair: { purgeHorizon, syncedWithYou }, each side's RepairInfo (repair.ts); a
 *              replica stale against the other's refuses (STALE_REPLICA) or stops its sync
 * repl.bucket  { space, partition, index, buckets }                           → { records: VersionedRecord[] }
 * repl.scan    (stream) { space, partition, batchRecords }                    → items { records: VersionedRecord[] }
 * ```
 */
import { isHlc } from '../hlc/index.js'
import type { Hlc } from '../hlc/index.js'
import { checkSchema, MAX_ID_LENGTH, validateRow, validateRowValues } from '../schema/index.js'
import type { SpaceDef } from '../schema/index.js'
import { packRecords as packStored, unpackFlat } from '../storage/index.js'
import type { PackedRecords, PartitionDigest, VersionedRecord } from '../storage/index.js'
import { ReplicaRequestError } from './errors.js'
import type { RepairInfo } from './repair.js'

export const METHOD_WRITE = 'repl.write'
export const METHOD_READ = 'repl.read'
export const METHOD_DIGEST = 'repl.digest'
export const METHOD_BUCKET = 'repl.bucket'
export const METHOD_SCAN = 'repl.scan'

/** Hard limits of what a replica accepts, whatever the sender's options. */
export const MAX_RECORDS_PER_MESSAGE = 20_000
export const MAX_IDS_PER_READ = 10_000
export const MAX_DIGEST_BUCKETS = 65_536
export const MAX_PARTITIONS = 65_536

export interface WriteRequest { space: SpaceDef, partition: number, records: VersionedRecord[], hlc: Hlc, packed?: PackedRecords }
/** staleIds: the ids of the stale records that lost to a newer version (absent from peers that predate it). */
export interface WriteAnswer { applied: number, stale: number, staleIds?: string[] }
export interface ReadRequest { space: SpaceDef, partition: number, ids: string[] }
export interface ReadAnswer { records: Array<VersionedRecord | null> }
export interface DigestRequest { space: SpaceDef, partition: number, buckets: number, repair?: RepairInfo }
export interface DigestAnswer { digest: PartitionDigest, repair?: RepairInfo }
export interface BucketRequest { space: SpaceDef, partition: number, index: number, buckets: number }
export interface RecordsAnswer { records: VersionedRecord[] }
export interface ScanRequest { space: SpaceDef, partition: number, batchRecords: number }

function bad (msg: string): ReplicaRequestError { return new ReplicaRequestError('BAD_REQUEST', msg) }

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function isInt (v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
}

/**
 * Spaces parsed recently, by uid: every request carries its space, and running checkSchema on it
 * each time is waste when it is the same definition as the last one. Bounded.
 */
const parsedSpaces = new Map<string, SpaceDef>()
const MAX_PARSED_SPACES = 1024

/** Whether a decoded schema is exactly `columns` (already normalized: what checkSchema returns for it). */
function sameSchema (input: unknown, columns: SpaceDef['schema']): boolean {
  if (!Array.isArray(input) || input.length !== columns.length) return false
  for (let i = 0; i < columns.length; i++) {
    const c = input[i] as Record<string, unknown> | null
    const col = columns[i]!
    if (!isObject(c) || c.name !== col.name || c.type !== col.type || c.nullable !== col.nullable) return false
    let keys = 0
    for (const k in c) if (Object.prototype.hasOwnProperty.call(c, k)) keys++
    if (keys !== 3) return false
  }
  return true
}

/**
 * Validates a SpaceDef sent by a coordinator (its schema through checkSchema, once per version of
 * the space: an identical definition seen before answers the same parsed object).
 */
export function parseSpace (v: unknown): SpaceDef {
  if (!isObject(v)) throw bad('space must be an object')
  const { name, uid, schema, partitions, replicas } = v
  if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw bad('space.name must be a string of 1 to 256 characters')
  if (typeof uid !== 'string' || uid.length === 0 || uid.length > 512) throw bad('space.uid must be a string of 1 to 512 characters')
  if (!isInt(partitions, 1, MAX_PARTITIONS)) throw bad(`space.partitions must be an integer in 1..${MAX_PARTITIONS}`)
  if (!isInt(replicas, 1, 1024)) throw bad('space.replicas must be an integer in 1..1024')
  const known = parsedSpaces.get(uid)
  if (known !== undefined && known.name === name && known.partitions === partitions && known.replicas === replicas && sameSchema(schema, known.schema)) return known
  let columns
  try {
    columns = checkSchema(schema)
  } catch (err) {
    throw bad(`space.schema: ${(err as Error).message}`)
  }
  const parsed = { name, uid, schema: columns, partitions, replicas }
  if (parsedSpaces.size >= MAX_PARSED_SPACES && !parsedSpaces.has(uid)) parsedSpaces.clear()
  parsedSpaces.set(uid, parsed)
  return parsed
}

function parsePartition (v: unknown, space: SpaceDef): number {
  if (!isInt(v, 0, space.partitions - 1)) throw bad(`partition must be an integer in 0..${space.partitions - 1}`)
  return v
}

/**
 * Checks one record's shape and its row against the schema; returns it with the row normalized.
 * `where` names it in the error.
 */
export function parseRecord (v: unknown, space: SpaceDef, where: string): VersionedRecord {
  if (!isObject(v)) throw bad(`${where} must be an object {id, version, deleted, row}`)
  const { id, version, deleted, row } = v
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) throw bad(`${where}.id must be a string of 1 to ${MAX_ID_LENGTH} characters`)
  if (!isHlc(version)) throw bad(`${where}.version must be a non-negative safe integer (HLC)`)
  if (typeof deleted !== 'boolean') throw bad(`${where}.deleted must be a boolean`)
  if (deleted) {
    if (row !== null) throw bad(`${where}.row must be null for a tombstone`)
    return { id, version, deleted, row: null }
  }
  if (!isObject(row)) throw bad(`${where}.row must be an object`)
  const r = validateRow(space.schema, row, 0)
  if ('error' in r) throw bad(`${where}.row${r.error.field !== '' ? `.${r.error.field}` : ''}: ${r.error.message}`)
  if (r.row.id !== id) throw bad(`${where}.row.id does not match ${where}.id`)
  return { id, version, deleted, row: r.row }
}

export function parseRecords (v: unknown, space: SpaceDef, where: string, max = MAX_RECORDS_PER_MESSAGE): VersionedRecord[] {
  if (!Array.isArray(v)) throw bad(`${where} must be an array`)
  if (v.length > max) throw bad(`${where} has ${v.length} records; at most ${max}`)
  return v.map((r, i) => parseRecord(r, space, `${where}[${i}]`))
}

/** A space's column names, one array per schema (storage caches a frame header per array). */
const columnNames = new WeakMap<SpaceDef['schema'], readonly string[]>()
export function namesOf (space: SpaceDef): readonly string[] {
  let names = columnNames.get(space.schema)
  if (names === undefined) {
    names = space.schema.map(c => c.name)
    columnNames.set(space.schema, names)
  }
  return names
}

/**
 * The packed form of records whose rows are normalized against `space.schema` (every column
 * present, no other key): what a coordinator sends in repl.write.
 */
export function packRecords (space: SpaceDef, records: readonly VersionedRecord[]): PackedRecords {
  return packStored(namesOf(space), records)
}

function parsePacked (v: unknown[], space: SpaceDef): VersionedRecord[] {
  if (v.length % 4 !== 0) throw bad('packed must hold 4 entries per record')
  if (v.length > MAX_RECORDS_PER_MESSAGE * 4) throw bad(`packed has ${v.length / 4} records; at most ${MAX_RECORDS_PER_MESSAGE}`)
  const out = new Array<VersionedRecord>(v.length / 4)
  for (let k = 0, i = 0; k < v.length; k += 4, i++) {
    const id = v[k]
    const version = v[k + 1]
    const deleted = v[k + 2]
    const values = v[k + 3]
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) throw bad(`packed[${i}].id must be a string of 1 to ${MAX_ID_LENGTH} characters`)
    if (!isHlc(version)) throw bad(`packed[${i}].version must be a non-negative safe integer (HLC)`)
    if (typeof deleted !== 'boolean') throw bad(`packed[${i}].deleted must be a boolean`)
    if (deleted) {
      if (values !== null) throw bad(`packed[${i}].values must be null for a tombstone`)
      out[i] = { id, version, deleted, row: null }
      continue
    }
    const r = validateRowValues(space.schema, values, 0)
    if ('error' in r) throw bad(`packed[${i}].row${r.error.field !== '' ? `.${r.error.field}` : ''}: ${r.error.message}`)
    if (r.row.id !== id) throw bad(`packed[${i}].row.id does not match packed[${i}].id`)
    out[i] = { id, version, deleted, row: r.row }
  }
  return out
}

export function parseWriteRequest (body: unknown): WriteRequest {
  if (!isObject(body)) throw bad('body must be an object')
  const space = parseSpace(body.space)
  const partition = parsePartition(body.partition, space)
  if (!isHlc(body.hlc)) throw bad('hlc must be a non-negative safe integer')
  if (body.packed instanceof Uint8Array && body.records === undefined) {
    let flat: unknown
    try {
      flat = unpackFlat(body.packed)
    } catch (err) {
      throw bad(`packed is not msgpack: ${(err as Error).message}`)
    }
    if (!Array.isArray(flat)) throw bad('packed must encode an array')
    return { space, partition, records: parsePacked(flat, space), hlc: body.hlc, packed: { names: namesOf(space), bytes: body.packed } }
  }
  return { space, partition, records: parseRecords(body.records, space, 'records'), hlc: body.hlc }
}

export function parseReadRequest (body: unknown): ReadRequest {
  if (!isObject(body)) throw bad('body must be an object')
  const space = parseSpace(body.space)
  const partition = parsePartition(body.partition, space)
  const ids = body.ids
  if (!Array.isArray(ids) || ids.length > MAX_IDS_PER_READ) throw bad(`ids must be an array of at most ${MAX_IDS_PER_READ} strings`)
  for (const id of ids) {
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) throw bad(`each id must be a string of 1 to ${MAX_ID_LENGTH} characters`)
  }
  return { space, partition, ids: ids as string[] }
}

export function parseDigestRequest (body: unknown): DigestRequest {
  if (!isObject(body)) throw bad('body must be an object')
  const space = parseSpace(body.space)
  const partition = parsePartition(body.partition, space)
  if (!isInt(body.buckets, 1, MAX_DIGEST_BUCKETS)) throw bad(`buckets must be an integer in 1..${MAX_DIGEST_BUCKETS}`)
  if (body.repair === undefined) return { space, partition, buckets: body.buckets }
  const repair = parseRepairInfo(body.repair)
  if (repair === undefined) throw bad('repair must be { purgeHorizon, syncedWithYou }, HLC timestamps')
  return { space, partition, buckets: body.buckets, repair }
}

/** A RepairInfo as sent (either way of repl.digest), or undefined when `v` is not one. */
export function parseRepairInfo (v: unknown): RepairInfo | undefined {
  if (!isObject(v) || !isHlc(v.purgeHorizon) || !isHlc(v.syncedWithYou)) return undefined
  return { purgeHorizon: v.purgeHorizon, syncedWithYou: v.syncedWithYou }
}

/** The repair info of a repl.digest answer; undefined from a peer that sends none (or a malformed one). */
export function parseDigestAnswerRepair (v: unknown): RepairInfo | undefined {
  return isObject(v) ? parseRepairInfo(v.repair) : undefined
}

export function parseBucketRequest (body: unknown): BucketRequest {
  const { space, partition, buckets } = parseDigestRequest(body)
  const index = (body as { index?: unknown }).index
  if (!isInt(index, 0, buckets - 1)) throw bad(`index must be an integer in 0..${buckets - 1}`)
  return { space, partition, index, buckets }
}

export function parseScanRequest (body: unknown): ScanRequest {
  if (!isObject(body)) throw bad('body must be an object')
  const space = parseSpace(body.space)
  const partition = parsePartition(body.partition, space)
  if (!isInt(body.batchRecords, 1, MAX_RECORDS_PER_MESSAGE)) throw bad(`batchRecords must be an integer in 1..${MAX_RECORDS_PER_MESSAGE}`)
  return { space, partition, batchRecords: body.batchRecords }
}

// ----------------------------------------------------------------------------- answers

export function parseWriteAnswer (v: unknown): WriteAnswer {
  if (!isObject(v) || !isInt(v.applied, 0, Number.MAX_SAFE_INTEGER) || !isInt(v.stale, 0, Number.MAX_SAFE_INTEGER)) throw new Error('malformed repl.write answer')
  if (v.staleIds === undefined) return { applied: v.applied, stale: v.stale }
  if (!Array.isArray(v.staleIds) || v.staleIds.length > v.stale || !v.staleIds.every(id => typeof id === 'string')) throw new Error('malformed repl.write answer')
  return { applied: v.applied, stale: v.stale, staleIds: v.staleIds as string[] }
}

export function parseReadAnswer (v: unknown, space: SpaceDef, ids: readonly string[]): Array<VersionedRecord | undefined> {
  if (!isObject(v) || !Array.isArray(v.records) || v.records.length !== ids.length) throw new Error('malformed repl.read answer')
  return v.records.map((r: unknown, i: number) => {
    if (r === null || r === undefined) return undefined
    const rec = parseRecord(r, space, `records[${i}]`)
    if (rec.id !== ids[i]) throw new Error('repl.read answer out of order')
    return rec
  })
}

export function parseDigestAnswer (v: unknown, buckets: number): PartitionDigest {
  if (!isObject(v) || !isObject(v.digest)) throw new Error('malformed repl.digest answer')
  const d = v.digest
  if (d.buckets !== buckets || !Array.isArray(d.hashes) || d.hashes.length !== buckets) throw new Error('repl.digest answer has the wrong bucket count')
  for (const h of d.hashes) if (typeof h !== 'string' || h.length > 128) throw new Error('repl.digest answer has a malformed hash')
  if (typeof d.root !== 'string' || !isInt(d.records, 0, Number.MAX_SAFE_INTEGER)) throw new Error('malformed repl.digest answer')
  return { buckets, hashes: d.hashes as string[], root: d.root, records: d.records }
}

export function parseRecordsAnswer (v: unknown, space: SpaceDef, what: string): VersionedRecord[] {
  if (!isObject(v)) throw new Error(`malformed ${what}`)
  try {
    return parseRecords(v.records, space, 'records')
  } catch (err) {
    throw new Error(`malformed ${what}: ${(err as Error).message}`)
  }
}

// ----------------------------------------------------------------------------- sizes

/** A rough upper estimate of a value's msgpack size, for batching. */
export function estimateBytes (v: unknown, depth = 0): number {
  switch (typeof v) {
    case 'string': return 5 + v.length * 3
    case 'number': case 'bigint': return 9
    case 'boolean': return 1
    case 'object': {
      if (v === null) return 1
      if (depth > 64) return 0
      if (v instanceof Uint8Array) return 5 + v.length
      if (Array.isArray(v)) {
        let n = 5
        // Numbers dominate vectors: no need to walk them one by one.
        if (v.length > 0 && typeof v[0] === 'number') return n + 9 * v.length
        for (const x of v) n += estimateBytes(x, depth + 1)
        return n
      }
      let n = 5
      for (const key in v) n += 5 + key.length * 3 + estimateBytes((v as Record<string, unknown>)[key], depth + 1)
      return n
    }
    default: return 1
  }
}

export function recordBytes (r: VersionedRecord): number {
  return 32 + r.id.length * 3 + (r.row === null ? 1 : estimateBytes(r.row))
}

/** Splits records into batches of at most maxRecords and (estimated) maxBytes each; never empty batches. */
export function chunkRecords (records: readonly VersionedRecord[], maxRecords: number, maxBytes: number): VersionedRecord[][] {
  const out: VersionedRecord[][] = []
  let cur: VersionedRecord[] = []
  let bytes = 0
  for (const r of records) {
    const b = recordBytes(r)
    if (cur.length > 0 && (cur.length >= maxRecords || bytes + b > maxBytes)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(r)
    bytes += b
  }
  if (cur.length > 0) out.push(cur)
  return out
}

export function maxVersion (records: readonly VersionedRecord[]): Hlc {
  let m = 0
  for (const r of records) if (r.version > m) m = r.version
  return m
}
