/**
 * Zone-map pruning (issue 12): from a fragment's WHERE, a test that tells from a stored batch's
 * per-column NULL count and min/max alone that none of its rows can match, so storage skips the
 * batch without reading its columns.
 *
 * Only what is sure to be right is pruned: comparisons of a numeric column (int32, int64,
 * float32, float64) with a number literal and of a utf8 column with a string literal, BETWEEN,
 * IN lists of literals, IS [NOT] NULL, and AND/OR of these; anything else "may match". A string
 * bound is used only when none of its characters is at or past U+D800: below that, the zone's
 * UTF-16 order (how maps are written) and the executor's code point order (compareStrings) agree
 * on which string is least or greatest. Numbers compare as the executor's float64 (an int64 zone
 * bound is rounded the same way as the values, and rounding keeps order).
 */
import type { ColumnZone, ValueType, ZoneTest } from '../../columnar/index.js'
import type { Expr } from '../model/index.js'
import { compareStrings } from './eval.js'

type Bound = number | string

const NUMERIC: ReadonlySet<string> = new Set(['int32', 'int64', 'float32', 'float64'])

/** The zone test of `filter`, or undefined when nothing in it can rule a batch out. */
export function zoneTest (filter: Expr, columnType: (name: string) => ValueType | undefined): ZoneTest | undefined {
  return compile(filter, columnType)
}

function compile (e: Expr, columnType: (name: string) => ValueType | undefined): ZoneTest | undefined {
  switch (e.kind) {
    case 'Binary': {
      if (e.op === 'AND' || e.op === 'OR') {
        const a = compile(e.left, columnType)
        const b = compile(e.right, columnType)
        if (e.op === 'AND') {
          if (a === undefined) return b
          if (b === undefined) return a
          return (z, n) => a(z, n) && b(z, n)
        }
        if (a === undefined || b === undefined) return undefined
        return (z, n) => a(z, n) || b(z, n)
      }
      let op = e.op
      let col = e.left
      let lit = e.right
      if (col.kind !== 'Column') {
        col = e.right
        lit = e.left
        op = FLIP[op] ?? op
      }
      if (col.kind !== 'Column') return undefined
      const name = col.name
      const v = literal(lit, columnType(name))
      if (v === undefined || !(op in COMPARE)) return undefined
      const test = COMPARE[op]!
      return z => test(bounds(z(name)), v)
    }
    case 'Between': {
      if (e.negated || e.operand.kind !== 'Column') return undefined
      const name = e.operand.name
      const lo = literal(e.low, columnType(name))
      const hi = literal(e.high, columnType(name))
      if (lo === undefined || hi === undefined) return undefined
      return z => { const b = bounds(z(name)); return COMPARE['>=']!(b, lo) && COMPARE['<=']!(b, hi) }
    }
    case 'InList': {
      if (e.negated || e.operand.kind !== 'Column') return undefined
      const name = e.operand.name
      const values: Bound[] = []
      for (const x of e.values) {
        const v = literal(x, columnType(name))
        if (v === undefined) return undefined
        values.push(v)
      }
      return z => { const b = bounds(z(name)); return values.some(v => COMPARE['=']!(b, v)) }
    }
    case 'IsNull': {
      if (e.operand.kind !== 'Column') return undefined
      const name = e.operand.name
      return (z, n) => {
        const zone = z(name)
        if (zone === undefined) return true
        return e.negated ? zone.nulls < n : zone.nulls > 0
      }
    }
    default:
      return undefined
  }
}

/** The literal `e` as a bound comparable with column values of `type`, or undefined. */
function literal (e: Expr, type: ValueType | undefined): Bound | undefined {
  if (e.kind !== 'Literal' || type === undefined) return undefined
  if (NUMERIC.has(type)) {
    if (e.type === 'float64') return Number.isNaN(e.value) ? undefined : e.value
    if (e.type === 'int64') { const x = Number(e.value); return Number.isFinite(x) ? x : undefined }
    return undefined
  }
  if (type === 'utf8' && e.type === 'utf8') return e.value
  return undefined
}

/** What a zone says: no map (unknown), or the bounds known (absent bound: unbounded) and whether every row is NULL. */
interface Bounds { known: boolean, allNull: boolean, min: Bound | undefined, max: Bound | undefined }

const UNKNOWN: Bounds = { known: false, allNull: false, min: undefined, max: undefined }

function bounds (zone: ColumnZone | undefined): Bounds {
  if (zone === undefined) return UNKNOWN
  const usable = (x: Bound | undefined): Bound | undefined => typeof x === 'string' && /[\uD800-\uFFFF]/.test(x) ? undefined : x
  const min = usable(zone.min)
  const max = usable(zone.max)
  // No bound at all and no NULL count to go by: nothing known (lists, vectors, unusable strings).
  const allNull = zone.min === undefined && zone.max === undefined && zone.nulls > 0
  return { known: true, allNull, min, max }
}

function cmp (a: Bound, b: Bound): number {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b)
  return NaN
}

/**
 * Whether some row may satisfy `column op v` given its bounds. A comparison is never true for a
 * NULL, so a batch of NULLs only is ruled out; a bound of the other kind than `v` (a number map
 * against a string) decides nothing.
 */
const COMPARE: Record<string, (b: Bounds, v: Bound) => boolean> = {
  '=': (b, v) => !b.known || (!b.allNull && !(b.min !== undefined && cmp(b.min, v) > 0) && !(b.max !== undefined && cmp(b.max, v) < 0)),
  '<>': (b, v) => !b.known || (!b.allNull && !(b.min !== undefined && b.max !== undefined && cmp(b.min, v) === 0 && cmp(b.max, v) === 0)),
  '<': (b, v) => !b.known || (!b.allNull && !(b.min !== undefined && cmp(b.min, v) >= 0)),
  '<=': (b, v) => !b.known || (!b.allNull && !(b.min !== undefined && cmp(b.min, v) > 0)),
  '>': (b, v) => !b.known || (!b.allNull && !(b.max !== undefined && cmp(b.max, v) <= 0)),
  '>=': (b, v) => !b.known || (!b.allNull && !(b.max !== undefined && cmp(b.max, v) < 0))
}

const FLIP: Record<string, '<' | '<=' | '>' | '>=' | '=' | '<>'> = { '<': '>', '<=': '>=', '>': '<', '>=': '<=', '=': '=', '<>': '<>' }
