/**
 * The peer's side of backup and restore (the HTTP routes are src/http/backup.ts):
 *
 * - begin(): the backup's start T (this peer's HLC, now) and the catalog's spaces;
 * - partition(): one partition's snapshot (snapshot.ts: a majority of its replicas merged) as
 *   backup-format lines, streamed bucket by bucket, ending with a trailer line;
 * - restore(): records that carry their versions, checked against the space's schema and written
 *   through replication's write path at a consistency level with those versions (last writer wins,
 *   so a re-run changes nothing and a newer row in the cluster is kept).
 */
import type { Hlc } from '../hlc/index.js'
import { hlcPhysicalMs } from '../hlc/index.js'
import type { Logger, PeerAddress, PeerId, Transport } from '../runtime/index.js'
import { VERSION } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { validateRow } from '../schema/index.js'
import type { PartitionStore, VersionedRecord } from '../storage/index.js'
import { CatalogError } from '../placement/index.js'
import { MAX_RECORDS_PER_MESSAGE, METHOD_BUCKET, METHOD_DIGEST, parseDigestAnswer, parseRecordsAnswer } from '../replication/index.js'
import { BackupBusyError, BackupRequestError } from './errors.js'
import { checkRecordLine, encodeRecordLine, type BackupBegin } from './format.js'
import { BucketTooLargeError, PartitionSnapshot, type ReplicaReader, type SnapshotDeps, type SnapshotOptions } from './snapshot.js'

export type Consistency = 'one' | 'quorum' | 'all'

/** Most records in one restore request: replication's own bound per message (wire.ts). */
export const MAX_RESTORE_RECORDS = 20_000

export interface BackupServiceOptions extends SnapshotOptions {
  /** Partition streams this peer serves at once; more are refused (BUSY). Default 8: each holds a few buckets of every replica. */
  maxStreams?: number
}

export interface BackupServiceDeps {
  catalog: { get(name: string): SpaceDef | undefined, list(): SpaceDef[] }
  hlc: { now(): Hlc }
  /** Whether this peer has heard from its cluster since it started (its view is not only itself). */
  isSynced(): boolean
  snapshot: SnapshotDeps
  /** Replicates already-versioned records at a consistency level (Replicator.writeRecords, rows normalized). */
  write(space: SpaceDef, records: VersionedRecord[], opts: { consistency: Consistency, timeoutMs?: number }): Promise<{ written: number, stale: number, staleIds: string[] }>
  log: Logger
}

/** A partition stream as the HTTP route serves it. */
export interface PartitionStream {
  /** Names of the replicas being merged. */
  replicas: string[]
  buckets: number
  /** The most records one replica held when the stream began (for progress). */
  estimate: number
  lines: AsyncIterable<string>
}

export interface RestoreOutcome {
  written: number
  /** Records the cluster already held newer (kept there: last writer wins). */
  stale: number
  errors: Array<{ row: number, field: string, message: string }>
}

/** This peer has not heard from its cluster since it started; its view would be itself alone. */
export class BackupNotSyncedError extends Error {
  override name = 'BackupNotSyncedError'
  readonly code = 'NOT_SYNCED'
  constructor () { super('this peer has not exchanged state with its cluster since it started; retry in a moment, or ask another peer') }
}

export class BackupService {
  private streams = 0
  private readonly maxStreams: number

  constructor (private readonly deps: BackupServiceDeps, private readonly opts: BackupServiceOptions = {}) {
    this.maxStreams = opts.maxStreams ?? 8
  }

  /** The start T of a backup and the spaces to back up (the catalog now). */
  begin (): BackupBegin {
    if (!this.deps.isSynced()) throw new BackupNotSyncedError()
    const startHlc = this.deps.hlc.now()
    return {
      startHlc,
      startTime: new Date(hlcPhysicalMs(startHlc)).toISOString(),
      version: VERSION,
      spaces: this.deps.catalog.list().map(s => ({
        name: s.name, uid: s.uid, schema: s.schema.map(c => ({ name: c.name, type: c.type, nullable: c.nullable })), partitions: s.partitions, replicas: s.replicas
      }))
    }
  }

  /**
   * Opens one partition's snapshot (a majority of its replicas must answer, else
   * BackupPartitionUnavailableError before anything is streamed) and streams it.
   */
  async partition (name: string, partition: number, signal?: AbortSignal): Promise<PartitionStream> {
    if (!this.deps.isSynced()) throw new BackupNotSyncedError()
    const space = this.require(name)
    if (!Number.isInteger(partition) || partition < 0 || partition >= space.partitions) {
      throw new BackupRequestError('BAD_PARTITION', `space '${name}' has partitions 0 to ${space.partitions - 1}; got ${partition}`)
    }
    if (this.streams >= this.maxStreams) throw new BackupBusyError(this.maxStreams)
    this.streams++
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.streams--
      if (this.streams < 0) throw new Error('backup stream count went negative')
    }
    // A client that goes away before the stream starts must not keep its slot.
    signal?.addEventListener('abort', release, { once: true })
    let snap: PartitionSnapshot
    try {
      snap = await PartitionSnapshot.open(this.deps.snapshot, space, partition, this.opts)
    } catch (err) {
      release()
      throw err
    }
    const names = (peers: readonly PeerId[]): string[] => peers.map(p => this.deps.snapshot.nameOf?.(p) ?? p)
    return { replicas: names(snap.replicas), buckets: snap.buckets, estimate: snap.estimate, lines: this.lines(snap, names, release, signal) }
  }

  private async * lines (snap: PartitionSnapshot, names: (p: readonly PeerId[]) => string[], release: () => void, signal?: AbortSignal): AsyncGenerator<string> {
    try {
      for await (const records of snap.read(signal)) {
        let chunk = ''
        for (const r of records) chunk += encodeRecordLine(r.id, r.version, r.deleted, r.row)
        yield chunk
      }
      if (signal?.aborted === true) return
      yield `${JSON.stringify({ end: true, records: snap.records, tombstones: snap.tombstones, replicas: names(snap.merged), buckets: snap.buckets })}\n`
    } catch (err) {
      const e = err as { code?: unknown, message?: unknown }
      this.deps.log.warn({ space: snap.space.name, partition: snap.partition, err: String(e.message) }, 'backup stream of a partition failed')
      // The trailer says why: the CLI refuses a stream without `end`, and can name the cause.
      yield `${JSON.stringify({ error: { code: typeof e.code === 'string' ? e.code : 'INTERNAL', message: String(e.message ?? err) } })}\n`
    } finally {
      release()
    }
  }

  /**
   * Writes records that carry their versions (backup lines, decoded) into a space: every line
   * checked first (one bad record and nothing is written, as POST /spaces/:name/records), then
   * replicated at the consistency level with their own versions.
   */
  async restore (name: string, inputs: readonly unknown[], opts: { consistency: Consistency, timeoutMs?: number }): Promise<RestoreOutcome> {
    const space = this.require(name)
    if (inputs.length > MAX_RESTORE_RECORDS) throw new BackupRequestError('TOO_MANY_RECORDS', `at most ${MAX_RESTORE_RECORDS} records per restore request; got ${inputs.length}`)
    const records: VersionedRecord[] = []
    const errors: RestoreOutcome['errors'] = []
    for (let i = 0; i < inputs.length && errors.length < 100; i++) {
      const line = checkRecordLine(inputs[i])
      if ('message' in line) { errors.push({ row: i, field: line.field, message: line.message }); continue }
      if (line.deleted) { records.push({ id: line.id, version: line.version, deleted: true, row: null }); continue }
      const v = validateRow(space.schema, line.row, i)
      if ('error' in v) { errors.push({ ...v.error, field: v.error.field === '' ? 'row' : `row.${v.error.field}` }); continue }
      if (v.row.id !== line.id) { errors.push({ row: i, field: 'row.id', message: `is '${String(v.row.id)}', the line's id is '${line.id}'` }); continue }
      records.push({ id: line.id, version: line.version, deleted: false, row: v.row })
    }
    if (errors.length > 0) return { written: 0, stale: 0, errors }
    if (records.length === 0) return { written: 0, stale: 0, errors: [] }
    const result = await this.deps.write(space, records, opts)
    return { written: result.written, stale: result.stale, errors: [] }
  }

  private require (name: string): SpaceDef {
    const space = this.deps.catalog.get(name)
    if (space === undefined) throw new CatalogError('UNKNOWN_SPACE', 'name', `no space named '${name}'`)
    return space
  }
}

/** What the real peer hands createBackupService: its layers, by the narrow slices used. */
export interface PeerBackupDeps {
  transport: Pick<Transport, 'localPeerId' | 'request'>
  placement: {
    locate(space: SpaceDef, partition: number): { owners: readonly PeerId[], readReplicas: readonly PeerId[], quorum: number }
    addressOf(peer: PeerId): PeerAddress | undefined
  }
  detector: { isReachable(peer: PeerId): boolean }
  catalog: BackupServiceDeps['catalog']
  hlc: BackupServiceDeps['hlc']
  /** This peer's replica for a read (Replicator.openForQuery: refuses one not held, stale or out of service). */
  openLocal(space: SpaceDef, partition: number): Promise<PartitionStore>
  /** Replicator.writeRecords with normalized rows. */
  write: BackupServiceDeps['write']
  isSynced(): boolean
  nameOf(peer: PeerId): string
  log: Logger
}

/**
 * The backup service of a real peer: replicas read through this peer's own store or over RPC
 * with the requests anti-entropy uses (repl.digest for a count, repl.bucket for records), whose
 * answers are validated as anti-entropy validates them.
 */
export function createBackupService (deps: PeerBackupDeps, opts: BackupServiceOptions = {}): BackupService {
  const { transport, placement } = deps
  const self = transport.localPeerId
  const addr = (peer: PeerId): PeerAddress => placement.addressOf(peer) ?? { id: peer, addrs: [] }
  const reader: ReplicaReader = {
    count: async (peer, space, partition, timeoutMs) => {
      if (peer === self) return (await (await deps.openLocal(space, partition)).digest(1)).records
      return parseDigestAnswer(await transport.request(addr(peer), METHOD_DIGEST, { space, partition, buckets: 1 }, { timeoutMs }), 1).records
    },
    bucket: async (peer, space, partition, index, buckets, timeoutMs) => {
      if (peer === self) {
        const records = await (await deps.openLocal(space, partition)).bucket(index, buckets)
        if (records.length > MAX_RECORDS_PER_MESSAGE) throw new BucketTooLargeError(records.length, MAX_RECORDS_PER_MESSAGE)
        return records
      }
      const answer = await transport.request(addr(peer), METHOD_BUCKET, { space, partition, index, buckets }, { timeoutMs })
      // More than a replica sends at once (the partition grew since the buckets were sized): split, not fail.
      const n = (answer as { records?: unknown } | null)?.records
      if (Array.isArray(n) && n.length > MAX_RECORDS_PER_MESSAGE) throw new BucketTooLargeError(n.length, MAX_RECORDS_PER_MESSAGE)
      return parseRecordsAnswer(answer, space, 'repl.bucket answer')
    }
  }
  return new BackupService({
    catalog: deps.catalog,
    hlc: deps.hlc,
    isSynced: deps.isSynced,
    snapshot: { locate: (s, p) => placement.locate(s, p), isReachable: p => deps.detector.isReachable(p), reader, nameOf: deps.nameOf },
    write: deps.write,
    log: deps.log
  }, opts)
}
