import { freeze } from './freeze.js'

/**
 * Spreading activation: starts at the `seeds` (record ids, activation 1 each) of `space` and
 * follows `linksColumn` (ids of other records) hop by hop, across partitions, multiplying by
 * `decay` per hop and summing the activation that reaches each record. Stops after `maxHops`
 * or when activation falls below `threshold`. Output: `id` (utf8), `activation` (float64),
 * `hops` (int32, the fewest hops that reached the record), best first, at most `limit` rows.
 */
export interface SpreadNode {
  readonly kind: 'Spread'
  readonly space: string
  readonly seeds: readonly string[]
  readonly linksColumn: string
  readonly decay: number
  readonly maxHops: number
  readonly threshold: number
  readonly limit: number | null
}

export function spread (opts: { space: string, seeds: readonly string[], linksColumn: string, decay?: number, maxHops?: number, threshold?: number, limit?: number | null }): SpreadNode {
  return freeze({
    kind: 'Spread',
    space: opts.space,
    seeds: [...opts.seeds],
    linksColumn: opts.linksColumn,
    decay: opts.decay ?? DEFAULT_DECAY,
    maxHops: opts.maxHops ?? DEFAULT_MAX_HOPS,
    threshold: opts.threshold ?? 0,
    limit: opts.limit ?? null
  })
}

/** Half per hop: after 3 hops a record holds 1/8 of a seed's activation. */
export const DEFAULT_DECAY = 0.5
export const DEFAULT_MAX_HOPS = 3
