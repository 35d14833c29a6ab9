/**
 * The typing rules of expressions, in one place: validate.ts applies them to report errors with
 * positions, the executor (exec/eval.ts) to type what it evaluates. The rules follow DuckDB's
 * where Shoal has the type (integers widen to int64, anything with a float to float64, `/` is
 * always float64).
 */
import { listElement, vectorDim } from '../../schema/index.js'
import type { ColumnType } from '../../schema/index.js'

/** A column's type, or 'null' for the NULL literal. */
export type ValueType = ColumnType | 'null'

const NUMERIC = new Set<string>(['int32', 'int64', 'float32', 'float64'])
const TEMPORAL = new Set<string>(['timestamp', 'date'])

export const isNumericType = (t: ValueType): boolean => NUMERIC.has(t)
export const isIntegerType = (t: ValueType): boolean => t === 'int32' || t === 'int64'
export const isTemporalType = (t: ValueType): boolean => TEMPORAL.has(t)
/** Not a list and not a vector. */
export const isScalarType = (t: ValueType): boolean => listElement(t as ColumnType) === undefined && vectorDim(t as ColumnType) === undefined

/** The common type of two values (CASE branches, coalesce), or undefined when they do not mix. */
export function unify (a: ValueType, b: ValueType): ValueType | undefined {
  if (a === b) return a
  if (a === 'null') return b
  if (b === 'null') return a
  if (isNumericType(a) && isNumericType(b)) return a.startsWith('float') || b.startsWith('float') ? 'float64' : 'int64'
  return undefined
}

/** Whether two values may be compared (=, <, IN, BETWEEN, CASE x WHEN). */
export function comparable (a: ValueType, b: ValueType): boolean {
  if (a === 'null' || b === 'null') return isScalarType(a) && isScalarType(b)
  if (isNumericType(a) && isNumericType(b)) return true
  if (a === b) return isScalarType(a)
  // Timestamps and dates compare with each other, with ISO strings (DuckDB casts them) and
  // with numbers (ms or days since the epoch, how Shoal stores them).
  if (isTemporalType(a) && (isTemporalType(b) || b === 'utf8' || isNumericType(b))) return true
  if (isTemporalType(b) && (a === 'utf8' || isNumericType(a))) return true
  return false
}

/** The type of `l op r` for an arithmetic operator, both sides numbers (or NULL). */
export function arithmeticType (op: string, l: ValueType, r: ValueType): ValueType {
  if (op === '/') return 'float64'
  return unify(l, r) === 'float64' || l.startsWith('float') || r.startsWith('float') ? 'float64' : (l === 'int32' && r === 'int32' ? 'int32' : 'int64')
}

/** Scalar functions the executor runs, by DuckDB name: their result type, or what is wrong with the arguments. */
const SCALAR_FUNCTIONS: Record<string, (args: readonly ValueType[]) => { type: ValueType } | { error: string }> = {
  lower: a => isUtf8Arg(a) ? { type: 'utf8' } : { error: 'lower() takes one utf8 argument' },
  upper: a => isUtf8Arg(a) ? { type: 'utf8' } : { error: 'upper() takes one utf8 argument' },
  length: a => isUtf8Arg(a) ? { type: 'int64' } : { error: 'length() takes one utf8 argument' },
  abs: a => a.length === 1 && isNumericType(a[0]!) ? { type: a[0]! } : { error: 'abs() takes one number' },
  round: a => (a.length === 1 || (a.length === 2 && isIntegerType(a[1]!))) && isNumericType(a[0]!) ? { type: a[0]! } : { error: 'round() takes a number and optional integer digits' },
  coalesce: a => {
    if (a.length === 0) return { error: 'coalesce() takes at least one argument' }
    let t: ValueType = 'null'
    for (const x of a) {
      const u = unify(t, x)
      if (u === undefined) return { error: `coalesce() arguments ${t} and ${x} do not mix` }
      t = u
    }
    return { type: t }
  }
}

function isUtf8Arg (a: readonly ValueType[]): boolean {
  return a.length === 1 && (a[0] === 'utf8' || a[0] === 'null')
}

export const SCALAR_FUNCTION_NAMES: readonly string[] = Object.keys(SCALAR_FUNCTIONS)

/** The type of a scalar function call; undefined for a function Shoal does not have. */
export function scalarFunctionType (name: string, args: readonly ValueType[]): { type: ValueType } | { error: string } | undefined {
  return Object.prototype.hasOwnProperty.call(SCALAR_FUNCTIONS, name) ? SCALAR_FUNCTIONS[name]!(args) : undefined
}
