import { describe, expect, it } from 'vitest'
import { parseJsonQuery } from '../../src/query/json/index.js'
import { limit, scan, spread, topK } from '../../src/query/model/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import type { QueryError } from '../../src/query/validate/index.js'
import { sales, spaces } from './query-helpers.js'

const sql = (text: string): ReturnType<typeof validatePlan> => {
  const { plan, origins } = parseSql(text, { space: spaces })
  return validatePlan(plan, spaces, { origins })
}
const json = (q: unknown): ReturnType<typeof validatePlan> => {
  const { plan, origins } = parseJsonQuery(q)
  return validatePlan(plan, sales, { origins })
}
const errors = (r: ReturnType<typeof validatePlan>): QueryError[] => {
  if (r.ok) throw new Error('expected errors')
  return r.errors
}
const brief = (r: ReturnType<typeof validatePlan>): Array<[string, string | undefined, string | undefined]> => errors(r).map(e => [e.code, e.column, e.at])

describe('query validation', () => {
  it('types every output column with its Arrow type name', () => {
    const r = sql(`SELECT region, count(*) AS n, count(DISTINCT country) AS c, sum(qty) AS sq, sum(amount) AS sa, avg(qty) AS a,
      min(ts) AS first, max(day) AS last, stddev_pop(amount) AS sd, var_pop(amount) AS v, approx_count_distinct(country) AS u,
      approx_quantile(qty, 0.5) AS med, sum(amount) / count(*) AS ratio, upper(region) || '!' AS shout
      FROM sales WHERE amount > 0 GROUP BY region`)
    expect(r.ok && r.columns).toEqual([
      { name: 'region', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'c', type: 'int64' }, { name: 'sq', type: 'int64' },
      { name: 'sa', type: 'float64' }, { name: 'a', type: 'float64' }, { name: 'first', type: 'timestamp' }, { name: 'last', type: 'date' },
      { name: 'sd', type: 'float64' }, { name: 'v', type: 'float64' }, { name: 'u', type: 'int64' }, { name: 'med', type: 'int32' },
      { name: 'ratio', type: 'float64' }, { name: 'shout', type: 'utf8' }
    ])
    const star = sql('SELECT * FROM sales')
    expect(star.ok && star.columns.map(c => `${c.name}:${c.type}`).join(',')).toBe('id:utf8,region:utf8,country:utf8,amount:float64,qty:int32,big:int64,ts:timestamp,day:date,tags:list<utf8>,embedding:vector<3>,links:list<utf8>,active:bool')
  })

  it('names an unknown column and its SQL position', () => {
    expect(brief(sql('SELECT region,\n  amout FROM sales'))).toEqual([['unknown_column', 'amout', 'line 2, column 3']])
    const [e] = errors(sql('SELECT id FROM sales WHERE regoin = 1'))
    expect(e!.message).toBe("unknown column 'regoin' at line 1, column 28")
    expect(e!.origin).toEqual({ offset: 27, line: 1, column: 28 })
    expect(brief(sql('SELECT id FROM sales ORDER BY nope'))).toEqual([['unknown_column', 'nope', 'line 1, column 31']])
  })

  it('names an unknown column by its JSON path', () => {
    expect(brief(json({ space: 'sales', filter: { bool: { must: [{ term: { region: 'eu' } }, { range: { amout: { gte: 1 } } }] } } })))
      .toEqual([['unknown_column', 'amout', 'filter.bool.must[1].range.amout']])
    expect(brief(json({ space: 'sales', sort: ['nope'], fields: ['id', 'gone'] }))).toEqual([
      ['unknown_column', 'nope', 'sort[0]'], ['unknown_column', 'gone', 'fields[1]']
    ])
    expect(brief(json({ space: 'sales', aggs: { t: { terms: { field: 'regio' } } } }))).toEqual([['unknown_column', 'regio', 'aggs.t.terms.field']])
    expect(errors(validatePlan(scan('nowhere'), sales))[0]!.code).toBe('unknown_space')
  })

  it('reports type mismatches: comparing utf8 with a number, sum of utf8, LIKE on a number', () => {
    expect(brief(sql('SELECT id FROM sales WHERE region = 3'))).toEqual([['type_mismatch', 'region', 'line 1, column 28']])
    expect(errors(sql('SELECT id FROM sales WHERE region = 3'))[0]!.message).toBe("cannot compare 'region' (utf8) with 3 (int64) at line 1, column 28")
    expect(brief(sql('SELECT sum(region) FROM sales'))).toEqual([['type_mismatch', 'region', 'line 1, column 12']])
    expect(brief(sql("SELECT id FROM sales WHERE qty LIKE '1%'"))).toEqual([['type_mismatch', 'qty', 'line 1, column 28']])
    expect(brief(sql("SELECT id FROM sales WHERE region IN ('eu', 2)"))[0]![0]).toBe('type_mismatch')
    expect(brief(sql('SELECT id FROM sales WHERE amount'))[0]![0]).toBe('type_mismatch')
    expect(brief(sql('SELECT id FROM sales WHERE tags = 1'))[0]![0]).toBe('type_mismatch')
    expect(brief(sql('SELECT id FROM sales ORDER BY embedding'))[0]![0]).toBe('type_mismatch')
    expect(brief(json({ space: 'sales', aggs: { s: { sum: { field: 'region' } } } }))).toEqual([['type_mismatch', 'region', 'aggs.s.sum.field']])
    expect(brief(json({ space: 'sales', filter: { prefix: { qty: '1' } } }))).toEqual([['type_mismatch', 'qty', 'filter.prefix.qty']])
  })

  it('accepts what DuckDB accepts: numbers of any width together, dates against ISO strings', () => {
    expect(sql("SELECT id FROM sales WHERE qty > 1.5 AND big = qty AND ts >= '2024-01-01' AND day < ts AND region IS NULL AND active").ok).toBe(true)
    expect(json({ space: 'sales', filter: { range: { ts: { gte: 1700000000000 } } } }).ok).toBe(true)
  })

  it('refuses an aggregate in WHERE, naming the clause', () => {
    const [e] = errors(sql('SELECT id FROM sales WHERE sum(amount) > 10'))
    expect([e!.code, e!.at]).toEqual(['aggregate_misplaced', 'line 1, column 28'])
    expect(e!.message).toContain('not allowed in WHERE')
  })

  it('refuses a column that is neither grouped nor aggregated', () => {
    expect(brief(sql('SELECT region, country, count(*) FROM sales GROUP BY region'))).toEqual([['not_grouped', 'country', 'line 1, column 16']])
    expect(brief(sql('SELECT region FROM sales GROUP BY region ORDER BY amount'))).toEqual([['not_grouped', 'amount', 'line 1, column 51']])
    expect(sql('SELECT region, count(*) FROM sales GROUP BY region ORDER BY region').ok).toBe(true)
  })

  it('refuses a bad LIMIT or OFFSET', () => {
    expect(brief(sql('SELECT id FROM sales LIMIT -1'))).toEqual([['bad_limit', undefined, 'line 1, column 22']])
    expect(brief(sql('SELECT id FROM sales LIMIT 1.5'))[0]![0]).toBe('bad_limit')
    expect(brief(sql('SELECT id FROM sales LIMIT 5000000'))[0]![0]).toBe('bad_limit')
    expect(errors(validatePlan(limit(scan('sales'), 10, -3), sales))[0]!.message).toContain('OFFSET')
    expect(brief(json({ space: 'sales', size: -1 }))).toEqual([['bad_limit', undefined, 'size']])
  })

  it('checks top-K searches: a vector column of the query vector\'s dimension, k in bounds', () => {
    const ok = validatePlan(topK(scan('sales'), { column: 'embedding', vector: [1, 0, 0], k: 3 }), sales)
    expect(ok.ok && ok.columns.at(-1)).toEqual({ name: '_score', type: 'float64' })
    expect(brief(json({ space: 'sales', knn: { field: 'embedding', vector: [1, 0], k: 3 } }))).toEqual([['vector_dimension', 'embedding', 'knn']])
    expect(errors(validatePlan(topK(scan('sales'), { column: 'amount', vector: [1], k: 3 }), sales))[0]!.code).toBe('type_mismatch')
    expect(errors(validatePlan(topK(scan('sales'), { column: 'embedding', vector: [1, 2, 3], k: 0 }), sales))[0]!.code).toBe('bad_limit')
  })

  it('checks spread: a links column of ids, decay and hops in bounds', () => {
    const ok = validatePlan(spread({ space: 'sales', seeds: ['a'], linksColumn: 'links' }), sales)
    expect(ok.ok && ok.columns).toEqual([{ name: 'id', type: 'utf8' }, { name: 'activation', type: 'float64' }, { name: 'hops', type: 'int32' }])
    expect(errors(validatePlan(spread({ space: 'sales', seeds: ['a'], linksColumn: 'amount', decay: 2, maxHops: 99 }), sales)).map(e => e.code))
      .toEqual(['type_mismatch', 'invalid', 'invalid'])
  })

  it('checks aggregation parameters of JSON queries', () => {
    expect(json({ space: 'sales', aggs: { h: { histogram: { field: 'amount', interval: 10 }, aggs: { m: { max: { field: 'ts' } } } } } }).ok).toBe(true)
    expect(brief(json({ space: 'sales', aggs: { h: { histogram: { field: 'amount', interval: 0 } } } }))).toEqual([['invalid', undefined, 'aggs.h.histogram.interval']])
    expect(brief(json({ space: 'sales', aggs: { d: { date_histogram: { field: 'amount', calendar_interval: 'day' } } } }))).toEqual([['type_mismatch', 'amount', 'aggs.d.date_histogram.field']])
    expect(brief(json({ space: 'sales', aggs: { p: { percentiles: { field: 'amount', percents: [50, 101] } } } }))).toEqual([['invalid', undefined, 'aggs.p.percentiles.percents']])
    expect(brief(json({ space: 'sales', aggs: { f: { filters: { filters: { x: { term: { nope: 1 } } } } } } }))).toEqual([['unknown_column', 'nope', 'aggs.f.filters.filters.x.term.nope']])
    const r = json({ space: 'sales', aggs: { t: { terms: { field: 'region' } } } })
    expect(r.ok && r.answers).toBe('aggregations')
  })

  it('reports every error at once, in the order they appear in the SQL', () => {
    expect(brief(sql("SELECT nope, sum(region) FROM sales WHERE qty LIKE 'x' LIMIT -2")).map(e => e[0])).toEqual(['unknown_column', 'type_mismatch', 'type_mismatch', 'bad_limit'])
  })
})
