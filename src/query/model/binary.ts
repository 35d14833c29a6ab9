import type { Expr } from './node.js'
import { freeze } from './freeze.js'

export type ComparisonOp = '=' | '<>' | '<' | '<=' | '>' | '>='
export type ArithmeticOp = '+' | '-' | '*' | '/' | '%'
export type LogicalOp = 'AND' | 'OR'
export type BinaryOp = ComparisonOp | ArithmeticOp | LogicalOp | '||'

export const COMPARISON_OPS: ReadonlySet<string> = new Set(['=', '<>', '<', '<=', '>', '>='])
export const ARITHMETIC_OPS: ReadonlySet<string> = new Set(['+', '-', '*', '/', '%'])

export interface BinaryNode {
  readonly kind: 'Binary'
  readonly op: BinaryOp
  readonly left: Expr
  readonly right: Expr
}

export function binary (op: BinaryOp, left: Expr, right: Expr): BinaryNode {
  return freeze({ kind: 'Binary', op, left, right })
}

/** `a AND b AND c`, left-associated as SQL parsers build it; `undefined` for no terms. */
export function and (terms: readonly Expr[]): Expr | undefined {
  return terms.length === 0 ? undefined : terms.reduce((acc, t) => binary('AND', acc, t))
}

export function or (terms: readonly Expr[]): Expr | undefined {
  return terms.length === 0 ? undefined : terms.reduce((acc, t) => binary('OR', acc, t))
}
