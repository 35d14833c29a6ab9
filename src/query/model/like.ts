import type { Expr } from './node.js'
import { freeze } from './freeze.js'

/** `operand [NOT] LIKE|ILIKE pattern [ESCAPE 'c']`: `%` any run, `_` one character. */
export interface LikeNode {
  readonly kind: 'Like'
  readonly operand: Expr
  readonly pattern: Expr
  /** One character, or null for no escape character. */
  readonly escape: string | null
  readonly negated: boolean
  readonly caseInsensitive: boolean
}

export function like (operand: Expr, pattern: Expr, opts: { escape?: string | null, negated?: boolean, caseInsensitive?: boolean } = {}): LikeNode {
  return freeze({ kind: 'Like', operand, pattern, escape: opts.escape ?? null, negated: opts.negated ?? false, caseInsensitive: opts.caseInsensitive ?? false })
}

/** Escapes `%`, `_` and `\` in a literal string for a LIKE pattern whose escape character is `\`. */
export function escapeLike (s: string): string {
  return s.replace(/[\\%_]/g, c => '\\' + c)
}
