import type { Expr, PlanNode } from './node.js'
import { freeze } from './freeze.js'

/** Aggregate functions by their DuckDB names. */
export const AGGREGATE_FUNCTIONS = ['count', 'sum', 'avg', 'min', 'max', 'stddev_pop', 'var_pop', 'approx_count_distinct', 'approx_quantile'] as const
export type AggregateFn = typeof AGGREGATE_FUNCTIONS[number]

export function isAggregateFn (name: string): name is AggregateFn {
  return (AGGREGATE_FUNCTIONS as readonly string[]).includes(name)
}

/** A parameter of an aggregation: plain JSON data. */
export type AggParam = null | boolean | number | string | readonly AggParam[] | { readonly [key: string]: AggParam }

/**
 * One SQL aggregate: the spec that src/query/aggregate turns into a mergeable state.
 * `count` with no args counts rows; `approx_quantile` has `params.quantile`.
 */
export interface AggregateItem {
  readonly fn: AggregateFn
  readonly args: readonly Expr[]
  /** `count(DISTINCT x)`: exact. */
  readonly distinct: boolean
  readonly alias: string
  readonly params: Readonly<Record<string, AggParam>>
}

export interface GroupKey {
  readonly expr: Expr
  readonly alias: string
}

/** JSON-query aggregation types, as the search-engine syntax names them. */
export const AGG_SPEC_TYPES = ['terms', 'histogram', 'date_histogram', 'range', 'filters', 'stats', 'extended_stats', 'percentiles', 'cardinality', 'avg', 'sum', 'min', 'max', 'value_count'] as const
export type AggSpecType = typeof AGG_SPEC_TYPES[number]
export const BUCKET_AGG_TYPES: ReadonlySet<string> = new Set(['terms', 'histogram', 'date_histogram', 'range', 'filters'])

/**
 * One named aggregation of a JSON query. Bucket types (terms, histogram, date_histogram, range,
 * filters) nest `aggs` computed per bucket; metric types have none. `filters` holds the named
 * predicates of a `filters` aggregation (empty for every other type); `params` holds the rest
 * (size, interval, ranges, percents, ...), as given.
 */
export interface AggSpec {
  readonly name: string
  readonly type: AggSpecType
  readonly field: string | null
  readonly params: Readonly<Record<string, AggParam>>
  readonly filters: ReadonlyArray<{ readonly key: string, readonly predicate: Expr }>
  readonly aggs: readonly AggSpec[]
}

export function aggSpec (spec: { name: string, type: AggSpecType, field?: string | null, params?: Record<string, AggParam>, filters?: ReadonlyArray<{ key: string, predicate: Expr }>, aggs?: readonly AggSpec[] }): AggSpec {
  return freeze({
    name: spec.name,
    type: spec.type,
    field: spec.field ?? null,
    params: { ...(spec.params ?? {}) },
    filters: (spec.filters ?? []).map(f => ({ key: f.key, predicate: f.predicate })),
    aggs: [...(spec.aggs ?? [])]
  })
}

/**
 * Groups rows and aggregates them. Output: the group keys, then the aggregates, by alias.
 * A JSON query's aggregations travel in `aggs` (a tree, since buckets nest); such a node has no
 * group keys or SQL aggregates and answers `aggregations` rather than rows.
 */
export interface AggregateNode {
  readonly kind: 'Aggregate'
  readonly input: PlanNode
  readonly groupBy: readonly GroupKey[]
  readonly aggregates: readonly AggregateItem[]
  readonly aggs: readonly AggSpec[]
}

export function aggregate (input: PlanNode, groupBy: ReadonlyArray<{ expr: Expr, alias: string }>, aggregates: ReadonlyArray<{ fn: AggregateFn, args: readonly Expr[], distinct?: boolean, alias: string, params?: Record<string, AggParam> }>, aggs: readonly AggSpec[] = []): AggregateNode {
  return freeze({
    kind: 'Aggregate',
    input,
    groupBy: groupBy.map(g => ({ expr: g.expr, alias: g.alias })),
    aggregates: aggregates.map(a => ({ fn: a.fn, args: [...a.args], distinct: a.distinct ?? false, alias: a.alias, params: { ...(a.params ?? {}) } })),
    aggs: [...aggs]
  })
}
