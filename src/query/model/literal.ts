import { freeze } from './freeze.js'

export type LiteralType = 'null' | 'bool' | 'int64' | 'float64' | 'utf8'

/**
 * A typed constant. int64 values are decimal strings so that every value survives JSON and
 * msgpack unchanged (a JSON number loses digits beyond 2^53; JSON has no bigint).
 */
export type LiteralNode =
  | { readonly kind: 'Literal', readonly type: 'null', readonly value: null }
  | { readonly kind: 'Literal', readonly type: 'bool', readonly value: boolean }
  | { readonly kind: 'Literal', readonly type: 'int64', readonly value: string }
  | { readonly kind: 'Literal', readonly type: 'float64', readonly value: number }
  | { readonly kind: 'Literal', readonly type: 'utf8', readonly value: string }

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/** Thrown for a value that has no literal form (NaN, an int64 out of range, an object). */
export class LiteralError extends Error {
  override name = 'LiteralError'
}

/**
 * A literal from a JS value: integers (number or bigint) become int64, other finite numbers
 * float64. `literal(2.0)` is int64 because JS cannot tell 2.0 from 2; use `float64Literal`.
 */
export function literal (value: null | boolean | number | bigint | string): LiteralNode {
  if (value === null) return freeze({ kind: 'Literal', type: 'null', value: null })
  if (typeof value === 'boolean') return freeze({ kind: 'Literal', type: 'bool', value })
  if (typeof value === 'string') return freeze({ kind: 'Literal', type: 'utf8', value })
  if (typeof value === 'bigint') return int64Literal(value)
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new LiteralError(`${String(value)} is not a finite number`)
  if (Number.isSafeInteger(value)) return int64Literal(BigInt(value))
  return float64Literal(value)
}

export function int64Literal (value: bigint | string): LiteralNode {
  const b = typeof value === 'string' ? parseInt64(value) : value
  if (b < INT64_MIN || b > INT64_MAX) throw new LiteralError(`${b} is outside the int64 range`)
  return freeze({ kind: 'Literal', type: 'int64', value: b.toString() })
}

export function float64Literal (value: number): LiteralNode {
  if (!Number.isFinite(value)) throw new LiteralError(`${value} is not a finite number`)
  return freeze({ kind: 'Literal', type: 'float64', value })
}

function parseInt64 (s: string): bigint {
  if (!/^-?\d{1,20}$/.test(s)) throw new LiteralError(`'${s}' is not an integer`)
  return BigInt(s)
}

/** The JS value of a literal: int64 as a number when it is a safe integer, else a bigint. */
export function literalValue (lit: LiteralNode): null | boolean | number | bigint | string {
  if (lit.type !== 'int64') return lit.value
  const b = BigInt(lit.value)
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b
}
