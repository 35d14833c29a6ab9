/**
 * terms: doc counts per distinct value, top `size` by count — a distributed top-N.
 *
 * Each partition counts every key exactly. What it ships (`encode`) is its top `shardSize` keys
 * (default ⌈size·1.5⌉ + 10, as Elasticsearch) and an error bound: the largest count among the keys
 * it dropped (the (shardSize+1)-th count). Merge adds counts and bounds; a bucket missing from one
 * side has that side's bound added to its own error. So for every reported bucket the true count
 * lies in [doc_count, doc_count + doc_count_error_upper_bound], and any key absent from the result
 * has a true count of at most the overall doc_count_error_upper_bound.
 *
 * `exact: true` ships every key (an error past `maxBuckets`), making the result identical to one
 * node's. Sub-aggregations of a bucket merge recursively; in approximate mode they cover only the
 * partitions that shipped that bucket.
 */
import type { Aggregator, Batch, Column, Selection } from './types.js'
import { AggregationError, AggregationLimitError, darray, dcount, fail, toNumber, tuple } from './types.js'
import { groupRows, SubAggregations } from './subaggs.js'

export type TermKey = string | number

export interface TermsOptions {
  /** Buckets in the final result. Default 10. */
  size?: number
  /** Keys each partition ships in approximate mode. Default ⌈size·1.5⌉ + 10. */
  shardSize?: number
  /** Ship every key, so counts are exact. Default false. */
  exact?: boolean
  /** Drop buckets with fewer documents from the result. Default 1. */
  minDocCount?: number
  /** Most keys a shipped state may hold in exact mode (and a decoded one in any mode). Default 65536. */
  maxBuckets?: number
  /** Most distinct keys one partition may count before failing. Default 1,000,000. */
  maxTerms?: number
  /** Longest string key accepted, in UTF-16 units. Default 4096. */
  maxKeyLength?: number
}

export interface TermBucket { count: number, err: number, subs: unknown[] }

export interface TermsState {
  buckets: Map<TermKey, TermBucket>
  /** Documents with a value, across all keys (kept or dropped). */
  total: number
  /** Upper bound on the count of any key not in `buckets`. */
  bound: number
}

export interface TermsResultBucket {
  key: TermKey
  doc_count: number
  doc_count_error_upper_bound: number
  [sub: string]: unknown
}

export interface TermsResult {
  doc_count_error_upper_bound: number
  sum_other_doc_count: number
  buckets: TermsResultBucket[]
}

/** A cell's term key: strings and finite numbers as they are, bigints and dates as numbers, booleans as "true"/"false". */
export function termKey (v: unknown): TermKey | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number') return v === v ? (v === 0 ? 0 : v) : undefined
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'bigint' || v instanceof Date) { const x = toNumber(v); return x === x ? x : undefined }
  return undefined
}

/** Count descending, then key ascending (numbers before strings). */
function order (ka: TermKey, a: TermBucket, kb: TermKey, b: TermBucket): number {
  if (a.count !== b.count) return b.count - a.count
  if (typeof ka !== typeof kb) return typeof ka === 'number' ? -1 : 1
  return ka < kb ? -1 : ka > kb ? 1 : 0
}

export class TermsAggregator implements Aggregator<TermsState, TermsResult> {
  readonly kind = 'terms'
  readonly size: number
  readonly shardSize: number
  readonly exact: boolean
  readonly minDocCount: number
  readonly maxBuckets: number
  readonly maxTerms: number
  readonly maxKeyLength: number

  constructor (readonly field: string, readonly subs: SubAggregations = new SubAggregations([], []), opts: TermsOptions = {}) {
    this.size = opts.size ?? 10
    this.shardSize = opts.shardSize ?? Math.ceil(this.size * 1.5) + 10
    this.exact = opts.exact ?? false
    this.minDocCount = opts.minDocCount ?? 1
    this.maxBuckets = opts.maxBuckets ?? 65536
    this.maxTerms = opts.maxTerms ?? 1_000_000
    this.maxKeyLength = opts.maxKeyLength ?? 4096
    for (const [n, v] of [['size', this.size], ['shardSize', this.shardSize], ['maxBuckets', this.maxBuckets], ['maxTerms', this.maxTerms]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new AggregationError(`terms: ${n} must be a positive integer, got ${v}`)
    }
    if (this.shardSize < this.size) throw new AggregationError(`terms: shardSize ${this.shardSize} is below size ${this.size}`)
    if (!this.exact && this.shardSize > this.maxBuckets) throw new AggregationError(`terms: shardSize ${this.shardSize} is over maxBuckets ${this.maxBuckets}`)
  }

  init (): TermsState { return { buckets: new Map(), total: 0, bound: 0 } }

  private bucket (s: TermsState, k: TermKey): TermBucket {
    let b = s.buckets.get(k)
    if (b === undefined) {
      if (s.buckets.size >= this.maxTerms) throw new AggregationLimitError(`terms on ${this.field}: more than maxTerms ${this.maxTerms} distinct keys in one partition`)
      b = { count: 0, err: s.bound, subs: this.subs.init() }
      s.buckets.set(k, b)
    }
    return b
  }

  add (s: TermsState, v: unknown): void {
    const k = termKey(v)
    if (k === undefined) return
    this.bucket(s, k).count++
    s.total++
  }

  addColumn (s: TermsState, column: Column, selection?: Selection | null): void {
    const n = selection == null ? column.length : selection.length
    for (let i = 0; i < n; i++) this.add(s, column[selection == null ? i : selection[i]!])
  }

  collect (s: TermsState, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col === undefined) return
    if (this.subs.size === 0) { this.addColumn(s, col, selection); return }
    const n = selection == null ? batch.length : selection.length
    const groups = groupRows(n, selection, row => termKey(col[row]))
    for (const [k, rows] of groups) {
      const b = this.bucket(s, k)
      b.count += rows.length
      s.total += rows.length
      this.subs.collect(b.subs, batch, rows)
    }
  }

  /** Both inputs are consumed: the result may share buckets with `b`. */
  merge (a: TermsState, b: TermsState): TermsState {
    for (const [k, bb] of a.buckets) if (!b.buckets.has(k)) bb.err += b.bound
    for (const [k, bb] of b.buckets) {
      const ab = a.buckets.get(k)
      if (ab === undefined) {
        bb.err += a.bound
        a.buckets.set(k, bb)
      } else {
        ab.count += bb.count
        ab.err += bb.err
        ab.subs = this.subs.merge(ab.subs, bb.subs)
      }
    }
    if (a.buckets.size > this.maxTerms) throw new AggregationLimitError(`terms on ${this.field}: more than maxTerms ${this.maxTerms} distinct keys after merging`)
    a.total += b.total
    a.bound += b.bound
    return a
  }

  private sorted (s: TermsState): Array<[TermKey, TermBucket]> {
    return [...s.buckets].sort((x, y) => order(x[0], x[1], y[0], y[1]))
  }

  /**
   * The shard-side reduction applied before shipping: keep the top `shardSize` buckets and raise
   * the bound to cover the dropped ones. A no-op in exact mode (which instead enforces maxBuckets).
   */
  reduce (s: TermsState): TermsState {
    if (this.exact) {
      if (s.buckets.size > this.maxBuckets) throw new AggregationLimitError(`terms on ${this.field}: ${s.buckets.size} distinct keys exceed maxBuckets ${this.maxBuckets} in exact mode; raise maxBuckets or drop exact`)
      return s
    }
    if (s.buckets.size <= this.shardSize) return s
    const all = this.sorted(s)
    let bound = s.bound
    for (let i = this.shardSize; i < all.length; i++) {
      const b = all[i]![1]
      if (b.count + b.err > bound) bound = b.count + b.err
    }
    return { buckets: new Map(all.slice(0, this.shardSize)), total: s.total, bound }
  }

  finalize (s: TermsState): TermsResult {
    const buckets: TermsResultBucket[] = []
    let inBuckets = 0
    for (const [key, b] of this.sorted(s)) {
      if (buckets.length >= this.size) break
      if (b.count < this.minDocCount) continue
      const out: TermsResultBucket = { key, doc_count: b.count, doc_count_error_upper_bound: b.err }
      this.subs.finalizeInto(b.subs, out)
      buckets.push(out)
      inBuckets += b.count
    }
    return { doc_count_error_upper_bound: s.bound, sum_other_doc_count: s.total - inBuckets, buckets }
  }

  /** [total, bound, keys, counts, errs, subs] after `reduce`. */
  encode (state: TermsState): unknown {
    const s = this.reduce(state)
    const keys: TermKey[] = [], counts: number[] = [], errs: number[] = [], subs: unknown[] = []
    for (const [k, b] of s.buckets) {
      keys.push(k); counts.push(b.count); errs.push(b.err)
      if (this.subs.size > 0) subs.push(this.subs.encode(b.subs))
    }
    return [s.total, s.bound, keys, counts, errs, subs]
  }

  decode (v: unknown): TermsState {
    const kd = this.kind
    const t = tuple(kd, v, 6)
    const limit = this.exact ? this.maxBuckets : Math.min(this.maxBuckets, this.shardSize)
    const total = dcount(kd, t[0], 'total')
    const bound = dcount(kd, t[1], 'bound')
    const keys = darray(kd, t[2], 'keys', limit)
    const counts = darray(kd, t[3], 'counts', limit)
    const errs = darray(kd, t[4], 'errors', limit)
    const subs = darray(kd, t[5], 'sub-aggregations', limit)
    if (counts.length !== keys.length || errs.length !== keys.length || subs.length !== (this.subs.size > 0 ? keys.length : 0)) fail(kd, 'column lengths differ')
    const buckets = new Map<TermKey, TermBucket>()
    let sum = 0
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]
      if (typeof k === 'string') {
        if (k.length > this.maxKeyLength) fail(kd, `key longer than maxKeyLength ${this.maxKeyLength}`)
      } else if (typeof k !== 'number' || !Number.isFinite(k)) fail(kd, 'keys must be strings or finite numbers')
      if (buckets.has(k)) fail(kd, 'duplicate key')
      const count = dcount(kd, counts[i], 'count')
      sum += count
      buckets.set(k, { count, err: dcount(kd, errs[i], 'error'), subs: this.subs.size > 0 ? this.subs.decode(subs[i], kd) : this.subs.init() })
    }
    if (sum > total) fail(kd, 'bucket counts exceed the total')
    return { buckets, total, bound }
  }
}
