/**
 * Compares Shoal's answer to a generated query with DuckDB's.
 *
 * DuckDB runs the reference text (generate.ts: no LIMIT / OFFSET, ORDER BY keys that are not
 * select items as hidden columns, approximate aggregates rewritten), so we hold the full answer in
 * DuckDB's order and know every row's sort key. Rows with equal sort keys form tie groups (without
 * ORDER BY the whole answer is one group); Shoal may put the rows of a group in any order and, when
 * LIMIT / OFFSET cuts a group, return any of its rows. So Shoal's answer must have exactly the
 * window's row count, and the rows at the positions of each tie group must be a sub-multiset of
 * that group's rows (the whole group when the window holds all of it). With a fully determined
 * order that is row-by-row equality; without ORDER BY it is multiset equality (or, under a LIMIT,
 * containment).
 *
 * Cells, by the column's type (from Shoal's validator) and the select item:
 * - text, booleans, integers, NULL: equal;
 * - floats: within 1e-9 relative (plus 1e-9 absolute): sums, averages and variances add in
 *   different orders (the data keeps sums of amounts exact, but averages divide and variances use
 *   different algorithms);
 * - sums of integers (and expressions over them): equal up to 2^53; past it within 1e-9 relative,
 *   because Shoal sums in float64 (compensated; docs/query.md) while DuckDB sums in int128;
 * - approx_count_distinct(x): DuckDB computes count(DISTINCT x) exactly; Shoal's HyperLogLog keeps
 *   an exact set up to 3,000 distinct values, so equal up to 3,000, and past it within 4 standard
 *   errors (4 × 1.04/√2^14 = 3.25%: a correct sketch fails that about once in 16,000 comparisons);
 * - approx_quantile(x, q): DDSketch with relative accuracy α = 1% answers, for the n non-NULL
 *   values sorted ascending, a value within α·|v| of v = sorted[⌊q·(n−1)⌋] (sketches-js's rank
 *   convention: rank q·(n−1), lower element), clamped to [min, max]. That is not DuckDB's
 *   quantile_disc (which takes sorted[⌈q·n⌉−1]), so DuckDB hands us the sorted values
 *   (`list(x ORDER BY x)`) and the answer must lie in [lo − α|lo|, hi + α|hi|] where lo and hi
 *   are the values at ranks ⌊q·(n−1) − 10⁻⁹⌋ and ⌊q·(n−1) + 10⁻⁹⌋ (the same rank, unless
 *   q·(n−1) is within float rounding of an integer k, when both k−1 and k are allowed: Shoal may
 *   compute the rank as (100q/100)·(n−1)), widened by 1 for integer columns (an engine may round
 *   the estimate to the column's type).
 */
import type { OutputColumn } from '../../src/query/validate/index.js'
import type { DuckResult } from './duck.js'
import type { GenQuery, Item, OrderKey } from './generate.js'

export const FLOAT_REL_TOLERANCE = 1e-9
export const FLOAT_ABS_TOLERANCE = 1e-9
/** Shoal's approx_count_distinct is exact up to this many distinct values. */
export const EXACT_DISTINCT_LIMIT = 3000
/** 4 standard errors of HyperLogLog at p = 14. */
export const DISTINCT_REL_TOLERANCE = 4 * 1.04 / Math.sqrt(2 ** 14)
/** DDSketch's relative accuracy in Shoal. */
export const QUANTILE_ALPHA = 0.01

const TWO_53 = 2n ** 53n

/** Shoal's answer, as POST /query returns it. */
export interface ShoalAnswer {
  columns: Array<{ name: string, type: string }>
  /** Objects keyed by column name (the contract); arrays in column order are read too. */
  rows: unknown[]
}

type Policy = 'exact' | 'float' | 'intsum' | 'distinct' | 'quantile'

export interface ColumnSpec {
  name: string
  type: string
  policy: Policy
  /** Integer-valued type (int32, int64, timestamp, date). */
  integer: boolean
}

interface QuantileBounds { kind: 'quantile', lo: number, hi: number, slack: number }
type Cell = null | string | boolean | number | bigint | QuantileBounds

export type Verdict = { ok: true } | { ok: false, reason: string, diff: string }

const INTEGER_TYPES = new Set(['int32', 'int64', 'timestamp', 'date'])
const FLOAT_TYPES = new Set(['float32', 'float64'])

/** How each output column is compared, from the validator's types and the generator's items. */
export function columnSpecs (q: GenQuery, columns: readonly OutputColumn[]): ColumnSpec[] {
  if (columns.length !== q.items.length) throw new Error(`the validator gives ${columns.length} columns for ${q.items.length} select items`)
  return columns.map((c, i) => {
    const it: Item = q.items[i]!
    const integer = INTEGER_TYPES.has(c.type)
    const policy: Policy = it.approx !== null
      ? it.approx.kind
      : FLOAT_TYPES.has(c.type) || it.float ? 'float' : it.intSum ? 'intsum' : 'exact'
    return { name: c.name, type: c.type, policy, integer }
  })
}

// ---- cells ----

function toBigInt (v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v)
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v)
  return undefined
}

function toNum (v: unknown): number | undefined {
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v)
  return undefined
}

/** Something that is not a value of the column's type; never equal to anything. */
class Odd {
  constructor (readonly value: unknown) {}
  toJSON (): string { return `<unexpected ${typeof this.value} ${String(this.value)}>` }
}

function normalize (v: unknown, spec: ColumnSpec): Cell | Odd {
  if (v === null) return null
  if (v === undefined) return new Odd(v)
  switch (spec.policy) {
    case 'distinct': return toBigInt(v) ?? new Odd(v)
    case 'quantile': return toNum(v) ?? new Odd(v)
  }
  if (spec.integer) {
    // An integer column holds integers; a fractional number here is wrong (kept to show it).
    const b = toBigInt(v)
    if (b !== undefined) return b
    return typeof v === 'number' ? v : new Odd(v)
  }
  if (FLOAT_TYPES.has(spec.type) || spec.policy === 'float') return toNum(v) ?? new Odd(v)
  if (spec.type === 'bool') return typeof v === 'boolean' ? v : new Odd(v)
  if (spec.type === 'utf8') return typeof v === 'string' ? v : new Odd(v)
  return new Odd(v)
}

/** DuckDB's cell for a column; approx_quantile's sorted list becomes the bounds of the answer. */
function expectedCell (v: unknown, spec: ColumnSpec, q: GenQuery, col: number): Cell | Odd {
  if (spec.policy !== 'quantile') return normalize(v, spec)
  const approx = q.items[col]!.approx
  if (approx?.kind !== 'quantile') throw new Error('quantile column without its parameters')
  if (v === null) return null
  if (!Array.isArray(v)) return new Odd(v)
  const sorted = v.filter(x => x !== null).map(x => toNum(x)!).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  return quantileBounds(sorted, approx.q, spec.integer)
}

/** The interval a DDSketch quantile with accuracy α may answer for these sorted values. */
export function quantileBounds (sorted: readonly number[], q: number, integer: boolean): QuantileBounds {
  const rank = q * (sorted.length - 1)
  const lo = sorted[Math.max(0, Math.floor(rank - 1e-9))]!
  const hi = sorted[Math.min(sorted.length - 1, Math.floor(rank + 1e-9))]!
  return { kind: 'quantile', lo, hi, slack: integer ? 1 : 0 }
}

function isBounds (c: Cell | Odd): c is QuantileBounds {
  return typeof c === 'object' && c !== null && !(c instanceof Odd) && c.kind === 'quantile'
}

function floatClose (a: number, b: number): boolean {
  if (a === b) return true
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false
  return Math.abs(a - b) <= FLOAT_REL_TOLERANCE * Math.max(Math.abs(a), Math.abs(b)) + FLOAT_ABS_TOLERANCE
}

/** Does Shoal's cell `a` match DuckDB's `e`? */
export function cellMatches (e: Cell | Odd, a: Cell | Odd, spec: ColumnSpec): boolean {
  if (e instanceof Odd || a instanceof Odd) return false
  if (e === null || a === null) return e === a
  switch (spec.policy) {
    case 'quantile': {
      if (!isBounds(e) || typeof a !== 'number') return false
      const lo = e.lo - QUANTILE_ALPHA * Math.abs(e.lo) - e.slack
      const hi = e.hi + QUANTILE_ALPHA * Math.abs(e.hi) + e.slack
      const eps = 1e-12 * Math.max(1, Math.abs(e.lo), Math.abs(e.hi))
      return a >= lo - eps && a <= hi + eps
    }
    case 'distinct': {
      if (typeof e !== 'bigint' || typeof a !== 'bigint') return false
      const n = Number(e)
      if (n <= EXACT_DISTINCT_LIMIT) return a === e
      return Math.abs(Number(a) - n) <= DISTINCT_REL_TOLERANCE * n
    }
    case 'float': {
      const x = toNum(e)
      const y = toNum(a)
      return x !== undefined && y !== undefined && typeof e !== 'object' && typeof a !== 'object' && floatClose(x, y)
    }
    case 'intsum': {
      if (typeof e === 'bigint' && typeof a === 'bigint') {
        if (e === a) return true
        const abs = (x: bigint): bigint => x < 0n ? -x : x
        if (abs(e) <= TWO_53 && abs(a) <= TWO_53) return false
        return floatClose(Number(e), Number(a))
      }
      return false
    }
    case 'exact':
      if (typeof e === 'number' && typeof a === 'number') return e === a
      return typeof e === typeof a && e === a
  }
}

// ---- rows ----

interface Row { cells: Array<Cell | Odd> }

function exactKey (r: Row, specs: readonly ColumnSpec[]): string {
  return r.cells.map((c, i) => {
    const p = specs[i]!.policy
    if (c === null) return 'N'
    if (p !== 'exact') return '*'
    if (c instanceof Odd) return `?${String(c.value)}`
    return `${typeof c}:${String(c)}`
  }).join('\u0001')
}

function rowMatches (e: Row, a: Row, specs: readonly ColumnSpec[]): boolean {
  for (let i = 0; i < specs.length; i++) if (!cellMatches(e.cells[i]!, a.cells[i]!, specs[i]!)) return false
  return true
}

/**
 * Matches every actual row to a distinct expected row. Returns the unmatched rows of each side
 * (all actual rows matched = containment). Rows are bucketed by their exactly compared cells;
 * within a bucket a greedy pass, then augmenting paths for what greedy left over.
 */
function matchRows (expected: readonly Row[], actual: readonly Row[], specs: readonly ColumnSpec[]): { missingFromActual: Row[], unexpected: Row[] } {
  const buckets = new Map<string, { e: Row[], a: Row[] }>()
  for (const r of expected) {
    const k = exactKey(r, specs)
    let b = buckets.get(k)
    if (b === undefined) buckets.set(k, b = { e: [], a: [] })
    b.e.push(r)
  }
  const unexpected: Row[] = []
  for (const r of actual) {
    const b = buckets.get(exactKey(r, specs))
    if (b === undefined) unexpected.push(r)
    else b.a.push(r)
  }
  const missing: Row[] = []
  for (const b of buckets.values()) {
    const r = matchBucket(b.e, b.a, specs)
    missing.push(...r.missing)
    unexpected.push(...r.unexpected)
  }
  return { missingFromActual: missing, unexpected }
}

function matchBucket (e: readonly Row[], a: readonly Row[], specs: readonly ColumnSpec[]): { missing: Row[], unexpected: Row[] } {
  const owner = new Array<number>(e.length).fill(-1) // expected index -> actual index
  const matchOf = new Array<number>(a.length).fill(-1)
  // Greedy: each actual row takes the first free expected row it matches.
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < e.length; j++) {
      if (owner[j] === -1 && rowMatches(e[j]!, a[i]!, specs)) { owner[j] = i; matchOf[i] = j; break }
    }
  }
  // Augmenting paths (Kuhn) for the rows greedy left unmatched: tolerance is not transitive.
  const left = matchOf.map((m, i) => m === -1 ? i : -1).filter(i => i >= 0)
  if (left.length > 0 && e.length * a.length <= 4_000_000) {
    const adj = (i: number): number[] => e.map((_, j) => j).filter(j => rowMatches(e[j]!, a[i]!, specs))
    const adjCache = new Map<number, number[]>()
    const edges = (i: number): number[] => { let x = adjCache.get(i); if (x === undefined) adjCache.set(i, x = adj(i)); return x }
    for (const start of left) {
      const seen = new Set<number>()
      const augment = (i: number): boolean => {
        for (const j of edges(i)) {
          if (seen.has(j)) continue
          seen.add(j)
          if (owner[j] === -1 || augment(owner[j]!)) { owner[j] = i; matchOf[i] = j; return true }
        }
        return false
      }
      augment(start)
    }
  }
  return {
    missing: e.filter((_, j) => owner[j] === -1),
    unexpected: a.filter((_, i) => matchOf[i] === -1)
  }
}

/** Tie groups of DuckDB's sorted answer: [start, end) runs of rows with equal sort keys. */
export function tieGroups (rows: readonly unknown[][], keys: readonly OrderKey[], visible: number): Array<[number, number]> {
  if (rows.length === 0) return []
  if (keys.length === 0) return [[0, rows.length]]
  const keyOf = (r: unknown[]): unknown[] => keys.map(k => k.item !== null ? r[k.item] : r[visible + k.hidden!])
  const groups: Array<[number, number]> = []
  let start = 0
  let prev = keyOf(rows[0]!)
  for (let i = 1; i < rows.length; i++) {
    const cur = keyOf(rows[i]!)
    // A fractional value is a float whatever the generator thought: near-equal ones are ties too,
    // and then on every later key as well: which of two near-equal floats is the larger depends
    // on rounding (Shoal and DuckDB compute variances differently), so the later keys that would
    // order exactly equal values cannot be relied on either.
    let tie = true
    for (let j = 0; j < keys.length; j++) {
      const loose = keys[j]!.loose || isFraction(prev[j]) || isFraction(cur[j])
      if (keyEqual(prev[j], cur[j], false)) continue
      tie = loose && keyEqual(prev[j], cur[j], true)
      break
    }
    if (!tie) { groups.push([start, i]); start = i }
    prev = cur
  }
  groups.push([start, rows.length])
  return groups
}

const isFraction = (v: unknown): boolean => typeof v === 'number' && !Number.isInteger(v)

function keyEqual (a: unknown, b: unknown, loose: boolean): boolean {
  if (a === null || b === null) return a === b
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) {
    if (typeof a === 'bigint' && typeof b === 'bigint' && !loose) return a === b
    return loose ? floatClose(Number(a), Number(b)) : Number(a) === Number(b)
  }
  return a === b
}

/** The rows of Shoal's answer as cell arrays in column order. */
function actualRows (answer: ShoalAnswer, specs: readonly ColumnSpec[]): Row[] | string {
  const out: Row[] = []
  for (let i = 0; i < answer.rows.length; i++) {
    const r = answer.rows[i]
    if (Array.isArray(r)) {
      if (r.length !== specs.length) return `row ${i} has ${r.length} values, not ${specs.length}`
      out.push({ cells: specs.map((s, j) => normalize(r[j], s)) })
    } else if (typeof r === 'object' && r !== null) {
      const o = r as Record<string, unknown>
      for (const s of specs) if (!(s.name in o)) return `row ${i} has no '${s.name}': ${show(o)}`
      out.push({ cells: specs.map(s => normalize(o[s.name], s)) })
    } else {
      return `row ${i} is not an object: ${show(r)}`
    }
  }
  return out
}

/**
 * The verdict on Shoal's answer for `q`, given the validator's columns and DuckDB's answer to
 * `q.duckSql`.
 */
export function compareAnswer (q: GenQuery, columns: readonly OutputColumn[], duck: DuckResult, answer: ShoalAnswer): Verdict {
  const specs = columnSpecs(q, columns)
  const names = answer.columns.map(c => c.name)
  if (names.join('\u0001') !== columns.map(c => c.name).join('\u0001')) {
    return { ok: false, reason: 'columns differ', diff: `expected ${show(columns)}\n     got ${show(answer.columns)}` }
  }
  const badType = answer.columns.findIndex((c, i) => c.type !== columns[i]!.type)
  if (badType >= 0) return { ok: false, reason: `column '${names[badType]!}' has type ${answer.columns[badType]!.type}, not ${columns[badType]!.type}`, diff: '' }

  const visible = specs.length
  const expected: Row[] = duck.rows.map(r => ({ cells: specs.map((s, i) => expectedCell(r[i], s, q, i)) }))
  const got = actualRows(answer, specs)
  if (typeof got === 'string') return { ok: false, reason: got, diff: '' }

  const start = Math.min(q.offset ?? 0, expected.length)
  const end = q.limit === null ? expected.length : Math.min(expected.length, start + q.limit)
  if (got.length !== end - start) {
    return {
      ok: false,
      reason: `${got.length} rows, expected ${end - start}${q.limit !== null || q.offset !== null ? ` (${expected.length} before LIMIT/OFFSET)` : ''}`,
      diff: sideBySide(expected.slice(start, end), got, 5)
    }
  }
  for (const [gs, ge] of tieGroups(duck.rows, q.orderBy, visible)) {
    const ws = Math.max(gs, start)
    const we = Math.min(ge, end)
    if (ws >= we) continue
    const candidates = expected.slice(gs, ge)
    const slice = got.slice(ws - start, we - start)
    const { missingFromActual, unexpected } = matchRows(candidates, slice, specs)
    if (unexpected.length > 0) {
      const whole = ws === gs && we === ge
      const where = q.orderBy.length === 0
        ? 'rows'
        : ge - gs === 1 ? `row at position ${ws - start}` : `rows at positions ${ws - start}..${we - start - 1} (${whole ? '' : 'part of '}a group of ${ge - gs} rows tied on the ORDER BY keys)`
      return {
        ok: false,
        reason: `${unexpected.length} ${where} not in DuckDB's answer${q.orderBy.length > 0 ? ' at that place' : ''}`,
        diff: `got (not expected):\n${unexpected.slice(0, 5).map(r => `  ${showRow(r)}`).join('\n')}` +
          `\nexpected (not returned)${whole ? '' : ' — any of'}:\n${missingFromActual.slice(0, 5).map(r => `  ${showRow(r)}`).join('\n')}` +
          (missingFromActual.length > 5 ? `\n  ... ${missingFromActual.length - 5} more` : '')
      }
    }
  }
  return { ok: true }
}

// ---- showing rows ----

export function show (v: unknown): string {
  return JSON.stringify(v, (_k, x) => typeof x === 'bigint' ? (x >= -(2n ** 53n) && x <= 2n ** 53n ? Number(x) : `${x}n`) : x)
}

function showCell (c: Cell | Odd): string {
  if (isBounds(c)) return `≈[${c.lo}..${c.hi}]±${QUANTILE_ALPHA * 100}%`
  return show(c)
}

function showRow (r: Row): string { return `[${r.cells.map(showCell).join(', ')}]` }

function sideBySide (e: readonly Row[], a: readonly Row[], n: number): string {
  const lines: string[] = []
  for (let i = 0; i < Math.min(n, Math.max(e.length, a.length)); i++) {
    lines.push(`  #${i} expected ${e[i] !== undefined ? showRow(e[i]) : '-'}`)
    lines.push(`  #${i}      got ${a[i] !== undefined ? showRow(a[i]) : '-'}`)
  }
  return lines.join('\n')
}
