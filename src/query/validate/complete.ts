/**
 * The rules of a completion (CompleteNode) that need the space's schema: which given values fit
 * which columns (the same rules as a record written to the space), weights and scales, k, and the
 * columns to fill. validate.ts reports the problems with their positions; the executor uses
 * givenValue and fillColumns so that it reads the query exactly as it was checked.
 */
import { validateRow, vectorDim } from '../../schema/index.js'
import type { ColumnDef, ColumnType } from '../../schema/index.js'
import { SCORE_COLUMN, type CompleteNode, type CompleteValue } from '../model/index.js'
import { isNumericType, type ValueType } from './typing.js'

/** Most neighbours one completion may ask for: each partition holds its best k in a heap. */
export const MAX_COMPLETE_K = 1000

/** A given value normalized as the column stores it: numbers (timestamps in ms, dates in days), strings, booleans, arrays. */
export type GivenValue = number | string | boolean | readonly unknown[]

/**
 * The value as the column would store it, or what is wrong with it. A record written to the
 * space goes through the same check (schema's validateRow, here on a space of just this column),
 * so "31" is refused for an int32 column here as it is on write, and an ISO date-time is read
 * as the same milliseconds.
 */
export function givenValue (type: ColumnType, value: CompleteValue): { ok: GivenValue } | { bad: string } {
  const schema: ColumnDef[] = [{ name: 'id', type: 'utf8', nullable: false }, { name: 'v', type, nullable: false }]
  const r = validateRow(schema, { id: 'x', v: value }, 0)
  if ('error' in r) return { bad: r.error.message }
  const v = r.row.v
  // int64 past 2^53 arrives as a bigint; the executor computes in float64 anyway.
  return { ok: typeof v === 'bigint' ? Number(v) : v as GivenValue }
}

/** One thing wrong with a completion: `field` is where, under the node's own position (`record.age`, `fill[1]`, `k`). */
export interface CompleteProblem {
  code: 'unknown_column' | 'type_mismatch' | 'bad_limit' | 'vector_dimension' | 'invalid'
  message: string
  field: string
  column?: string
}

/** Every problem of `n` over an input with the columns `scope`. */
export function completeProblems (n: CompleteNode, scope: ReadonlyMap<string, ValueType>): CompleteProblem[] {
  const out: CompleteProblem[] = []
  if (!(Number.isInteger(n.k) && n.k >= 1 && n.k <= MAX_COMPLETE_K)) out.push({ code: 'bad_limit', field: 'k', message: `k must be an integer from 1 to ${MAX_COMPLETE_K}, got ${n.k}` })
  if (n.terms.length === 0) out.push({ code: 'invalid', field: 'record', message: 'the partial record needs at least one column' })
  const given = new Set<string>()
  for (const t of n.terms) {
    const field = `record.${t.column}`
    if (given.has(t.column)) out.push({ code: 'invalid', field, column: t.column, message: `'${t.column}' is given twice` })
    given.add(t.column)
    if (!(Number.isFinite(t.weight) && t.weight >= 0)) out.push({ code: 'invalid', field: `weights.${t.column}`, column: t.column, message: `the weight of '${t.column}' must be a finite number >= 0, got ${t.weight}` })
    const type = scope.get(t.column)
    if (type === undefined || t.column === SCORE_COLUMN) { out.push({ code: 'unknown_column', field, column: t.column, message: `unknown column '${t.column}'` }); continue }
    const dim = vectorDim(type as ColumnType)
    if (dim !== undefined && Array.isArray(t.value) && t.value.length !== dim) {
      out.push({ code: 'vector_dimension', field, column: t.column, message: `'${t.column}' is ${type} but the given vector has ${t.value.length} numbers` })
    } else {
      const v = givenValue(type as ColumnType, t.value)
      if ('bad' in v) out.push({ code: 'type_mismatch', field, column: t.column, message: `'${t.column}' is ${type}: ${v.bad}` })
    }
    if (t.scale !== null) {
      if (!isNumericType(type)) out.push({ code: 'invalid', field: `scales.${t.column}`, column: t.column, message: `a scale is for a number column; '${t.column}' is ${type}` })
      else if (!(Number.isFinite(t.scale) && t.scale > 0)) out.push({ code: 'invalid', field: `scales.${t.column}`, column: t.column, message: `the scale of '${t.column}' must be a finite number > 0, got ${t.scale}` })
    }
  }
  if (n.terms.length > 0 && n.terms.every(t => t.weight === 0)) out.push({ code: 'invalid', field: 'weights', message: 'at least one given column needs a weight above 0' })
  if (n.fill !== null) {
    const seen = new Set<string>()
    n.fill.forEach((c, i) => {
      const field = `fill[${i}]`
      const type = scope.get(c)
      if (type === undefined || c === SCORE_COLUMN) out.push({ code: 'unknown_column', field, column: c, message: `unknown column '${c}'` })
      else if (vectorDim(type as ColumnType) !== undefined) out.push({ code: 'type_mismatch', field, column: c, message: `'${c}' is ${type}: vectors are not filled` })
      else if (given.has(c)) out.push({ code: 'invalid', field, column: c, message: `'${c}' is given in the record; fill names missing columns` })
      else if (seen.has(c)) out.push({ code: 'invalid', field, column: c, message: `'${c}' is listed twice` })
      seen.add(c)
    })
  }
  return out
}

/**
 * The columns a completion fills, in order: those it names, or every column of the input not
 * given, except `id` (a neighbour's id is not a value of the missing record) and vectors (a
 * vote or a mean of vectors is not a vector anyone asked for).
 */
export function fillColumns (n: CompleteNode, columns: ReadonlyArray<{ name: string, type: ValueType }>): Array<{ name: string, type: ValueType }> {
  const byName = new Map(columns.map(c => [c.name, c]))
  if (n.fill !== null) return n.fill.map(name => byName.get(name) ?? { name, type: 'null' })
  const given = new Set(n.terms.map(t => t.column))
  return columns.filter(c => c.name !== 'id' && c.name !== SCORE_COLUMN && !given.has(c.name) && vectorDim(c.type as ColumnType) === undefined)
}
