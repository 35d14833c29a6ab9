import type { Expr, PlanNode } from './node.js'
import { freeze } from './freeze.js'

export interface SortKey {
  readonly expr: Expr
  readonly direction: 'asc' | 'desc'
  /** DuckDB's default is NULLS LAST in both directions; so is ours. */
  readonly nulls: 'first' | 'last'
}

export interface SortNode {
  readonly kind: 'Sort'
  readonly input: PlanNode
  readonly keys: readonly SortKey[]
}

export function sortKey (expr: Expr, direction: 'asc' | 'desc' = 'asc', nulls: 'first' | 'last' = 'last'): SortKey {
  return { expr, direction, nulls }
}

export function sort (input: PlanNode, keys: readonly SortKey[]): SortNode {
  return freeze({ kind: 'Sort', input, keys: keys.map(k => ({ expr: k.expr, direction: k.direction, nulls: k.nulls })) })
}
