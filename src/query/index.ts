/**
 * query: any peer answers a query over the whole cluster. A query (SQL, sql/, or a JSON query,
 * json/) becomes a plan tree (model/), is checked against its space's schema (validate/), split
 * into the fragment each partition replica runs and the coordinator's merge and final steps
 * (exec/), then scattered to one replica per partition, merged as the answers stream in, and
 * answered with how complete it is (service/: coverage and confidence). The answer goes out as
 * JSON, NDJSON or an Arrow IPC stream, each written a chunk at a time. Other folders import this
 * face; query's own subfolders keep their own index.ts for each other.
 *
 * ```ts
 * const pool = new FragmentPool(defaultPoolSize())          // worker threads: one fewer than the cores
 * const queries = new QueryService({ transport, clock, log, self, space, ...placement, pool }, { memoryBudgetMb: 512 })
 * queries.start()                                   // serves the query.fragment stream to other peers
 * const answer = await queries.query({ sql: 'SELECT region, count(*) FROM orders GROUP BY region' })
 * answer.coverage                                   // {total, answered, missing: [{space, partition, reason}]}
 * for (const piece of answerJson(answer)) res.write(piece)        // or answerNdjson, arrowChunks
 * ```
 */
export { QueryService, DEFAULT_QUERY_OPTIONS, QueryError, answerJson, answerBody, answerNdjson, NDJSON_TYPE, METHOD_FRAGMENT } from './service/index.js'
export type { QueryServiceOptions, QueryServiceDeps, QueryRequest, QueryAnswer, QueryStats, Coverage, PeerAnalysis, QueryErrorCode } from './service/index.js'
export { FragmentPool, defaultPoolSize, arrowChunks, arrowStream, ARROW_STREAM_TYPE, type OutputColumn } from './exec/index.js'
