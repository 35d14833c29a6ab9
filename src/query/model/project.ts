import type { Expr, PlanNode } from './node.js'
import { freeze } from './freeze.js'

export interface ProjectItem {
  readonly expr: Expr
  /** The output column's name; unique within the node. */
  readonly alias: string
}

/** Computes the output columns, in order. */
export interface ProjectNode {
  readonly kind: 'Project'
  readonly input: PlanNode
  readonly items: readonly ProjectItem[]
}

export function project (input: PlanNode, items: ReadonlyArray<{ expr: Expr, alias: string }>): ProjectNode {
  return freeze({ kind: 'Project', input, items: items.map(i => ({ expr: i.expr, alias: i.alias })) })
}
