import type { Expr } from './node.js'
import { freeze } from './freeze.js'

export interface IsNullNode {
  readonly kind: 'IsNull'
  readonly operand: Expr
  readonly negated: boolean
}

export function isNull (operand: Expr, negated = false): IsNullNode {
  return freeze({ kind: 'IsNull', operand, negated })
}
