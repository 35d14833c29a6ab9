import type { Expr } from './node.js'
import { freeze } from './freeze.js'

/**
 * A function call by its DuckDB name, lower case. Aggregate calls appear as Call only until a
 * front end lifts them into an Aggregate node; one left in an expression (say in WHERE) is an
 * error that validation reports. `count(*)` is `count` with no arguments.
 */
export interface CallNode {
  readonly kind: 'Call'
  readonly name: string
  readonly args: readonly Expr[]
  readonly distinct: boolean
}

export function call (name: string, args: readonly Expr[], distinct = false): CallNode {
  return freeze({ kind: 'Call', name: name.toLowerCase(), args: [...args], distinct })
}
