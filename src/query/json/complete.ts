/**
 * The body of a completion, `{"record": {...}, "k": 5, "fill": [...], "weights": {...},
 * "scales": {...}}`, read into a CompleteNode over `input`. Only its shape is checked here
 * (objects, numbers, names); what needs the schema (columns, value types, bounds) is
 * validate/complete.ts's. The SQL front end reads `complete(space, record, k)` through this too.
 */
import { complete, type CompleteNode, type CompleteValue, type PlanNode } from '../model/index.js'
import { JsonQueryError } from './errors.js'

const COMPLETE_KEYS = new Set(['record', 'k', 'fill', 'weights', 'scales'])

type Json = Record<string, unknown>

/** `at` is the body's JSON path (`complete`); errors name the field under it. */
export function parseCompleteBody (input: PlanNode, body: unknown, at: string): CompleteNode {
  const b = object(body, at)
  for (const k of Object.keys(b)) if (!COMPLETE_KEYS.has(k)) throw new JsonQueryError(`${at}.${k}`, `unknown field; expected one of ${[...COMPLETE_KEYS].join(', ')}`)
  const record = object(b.record, `${at}.record`)
  const weights = b.weights === undefined ? {} : numbers(b.weights, `${at}.weights`, record)
  const scales = b.scales === undefined ? {} : numbers(b.scales, `${at}.scales`, record)
  const terms = Object.keys(record).map(column => ({
    column,
    value: value(record[column], `${at}.record.${column}`, 0),
    ...(own(weights, column) ? { weight: weights[column]! } : {}),
    ...(own(scales, column) ? { scale: scales[column]! } : {})
  }))
  let fill: string[] | null = null
  if (b.fill !== undefined) {
    if (!Array.isArray(b.fill)) throw new JsonQueryError(`${at}.fill`, 'must be an array of column names')
    fill = b.fill.map((c, i) => {
      if (typeof c !== 'string' || c === '') throw new JsonQueryError(`${at}.fill[${i}]`, 'must be a non-empty string')
      return c
    })
  }
  let k: number | undefined
  if (b.k !== undefined) {
    if (typeof b.k !== 'number' || !Number.isSafeInteger(b.k)) throw new JsonQueryError(`${at}.k`, 'must be an integer')
    k = b.k
  }
  return complete(input, { terms, fill, ...(k !== undefined ? { k } : {}) })
}

/** A value of the record: a scalar, or an array of them (a list or a vector); never null. */
function value (v: unknown, at: string, depth: number): CompleteValue {
  if (typeof v === 'string' || typeof v === 'boolean') return v
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (Array.isArray(v) && depth === 0) return v.map((x, i) => value(x, `${at}[${i}]`, depth + 1))
  throw new JsonQueryError(at, v === null ? 'must be a value (leave a column out of the record to have it filled)' : 'must be a string, a number, a boolean or an array of them')
}

/** weights or scales: numbers keyed by columns of the record. */
function numbers (v: unknown, at: string, record: Json): Record<string, number> {
  const o = object(v, at)
  const out: Record<string, number> = Object.create(null) as Record<string, number>
  for (const [column, x] of Object.entries(o)) {
    if (!own(record, column)) throw new JsonQueryError(`${at}.${column}`, 'not a column of the record; weights and scales are for given columns')
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new JsonQueryError(`${at}.${column}`, 'must be a finite number')
    out[column] = x
  }
  return out
}

function object (v: unknown, at: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JsonQueryError(at, 'must be an object')
  return v as Json
}

function own (o: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key)
}
