/**
 * percentiles: a DDSketch (@datadog/sketches-js, logarithmic mapping) with a relative-accuracy
 * guarantee α (default 1%): every reported quantile q is within α·|x| of the exact value x at rank
 * ⌊q·(n−1)⌋ of the sorted data, for any data, and stays so after any number of merges, because
 * merging adds bin counts exactly (the merged sketch is the one a single node would build).
 *
 * Merging is done here, not with the library's `merge`, which (in 2.1.x) drops the negative-value
 * store. The wire form is our own: the bins of each store as (key delta, count) zig-zag varints,
 * plus zero count, count, sum, min and max; decode checks keys against the mapping's range and
 * the number of bins against `maxBins`.
 */
import { DDSketch } from '@datadog/sketches-js'
import type { Aggregator, Batch, Column, Selection } from './types.js'
import { AggregationError, AggregationLimitError, ByteReader, ByteWriter, dbytes, dcount, dnum, fail, forEachNumber, toNumber, tuple } from './types.js'

export interface PercentilesOptions {
  /** Percents to report, each in [0, 100]. Default [1, 5, 25, 50, 75, 95, 99]. */
  percents?: number[]
  /** Relative accuracy α of the sketch, in (0, 0.5). Default 0.01. */
  relativeAccuracy?: number
  /** Most non-empty bins (positive plus negative) a state may carry across the wire. Default 8192. */
  maxBins?: number
}

type Store = DDSketch['store']

export interface PercentilesState { sk: DDSketch }

export interface PercentilesResult {
  /** Keyed by the percent as written by `String(p)`, e.g. "50", "99.9". Null when there were no values. */
  values: Record<string, number | null>
}

export class PercentilesAggregator implements Aggregator<PercentilesState, PercentilesResult> {
  readonly kind = 'percentiles'
  readonly percents: number[]
  readonly relativeAccuracy: number
  readonly maxBins: number
  private readonly minKey: number
  private readonly maxKey: number

  constructor (readonly field: string, opts: PercentilesOptions = {}) {
    this.percents = opts.percents ?? [1, 5, 25, 50, 75, 95, 99]
    for (const p of this.percents) {
      if (typeof p !== 'number' || !(p >= 0 && p <= 100)) throw new AggregationError(`percentiles: percent ${String(p)} is not in [0, 100]`)
    }
    this.relativeAccuracy = opts.relativeAccuracy ?? 0.01
    if (!(this.relativeAccuracy > 0 && this.relativeAccuracy < 0.5)) throw new AggregationError('percentiles: relativeAccuracy must be in (0, 0.5)')
    this.maxBins = opts.maxBins ?? 8192
    const probe = new DDSketch({ relativeAccuracy: this.relativeAccuracy })
    this.minKey = probe.mapping.key(probe.mapping.minPossible)
    this.maxKey = probe.mapping.key(probe.mapping.maxPossible)
  }

  init (): PercentilesState { return { sk: new DDSketch({ relativeAccuracy: this.relativeAccuracy }) } }

  add (s: PercentilesState, v: unknown): void {
    const x = toNumber(v)
    if (Number.isFinite(x)) s.sk.accept(x)
  }

  addColumn (s: PercentilesState, column: Column, selection?: Selection | null): void {
    const sk = s.sk
    forEachNumber(column, selection, x => { if (Number.isFinite(x)) sk.accept(x) })
  }

  collect (s: PercentilesState, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col !== undefined) this.addColumn(s, col, selection)
  }

  merge (a: PercentilesState, b: PercentilesState): PercentilesState {
    const x = a.sk, y = b.sk
    if (y.count === 0) return a
    mergeStore(x.store, y.store)
    mergeStore(x.negativeStore, y.negativeStore)
    x.zeroCount += y.zeroCount
    x.count += y.count
    x.sum += y.sum
    if (y.min < x.min) x.min = y.min
    if (y.max > x.max) x.max = y.max
    return a
  }

  /** The value at percent p (0..100) of the state, or null when empty. */
  quantile (s: PercentilesState, p: number): number | null {
    const sk = s.sk
    if (sk.count === 0) return null
    if (p <= 0) return sk.min
    if (p >= 100) return sk.max
    const v = sk.getValueAtQuantile(p / 100)
    // the bin's representative can stray past the observed extremes by up to α; clamp
    return Math.min(sk.max, Math.max(sk.min, v))
  }

  finalize (s: PercentilesState): PercentilesResult {
    const values: Record<string, number | null> = {}
    for (const p of this.percents) values[String(p)] = this.quantile(s, p)
    return { values }
  }

  encode (s: PercentilesState): unknown {
    const sk = s.sk
    const pos = encodeStore(sk.store)
    const neg = encodeStore(sk.negativeStore)
    if (pos.bins + neg.bins > this.maxBins) throw new AggregationLimitError(`percentiles: sketch has ${pos.bins + neg.bins} bins, over maxBins ${this.maxBins}`)
    return [this.relativeAccuracy, sk.zeroCount, sk.sum, sk.min, sk.max, pos.bins, pos.bytes, neg.bins, neg.bytes]
  }

  decode (v: unknown): PercentilesState {
    const k = this.kind
    const t = tuple(k, v, 9)
    if (t[0] !== this.relativeAccuracy) fail(k, `relative accuracy ${String(t[0])} does not match ${this.relativeAccuracy}`)
    const s = this.init()
    const sk = s.sk
    sk.zeroCount = dcount(k, t[1], 'zero count')
    sk.sum = dnum(k, t[2], 'sum')
    sk.min = dnum(k, t[3], 'min')
    sk.max = dnum(k, t[4], 'max')
    const nPos = dcount(k, t[5], 'bin count')
    const nNeg = dcount(k, t[7], 'bin count')
    if (nPos + nNeg > this.maxBins) fail(k, `${nPos + nNeg} bins, over maxBins ${this.maxBins}`)
    this.decodeStore(sk.store, nPos, dbytes(k, t[6], 'bins', nPos * 16))
    this.decodeStore(sk.negativeStore, nNeg, dbytes(k, t[8], 'bins', nNeg * 16))
    sk.count = sk.zeroCount + sk.store.count + sk.negativeStore.count
    if (!Number.isSafeInteger(sk.count)) fail(k, 'count out of range')
    if (sk.count > 0 && !(sk.min <= sk.max)) fail(k, 'min > max')
    if (sk.count === 0 && (sk.min !== Infinity || sk.max !== -Infinity)) fail(k, 'empty sketch with extremes')
    return s
  }

  private decodeStore (store: Store, n: number, bytes: Uint8Array): void {
    const r = new ByteReader(bytes, this.kind)
    let key = 0
    for (let i = 0; i < n; i++) {
      const d = r.int()
      if (i > 0 && d <= 0) fail(this.kind, 'bin keys not strictly increasing')
      key += d
      if (key < this.minKey || key > this.maxKey) fail(this.kind, `bin key ${key} outside the mapping's range`)
      const c = r.uint()
      if (c === 0) fail(this.kind, 'empty bin')
      store.add(key, c)
    }
    if (!r.done) fail(this.kind, 'trailing bytes')
  }
}

function mergeStore (a: Store, b: Store): void {
  if (b.count === 0) return
  for (let i = 0; i < b.bins.length; i++) {
    const c = b.bins[i]!
    if (c !== 0) a.add(i + b.offset, c)
  }
}

function encodeStore (st: Store): { bins: number, bytes: Uint8Array } {
  const w = new ByteWriter()
  let n = 0
  let prev = 0
  if (st.count > 0) {
    for (let i = 0; i < st.bins.length; i++) {
      const c = st.bins[i]!
      if (c === 0) continue
      const key = i + st.offset
      w.int(key - prev)
      w.uint(c)
      prev = key
      n++
    }
  }
  return { bins: n, bytes: w.finish() }
}
