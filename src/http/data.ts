import { HttpError, type HttpServer, type RouteRequest } from './server.js'

export type Consistency = 'one' | 'quorum' | 'all'

/** A space as the HTTP API shows it. */
export interface SpaceView {
  name: string
  uid: string
  schema: Array<{ name: string, type: string, nullable: boolean }>
  partitions: number
  replicas: number
  [extra: string]: unknown
}

export interface WriteOutcome {
  written: number
  /**
   * Written records that lost on every replica that acknowledged them (each already held a newer
   * version: last writer wins), and their ids (at most 1000). Absent when nothing was sent.
   */
  stale?: number
  staleIds?: string[]
  errors: Array<{ row: number, field: string, message: string }>
  [extra: string]: unknown
}

export interface RecordAnswer {
  record: Record<string, unknown>
  version: number
  [extra: string]: unknown
}

/** What the spaces and records endpoints need (src/peer/data.ts implements it). */
export interface DataApi {
  createSpace(input: unknown): SpaceView
  listSpaces(): SpaceView[]
  describeSpace(name: string): SpaceView
  dropSpace(name: string): void
  addColumn(name: string, column: unknown): SpaceView
  writeRecords(space: string, rows: unknown[], opts: RequestOptions): Promise<WriteOutcome>
  getRecord(space: string, id: string, opts: RequestOptions): Promise<RecordAnswer | undefined>
  deleteRecord(space: string, id: string, opts: RequestOptions): Promise<{ deleted: true, version: number }>
}

export interface RequestOptions {
  consistency: Consistency
  timeoutMs?: number
  /**
   * A causality token: the `version` of an earlier answer this client has seen. The coordinator
   * moves its clock past it first, so this client's next write is newer than its last one even
   * when the two go through coordinators whose clocks disagree.
   */
  after?: number
}

/** Largest records body: 64 MiB, about 200,000 typical rows; importers send batches well below it. */
const MAX_RECORDS_BODY_BYTES = 64 * 1024 * 1024
/** Rows in one POST; larger loads go through `shoal import`, which batches. */
const MAX_ROWS_PER_REQUEST = 200_000

export function registerDataApi (server: HttpServer, data: DataApi): void {
  server.route('POST', '/spaces', async (req) => {
    const input = await req.json()
    return { status: 201, body: guard(() => data.createSpace(input)) }
  })
  server.route('GET', '/spaces', () => ({ body: data.listSpaces() }))
  server.route('GET', '/spaces/:name', (req) => ({ body: guard(() => data.describeSpace(req.params.name!)) }))
  server.route('DELETE', '/spaces/:name', (req) => {
    guard(() => { data.dropSpace(req.params.name!) })
    return { body: { dropped: req.params.name } }
  })
  server.route('POST', '/spaces/:name/columns', async (req) => {
    const column = await req.json()
    return { body: guard(() => data.addColumn(req.params.name!, column)) }
  })

  server.route('POST', '/spaces/:name/records', async (req) => {
    const opts = readOptions(req)
    const rows = parseRecordsBody(await req.text(), String(req.headers['content-type'] ?? ''))
    const outcome = await guardAsync(async () => await data.writeRecords(req.params.name!, rows, opts))
    return { status: outcome.errors.length > 0 ? 400 : 200, body: outcome }
  }, { maxBodyBytes: MAX_RECORDS_BODY_BYTES })

  const getRecord = async (req: RouteRequest, id: string): Promise<{ body: RecordAnswer }> => {
    const answer = await guardAsync(async () => await data.getRecord(req.params.name!, id, readOptions(req)))
    if (answer === undefined) throw new HttpError(404, 'NOT_FOUND', `no record '${id}' in space '${req.params.name!}'`)
    return { body: answer }
  }
  const deleteRecord = async (req: RouteRequest, id: string): Promise<{ body: unknown }> => ({
    body: await guardAsync(async () => await data.deleteRecord(req.params.name!, id, readOptions(req)))
  })
  server.route('GET', '/spaces/:name/records/:id', async (req) => await getRecord(req, req.params.id!))
  server.route('DELETE', '/spaces/:name/records/:id', async (req) => await deleteRecord(req, req.params.id!))
  // The same by `?id=`: clients that parse URLs the WHATWG way (fetch, browsers) fold a path
  // segment `.`, `..`, `%2E` or `%2E%2E` before sending it, so such ids are unreachable by path.
  server.route('GET', '/spaces/:name/records', async (req) => await getRecord(req, idParam(req)))
  server.route('DELETE', '/spaces/:name/records', async (req) => await deleteRecord(req, idParam(req)))
}

function idParam (req: RouteRequest): string {
  const id = req.query.get('id')
  if (id === null || id === '') throw new HttpError(400, 'BAD_REQUEST', "query parameter 'id' is required: GET or DELETE /spaces/:name/records?id=ID (or /spaces/:name/records/ID)")
  return id
}

function readOptions (req: RouteRequest): RequestOptions {
  const c = (req.query.get('consistency') ?? 'quorum').toLowerCase()
  if (c !== 'one' && c !== 'quorum' && c !== 'all') throw new HttpError(400, 'BAD_REQUEST', `query parameter 'consistency' must be one, quorum or all; got '${c}'`)
  const out: RequestOptions = { consistency: c }
  const t = req.query.get('timeoutMs')
  if (t !== null) {
    const timeoutMs = Number(t)
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) throw new HttpError(400, 'BAD_REQUEST', "query parameter 'timeoutMs' must be an integer from 1 to 600000")
    out.timeoutMs = timeoutMs
  }
  const a = req.query.get('after')
  if (a !== null) {
    const after = Number(a)
    if (!/^\d{1,16}$/.test(a) || !Number.isSafeInteger(after)) throw new HttpError(400, 'BAD_REQUEST', "query parameter 'after' must be a version (a non-negative integer) from an earlier answer")
    out.after = after
  }
  return out
}

/** A JSON array, or NDJSON (one object per line; blank lines skipped), chosen by content. */
export function parseRecordsBody (text: string, contentType: string): unknown[] {
  const trimmed = text.trimStart()
  if (trimmed === '') throw new HttpError(400, 'BAD_REQUEST', 'request body is empty; expected a JSON array or NDJSON records')
  if (trimmed.startsWith('[') && !contentType.includes('ndjson')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new HttpError(400, 'BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`)
    }
    if (!Array.isArray(parsed)) throw new HttpError(400, 'BAD_REQUEST', 'expected a JSON array of records')
    checkCount(parsed.length)
    return parsed
  }
  const rows: unknown[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === '') continue
    try {
      rows.push(JSON.parse(line))
    } catch (err) {
      throw new HttpError(400, 'BAD_JSON', `NDJSON line ${i + 1} is not valid JSON: ${(err as Error).message}`, { written: 0 })
    }
    checkCount(rows.length)
  }
  return rows
}

function checkCount (n: number): void {
  if (n > MAX_ROWS_PER_REQUEST) throw new HttpError(413, 'TOO_MANY_ROWS', `at most ${MAX_ROWS_PER_REQUEST} records per request; use shoal import for larger loads`)
}

/** Maps the named errors of the layers below to HTTP statuses (matched by name, never message). */
export function toHttpError (err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof HttpError) return err
  const e = err as Error & { code?: string, field?: string, details?: Record<string, unknown> }
  switch (e.name) {
    case 'SchemaError':
      return new HttpError(400, 'BAD_SCHEMA', e.message)
    case 'CatalogError': {
      const code = e.code ?? 'BAD_REQUEST'
      const status = code === 'UNKNOWN_SPACE' ? 404 : code === 'SPACE_EXISTS' ? 409 : 400
      return new HttpError(status, code, e.message)
    }
    case 'PartitionUnavailableError':
      return new HttpError(503, 'PARTITION_UNAVAILABLE', e.message)
    // src/peer/cluster-status.ts: one repair at a time per peer.
    case 'RepairBusyError':
      return new HttpError(409, 'REPAIR_RUNNING', e.message)
    case 'ReadIncompleteError':
      return new HttpError(503, 'READ_INCOMPLETE', e.message)
    case 'NotSyncedError':
      return new HttpError(503, 'NOT_SYNCED', e.message)
    case 'WriteIncompleteError':
      return new HttpError(503, 'WRITE_INCOMPLETE', e.message, e.details)
    case 'ClockSkewError':
      return new HttpError(503, 'CLOCK_SKEW', e.message)
    case 'RpcTimeoutError':
      return new HttpError(504, 'TIMEOUT', e.message)
    case 'PeerUnreachableError':
      return new HttpError(503, 'UNREACHABLE', e.message)
    default:
      return err
  }
}

function guard<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw toHttpError(err)
  }
}

export async function guardAsync<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw toHttpError(err)
  }
}
