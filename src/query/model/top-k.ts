import type { PlanNode } from './node.js'
import { freeze } from './freeze.js'

export type VectorMetric = 'cosine' | 'dot' | 'l2'

/**
 * Recall: the `k` rows whose vector `column` is most similar to `vector`, best first. Output: the
 * input's columns plus `_score` (float64; cosine and dot: higher is closer; l2: the distance,
 * lower is closer).
 */
export interface TopKNode {
  readonly kind: 'TopK'
  readonly input: PlanNode
  readonly column: string
  readonly vector: readonly number[]
  readonly metric: VectorMetric
  readonly k: number
}

export const SCORE_COLUMN = '_score'

export function topK (input: PlanNode, opts: { column: string, vector: readonly number[], metric?: VectorMetric, k: number }): TopKNode {
  return freeze({ kind: 'TopK', input, column: opts.column, vector: [...opts.vector], metric: opts.metric ?? 'cosine', k: opts.k })
}
