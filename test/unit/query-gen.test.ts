import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import {
  checkQuery, compareAnswer, deriveSeed, Duck, generateQuery, generateRows, idealAnswer, quantileBounds, renderSql, spaceDef, typedColumns,
  CATEGORIES, REGIONS
} from '../query-gen/index.js'
import type { DataRow, GenQuery, ShoalAnswer } from '../query-gen/index.js'

const ROWS = 1500
const SEEDS = 400
const rows: DataRow[] = generateRows(7, ROWS)
let duck: Duck

beforeAll(async () => { duck = await Duck.open(rows) })
afterAll(() => { duck?.close() })

const queries = (n: number, base = 11): GenQuery[] => Array.from({ length: n }, (_, i) => generateQuery(deriveSeed(base, i), rows))

/** A hand-written query, rendered as the generator renders its own (both texts from one structure). */
function handQuery (items: GenQuery['items'], more: Partial<GenQuery> = {}): GenQuery {
  const base = { seed: 0, shape: 'rows' as const, items, star: false, distinct: false, where: null, groupBy: [], having: null, orderBy: [], hiddenKeys: [], limit: null, offset: null, ...more }
  return {
    ...base,
    sql: renderSql(base, { item: it => it.sql, hidden: false, window: true }),
    duckSql: renderSql(base, { item: it => it.duckSql, hidden: true, window: false })
  }
}
const plain = (sql: string, alias: string | null = null, float = false): GenQuery['items'][number] => ({ sql, duckSql: sql, alias, approx: null, intSum: false, float })

describe('generated data', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(generateRows(7, 50)).toEqual(generateRows(7, 50))
    expect(generateRows(8, 50)).not.toEqual(generateRows(7, 50))
  })

  it('has the promised values: 8 regions, ~50 categories, NULLs, dyadic amounts, bigs within ±2^50', () => {
    expect(new Set(rows.map(r => r.region)).size).toBe(REGIONS.length)
    const cats = new Set(rows.map(r => r.category).filter(c => c !== null))
    expect(cats.size).toBeGreaterThan(40)
    expect([...cats].every(c => CATEGORIES.includes(c))).toBe(true)
    for (const k of ['category', 'amount', 'flag', 'qty', 'big', 'day'] as const) expect(rows.some(r => r[k] === null), k).toBe(true)
    expect(rows.every(r => r.amount === null || Number.isInteger(r.amount * 8))).toBe(true)
    expect(rows.some(r => r.amount !== null && r.amount < 0)).toBe(true)
    expect(rows.every(r => r.big === null || Math.abs(r.big) <= 2 ** 50)).toBe(true)
    expect(new Set(rows.map(r => r.id)).size).toBe(ROWS)
  })

  it('loads into DuckDB unchanged', async () => {
    const res = await duck.query('SELECT count(*), count(category), sum(amount), sum(big), min(ts), max(day), count(flag) FILTER (WHERE flag) FROM orders')
    const [n, cats, amount, big, ts, day, flags] = res.rows[0]!
    expect(n).toBe(BigInt(ROWS))
    expect(cats).toBe(BigInt(rows.filter(r => r.category !== null).length))
    expect(amount).toBe(rows.reduce((s, r) => s + (r.amount ?? 0), 0))
    expect(big).toBe(rows.reduce((s, r) => s + BigInt(r.big ?? 0), 0n))
    expect(ts).toBe(BigInt(Math.min(...rows.map(r => r.ts))))
    expect(day).toBe(Math.max(...rows.map(r => r.day ?? 0)))
    expect(flags).toBe(BigInt(rows.filter(r => r.flag === true).length))
  })
})

describe('generated queries', () => {
  const all = queries(SEEDS)

  it(`are accepted by Shoal's parser and validator (${SEEDS} seeds)`, () => {
    const refused: string[] = []
    for (const q of all) {
      try {
        const { plan, origins } = parseSql(q.sql, { space: n => n === spaceDef.name ? spaceDef : undefined })
        const r = validatePlan(plan, spaceDef, { origins })
        if (!r.ok) refused.push(`${q.seed}: ${r.errors.map(e => e.message).join('; ')}\n  ${q.sql}`)
        else if (r.columns.length !== q.items.length) refused.push(`${q.seed}: ${r.columns.length} columns for ${q.items.length} items\n  ${q.sql}`)
      } catch (err) {
        refused.push(`${q.seed}: ${(err as Error).message}\n  ${q.sql}`)
      }
    }
    expect(refused.slice(0, 5).join('\n')).toBe('')
  })

  it(`are accepted by DuckDB, as sent to Shoal and as the reference (${SEEDS} seeds)`, async () => {
    const refused: string[] = []
    for (const q of all) {
      for (const sql of [q.sql, q.duckSql]) {
        try { await duck.query(sql) } catch (err) { refused.push(`${q.seed}: ${(err as Error).message.split('\n')[0]!}\n  ${sql}`) }
      }
    }
    expect(refused.slice(0, 5).join('\n')).toBe('')
  })

  it('cover the grammar', () => {
    const text = all.map(q => q.sql).join('\n')
    const want = [
      ' WHERE ', ' GROUP BY ', ' HAVING ', ' ORDER BY ', ' LIMIT ', ' OFFSET ', 'SELECT DISTINCT ', 'SELECT * ', ' DESC', ' ASC', 'NULLS FIRST', 'NULLS LAST',
      'count(*)', 'count(DISTINCT ', 'sum(', 'avg(', 'min(', 'max(', 'stddev_pop(', 'var_pop(', 'approx_count_distinct(', 'approx_quantile(',
      ' AND ', ' OR ', 'NOT ', ' IN (', ' NOT IN (', ' BETWEEN ', ' NOT BETWEEN ', ' LIKE ', ' ILIKE ', ' NOT LIKE ', "ESCAPE '!'", ' IS NULL', ' IS NOT NULL',
      ' + ', ' - ', ' * ', ' / ', ' % ', ' || ', 'lower(', 'upper(', 'length(', 'abs(', 'round(', 'coalesce(', 'CASE WHEN ', ' AS '
    ]
    expect(want.filter(w => !text.includes(w))).toEqual([])
    const shapes = new Set(all.map(q => q.shape))
    expect([...shapes].sort()).toEqual(['aggregate', 'distinct', 'group', 'rows', 'star'])
    // GROUP BY and ORDER BY by position, alias and expression all occur.
    expect(all.some(q => q.groupBy.some(g => /^\d+$/.test(g)))).toBe(true)
    expect(all.some(q => q.groupBy.some(g => /^c\d+$/.test(g)))).toBe(true)
    expect(all.some(q => q.orderBy.some(k => /^\d+$/.test(k.ref)))).toBe(true)
    expect(all.some(q => q.orderBy.some(k => /^c\d+$/.test(k.ref)))).toBe(true)
    expect(all.some(q => q.orderBy.some(k => k.hidden !== null))).toBe(true)
    expect(all.filter(q => q.groupBy.length === 3).length).toBeGreaterThan(0)
  })

  it('are the same for the same seed', () => {
    expect(generateQuery(123, rows)).toEqual(generateQuery(123, rows))
  })
})

describe('the comparator', () => {
  it('accepts DuckDB\'s own answers, ties shuffled, for every generated query', async () => {
    const failures: string[] = []
    let nonEmpty = 0
    for (const q of queries(250, 99)) {
      const answer = await idealAnswer(duck, q, typedColumns(q), q.seed + 1)
      if (answer.rows.length > 0) nonEmpty++
      const r = await checkQuery(duck, q, answer)
      if (!r.ok) failures.push(r.report)
    }
    expect(failures.slice(0, 3).join('\n\n')).toBe('')
    expect(nonEmpty).toBeGreaterThan(150)
  })

  it('fails on a missing row, an extra row, a changed value or a wrong order, and prints seed, SQL and diff', async () => {
    const q = handQuery(
      [plain('id'), plain('amount', null, true)],
      { orderBy: [{ ref: 'id', item: null, hidden: 0, direction: '', nulls: '', loose: false }], hiddenKeys: ['id'], limit: 20, seed: 4242, where: 'amount IS NOT NULL' }
    )
    const good = await idealAnswer(duck, q, typedColumns(q), 1)
    expect(good.rows).toHaveLength(20)
    expect(await checkQuery(duck, q, good)).toMatchObject({ ok: true })

    const variants: Record<string, (rows: Array<Record<string, unknown>>) => unknown[]> = {
      missing: r => r.slice(1),
      extra: r => [...r, r[0]],
      duplicate: r => [r[0], ...r.slice(0, -1)],
      perturbed: r => r.map((x, i) => i === 7 ? { ...x, amount: (x.amount as number) * (1 + 1e-6) } : x),
      swapped: r => [r[1], r[0], ...r.slice(2)],
      nulled: r => r.map((x, i) => i === 3 ? { ...x, amount: null } : x),
      typed: r => r.map((x, i) => i === 3 ? { ...x, amount: String(x.amount) + 'x' } : x)
    }
    for (const [name, mutate] of Object.entries(variants)) {
      const bad = { ...good, rows: mutate(good.rows as Array<Record<string, unknown>>) }
      const r = await checkQuery(duck, q, bad)
      expect(r.ok, name).toBe(false)
      if (!r.ok) {
        expect(r.report).toContain('query seed 4242')
        expect(r.report).toContain('Shoal SQL:  SELECT id, amount FROM orders WHERE amount IS NOT NULL ORDER BY id LIMIT 20')
      }
    }
    const swapped = await checkQuery(duck, q, { ...good, rows: variants.swapped!(good.rows as Array<Record<string, unknown>>) })
    expect(!swapped.ok && swapped.report).toMatch(/row at position 0 not in DuckDB's answer at that place[\s\S]*got \(not expected\):\n {2}\["r\d+",/)
  })

  it('accepts floats within 1e-9 relative and any order without ORDER BY', async () => {
    const q = handQuery(
      [plain('region'), plain('sum(amount)', 's', true), plain('avg(qty)', 'a', true), plain('count(*)', 'n')],
      { shape: 'group', groupBy: ['region'] }
    )
    const good = await idealAnswer(duck, q, typedColumns(q), 5)
    const rowsOf = good.rows as Array<Record<string, number>>
    const nudged = rowsOf.map(r => ({ ...r, s: r.s! * (1 + 3e-10), a: r.a! * (1 - 3e-10) })).reverse()
    expect(await checkQuery(duck, q, { ...good, rows: nudged })).toMatchObject({ ok: true })
    const off = rowsOf.map((r, i) => i === 2 ? { ...r, a: r.a! * (1 + 1e-7) } : r)
    expect((await checkQuery(duck, q, { ...good, rows: off })).ok).toBe(false)
    const count = rowsOf.map((r, i) => i === 0 ? { ...r, n: r.n! + 1 } : r)
    expect((await checkQuery(duck, q, { ...good, rows: count })).ok).toBe(false)
    // Columns must be the validator's, by name and type.
    expect((await checkQuery(duck, q, { ...good, columns: good.columns.map((c, i) => i === 1 ? { ...c, name: 'sum' } : c) })).ok).toBe(false)
    expect((await checkQuery(duck, q, { ...good, columns: good.columns.map((c, i) => i === 3 ? { ...c, type: 'float64' } : c) })).ok).toBe(false)
    // Errors and partial answers fail, with Shoal's message.
    const err = await checkQuery(duck, q, { error: { code: 'UNSUPPORTED', message: 'no' } })
    expect(!err.ok && err.report).toContain('Shoal refused the query: UNSUPPORTED: no')
    expect((await checkQuery(duck, q, { ...good, coverage: { total: 8, answered: 7, missing: [] } })).ok).toBe(false)
  })

  it('accepts any of the tied rows at a LIMIT cut-off, but only tied ones', async () => {
    const q = handQuery(
      [plain('id'), plain('region')],
      { orderBy: [{ ref: 'region', item: 1, hidden: null, direction: '', nulls: '', loose: false }], limit: 30, offset: 150 }
    )
    const all = (await duck.query('SELECT id, region FROM orders ORDER BY region')).rows
    const region = all[150]![1]
    const sameRegion = all.filter(r => r[1] === region).map(r => ({ id: r[0], region: r[1] }))
    const firstOfRegion = all.findIndex(r => r[1] === region)
    const good = await idealAnswer(duck, q, typedColumns(q), 3)
    expect(await checkQuery(duck, q, good)).toMatchObject({ ok: true })
    // Any rows of the cut group will do, in any order.
    const taken = 150 - firstOfRegion
    const rowsOther = [...sameRegion.slice(sameRegion.length - 30 < taken ? 0 : sameRegion.length - 30).reverse()].slice(0, 30)
    if (sameRegion.length >= 30 + taken) {
      expect(await checkQuery(duck, q, { ...good, rows: rowsOther })).toMatchObject({ ok: true })
    }
    // A row of another region does not.
    const other = all.find(r => r[1] !== region)!
    const wrong = [{ id: other[0], region: other[1] }, ...(good.rows.slice(1))]
    expect((await checkQuery(duck, q, { ...good, rows: wrong })).ok).toBe(false)
  })

  it('holds approx_count_distinct exact up to 3,000 and within 3.25% beyond', async () => {
    const q = handQuery(
      [
        { sql: 'approx_count_distinct(category)', duckSql: 'count(DISTINCT category)', alias: 'c', approx: { kind: 'distinct', arg: 'category' }, intSum: false, float: false },
        { sql: 'approx_count_distinct(id)', duckSql: 'count(DISTINCT id)', alias: 'i', approx: { kind: 'distinct', arg: 'id' }, intSum: false, float: false }
      ],
      { shape: 'aggregate' }
    )
    const cats = new Set(rows.map(r => r.category).filter(c => c !== null)).size
    const ok = (c: number, i: number): Promise<{ ok: boolean }> => checkQuery(duck, q, { columns: [{ name: 'c', type: 'int64' }, { name: 'i', type: 'int64' }], rows: [{ c, i }] })
    expect(await ok(cats, ROWS)).toMatchObject({ ok: true })
    expect((await ok(cats + 1, ROWS)).ok).toBe(false)
    // Beyond 3,000 distinct values (here a bigger table), the sketch may be off by a few percent.
    const big = await Duck.open(generateRows(7, 6000))
    try {
      const check = (i: number): Promise<{ ok: boolean }> => checkQuery(big, q, { columns: [{ name: 'c', type: 'int64' }, { name: 'i', type: 'int64' }], rows: [{ c: cats2, i }] })
      const cats2 = Number((await big.query('SELECT count(DISTINCT category) FROM orders')).rows[0]![0])
      expect(await check(Math.round(6000 * 1.02))).toMatchObject({ ok: true })
      expect(await check(Math.round(6000 * 0.975))).toMatchObject({ ok: true })
      expect((await check(Math.round(6000 * 1.04))).ok).toBe(false)
    } finally {
      big.close()
    }
  })

  it('holds approx_quantile within 1% of the value at rank ⌊q·(n−1)⌋', async () => {
    expect(quantileBounds([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5, false)).toMatchObject({ lo: 5, hi: 5 })
    // rank 5 exactly: 5 or 6, as the rank may come out a hair below 5 in another computation
    expect(quantileBounds([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.5, false)).toMatchObject({ lo: 5, hi: 6 })
    expect(quantileBounds([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.99, false)).toMatchObject({ lo: 10, hi: 10 })
    expect(quantileBounds([1, 2, 3], 0.75, true)).toMatchObject({ lo: 2, hi: 2, slack: 1 })
    const q = handQuery(
      [plain('region'), { sql: 'approx_quantile(amount, 0.9)', duckSql: 'list(amount ORDER BY amount) FILTER (WHERE amount IS NOT NULL)', alias: 'p', approx: { kind: 'quantile', arg: 'amount', q: 0.9, argType: 'float64' }, intSum: false, float: true }],
      { shape: 'group', groupBy: ['region'] }
    )
    const good = await idealAnswer(duck, q, typedColumns(q), 9)
    const scaled = (f: number): ShoalAnswer => ({ ...good, rows: (good.rows as Array<{ region: string, p: number }>).map(r => ({ ...r, p: r.p * f })) })
    expect(await checkQuery(duck, q, good)).toMatchObject({ ok: true })
    expect(await checkQuery(duck, q, scaled(1.009))).toMatchObject({ ok: true })
    expect(await checkQuery(duck, q, scaled(0.991))).toMatchObject({ ok: true })
    expect((await checkQuery(duck, q, scaled(1.03))).ok).toBe(false)
    expect((await checkQuery(duck, q, scaled(0.97))).ok).toBe(false)
  })

  it('compares sums of int64 exactly up to 2^53 and within float rounding beyond', async () => {
    const q = handQuery(
      [{ sql: 'sum(big)', duckSql: 'sum(big)', alias: 's', approx: null, intSum: true, float: false }],
      { shape: 'aggregate' }
    )
    const exact = (await duck.query('SELECT sum(big) FROM orders')).rows[0]![0] as bigint
    const answer = (s: unknown): ShoalAnswer => ({ columns: [{ name: 's', type: 'int64' }], rows: [{ s }] })
    expect(await checkQuery(duck, q, answer(exact.toString()))).toMatchObject({ ok: true })
    const abs = exact < 0n ? -exact : exact
    if (abs > 2n ** 53n) {
      expect(await checkQuery(duck, q, answer(Number(exact)))).toMatchObject({ ok: true })
      expect((await checkQuery(duck, q, answer((exact + exact / 1000n).toString()))).ok).toBe(false)
    } else {
      expect((await checkQuery(duck, q, answer((exact + 1n).toString()))).ok).toBe(false)
    }
    // An exact int64 column is exact, strings and numbers alike.
    const q2 = handQuery([plain('big')], { where: "id = 'r000001'" })
    const b = rows[1]!.big
    const one = (v: unknown): ShoalAnswer => ({ columns: [{ name: 'big', type: 'int64' }], rows: [{ big: v }] })
    expect(await checkQuery(duck, q2, one(b))).toMatchObject({ ok: true })
    expect(await checkQuery(duck, q2, one(b === null ? null : String(b)))).toMatchObject({ ok: true })
    if (b !== null) expect((await checkQuery(duck, q2, one(b + 1))).ok).toBe(false)
  })

  it('compares an answer to a generated query with a perturbed float or a dropped row as a failure', async () => {
    let perturbedTried = 0
    for (const q of queries(120, 5)) {
      const cols = typedColumns(q)
      const good = await idealAnswer(duck, q, cols, 2)
      if (good.rows.length === 0) continue
      const dropped = await checkQuery(duck, q, { ...good, rows: good.rows.slice(1) })
      expect(dropped.ok, q.sql).toBe(false)
      const fi = cols.findIndex((c, i) => c.type === 'float64' && q.items[i]!.approx === null)
      const row = good.rows[0] as Record<string, unknown>
      if (fi >= 0 && typeof row[cols[fi]!.name] === 'number' && row[cols[fi]!.name] !== 0) {
        const name = cols[fi]!.name
        const x = row[name] as number
        // Far beyond tolerance, and unlike any other row's value.
        const changed = { ...row, [name]: x * 1.5 + 12345.678 }
        const r = await checkQuery(duck, q, { ...good, rows: [changed, ...good.rows.slice(1)] })
        expect(r.ok, q.sql).toBe(false)
        perturbedTried++
      }
    }
    expect(perturbedTried).toBeGreaterThan(10)
  })

  it('tells a compareAnswer failure apart from success without DuckDB SQL re-run', () => {
    const q = handQuery([plain('id')])
    const v = compareAnswer(q, [{ name: 'id', type: 'utf8' }], { names: ['id'], types: ['VARCHAR'], rows: [['a'], ['b']] }, { columns: [{ name: 'id', type: 'utf8' }], rows: [{ id: 'b' }, { id: 'a' }] })
    expect(v).toEqual({ ok: true })
    const w = compareAnswer(q, [{ name: 'id', type: 'utf8' }], { names: ['id'], types: ['VARCHAR'], rows: [['a'], ['b']] }, { columns: [{ name: 'id', type: 'utf8' }], rows: [{ id: 'b' }, { id: 'c' }] })
    expect(w.ok).toBe(false)
  })
})
