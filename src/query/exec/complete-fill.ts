/**
 * Completion's second half, on the coordinator: the missing columns of the partial record filled
 * from its K nearest rows, each neighbour weighted by its score. Float columns take the weighted
 * mean, with confidence the share of weight within one scale (a tenth of the mean) of it; every
 * other column a weighted vote, with confidence the winner's share of the weight. Support counts
 * the neighbours behind the value. A column no neighbour (with weight) has a value for is null,
 * confidence 0: nothing was learned about it, and the answer says so rather than guess.
 */
import { SCORE_COLUMN, type CompleteNode } from '../model/index.js'
import { fillColumns, type ValueType } from '../validate/index.js'
import { defaultScale } from './complete-score.js'

/** The filled record and, per filled column, how much the neighbours agree (0..1) and how many do. */
export interface Completion {
  record: Record<string, unknown>
  confidence: Record<string, number>
  support: Record<string, number>
}

/** One column's filled value. */
export interface Filled {
  value: unknown
  confidence: number
  support: number
}

/** A neighbour's value of a column and its weight (its score). */
export interface Vote {
  value: unknown
  weight: number
}

const NOTHING: Filled = { value: null, confidence: 0, support: 0 }

/** Float columns: the weighted mean of the non-null values. */
export function fillMean (votes: readonly Vote[]): Filled {
  const xs = votes.filter(v => typeof v.value === 'number')
  let total = 0
  let sum = 0
  for (const v of xs) { total += v.weight; sum += v.weight * (v.value as number) }
  if (!(total > 0)) return NOTHING
  const mean = sum / total
  const scale = defaultScale(mean)
  let near = 0
  let support = 0
  for (const v of xs) {
    if (Math.abs((v.value as number) - mean) <= scale) { near += v.weight; support++ }
  }
  return { value: mean, confidence: near / total, support }
}

/** Every other column: the value with the most weight; a tie goes to the smaller value. */
export function fillVote (votes: readonly Vote[]): Filled {
  const tally = new Map<string, { value: unknown, weight: number, count: number }>()
  let total = 0
  for (const v of votes) {
    if (v.value === null || v.value === undefined) continue
    total += v.weight
    const key = keyOf(v.value)
    const t = tally.get(key)
    if (t === undefined) tally.set(key, { value: v.value, weight: v.weight, count: 1 })
    else { t.weight += v.weight; t.count++ }
  }
  if (!(total > 0)) return NOTHING
  let best: { value: unknown, weight: number, count: number } | undefined
  for (const t of tally.values()) {
    if (best === undefined || t.weight > best.weight || (t.weight === best.weight && compareValues(t.value, best.value) < 0)) best = t
  }
  return { value: best!.value, confidence: best!.weight / total, support: best!.count }
}

/** Equal values, equal keys; a number and the string of its digits apart. */
function keyOf (v: unknown): string {
  return typeof v === 'string' ? `s${v}` : JSON.stringify(v)
}

/** Numbers by value, strings by code units, false before true, anything else by its JSON text. */
export function compareValues (a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b)
  const x = JSON.stringify(a); const y = JSON.stringify(b)
  return x < y ? -1 : x > y ? 1 : 0
}

/**
 * The completion of `node` from its neighbours `rows` (best first, each with `_score`), whose
 * columns are `columns`: the given values as the query wrote them, then each filled column.
 */
export function completion (node: CompleteNode, rows: ReadonlyArray<Record<string, unknown>>, columns: ReadonlyArray<{ name: string, type: ValueType }>): Completion {
  const record = Object.create(null) as Record<string, unknown>
  const confidence = Object.create(null) as Record<string, number>
  const support = Object.create(null) as Record<string, number>
  for (const t of node.terms) record[t.column] = t.value
  for (const c of fillColumns(node, columns)) {
    const votes = rows.map(r => ({ value: r[c.name] ?? null, weight: r[SCORE_COLUMN] as number }))
    const f = c.type === 'float64' || c.type === 'float32' ? fillMean(votes) : fillVote(votes)
    record[c.name] = f.value
    confidence[c.name] = f.confidence
    support[c.name] = f.support
  }
  return { record, confidence, support }
}
