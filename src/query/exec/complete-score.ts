/**
 * Completion's score of each row against a partial record: per given column a similarity in
 * [0, 1], then their weighted mean. A NULL stored value is similarity 0 (nothing agrees with a
 * missing value). Vectors: cosine mapped to (1 + cos) / 2, computed as recall computes it (the
 * given vector in float32); a zero vector is 0. Numbers: exp(-|a - b| / scale). Every other type
 * (utf8, bool, timestamp, date, lists): 1 when equal, else 0. One loop per column and batch, no
 * object per row; the heap of the best K is recall's (topk.ts).
 */
import type { ColumnBatch, ColumnVector, ValueType } from '../../columnar/index.js'
import { SCORE_COLUMN, column, type CompleteNode, type SortKey } from '../model/index.js'
import { givenValue, isNumericType, type GivenValue } from '../validate/index.js'
import { QueryExecError, type MemoryBudget } from './errors.js'
import { keepBest, scoreVectors } from './topk.js'

/** Completion's answer order: score, best first, then id ascending (a deterministic answer whatever the partitions). */
export const COMPLETE_ORDER: readonly SortKey[] = [
  { expr: column(SCORE_COLUMN), direction: 'desc', nulls: 'last' },
  { expr: column('id'), direction: 'asc', nulls: 'last' }
]

/** The scale of a number when the query gives none: a tenth of its size, never 0. */
export function defaultScale (value: number): number {
  return Math.max(Math.abs(value) / 10, 1e-9)
}

/** A given column ready to score: its value as the column stores it. */
export interface ScoringTerm {
  column: string
  value: GivenValue
  weight: number
  scale: number | null
}

/** The node's terms with their values normalized against the column types; throws on one that does not fit (validation let it through: a bug). */
export function scoringTerms (node: CompleteNode, columnType: (name: string) => ValueType | undefined): ScoringTerm[] {
  return node.terms.map(t => {
    const type = columnType(t.column)
    const v = type === undefined || type === 'null' ? undefined : givenValue(type, t.value)
    if (v === undefined || 'bad' in v) throw new QueryExecError('BAD_FRAGMENT', `complete: the given value of ${t.column} does not fit its column${v !== undefined && 'bad' in v ? `: ${v.bad}` : ''}`)
    return { column: t.column, value: v.ok, weight: t.weight, scale: t.scale }
  })
}

/** Every row's score: the weighted mean of its similarities, summed in the record's order. */
export function scoreRecords (terms: readonly ScoringTerm[], batch: ColumnBatch): Float64Array {
  const n = batch.length
  const sum = new Float64Array(n)
  let totalWeight = 0
  for (const t of terms) {
    totalWeight += t.weight
    if (t.weight === 0) continue
    const v = batch.columns.get(t.column)
    if (v === undefined) throw new QueryExecError('BAD_FRAGMENT', `complete: no column ${t.column}`)
    const sim = similarity(v, t)
    for (let i = 0; i < n; i++) sum[i] += t.weight * sim[i]!
  }
  if (!(totalWeight > 0)) throw new QueryExecError('BAD_FRAGMENT', 'complete: every weight is 0')
  for (let i = 0; i < n; i++) sum[i] /= totalWeight
  return sum
}

/** One given column's similarity with every row of its vector, each in [0, 1]. */
export function similarity (v: ColumnVector, t: ScoringTerm): Float64Array {
  switch (v.tag) {
    case 'vec': {
      const cos = scoreVectors(v, t.value as readonly number[], 'cosine')
      const out = new Float64Array(cos.length)
      // NaN: a NULL or zero vector. Rounding may take |cos| a hair past 1.
      for (let i = 0; i < cos.length; i++) { const c = cos[i]!; out[i] = c !== c ? 0 : Math.min(1, Math.max(0, (1 + c) / 2)) }
      return out
    }
    case 'num': {
      const x = v.values
      const out = new Float64Array(x.length)
      if (isNumericType(v.type)) {
        const a = t.value as number
        const scale = t.scale ?? defaultScale(a)
        for (let i = 0; i < x.length; i++) { const b = x[i]!; out[i] = b !== b ? 0 : Math.exp(-Math.abs(a - b) / scale) }
      } else {
        // bool as 1/0, timestamps in ms, dates in days: as the batch holds them.
        const a = typeof t.value === 'boolean' ? (t.value ? 1 : 0) : t.value as number
        for (let i = 0; i < x.length; i++) out[i] = x[i] === a ? 1 : 0
      }
      return out
    }
    case 'str': {
      // Once per dictionary entry, then per row by code.
      const hit = new Uint8Array(v.dict.length)
      for (let c = 0; c < v.dict.length; c++) hit[c] = v.dict[c] === t.value ? 1 : 0
      const out = new Float64Array(v.codes.length)
      for (let i = 0; i < out.length; i++) { const c = v.codes[i]!; out[i] = c < 0 ? 0 : hit[c]! }
      return out
    }
    case 'any': {
      const want = t.value as readonly unknown[]
      return Float64Array.from(v.values, x => Array.isArray(x) && sameList(x, want) ? 1 : 0)
    }
  }
}

function sameList (a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Collects batches and keeps the K rows nearest the partial record, with their `_score`. */
export function completeSearch (node: CompleteNode, columnType: (name: string) => ValueType | undefined, budget?: MemoryBudget): { push: (b: ColumnBatch) => void, result: () => ColumnBatch } {
  const terms = scoringTerms(node, columnType)
  const best = keepBest({ k: node.k, lowerIsBetter: false, tieColumn: 'id', order: COMPLETE_ORDER }, budget)
  return {
    push: b => { best.push(b, scoreRecords(terms, b)) },
    result: () => best.result()
  }
}
