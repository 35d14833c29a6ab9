import { tableFromIPC, type Table } from 'apache-arrow'
import { ShoalError } from './errors.js'
import { DEFAULT_IMPORT_TIMEOUT_MS, importRecords } from './import.js'
import { ndjsonLines } from './ndjson.js'
import { ROUTE_HEADER, Routes } from './routing.js'
import { PeerTransport, type PeerAnswer, type PeerRequest, type PeerStream, type TransportOptions } from './transport.js'
import type {
  BackupBegin, BackupStreamOptions, ClusterRepair, ClusterStatus, DecommissionEvent, DecommissionOptions, ExplainOptions,
  ExplainResult, RemovePeerResult, RepairOptions, RestoreOptions, RestoreResult, StatusOptions
} from './ops-types.js'
import type {
  ArrowQueryResult, Coverage, CreateSpaceInput, DeleteResult, GetResult, Health, ImportOptions, ImportResult, JsonQuery, Member, PutTextOptions,
  QueryOptions, QueryResult, QueryStream, QueryStreamOptions, ReadOptions, ShoalRecord, Space, WriteOptions, WriteResult
} from './types.js'

export interface ShoalClientOptions extends TransportOptions {
  /**
   * Owner routing (docs/client.md, "Routing"), on by default when the client has several peer
   * URLs: a query whose partitions one peer holds, run again, and a record read or written by id
   * go first to a configured peer that holds them, saving the hops. false: every request goes to
   * the current peer as with one URL.
   */
  routing?: boolean
}

/** The media types of streamed query answers (src/query ARROW_STREAM_TYPE, NDJSON_TYPE). */
const ARROW_STREAM_TYPE = 'application/vnd.apache.arrow.stream'
const NDJSON_TYPE = 'application/x-ndjson'
/** A write of records the caller serialized (putText, importStream's batches, restore) waits up to this for its answer: 120 s. */
const BULK_TIMEOUT_MS = DEFAULT_IMPORT_TIMEOUT_MS
/**
 * What the client waits beyond the server's own wait on the other peers (src/http/ops.ts): the
 * answering peer's own work and the network. Status: default wait 3 s, plus 10 s. Repair: default
 * 10 min a peer, plus 30 s. Decommission: the peer's own timeout is unknown here, so a day, plus 60 s
 * for the leave and the last push.
 */
const STATUS_WAIT_MS = { default: 3000, slack: 10_000 }
const REPAIR_WAIT_MS = { default: 600_000, slack: 30_000 }
const DECOMMISSION_WAIT_MS = { default: 86_400_000, slack: 60_000 }
/**
 * What the client waits beyond a query's own timeoutMs: the server answers a timed-out query
 * itself (with a partial answer or an error), which the client should receive rather than
 * cut short.
 */
const QUERY_TIMEOUT_MARGIN_MS = 5000
/** What the routing's background requests (who a URL is, a space's placement) wait: they only save a hop. */
const ROUTING_PROBE_TIMEOUT_MS = 5000

/** A typed client of a Shoal cluster's HTTP API; see index.ts for an example. */
export class ShoalClient {
  private readonly transport: PeerTransport
  /** Owner routing; undefined with one URL or `routing: false`. */
  private readonly routes: Routes | undefined

  /**
   * @param urlOrUrls one peer's URL, or several: requests go to the one that answered last and
   *   fail over to the next when it does not answer (docs/client.md, "Failover").
   */
  constructor (urlOrUrls: string | readonly string[], options: ShoalClientOptions = {}) {
    const { routing, ...transport } = options
    this.transport = new PeerTransport(typeof urlOrUrls === 'string' ? [urlOrUrls] : urlOrUrls, transport)
    this.routes = routing !== false && this.transport.size > 1
      ? new Routes(this.transport.size, {
        peerIdOf: async (index) => String((parseJson(await this.transport.send({ method: 'GET', path: '/health', retry: 'read', only: index, timeoutMs: ROUTING_PROBE_TIMEOUT_MS })) as Partial<Health>).peer),
        placementOf: async (space) => parseJson(await this.transport.send({ method: 'GET', path: `/spaces/${encodeURIComponent(space)}`, retry: 'read', timeoutMs: ROUTING_PROBE_TIMEOUT_MS }))
      })
      : undefined
  }

  /** The peer requests go to first: the one that answered last. */
  get currentPeer (): string { return this.transport.currentPeer }

  async createSpace (input: CreateSpaceInput): Promise<Space> {
    // A space made again under an old name has a placement of its own.
    if (typeof input?.name === 'string') this.routes?.forgetSpace(input.name)
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
    this.routes?.forgetSpace(name)
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
      ...(this.routes !== undefined ? { prefer: this.routes.forRecords(space, list.length, i => list[i]?.id, true) } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {})
    }) as WriteResult & { errors?: unknown }
    const { errors: _errors, ...result } = answer
    return result
  }

  /** The record and its version, or undefined when the space has no record with this id. */
  async get (space: string, id: string, options: ReadOptions = {}): Promise<GetResult | undefined> {
    try {
      // By `?id=` rather than in the path: ids such as `..` survive any URL handling on the way.
      const answer = await this.json({ method: 'GET', path: `/spaces/${encodeURIComponent(space)}/records${recordQuery(options, id)}`, retry: 'read', ...this.recordRoute(space, id, false) }) as GetResult
      return { record: answer.record, version: answer.version, ...(answer.repaired !== undefined ? { repaired: answer.repaired } : {}) }
    } catch (err) {
      // 404 NOT_FOUND is a missing record; an unknown space is UNKNOWN_SPACE and still throws.
      if (err instanceof ShoalError && err.status === 404 && err.code === 'NOT_FOUND') return undefined
      throw err
    }
  }

  /** Deletes a record (a tombstone newer than every version written before). */
  async delete (space: string, id: string, options: WriteOptions = {}): Promise<DeleteResult> {
    return await this.json({ method: 'DELETE', path: `/spaces/${encodeURIComponent(space)}/records${recordQuery(options, id)}`, retry: 'write', ...this.recordRoute(space, id, true) }) as DeleteResult
  }

  /** Runs SQL (a string) or a JSON query (an object) anywhere in the cluster. */
  async query (sqlOrJson: string | JsonQuery, options: QueryOptions = {}): Promise<QueryResult> {
    const answer = await this.routedQuery(queryRequest(sqlOrJson, options), async (req) => await this.transport.send(req))
    return { ...parseJson(answer) as QueryResult, peer: answer.peer }
  }

  /**
   * Runs SQL and answers its rows as an Arrow Table, decoded from the IPC stream the peer sends
   * (no JSON on the way). Aggregations of JSON queries and completions answer JSON only (406).
   */
  async queryArrow (sqlOrJson: string | JsonQuery, options: QueryOptions = {}): Promise<Table> {
    return (await this.queryArrowResult(sqlOrJson, options)).table
  }

  /** As queryArrow, with the answer's coverage, confidence and tookMs (its x-shoal-* headers) and the peer that answered. */
  async queryArrowResult (sqlOrJson: string | JsonQuery, options: QueryOptions = {}): Promise<ArrowQueryResult> {
    const answer = await this.routedQuery({ ...queryRequest(sqlOrJson, options), accept: ARROW_STREAM_TYPE }, async (req) => await this.transport.send(req))
    expectType(answer, ARROW_STREAM_TYPE)
    return { table: tableFromIPC(answer.body), ...answerInfo(answer), peer: answer.peer }
  }

  /**
   * Runs a query and gives its rows as the peer streams them, Arrow IPC or NDJSON, without
   * decoding them: for piping a large answer through. Aggregations and completions answer JSON only (406).
   */
  async queryStream (sqlOrJson: string | JsonQuery, options: QueryStreamOptions): Promise<QueryStream> {
    const type = options.format === 'arrow' ? ARROW_STREAM_TYPE : NDJSON_TYPE
    const answer = await this.routedQuery({ ...queryRequest(sqlOrJson, options), accept: type, ...(options.signal !== undefined ? { signal: options.signal } : {}) }, async (req) => await this.transport.stream(req))
    try {
      expectType(answer, type)
    } catch (err) {
      answer.cancel()
      throw err
    }
    return { contentType: type, ...answerInfo(answer), body: answer.body }
  }

  /** How a SQL query would run (POST /query/explain); with `analyze`, runs it and reports what each peer did. */
  async explain (sql: string, options: ExplainOptions = {}): Promise<ExplainResult> {
    const body = { sql, ...(options.analyze === true ? { analyze: true } : {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) }
    return await this.json({
      method: 'POST',
      path: '/query/explain',
      body: JSON.stringify(body),
      retry: 'read',
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs + QUERY_TIMEOUT_MARGIN_MS } : {})
    }) as ExplainResult
  }

  /**
   * Streams records into a space in batches, awaiting each before reading more of `records`
   * (back-pressure). Each batch is a write: see docs/client.md for what is retried.
   */
  async importStream (space: string, records: AsyncIterable<ShoalRecord> | Iterable<ShoalRecord>, options: ImportOptions = {}): Promise<ImportResult> {
    const batch: PutTextOptions = { format: 'ndjson', ...(options.consistency !== undefined ? { consistency: options.consistency } : {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) }
    return await importRecords(records, async (ndjson) => await this.putText(space, ndjson, batch), options)
  }

  /**
   * Writes records the caller has serialized already, sent as they are: a JSON array (text that
   * starts with `[`) or NDJSON, one record a line. As put, invalid rows throw INVALID_ROWS and
   * nothing of the call is written; the server takes at most 200,000 rows and 64 MiB.
   */
  async putText (space: string, text: string, options: PutTextOptions = {}): Promise<WriteResult> {
    const answer = await this.json({
      method: 'POST',
      path: `/spaces/${encodeURIComponent(space)}/records${recordQuery({ ...(options.consistency !== undefined ? { consistency: options.consistency } : {}) })}`,
      body: text,
      contentType: (options.format ?? (text.trimStart().startsWith('[') ? 'json' : 'ndjson')) === 'json' ? 'application/json' : NDJSON_TYPE,
      retry: 'write',
      timeoutMs: options.timeoutMs ?? BULK_TIMEOUT_MS
    }) as WriteResult & { errors?: unknown }
    const { errors: _errors, ...result } = answer
    return result
  }

  async members (): Promise<Member[]> {
    return await this.json({ method: 'GET', path: '/cluster/members', retry: 'read' }) as Member[]
  }

  /** The health of the peer that answers (GET /health). */
  async health (): Promise<Health> {
    return await this.json({ method: 'GET', path: '/health', retry: 'read' }) as Health
  }

  // --------------------------------------------------------------------------- operations

  /** The whole cluster as the answering peer gathers it (GET /cluster/status). */
  async status (options: StatusOptions = {}): Promise<ClusterStatus> {
    const query = options.timeoutMs !== undefined ? `?timeoutMs=${options.timeoutMs}` : ''
    return await this.json({ method: 'GET', path: `/cluster/status${query}`, retry: 'read', timeoutMs: (options.timeoutMs ?? STATUS_WAIT_MS.default) + STATUS_WAIT_MS.slack }) as ClusterStatus
  }

  /** Runs anti-entropy now on every live peer, for one space or all (POST /cluster/repair); `ok` false when a peer's part failed. */
  async repair (options: RepairOptions = {}): Promise<ClusterRepair> {
    return await this.json({
      method: 'POST',
      path: '/cluster/repair',
      body: JSON.stringify(options),
      // Repeating a repair elsewhere is harmless, but it may be running already (409 BUSY): not repeated.
      retry: 'write',
      timeoutMs: (options.timeoutMs ?? REPAIR_WAIT_MS.default) + REPAIR_WAIT_MS.slack
    }) as ClusterRepair
  }

  /**
   * Removes a dead peer from the cluster on purpose (POST /cluster/remove). Without `confirm` it
   * only tells what removing it would give up (partitions whose only copies are on it).
   */
  async removePeer (peerId: string, options: { confirm?: boolean } = {}): Promise<RemovePeerResult> {
    const confirm = options.confirm === true
    return await this.json({ method: 'POST', path: '/cluster/remove', body: JSON.stringify({ peerId, confirm }), retry: confirm ? 'write' : 'read' }) as RemovePeerResult
  }

  /**
   * Decommissions the current peer (the client's first URL until another answered): it hands its
   * partitions to their next owners, leaves and stops. Yields the progress events as they happen,
   * the summary (`event: 'done'`) last. Never sent to another peer: that would decommission the wrong one.
   */
  async * decommission (options: DecommissionOptions = {}): AsyncGenerator<DecommissionEvent> {
    const answer = await this.transport.stream({
      method: 'POST',
      path: '/admin/decommission',
      body: JSON.stringify(options),
      retry: 'write',
      pinned: true,
      timeoutMs: (options.timeoutMs ?? DECOMMISSION_WAIT_MS.default) + DECOMMISSION_WAIT_MS.slack
    })
    for await (const line of ndjsonLines(answer.body)) yield parseLine(line, answer) as DecommissionEvent
  }

  /** Starts a backup (GET /backup): its start time and the spaces to back up. */
  async beginBackup (): Promise<BackupBegin> {
    return await this.json({ method: 'GET', path: '/backup', retry: 'read' }) as BackupBegin
  }

  /**
   * One partition's backup stream (GET /backup/spaces/:name/partitions/:p): NDJSON backup lines
   * merged from a majority of its replicas, then `{"end": true, ...}`; the bytes as they arrive.
   * A partition a majority cannot serve throws PARTITION_UNAVAILABLE. No overall timeout: a large
   * partition takes as long as it takes (abort with `signal`).
   */
  async backupPartition (space: string, partition: number, options: BackupStreamOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const answer = await this.transport.stream({
      method: 'GET',
      path: `/backup/spaces/${encodeURIComponent(space)}/partitions/${partition}`,
      retry: 'read',
      timeoutMs: Infinity,
      ...(options.signal !== undefined ? { signal: options.signal } : {})
    })
    return answer.body
  }

  /**
   * Writes backup lines (records with their versions, NDJSON; at most 20,000) into a space (POST
   * /restore/spaces/:name/records). A record older than the cluster's copy is left as it was and
   * counted `stale`, so a restore can be repeated.
   */
  async restore (space: string, lines: string, options: RestoreOptions = {}): Promise<RestoreResult> {
    const answer = await this.json({
      method: 'POST',
      path: `/restore/spaces/${encodeURIComponent(space)}/records${recordQuery({ ...(options.consistency !== undefined ? { consistency: options.consistency } : {}) })}`,
      body: lines,
      contentType: NDJSON_TYPE,
      retry: 'write',
      timeoutMs: options.timeoutMs ?? BULK_TIMEOUT_MS
    }) as Partial<RestoreResult>
    return { written: answer.written ?? 0, stale: answer.stale ?? 0 }
  }

  /** Closes the kept-alive connections; the client cannot be used after. */
  close (): void {
    this.transport.close()
  }

  /**
   * Sends a query first to the peers that held every partition its text last read (routing.ts),
   * and keeps the route its answer gives for the next time. Keyed by the request body: the query
   * and its options.
   */
  private async routedQuery<A extends PeerAnswer | PeerStream> (req: PeerRequest, send: (req: PeerRequest) => Promise<A>): Promise<A> {
    const routes = this.routes
    if (routes === undefined) return await send(req)
    const key = req.body ?? ''
    const answer = await send({ ...req, prefer: routes.forQuery(key) })
    routes.learnQuery(key, answer.headers[ROUTE_HEADER])
    return answer
  }

  private recordRoute (space: string, id: string, write: boolean): { prefer?: number[] } {
    return this.routes === undefined || id === '' ? {} : { prefer: this.routes.forRecord(space, id, write) }
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

/** Throws BAD_ANSWER unless the answer is of the media type asked for. */
function expectType (answer: PeerAnswer | PeerStream, type: string): void {
  const got = String(answer.headers['content-type'] ?? '')
  if (!got.startsWith(type)) throw new ShoalError('BAD_ANSWER', `peer ${answer.peer} answered ${got === '' ? 'without a content type' : got} instead of ${type}`, { status: answer.status, peer: answer.peer })
}

/** Coverage, confidence and tookMs of an answer whose body holds only rows (Arrow, NDJSON): its x-shoal-* headers. */
function answerInfo (answer: PeerAnswer | PeerStream): { coverage: Coverage | undefined, confidence: number | undefined, tookMs: number | undefined } {
  const confidence = answer.headers['x-shoal-confidence']
  const tookMs = answer.headers['x-shoal-took-ms']
  return {
    coverage: parseCoverage(answer.headers['x-shoal-coverage']),
    confidence: typeof confidence === 'string' ? Number(confidence) : undefined,
    tookMs: typeof tookMs === 'string' ? Number(tookMs) : undefined
  }
}

/** The x-shoal-coverage header of a streamed answer, when it is one. */
function parseCoverage (header: string | string[] | undefined): Coverage | undefined {
  if (typeof header !== 'string') return undefined
  try {
    const c = JSON.parse(header) as Coverage
    return typeof c === 'object' && c !== null && typeof c.total === 'number' && typeof c.answered === 'number' ? c : undefined
  } catch {
    return undefined
  }
}

function parseLine (line: string, answer: PeerStream): unknown {
  try {
    return JSON.parse(line)
  } catch (err) {
    throw new ShoalError('BAD_ANSWER', `peer ${answer.peer} answered a line that is not JSON: ${line.slice(0, 200)}`, { status: answer.status, peer: answer.peer, cause: err })
  }
}

function parseJson (answer: PeerAnswer): unknown {
  try {
    return JSON.parse(answer.body.toString('utf8'))
  } catch (err) {
    throw new ShoalError('BAD_ANSWER', `peer ${answer.peer} answered ${answer.status} with a body that is not JSON: ${answer.body.subarray(0, 200).toString('utf8')}`, { status: answer.status, peer: answer.peer, cause: err })
  }
}
