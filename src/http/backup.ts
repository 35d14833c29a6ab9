import { HttpError, type HttpServer, type RouteRequest } from './server.js'
import { toHttpError, type Consistency } from './data.js'

/** A partition's backup stream (src/backup/service.ts PartitionStream). */
export interface BackupPartitionStream {
  replicas: string[]
  buckets: number
  estimate: number
  lines: AsyncIterable<string>
}

/** What the backup endpoints need (src/backup's BackupService implements it). */
export interface BackupApi {
  begin(): unknown
  partition(space: string, partition: number, signal?: AbortSignal): Promise<BackupPartitionStream>
  restore(space: string, records: readonly unknown[], opts: { consistency: Consistency, timeoutMs?: number }): Promise<{ written: number, stale: number, errors: Array<{ row: number, field: string, message: string }> }>
}

/** Largest restore body: as POST /spaces/:name/records. */
const MAX_RESTORE_BODY_BYTES = 64 * 1024 * 1024
/** Most records in one restore request (replication's bound per message). */
const MAX_RESTORE_LINES = 20_000

/**
 * The backup and restore endpoints (docs/operations.md, "Backup and restore"):
 *
 * ```
 * GET  /backup                                       {startHlc, startTime, version, spaces: [...]}
 * GET  /backup/spaces/:name/partitions/:partition    NDJSON: the partition's records merged from a
 *                                                    majority of its replicas, then {"end": true, ...}
 * POST /restore/spaces/:name/records?consistency=…   NDJSON of backup lines (records with their
 *                                                    versions) → {written, stale, errors}
 * ```
 */
export function registerBackupApi (server: HttpServer, api: BackupApi): void {
  server.route('GET', '/backup', () => ({ body: guard(() => api.begin()) }))

  server.route('GET', '/backup/spaces/:name/partitions/:partition', async (req) => {
    const text = req.params.partition!
    const partition = Number(text)
    if (!/^\d{1,6}$/.test(text)) throw new HttpError(400, 'BAD_PARTITION', `partition must be a partition number; got '${text.slice(0, 20)}'`)
    const stream = await guardAsync(async () => await api.partition(req.params.name!, partition, req.signal))
    return {
      stream: stream.lines,
      contentType: 'application/x-ndjson',
      headers: {
        'x-shoal-backup-replicas': stream.replicas.join(','),
        'x-shoal-backup-buckets': String(stream.buckets),
        'x-shoal-backup-records-estimate': String(stream.estimate)
      }
    }
  })

  server.route('POST', '/restore/spaces/:name/records', async (req) => {
    const opts = restoreOptions(req)
    const records = parseLines(await req.text())
    const outcome = await guardAsync(async () => await api.restore(req.params.name!, records, opts))
    return { status: outcome.errors.length > 0 ? 400 : 200, body: outcome }
  }, { maxBodyBytes: MAX_RESTORE_BODY_BYTES })
}

function restoreOptions (req: RouteRequest): { consistency: Consistency, timeoutMs?: number } {
  const c = (req.query.get('consistency') ?? 'quorum').toLowerCase()
  if (c !== 'one' && c !== 'quorum' && c !== 'all') throw new HttpError(400, 'BAD_REQUEST', `query parameter 'consistency' must be one, quorum or all; got '${c}'`)
  const t = req.query.get('timeoutMs')
  if (t === null) return { consistency: c }
  const timeoutMs = Number(t)
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) throw new HttpError(400, 'BAD_REQUEST', "query parameter 'timeoutMs' must be an integer from 1 to 600000")
  return { consistency: c, timeoutMs }
}

/** NDJSON lines (blank ones skipped), at most MAX_RESTORE_LINES. */
function parseLines (text: string): unknown[] {
  const out: unknown[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === '') continue
    if (out.length >= MAX_RESTORE_LINES) throw new HttpError(413, 'TOO_MANY_RECORDS', `at most ${MAX_RESTORE_LINES} records per restore request`)
    try {
      out.push(JSON.parse(line))
    } catch (err) {
      throw new HttpError(400, 'BAD_JSON', `NDJSON line ${i + 1} is not valid JSON: ${(err as Error).message}`, { written: 0 })
    }
  }
  if (out.length === 0) throw new HttpError(400, 'BAD_REQUEST', 'request body is empty; expected NDJSON backup lines {id, v, row} or {id, v, deleted: true}')
  return out
}

/** The backup errors by name (matched by name, never message); the rest as the data API maps them. */
function mapError (err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof HttpError) return err
  const e = err as Error & { code?: string }
  switch (e.name) {
    case 'BackupPartitionUnavailableError': return new HttpError(503, 'PARTITION_UNAVAILABLE', e.message)
    case 'BackupBusyError': return new HttpError(503, 'BUSY', e.message)
    case 'BackupNotSyncedError': return new HttpError(503, 'NOT_SYNCED', e.message)
    case 'BackupRequestError': return new HttpError(e.code === 'TOO_MANY_RECORDS' ? 413 : 400, e.code ?? 'BAD_REQUEST', e.message)
    default: return toHttpError(err)
  }
}

function guard<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw mapError(err)
  }
}

async function guardAsync<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw mapError(err)
  }
}
