/**
 * query/service: queries as a peer serves them. The coordinator (service.ts) parses, validates,
 * splits and plans (planner.ts) a query, scatters its fragment to one replica per partition over
 * the `query.fragment` stream (scatter.ts; fragments.ts serves it on the data peers), retries and
 * hedges (health.ts), merges and answers with coverage and confidence; with analyze, each stage's
 * time and each peer's (gc-pauses.ts counts the garbage collection within). spread.ts runs spreading
 * activation hop by hop over the same machinery.
 */
export { QueryService, DEFAULT_QUERY_OPTIONS } from './service.js'
export type { QueryServiceOptions, QueryServiceDeps, QueryRequest, QueryAnswer, QueryStats, Coverage } from './service.js'
export { Scatter, type PeerAnalysis, type QueryAnalysis, type QueryStages } from './scatter.js'
export { QueryError, type QueryErrorCode } from './errors.js'
export { PeerHealth, TokenBucket } from './health.js'
export { planQuery, pinnedIds, orderReplicas, explainText, type QueryPlan, type Strategy, type PartitionTarget } from './planner.js'
export { METHOD_FRAGMENT, serveFragments, parseFragmentRequest, fragmentErrorCode, ROWS_PER_CHUNK, BYTES_PER_CHUNK } from './fragments.js'
export { runSpread, MAX_FRONTIER } from './spread.js'
export { recallMany, SPACE_COLUMN, MAX_RECALL_SPACES } from './recall.js'
export { answerJson, answerBody, answerNdjson, ANSWER_CHUNK_ROWS, NDJSON_TYPE } from './answer-json.js'
