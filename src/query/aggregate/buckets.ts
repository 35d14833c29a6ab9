/**
 * Keyed bucket aggregations whose keys come from the value itself, so every partition computes the
 * same keys and merging is exact: histogram (fixed numeric interval), date_histogram (fixed
 * intervals such as '1h', '1d', or calendar 'month' / 'year', all UTC), range (from inclusive, to
 * exclusive; a value may fall in several) and filters (named row predicates supplied by the caller).
 * Merge adds doc counts per key and merges sub-aggregations recursively.
 */
import type { Aggregator, Batch, Column, Selection } from './types.js'
import { AggregationError, AggregationLimitError, darray, dcount, dfinite, fail, toNumber, tuple } from './types.js'
import { groupRows, SubAggregations } from './subaggs.js'

interface Bucket { count: number, subs: unknown[] }

export interface HistogramOptions {
  /** Drop buckets with fewer documents; 0 (the default) also fills the empty buckets between the first and last key. */
  minDocCount?: number
  /** Most buckets one state may hold, including filled empty buckets at finalize. Default 10000. */
  maxBuckets?: number
}

export interface HistogramBucket { key: number, key_as_string?: string, doc_count: number, [sub: string]: unknown }
export interface HistogramResult { buckets: HistogramBucket[] }

export type HistogramState = Map<number, Bucket>

/** Shared core of histogram and date_histogram: buckets keyed by `keyOf(value)`. */
abstract class KeyedHistogram implements Aggregator<HistogramState, HistogramResult> {
  abstract readonly kind: string
  readonly minDocCount: number
  readonly maxBuckets: number

  constructor (readonly field: string, readonly subs: SubAggregations, opts: HistogramOptions) {
    this.minDocCount = opts.minDocCount ?? 0
    this.maxBuckets = opts.maxBuckets ?? 10000
    if (!Number.isSafeInteger(this.maxBuckets) || this.maxBuckets < 1) throw new AggregationError('histogram: maxBuckets must be a positive integer')
  }

  /** The bucket key of a value, or undefined when the value is missing. */
  abstract keyOf (x: number): number
  /** The key after `k`, for filling empty buckets. */
  abstract nextKey (k: number): number
  /** Whether a decoded key is one this aggregation could produce. */
  abstract validKey (k: number): boolean
  protected label (_k: number): string | undefined { return undefined }

  init (): HistogramState { return new Map() }

  private bucket (s: HistogramState, k: number): Bucket {
    let b = s.get(k)
    if (b === undefined) {
      if (s.size >= this.maxBuckets) throw new AggregationLimitError(`${this.kind} on ${this.field}: more than maxBuckets ${this.maxBuckets} buckets`)
      b = { count: 0, subs: this.subs.init() }
      s.set(k, b)
    }
    return b
  }

  private key (v: unknown): number | undefined {
    const x = toNumber(v)
    return Number.isFinite(x) ? this.keyOf(x) : undefined
  }

  add (s: HistogramState, v: unknown): void {
    const k = this.key(v)
    if (k !== undefined) this.bucket(s, k).count++
  }

  addColumn (s: HistogramState, column: Column, selection?: Selection | null): void {
    const n = selection == null ? column.length : selection.length
    for (let i = 0; i < n; i++) this.add(s, column[selection == null ? i : selection[i]!])
  }

  collect (s: HistogramState, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col === undefined) return
    if (this.subs.size === 0) { this.addColumn(s, col, selection); return }
    const groups = groupRows(selection == null ? batch.length : selection.length, selection, row => this.key(col[row]))
    for (const [k, rows] of groups) {
      const b = this.bucket(s, k)
      b.count += rows.length
      this.subs.collect(b.subs, batch, rows)
    }
  }

  merge (a: HistogramState, b: HistogramState): HistogramState {
    for (const [k, bb] of b) {
      const ab = a.get(k)
      if (ab === undefined) {
        if (a.size >= this.maxBuckets) throw new AggregationLimitError(`${this.kind} on ${this.field}: more than maxBuckets ${this.maxBuckets} buckets after merging`)
        a.set(k, bb)
      } else {
        ab.count += bb.count
        ab.subs = this.subs.merge(ab.subs, bb.subs)
      }
    }
    return a
  }

  finalize (s: HistogramState): HistogramResult {
    const keys = [...s.keys()].sort((x, y) => x - y)
    const buckets: HistogramBucket[] = []
    const emit = (k: number, b: Bucket): void => {
      const out: HistogramBucket = { key: k, doc_count: b.count }
      const label = this.label(k)
      if (label !== undefined) out.key_as_string = label
      this.subs.finalizeInto(b.subs, out)
      buckets.push(out)
    }
    if (this.minDocCount > 0) {
      for (const k of keys) { const b = s.get(k)!; if (b.count >= this.minDocCount) emit(k, b) }
      return { buckets }
    }
    if (keys.length === 0) return { buckets }
    const last = keys[keys.length - 1]!
    let empty: Bucket | undefined
    for (let k = keys[0]!; k <= last; k = this.nextKey(k)) {
      if (buckets.length >= this.maxBuckets) throw new AggregationLimitError(`${this.kind} on ${this.field}: filling empty buckets exceeds maxBuckets ${this.maxBuckets}; set minDocCount: 1`)
      const b = s.get(k)
      if (b !== undefined) emit(k, b)
      else emit(k, empty ??= { count: 0, subs: this.subs.init() })
    }
    return { buckets }
  }

  /** [keys, counts, subs] */
  encode (s: HistogramState): unknown {
    const keys: number[] = [], counts: number[] = [], subs: unknown[] = []
    for (const [k, b] of s) {
      keys.push(k); counts.push(b.count)
      if (this.subs.size > 0) subs.push(this.subs.encode(b.subs))
    }
    return [keys, counts, subs]
  }

  decode (v: unknown): HistogramState {
    const kd = this.kind
    const t = tuple(kd, v, 3)
    const keys = darray(kd, t[0], 'keys', this.maxBuckets)
    const counts = darray(kd, t[1], 'counts', this.maxBuckets)
    const subs = darray(kd, t[2], 'sub-aggregations', this.maxBuckets)
    if (counts.length !== keys.length || subs.length !== (this.subs.size > 0 ? keys.length : 0)) fail(kd, 'column lengths differ')
    const s: HistogramState = new Map()
    for (let i = 0; i < keys.length; i++) {
      const k = dfinite(kd, keys[i], 'key')
      if (!this.validKey(k)) fail(kd, `key ${k} is not on this histogram's grid`)
      if (s.has(k)) fail(kd, 'duplicate key')
      s.set(k, { count: dcount(kd, counts[i], 'count'), subs: this.subs.size > 0 ? this.subs.decode(subs[i], kd) : this.subs.init() })
    }
    return s
  }
}

export interface NumericHistogramOptions extends HistogramOptions {
  /** Bucket width, > 0. */
  interval: number
  /** Shifts the bucket boundaries: keys are offset + k·interval. Default 0. */
  offset?: number
}

/** key = offset + ⌊(x − offset) / interval⌋ · interval */
export class HistogramAggregator extends KeyedHistogram {
  readonly kind = 'histogram'
  readonly interval: number
  readonly offset: number
  constructor (field: string, subs: SubAggregations, opts: NumericHistogramOptions) {
    super(field, subs, opts)
    this.interval = opts.interval
    this.offset = opts.offset ?? 0
    if (!(this.interval > 0 && Number.isFinite(this.interval))) throw new AggregationError(`histogram: interval must be a positive number, got ${String(opts.interval)}`)
    if (!Number.isFinite(this.offset)) throw new AggregationError('histogram: offset must be finite')
  }

  keyOf (x: number): number { return this.offset + Math.floor((x - this.offset) / this.interval) * this.interval }
  nextKey (k: number): number { return this.offset + (Math.round((k - this.offset) / this.interval) + 1) * this.interval }
  /** Any finite key: float grids do not round-trip exactly through keyOf. */
  validKey (k: number): boolean { return Number.isFinite(k) }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

export interface DateHistogramOptions extends HistogramOptions {
  /** A fixed interval in ms, or '500ms', '30s', '5m', '1h', '1d', '1w', or calendar 'month' / '1M', 'quarter' / '1q', 'year' / '1y'. All UTC. */
  interval: number | string
}

/** date_histogram over epoch-millisecond values (numbers, bigints or Dates), UTC. */
export class DateHistogramAggregator extends KeyedHistogram {
  readonly kind = 'date_histogram'
  /** Fixed width in ms, or 0 for calendar intervals. */
  readonly fixedMs: number
  /** Calendar months per bucket (1, 3 or 12), or 0 for fixed intervals. */
  readonly months: number

  constructor (field: string, subs: SubAggregations, opts: DateHistogramOptions) {
    super(field, subs, opts)
    const iv = opts.interval
    let fixed = 0, months = 0
    if (typeof iv === 'number') fixed = iv
    else if (iv === 'month' || iv === '1M') months = 1
    else if (iv === 'quarter' || iv === '1q') months = 3
    else if (iv === 'year' || iv === '1y') months = 12
    else {
      const m = /^(\d+)(ms|s|m|h|d|w)$/.exec(iv)
      if (m !== null) fixed = Number(m[1]) * UNIT_MS[m[2]!]!
    }
    if (months === 0 && !(Number.isSafeInteger(fixed) && fixed > 0)) throw new AggregationError(`date_histogram: unsupported interval ${JSON.stringify(iv)}; use e.g. '1h', '1d', '1w', 'month', 'year' or milliseconds`)
    this.fixedMs = fixed
    this.months = months
  }

  keyOf (x: number): number {
    if (this.fixedMs > 0) return Math.floor(x / this.fixedMs) * this.fixedMs
    const d = new Date(x)
    const y = d.getUTCFullYear()
    const m = d.getUTCMonth()
    return Date.UTC(y, m - (m % this.months), 1)
  }

  nextKey (k: number): number {
    if (this.fixedMs > 0) return k + this.fixedMs
    const d = new Date(k)
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + this.months, 1)
  }

  validKey (k: number): boolean { return Math.abs(k) <= 8.64e15 && this.keyOf(k) === k }
  protected override label (k: number): string { return new Date(k).toISOString() }
}

// ---- range ----

export interface RangeSpec { key?: string, from?: number, to?: number }
export interface RangeBucket { key: string, from?: number, to?: number, doc_count: number, [sub: string]: unknown }
export interface RangeResult { buckets: RangeBucket[] }
export type RangeState = Bucket[]

/** Fixed buckets [from, to); counts per range add on merge. A value may fall in several ranges. */
export class RangeAggregator implements Aggregator<RangeState, RangeResult> {
  readonly kind = 'range'
  private readonly from: Float64Array
  private readonly to: Float64Array
  readonly keys: string[]

  constructor (readonly field: string, readonly subs: SubAggregations, readonly ranges: RangeSpec[]) {
    if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > 10000) throw new AggregationError('range: between 1 and 10000 ranges are required')
    this.from = new Float64Array(ranges.map(r => r.from ?? -Infinity))
    this.to = new Float64Array(ranges.map(r => r.to ?? Infinity))
    this.keys = ranges.map(r => r.key ?? `${r.from ?? '*'}-${r.to ?? '*'}`)
    for (let i = 0; i < ranges.length; i++) {
      if (Number.isNaN(this.from[i]) || Number.isNaN(this.to[i])) throw new AggregationError(`range: bounds of range ${i} must be numbers`)
    }
  }

  init (): RangeState { return this.ranges.map(() => ({ count: 0, subs: this.subs.init() })) }

  add (s: RangeState, v: unknown): void {
    const x = toNumber(v)
    if (x - x !== 0) return
    for (let r = 0; r < s.length; r++) if (x >= this.from[r]! && x < this.to[r]!) s[r]!.count++
  }

  addColumn (s: RangeState, column: Column, selection?: Selection | null): void {
    const n = selection == null ? column.length : selection.length
    for (let i = 0; i < n; i++) this.add(s, column[selection == null ? i : selection[i]!])
  }

  collect (s: RangeState, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col === undefined) return
    if (this.subs.size === 0) { this.addColumn(s, col, selection); return }
    const n = selection == null ? batch.length : selection.length
    for (let r = 0; r < s.length; r++) {
      const lo = this.from[r]!, hi = this.to[r]!
      const rows: number[] = []
      for (let i = 0; i < n; i++) {
        const row = selection == null ? i : selection[i]!
        const x = toNumber(col[row])
        if (x >= lo && x < hi && x - x === 0) rows.push(row)
      }
      s[r]!.count += rows.length
      if (rows.length > 0) this.subs.collect(s[r]!.subs, batch, rows)
    }
  }

  merge (a: RangeState, b: RangeState): RangeState {
    for (let r = 0; r < a.length; r++) {
      a[r]!.count += b[r]!.count
      a[r]!.subs = this.subs.merge(a[r]!.subs, b[r]!.subs)
    }
    return a
  }

  finalize (s: RangeState): RangeResult {
    return {
      buckets: s.map((b, r) => {
        const out: RangeBucket = { key: this.keys[r]!, doc_count: b.count }
        if (this.ranges[r]!.from !== undefined) out.from = this.ranges[r]!.from
        if (this.ranges[r]!.to !== undefined) out.to = this.ranges[r]!.to
        this.subs.finalizeInto(b.subs, out)
        return out
      })
    }
  }

  encode (s: RangeState): unknown { return s.map(b => [b.count, this.subs.encode(b.subs)]) }
  decode (v: unknown): RangeState { return decodeFixed(this.kind, v, this.ranges.length, this.subs) }
}

function decodeFixed (kind: string, v: unknown, n: number, subs: SubAggregations): Bucket[] {
  const arr = darray(kind, v, 'buckets', n)
  if (arr.length !== n) fail(kind, `expected ${n} buckets`)
  return arr.map(e => {
    const t = tuple(kind, e, 2)
    return { count: dcount(kind, t[0], 'count'), subs: subs.decode(t[1], kind) }
  })
}

// ---- filters ----

/** Whether row `row` of `batch` belongs to a filter's bucket. */
export type RowPredicate = (row: number, batch: Batch) => boolean

export interface FiltersBucket { key: string, doc_count: number, [sub: string]: unknown }
export interface FiltersResult { buckets: FiltersBucket[] }
export type FiltersState = Bucket[]

/**
 * One bucket per named filter; a row may match several. The caller supplies the predicates (which
 * only the data peers evaluate; the coordinator can build the aggregator with any stand-ins, e.g.
 * from `filterNames`, since merge and finalize never call them). `add(state, names)` takes the
 * names (one or an array) of the filters a row matched, for callers that evaluate filters themselves.
 */
export class FiltersAggregator implements Aggregator<FiltersState, FiltersResult> {
  readonly kind = 'filters'
  readonly names: string[]
  private readonly preds: RowPredicate[]

  constructor (filters: Record<string, RowPredicate | null>, readonly subs: SubAggregations) {
    this.names = Object.keys(filters)
    if (this.names.length === 0 || this.names.length > 10000) throw new AggregationError('filters: between 1 and 10000 filters are required')
    this.preds = this.names.map(n => filters[n] ?? (() => { throw new AggregationError(`filters: no predicate for ${JSON.stringify(n)} on this peer`) }))
  }

  init (): FiltersState { return this.names.map(() => ({ count: 0, subs: this.subs.init() })) }

  add (s: FiltersState, v: unknown): void {
    const names = Array.isArray(v) ? v : [v]
    for (const n of names) {
      const i = this.names.indexOf(n as string)
      if (i >= 0) s[i]!.count++
    }
  }

  addColumn (): void { throw new AggregationError('filters: use collect (filters select rows, not values)') }

  collect (s: FiltersState, batch: Batch, selection?: Selection | null): void {
    const n = selection == null ? batch.length : selection.length
    for (let f = 0; f < this.preds.length; f++) {
      const pred = this.preds[f]!
      const rows: number[] = []
      for (let i = 0; i < n; i++) {
        const row = selection == null ? i : selection[i]!
        if (pred(row, batch)) rows.push(row)
      }
      s[f]!.count += rows.length
      if (rows.length > 0 && this.subs.size > 0) this.subs.collect(s[f]!.subs, batch, rows)
    }
  }

  merge (a: FiltersState, b: FiltersState): FiltersState {
    for (let r = 0; r < a.length; r++) {
      a[r]!.count += b[r]!.count
      a[r]!.subs = this.subs.merge(a[r]!.subs, b[r]!.subs)
    }
    return a
  }

  finalize (s: FiltersState): FiltersResult {
    return {
      buckets: s.map((b, r) => {
        const out: FiltersBucket = { key: this.names[r]!, doc_count: b.count }
        this.subs.finalizeInto(b.subs, out)
        return out
      })
    }
  }

  encode (s: FiltersState): unknown { return s.map(b => [b.count, this.subs.encode(b.subs)]) }
  decode (v: unknown): FiltersState { return decodeFixed(this.kind, v, this.names.length, this.subs) }
}
