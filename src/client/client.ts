import { tableFromIPC, type Table } from 'apache-arrow'
import { ShoalError } from './errors.js'
import { DEFAULT_IMPORT_TIMEOUT_MS, importRecords } from './import.js'
import { PeerTransport, type PeerAnswer, type PeerRequest, type TransportOptions } from './transport.js'
import type {
  CreateSpaceInput, DeleteResult, GetResult, Health, ImportOptions, ImportResult, JsonQuery, Member,
  QueryOptions, QueryResult, ReadOptions, ShoalRecord, Space, WriteOptions, WriteResult
} from './types.js'

export type ShoalClientOptions = TransportOptions

/** The media type of an Arrow IPC stream answer (src/query ARROW_STREAM_TYPE). */
const ARROW_STREAM_TYPE = 'application/vnd.apache.arrow.stream'
/**
 * What the client waits beyond a query's own timeoutMs: the server answers a timed-out query
 * itself (with a partial answer or an error), which the client should receive rather than
 * cut short.
 */
const QUERY_TIMEOUT_MARGIN_MS = 5000

/** A typed client of a Shoal cluster's HTTP API; see index.ts for an example. */
export class ShoalClient {
  private readonly transport: PeerTransport

  /**
   * @param urlOrUrls one peer's URL, or several: requests go to the one that answered last and
   *   fail over to the next when it does not answer (docs/client.md, "Failover").
   */
  constructor (urlOrUrls: string | readonly string[], options: ShoalClientOptions = {}) {
    this.transport = new PeerTransport(typeof urlOrUrls === 'string' ? [urlOrUrls] : urlOrUrls, options)
  }

  /** The peer requests go to first: the one that answered last. */
  get currentPeer (): string { return this.transport.currentPeer }

  async createSpace (input: CreateSpaceInput): Promise<Space> {
    return await this.json({ method: 'POST', path: '/spaces', body: JSON.stringify(input), retry: 'write' }) as Space
  }

  async listSpaces (): Promise<Space[]> {
    return await this.json({ method: 'GET', path: '/spaces', retry: 'read' }) as Space[]
  }

  /** The space's definition and placement (GET /spaces/:name). */
  async describeSpace (name: string): Promise<Space> {
    return await this.json({ method: 'GET', path: `/spaces/${encodeURIComponent(name)}`, retry: 'read' }) as Space
  }

  async dropSpace (name: string): Promise<void> {
    await this.json({ method: 'DELETE', path: `/spaces/${encodeURIComponent(name)}`, retry: 'write' })
  }

  /**
   * Writes records (each with a string `id`); a record whose id exists replaces it. Invalid rows
   * throw ShoalError INVALID_ROWS with `rowErrors`, and nothing of the call is written.
   */
  async put (space: string, rows: ShoalRecord | ShoalRecord[], options: WriteOptions = {}): Promise<WriteResult> {
    const list = Array.isArray(rows) ? rows : [rows]
    if (list.length === 0) throw new ShoalError('BAD_ARGUMENT', 'put needs at least one record')
    const answer = await this.json({
      method: 'POST',
      path: `/spaces/${encodeURIComponent(space)}/records${recordQuery(options)}`,
      body: JSON.stringify(list),
      retry: 'write',
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {})
    }) as WriteResult & { errors?: unknown }
    const { errors: _errors, ...result } = answer
    return result
  }

  /** The record and its version, or undefined when the space has no record with this id. */
  async get (space: string, id: string, options: ReadOptions = {}): Promise<GetResult | undefined> {
    try {
      // By `?id=` rather than in the path: ids such as `..` survive any URL handling on the way.
      const answer = await this.json({ method: 'GET', path: `/spaces/${encodeURIComponent(space)}/records${recordQuery(options, id)}`, retry: 'read' }) as GetResult
      return { record: answer.record, version: answer.version }
    } catch (err) {
      // 404 NOT_FOUND is a missing record; an unknown space is UNKNOWN_SPACE and still throws.
      if (err instanceof ShoalError && err.status === 404 && err.code === 'NOT_FOUND') return undefined
      throw err
    }
  }

  /** Deletes a record (a tombstone newer than every version written before). */
  async delete (space: string, id: string, options: WriteOptions = {}): Promise<DeleteResult> {
    return await this.json({ method: 'DELETE', path: `/spaces/${encodeURIComponent(space)}/records${recordQuery(options, id)}`, retry: 'write' }) as DeleteResult
  }

  /** Runs SQL (a string) or a JSON query (an object) anywhere in the cluster. */
  async query (sqlOrJson: string | JsonQuery, options: QueryOptions = {}): Promise<QueryResult> {
    const answer = await this.transport.send(queryRequest(sqlOrJson, options))
    return parseJson(answer) as QueryResult
  }

  /**
   * Runs SQL and answers its rows as an Arrow Table, decoded from the IPC stream the peer sends
   * (no JSON on the way). Aggregations of JSON queries and completions answer JSON only (406).
   */
  async queryArrow (sqlOrJson: string | JsonQuery, options: QueryOptions = {}): Promise<Table> {
    const answer = await this.transport.send({ ...queryRequest(sqlOrJson, options), accept: ARROW_STREAM_TYPE })
    const type = String(answer.headers['content-type'] ?? '')
    if (!type.startsWith(ARROW_STREAM_TYPE)) throw new ShoalError('BAD_ANSWER', `peer ${answer.peer} answered ${type || 'no content type'} where an Arrow stream was asked`, { status: answer.status, peer: answer.peer })
    return tableFromIPC(answer.body)
  }

  /**
   * Streams records into a space in batches, awaiting each before reading more of `records`
   * (back-pressure). Each batch is a write: see docs/client.md for what is retried.
   */
  async importStream (space: string, records: AsyncIterable<ShoalRecord> | Iterable<ShoalRecord>, options: ImportOptions = {}): Promise<ImportResult> {
    const path = `/spaces/${encodeURIComponent(space)}/records${recordQuery({ ...(options.consistency !== undefined ? { consistency: options.consistency } : {}) })}`
    const timeoutMs = options.timeoutMs ?? DEFAULT_IMPORT_TIMEOUT_MS
    return await importRecords(records, async (ndjson) => {
      return await this.json({ method: 'POST', path, body: ndjson, contentType: 'application/x-ndjson', retry: 'write', timeoutMs }) as WriteResult
    }, options)
  }

  async members (): Promise<Member[]> {
    return await this.json({ method: 'GET', path: '/cluster/members', retry: 'read' }) as Member[]
  }

  /** The health of the peer that answers (GET /health). */
  async health (): Promise<Health> {
    return await this.json({ method: 'GET', path: '/health', retry: 'read' }) as Health
  }

  /** Closes the kept-alive connections; the client cannot be used after. */
  close (): void {
    this.transport.close()
  }

  private async json (req: PeerRequest): Promise<unknown> {
    return parseJson(await this.transport.send(req))
  }
}

function queryRequest (sqlOrJson: string | JsonQuery, options: QueryOptions): PeerRequest {
  if (typeof sqlOrJson !== 'string' && (typeof sqlOrJson !== 'object' || sqlOrJson === null || Array.isArray(sqlOrJson))) {
    throw new ShoalError('BAD_ARGUMENT', 'a query is SQL text or a JSON query object')
  }
  const opts = {
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.allowPartial !== undefined ? { allowPartial: options.allowPartial } : {}),
    ...(options.consistency !== undefined ? { consistency: options.consistency } : {})
  }
  const body = typeof sqlOrJson === 'string' ? { sql: sqlOrJson, ...opts } : { ...sqlOrJson, ...opts }
  return {
    method: 'POST',
    path: '/query',
    body: JSON.stringify(body),
    retry: 'read',
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {})
  }
}

/** `?consistency=..&timeoutMs=..&after=..&id=..`, only what was given (the server has defaults). */
function recordQuery (options: WriteOptions | ReadOptions, id?: string): string {
  const q = new URLSearchParams()
  if (id !== undefined) {
    if (id === '') throw new ShoalError('BAD_ARGUMENT', 'a record id must not be empty')
    q.set('id', id)
  }
  if (options.consistency !== undefined) q.set('consistency', options.consistency)
  if (options.timeoutMs !== undefined) q.set('timeoutMs', String(options.timeoutMs))
  if (options.after !== undefined) q.set('after', String(options.after))
  const text = q.toString()
  return text === '' ? '' : `?${text}`
}

function parseJson (answer: PeerAnswer): unknown {
  try {
    return JSON.parse(answer.body.toString('utf8'))
  } catch (err) {
    throw new ShoalError('BAD_ANSWER', `peer ${answer.peer} answered ${answer.status} with a body that is not JSON: ${answer.body.subarray(0, 200).toString('utf8')}`, { status: answer.status, peer: answer.peer, cause: err })
  }
}
