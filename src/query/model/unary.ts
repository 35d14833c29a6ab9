import type { Expr } from './node.js'
import { freeze } from './freeze.js'

export interface UnaryNode {
  readonly kind: 'Unary'
  readonly op: 'NOT' | '-'
  readonly operand: Expr
}

export function not (operand: Expr): UnaryNode {
  return freeze({ kind: 'Unary', op: 'NOT', operand })
}

export function negate (operand: Expr): UnaryNode {
  return freeze({ kind: 'Unary', op: '-', operand })
}
