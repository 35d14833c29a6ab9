/**
 * The backup format (version 1), shared by the peer that serves a backup, the CLI that writes
 * and restores it, and the tests:
 *
 * ```
 * DIR/manifest.json            written last: what the backup holds, with a checksum per file
 * DIR/<space>/<partition>.ndjson   one record a line, tombstones included:
 *     {"id":"a","v":1745000000000123,"row":{"id":"a","amount":1.5}}
 *     {"id":"b","v":1745000000000456,"deleted":true}
 * ```
 *
 * `v` is the record's version (HLC: physical ms × 1024 + logical), `row` the whole row as the HTTP
 * API writes JSON (int64 beyond ±2^53 as a string, timestamp as ms, date as days since the epoch).
 * A partition's stream from a peer is the same lines followed by one trailer line, `{"end":true,
 * ...}` (or `{"error":{code, message}}` when it failed part way), which the CLI checks and does not
 * write to the file: a stream cut short can never pass for a whole partition.
 */
import { isHlc } from '../hlc/index.js'
import type { Hlc } from '../hlc/index.js'
import { MAX_PARTITIONS, MAX_REPLICAS } from '../placement/index.js'
import { checkSchema, rowToJson, SPACE_NAME_RE } from '../schema/index.js'
import type { ColumnDef, Row } from '../schema/index.js'
import { BackupCorruptError } from './errors.js'

export const BACKUP_FORMAT = 'shoal-backup'
/** Bumped when a reader of the previous version could misread a backup. */
export const BACKUP_FORMAT_VERSION = 1
export const MANIFEST_FILE = 'manifest.json'

/** One partition's file in a backup. */
export interface ManifestFile {
  partition: number
  /** Relative to the backup directory: always `<space>/<partition>.ndjson`. */
  file: string
  /** Live records (rows) and tombstones in the file; `records` counts both. */
  records: number
  tombstones: number
  bytes: number
  /** Hex SHA-256 of the file's bytes. */
  sha256: string
  /** The replicas whose copies were merged into it (names), at least a majority of the partition's. */
  replicas: string[]
}

export interface ManifestSpace {
  name: string
  /** The source space's uid (a restore creates a new space with a new uid). */
  uid: string
  schema: ColumnDef[]
  partitions: number
  replicas: number
  files: ManifestFile[]
}

export interface MissingPartition { space: string, partition: number, reason: string }

export interface BackupManifest {
  format: typeof BACKUP_FORMAT
  formatVersion: number
  /** The Shoal build that wrote it (`shoal --version`). */
  shoalVersion: string
  /** The backup's start, T: every partition was read at or after this HLC time. */
  startHlc: Hlc
  /** T's physical part as ISO 8601, for people. */
  startTime: string
  /** Wall-clock time (of the machine running the CLI) when the backup finished. */
  finishedAt: string
  /** The peer that coordinated it. */
  peer: string
  /** True when every partition of every space is in it; false with --allow-partial and `missing`. */
  complete: boolean
  spaces: ManifestSpace[]
  missing: MissingPartition[]
}

/** The file of one partition, relative to the backup directory. */
export function partitionFile (space: string, partition: number): string {
  return `${space}/${partition}.ndjson`
}

/** What `GET /backup` answers: the backup's start T and the catalog at that moment. */
export interface BackupBegin {
  startHlc: Hlc
  startTime: string
  version: string
  spaces: Array<{ name: string, uid: string, schema: ColumnDef[], partitions: number, replicas: number }>
}

/** The trailer of a partition stream. */
export interface StreamEnd {
  end: true
  records: number
  tombstones: number
  /** Names of the replicas merged (a majority at least). */
  replicas: string[]
  buckets: number
}

// ----------------------------------------------------------------------------- record lines

/** One record as a line of a backup file (with its newline). */
export function encodeRecordLine (id: string, version: Hlc, deleted: boolean, row: Row | null): string {
  return deleted || row === null
    ? `${JSON.stringify({ id, v: version, deleted: true })}\n`
    : `${JSON.stringify({ id, v: version, row: rowToJson(row) })}\n`
}

/** A record line decoded but not yet checked against a schema (the peer that writes it does that). */
export interface RecordLine { id: string, version: Hlc, deleted: boolean, row: Record<string, unknown> | null }

const MAX_ID_CHARS = 512

/**
 * Checks the shape of a decoded record line: `{id, v, row}` or `{id, v, deleted: true}`, no other
 * key. Returns the record, or a message saying what is wrong (with `field`).
 */
export function checkRecordLine (value: unknown): RecordLine | { field: string, message: string } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { field: '', message: 'a record line must be a JSON object {id, v, row} or {id, v, deleted: true}' }
  const o = value as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (key !== 'id' && key !== 'v' && key !== 'row' && key !== 'deleted') return { field: key, message: 'unknown field; expected id, v, row, deleted' }
  }
  const { id, v, row, deleted } = o
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS) return { field: 'id', message: `must be a string of 1 to ${MAX_ID_CHARS} characters` }
  if (!isHlc(v)) return { field: 'v', message: 'must be a version: a non-negative safe integer (HLC)' }
  if (deleted !== undefined && deleted !== true && deleted !== false) return { field: 'deleted', message: 'must be true or false' }
  if (deleted === true) {
    if (row !== undefined && row !== null) return { field: 'row', message: 'a tombstone (deleted: true) has no row' }
    return { id, version: v, deleted: true, row: null }
  }
  if (row === null || typeof row !== 'object' || Array.isArray(row)) return { field: 'row', message: 'must be an object (the record\'s columns)' }
  return { id, version: v, deleted: false, row: row as Record<string, unknown> }
}

// ----------------------------------------------------------------------------- schemas

/**
 * How two schemas differ, column by column (order aside: records carry column names), or
 * undefined when they are the same. `a` is the backup's, `b` the cluster's.
 */
export function schemaDifference (a: readonly ColumnDef[], b: readonly ColumnDef[]): string | undefined {
  const inB = new Map(b.map(c => [c.name, c]))
  const inA = new Map(a.map(c => [c.name, c]))
  const out: string[] = []
  for (const col of a) {
    const other = inB.get(col.name)
    if (other === undefined) out.push(`column '${col.name}' (${col.type}) is in the backup, not in the cluster`)
    else if (other.type !== col.type) out.push(`column '${col.name}' is ${col.type} in the backup, ${other.type} in the cluster`)
    else if (other.nullable !== col.nullable) out.push(`column '${col.name}' is ${col.nullable ? 'nullable' : 'not null'} in the backup, ${other.nullable ? 'nullable' : 'not null'} in the cluster`)
  }
  for (const col of b) if (!inA.has(col.name)) out.push(`column '${col.name}' (${col.type}) is in the cluster, not in the backup`)
  return out.length === 0 ? undefined : out.join('; ')
}

// ----------------------------------------------------------------------------- manifest

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function isCount (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/**
 * Parses and checks manifest.json's text: every field present with its type, every space's
 * schema valid, every file where the format puts it (so a manifest cannot point outside the
 * backup directory), each partition listed once. Throws BackupCorruptError naming the manifest
 * and the field.
 */
export function parseManifest (text: string): BackupManifest {
  const fail = (reason: string): never => { throw new BackupCorruptError(MANIFEST_FILE, reason) }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    return fail(`is not valid JSON (${(err as Error).message}): damaged, or not a Shoal backup`)
  }
  if (!isObject(v) || v.format !== BACKUP_FORMAT) return fail(`is not a Shoal backup manifest (no "format": "${BACKUP_FORMAT}")`)
  if (v.formatVersion !== BACKUP_FORMAT_VERSION) {
    return fail(`has format version ${String(v.formatVersion)}; this build reads version ${BACKUP_FORMAT_VERSION}${typeof v.formatVersion === 'number' && v.formatVersion > BACKUP_FORMAT_VERSION ? ' (written by a newer Shoal: restore with that version)' : ''}`)
  }
  if (typeof v.shoalVersion !== 'string') fail('has no shoalVersion')
  if (!isHlc(v.startHlc)) fail('has no startHlc (an HLC version)')
  for (const key of ['startTime', 'finishedAt', 'peer'] as const) if (typeof v[key] !== 'string') fail(`has no ${key}`)
  if (typeof v.complete !== 'boolean') fail('has no complete (true or false)')
  if (!Array.isArray(v.spaces)) fail('has no spaces array')
  if (!Array.isArray(v.missing)) fail('has no missing array')
  const seen = new Set<string>()
  const spaces = (v.spaces as unknown[]).map((s, i) => parseSpace(s, `spaces[${i}]`, fail, seen))
  const missing = (v.missing as unknown[]).map((m, i) => {
    if (!isObject(m) || typeof m.space !== 'string' || !isCount(m.partition) || typeof m.reason !== 'string') return fail(`missing[${i}] must be {space, partition, reason}`)
    return { space: m.space, partition: m.partition, reason: m.reason }
  })
  if (v.complete === true && missing.length > 0) fail('says complete but lists missing partitions')
  // Every partition of every space is either in a file or listed missing: none forgotten.
  for (const s of spaces) {
    const gone = new Set(missing.filter(m => m.space === s.name).map(m => m.partition))
    const files = new Set(s.files.map(f => f.partition))
    for (let p = 0; p < s.partitions; p++) {
      const held = files.has(p)
      if (held === gone.has(p)) fail(held ? `lists partition ${p} of '${s.name}' both as a file and as missing` : `has neither a file nor a missing entry for partition ${p} of '${s.name}'`)
    }
  }
  return {
    format: BACKUP_FORMAT,
    formatVersion: BACKUP_FORMAT_VERSION,
    shoalVersion: v.shoalVersion as string,
    startHlc: v.startHlc as number,
    startTime: v.startTime as string,
    finishedAt: v.finishedAt as string,
    peer: v.peer as string,
    complete: v.complete as boolean,
    spaces,
    missing
  }
}

function parseSpace (s: unknown, at: string, fail: (reason: string) => never, seen: Set<string>): ManifestSpace {
  if (!isObject(s)) return fail(`${at} must be an object`)
  const { name, uid, schema, partitions, replicas, files } = s
  if (typeof name !== 'string' || !SPACE_NAME_RE.test(name)) return fail(`${at}.name is not a space name`)
  if (seen.has(name)) fail(`lists space '${name}' twice`)
  seen.add(name)
  if (typeof uid !== 'string' || uid.length === 0) fail(`${at}.uid must be a string`)
  let columns: ColumnDef[]
  try {
    columns = checkSchema(schema)
  } catch (err) {
    return fail(`${at}.schema: ${(err as Error).message}`)
  }
  if (!isCount(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) fail(`${at}.partitions must be an integer in 1..${MAX_PARTITIONS}`)
  if (!isCount(replicas) || replicas < 1 || replicas > MAX_REPLICAS) fail(`${at}.replicas must be an integer in 1..${MAX_REPLICAS}`)
  if (!Array.isArray(files)) return fail(`${at}.files must be an array`)
  const partitionsSeen = new Set<number>()
  const parsed = files.map((f: unknown, j: number): ManifestFile => {
    const fat = `${at}.files[${j}]`
    if (!isObject(f)) return fail(`${fat} must be an object`)
    const { partition, file, records, tombstones, bytes, sha256, replicas: from } = f
    if (!isCount(partition) || partition >= (partitions as number)) return fail(`${fat}.partition must be an integer in 0..${(partitions as number) - 1}`)
    if (partitionsSeen.has(partition)) fail(`lists partition ${partition} of '${name}' twice`)
    partitionsSeen.add(partition)
    // The only place a file may be: a manifest must not make a restore read outside its directory.
    if (file !== partitionFile(name, partition)) fail(`${fat}.file must be '${partitionFile(name, partition)}'`)
    if (!isCount(records) || !isCount(tombstones) || tombstones > records) fail(`${fat}.records and .tombstones must be counts (tombstones ≤ records)`)
    if (!isCount(bytes)) fail(`${fat}.bytes must be a count`)
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) fail(`${fat}.sha256 must be 64 hex digits`)
    if (!Array.isArray(from) || !from.every(x => typeof x === 'string')) fail(`${fat}.replicas must be an array of names`)
    return { partition, file: file as string, records: records as number, tombstones: tombstones as number, bytes: bytes as number, sha256: sha256 as string, replicas: from as string[] }
  })
  return { name, uid: uid as string, schema: columns, partitions: partitions as number, replicas: replicas as number, files: parsed }
}
