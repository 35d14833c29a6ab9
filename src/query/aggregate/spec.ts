/**
 * Aggregation requests (specs) and the factory that turns a spec tree into Aggregators.
 */
import type { Aggregator } from './types.js'
import { AggregationError } from './types.js'
import { AvgAggregator, CountAggregator, ExtendedStatsAggregator, ExtremeAggregator, StatsAggregator, SumAggregator, ValueCountAggregator } from './metrics.js'
import { CardinalityAggregator, type CardinalityOptions } from './cardinality.js'
import { PercentilesAggregator, type PercentilesOptions } from './percentiles.js'
import { TermsAggregator, type TermsOptions } from './terms.js'
import { DateHistogramAggregator, type DateHistogramOptions, FiltersAggregator, HistogramAggregator, type NumericHistogramOptions, RangeAggregator, type RangeSpec, type RowPredicate } from './buckets.js'
import { SubAggregations } from './subaggs.js'

/** Named sub-aggregations of a bucket kind. */
export type AggsSpec = Record<string, AggSpec>

export type AggSpec =
  | { kind: 'count' }
  | { kind: 'value_count' | 'sum' | 'min' | 'max' | 'avg' | 'stats', field: string }
  | { kind: 'extended_stats', field: string, /** width of std_deviation_bounds in standard deviations, default 2 */ sigma?: number }
  | ({ kind: 'cardinality', field: string } & CardinalityOptions)
  | ({ kind: 'percentiles', field: string } & PercentilesOptions)
  | ({ kind: 'terms', field: string, aggs?: AggsSpec } & TermsOptions)
  | ({ kind: 'histogram', field: string, aggs?: AggsSpec } & NumericHistogramOptions)
  | ({ kind: 'date_histogram', field: string, aggs?: AggsSpec } & DateHistogramOptions)
  | { kind: 'range', field: string, ranges: RangeSpec[], aggs?: AggsSpec }
  | { kind: 'filters', filters: Record<string, RowPredicate | null>, aggs?: AggsSpec }

export type AggKind = AggSpec['kind']

/** Deepest nesting of sub-aggregations accepted. */
export const MAX_AGG_DEPTH = 8

/** Builds the Aggregator for one spec (and, recursively, its sub-aggregations). */
export function createAggregator (spec: AggSpec, depth = 0): Aggregator<any, any> {
  if (spec === null || typeof spec !== 'object') throw new AggregationError('aggregation spec must be an object')
  if (depth > MAX_AGG_DEPTH) throw new AggregationError(`aggregations nest deeper than ${MAX_AGG_DEPTH} levels`)
  const field = (spec as { field?: unknown }).field
  if (spec.kind !== 'count' && spec.kind !== 'filters' && (typeof field !== 'string' || field.length === 0)) {
    throw new AggregationError(`${String(spec.kind)}: a field is required`)
  }
  switch (spec.kind) {
    case 'count': return new CountAggregator()
    case 'value_count': return new ValueCountAggregator(spec.field)
    case 'sum': return new SumAggregator(spec.field)
    case 'min': return new ExtremeAggregator(spec.field, false)
    case 'max': return new ExtremeAggregator(spec.field, true)
    case 'avg': return new AvgAggregator(spec.field)
    case 'stats': return new StatsAggregator(spec.field)
    case 'extended_stats': return new ExtendedStatsAggregator(spec.field, spec.sigma)
    case 'cardinality': return new CardinalityAggregator(spec.field, spec)
    case 'percentiles': return new PercentilesAggregator(spec.field, spec)
    case 'terms': return new TermsAggregator(spec.field, createSubAggregations(spec.aggs, depth + 1), spec)
    case 'histogram': return new HistogramAggregator(spec.field, createSubAggregations(spec.aggs, depth + 1), spec)
    case 'date_histogram': return new DateHistogramAggregator(spec.field, createSubAggregations(spec.aggs, depth + 1), spec)
    case 'range': return new RangeAggregator(spec.field, createSubAggregations(spec.aggs, depth + 1), spec.ranges)
    case 'filters': return new FiltersAggregator(spec.filters, createSubAggregations(spec.aggs, depth + 1))
    default: throw new AggregationError(`unknown aggregation kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`)
  }
}

export function createSubAggregations (aggs: AggsSpec | undefined, depth = 0): SubAggregations {
  if (aggs === undefined) return new SubAggregations([], [])
  if (aggs === null || typeof aggs !== 'object' || Array.isArray(aggs)) throw new AggregationError('aggs must be an object of named aggregations')
  const names = Object.keys(aggs)
  if (names.length > 100) throw new AggregationError('more than 100 sub-aggregations in one bucket')
  return new SubAggregations(names, names.map(n => createAggregator(aggs[n]!, depth)))
}

/**
 * The named aggregations of one query, as a unit: one state array for all of them, collected on
 * the data peers, shipped with `pack`, merged and finalized on the coordinator.
 */
export class AggregationSet {
  readonly subs: SubAggregations
  constructor (readonly spec: AggsSpec) { this.subs = createSubAggregations(spec) }
  get names (): readonly string[] { return this.subs.names }
  init (): unknown[] { return this.subs.init() }
  collect (states: unknown[], batch: import('./types.js').Batch, selection?: import('./types.js').Selection | null): void { this.subs.collect(states, batch, selection) }
  merge (a: unknown[], b: unknown[]): unknown[] { return this.subs.merge(a, b) }
  finalize (states: unknown[]): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    this.subs.finalizeInto(states, out)
    return out
  }

  encode (states: unknown[]): unknown[] { return this.subs.encode(states) }
  decode (v: unknown): unknown[] { return this.subs.decode(v, 'aggregations') }
}
