import type { Expr } from './node.js'
import { freeze } from './freeze.js'

/** `operand [NOT] BETWEEN low AND high`, both ends included. */
export interface BetweenNode {
  readonly kind: 'Between'
  readonly operand: Expr
  readonly low: Expr
  readonly high: Expr
  readonly negated: boolean
}

export function between (operand: Expr, low: Expr, high: Expr, negated = false): BetweenNode {
  return freeze({ kind: 'Between', operand, low, high, negated })
}
