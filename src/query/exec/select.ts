/**
 * WHERE as a selection vector, with fast paths for the filters queries use most: a column
 * compared with a constant (`amount > 10`, `region = 'eu'`, `ts >= '2024-01-01'`), IN lists
 * and BETWEEN on a column, and AND chains of them. These go straight from the column to the
 * row numbers that pass, each further AND term only looking at the rows still selected, without
 * the boolean vector in between. Anything else goes through the general evaluator (eval.ts).
 */
import { narrowNullCode, type ColumnBatch, type ColumnVector, type NumVector, type StrVector } from '../../columnar/index.js'
import type { ComparisonOp, Expr, LiteralNode } from '../model/index.js'
import { FLIP, cmpHolds, compareStrings, evalPredicate, parseDate, parseTimestamp } from './eval.js'

const CMPS: ReadonlySet<string> = new Set(Object.keys(FLIP))

/** Rows of `batch` where `expr` is TRUE, ascending. */
export function selectRows (expr: Expr, batch: ColumnBatch): Uint32Array {
  return refine(expr, batch, null)
}

/** Rows among `sel` (all rows when null) where `expr` is TRUE. */
function refine (expr: Expr, batch: ColumnBatch, sel: Uint32Array | null): Uint32Array {
  if (expr.kind === 'Binary' && expr.op === 'AND') {
    const left = refine(expr.left, batch, sel)
    return left.length === 0 ? left : refine(expr.right, batch, left)
  }
  const fast = simple(expr, batch)
  if (fast !== undefined) return scan(fast, batch.length, sel)
  const all = evalPredicate(expr, batch)
  return sel === null ? all : intersect(sel, all)
}

/**
 * The terms of `expr` as per-row tests when it is an AND chain of simple ones (a row is selected
 * when it passes them all), for loops that test rows themselves (kernel.ts); undefined otherwise.
 */
export function rowTests (expr: Expr, batch: ColumnBatch): RowTest[] | undefined {
  if (expr.kind === 'Binary' && expr.op === 'AND') {
    const left = rowTests(expr.left, batch)
    const right = left === undefined ? undefined : rowTests(expr.right, batch)
    return right === undefined ? undefined : [...left!, ...right]
  }
  const t = simple(expr, batch)
  return t === undefined ? undefined : [t]
}

/** Rows among `sel` (all n when null) that pass every test. */
export function selectByTests (tests: readonly RowTest[], n: number, sel: Uint32Array | null): Uint32Array {
  let rows = sel
  for (const t of tests) {
    rows = scan(t, n, rows)
    if (rows.length === 0) break
  }
  return rows ?? Uint32Array.from({ length: n }, (_, i) => i)
}

/**
 * A per-row test over one column: a comparison with a number (each op its own loop, so no call
 * per row), a range, a set of numbers, or a pass/fail per dictionary code.
 */
export type RowTest =
  | { kind: 'cmp', col: Float64Array, op: ComparisonOp, c: number }
  | { kind: 'range', col: Float64Array, lo: number, hi: number }
  | { kind: 'set', col: Float64Array, set: Set<number> }
  | { kind: 'codes', codes: Int32Array | Uint8Array | Uint16Array, pass: Uint8Array }

function simple (expr: Expr, batch: ColumnBatch): RowTest | undefined {
  if (expr.kind === 'Binary' && CMPS.has(expr.op)) {
    let col = expr.left
    let lit = expr.right
    let op = expr.op as ComparisonOp
    if (col.kind !== 'Column') { col = expr.right; lit = expr.left; op = FLIP[op] }
    if (col.kind !== 'Column' || lit.kind !== 'Literal') return undefined
    const v = batch.columns.get(col.name)
    if (v === undefined) return undefined
    const c = constant(v, lit)
    if (c === undefined) return undefined
    return compare(v, op, c)
  }
  if (expr.kind === 'Between' && !expr.negated && expr.operand.kind === 'Column' && expr.low.kind === 'Literal' && expr.high.kind === 'Literal') {
    const v = batch.columns.get(expr.operand.name)
    if (v === undefined || v.tag !== 'num') return undefined
    const lo = constant(v, expr.low)
    const hi = constant(v, expr.high)
    if (typeof lo !== 'number' || typeof hi !== 'number') return undefined
    return codedTest(v, x => x >= lo && x <= hi) ?? { kind: 'range', col: v.values, lo, hi }
  }
  if (expr.kind === 'InList' && !expr.negated && expr.operand.kind === 'Column' && expr.values.every(x => x.kind === 'Literal' && x.type !== 'null')) {
    const v = batch.columns.get(expr.operand.name)
    if (v === undefined) return undefined
    const consts = expr.values.map(x => constant(v, x as LiteralNode))
    if (consts.some(c => c === undefined)) return undefined
    if (v.tag === 'str') {
      const want = new Set(consts as string[])
      return codesTest(v, s => want.has(s))
    }
    if (v.tag === 'num') {
      const set = new Set(consts as number[])
      return codedTest(v, x => set.has(x)) ?? { kind: 'set', col: v.values, set }
    }
  }
  return undefined
}

/** The literal as the column's values compare with it (numbers, dates and timestamps by their stored numbers, strings as they are). */
function constant (v: ColumnVector, lit: LiteralNode | Expr): number | string | undefined {
  if (lit.kind !== 'Literal') return undefined
  if (v.tag === 'str') return lit.type === 'utf8' ? lit.value : undefined
  if (v.tag !== 'num' || v.type === 'bool') return undefined
  switch (lit.type) {
    case 'int64': return Number(lit.value)
    case 'float64': return lit.value
    case 'utf8':
      if (v.type === 'timestamp') return parseTimestamp(lit.value)
      if (v.type === 'date') return parseDate(lit.value)
      return undefined
    default: return undefined
  }
}

function compare (v: ColumnVector, op: ComparisonOp, c: number | string): RowTest | undefined {
  if (v.tag === 'str' && typeof c === 'string') {
    // Code point order, as the evaluator compares strings.
    return codesTest(v, s => cmpHolds(op, compareStrings(s, c)) === 1)
  }
  if (v.tag !== 'num' || typeof c !== 'number') return undefined
  return codedTest(v, NUMBER_CMP[op](c)) ?? { kind: 'cmp', col: v.values, op, c }
}

/** The comparisons as tests of one value (NaN, NULL, fails them all), as scan's loops do them. */
const NUMBER_CMP: Readonly<Record<ComparisonOp, (c: number) => (x: number) => boolean>> = {
  '=': c => x => x === c,
  '<>': c => x => x !== c && x === x,
  '<': c => x => x < c,
  '<=': c => x => x <= c,
  '>': c => x => x > c,
  '>=': c => x => x >= c
}

/**
 * A test of a string column once per dictionary entry, by code: the narrow codes when the column
 * has them (its pass table then covers the NULL code, which fails), else the codes (NULL -1 fails).
 */
function codesTest (v: StrVector, holds: (s: string) => boolean): RowTest {
  const codes = v.narrow ?? v.codes
  const pass = new Uint8Array(v.narrow !== undefined ? Math.max(v.dict.length, narrowNullCode(v.narrow) + 1) : v.dict.length)
  for (let i = 0; i < v.dict.length; i++) pass[i] = holds(v.dict[i]!) ? 1 : 0
  return { kind: 'codes', codes, pass }
}

/**
 * A test of a coded number column (NumVector.coded) once per value of its table, by code (its
 * NULL code indexes a NaN, which fails); undefined for a column without codes.
 */
function codedTest (v: NumVector, holds: (x: number) => boolean): RowTest | undefined {
  if (v.coded === undefined) return undefined
  const dict = v.coded.dict
  const pass = new Uint8Array(dict.length)
  for (let i = 0; i < dict.length; i++) pass[i] = holds(dict[i]!) ? 1 : 0
  return { kind: 'codes', codes: v.coded.codes, pass }
}

/** The rows among `sel` (all n when null) that pass; NaN (NULL) fails every test, as NULL does in WHERE. */
function scan (t: RowTest, n: number, sel: Uint32Array | null): Uint32Array {
  const m = sel === null ? n : sel.length
  const out = new Uint32Array(m)
  let k = 0
  const row = (j: number): number => sel === null ? j : sel[j]!
  switch (t.kind) {
    case 'codes': {
      const codes = t.codes; const pass = t.pass
      for (let j = 0; j < m; j++) { const i = row(j); const c = codes[i]!; if (c >= 0 && pass[c] === 1) out[k++] = i }
      break
    }
    case 'range': {
      const col = t.col; const lo = t.lo; const hi = t.hi
      for (let j = 0; j < m; j++) { const i = row(j); const x = col[i]!; if (x >= lo && x <= hi) out[k++] = i }
      break
    }
    case 'set': {
      const col = t.col; const set = t.set
      for (let j = 0; j < m; j++) { const i = row(j); if (set.has(col[i]!)) out[k++] = i }
      break
    }
    case 'cmp': {
      const col = t.col; const c = t.c
      switch (t.op) {
        case '=': for (let j = 0; j < m; j++) { const i = row(j); if (col[i] === c) out[k++] = i } break
        case '<>': for (let j = 0; j < m; j++) { const i = row(j); const x = col[i]!; if (x !== c && x === x) out[k++] = i } break
        case '<': for (let j = 0; j < m; j++) { const i = row(j); if (col[i]! < c) out[k++] = i } break
        case '<=': for (let j = 0; j < m; j++) { const i = row(j); if (col[i]! <= c) out[k++] = i } break
        case '>': for (let j = 0; j < m; j++) { const i = row(j); if (col[i]! > c) out[k++] = i } break
        case '>=': for (let j = 0; j < m; j++) { const i = row(j); if (col[i]! >= c) out[k++] = i } break
      }
    }
  }
  return out.subarray(0, k)
}

/** Rows in both ascending lists. */
function intersect (a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(Math.min(a.length, b.length))
  let i = 0; let j = 0; let k = 0
  while (i < a.length && j < b.length) {
    const x = a[i]!; const y = b[j]!
    if (x === y) { out[k++] = x; i++; j++ } else if (x < y) i++
    else j++
  }
  return out.subarray(0, k)
}
