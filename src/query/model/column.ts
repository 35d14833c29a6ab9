import { freeze } from './freeze.js'

/** A reference to a column of the node below: a space column, a group key or an aggregate output. */
export interface ColumnNode {
  readonly kind: 'Column'
  readonly name: string
}

export function column (name: string): ColumnNode {
  return freeze({ kind: 'Column', name })
}
