/**
 * Vectorized expression evaluation over column batches (src/columnar), with DuckDB's semantics.
 *
 * Each node is evaluated once per batch, as one loop over typed arrays; nothing is allocated
 * per row and the node kind is dispatched once per batch, not per row. Inside, a value is either
 * a vector or a constant (`Const`): a literal, or anything computed from constants only, is never
 * spread into a vector unless it is the final result, so `amount > 10` is one loop over `amount`.
 *
 * Strings are dictionary-encoded: a predicate or function whose only varying input is one
 * string vector (`s = 'x'`, `s IN (..)`, `s LIKE ..`, `lower(s)`, `length(s)`, `s < 'm'`) is
 * computed once per dictionary entry, then mapped through the codes.
 *
 * NULL is NaN in numeric vectors and -1 in string codes. Consequently a NaN that DuckDB would
 * return (`0.0 / 0`, `x % 0` on doubles) is NULL here. int64 is computed as float64.
 */
import type { ColumnBatch, ColumnVector, FloatListVector, NumVector, StrVector, ValueType } from '../../columnar/index.js'
import type { BetweenNode, BinaryNode, CallNode, CaseNode, ComparisonOp, Expr, InListNode, LikeNode } from '../model/index.js'
import { arithmeticType, comparable, isIntegerType, isNumericType, isTemporalType, scalarFunctionType, unify } from '../validate/index.js'

/** An expression that cannot be evaluated over a batch: a missing column, a string that is not a timestamp, a bad LIKE pattern. */
export class EvalError extends Error {
  override name = 'EvalError'
}

/** A value computed from constants only: `value` is a number (bools 1/0, temporals ms/days), a string, or null for NULL. */
interface Const {
  readonly tag: 'const'
  readonly type: ValueType
  readonly value: number | string | null
}

type Val = ColumnVector | Const

const MS_PER_DAY = 86_400_000

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Evaluates an expression over every row of a batch: a vector of batch.length rows. Inputs are
 * never written; a bare column reference returns the batch's own vector (vectors are immutable
 * by convention), and lower/upper/`||` may share the input's codes array.
 * Columns are looked up in batch.columns by name; a missing one is an EvalError.
 */
export function evalExpr (expr: Expr, batch: ColumnBatch): ColumnVector {
  return materialize(ev(expr, batch), batch.length)
}

/** Rows (ascending indexes) where a boolean expression is TRUE (NULL and FALSE are dropped, as SQL WHERE). */
export function evalPredicate (expr: Expr, batch: ColumnBatch): Uint32Array {
  const v = ev(expr, batch)
  const n = batch.length
  if (v.tag === 'const') {
    if (v.value !== 1) return new Uint32Array(0)
    const all = new Uint32Array(n)
    for (let i = 0; i < n; i++) all[i] = i
    return all
  }
  if (v.tag !== 'num') throw new EvalError(`a condition must be boolean, not ${v.type}`)
  const x = v.values
  // One pass into a full-size buffer, then a view of the part used: the buffer is short-lived.
  const out = new Uint32Array(n)
  let k = 0
  for (let i = 0; i < n; i++) if (x[i] === 1) out[k++] = i
  return out.subarray(0, k)
}

/** The static result type of an expression given column types (same rules as validate); an EvalError when it does not type. */
export function exprType (expr: Expr, columnType: (name: string) => ValueType | undefined): ValueType {
  const ty = (e: Expr): ValueType => exprType(e, columnType)
  switch (expr.kind) {
    case 'Column': {
      const t = columnType(expr.name)
      if (t === undefined) throw new EvalError(`unknown column '${expr.name}'`)
      return t
    }
    case 'Literal': return expr.type
    case 'Binary': {
      const l = ty(expr.left)
      const r = ty(expr.right)
      const op = expr.op
      if (op === 'AND' || op === 'OR') {
        if (!isBoolish(l) || !isBoolish(r)) throw new EvalError(`${op} needs boolean operands, got ${l} and ${r}`)
        return 'bool'
      }
      if (op === '||') {
        if ((l !== 'utf8' && l !== 'null') || (r !== 'utf8' && r !== 'null')) throw new EvalError(`|| joins strings, got ${l} and ${r}`)
        return 'utf8'
      }
      if (isComparison(op)) {
        if (!comparable(l, r)) throw new EvalError(`cannot compare ${l} with ${r}`)
        return 'bool'
      }
      if ((!isNumericType(l) && l !== 'null') || (!isNumericType(r) && r !== 'null')) throw new EvalError(`${op} needs numbers, got ${l} and ${r}`)
      return arithmeticType(op, l, r)
    }
    case 'Unary': {
      const t = ty(expr.operand)
      if (expr.op === 'NOT') {
        if (!isBoolish(t)) throw new EvalError(`NOT needs a boolean, got ${t}`)
        return 'bool'
      }
      if (!isNumericType(t) && t !== 'null') throw new EvalError(`cannot negate ${t}`)
      return t
    }
    case 'InList': {
      const t = ty(expr.operand)
      for (const v of expr.values) { const vt = ty(v); if (!comparable(t, vt)) throw new EvalError(`IN compares ${t} with ${vt}`) }
      return 'bool'
    }
    case 'Between': {
      const t = ty(expr.operand)
      for (const v of [expr.low, expr.high]) { const vt = ty(v); if (!comparable(t, vt)) throw new EvalError(`BETWEEN compares ${t} with ${vt}`) }
      return 'bool'
    }
    case 'Like': {
      const t = ty(expr.operand)
      const p = ty(expr.pattern)
      if ((t !== 'utf8' && t !== 'null') || (p !== 'utf8' && p !== 'null')) throw new EvalError(`LIKE needs strings, got ${t} and ${p}`)
      return 'bool'
    }
    case 'IsNull':
      ty(expr.operand)
      return 'bool'
    case 'Call': return callType(expr.name, expr.args.map(ty))
    case 'Case': {
      const op = expr.operand === null ? undefined : ty(expr.operand)
      let out: ValueType = 'null'
      const branch = (t: ValueType): void => {
        const u = unify(out, t)
        if (u === undefined) throw new EvalError(`CASE branches mix ${out} and ${t}`)
        out = u
      }
      for (const w of expr.whens) {
        const wt = ty(w.when)
        if (op === undefined ? !isBoolish(wt) : !comparable(op, wt)) throw new EvalError(op === undefined ? `WHEN needs a condition, got ${wt}` : `CASE compares ${op} with ${wt}`)
        branch(ty(w.then))
      }
      if (expr.else !== null) branch(ty(expr.else))
      return out
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Typing (the rules themselves are src/query/validate/typing.ts)

function isBoolish (t: ValueType): boolean {
  return t === 'bool' || t === 'null'
}

function isComparison (op: string): op is ComparisonOp {
  return op === '=' || op === '<>' || op === '<' || op === '<=' || op === '>' || op === '>='
}

function callType (name: string, a: ValueType[]): ValueType {
  const r = scalarFunctionType(name, a)
  if (r === undefined) throw new EvalError(`unknown function ${name}()`)
  if ('error' in r) throw new EvalError(r.error)
  return r.type
}

// ---------------------------------------------------------------------------------------------
// Values

const NULL_BOOL: Const = { tag: 'const', type: 'bool', value: null }
const TRUE: Const = { tag: 'const', type: 'bool', value: 1 }
const FALSE: Const = { tag: 'const', type: 'bool', value: 0 }

function constOf (type: ValueType, value: number | string | null): Const {
  // NaN (0/0, x % 0) is NULL in the columnar format.
  return { tag: 'const', type, value: typeof value === 'number' && value !== value ? null : value }
}

function boolConst (b: number | null): Const {
  return b === null ? NULL_BOOL : b === 1 ? TRUE : FALSE
}

function boolVec (values: Float64Array): NumVector {
  return { tag: 'num', type: 'bool', values }
}

/** NULL of every row, either a NULL constant or (defensively) a vector typed 'null'. */
function isNullVal (v: Val): boolean {
  return v.tag === 'const' ? v.value === null : v.type === 'null'
}

function materialize (v: Val, n: number): ColumnVector {
  if (v.tag !== 'const') return v
  const t = v.type
  if (t === 'utf8') {
    const codes = new Int32Array(n)
    if (v.value === null) { codes.fill(-1); return { tag: 'str', type: 'utf8', codes, dict: [] } }
    return { tag: 'str', type: 'utf8', codes, dict: [String(v.value)] }
  }
  const dim = /^vector<(\d+)>$/.exec(t)
  if (dim !== null) return { tag: 'vec', type: t, dim: Number(dim[1]), values: new Float32Array(n * Number(dim[1])), valid: new Uint8Array(n) }
  if (t.startsWith('list<')) return { tag: 'any', type: t, values: new Array<unknown>(n).fill(null) }
  const values = new Float64Array(n)
  values.fill(v.value === null ? NaN : v.value as number)
  return { tag: 'num', type: t, values }
}

/** The same values under another (unified) type: int64 in a float64 CASE, say. */
function retype (v: Val, type: ValueType): Val {
  if (v.type === type || v.tag === 'str') return v
  if (v.tag === 'const') return { tag: 'const', type, value: v.value }
  if (v.tag === 'num') return { tag: 'num', type, values: v.values }
  return v
}

/** `out[i] = table[codes[i]]`, NaN for a NULL code. */
function mapCodes (codes: Int32Array, table: Float64Array): Float64Array {
  const n = codes.length
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const c = codes[i]!
    out[i] = c < 0 ? NaN : table[c]!
  }
  return out
}

/** A string vector through a per-entry function: a new, duplicate-free dictionary; the input's codes when no two entries merge. */
function mapDict (v: StrVector, f: (s: string) => string): StrVector {
  const d = v.dict
  const nd: string[] = []
  const index = new Map<string, number>()
  const remap = new Int32Array(d.length)
  let same = true
  for (let j = 0; j < d.length; j++) {
    const s = f(d[j]!)
    let k = index.get(s)
    if (k === undefined) { k = nd.length; nd.push(s); index.set(s, k) }
    remap[j] = k
    if (k !== j) same = false
  }
  if (same) return { tag: 'str', type: 'utf8', codes: v.codes, dict: nd }
  const n = v.codes.length
  const codes = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const c = v.codes[i]!
    codes[i] = c < 0 ? -1 : remap[c]!
  }
  return { tag: 'str', type: 'utf8', codes, dict: nd }
}

// ---------------------------------------------------------------------------------------------
// The evaluator

function ev (e: Expr, batch: ColumnBatch): Val {
  switch (e.kind) {
    case 'Column': {
      const v = batch.columns.get(e.name)
      if (v === undefined) throw new EvalError(`no column '${e.name}' in the batch (columns: ${[...batch.columns.keys()].join(', ')})`)
      return v.type === 'null' ? constOf('null', null) : v
    }
    case 'Literal':
      switch (e.type) {
        case 'null': return constOf('null', null)
        case 'bool': return boolConst(e.value ? 1 : 0)
        case 'int64': return constOf('int64', Number(e.value))
        case 'float64': return constOf('float64', e.value)
        case 'utf8': return constOf('utf8', e.value)
      }
      break
    case 'Binary': return binaryExpr(e, batch)
    case 'Unary': {
      const v = ev(e.operand, batch)
      return e.op === 'NOT' ? not(v) : negate(v)
    }
    case 'InList': return inList(e, batch)
    case 'Between': return betweenExpr(e, batch)
    case 'Like': return likeExpr(e, batch)
    case 'IsNull': return isNullExpr(ev(e.operand, batch), e.negated, batch.length)
    case 'Call': return callExpr(e, batch)
    case 'Case': return caseExpr(e, batch)
  }
  throw new EvalError(`cannot evaluate a ${(e as { kind: string }).kind} node`)
}

function binaryExpr (e: BinaryNode, batch: ColumnBatch): Val {
  const n = batch.length
  const op = e.op
  if (op === 'AND' || op === 'OR') {
    const l = ev(e.left, batch)
    // Short cut: FALSE AND x, TRUE OR x.
    if (l.tag === 'const' && l.value === (op === 'AND' ? 0 : 1)) return l
    return logic(op, l, ev(e.right, batch))
  }
  const l = ev(e.left, batch)
  const r = ev(e.right, batch)
  if (isComparison(op)) return compare(op, l, r, n)
  if (op === '||') return concat(l, r)
  return arith(op, l, r)
}

// --- Comparison ------------------------------------------------------------------------------

/** The operator that holds with the operands swapped (`5 < x` is `x > 5`). */
export const FLIP: Record<ComparisonOp, ComparisonOp> = { '=': '=', '<>': '<>', '<': '>', '<=': '>=', '>': '<', '>=': '<=' }

/** 1 or 0 from a three-way comparison result. */
export function cmpHolds (op: ComparisonOp, c: number): number {
  switch (op) {
    case '=': return c === 0 ? 1 : 0
    case '<>': return c !== 0 ? 1 : 0
    case '<': return c < 0 ? 1 : 0
    case '<=': return c <= 0 ? 1 : 0
    case '>': return c > 0 ? 1 : 0
    case '>=': return c >= 0 ? 1 : 0
  }
}

/** Strings in code point order (as DuckDB's byte order of UTF-8), not UTF-16 unit order. */
export function compareStrings (a: string, b: string): number {
  if (a === b) return 0
  const n = a.length < b.length ? a.length : b.length
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x !== y) {
      if (x >= 0xD800 && y >= 0xD800) {
        // Surrogates (astral code points) sort after U+E000..U+FFFF.
        x = x >= 0xE000 ? x - 0x800 : x + 0x2000
        y = y >= 0xE000 ? y - 0x800 : y + 0x2000
      }
      return x - y
    }
  }
  return a.length - b.length
}

/**
 * Brings two operands of a comparison to one domain: strings against timestamps/dates are
 * parsed (as DuckDB casts them), dates against timestamps become ms. Null when either is NULL.
 */
function coercePair (l: Val, r: Val): [Val, Val] | null {
  if (isNullVal(l) || isNullVal(r)) return null
  if (isTemporalType(l.type) && r.type === 'utf8') r = toTemporal(r, l.type)
  else if (isTemporalType(r.type) && l.type === 'utf8') l = toTemporal(l, r.type)
  if (l.type === 'date' && r.type === 'timestamp') l = daysToMs(l)
  else if (l.type === 'timestamp' && r.type === 'date') r = daysToMs(r)
  return [l, r]
}

function compare (op: ComparisonOp, l: Val, r: Val, n: number): Val {
  const p = coercePair(l, r)
  if (p === null) return NULL_BOOL
  const [a, b] = p
  if (a.tag === 'const' && b.tag === 'const') {
    const x = a.value!
    const y = b.value!
    const c = typeof x === 'string' ? compareStrings(x, y as string) : ((x as number) < (y as number) ? -1 : (x as number) > (y as number) ? 1 : 0)
    return boolConst(cmpHolds(op, c))
  }
  if (a.type === 'utf8' || b.type === 'utf8') return compareStr(op, a, b)
  const out = new Float64Array(n)
  if (b.tag === 'const') cmpVC(op, (a as NumVector).values, b.value as number, out)
  else if (a.tag === 'const') cmpVC(FLIP[op], (b as NumVector).values, a.value as number, out)
  else cmpVV(op, (a as NumVector).values, (b as NumVector).values, out)
  return boolVec(out)
}

function cmpVC (op: ComparisonOp, a: Float64Array, c: number, out: Float64Array): void {
  const n = out.length
  switch (op) {
    case '=': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x === c ? 1 : x === x ? 0 : NaN } break
    case '<>': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x !== x ? NaN : x !== c ? 1 : 0 } break
    case '<': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x < c ? 1 : x >= c ? 0 : NaN } break
    case '<=': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x <= c ? 1 : x > c ? 0 : NaN } break
    case '>': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x > c ? 1 : x <= c ? 0 : NaN } break
    case '>=': for (let i = 0; i < n; i++) { const x = a[i]!; out[i] = x >= c ? 1 : x < c ? 0 : NaN } break
  }
}

function cmpVV (op: ComparisonOp, a: Float64Array, b: Float64Array, out: Float64Array): void {
  const n = out.length
  switch (op) {
    case '=': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x === y ? 1 : x !== x || y !== y ? NaN : 0 } break
    case '<>': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x !== x || y !== y ? NaN : x !== y ? 1 : 0 } break
    case '<': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x < y ? 1 : x >= y ? 0 : NaN } break
    case '<=': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x <= y ? 1 : x > y ? 0 : NaN } break
    case '>': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x > y ? 1 : x <= y ? 0 : NaN } break
    case '>=': for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x >= y ? 1 : x < y ? 0 : NaN } break
  }
}

/** String comparison: against a constant once per dictionary entry; two vectors through ranks of their merged, sorted dictionaries. */
function compareStr (op: ComparisonOp, a: Val, b: Val): Val {
  if (b.tag === 'const' || a.tag === 'const') {
    const v = (b.tag === 'const' ? a : b) as StrVector
    const c = String((b.tag === 'const' ? b : a as Const).value)
    const o = b.tag === 'const' ? op : FLIP[op]
    const d = v.dict
    const table = new Float64Array(d.length)
    for (let j = 0; j < d.length; j++) table[j] = cmpHolds(o, compareStrings(d[j]!, c))
    return boolVec(mapCodes(v.codes, table))
  }
  const x = a as StrVector
  const y = b as StrVector
  const out = new Float64Array(x.codes.length)
  if (x.dict === y.dict && (op === '=' || op === '<>')) {
    const xc = x.codes
    const yc = y.codes
    const eq = op === '=' ? 1 : 0
    for (let i = 0; i < out.length; i++) {
      const p = xc[i]!
      const q = yc[i]!
      out[i] = p < 0 || q < 0 ? NaN : p === q ? eq : 1 - eq
    }
    return boolVec(out)
  }
  const [rx, ry] = ranks(x.dict, y.dict)
  cmpVV(op, mapCodes(x.codes, rx), mapCodes(y.codes, ry), out)
  return boolVec(out)
}

/** Per entry of each dictionary, its rank among the distinct strings of both, in code point order. */
function ranks (dx: readonly string[], dy: readonly string[]): [Float64Array, Float64Array] {
  const all = [...new Set([...dx, ...dy])].sort(compareStrings)
  const rank = new Map<string, number>()
  for (let i = 0; i < all.length; i++) rank.set(all[i]!, i)
  const rx = new Float64Array(dx.length)
  for (let j = 0; j < dx.length; j++) rx[j] = rank.get(dx[j]!)!
  const ry = new Float64Array(dy.length)
  for (let j = 0; j < dy.length; j++) ry[j] = rank.get(dy[j]!)!
  return [rx, ry]
}

// --- Temporal ---------------------------------------------------------------------------------

function daysToMs (v: Val): Val {
  if (v.tag === 'const') return constOf('timestamp', v.value === null ? null : (v.value as number) * MS_PER_DAY)
  const src = (v as NumVector).values
  const out = new Float64Array(src.length)
  for (let i = 0; i < src.length; i++) out[i] = src[i]! * MS_PER_DAY
  return { tag: 'num', type: 'timestamp', values: out }
}

/** A utf8 value read as a timestamp (ms) or a date (days), as DuckDB casts it for a comparison; an EvalError for a string that is not one. */
function toTemporal (v: Val, type: ValueType): Val {
  const parse = type === 'date' ? parseDate : parseTimestamp
  if (v.tag === 'const') {
    if (v.value === null) return constOf(type, null)
    const s = String(v.value)
    const x = parse(s)
    if (x === undefined) throw badTemporal(s, type)
    return constOf(type, x)
  }
  const sv = v as StrVector
  const d = sv.dict
  const table = new Float64Array(d.length)
  let bad = -1
  for (let j = 0; j < d.length; j++) {
    const x = parse(d[j]!)
    if (x === undefined) { table[j] = NaN; if (bad < 0) bad = j } else table[j] = x
  }
  const out = mapCodes(sv.codes, table)
  if (bad >= 0) {
    // Only a string some row uses is an error (dictionaries may hold unused entries).
    const codes = sv.codes
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i]!
      if (c >= 0 && table[c] !== table[c]) throw badTemporal(d[c]!, type)
    }
  }
  return { tag: 'num', type, values: out }
}

function badTemporal (s: string, type: ValueType): EvalError {
  return new EvalError(`'${s}' is not a valid ${type === 'date' ? 'date (YYYY-MM-DD)' : 'timestamp (YYYY-MM-DD[ HH:MM[:SS[.ffffff]]])'}`)
}

function isLeap (y: number): boolean {
  return y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)
}

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** Days since 1970-01-01 of a proleptic Gregorian date (astronomical years), or undefined when out of range. */
function civilDays (y: number, m: number, d: number): number | undefined {
  if (m < 1 || m > 12 || d < 1 || d > (m === 2 && isLeap(y) ? 29 : MONTH_DAYS[m - 1]!)) return undefined
  const yy = m <= 2 ? y - 1 : y
  const era = Math.floor(yy / 400)
  const yoe = yy - era * 400
  const mp = (m + 9) % 12
  const doy = Math.floor((153 * mp + 2) / 5) + d - 1
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
}

// DuckDB: separators '-', '/' or ' ' (the same twice); 'T' or ' ' before the time; seconds and
// fraction optional (fraction to microseconds); a trailing Z, UTC or ±HH[:MM[:SS]] offset is
// accepted and ignored (cast to TIMESTAMP keeps the wall clock, as Postgres does).
const TIMESTAMP_RE = /^(-?\d+)([-/ ])(\d{1,2})\2(\d{1,2})(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?(?:Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?| ?UTC)?$/i
// DuckDB casts to DATE leniently: leading blanks, and anything after the day is ignored.
const DATE_RE = /^\s*(-?\d+)([-/ ])(\d{1,2})\2(\d{1,2})(?!\d)/

function special (s: string): number | undefined {
  const t = s.trim().toLowerCase()
  return t === 'epoch' ? 0 : t === 'infinity' ? Infinity : t === '-infinity' ? -Infinity : undefined
}

/** ms since the epoch of an ISO-like timestamp string, as DuckDB's cast to TIMESTAMP reads it. */
export function parseTimestamp (s: string): number | undefined {
  const m = TIMESTAMP_RE.exec(s)
  if (m === null) return special(s)
  const days = civilDays(Number(m[1]), Number(m[3]), Number(m[4]))
  if (days === undefined) return undefined
  if (m[5] === undefined) return days * MS_PER_DAY
  const h = Number(m[5])
  const mi = Number(m[6])
  const sec = m[7] === undefined ? 0 : Number(m[7])
  const frac = m[8] === undefined || m[8] === '' ? 0 : Number((m[8] + '00000').slice(0, 6))
  if (mi > 59 || sec > 59 || h > 24 || (h === 24 && (mi > 0 || sec > 0 || frac > 0))) return undefined
  return days * MS_PER_DAY + h * 3_600_000 + mi * 60_000 + sec * 1000 + frac / 1000
}

/** Days since the epoch of a 'YYYY-MM-DD' string, as DuckDB's cast to DATE reads it. */
export function parseDate (s: string): number | undefined {
  const m = DATE_RE.exec(s)
  if (m === null) return special(s)
  return civilDays(Number(m[1]), Number(m[3]), Number(m[4]))
}

// --- Logic -------------------------------------------------------------------------------------

function logic (op: 'AND' | 'OR', l: Val, r: Val): Val {
  if (l.tag === 'const') return logicConst(op, l.value as number | null, r)
  if (r.tag === 'const') return logicConst(op, r.value as number | null, l)
  const a = (l as NumVector).values
  const b = (r as NumVector).values
  const n = a.length
  const out = new Float64Array(n)
  if (op === 'AND') {
    for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x === 0 || y === 0 ? 0 : x === 1 && y === 1 ? 1 : NaN }
  } else {
    for (let i = 0; i < n; i++) { const x = a[i]!; const y = b[i]!; out[i] = x === 1 || y === 1 ? 1 : x === 0 && y === 0 ? 0 : NaN }
  }
  return boolVec(out)
}

function logicConst (op: 'AND' | 'OR', c: number | null, v: Val): Val {
  const absorbing = op === 'AND' ? 0 : 1
  if (c === absorbing) return boolConst(c)
  if (c !== null) return v.tag === 'const' ? boolConst(v.value as number | null) : v
  // NULL AND x is FALSE where x is FALSE, else NULL; NULL OR x is TRUE where x is TRUE, else NULL.
  if (v.tag === 'const') return boolConst(v.value === absorbing ? absorbing : null)
  const a = (v as NumVector).values
  const out = new Float64Array(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[i] === absorbing ? absorbing : NaN
  return boolVec(out)
}

function not (v: Val): Val {
  if (v.tag === 'const') return boolConst(v.value === null ? null : 1 - (v.value as number))
  const a = (v as NumVector).values
  const out = new Float64Array(a.length)
  for (let i = 0; i < a.length; i++) out[i] = 1 - a[i]!
  return boolVec(out)
}

// --- Arithmetic --------------------------------------------------------------------------------

function negate (v: Val): Val {
  const int = isIntegerType(v.type)
  if (v.tag === 'const') return constOf(v.type, v.value === null ? null : int ? 0 - (v.value as number) : -(v.value as number))
  const a = (v as NumVector).values
  const out = new Float64Array(a.length)
  // 0 - x keeps integer zero positive; -x keeps DuckDB's -0.0 for doubles.
  if (int) for (let i = 0; i < a.length; i++) out[i] = 0 - a[i]!
  else for (let i = 0; i < a.length; i++) out[i] = -a[i]!
  return { tag: 'num', type: v.type, values: out }
}

function arithScalar (op: string, x: number, y: number): number {
  switch (op) {
    case '+': return x + y
    case '-': return x - y
    case '*': return x * y
    case '/': return x / y
    default: return x % y
  }
}

function arith (op: BinaryNode['op'], l: Val, r: Val): Val {
  const type = arithmeticType(op, l.type, r.type)
  if (isNullVal(l) || isNullVal(r)) return constOf(type, null)
  // Integer results never carry -0 (0 * -1, -6 % 3); doubles keep it as DuckDB does.
  const int = isIntegerType(type)
  if (l.tag === 'const' && r.tag === 'const') return constOf(type, arithScalar(op, l.value as number, r.value as number) + (int ? 0 : -0))
  const n = l.tag === 'const' ? (r as NumVector).values.length : (l as NumVector).values.length
  const out = new Float64Array(n)
  const fix = int && (op === '*' || op === '%')
  if (r.tag === 'const') arithVC(op, (l as NumVector).values, r.value as number, out, fix)
  else if (l.tag === 'const') arithCV(op, l.value as number, (r as NumVector).values, out, fix)
  else arithVV(op, (l as NumVector).values, (r as NumVector).values, out, fix)
  return { tag: 'num', type, values: out }
}

function arithVV (op: string, a: Float64Array, b: Float64Array, out: Float64Array, fix: boolean): void {
  const n = out.length
  switch (op) {
    case '+': for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!; break
    case '-': for (let i = 0; i < n; i++) out[i] = a[i]! - b[i]!; break
    case '*':
      if (fix) for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]! + 0
      else for (let i = 0; i < n; i++) out[i] = a[i]! * b[i]!
      break
    case '/': for (let i = 0; i < n; i++) out[i] = a[i]! / b[i]!; break
    case '%':
      if (fix) for (let i = 0; i < n; i++) out[i] = a[i]! % b[i]! + 0
      else for (let i = 0; i < n; i++) out[i] = a[i]! % b[i]!
      break
  }
}

function arithVC (op: string, a: Float64Array, c: number, out: Float64Array, fix: boolean): void {
  const n = out.length
  switch (op) {
    case '+': for (let i = 0; i < n; i++) out[i] = a[i]! + c; break
    case '-': for (let i = 0; i < n; i++) out[i] = a[i]! - c; break
    case '*':
      if (fix) for (let i = 0; i < n; i++) out[i] = a[i]! * c + 0
      else for (let i = 0; i < n; i++) out[i] = a[i]! * c
      break
    case '/': for (let i = 0; i < n; i++) out[i] = a[i]! / c; break
    case '%':
      if (fix) for (let i = 0; i < n; i++) out[i] = a[i]! % c + 0
      else for (let i = 0; i < n; i++) out[i] = a[i]! % c
      break
  }
}

function arithCV (op: string, c: number, b: Float64Array, out: Float64Array, fix: boolean): void {
  const n = out.length
  switch (op) {
    case '+': for (let i = 0; i < n; i++) out[i] = c + b[i]!; break
    case '-': for (let i = 0; i < n; i++) out[i] = c - b[i]!; break
    case '*':
      if (fix) for (let i = 0; i < n; i++) out[i] = c * b[i]! + 0
      else for (let i = 0; i < n; i++) out[i] = c * b[i]!
      break
    case '/': for (let i = 0; i < n; i++) out[i] = c / b[i]!; break
    case '%':
      if (fix) for (let i = 0; i < n; i++) out[i] = c % b[i]! + 0
      else for (let i = 0; i < n; i++) out[i] = c % b[i]!
      break
  }
}

// --- Strings -----------------------------------------------------------------------------------

function concat (l: Val, r: Val): Val {
  if (isNullVal(l) || isNullVal(r)) return constOf('utf8', null)
  if (l.tag === 'const' && r.tag === 'const') return constOf('utf8', String(l.value) + String(r.value))
  if (r.tag === 'const') { const c = String(r.value); return mapDict(l as StrVector, s => s + c) }
  if (l.tag === 'const') { const c = String(l.value); return mapDict(r as StrVector, s => c + s) }
  const x = l as StrVector
  const y = r as StrVector
  const n = x.codes.length
  const codes = new Int32Array(n)
  const dict: string[] = []
  const byPair = new Map<number, number>()
  const byString = new Map<string, number>()
  const width = y.dict.length
  for (let i = 0; i < n; i++) {
    const p = x.codes[i]!
    const q = y.codes[i]!
    if (p < 0 || q < 0) { codes[i] = -1; continue }
    const key = p * width + q
    let c = byPair.get(key)
    if (c === undefined) {
      const s = x.dict[p]! + y.dict[q]!
      c = byString.get(s)
      if (c === undefined) { c = dict.length; dict.push(s); byString.set(s, c) }
      byPair.set(key, c)
    }
    codes[i] = c
  }
  return { tag: 'str', type: 'utf8', codes, dict }
}

const ASCII = /^[\x00-\x7f]*$/
const lowerCache = new Map<string, string>()
const upperCache = new Map<string, string>()

function singleCodePoint (s: string): boolean {
  return s.length === 1 || (s.length === 2 && s.charCodeAt(0) >= 0xD800 && s.charCodeAt(0) < 0xDC00)
}

/**
 * DuckDB's lower(): a simple one-to-one mapping per code point, with no context (a final Σ is σ)
 * and no expansion (JS lowers İ to i + U+0307; DuckDB to i).
 */
function lowerChar (ch: string): string { return mapChar(ch, lowerCache, c => c.toLowerCase(), '\u0130', 'i') }

/** DuckDB's upper(): per code point, no expansion (JS uppercases ß to SS; DuckDB to ẞ). */
function upperChar (ch: string): string { return mapChar(ch, upperCache, c => c.toUpperCase(), '\u00DF', '\u1E9E') }

/** One code point mapped by `js`, kept one code point: an expansion is undone, except `special`'s. */
function mapChar (ch: string, cache: Map<string, string>, js: (c: string) => string, special: string, specialTo: string): string {
  let m = cache.get(ch)
  if (m === undefined) {
    const x = js(ch)
    m = singleCodePoint(x) ? x : ch === special ? specialTo : ch
    cache.set(ch, m)
  }
  return m
}

export function sqlLower (s: string): string {
  if (ASCII.test(s)) return s.toLowerCase()
  let out = ''
  for (const ch of s) out += lowerChar(ch)
  return out
}

export function sqlUpper (s: string): string {
  if (ASCII.test(s)) return s.toUpperCase()
  let out = ''
  for (const ch of s) out += upperChar(ch)
  return out
}

/** Unicode code points, as DuckDB's length(). */
function codePoints (s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0xDC00 || c > 0xDFFF) n++
  }
  return n
}

// --- LIKE --------------------------------------------------------------------------------------

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g

/**
 * A LIKE pattern as a matcher, built once per pattern: `%` any run, `_` one code point, the escape
 * character makes the next one literal (DuckDB has no default escape). For ILIKE the pattern's
 * literal characters are lowered here and the caller lowers the subject.
 */
function compileLike (pattern: string, escape: string | null, lower: boolean): (s: string) => boolean {
  let src = ''
  let literal = ''
  const parts: Array<string | null> = [] // literal runs, null for %
  let simple = true // only literals and %
  let pending = false
  for (const ch of pattern) {
    if (pending) { literal += lower ? lowerChar(ch) : ch; pending = false; continue }
    if (escape !== null && ch === escape) { pending = true; continue }
    if (ch === '%' || ch === '_') {
      if (literal !== '') { parts.push(literal); src += literal.replace(REGEX_SYNTAX, '\\$&'); literal = '' }
      if (ch === '%') { if (parts[parts.length - 1] !== null) parts.push(null); src += '.*' } else { simple = false; src += '.' }
      continue
    }
    literal += lower ? lowerChar(ch) : ch
  }
  if (pending) throw new EvalError(`LIKE pattern '${pattern}' must not end with the escape character`)
  if (literal !== '') { parts.push(literal); src += literal.replace(REGEX_SYNTAX, '\\$&') }
  if (simple) {
    // Common shapes without a regex: 'abc', 'abc%', '%abc', '%abc%', '%'.
    if (parts.length === 0) return s => s === ''
    if (parts.length === 1) { const a = parts[0]; return a === null ? () => true : s => s === a }
    if (parts.length === 2 && parts[1] === null) { const a = parts[0]!; return s => s.startsWith(a) }
    if (parts.length === 2 && parts[0] === null) { const a = parts[1]!; return s => s.endsWith(a) }
    if (parts.length === 3 && parts[0] === null && parts[2] === null) { const a = parts[1]!; return s => s.includes(a) }
  }
  const re = new RegExp(`^${src}$`, 'su')
  return s => re.test(s)
}

function likeExpr (e: LikeNode, batch: ColumnBatch): Val {
  const x = ev(e.operand, batch)
  const p = ev(e.pattern, batch)
  if (isNullVal(x) || isNullVal(p)) return NULL_BOOL
  const ci = e.caseInsensitive
  const yes = e.negated ? 0 : 1
  const no = 1 - yes
  const subject = (s: string): string => ci ? sqlLower(s) : s
  if (p.tag === 'const') {
    const match = compileLike(String(p.value), e.escape, ci)
    if (x.tag === 'const') return boolConst(match(subject(String(x.value))) ? yes : no)
    const d = (x as StrVector).dict
    const table = new Float64Array(d.length)
    for (let j = 0; j < d.length; j++) table[j] = match(subject(d[j]!)) ? yes : no
    return boolVec(mapCodes((x as StrVector).codes, table))
  }
  // A pattern per row: compiled once per distinct pattern.
  const pv = p as StrVector
  const matchers = new Array<((s: string) => boolean) | undefined>(pv.dict.length)
  const matcher = (c: number): (s: string) => boolean => {
    let m = matchers[c]
    if (m === undefined) { m = compileLike(pv.dict[c]!, e.escape, ci); matchers[c] = m }
    return m
  }
  if (x.tag === 'const') {
    const s = subject(String(x.value))
    const table = new Float64Array(pv.dict.length)
    const used = usedCodes(pv)
    for (let j = 0; j < pv.dict.length; j++) table[j] = used[j] === 1 ? (matcher(j)(s) ? yes : no) : NaN
    return boolVec(mapCodes(pv.codes, table))
  }
  const xv = x as StrVector
  const subjects = ci ? xv.dict.map(sqlLower) : xv.dict
  const n = xv.codes.length
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const a = xv.codes[i]!
    const b = pv.codes[i]!
    out[i] = a < 0 || b < 0 ? NaN : matcher(b)(subjects[a]!) ? yes : no
  }
  return boolVec(out)
}

function usedCodes (v: StrVector): Uint8Array {
  const used = new Uint8Array(v.dict.length)
  for (let i = 0; i < v.codes.length; i++) { const c = v.codes[i]!; if (c >= 0) used[c] = 1 }
  return used
}

// --- IN, BETWEEN, IS NULL ----------------------------------------------------------------------

function inList (e: InListNode, batch: ColumnBatch): Val {
  const n = batch.length
  const x = ev(e.operand, batch)
  const vals = e.values.map(v => ev(v, batch))
  if (vals.length === 0) return boolConst(e.negated ? 1 : 0)
  if (vals.every(v => v.tag === 'const')) {
    if (isNullVal(x)) return NULL_BOOL
    let hasNull = false
    const items: Array<number | string> = []
    let sameOperand = true
    for (const v of vals) {
      const p = coercePair(x, v)
      if (p === null) { hasNull = true; continue }
      if (p[0] !== x) sameOperand = false
      items.push((p[1] as Const).value!)
    }
    if (sameOperand) {
      const hit = e.negated ? 0 : 1
      const miss = hasNull ? NaN : 1 - hit
      if (x.tag === 'const') {
        const found = items.includes(x.value!)
        return boolConst(found ? hit : hasNull ? null : miss)
      }
      if (x.tag === 'str') {
        const set = new Set(items)
        const d = x.dict
        const table = new Float64Array(d.length)
        for (let j = 0; j < d.length; j++) table[j] = set.has(d[j]!) ? hit : miss
        return boolVec(mapCodes(x.codes, table))
      }
      const a = (x as NumVector).values
      const out = new Float64Array(n)
      if (items.length <= 8) {
        const list = Float64Array.from(items as number[])
        const k = list.length
        for (let i = 0; i < n; i++) {
          const v = a[i]!
          if (v !== v) { out[i] = NaN; continue }
          let found = false
          for (let j = 0; j < k; j++) if (list[j] === v) { found = true; break }
          out[i] = found ? hit : miss
        }
      } else {
        const set = new Set(items as number[])
        for (let i = 0; i < n; i++) { const v = a[i]!; out[i] = v !== v ? NaN : set.has(v) ? hit : miss }
      }
      return boolVec(out)
    }
  }
  // x IN (a, b) is x = a OR x = b, with SQL's three-valued logic.
  let acc = compare('=', x, vals[0]!, n)
  for (let k = 1; k < vals.length; k++) acc = logic('OR', acc, compare('=', x, vals[k]!, n))
  return e.negated ? not(acc) : acc
}

function betweenExpr (e: BetweenNode, batch: ColumnBatch): Val {
  const n = batch.length
  const x = ev(e.operand, batch)
  const lo = ev(e.low, batch)
  const hi = ev(e.high, batch)
  const p = coercePair(x, lo)
  const q = coercePair(x, hi)
  if (p !== null && q !== null && p[0] === q[0] && p[0].tag !== 'const' && p[1].tag === 'const' && q[1].tag === 'const') {
    const yes = e.negated ? 0 : 1
    const no = 1 - yes
    const v = p[0]
    if (v.tag === 'str') {
      const l = String(p[1].value)
      const h = String(q[1].value)
      const d = v.dict
      const table = new Float64Array(d.length)
      for (let j = 0; j < d.length; j++) table[j] = compareStrings(d[j]!, l) >= 0 && compareStrings(d[j]!, h) <= 0 ? yes : no
      return boolVec(mapCodes(v.codes, table))
    }
    if (v.tag === 'num') {
      const l = p[1].value as number
      const h = q[1].value as number
      const a = v.values
      const out = new Float64Array(n)
      for (let i = 0; i < n; i++) { const y = a[i]!; out[i] = y >= l && y <= h ? yes : y === y ? no : NaN }
      return boolVec(out)
    }
  }
  const r = logic('AND', compare('>=', x, lo, n), compare('<=', x, hi, n))
  return e.negated ? not(r) : r
}

function isNullExpr (v: Val, negated: boolean, n: number): Val {
  const yes = negated ? 0 : 1
  const no = 1 - yes
  if (v.tag === 'const') return boolConst(v.value === null ? yes : no)
  const out = new Float64Array(n)
  switch (v.tag) {
    case 'num': { const a = v.values; for (let i = 0; i < n; i++) out[i] = a[i] !== a[i] ? yes : no } break
    case 'str': { const c = v.codes; for (let i = 0; i < n; i++) out[i] = c[i]! < 0 ? yes : no } break
    case 'vec': { const ok = v.valid; for (let i = 0; i < n; i++) out[i] = ok[i] === 0 ? yes : no } break
    case 'any': { const a = v.values; for (let i = 0; i < n; i++) out[i] = a[i] === null || a[i] === undefined ? yes : no } break
  }
  return boolVec(out)
}

// --- Functions ---------------------------------------------------------------------------------

/** std::round: halves away from zero. */
function roundHalfAway (v: number): number {
  const t = Math.trunc(v)
  const f = v - t
  return f >= 0.5 ? t + 1 : f <= -0.5 ? t - 1 : t
}

/** DuckDB's round(double, digits). */
function roundDigits (x: number, d: number): number {
  if (x !== x || d !== d) return NaN
  if (d < 0) {
    const m = 10 ** -d
    const r = roundHalfAway(x / m) * m
    return Number.isFinite(r) ? r : 0
  }
  const m = 10 ** d
  const r = roundHalfAway(x * m) / m
  return Number.isFinite(r) ? r : x
}

/** DuckDB's round(integer, digits): unchanged for digits >= 0, else to a multiple of 10^-digits, halves away from zero. */
function roundIntDigits (x: number, d: number): number {
  if (x !== x || d !== d) return NaN
  if (d >= 0) return x
  const m = 10 ** -d
  const r = roundHalfAway(x / m) * m
  return Number.isFinite(r) ? r + 0 : 0
}

function callExpr (e: CallNode, batch: ColumnBatch): Val {
  const n = batch.length
  switch (e.name) {
    case 'lower': case 'upper': {
      const f = e.name === 'lower' ? sqlLower : sqlUpper
      const x = ev(e.args[0]!, batch)
      if (isNullVal(x)) return constOf('utf8', null)
      if (x.tag === 'const') return constOf('utf8', f(String(x.value)))
      return mapDict(x as StrVector, f)
    }
    case 'length': {
      const x = ev(e.args[0]!, batch)
      if (isNullVal(x)) return constOf('int64', null)
      if (x.tag === 'const') return constOf('int64', codePoints(String(x.value)))
      const d = (x as StrVector).dict
      const table = new Float64Array(d.length)
      for (let j = 0; j < d.length; j++) table[j] = codePoints(d[j]!)
      return { tag: 'num', type: 'int64', values: mapCodes((x as StrVector).codes, table) }
    }
    case 'abs': {
      const x = ev(e.args[0]!, batch)
      if (x.tag === 'const') return constOf(x.type, x.value === null ? null : Math.abs(x.value as number))
      const a = (x as NumVector).values
      const out = new Float64Array(n)
      for (let i = 0; i < n; i++) out[i] = Math.abs(a[i]!)
      return { tag: 'num', type: x.type, values: out }
    }
    case 'round': return roundExpr(e, batch)
    case 'coalesce': return coalesceExpr(e, batch)
  }
  throw new EvalError(`unknown function ${e.name}()`)
}

function roundExpr (e: CallNode, batch: ColumnBatch): Val {
  const n = batch.length
  const x = ev(e.args[0]!, batch)
  const d = e.args.length > 1 ? ev(e.args[1]!, batch) : constOf('int64', 0)
  const type = x.type
  if (isNullVal(x) || isNullVal(d)) return constOf(type, null)
  const int = isIntegerType(type)
  const f = int ? roundIntDigits : roundDigits
  if (x.tag === 'const' && d.tag === 'const') return constOf(type, f(x.value as number, d.value as number))
  if (d.tag === 'const') {
    const digits = d.value as number
    if (int && digits >= 0) return x
    const a = (x as NumVector).values
    const out = new Float64Array(n)
    if (int) for (let i = 0; i < n; i++) out[i] = roundIntDigits(a[i]!, digits)
    else if (digits === 0) for (let i = 0; i < n; i++) out[i] = roundHalfAway(a[i]!)
    else for (let i = 0; i < n; i++) out[i] = roundDigits(a[i]!, digits)
    return { tag: 'num', type, values: out }
  }
  const dv = (d as NumVector).values
  const out = new Float64Array(n)
  if (x.tag === 'const') { const c = x.value as number; for (let i = 0; i < n; i++) out[i] = f(c, dv[i]!) } else {
    const a = (x as NumVector).values
    for (let i = 0; i < n; i++) out[i] = f(a[i]!, dv[i]!)
  }
  return { tag: 'num', type, values: out }
}

function columnTypes (batch: ColumnBatch): (name: string) => ValueType | undefined {
  return name => batch.columns.get(name)?.type
}

function coalesceExpr (e: CallNode, batch: ColumnBatch): Val {
  const n = batch.length
  const type = exprType(e, columnTypes(batch))
  const k = e.args.length
  const pick = new Int32Array(n).fill(-1)
  const vals = new Array<Val | undefined>(k + 1)
  let left = n
  for (let a = 0; a < k; a++) {
    const v = ev(e.args[a]!, batch)
    vals[a] = v
    if (v.tag === 'const') {
      if (v.value === null) continue
      if (left === n) return retype(v, type) // every row takes this constant
      for (let i = 0; i < n; i++) if (pick[i]! < 0) pick[i] = a
      left = 0
      break
    }
    left -= pickNonNull(v, a, pick)
    if (left === 0) break
  }
  if (left === n) return constOf(type, null)
  vals[k] = constOf(type, null)
  if (left > 0) for (let i = 0; i < n; i++) if (pick[i] < 0) pick[i] = k
  return choose(pick, vals, type, n)
}

/** Assigns branch `b` to the rows not yet picked where `v` is not NULL; how many it took. */
function pickNonNull (v: ColumnVector, b: number, pick: Int32Array): number {
  const n = pick.length
  let took = 0
  switch (v.tag) {
    case 'num': { const a = v.values; for (let i = 0; i < n; i++) if (pick[i]! < 0 && a[i] === a[i]) { pick[i] = b; took++ } } break
    case 'str': { const c = v.codes; for (let i = 0; i < n; i++) if (pick[i]! < 0 && c[i]! >= 0) { pick[i] = b; took++ } } break
    case 'vec': { const ok = v.valid; for (let i = 0; i < n; i++) if (pick[i]! < 0 && ok[i] === 1) { pick[i] = b; took++ } } break
    case 'any': { const a = v.values; for (let i = 0; i < n; i++) if (pick[i]! < 0 && a[i] !== null && a[i] !== undefined) { pick[i] = b; took++ } } break
  }
  return took
}

function caseExpr (e: CaseNode, batch: ColumnBatch): Val {
  const n = batch.length
  const type = exprType(e, columnTypes(batch))
  const operand = e.operand === null ? null : ev(e.operand, batch)
  const k = e.whens.length
  const pick = new Int32Array(n).fill(-1)
  let left = n
  for (let b = 0; b < k && left > 0; b++) {
    const w = ev(e.whens[b]!.when, batch)
    const cond = operand === null ? w : compare('=', operand, w, n)
    if (cond.tag === 'const') {
      if (cond.value !== 1) continue
      if (left === n) return retype(ev(e.whens[b]!.then, batch), type)
      for (let i = 0; i < n; i++) if (pick[i]! < 0) pick[i] = b
      left = 0
      break
    }
    const c = (cond as NumVector).values
    for (let i = 0; i < n; i++) if (pick[i]! < 0 && c[i] === 1) { pick[i] = b; left-- }
  }
  if (left === n) return e.else === null ? constOf(type, null) : retype(ev(e.else, batch), type)
  if (left > 0) for (let i = 0; i < n; i++) if (pick[i]! < 0) pick[i] = k
  // Only the branches some row takes are evaluated.
  const used = new Uint8Array(k + 1)
  for (let i = 0; i < n; i++) used[pick[i]!] = 1
  const vals = new Array<Val | undefined>(k + 1)
  for (let b = 0; b <= k; b++) {
    if (used[b] === 0) continue
    const x = b < k ? e.whens[b]!.then : e.else
    vals[b] = x === null ? constOf(type, null) : ev(x, batch)
  }
  return choose(pick, vals, type, n)
}

/** Row i takes its value from `vals[pick[i]]`: a vector of the (unified) result type. */
function choose (pick: Int32Array, vals: ReadonlyArray<Val | undefined>, type: ValueType, n: number): Val {
  const k = vals.length
  let only = -1
  let count = 0
  const used = new Uint8Array(k)
  for (let i = 0; i < n; i++) used[pick[i]!] = 1
  for (let b = 0; b < k; b++) if (used[b] === 1) { count++; only = b }
  if (count === 0) return constOf(type, null)
  if (count === 1) return retype(vals[only]!, type)
  if (type === 'null') return constOf('null', null)
  if (type === 'utf8') return chooseStr(pick, vals, used, n)
  if (type.startsWith('vector<') || type.startsWith('list<')) return chooseOther(pick, vals, type, n)
  const arrays = new Array<Float64Array | null>(k).fill(null)
  const consts = new Float64Array(k).fill(NaN)
  for (let b = 0; b < k; b++) {
    const v = vals[b]
    if (v === undefined || used[b] === 0) continue
    if (v.tag === 'num') arrays[b] = v.values
    else if (v.tag === 'const' && v.value !== null) consts[b] = v.value as number
  }
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const b = pick[i]!
    const a = arrays[b] as Float64Array | null
    out[i] = a === null ? consts[b]! : a[i]!
  }
  return { tag: 'num', type, values: out }
}

function chooseStr (pick: Int32Array, vals: ReadonlyArray<Val | undefined>, used: Uint8Array, n: number): StrVector {
  const k = vals.length
  const dict: string[] = []
  const index = new Map<string, number>()
  const add = (s: string): number => {
    let c = index.get(s)
    if (c === undefined) { c = dict.length; dict.push(s); index.set(s, c) }
    return c
  }
  const codesOf = new Array<Int32Array | null>(k).fill(null)
  const remaps = new Array<Int32Array | null>(k).fill(null)
  const constCode = new Int32Array(k).fill(-1)
  for (let b = 0; b < k; b++) {
    const v = vals[b]
    if (v === undefined || used[b] === 0) continue
    if (v.tag === 'str') {
      codesOf[b] = v.codes
      const remap = new Int32Array(v.dict.length)
      for (let j = 0; j < v.dict.length; j++) remap[j] = add(v.dict[j]!)
      remaps[b] = remap
    } else if (v.tag === 'const' && v.value !== null) {
      constCode[b] = add(String(v.value))
    }
  }
  const codes = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const b = pick[i]!
    const c = codesOf[b] as Int32Array | null
    if (c === null) { codes[i] = constCode[b]!; continue }
    const x = c[i]!
    codes[i] = x < 0 ? -1 : remaps[b]![x]!
  }
  return { tag: 'str', type: 'utf8', codes, dict }
}

/** vector<N> and list<T> results (rare): row by row. */
function chooseOther (pick: Int32Array, vals: ReadonlyArray<Val | undefined>, type: ValueType, n: number): ColumnVector {
  if (type.startsWith('vector<')) {
    const dim = Number(/^vector<(\d+)>$/.exec(type)![1])
    const values = new Float32Array(n * dim)
    const valid = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      const v = vals[pick[i]!]
      if (v === undefined || v.tag !== 'vec' || v.valid[i] !== 1) continue
      valid[i] = 1
      values.set(v.values.subarray(i * dim, (i + 1) * dim), i * dim)
    }
    const out: FloatListVector = { tag: 'vec', type, dim, values, valid }
    return out
  }
  const values = new Array<unknown>(n)
  for (let i = 0; i < n; i++) {
    const v = vals[pick[i]!]
    values[i] = v !== undefined && v.tag === 'any' ? v.values[i] ?? null : null
  }
  return { tag: 'any', type, values }
}
