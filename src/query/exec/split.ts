/**
 * Splits a validated plan into the fragment that runs on every partition (filter, projection,
 * partial aggregation, top-N, top-K, completion's best K: everything that shrinks what travels)
 * and the steps the coordinator runs after merging the partitions' answers (final aggregation,
 * HAVING, ORDER BY, LIMIT/OFFSET, the select list).
 */
import type { AggregateNode, CompleteNode, Expr, PlanNode, ScanNode, SortKey, TopKNode } from '../model/index.js'
import { collect, limit, scan, sort, filter as filterNode } from '../model/index.js'
import { QueryExecError } from './errors.js'

export type MergeKind = 'groups' | 'aggs' | 'rows' | 'topk' | 'complete'

/** A coordinator step after the merge, bottom-up. */
export type PostStep =
  | { kind: 'Filter', predicate: Expr }
  | { kind: 'Sort', keys: Extract<PlanNode, { kind: 'Sort' }>['keys'] }
  | { kind: 'Limit', limit: number | null, offset: number }
  | { kind: 'Project', items: Extract<PlanNode, { kind: 'Project' }>['items'] }

export interface SplitPlan {
  space: string
  /** Runs on each partition (a fragment shape, see fragment.ts). */
  fragment: PlanNode
  merge: MergeKind
  aggregate?: AggregateNode
  topk?: TopKNode
  complete?: CompleteNode
  post: PostStep[]
  /** Rows each partition may ship at most (a pushed-down LIMIT), null when unbounded. */
  perPartitionLimit: number | null
  /** The order those rows are the first of (the pushed-down ORDER BY; none for a bare LIMIT). */
  perPartitionOrder: SortKey[]
}

/**
 * Splits `plan`. `schemaColumns` are the space's columns: the fragment's scan reads only those
 * the query mentions (projection pushdown).
 */
export function splitPlan (plan: PlanNode, schemaColumns: readonly string[]): SplitPlan {
  const above: PlanNode[] = []
  let node = plan
  while (node.kind === 'Project' || node.kind === 'Limit' || node.kind === 'Sort' || (node.kind === 'Filter' && node.input.kind !== 'Scan')) {
    above.push(node)
    node = node.input
  }
  const post: PostStep[] = above.reverse().map(n => {
    switch (n.kind) {
      case 'Filter': return { kind: 'Filter', predicate: n.predicate }
      case 'Sort': return { kind: 'Sort', keys: n.keys }
      case 'Limit': return { kind: 'Limit', limit: n.limit, offset: n.offset }
      case 'Project': return { kind: 'Project', items: n.items }
      default: throw new QueryExecError('UNSUPPORTED', `${n.kind} above the scan`)
    }
  })
  const needed = neededColumns(plan, schemaColumns)
  const withColumns = (n: PlanNode): PlanNode => {
    if (n.kind === 'Scan') return scan(n.space, needed)
    if (n.kind === 'Filter' && n.input.kind === 'Scan') return filterNode(scan(n.input.space, needed), n.predicate)
    throw new QueryExecError('UNSUPPORTED', `a query over ${n.kind}: only a filtered scan can feed ${n.kind === 'Filter' ? 'a filter' : 'this'}`)
  }
  const spaceOf = (n: PlanNode): string => {
    const s = collect(n, (x): x is ScanNode => x.kind === 'Scan')[0]
    if (s === undefined) throw new QueryExecError('UNSUPPORTED', 'a query without a space')
    return s.space
  }
  switch (node.kind) {
    case 'Aggregate': {
      const agg: AggregateNode = { ...node, input: withColumns(node.input) }
      return { space: spaceOf(node), fragment: agg, merge: node.aggs.length > 0 ? 'aggs' : 'groups', aggregate: agg, post, perPartitionLimit: null, perPartitionOrder: [] }
    }
    case 'TopK': {
      const tk: TopKNode = { ...node, input: withColumns(node.input) }
      return { space: spaceOf(node), fragment: tk, merge: 'topk', topk: tk, post, perPartitionLimit: node.k, perPartitionOrder: [] }
    }
    case 'Complete': {
      // Each partition ships its best k; the coordinator merges them to k and fills the record.
      const c: CompleteNode = { ...node, input: withColumns(node.input) }
      return { space: spaceOf(node), fragment: c, merge: 'complete', complete: c, post, perPartitionLimit: node.k, perPartitionOrder: [] }
    }
    case 'Scan':
    case 'Filter': {
      const base = withColumns(node)
      // ORDER BY ... LIMIT n OFFSET m: each partition needs to send only its first n + m rows.
      // Pushed only when nothing but a sort stands between the limit and the scan.
      let fragment = base
      let perPartitionLimit: number | null = null
      let perPartitionOrder: SortKey[] = []
      const firstLimit = post.findIndex(s => s.kind === 'Limit')
      if (firstLimit >= 0 && post.slice(0, firstLimit).every(s => s.kind === 'Sort')) {
        const l = post[firstLimit] as Extract<PostStep, { kind: 'Limit' }>
        if (l.limit !== null) {
          perPartitionLimit = l.limit + l.offset
          const s = post.slice(0, firstLimit).reverse().find(x => x.kind === 'Sort') as Extract<PostStep, { kind: 'Sort' }> | undefined
          perPartitionOrder = s === undefined ? [] : [...s.keys]
          fragment = limit(s === undefined ? base : sort(base, s.keys), perPartitionLimit)
        }
      }
      return { space: spaceOf(node), fragment, merge: 'rows', post, perPartitionLimit, perPartitionOrder }
    }
    default:
      throw new QueryExecError('UNSUPPORTED', `${node.kind} queries run through their own path`)
  }
}

/** The space columns a plan mentions, in schema order (none for count(*): batches carry their row count without columns). */
function neededColumns (plan: PlanNode, schemaColumns: readonly string[]): string[] {
  // With no Project or Aggregate above it (SELECT *, a JSON query without `fields`), the scan's
  // rows are the answer: every column it yields is needed, not only those the query mentions.
  let top = plan
  while (top.kind === 'Limit' || top.kind === 'Sort' || top.kind === 'Filter' || top.kind === 'TopK' || top.kind === 'Complete') top = top.input
  if (top.kind === 'Scan' && top.columns === null) return [...schemaColumns]

  const names = new Set<string>()
  // Above an Aggregate a column names one of its outputs, not the space's: `count(*) AS n` over a
  // space with a column n read that column whole for nothing (a cold count(*) over 10 M rows
  // decoded 80 MB). The aggregate's own expressions (group keys, arguments, the filter below it)
  // are in its subtree.
  const aggregate = collect(plan, (x): x is AggregateNode => x.kind === 'Aggregate')[0]
  for (const c of collect(aggregate ?? plan, (x): x is Extract<Expr, { kind: 'Column' }> => x.kind === 'Column')) names.add(c.name)
  const walkAggs = (specs: AggregateNode['aggs']): void => {
    for (const s of specs) {
      if (s.field !== null) names.add(s.field)
      walkAggs(s.aggs)
    }
  }
  for (const a of collect(plan, (x): x is AggregateNode => x.kind === 'Aggregate')) walkAggs(a.aggs)
  for (const t of collect(plan, (x): x is TopKNode => x.kind === 'TopK')) names.add(t.column)
  for (const c of collect(plan, (x): x is CompleteNode => x.kind === 'Complete')) {
    // Ties are broken by id; the fill reads its columns from the neighbours.
    names.add('id')
    for (const t of c.terms) names.add(t.column)
    for (const f of c.fill ?? schemaColumns) names.add(f)
  }
  for (const s of collect(plan, (x): x is ScanNode => x.kind === 'Scan')) for (const c of s.columns ?? []) names.add(c)
  return schemaColumns.filter(c => names.has(c))
}
