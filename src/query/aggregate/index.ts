/**
 * aggregate: aggregations as mergeable partial states. Every kind is an Aggregator with `init`,
 * `add`/`addColumn`/`collect` (on the peer that holds the data), `merge` (associative and
 * commutative, on the coordinator), `finalize`, and `encode`/`decode` (a validated, msgpack-able
 * wire form). Merging the partials of any split of the data gives the single-node answer: exactly
 * for counts, min/max, cardinality below its exact threshold and above it (register max is exact),
 * histograms, ranges, filters and exact terms; to float rounding for sums and moments (compensated
 * sums, Chan/Welford merging of (n, mean, M2)); within the sketch's stated relative accuracy for
 * percentiles (DDSketch); and within the reported error bound for approximate terms. Percentiles
 * are never averaged and cardinalities never added.
 *
 * ```ts
 * import { AggregationSet, packState, unpackState } from './query/aggregate/index.js'
 * const aggs = new AggregationSet({
 *   by_user: { kind: 'terms', field: 'user', size: 10, aggs: { p99: { kind: 'percentiles', field: 'ms', percents: [99] } } },
 *   users: { kind: 'cardinality', field: 'user' },
 *   latency: { kind: 'extended_stats', field: 'ms' }
 * })
 * // on each data peer
 * const state = aggs.init()
 * aggs.collect(state, { length: 3, column: f => columns[f] })
 * const wire = packState(aggs.encode(state))
 * // on the coordinator
 * let merged = aggs.init()
 * for (const bytes of partials) merged = aggs.merge(merged, aggs.decode(unpackState(bytes)))
 * const result = aggs.finalize(merged) // { by_user: { buckets, ... }, users: { value }, latency: {...} }
 * ```
 */
export type { Aggregator, Batch, Column, Selection } from './types.js'
export { AggregationError, AggregationLimitError, AggregationDecodeError, toNumber } from './types.js'
export type { AggSpec, AggsSpec, AggKind } from './spec.js'
export { AggregationSet, createAggregator, createSubAggregations, MAX_AGG_DEPTH } from './spec.js'
export { SubAggregations } from './subaggs.js'
export { CountAggregator, ValueCountAggregator, SumAggregator, ExtremeAggregator, StatsAggregator, AvgAggregator, ExtendedStatsAggregator } from './metrics.js'
export type { StatsResult, ExtendedStatsResult } from './metrics.js'
export { CardinalityAggregator } from './cardinality.js'
export type { CardinalityOptions, CardinalityState } from './cardinality.js'
export { PercentilesAggregator } from './percentiles.js'
export type { PercentilesOptions, PercentilesResult } from './percentiles.js'
export { TermsAggregator, termKey } from './terms.js'
export type { TermsOptions, TermsResult, TermsResultBucket, TermKey } from './terms.js'
export { HistogramAggregator, DateHistogramAggregator, RangeAggregator, FiltersAggregator } from './buckets.js'
export type { HistogramOptions, NumericHistogramOptions, DateHistogramOptions, HistogramResult, RangeSpec, RangeResult, FiltersResult, RowPredicate } from './buckets.js'
export { packState, unpackState, MAX_PACKED_BYTES } from './wire.js'
export { hash53 } from './hash.js'
