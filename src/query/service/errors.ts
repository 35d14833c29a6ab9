/**
 * Errors a query answers with. `status` is the HTTP status: 4xx for the caller's mistakes
 * (syntax, unknown columns, a budget exceeded by what was asked), 503 when the cluster cannot
 * answer completely and the caller did not allow a partial answer.
 */
export type QueryErrorCode =
  | 'INVALID_QUERY' | 'UNKNOWN_SPACE' | 'UNSUPPORTED' | 'MEMORY_BUDGET' | 'LIMIT'
  | 'PARTIAL_RESULT' | 'NOT_SYNCED' | 'CANCELLED' | 'INTERNAL'

export class QueryError extends Error {
  override name = 'QueryError'
  constructor (readonly code: QueryErrorCode, readonly status: number, message: string, readonly details?: Record<string, unknown>) {
    super(message)
  }
}
