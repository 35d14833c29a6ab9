/**
 * Runs the aggregations of a JSON query (search-engine style: terms, histograms, ranges, filters,
 * metrics, nested) over column batches, through src/query/aggregate. Two adapters: the query
 * model's aggregation spec (ES parameter names) to the aggregate module's spec, and a column batch
 * to the aggregate module's Batch (columns as arrays it can index).
 */
import type { ColumnBatch, ColumnVector } from '../../columnar/index.js'
import { AggregationDecodeError, type AggsSpec, type Batch, type Column, type RowPredicate } from '../aggregate/index.js'
import type { AggParam, AggSpec } from '../model/index.js'
import { evalPredicate } from './eval.js'
import { QueryExecError } from './errors.js'

const DAY_MS = 86_400_000

function int (p: AggParam | undefined): number | undefined { return typeof p === 'number' ? p : undefined }

/** The aggregate module's spec for a JSON query's aggregations. */
export function toAggsSpec (specs: readonly AggSpec[]): AggsSpec {
  const out: AggsSpec = Object.create(null)
  for (const s of specs) out[s.name] = toAggSpec(s)
  return out
}

function toAggSpec (s: AggSpec): AggsSpec[string] {
  const p = s.params
  const field = s.field ?? ''
  const aggs = s.aggs.length > 0 ? toAggsSpec(s.aggs) : undefined
  switch (s.type) {
    case 'avg': case 'sum': case 'min': case 'max': case 'stats': case 'value_count':
      return { kind: s.type, field }
    case 'extended_stats':
      return { kind: 'extended_stats', field, ...(int(p.sigma) !== undefined ? { sigma: int(p.sigma) } : {}) }
    case 'cardinality':
      return { kind: 'cardinality', field }
    case 'percentiles':
      return { kind: 'percentiles', field, ...(Array.isArray(p.percents) ? { percents: p.percents as number[] } : {}) }
    case 'terms':
      return {
        kind: 'terms',
        field,
        aggs,
        ...(int(p.size) !== undefined ? { size: int(p.size) } : {}),
        ...(int(p.shard_size) !== undefined ? { shardSize: int(p.shard_size) } : {}),
        ...(int(p.min_doc_count) !== undefined ? { minDocCount: int(p.min_doc_count) } : {}),
        ...(p.exact === true ? { exact: true } : {})
      }
    case 'histogram':
      return { kind: 'histogram', field, aggs, interval: p.interval as number, ...(int(p.offset) !== undefined ? { offset: int(p.offset) } : {}), ...(int(p.min_doc_count) !== undefined ? { minDocCount: int(p.min_doc_count) } : {}) }
    case 'date_histogram': {
      const interval = (p.fixed_interval ?? p.calendar_interval ?? p.interval) as string | number
      return { kind: 'date_histogram', field, aggs, interval, ...(int(p.min_doc_count) !== undefined ? { minDocCount: int(p.min_doc_count) } : {}) }
    }
    case 'range': {
      const ranges = (p.ranges as Array<Record<string, AggParam>>).map(r => ({
        ...(typeof r.key === 'string' ? { key: r.key } : {}),
        ...(typeof r.from === 'number' ? { from: r.from } : {}),
        ...(typeof r.to === 'number' ? { to: r.to } : {})
      }))
      return { kind: 'range', field, aggs, ranges }
    }
    case 'filters': {
      const filters: Record<string, RowPredicate> = Object.create(null)
      for (const f of s.filters) filters[f.key] = predicateOf(f.predicate)
      return { kind: 'filters', filters, aggs }
    }
  }
  throw new QueryExecError('UNSUPPORTED', `aggregation type ${String(s.type)}`)
}

/** A row predicate over adapted batches: the whole batch is evaluated once, then looked up per row. */
function predicateOf (expr: Parameters<typeof evalPredicate>[0]): RowPredicate {
  const masks = new WeakMap<Batch, Uint8Array>()
  return (row, batch) => {
    let mask = masks.get(batch)
    if (mask === undefined) {
      const source = (batch as AdaptedBatch).source
      mask = new Uint8Array(batch.length)
      for (const r of evalPredicate(expr, source)) mask[r] = 1
      masks.set(batch, mask)
    }
    return mask[row] === 1
  }
}

/**
 * A column batch as the aggregate module reads it: numbers as the float64 array itself (NaN is
 * missing there too), strings materialized once per batch and column (shared string references,
 * no per-row copies), dates in epoch ms (date_histogram and range work in ms).
 */
export class AdaptedBatch implements Batch {
  private readonly cache = new Map<string, Column>()
  constructor (readonly source: ColumnBatch) {}
  get length (): number { return this.source.length }
  column (field: string): Column | undefined {
    let c = this.cache.get(field)
    if (c !== undefined) return c
    const v = this.source.columns.get(field)
    if (v === undefined) return undefined
    c = columnOf(v)
    this.cache.set(field, c)
    return c
  }
}

function columnOf (v: ColumnVector): Column {
  switch (v.tag) {
    case 'num': {
      if (v.type === 'date') return v.values.map(x => x * DAY_MS)
      if (v.type === 'bool') return Array.from(v.values, x => x !== x ? null : x !== 0)
      return v.values
    }
    case 'str': {
      const out = new Array<string | null>(v.codes.length)
      for (let i = 0; i < out.length; i++) { const c = v.codes[i]!; out[i] = c < 0 ? null : v.dict[c]! }
      return out
    }
    case 'vec': return new Array(v.valid.length).fill(null)
    case 'any': return v.values
  }
}

/**
 * Runs the decode of a partial state that came off the network: a malformed one is the peer's
 * fault, reported as BAD_PARTIAL like every other malformed partial (not an aggregation error).
 */
export function decodeState<T> (decode: () => T): T {
  try {
    return decode()
  } catch (err) {
    if (err instanceof AggregationDecodeError) throw new QueryExecError('BAD_PARTIAL', err.message)
    throw err
  }
}

