import { describe, expect, it } from 'vitest'
import { parseJsonQuery, JsonQueryError } from '../../src/query/json/index.js'
import { planEquals, printPlan } from '../../src/query/model/index.js'
import { parseSql } from '../../src/query/sql/index.js'

const plan = (q: unknown): string => printPlan(parseJsonQuery(q).plan)
const filterOf = (filter: unknown): string => plan({ space: 'sales', filter }).split('\n')[0]!
const refused = (q: unknown): JsonQueryError => {
  try { parseJsonQuery(q) } catch (err) { if (err instanceof JsonQueryError) return err; throw err }
  throw new Error('expected a JsonQueryError')
}

describe('JSON query front end', () => {
  it('turns filter, sort, from/size and fields into Project(Limit(Sort(Filter(Scan))))', () => {
    expect(plan({ space: 'sales', filter: { term: { region: 'eu' } }, sort: [{ amount: 'desc' }, 'id'], from: 20, size: 10, fields: ['id', 'amount'] })).toBe([
      'Project id, amount',
      '  Limit 10 offset 20',
      '    Sort amount DESC, id ASC',
      "      Filter region = 'eu'",
      '        Scan sales'
    ].join('\n'))
    expect(plan({ space: 'sales' })).toBe('Scan sales')
  })

  it('reads every filter clause', () => {
    expect(filterOf({ term: { qty: 3 } })).toBe('Filter qty = 3')
    expect(filterOf({ term: { region: { value: 'eu' } } })).toBe("Filter region = 'eu'")
    expect(filterOf({ terms: { region: ['eu', 'us'] } })).toBe("Filter region IN ('eu', 'us')")
    expect(filterOf({ range: { amount: { gte: 1, lte: 2 } } })).toBe('Filter amount BETWEEN 1 AND 2')
    expect(filterOf({ range: { amount: { gt: 1, lt: 2.5 } } })).toBe('Filter amount > 1 AND amount < 2.5')
    expect(filterOf({ exists: { field: 'ts' } })).toBe('Filter ts IS NOT NULL')
    expect(filterOf({ prefix: { region: 'e_1%' } })).toBe("Filter region LIKE 'e\\_1\\%%' ESCAPE '\\'")
    expect(filterOf({ wildcard: { country: 'd*e?' } })).toBe("Filter country LIKE 'd%e_' ESCAPE '\\'")
    expect(filterOf({ ids: { values: ['a', 'b'] } })).toBe("Filter id IN ('a', 'b')")
    expect(filterOf({ match_none: {} })).toBe('Filter FALSE')
    expect(plan({ space: 'sales', filter: { match_all: {} } })).toBe('Scan sales')
  })

  it('reads bool: must and filter as AND, should as OR (one must match), must_not as NOT', () => {
    expect(filterOf({
      bool: {
        must: [{ term: { region: 'eu' } }],
        filter: { range: { amount: { gte: 10 } } },
        should: [{ term: { country: 'de' } }, { term: { country: 'fr' } }],
        must_not: [{ exists: { field: 'ts' } }]
      }
    })).toBe("Filter region = 'eu' AND amount >= 10 AND (country = 'de' OR country = 'fr') AND NOT (ts IS NOT NULL)")
    expect(filterOf({ bool: { must: { term: { qty: 1 } }, should: [{ term: { qty: 2 } }], minimum_should_match: 0 } })).toBe('Filter qty = 1')
    expect(plan({ space: 'sales', filter: { bool: {} } })).toBe('Scan sales')
  })

  it('turns aggregations into an Aggregate node carrying the nested spec tree', () => {
    expect(plan({
      space: 'sales',
      filter: { term: { region: 'eu' } },
      size: 0,
      aggs: {
        by_country: {
          terms: { field: 'country', size: 5 },
          aggs: {
            revenue: { sum: { field: 'amount' } },
            monthly: { date_histogram: { field: 'ts', calendar_interval: 'month' }, aggs: { p: { percentiles: { field: 'amount', percents: [50, 99] } } } }
          }
        },
        spread: { histogram: { field: 'amount', interval: 50 } },
        bands: { range: { field: 'amount', ranges: [{ to: 10 }, { from: 10 }] } },
        kinds: { filters: { filters: { big: { range: { amount: { gt: 100 } } }, eu: { term: { region: 'eu' } } } } },
        s: { stats: { field: 'amount' } },
        es: { extended_stats: { field: 'amount' } },
        users: { cardinality: { field: 'country' } },
        a: { avg: { field: 'amount' } },
        lo: { min: { field: 'amount' } },
        hi: { max: { field: 'ts' } },
        n: { value_count: { field: 'id' } }
      }
    })).toBe([
      'Aggregate aggs',
      '  - by_country: terms(country) {"size":5}',
      '    - revenue: sum(amount)',
      '    - monthly: date_histogram(ts) {"calendar_interval":"month"}',
      '      - p: percentiles(amount) {"percents":[50,99]}',
      '  - spread: histogram(amount) {"interval":50}',
      '  - bands: range(amount) {"ranges":[{"to":10},{"from":10}]}',
      "  - kinds: filters() {big: amount > 100; eu: region = 'eu'}",
      '  - s: stats(amount)',
      '  - es: extended_stats(amount)',
      '  - users: cardinality(country)',
      '  - a: avg(amount)',
      '  - lo: min(amount)',
      '  - hi: max(ts)',
      '  - n: value_count(id)',
      "  Filter region = 'eu'",
      '    Scan sales'
    ].join('\n'))
  })

  it('reads knn as a top-K vector search and spread as activation along links', () => {
    expect(plan({ space: 'notes', filter: { term: { kind: 'fact' } }, knn: { field: 'embedding', vector: [0.1, 0.2, 0.3], k: 4, metric: 'l2' }, fields: ['id', '_score'] })).toBe([
      'Project id, _score',
      '  TopK 4 by l2(embedding, [0.1, 0.2, 0.3])',
      "    Filter kind = 'fact'",
      '      Scan notes'
    ].join('\n'))
    expect(plan({ space: 'notes', spread: { seeds: ['a'], links: 'links', decay: 0.8, maxHops: 4 }, size: 20 })).toBe("Spread notes from ['a'] via links decay 0.8 maxHops 4 limit 20")
  })

  it('gives the same plan as SQL for the same filter, sort, paging and fields', () => {
    const pairs: Array<[unknown, string]> = [
      [{ space: 'sales', filter: { bool: { must: [{ term: { region: 'eu' } }, { range: { amount: { gte: 10, lte: 20 } } }], must_not: [{ terms: { country: ['de', 'fr'] } }] } }, sort: [{ amount: { order: 'desc', missing: '_first' } }, 'id'], from: 5, size: 10, fields: ['id', 'amount'] },
        "SELECT id, amount FROM sales WHERE region = 'eu' AND amount BETWEEN 10 AND 20 AND NOT (country IN ('de', 'fr')) ORDER BY amount DESC NULLS FIRST, id LIMIT 10 OFFSET 5"],
      [{ space: 'sales', filter: { bool: { should: [{ term: { qty: 1 } }, { bool: { must: [{ range: { amount: { gt: 1.5 } } }, { exists: { field: 'ts' } }] } }] } } },
        'SELECT * FROM sales WHERE qty = 1 OR amount > 1.5 AND ts IS NOT NULL'],
      [{ space: 'sales', filter: { prefix: { region: 'e' } }, size: 3 }, "SELECT * FROM sales WHERE region LIKE 'e%' ESCAPE '\\' LIMIT 3"]
    ]
    for (const [json, sql] of pairs) {
      const a = parseJsonQuery(json).plan
      const b = parseSql(sql).plan
      expect(printPlan(a)).toBe(printPlan(b))
      expect(planEquals(a, b)).toBe(true)
    }
  })

  it('names the offending part of a malformed query by its JSON path', () => {
    expect(refused({ space: 'sales', filter: { bool: { must: [{ term: { a: 1 } }, { range: { amount: { gte: 1, above: 2 } } }] } } }).path).toBe('filter.bool.must[1].range.amount.above')
    expect(refused({ space: 'sales', filter: { term: { a: 1 }, range: { b: { gt: 1 } } } }).path).toBe('filter')
    expect(refused({ space: 'sales', filter: { fuzzy: { a: 'x' } } }).path).toBe('filter.fuzzy')
    expect(refused({ space: 'sales', filter: { terms: { a: [] } } }).path).toBe('filter.terms.a')
    expect(refused({ space: 'sales', filter: { term: { a: null } } }).message).toContain('use exists')
    expect(refused({ filter: {} }).path).toBe('space')
    expect(refused({ space: 'sales', query: {} }).path).toBe('query')
    expect(refused({ space: 'sales', size: 1.5 }).path).toBe('size')
    expect(refused({ space: 'sales', sort: [{ amount: 'down' }] }).path).toBe('sort[0].amount')
    expect(refused({ space: 'sales', aggs: { x: { avg: { field: 'a' } } }, size: 10 }).path).toBe('size')
    expect(refused({ space: 'sales', aggs: { x: { median: { field: 'a' } } } }).path).toBe('aggs.x.median')
    expect(refused({ space: 'sales', aggs: { x: { avg: { field: 'a' }, aggs: { y: { sum: { field: 'a' } } } } } }).path).toBe('aggs.x.aggs')
    expect(refused({ space: 'sales', aggs: { x: { terms: {} } } }).path).toBe('aggs.x.terms.field')
  })

  it('puts bounds on filter depth', () => {
    let f: unknown = { term: { a: 1 } }
    for (let i = 0; i < 40; i++) f = { bool: { must: [f] } }
    expect(refused({ space: 'sales', filter: f }).message).toContain('deeper than 32')
  })
})
