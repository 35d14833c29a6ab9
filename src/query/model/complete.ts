import type { PlanNode } from './node.js'
import { freeze } from './freeze.js'

/**
 * A value of a partial record as the query wrote it (JSON): a string, number or boolean for a
 * scalar column (timestamps as ms or ISO text, dates as days or YYYY-MM-DD, int64 beyond 2^53 as
 * a decimal string), an array for a list or vector column. validate/complete.ts says which fit
 * which column and normalizes them.
 */
export type CompleteValue = string | number | boolean | readonly CompleteValue[]

/** One given column of the partial record, with how much it counts and, for a number, its scale. */
export interface CompleteTerm {
  readonly column: string
  readonly value: CompleteValue
  /** Weight in the score's weighted mean (>= 0, default 1). */
  readonly weight: number
  /** Numbers only: the difference at which similarity falls to 1/e; null: max(|value| / 10, 1e-9). */
  readonly scale: number | null
}

/**
 * Pattern completion: the `k` rows of the input most similar to a partial record, best first (by
 * score, then id ascending), each with its `_score` in [0, 1]: the weighted mean over the given
 * columns of a per-column similarity. The coordinator then fills the `fill` columns (null: every
 * column not given, except id and vectors) from those rows, each with a confidence. Output: the
 * input's columns plus `_score`, like TopK; the filled record travels beside the rows.
 *
 * Terms are an array, not an object keyed by column: a plan travels as msgpack, and a column
 * named `__proto__` must stay a column.
 */
export interface CompleteNode {
  readonly kind: 'Complete'
  readonly input: PlanNode
  readonly terms: readonly CompleteTerm[]
  readonly fill: readonly string[] | null
  readonly k: number
}

/** Neighbours when the query names no k. */
export const DEFAULT_COMPLETE_K = 5

export function complete (input: PlanNode, opts: { terms: ReadonlyArray<{ column: string, value: CompleteValue, weight?: number, scale?: number | null }>, fill?: readonly string[] | null, k?: number }): CompleteNode {
  return freeze({
    kind: 'Complete',
    input,
    terms: opts.terms.map(t => ({ column: t.column, value: copyValue(t.value), weight: t.weight ?? 1, scale: t.scale ?? null })),
    fill: opts.fill === undefined || opts.fill === null ? null : [...opts.fill],
    k: opts.k ?? DEFAULT_COMPLETE_K
  })
}

/** A copy the caller cannot change after the node is frozen. */
function copyValue (v: CompleteValue): CompleteValue {
  return Array.isArray(v) ? v.map(copyValue) : v
}
