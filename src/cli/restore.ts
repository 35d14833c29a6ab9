/**
 * `shoal restore --from DIR`: loads a backup into a cluster through one peer. Before it writes
 * anything it checks every file against the manifest (present, its size, its SHA-256: a file
 * that fails refuses the restore, named), and every space against the cluster (missing ones are
 * created with the backup's definition; one that exists with another schema refuses the restore,
 * named with the difference). Then it sends each file's records, with their versions, to POST
 * /restore/spaces/:name/records in bounded batches at the consistency level asked (QUORUM by
 * default), a few in flight. Versions are kept, so running it again changes nothing, and a row
 * written in the cluster since the backup (a newer version) is kept. Progress on stderr.
 */
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import {
  BackupCorruptError, BackupSchemaConflictError, planRestore, readManifest, verifyBackup,
  type ClusterSpace, type ManifestFile, type ManifestSpace
} from '../backup/index.js'
import { mib, Progress } from './backup.js'
import { CliError } from './errors.js'
import { ShoalError, ShoalUnavailableError, type ShoalClient } from '../client/index.js'
import { errorText, withClient } from './client.js'
import type { ConsistencyFlag } from './records.js'

export interface RestoreOptions {
  peer: string
  from: string
  consistency: ConsistencyFlag
  /** Records per request. Default 5,000 (a request carries at most 20,000). */
  batchRecords: number
  /** Requests in flight. Default 4, as `shoal import`. */
  concurrency: number
  /** Restore a backup that lists missing partitions (restores what it holds). */
  allowPartial: boolean
}

/** Largest request body the CLI sends: well under the peer's 64 MiB. */
const MAX_BATCH_BYTES = 8 * 1024 * 1024
/** A batch the cluster could not take (503, unreachable) is sent again this many times, 1, 2, 4 s apart: it is idempotent. */
const RETRIES = 3

export async function runRestore (opts: RestoreOptions): Promise<void> {
  await withClient(opts.peer, async client => { await restore(client, opts) })
}

async function restore (client: ShoalClient, opts: RestoreOptions): Promise<void> {
  const manifest = await refuseCorrupt(async () => await readManifest(opts.from))
  if (!manifest.complete && !opts.allowPartial) {
    throw new CliError(`restore refused: the backup in ${opts.from} is partial, ${manifest.missing.length} partition(s) missing (${manifest.missing.slice(0, 5).map(m => `${m.space}/${m.partition}`).join(', ')}); pass --allow-partial to restore what it holds`)
  }
  const fileCount = manifest.spaces.reduce((n, s) => n + s.files.length, 0)
  const verify = new Progress('verifying', fileCount, 'files')
  await refuseCorrupt(async () => await verifyBackup(opts.from, { manifest, onBytes: n => { verify.add(0, 0, n) }, onFile: f => { verify.add(f.records, f.tombstones, 0); verify.partitionDone() } }))
  verify.finish()

  // The client types a column's type as any string; the server's are ColumnTypes.
  const cluster = await client.listSpaces() as ClusterSpace[]
  let plan
  try {
    plan = planRestore(manifest.spaces, cluster)
  } catch (err) {
    if (err instanceof BackupSchemaConflictError) throw new CliError(`restore refused, nothing was written:\n${err.message}\n(drop or rename that space, or restore into another cluster)`)
    throw err
  }
  for (const s of plan.create) await createSpace(client, s)
  for (const e of plan.existing) if (e.note !== undefined) process.stderr.write(`space '${e.space.name}' exists with the same schema; restoring into it (${e.note})\n`)
  process.stderr.write(`restoring ${manifest.spaces.length} space(s) (${plan.create.length} created) from ${opts.from} (backup of ${manifest.startTime}) into ${opts.peer} at ${opts.consistency.toUpperCase()}\n`)

  const progress = new Progress('restore', fileCount, 'files')
  let stale = 0
  const inFlight = new Set<Promise<void>>()
  let failure: Error | undefined
  const send = (space: string, lines: string[], bytes: number, records: number, tombstones: number): void => {
    const p = (async () => {
      try {
        const answer = await postBatch(client, opts, space, lines)
        stale += answer.stale
        progress.add(records, tombstones, bytes)
      } catch (err) {
        failure ??= err as Error
      }
    })()
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
  }
  for (const space of manifest.spaces) {
    for (const entry of space.files) {
      if (failure !== undefined) break
      await restoreFile(opts, space, entry, send, () => inFlight.size, async () => { await Promise.race(inFlight) }, () => failure)
      progress.partitionDone()
    }
  }
  await Promise.all(inFlight)
  progress.finish()
  if (failure !== undefined) {
    throw new CliError(`restore stopped: ${failure.message}\nwhat was sent before is written; running the same restore again is safe (records keep their versions)`)
  }
  const s = progress.elapsedS()
  process.stderr.write(`restored ${progress.records.toLocaleString('en-US')} records (${progress.tombstones.toLocaleString('en-US')} tombstones), ${mib(progress.bytes)}, into ${manifest.spaces.length} space(s) in ${s.toFixed(1)} s` +
    `${stale > 0 ? `; ${stale.toLocaleString('en-US')} of them were older than what the cluster holds and left it as it was` : ''}\n`)
}

/** Runs `fn`; a corrupt backup becomes the one-line refusal naming the file. */
async function refuseCorrupt<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof BackupCorruptError) throw new CliError(`restore refused, nothing was written: ${err.message}`)
    throw err
  }
}

async function createSpace (client: ShoalClient, s: ManifestSpace): Promise<void> {
  await client.createSpace({ name: s.name, schema: s.schema, partitions: s.partitions, replicas: s.replicas })
  process.stderr.write(`created space '${s.name}' (${s.partitions} partitions, replicas ${s.replicas})\n`)
}

/**
 * Reads one file line by line into batches (by records and bytes) handed to `send`, waiting while
 * `concurrency` are in flight; checks the bytes read against the manifest's SHA-256 once more
 * (the file changed since it was verified: the records sent are still right, the rest is refused).
 */
async function restoreFile (opts: RestoreOptions, space: ManifestSpace, entry: ManifestFile,
  send: (space: string, lines: string[], bytes: number, records: number, tombstones: number) => void,
  inFlight: () => number, waitOne: () => Promise<void>, failed: () => Error | undefined): Promise<void> {
  const hash = createHash('sha256')
  const stream = createReadStream(join(opts.from, entry.file))
  stream.on('data', chunk => { hash.update(chunk as Buffer) })
  const lines = createInterface({ input: stream, crlfDelay: Infinity })
  let batch: string[] = []
  let bytes = 0
  let tombstones = 0
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    send(space.name, batch, bytes, batch.length, tombstones)
    batch = []
    bytes = 0
    tombstones = 0
    while (inFlight() >= opts.concurrency) await waitOne()
  }
  for await (const line of lines) {
    if (failed() !== undefined) { stream.destroy(); return }
    if (line === '') continue
    // A tombstone line ends so (encodeRecordLine; a row line ends with the row's `}}`): counted for the summary, checked by the peer.
    if (line.endsWith(',"deleted":true}')) tombstones++
    batch.push(line)
    bytes += line.length + 1
    if (batch.length >= opts.batchRecords || bytes >= MAX_BATCH_BYTES) await flush()
  }
  await flush()
  const sum = hash.digest('hex')
  if (sum !== entry.sha256) throw new CliError(`restore stopped: ${entry.file} changed while it was being restored (SHA-256 ${sum}, the manifest says ${entry.sha256})`)
}

/** POSTs one batch; 503s and unreachable peers are retried (the batch is idempotent), anything else fails. */
async function postBatch (client: ShoalClient, opts: RestoreOptions, space: string, lines: string[]): Promise<{ written: number, stale: number }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.restore(space, lines.join('\n'), { consistency: opts.consistency })
    } catch (err) {
      const retry = err instanceof ShoalUnavailableError || (err instanceof ShoalError && err.status === 503)
      if (retry && attempt < RETRIES) { await sleep(1000 * 2 ** attempt); continue }
      throw new Error(errorText(err, { rowLabel: row => `record ${row} of the batch` }))
    }
  }
}

async function sleep (ms: number): Promise<void> { await new Promise(resolve => setTimeout(resolve, ms)) }
