import type { Expr } from './node.js'
import { freeze } from './freeze.js'

/** `operand [NOT] IN (values...)`; subqueries are not expressions here. */
export interface InListNode {
  readonly kind: 'InList'
  readonly operand: Expr
  readonly values: readonly Expr[]
  readonly negated: boolean
}

export function inList (operand: Expr, values: readonly Expr[], negated = false): InListNode {
  return freeze({ kind: 'InList', operand, values: [...values], negated })
}
