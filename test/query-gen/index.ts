/**
 * test/query-gen: differential testing of Shoal's SQL against DuckDB.
 *
 * ```ts
 * const rows = generateRows(seed, 5000)
 * const duck = await Duck.open(rows)                      // the same rows in DuckDB, table `orders`
 * const q = generateQuery(deriveSeed(seed, i), rows)      // random SQL from the supported grammar
 * const body = await (await fetch(url + '/query', { method: 'POST', body: JSON.stringify({ sql: q.sql }) })).json()
 * const r = await checkQuery(duck, q, body)               // { ok } or { ok: false, report }
 * ```
 *
 * data.ts makes the rows, generate.ts the queries (and their DuckDB reference text), compare.ts
 * holds the comparison rules, simulate.ts computes an ideal Shoal answer with DuckDB (to test
 * the comparator without a cluster).
 */
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import type { OutputColumn } from '../../src/query/validate/index.js'
import { spaceDef } from './data.js'
import type { Duck } from './duck.js'
import { compareAnswer, show } from './compare.js'
import type { ShoalAnswer, Verdict } from './compare.js'
import type { GenQuery } from './generate.js'

export { COLUMNS, DUCK_TYPES, SPACE_NAME, spaceDef, generateRows, toRecords, REGIONS, CATEGORIES } from './data.js'
export type { DataRow } from './data.js'
export { Duck } from './duck.js'
export type { DuckResult } from './duck.js'
export { generateQuery, renderSql, QueryGenerator } from './generate.js'
export type { GenQuery, Item, OrderKey, Shape } from './generate.js'
export { compareAnswer, columnSpecs, quantileBounds, tieGroups, cellMatches, show, FLOAT_REL_TOLERANCE, DISTINCT_REL_TOLERANCE, EXACT_DISTINCT_LIMIT, QUANTILE_ALPHA } from './compare.js'
export type { ShoalAnswer, Verdict, ColumnSpec } from './compare.js'
export { idealAnswer, idealItemSql, toJson } from './simulate.js'
export { Rng, deriveSeed } from './random.js'

const lookup = (name: string): typeof spaceDef | undefined => name === spaceDef.name ? spaceDef : undefined

/** The output columns Shoal's validator gives the query; throws with its errors if it refuses it. */
export function typedColumns (q: GenQuery): OutputColumn[] {
  const { plan, origins } = parseSql(q.sql, { space: lookup })
  const r = validatePlan(plan, lookup, { origins })
  if (!r.ok) throw new Error(`Shoal's validator refuses query ${q.seed}: ${r.errors.map(e => e.message).join('; ')}\n${q.sql}`)
  return r.columns
}

export type CheckResult = { ok: true, rows: number } | { ok: false, report: string }

/**
 * Checks a POST /query response body against DuckDB. `body` is the parsed JSON: an answer
 * (`{columns, rows, coverage, ...}`) or an error (`{error: {code, message}}`).
 */
export async function checkQuery (duck: Duck, q: GenQuery, body: unknown, context = ''): Promise<CheckResult> {
  const columns = typedColumns(q)
  const reference = await duck.query(q.duckSql)
  const b = body as { error?: { code?: string, message?: string }, columns?: unknown, rows?: unknown, coverage?: { total?: number, answered?: number, missing?: unknown } }
  let verdict: Verdict
  if (b === null || typeof b !== 'object') {
    verdict = { ok: false, reason: `the response is not a JSON object: ${show(body)}`, diff: '' }
  } else if (b.error !== undefined) {
    verdict = { ok: false, reason: `Shoal refused the query: ${b.error.code ?? '?'}: ${b.error.message ?? show(b.error)}`, diff: '' }
  } else if (!Array.isArray(b.columns) || !Array.isArray(b.rows)) {
    verdict = { ok: false, reason: `the answer lacks columns or rows: ${show(body).slice(0, 500)}`, diff: '' }
  } else if (b.coverage !== undefined && b.coverage.total !== b.coverage.answered) {
    verdict = { ok: false, reason: `partial answer on a healthy cluster: coverage ${show(b.coverage)}`, diff: '' }
  } else {
    verdict = compareAnswer(q, columns, reference, b as ShoalAnswer)
  }
  if (verdict.ok) return { ok: true, rows: (b as { rows: unknown[] }).rows.length }
  return { ok: false, report: failureReport(q, verdict, context) }
}

/** What a failing query prints: the seed (reproducible alone), both SQL texts, why, and a diff. */
export function failureReport (q: GenQuery, v: Extract<Verdict, { ok: false }>, context = ''): string {
  return [
    `query seed ${q.seed}${context !== '' ? ` (${context})` : ''}: ${v.reason}`,
    `  Shoal SQL:  ${q.sql}`,
    `  DuckDB SQL: ${q.duckSql}`,
    ...(v.diff !== '' ? [v.diff] : [])
  ].join('\n')
}
