/**
 * Per-group accumulators of the SQL aggregate functions. Each keeps the partial state of every
 * group of one aggregate, indexed by group id, in typed arrays where the state is a few numbers
 * (count, sum, avg, min, max: one loop over the batch, no call per row), and in the mergeable
 * Aggregator states of src/query/aggregate where it is a sketch (approx_count_distinct: HyperLogLog;
 * approx_quantile: DDSketch; var_pop, stddev_pop: (n, mean, M2) merged Chan's way).
 *
 * The same class serves both sides: a data peer accumulates rows and encodes each group's state;
 * the coordinator merges encoded states from every partition and finalizes.
 */
import { gather, type ColumnVector, type NumVector } from '../../columnar/index.js'
import { CardinalityAggregator, createAggregator, hash53, type Aggregator, type CardinalityState } from '../aggregate/index.js'
import type { AggregateItem } from '../model/index.js'
import { QueryExecError } from './errors.js'
import { decodeState } from './json-aggs.js'

export interface GroupAccumulator {
  /** Makes room for groups 0..groups-1. */
  grow (groups: number): void
  /**
   * Adds row i of `values` (null for count(*)) to group gids[i], for i < n; with `sel`, row
   * sel[i] of `values` (the batch is filtered by a selection rather than copied). Only
   * accumulators with `selects` take a selection; others get a gathered vector.
   */
  add (gids: Int32Array, values: ColumnVector | null, n: number, sel?: Uint32Array): void
  readonly selects?: boolean
  /**
   * For accumulators whose state is typed arrays: what a fused loop (group.ts) must do for this
   * accumulator over `values`, or undefined when it cannot be fused (then `add` runs).
   */
  fuse?(values: ColumnVector | null): FusedStep | undefined
  encode (g: number): unknown
  /** Merges an encoded state (from encode, possibly on another peer) into group g. */
  mergeEncoded (g: number, encoded: unknown): void
  finalize (g: number): unknown
  /** Approximate bytes held, for the query's memory budget. */
  bytes (): number
}

/**
 * One accumulator's part of a fused aggregation loop: its kind, the column it reads (float64
 * values, or string codes for count) and its state arrays, current as of the call (they are
 * replaced when groups grow, so a step is built per batch). `dense`: the column has no NULL
 * (NumVector.nulls is 0); `exact`: its values are int32s (NumVector.int32). A loop that counts
 * its rows per group once (kernel.ts, "batch counts") uses both to do less a row: a dense
 * column's counts come from those, an exact one's sum goes to a plain partial (`arrays[3]`,
 * zero between loops) that foldSteps adds to the compensated sum afterwards.
 */
export type FusedStep =
  | { kind: 'countAll', arrays: [Float64Array] }
  | { kind: 'countNum', column: Float64Array, codes?: Codes, dense: boolean, arrays: [Float64Array] }
  | { kind: 'countStr', column: Int32Array, arrays: [Float64Array] }
  | { kind: 'sum', column: Float64Array, codes?: Codes, dense: boolean, exact: boolean, arrays: [Float64Array, Float64Array, Float64Array, Float64Array] }
  | { kind: 'min' | 'max', column: Float64Array, codes?: Codes, arrays: [Float64Array] }

/** A coded column's codes (NumVector.coded): a step with them reads row r as column[codes[r]]. */
type Codes = Uint8Array | Uint16Array

/** What a step reads of a number column: its values, or (coded) its codes and their table. */
function numColumn (v: NumVector): { column: Float64Array, codes?: Codes } {
  return v.coded !== undefined ? { column: v.coded.dict, codes: v.coded.codes } : { column: v.values }
}

/**
 * Most rows one loop with batch counts may run: the plain partial of an exact step holds at most
 * this many int32s, below 2^52 in magnitude, so it is exact (and so are the counts).
 */
export const MAX_FOLDED_ROWS = 1 << 21

/**
 * After a loop with batch counts (`counts[g]`: rows it added to group g, for g < groups): adds
 * them to every step that took its counts from them, folds the exact partial sums into the
 * compensated ones (Knuth's TwoSum, as the loops' own sums), and zeroes what it read.
 */
export function foldSteps (steps: readonly FusedStep[], counts: Float64Array, groups: number): void {
  for (const step of steps) {
    switch (step.kind) {
      case 'countAll': addCounts(step.arrays[0], counts, groups); break
      case 'countNum': if (step.dense) addCounts(step.arrays[0], counts, groups); break
      case 'sum': {
        const [S, C, N, P] = step.arrays
        if (step.dense) addCounts(N, counts, groups)
        if (!step.exact) break
        for (let g = 0; g < groups; g++) {
          const x = P[g]!
          if (x === 0) continue
          const s = S[g]!
          const t = s + x
          const bp = t - s
          C[g]! += (s - (t - bp)) + (x - bp)
          S[g] = t
          P[g] = 0
        }
        break
      }
      case 'countStr': case 'min': case 'max': break
    }
  }
  counts.fill(0, 0, groups)
}

function addCounts (into: Float64Array, counts: Float64Array, groups: number): void {
  for (let g = 0; g < groups; g++) into[g]! += counts[g]!
}

function growF64 (a: Float64Array, n: number, fill: number): Float64Array {
  if (a.length >= n) return a
  const b = new Float64Array(Math.max(n, a.length * 2, 16))
  b.set(a)
  b.fill(fill, a.length)
  return b
}

function num (v: unknown, what: string): number {
  if (typeof v !== 'number') throw new QueryExecError('BAD_PARTIAL', `${what}: expected a number`)
  return v
}

/** count(*) and count(x). */
class CountAcc implements GroupAccumulator {
  private n: Float64Array = new Float64Array(0)
  constructor (private readonly star: boolean) {}
  grow (groups: number): void { this.n = growF64(this.n, groups, 0) }
  readonly selects = true
  add (gids: Int32Array, values: ColumnVector | null, n: number, sel?: Uint32Array): void {
    const c = this.n
    if (this.star || values === null) { for (let i = 0; i < n; i++) c[gids[i]!]!++; return }
    if (sel !== undefined) {
      if (values.tag === 'num') { const v = values.values; for (let i = 0; i < n; i++) { const x = v[sel[i]!]!; if (x === x) c[gids[i]!]!++ } return }
      if (values.tag === 'str') { const v = values.codes; for (let i = 0; i < n; i++) if (v[sel[i]!]! >= 0) c[gids[i]!]!++; return }
      values = gather(values, sel)
    }
    switch (values.tag) {
      case 'num': { const v = values.values; for (let i = 0; i < n; i++) if (v[i] === v[i]) c[gids[i]!]!++; break }
      case 'str': { const v = values.codes; for (let i = 0; i < n; i++) if (v[i]! >= 0) c[gids[i]!]!++; break }
      case 'vec': { const v = values.valid; for (let i = 0; i < n; i++) if (v[i] === 1) c[gids[i]!]!++; break }
      case 'any': { const v = values.values; for (let i = 0; i < n; i++) if (v[i] !== null && v[i] !== undefined) c[gids[i]!]!++; break }
    }
  }

  fuse (values: ColumnVector | null): FusedStep | undefined {
    if (this.star || values === null) return { kind: 'countAll', arrays: [this.n] }
    if (values.tag === 'num') return { kind: 'countNum', ...numColumn(values), dense: values.nulls === 0, arrays: [this.n] }
    if (values.tag === 'str') return { kind: 'countStr', column: values.codes, arrays: [this.n] }
    return undefined
  }

  encode (g: number): unknown { return this.n[g] }
  mergeEncoded (g: number, e: unknown): void { this.n[g]! += num(e, 'count') }
  finalize (g: number): unknown { return this.n[g] }
  bytes (): number { return this.n.length * 8 }
}

/**
 * sum and avg: a Neumaier-compensated sum and a count per group (sum of no values is NULL,
 * as in SQL). avg is sum / count at the end, never an average of averages.
 */
class SumAcc implements GroupAccumulator {
  private s: Float64Array = new Float64Array(0)
  private c: Float64Array = new Float64Array(0)
  private n: Float64Array = new Float64Array(0)
  /** A fused loop's plain partial sums of int32s (see FusedStep), zero outside one. */
  private p: Float64Array = new Float64Array(0)
  constructor (private readonly avg: boolean) {}
  grow (groups: number): void {
    this.s = growF64(this.s, groups, 0)
    this.c = growF64(this.c, groups, 0)
    this.n = growF64(this.n, groups, 0)
    this.p = growF64(this.p, groups, 0)
  }

  private addOne (g: number, x: number): void {
    const s = this.s[g]!
    const t = s + x
    if (Math.abs(s) >= Math.abs(x)) this.c[g]! += (s - t) + x
    else this.c[g]! += (x - t) + s
    this.s[g] = t
    this.n[g]!++
  }

  readonly selects = true
  add (gids: Int32Array, values: ColumnVector | null, n: number, sel?: Uint32Array): void {
    if (values === null || values.tag !== 'num') return
    const v = values.values
    const S = this.s; const C = this.c; const N = this.n
    for (let i = 0; i < n; i++) {
      const x = v[sel === undefined ? i : sel[i]!]!
      if (x !== x) continue
      const g = gids[i]!
      const s = S[g]!
      const t = s + x
      if (Math.abs(s) >= Math.abs(x)) C[g]! += (s - t) + x
      else C[g]! += (x - t) + s
      S[g] = t
      N[g]!++
    }
  }

  fuse (values: ColumnVector | null): FusedStep | undefined {
    return values !== null && values.tag === 'num'
      ? { kind: 'sum', ...numColumn(values), dense: values.nulls === 0, exact: values.int32 === true, arrays: [this.s, this.c, this.n, this.p] }
      : undefined
  }

  encode (g: number): unknown { return [this.s[g], this.c[g], this.n[g]] }
  mergeEncoded (g: number, e: unknown): void {
    if (!Array.isArray(e) || e.length !== 3) throw new QueryExecError('BAD_PARTIAL', 'sum: expected [sum, compensation, count]')
    const n = num(e[2], 'sum count')
    if (n === 0) return
    this.addOne(g, num(e[0], 'sum'))
    this.c[g]! += num(e[1], 'sum compensation')
    this.n[g]! += n - 1
  }

  finalize (g: number): unknown {
    const n = this.n[g]!
    if (n === 0) return null
    const sum = this.s[g]! + this.c[g]!
    return this.avg ? sum / n : sum
  }

  bytes (): number { return this.s.length * 32 }
}

/** min and max over numbers (float64 arrays) or strings (per-group values). */
class ExtremeAcc implements GroupAccumulator {
  private v: Float64Array = new Float64Array(0)
  private strs: Array<string | null> = []
  constructor (private readonly isMax: boolean, private readonly strings: boolean) {}
  grow (groups: number): void {
    if (this.strings) { while (this.strs.length < groups) this.strs.push(null); return }
    this.v = growF64(this.v, groups, NaN)
  }

  private better (a: string, b: string | null): boolean { return b === null || (this.isMax ? a > b : a < b) }

  readonly selects = true
  add (gids: Int32Array, values: ColumnVector | null, n: number, sel?: Uint32Array): void {
    if (values === null) return
    if (values.tag === 'str') {
      const codes = values.codes; const dict = values.dict
      for (let i = 0; i < n; i++) {
        const c = codes[sel === undefined ? i : sel[i]!]!
        if (c < 0) continue
        const g = gids[i]!
        if (this.better(dict[c]!, this.strs[g]!)) this.strs[g] = dict[c]!
      }
      return
    }
    if (values.tag !== 'num') return
    const v = values.values; const out = this.v
    if (this.isMax) {
      for (let i = 0; i < n; i++) { const x = v[sel === undefined ? i : sel[i]!]!; const g = gids[i]!; const cur = out[g]!; if (x > cur || (cur !== cur && x === x)) out[g] = x }
    } else {
      for (let i = 0; i < n; i++) { const x = v[sel === undefined ? i : sel[i]!]!; const g = gids[i]!; const cur = out[g]!; if (x < cur || (cur !== cur && x === x)) out[g] = x }
    }
  }

  fuse (values: ColumnVector | null): FusedStep | undefined {
    return !this.strings && values !== null && values.tag === 'num' ? { kind: this.isMax ? 'max' : 'min', ...numColumn(values), arrays: [this.v] } : undefined
  }

  encode (g: number): unknown {
    if (this.strings) return this.strs[g]
    const x = this.v[g]!
    return x === x ? x : null
  }

  mergeEncoded (g: number, e: unknown): void {
    if (e === null) return
    if (this.strings) {
      if (typeof e !== 'string') throw new QueryExecError('BAD_PARTIAL', 'min/max: expected a string')
      if (this.better(e, this.strs[g]!)) this.strs[g] = e
      return
    }
    const x = num(e, 'min/max')
    const cur = this.v[g]!
    if (cur !== cur || (this.isMax ? x > cur : x < cur)) this.v[g] = x
  }

  finalize (g: number): unknown { return this.encode(g) }
  bytes (): number { return this.strings ? this.strs.length * 16 : this.v.length * 8 }
}

/** count(DISTINCT x): exact, a set of values per group (bounded by the memory budget). */
class DistinctAcc implements GroupAccumulator {
  private sets: Array<Set<number | string>> = []
  private size = 0
  grow (groups: number): void { while (this.sets.length < groups) this.sets.push(new Set()) }
  private put (g: number, v: number | string): void {
    const s = this.sets[g]!
    const before = s.size
    s.add(v)
    if (s.size !== before) this.size++
  }

  add (gids: Int32Array, values: ColumnVector | null, n: number): void {
    if (values === null) return
    if (values.tag === 'num') {
      const v = values.values
      for (let i = 0; i < n; i++) { const x = v[i]!; if (x === x) this.put(gids[i]!, x + 0) }
    } else if (values.tag === 'str') {
      const codes = values.codes; const dict = values.dict
      for (let i = 0; i < n; i++) { const c = codes[i]!; if (c >= 0) this.put(gids[i]!, dict[c]!) }
    } else {
      throw new QueryExecError('UNSUPPORTED', 'count(DISTINCT) of a list or vector column')
    }
  }

  encode (g: number): unknown { return [...this.sets[g]!] }
  mergeEncoded (g: number, e: unknown): void {
    if (!Array.isArray(e)) throw new QueryExecError('BAD_PARTIAL', 'count(DISTINCT): expected an array')
    for (const v of e) {
      if (typeof v !== 'number' && typeof v !== 'string') throw new QueryExecError('BAD_PARTIAL', 'count(DISTINCT): expected numbers or strings')
      this.put(g, v)
    }
  }

  finalize (g: number): unknown { return this.sets[g]!.size }
  bytes (): number { return this.size * 48 + this.sets.length * 64 }
}

/**
 * Any aggregation of src/query/aggregate, one state per group: sketches and moments. Values reach
 * the Aggregator one by one (its add), which is fine for these kinds: their per-value work (a hash,
 * a log, a Welford step) dwarfs the call.
 */
class SketchAcc implements GroupAccumulator {
  protected states: unknown[] = []
  constructor (private readonly agg: Aggregator<unknown, unknown>, private readonly result: (r: unknown) => unknown, private readonly stateBytes: number) {}

  grow (groups: number): void {
    while (this.states.length < groups) this.states.push(this.agg.init())
  }

  add (gids: Int32Array, values: ColumnVector | null, n: number): void {
    if (values === null) return
    const agg = this.agg; const st = this.states
    if (values.tag === 'num') {
      const v = values.values
      for (let i = 0; i < n; i++) { const x = v[i]!; if (x === x) agg.add(st[gids[i]!], x) }
    } else if (values.tag === 'str') {
      const codes = values.codes; const dict = values.dict
      for (let i = 0; i < n; i++) { const c = codes[i]!; if (c >= 0) agg.add(st[gids[i]!], dict[c]) }
    }
  }

  encode (g: number): unknown { return this.agg.encode(this.states[g]) }
  mergeEncoded (g: number, e: unknown): void {
    this.states[g] = this.agg.merge(this.states[g], decodeState(() => this.agg.decode(e)))
  }

  finalize (g: number): unknown { return this.result(this.agg.finalize(this.states[g])) }
  bytes (): number { return this.states.length * this.stateBytes }
}

/**
 * approx_count_distinct: hashing and the sketch's own set or registers are most of its cost, so a
 * value is hashed once per batch (a string once per dictionary entry, a number once per distinct
 * value while values repeat enough for the memo to pay; a column of unique values turns it off)
 * and is not added again to the group it was last added to in this batch (adding a hash the
 * sketch holds changes nothing): without GROUP BY, a value reaches the sketch once per batch.
 */
class CardinalityAcc extends SketchAcc {
  private readonly card: CardinalityAggregator
  /** Memo slots of small non-negative integers, by value (-1: none this batch). */
  private small: Int32Array = new Int32Array(0)
  constructor (agg: CardinalityAggregator) {
    super(agg, r => (r as { value: number }).value, 256)
    this.card = agg
  }

  override add (gids: Int32Array, values: ColumnVector | null, n: number): void {
    if (values === null) return
    const st = this.states as CardinalityState[]
    const card = this.card
    if (values.tag === 'str') {
      const dict = values.dict
      const hashes = new Float64Array(dict.length).fill(-2)
      const lastGroup = new Int32Array(dict.length).fill(-1)
      const codes = values.codes
      for (let i = 0; i < n; i++) {
        const c = codes[i]!
        if (c < 0) continue
        const g = gids[i]!
        if (lastGroup[c] === g) continue
        lastGroup[c] = g
        let h = hashes[c]!
        if (h === -2) h = hashes[c] = hash53(dict[c])
        card.addHash(st[g]!, h)
      }
      return
    }
    if (values.tag !== 'num') return
    if (values.coded !== undefined) { this.addCoded(gids, values.coded, n); return }
    const v = values.values
    // Per memo slot: the value's hash, and the last group it was added to.
    const hashes: number[] = []
    const lastGroup: number[] = []
    const usedSmall: number[] = []
    if (this.small.length === 0) this.small = new Int32Array(SMALL_MEMO).fill(-1)
    const small = this.small
    let memo: Map<number, number> | null = new Map()
    for (let i = 0; i < n; i++) {
      const x = v[i]!
      if (x !== x) continue
      const g = gids[i]!
      let slot: number | undefined
      if (x >= 0 && x < SMALL_MEMO && (x | 0) === x) {
        slot = small[x]!
        if (slot < 0) { slot = small[x] = hashes.length; hashes.push(hash53(x)); lastGroup.push(-1); usedSmall.push(x) }
      } else if (memo !== null) {
        slot = memo.get(x)
        if (slot === undefined) {
          slot = hashes.length
          hashes.push(hash53(x))
          lastGroup.push(-1)
          memo.set(x, slot)
          // Mostly distinct values: the memo only costs; drop it for the rest of the batch.
          if (memo.size > 4096 && memo.size * 2 > i) memo = null
        }
      } else {
        card.addHash(st[g]!, hash53(x))
        continue
      }
      if (lastGroup[slot] === g) continue
      lastGroup[slot] = g
      card.addHash(st[g]!, hashes[slot]!)
    }
    for (const x of usedSmall) small[x] = -1
  }

  /** A coded column (NumVector.coded): as a string column, a hash per value of its table (-3: NaN, NULL). */
  private addCoded (gids: Int32Array, coded: NonNullable<NumVector['coded']>, n: number): void {
    const st = this.states as CardinalityState[]
    const { codes, dict } = coded
    const hashes = new Float64Array(dict.length).fill(-2)
    const lastGroup = new Int32Array(dict.length).fill(-1)
    for (let i = 0; i < n; i++) {
      const c = codes[i]!
      const g = gids[i]!
      if (lastGroup[c] === g) continue
      lastGroup[c] = g
      let h = hashes[c]!
      if (h === -2) { const x = dict[c]!; h = hashes[c] = x !== x ? -3 : hash53(x) }
      if (h !== -3) this.card.addHash(st[g]!, h)
    }
  }
}

/** Small integers whose memo slot is found by index rather than in a Map (codes, categories, years). */
const SMALL_MEMO = 65_536

/** The accumulator of one SQL aggregate. `argIsString`: the argument is utf8 (min/max compare strings). */
export function createAccumulator (item: AggregateItem, argIsString: boolean, argIsInteger: boolean): GroupAccumulator {
  switch (item.fn) {
    case 'count': return item.distinct ? new DistinctAcc() : new CountAcc(item.args.length === 0)
    case 'sum': return new SumAcc(false)
    case 'avg': return new SumAcc(true)
    case 'min': return new ExtremeAcc(false, argIsString)
    case 'max': return new ExtremeAcc(true, argIsString)
    case 'var_pop':
    case 'stddev_pop': {
      const sqrt = item.fn === 'stddev_pop'
      return new SketchAcc(createAggregator({ kind: 'extended_stats', field: '_' }), r => {
        const v = (r as { variance: number | null }).variance
        return v === null ? null : sqrt ? Math.sqrt(v) : v
      }, 64)
    }
    case 'approx_count_distinct':
      return new CardinalityAcc(new CardinalityAggregator('_'))
    case 'approx_quantile': {
      const q = item.params.quantile as number
      return new SketchAcc(createAggregator({ kind: 'percentiles', field: '_', percents: [q * 100] }), r => {
        const v = Object.values((r as { values: Record<string, number | null> }).values)[0] ?? null
        // DuckDB answers an integer column's quantile as an integer.
        return v === null ? null : argIsInteger ? Math.round(v) : v
      }, 1024)
    }
  }
}
