/**
 * An answer as a correct Shoal would give it, computed by DuckDB: for testing the comparator with
 * no cluster. approx_count_distinct becomes count(DISTINCT x) (Shoal is exact below 3,000),
 * approx_quantile the exact value at rank ⌊q·(n−1)⌋ (what DDSketch approximates); rows tied on the
 * ORDER BY keys are shuffled (any order among ties is right), then LIMIT / OFFSET are applied, and
 * values are written as POST /query writes them (int64 beyond ±2^53 as strings).
 */
import type { OutputColumn } from '../../src/query/validate/index.js'
import type { ShoalAnswer } from './compare.js'
import { tieGroups } from './compare.js'
import type { Duck } from './duck.js'
import type { GenQuery, Item } from './generate.js'
import { renderSql } from './generate.js'
import { Rng } from './random.js'

/** The select item as DuckDB computes what Shoal should answer. */
export function idealItemSql (it: Item): string {
  const a = it.approx
  if (a === null) return it.sql
  if (a.kind === 'distinct') return `count(DISTINCT ${a.arg})`
  return `(list(${a.arg} ORDER BY ${a.arg}) FILTER (WHERE ${a.arg} IS NOT NULL))[CAST(floor(${a.q} * (count(${a.arg}) - 1)) AS BIGINT) + 1]`
}

export async function idealAnswer (duck: Duck, q: GenQuery, columns: readonly OutputColumn[], shuffleSeed: number): Promise<ShoalAnswer> {
  const res = await duck.query(renderSql(q, { item: idealItemSql, hidden: true, window: false }))
  const visible = q.items.length
  const rng = new Rng(shuffleSeed)
  const rows: unknown[][] = []
  for (const [s, e] of tieGroups(res.rows, q.orderBy, visible)) rows.push(...rng.shuffle(res.rows.slice(s, e)))
  const start = Math.min(q.offset ?? 0, rows.length)
  const end = q.limit === null ? rows.length : Math.min(rows.length, start + q.limit)
  return {
    columns: columns.map(c => ({ name: c.name, type: c.type })),
    rows: rows.slice(start, end).map(r => Object.fromEntries(columns.map((c, i) => [c.name, toJson(r[i])])))
  }
}

/** A DuckDB value as it would travel in POST /query's JSON. */
export function toJson (v: unknown): unknown {
  if (typeof v === 'bigint') return v >= -(2n ** 53n) && v <= 2n ** 53n ? Number(v) : v.toString()
  return v
}
