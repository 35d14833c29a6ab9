import type { QueryNode } from './node.js'
import { children } from './transform.js'

/**
 * Visits a tree depth-first, parents before children. The visitor may return `false` to skip a
 * node's children. `depth` is 0 at the root.
 */
export function walk (node: QueryNode, visit: (node: QueryNode, depth: number, parent: QueryNode | null) => void | boolean): void {
  const rec = (n: QueryNode, depth: number, parent: QueryNode | null): void => {
    if (visit(n, depth, parent) === false) return
    for (const c of children(n)) rec(c, depth + 1, n)
  }
  rec(node, 0, null)
}

/** Every node of the tree that satisfies `pred`, in walk order. */
export function collect<T extends QueryNode> (node: QueryNode, pred: (n: QueryNode) => n is T): T[] {
  const out: T[] = []
  walk(node, n => { if (pred(n)) out.push(n) })
  return out
}
