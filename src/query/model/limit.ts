import type { PlanNode } from './node.js'
import { freeze } from './freeze.js'

/** Skips `offset` rows, then keeps at most `limit` (null: no limit). */
export interface LimitNode {
  readonly kind: 'Limit'
  readonly input: PlanNode
  readonly limit: number | null
  readonly offset: number
}

export function limit (input: PlanNode, limitRows: number | null, offset = 0): LimitNode {
  return freeze({ kind: 'Limit', input, limit: limitRows, offset })
}
