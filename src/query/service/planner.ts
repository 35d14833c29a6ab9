/**
 * The planner: which partitions a query needs (SinglePartition when the filter pins `id`,
 * MultiPartition for a few ids, Broadcast for the whole space), and for each partition the
 * replicas to ask, best first: this peer when it holds a ready replica (no network at all), then
 * the others by health (alive before suspect, reachable only) and measured latency (EWMA).
 */
import type { PeerId } from '../../runtime/index.js'
import type { SpaceDef } from '../../schema/index.js'
import type { Expr, PlanNode } from '../model/index.js'
import { collect, printPlan } from '../model/index.js'
import type { SplitPlan } from '../exec/index.js'
import type { PeerHealth } from './health.js'

export type Strategy = 'SinglePartition' | 'MultiPartition' | 'Broadcast'

export interface PartitionTarget {
  partition: number
  /** Replicas to ask, in order: the first is the primary choice, the rest are fallbacks and hedges. */
  replicas: PeerId[]
}

export interface QueryPlan {
  space: SpaceDef
  strategy: Strategy
  split: SplitPlan
  targets: PartitionTarget[]
  /** True when every first choice is this peer: the query runs without any RPC. */
  local: boolean
  /** Estimated rows scanned (from this peer's replicas, scaled to the partitions targeted), or null. */
  estimatedRows: number | null
}

export interface PlannerDeps {
  self: PeerId
  partitionOf: (space: SpaceDef, id: string) => number
  readReplicas: (space: SpaceDef, partition: number) => PeerId[]
  isReachable: (peer: PeerId) => boolean
  isSuspect: (peer: PeerId) => boolean
  health: PeerHealth
  /** Live rows of the local replica of a partition, when this peer holds one. */
  localRows?: (space: SpaceDef, partition: number) => number | undefined
}

/** The ids a filter pins (`id = 'x'`, `id IN (...)` at the top of an AND chain), or null. */
export function pinnedIds (filter: Expr | null): string[] | null {
  if (filter === null) return null
  if (filter.kind === 'Binary' && filter.op === 'AND') {
    const l = pinnedIds(filter.left)
    const r = pinnedIds(filter.right)
    if (l === null) return r
    if (r === null) return l
    return l.filter(x => r.includes(x))
  }
  if (filter.kind === 'Binary' && filter.op === '=') {
    const [c, v] = filter.left.kind === 'Column' ? [filter.left, filter.right] : [filter.right, filter.left]
    if (c.kind === 'Column' && c.name === 'id' && v.kind === 'Literal' && v.type === 'utf8') return [v.value]
  }
  if (filter.kind === 'InList' && !filter.negated && filter.operand.kind === 'Column' && filter.operand.name === 'id' && filter.values.every(v => v.kind === 'Literal' && v.type === 'utf8')) {
    return filter.values.map(v => (v as { value: string }).value)
  }
  return null
}

function fragmentFilter (fragment: PlanNode): Expr | null {
  const f = collect(fragment, (n): n is Extract<PlanNode, { kind: 'Filter' }> => n.kind === 'Filter')[0]
  return f?.predicate ?? null
}

export function planQuery (space: SpaceDef, split: SplitPlan, deps: PlannerDeps): QueryPlan {
  const ids = pinnedIds(fragmentFilter(split.fragment))
  let partitions: number[]
  let strategy: Strategy
  if (ids !== null) {
    partitions = [...new Set(ids.map(id => deps.partitionOf(space, id)))].sort((a, b) => a - b)
    strategy = partitions.length === 1 ? 'SinglePartition' : 'MultiPartition'
  } else {
    partitions = Array.from({ length: space.partitions }, (_, i) => i)
    strategy = 'Broadcast'
  }
  const targets = partitions.map(p => ({ partition: p, replicas: orderReplicas(deps.readReplicas(space, p), deps) }))
  const local = targets.length > 0 && targets.every(t => t.replicas[0] === deps.self)
  let estimatedRows: number | null = null
  if (deps.localRows !== undefined) {
    const known = targets.map(t => deps.localRows!(space, t.partition)).filter((n): n is number => n !== undefined)
    if (known.length > 0) estimatedRows = Math.round(known.reduce((a, b) => a + b, 0) / known.length * targets.length)
  }
  return { space, strategy, split, targets, local, estimatedRows }
}

/** Replicas best first: this peer, then reachable alive peers by latency, then suspect ones. */
export function orderReplicas (replicas: readonly PeerId[], deps: Pick<PlannerDeps, 'self' | 'isReachable' | 'isSuspect' | 'health'>): PeerId[] {
  const usable = [...new Set(replicas)].filter(p => p === deps.self || deps.isReachable(p))
  const rank = (p: PeerId): number => p === deps.self ? -1 : (deps.isSuspect(p) ? 1e9 : 0) + deps.health.expectedMs(p)
  return usable.sort((a, b) => rank(a) - rank(b))
}

/** EXPLAIN's text: strategy, targets, and the partial/final split. */
export function explainText (plan: QueryPlan, names: (peer: PeerId) => string): string {
  const lines: string[] = []
  const { split } = plan
  lines.push(`${plan.strategy} over space ${plan.space.name}: ${plan.targets.length} of ${plan.space.partitions} partitions${plan.local ? ', all on this peer (no network)' : ''}`)
  if (plan.estimatedRows !== null) lines.push(`Estimated rows scanned: ~${plan.estimatedRows}`)
  const byPeer = new Map<string, number[]>()
  const unavailable: number[] = []
  for (const t of plan.targets) {
    const first = t.replicas[0]
    if (first === undefined) { unavailable.push(t.partition); continue }
    const key = names(first)
    let l = byPeer.get(key)
    if (l === undefined) byPeer.set(key, l = [])
    l.push(t.partition)
  }
  lines.push('Targets (first choice; other replicas are fallbacks and hedges):')
  for (const [peer, parts] of byPeer) lines.push(`  ${peer}: partitions ${parts.join(', ')}`)
  if (unavailable.length > 0) lines.push(`  no reachable replica: partitions ${unavailable.join(', ')}`)
  lines.push('Partial (on each partition):')
  for (const l of printPlan(split.fragment).split('\n')) lines.push(`  ${l}`)
  const merge = { groups: 'merge group states, finalize', aggs: 'merge aggregation states, finalize', rows: 'concatenate rows', topk: 'merge top-K by score', complete: 'merge top-K by score, fill the missing columns' }[split.merge]
  const steps = [merge, ...split.post.map(describeStep)]
  lines.push(`Final (on the coordinator): ${steps.join(' → ')}`)
  if (split.perPartitionLimit !== null) lines.push(`Each partition ships at most ${split.perPartitionLimit} rows`)
  return lines.join('\n')
}

function describeStep (s: SplitPlan['post'][number]): string {
  switch (s.kind) {
    case 'Filter': return 'filter (HAVING)'
    case 'Sort': return `sort (${s.keys.length} key${s.keys.length === 1 ? '' : 's'})`
    case 'Limit': return s.offset > 0 ? `limit ${s.limit ?? 'all'} offset ${s.offset}` : `limit ${s.limit ?? 'all'}`
    case 'Project': return `project ${s.items.map(i => i.alias).join(', ')}`
  }
}
