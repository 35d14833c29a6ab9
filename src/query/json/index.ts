/**
 * query/json: the JSON query front end, in the style of a search engine's query DSL: filters
 * (term, terms, range, exists, bool, match_all, match_none, prefix, wildcard, ids), aggregations
 * (terms, histogram, date_histogram, range, filters, stats, extended_stats, percentiles,
 * cardinality, avg, sum, min, max, value_count; bucket types nest `aggs`), sort, from/size,
 * fields; plus `knn` (recall: top-K by vector similarity), `spread` (activation along links) and
 * `complete` (pattern completion: the records nearest a partial one, and its missing columns).
 *
 * ```ts
 * const { plan, origins } = parseJsonQuery({
 *   space: 'sales',
 *   filter: { bool: { must: [{ term: { region: 'eu' } }, { range: { amount: { gte: 10 } } }] } },
 *   sort: [{ amount: 'desc' }], size: 5
 * })
 * ```
 */
export { parseJsonQuery, wildcardToLike, MAX_FILTER_DEPTH, MAX_TERMS, MAX_AGG_DEPTH, MAX_AGGS } from './parse.js'
export type { ParsedJsonQuery } from './parse.js'
export { JsonQueryError } from './errors.js'
export { parseCompleteBody } from './complete.js'
