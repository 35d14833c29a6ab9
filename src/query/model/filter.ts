import type { Expr, PlanNode } from './node.js'
import { freeze } from './freeze.js'

/** Keeps the rows for which `predicate` is true (null counts as false, as in SQL). */
export interface FilterNode {
  readonly kind: 'Filter'
  readonly input: PlanNode
  readonly predicate: Expr
}

export function filter (input: PlanNode, predicate: Expr): FilterNode {
  return freeze({ kind: 'Filter', input, predicate })
}
