import type { Expr } from './node.js'
import { freeze } from './freeze.js'

/** `CASE [operand] WHEN .. THEN .. [ELSE ..] END`; with an operand, each `when` is compared to it. */
export interface CaseNode {
  readonly kind: 'Case'
  readonly operand: Expr | null
  readonly whens: ReadonlyArray<{ readonly when: Expr, readonly then: Expr }>
  readonly else: Expr | null
}

export function caseWhen (whens: ReadonlyArray<{ when: Expr, then: Expr }>, elseExpr: Expr | null = null, operand: Expr | null = null): CaseNode {
  return freeze({ kind: 'Case', operand, whens: whens.map(w => ({ when: w.when, then: w.then })), else: elseExpr })
}
