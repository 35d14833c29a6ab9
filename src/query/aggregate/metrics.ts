/**
 * Metric aggregations whose partial state is a handful of numbers: count, value_count, sum, min,
 * max, avg, stats, extended_stats. Sums are compensated (Neumaier); extended_stats keeps
 * (n, mean, M2) and merges them the Chan/Welford way, so variance stays exact to rounding even for
 * values around 1e9 with tiny spread, where sum-of-squares minus squared sum cancels to noise.
 */
import type { Aggregator, Batch, Column, Selection } from './types.js'
import { dcount, dfinite, dnum, fail, forEachNumber, selectionSize, toNumber, tuple } from './types.js'

// ---- compensated summation ----

interface Kahan { s: number, c: number }

function kadd (k: Kahan, x: number): void {
  const t = k.s + x
  if (Math.abs(k.s) >= Math.abs(x)) k.c += (k.s - t) + x
  else k.c += (x - t) + k.s
  k.s = t
}
function kvalue (k: Kahan): number { return k.s + k.c }
function kmerge (a: Kahan, b: Kahan): void { kadd(a, b.s); a.c += b.c }

/** Common plumbing: collect reads `field` and delegates to addColumn. */
abstract class FieldMetric<S, R> implements Aggregator<S, R> {
  abstract readonly kind: string
  constructor (readonly field: string) {}
  abstract init (): S
  abstract add (state: S, value: unknown): void
  abstract merge (a: S, b: S): S
  abstract finalize (state: S): R
  abstract encode (state: S): unknown
  abstract decode (value: unknown): S
  addColumn (state: S, column: Column, selection?: Selection | null): void {
    forEachNumber(column, selection, x => { this.addNumber(state, x) })
  }

  protected abstract addNumber (state: S, x: number): void

  collect (state: S, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col !== undefined) this.addColumn(state, col, selection)
  }
}

// ---- count (documents) ----

export interface CountState { n: number }

/** Counts rows (documents), whatever their values. Exact; merge adds. */
export class CountAggregator implements Aggregator<CountState, { value: number }> {
  readonly kind = 'count'
  init (): CountState { return { n: 0 } }
  add (s: CountState): void { s.n++ }
  addColumn (s: CountState, column: Column, selection?: Selection | null): void { s.n += selection == null ? column.length : selection.length }
  collect (s: CountState, batch: Batch, selection?: Selection | null): void { s.n += selectionSize(batch, selection) }
  merge (a: CountState, b: CountState): CountState { a.n += b.n; return a }
  finalize (s: CountState): { value: number } { return { value: s.n } }
  encode (s: CountState): unknown { return s.n }
  decode (v: unknown): CountState { return { n: dcount(this.kind, v, 'count') } }
}

/** Counts present (non-missing) values of a field. Exact; merge adds. */
export class ValueCountAggregator extends FieldMetric<CountState, { value: number }> {
  readonly kind = 'value_count'
  init (): CountState { return { n: 0 } }
  add (s: CountState, v: unknown): void { if (v !== null && v !== undefined && !(typeof v === 'number' && v !== v)) s.n++ }
  override addColumn (s: CountState, column: Column, selection?: Selection | null): void {
    if (selection == null) { for (let i = 0; i < column.length; i++) this.add(s, column[i]) } else { for (let i = 0; i < selection.length; i++) this.add(s, column[selection[i]!]) }
  }

  protected addNumber (s: CountState): void { s.n++ }
  merge (a: CountState, b: CountState): CountState { a.n += b.n; return a }
  finalize (s: CountState): { value: number } { return { value: s.n } }
  encode (s: CountState): unknown { return s.n }
  decode (v: unknown): CountState { return { n: dcount(this.kind, v, 'count') } }
}

// ---- sum ----

export type SumState = Kahan

/** Compensated sum. Merge adds the (sum, compensation) pairs; error ≈ 1 ulp of the total for well-conditioned data. */
export class SumAggregator extends FieldMetric<SumState, { value: number }> {
  readonly kind = 'sum'
  init (): SumState { return { s: 0, c: 0 } }
  add (st: SumState, v: unknown): void { const x = toNumber(v); if (x - x === 0) kadd(st, x) }
  protected addNumber (st: SumState, x: number): void { kadd(st, x) }
  merge (a: SumState, b: SumState): SumState { kmerge(a, b); return a }
  finalize (st: SumState): { value: number } { return { value: kvalue(st) } }
  encode (st: SumState): unknown { return [st.s, st.c] }
  decode (v: unknown): SumState {
    const t = tuple(this.kind, v, 2)
    return { s: dnum(this.kind, t[0], 'sum'), c: dnum(this.kind, t[1], 'compensation') }
  }
}

// ---- min / max ----

export interface ExtremeState { v: number }

/** Minimum (or maximum). Exact; merge takes the min (max). `value` is null when there were no values. */
export class ExtremeAggregator extends FieldMetric<ExtremeState, { value: number | null }> {
  readonly kind: 'min' | 'max'
  constructor (field: string, private readonly isMax: boolean) {
    super(field)
    this.kind = isMax ? 'max' : 'min'
  }

  init (): ExtremeState { return { v: this.isMax ? -Infinity : Infinity } }
  add (s: ExtremeState, v: unknown): void { const x = toNumber(v); if (x - x === 0) this.addNumber(s, x) }
  protected addNumber (s: ExtremeState, x: number): void {
    if (this.isMax ? x > s.v : x < s.v) s.v = x + 0 // + 0: -0 becomes 0 (msgpack does not keep the sign of zero)
  }

  merge (a: ExtremeState, b: ExtremeState): ExtremeState { this.addNumber(a, b.v); return a }
  finalize (s: ExtremeState): { value: number | null } {
    return { value: s.v === (this.isMax ? -Infinity : Infinity) ? null : s.v }
  }

  encode (s: ExtremeState): unknown { return s.v }
  decode (v: unknown): ExtremeState { return { v: dnum(this.kind, v, 'value') } }
}

// ---- avg / stats ----

export interface StatsState extends Kahan { n: number, min: number, max: number }

export interface StatsResult { count: number, min: number | null, max: number | null, sum: number, avg: number | null }

/** count, min, max, sum, avg. Merge: counts add, sums add (compensated), min/max take the extreme. */
export class StatsAggregator extends FieldMetric<StatsState, StatsResult> {
  readonly kind: string = 'stats'
  init (): StatsState { return { n: 0, s: 0, c: 0, min: Infinity, max: -Infinity } }
  add (st: StatsState, v: unknown): void { const x = toNumber(v); if (x - x === 0) this.addNumber(st, x) }
  protected addNumber (st: StatsState, x: number): void {
    st.n++
    kadd(st, x)
    if (x < st.min) st.min = x + 0
    if (x > st.max) st.max = x + 0
  }

  merge (a: StatsState, b: StatsState): StatsState {
    a.n += b.n
    kmerge(a, b)
    if (b.min < a.min) a.min = b.min
    if (b.max > a.max) a.max = b.max
    return a
  }

  finalize (st: StatsState): StatsResult {
    const sum = kvalue(st)
    return st.n === 0
      ? { count: 0, min: null, max: null, sum: 0, avg: null }
      : { count: st.n, min: st.min, max: st.max, sum, avg: sum / st.n }
  }

  encode (st: StatsState): unknown { return [st.n, st.s, st.c, st.min, st.max] }
  decode (v: unknown): StatsState {
    const t = tuple(this.kind, v, 5)
    return { n: dcount(this.kind, t[0], 'count'), s: dnum(this.kind, t[1], 'sum'), c: dnum(this.kind, t[2], 'compensation'), min: dnum(this.kind, t[3], 'min'), max: dnum(this.kind, t[4], 'max') }
  }
}

/** avg = sum / count, shipped as (count, sum), never as an average of averages. */
export class AvgAggregator extends StatsAggregator {
  override readonly kind = 'avg'
  override finalize (st: StatsState): StatsResult & { value: number | null } {
    const r = super.finalize(st)
    return { ...r, value: r.avg }
  }
}

// ---- extended_stats ----

/** mean is carried as the unevaluated sum mean + meanC (a double-double), so that at 1e9 its rounding does not leak into M2. */
export interface MomentState extends Kahan { n: number, mean: number, meanC: number, m2: number, min: number, max: number }

function addMean (st: MomentState, inc: number): void {
  const t = st.mean + inc
  st.meanC += Math.abs(st.mean) >= Math.abs(inc) ? (st.mean - t) + inc : (inc - t) + st.mean
  st.mean = t
}

export interface ExtendedStatsResult extends StatsResult {
  sum_of_squares: number | null
  variance: number | null
  variance_sample: number | null
  std_deviation: number | null
  std_deviation_sample: number | null
  std_deviation_bounds: { upper: number | null, lower: number | null }
}

/**
 * stats plus variance (population and sample), standard deviation, sum of squares and
 * mean ± sigma·std bounds, from (n, mean, M2). Add is Welford's update; merge is Chan et al.'s
 * pairwise formula: n = na + nb, δ = mean_b − mean_a, mean = mean_a + δ·nb/n,
 * M2 = M2a + M2b + δ²·na·nb/n. Relative error of the variance stays near machine epsilon times a
 * small factor, independent of the magnitude of the mean (the mean itself is kept as a double-double
 * so its rounding at large magnitudes does not feed back into M2).
 */
export class ExtendedStatsAggregator extends FieldMetric<MomentState, ExtendedStatsResult> {
  readonly kind = 'extended_stats'
  constructor (field: string, private readonly sigma = 2) { super(field) }
  init (): MomentState { return { n: 0, mean: 0, meanC: 0, m2: 0, s: 0, c: 0, min: Infinity, max: -Infinity } }
  add (st: MomentState, v: unknown): void { const x = toNumber(v); if (x - x === 0) this.addNumber(st, x) }
  protected addNumber (st: MomentState, x: number): void {
    const n = ++st.n
    const d = (x - st.mean) - st.meanC
    addMean(st, d / n)
    st.m2 += d * ((x - st.mean) - st.meanC)
    kadd(st, x)
    if (x < st.min) st.min = x + 0
    if (x > st.max) st.max = x + 0
  }

  merge (a: MomentState, b: MomentState): MomentState {
    if (b.n === 0) return a
    if (a.n === 0) { Object.assign(a, b); return a }
    const n = a.n + b.n
    const d = (b.mean - a.mean) + (b.meanC - a.meanC)
    addMean(a, d * (b.n / n))
    a.m2 += b.m2 + d * d * (a.n * b.n / n)
    a.n = n
    kmerge(a, b)
    if (b.min < a.min) a.min = b.min
    if (b.max > a.max) a.max = b.max
    return a
  }

  finalize (st: MomentState): ExtendedStatsResult {
    if (st.n === 0) {
      return { count: 0, min: null, max: null, sum: 0, avg: null, sum_of_squares: null, variance: null, variance_sample: null, std_deviation: null, std_deviation_sample: null, std_deviation_bounds: { upper: null, lower: null } }
    }
    const variance = Math.max(0, st.m2 / st.n)
    const varianceSample = st.n > 1 ? Math.max(0, st.m2 / (st.n - 1)) : null
    const std = Math.sqrt(variance)
    const avg = st.mean + st.meanC
    return {
      count: st.n,
      min: st.min,
      max: st.max,
      sum: kvalue(st),
      avg,
      sum_of_squares: st.m2 + st.n * avg * avg,
      variance,
      variance_sample: varianceSample,
      std_deviation: std,
      std_deviation_sample: varianceSample === null ? null : Math.sqrt(varianceSample),
      std_deviation_bounds: { upper: avg + this.sigma * std, lower: avg - this.sigma * std }
    }
  }

  encode (st: MomentState): unknown { return [st.n, st.mean, st.meanC, st.m2, st.s, st.c, st.min, st.max] }
  decode (v: unknown): MomentState {
    const k = this.kind
    const t = tuple(k, v, 8)
    const m2 = dfinite(k, t[3], 'M2')
    if (m2 < 0) fail(k, 'M2 must not be negative')
    return { n: dcount(k, t[0], 'count'), mean: dfinite(k, t[1], 'mean'), meanC: dfinite(k, t[2], 'mean compensation'), m2, s: dnum(k, t[4], 'sum'), c: dnum(k, t[5], 'compensation'), min: dnum(k, t[6], 'min'), max: dnum(k, t[7], 'max') }
  }
}
