import type { AggSpec } from './aggregate.js'
import type { Expr, PlanNode, QueryNode } from './node.js'
import { freeze } from './freeze.js'

/**
 * Rebuilds `node` with each direct child replaced by `f(child)`; returns `node` itself when
 * nothing changed, so unchanged subtrees stay shared. This switch is the one place that knows
 * where every kind keeps its children: walk and transform both go through it.
 */
export function mapChildren<N extends QueryNode> (node: N, f: (child: QueryNode) => QueryNode): N {
  let changed = false
  const e = (x: Expr): Expr => { const y = f(x) as Expr; if (y !== x) changed = true; return y }
  const p = (x: PlanNode): PlanNode => { const y = f(x) as PlanNode; if (y !== x) changed = true; return y }
  const n = node as QueryNode
  let out: QueryNode
  switch (n.kind) {
    case 'Column': case 'Literal': case 'Scan': case 'Spread':
      return node
    case 'Binary': out = { ...n, left: e(n.left), right: e(n.right) }; break
    case 'Unary': out = { ...n, operand: e(n.operand) }; break
    case 'InList': out = { ...n, operand: e(n.operand), values: n.values.map(e) }; break
    case 'Between': out = { ...n, operand: e(n.operand), low: e(n.low), high: e(n.high) }; break
    case 'Like': out = { ...n, operand: e(n.operand), pattern: e(n.pattern) }; break
    case 'IsNull': out = { ...n, operand: e(n.operand) }; break
    case 'Call': out = { ...n, args: n.args.map(e) }; break
    case 'Case': out = { ...n, operand: n.operand === null ? null : e(n.operand), whens: n.whens.map(w => ({ when: e(w.when), then: e(w.then) })), else: n.else === null ? null : e(n.else) }; break
    case 'Filter': out = { ...n, input: p(n.input), predicate: e(n.predicate) }; break
    case 'Project': out = { ...n, input: p(n.input), items: n.items.map(i => ({ expr: e(i.expr), alias: i.alias })) }; break
    case 'Aggregate': {
      const specs = (s: AggSpec): AggSpec => ({ ...s, filters: s.filters.map(x => ({ key: x.key, predicate: e(x.predicate) })), aggs: s.aggs.map(specs) })
      out = {
        ...n,
        input: p(n.input),
        groupBy: n.groupBy.map(g => ({ expr: e(g.expr), alias: g.alias })),
        aggregates: n.aggregates.map(a => ({ ...a, args: a.args.map(e) })),
        aggs: n.aggs.map(specs)
      }
      break
    }
    case 'Sort': out = { ...n, input: p(n.input), keys: n.keys.map(k => ({ ...k, expr: e(k.expr) })) }; break
    case 'Limit': out = { ...n, input: p(n.input) }; break
    case 'TopK': out = { ...n, input: p(n.input) }; break
    case 'Complete': out = { ...n, input: p(n.input) }; break
  }
  return changed ? freeze(out) as N : node
}

/** The direct children of a node, in a fixed order (inputs first, then expressions). */
export function children (node: QueryNode): QueryNode[] {
  const out: QueryNode[] = []
  // mapChildren evaluates `input` before the expressions, so inputs come first.
  mapChildren(node, c => { out.push(c); return c })
  return out
}

/**
 * Rewrites a tree bottom-up: children first, then `fn` on the rebuilt node. `fn` returns a
 * replacement or undefined to keep the node. `onReplace(old, new)` lets a caller carry side
 * data across (source positions, say).
 */
export function transform<N extends QueryNode> (node: N, fn: (node: QueryNode) => QueryNode | undefined, onReplace?: (before: QueryNode, after: QueryNode) => void): N {
  const rec = (n: QueryNode): QueryNode => {
    const rebuilt = mapChildren(n, rec)
    const replaced = fn(rebuilt) ?? rebuilt
    if (replaced !== n) onReplace?.(n, replaced)
    return replaced
  }
  return rec(node) as N
}

/** Replaces every expression equal to a key of `map` (structurally) by its value. */
export function replaceExprs<N extends QueryNode> (node: N, pairs: ReadonlyArray<readonly [Expr, Expr]>, equals: (a: unknown, b: unknown) => boolean): N {
  const rec = (n: QueryNode): QueryNode => {
    for (const [from, to] of pairs) if (equals(n, from)) return to
    return mapChildren(n, rec)
  }
  return rec(node) as N
}
