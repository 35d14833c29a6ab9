import type { AggregateNode } from './aggregate.js'
import type { BetweenNode } from './between.js'
import type { BinaryNode } from './binary.js'
import type { CallNode } from './call.js'
import type { CaseNode } from './case.js'
import type { ColumnNode } from './column.js'
import type { CompleteNode } from './complete.js'
import type { FilterNode } from './filter.js'
import type { InListNode } from './in-list.js'
import type { IsNullNode } from './is-null.js'
import type { LikeNode } from './like.js'
import type { LimitNode } from './limit.js'
import type { LiteralNode } from './literal.js'
import type { ProjectNode } from './project.js'
import type { ScanNode } from './scan.js'
import type { SortNode } from './sort.js'
import type { SpreadNode } from './spread.js'
import type { TopKNode } from './top-k.js'
import type { UnaryNode } from './unary.js'

export type Expr = ColumnNode | LiteralNode | BinaryNode | UnaryNode | InListNode | BetweenNode | LikeNode | IsNullNode | CallNode | CaseNode
export type PlanNode = ScanNode | FilterNode | ProjectNode | AggregateNode | SortNode | LimitNode | TopKNode | SpreadNode | CompleteNode
export type QueryNode = Expr | PlanNode

export const EXPR_KINDS: ReadonlySet<string> = new Set(['Column', 'Literal', 'Binary', 'Unary', 'InList', 'Between', 'Like', 'IsNull', 'Call', 'Case'])
export const PLAN_KINDS: ReadonlySet<string> = new Set(['Scan', 'Filter', 'Project', 'Aggregate', 'Sort', 'Limit', 'TopK', 'Spread', 'Complete'])

export function isExpr (node: QueryNode): node is Expr {
  return EXPR_KINDS.has(node.kind)
}

export function isPlan (node: QueryNode): node is PlanNode {
  return PLAN_KINDS.has(node.kind)
}
