import { ARROW_STREAM_TYPE, NDJSON_TYPE, QueryError, answerJson, answerNdjson, arrowChunks, type QueryRequest, type QueryService } from '../query/index.js'
import { HttpError, type HttpServer, type RouteRequest } from './server.js'

/** The header naming the peers that would read all of a query's partitions locally (QueryAnswer.route). */
export const ROUTE_HEADER = 'x-shoal-route'

/** Largest query body: SQL and JSON queries are small, but a knn vector or a long IN list is not. */
const MAX_QUERY_BODY_BYTES = 4 * 1024 * 1024

/**
 * POST /query and POST /query/explain (DESIGN.md section 8). The body is `{sql, ...options}` or
 * a JSON query with the options beside it: timeoutMs, allowPartial, consistency. Answers JSON
 * `{columns, rows | aggregations, completion?, coverage, confidence, tookMs}`, or an Arrow IPC stream or NDJSON
 * (one row object a line) when the request accepts one (coverage, confidence and tookMs then travel
 * in x-shoal-* headers). Every answer is streamed.
 */
export function registerQueryApi (server: HttpServer, queries: Pick<QueryService, 'query' | 'explain'>): void {
  server.route('POST', '/query', async (req) => {
    const request = await queryRequest(req)
    const answer = await run(async () => await queries.query(request))
    const format = answerFormat(req)
    // Where the same query reads without a hop (peers holding every partition it read), for
    // clients that route (src/client/routing.ts); peer ids only, which GET /cluster/members shows anyway.
    const route = answer.route !== undefined ? { [ROUTE_HEADER]: answer.route.join(',') } : undefined
    if (format === 'json') {
      // Streamed: the rows are rendered and written a chunk at a time as the client reads them.
      return { stream: answerJson(answer), ...(route !== undefined ? { headers: route } : {}) }
    }
    const type = format === 'arrow' ? ARROW_STREAM_TYPE : NDJSON_TYPE
    if (answer.aggregations !== undefined) throw new HttpError(406, 'NOT_ACCEPTABLE', `aggregations of a JSON query answer JSON only; ask without Accept: ${type}`)
    // The filled record is the point of a completion, and rows alone cannot carry it.
    if (answer.completion !== undefined) throw new HttpError(406, 'NOT_ACCEPTABLE', `a completion answers JSON only (its filled record travels beside the rows); ask without Accept: ${type}`)
    // Rows only in the body; how complete they are travels beside them. Streamed a record batch
    // (Arrow) or a chunk of rows (NDJSON) at a time, as the JSON answer is.
    return {
      stream: format === 'arrow' ? arrowChunks(answer.batch, answer.columns) : answerNdjson(answer),
      contentType: type,
      headers: {
        'x-shoal-coverage': JSON.stringify(answer.coverage),
        'x-shoal-confidence': String(answer.confidence),
        'x-shoal-took-ms': answer.tookMs.toFixed(1),
        ...route
      }
    }
  }, { maxBodyBytes: MAX_QUERY_BODY_BYTES })

  server.route('POST', '/query/explain', async (req) => {
    const request = await queryRequest(req)
    return { body: await run(async () => await queries.explain(request)) }
  }, { maxBodyBytes: MAX_QUERY_BODY_BYTES })
}

/**
 * The answer's format from the Accept header: Arrow IPC or NDJSON when the client lists one
 * (Arrow first when it lists both), JSON otherwise (any type, application/json, no header).
 */
function answerFormat (req: RouteRequest): 'arrow' | 'ndjson' | 'json' {
  const types = (req.headers.accept ?? '').split(',').map(a => a.trim().split(';')[0]!.trim().toLowerCase())
  if (types.includes(ARROW_STREAM_TYPE)) return 'arrow'
  if (types.includes(NDJSON_TYPE)) return 'ndjson'
  return 'json'
}

const OPTION_KEYS = ['timeoutMs', 'allowPartial', 'consistency', 'analyze']

async function queryRequest (req: RouteRequest): Promise<QueryRequest> {
  const body = await req.json()
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'the body must be a JSON object: {sql} or a JSON query')
  const b = body as Record<string, unknown>
  if (b.timeoutMs !== undefined && (typeof b.timeoutMs !== 'number' || !(b.timeoutMs > 0))) throw new HttpError(400, 'BAD_REQUEST', 'timeoutMs must be a positive number')
  if (b.allowPartial !== undefined && typeof b.allowPartial !== 'boolean') throw new HttpError(400, 'BAD_REQUEST', 'allowPartial must be true or false')
  if (b.analyze !== undefined && typeof b.analyze !== 'boolean') throw new HttpError(400, 'BAD_REQUEST', 'analyze must be true or false')
  // Queries read one replica per partition (docs/consistency.md); quorum reads are for records.
  if (b.consistency !== undefined && b.consistency !== 'one') throw new HttpError(400, 'BAD_REQUEST', "consistency: queries read one replica of each partition; only 'one' is accepted (read records by id for quorum or all)")
  const common = {
    ...(b.timeoutMs !== undefined ? { timeoutMs: b.timeoutMs as number } : {}),
    ...(b.allowPartial !== undefined ? { allowPartial: b.allowPartial as boolean } : {}),
    ...(b.analyze !== undefined ? { analyze: b.analyze as boolean } : {}),
    signal: req.signal
  }
  if (b.sql !== undefined) {
    if (typeof b.sql !== 'string' || b.sql.trim() === '') throw new HttpError(400, 'BAD_REQUEST', 'sql must be a non-empty string')
    return { sql: b.sql, ...common }
  }
  const query: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(b)) if (!OPTION_KEYS.includes(k)) query[k] = v
  return { query, ...common }
}

async function run<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    // Extras (validation details, coverage) go inside `error`, beside code and message.
    if (err instanceof QueryError) throw new HttpError(err.status, err.code, err.message, { error: { code: err.code, message: err.message, ...err.details } })
    throw err
  }
}
