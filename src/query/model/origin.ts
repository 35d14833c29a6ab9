import type { QueryNode } from './node.js'

/**
 * Where a node came from in the query text, for error messages: an SQL position (offset from 0,
 * line and column from 1) or a JSON path such as `filter.bool.must[1].range.amount`. Kept beside
 * the tree, not in it, so that positions never make two equal plans differ and never travel.
 */
export type Origin = { readonly offset: number, readonly line: number, readonly column: number } | { readonly path: string }

export type Origins = WeakMap<QueryNode | object, Origin>

export function describeOrigin (o: Origin | undefined): string | undefined {
  if (o === undefined) return undefined
  return 'path' in o ? o.path : `line ${o.line}, column ${o.column}`
}
