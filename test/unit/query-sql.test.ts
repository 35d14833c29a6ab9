import { describe, expect, it } from 'vitest'
import { printPlan } from '../../src/query/model/index.js'
import type { PlanNode } from '../../src/query/model/index.js'
import { parseSql, SqlError } from '../../src/query/sql/index.js'
import { spaces } from './query-helpers.js'

const plan = (sql: string): string => printPlan(parseSql(sql, { space: spaces }).plan)
const refused = (sql: string): SqlError => {
  try { parseSql(sql, { space: spaces }) } catch (err) { if (err instanceof SqlError) return err; throw err }
  throw new Error(`expected a SqlError for ${sql}`)
}
const whereOf = (sql: string): string => {
  const p = parseSql(`SELECT id FROM sales WHERE ${sql}`).plan as PlanNode & { input: { kind: string, predicate: unknown } }
  return printPlan(p).split('\n')[1]!.trim()
}

describe('SQL front end', () => {
  it('turns a filtered, sorted, paged SELECT into Project(Limit(Sort(Filter(Scan))))', () => {
    expect(plan('SELECT id, amount * 2 AS twice FROM sales WHERE amount > 10 ORDER BY amount DESC LIMIT 10 OFFSET 5')).toBe([
      'Project id, amount * 2 AS twice',
      '  Limit 10 offset 5',
      '    Sort amount DESC',
      '      Filter amount > 10',
      '        Scan sales'
    ].join('\n'))
  })

  it('reads every kind of WHERE condition', () => {
    expect(whereOf("region = 'eu' AND amount <> 1 AND qty < 2 AND qty <= 3 AND big > 4 AND big >= 5 AND amount != 6"))
      .toBe("Filter region = 'eu' AND amount <> 1 AND qty < 2 AND qty <= 3 AND big > 4 AND big >= 5 AND amount <> 6")
    expect(whereOf("region = 'eu' OR NOT (amount > 1) AND active")).toBe("Filter region = 'eu' OR NOT (amount > 1) AND active")
    expect(whereOf("region IN ('eu', 'us') AND country NOT IN ('de')")).toBe("Filter region IN ('eu', 'us') AND country NOT IN ('de')")
    expect(whereOf('amount BETWEEN 1 AND 2.5 AND qty NOT BETWEEN -3 AND 3')).toBe('Filter amount BETWEEN 1 AND 2.5 AND qty NOT BETWEEN -3 AND 3')
    expect(whereOf("region LIKE 'e%' AND country NOT LIKE '_e' AND region ILIKE 'E%'")).toBe("Filter region LIKE 'e%' AND country NOT LIKE '_e' AND region ILIKE 'E%'")
    expect(whereOf("region LIKE '50!%%' ESCAPE '!'")).toBe("Filter region LIKE '50!%%' ESCAPE '!'")
    expect(whereOf('ts IS NULL OR day IS NOT NULL')).toBe('Filter ts IS NULL OR day IS NOT NULL')
    expect(whereOf("CASE WHEN amount > 0 THEN 'p' ELSE 'n' END = 'p' AND lower(region) = 'eu'")).toBe("Filter CASE WHEN amount > 0 THEN 'p' ELSE 'n' END = 'p' AND lower(region) = 'eu'")
  })

  it('binds AND tighter than OR and keeps parenthesized groups, though the grammar folds chains left to right', () => {
    expect(whereOf('qty = 1 OR qty = 2 AND amount = 3')).toBe('Filter qty = 1 OR qty = 2 AND amount = 3')
    const p = parseSql('SELECT id FROM sales WHERE qty = 1 OR qty = 2 AND amount = 3').plan as unknown as { input: { predicate: { op: string, right: { op: string } } } }
    expect([p.input.predicate.op, p.input.predicate.right.op]).toEqual(['OR', 'AND'])
    expect(whereOf('(qty = 1 OR qty = 2) AND amount = 3')).toBe('Filter (qty = 1 OR qty = 2) AND amount = 3')
    expect(whereOf('active AND (qty = 1 OR qty = 2 AND amount = 3) OR NOT active AND amount > 0'))
      .toBe('Filter active AND (qty = 1 OR qty = 2 AND amount = 3) OR NOT active AND amount > 0')
  })

  it('keeps strings as standard SQL writes them: doubled quotes, literal backslashes', () => {
    expect(whereOf("region = 'it''s' AND country LIKE 'a\\%' ESCAPE '\\'")).toBe("Filter region = 'it''s' AND country LIKE 'a\\%' ESCAPE '\\'")
    const p = parseSql("SELECT id FROM sales WHERE region = 'a\\nb'").plan as { input: { predicate: { right: { value: string } } } }
    expect(p.input.predicate.right.value).toBe('a\\nb')
  })

  it('reads quoted identifiers, table-qualified columns and typed numbers', () => {
    expect(plan('SELECT "region", s.amount FROM "sales" AS s WHERE s.big = 9223372036854775807 AND amount > 1.5e3 AND qty = -3')).toBe([
      'Project region, amount',
      '  Filter big = 9223372036854775807 AND amount > 1500.0 AND qty = -3',
      '    Scan sales'
    ].join('\n'))
  })

  it('matches unquoted names to schema columns without regard to case, as DuckDB does', () => {
    expect(plan('SELECT Region FROM sales WHERE AMOUNT > 1')).toBe('Project region\n  Filter amount > 1\n    Scan sales')
    expect(plan('SELECT "Region" FROM sales')).toBe('Project "Region"\n  Scan sales')
  })

  it('expands SELECT * from the space schema, in schema order', () => {
    expect(plan('SELECT * FROM sales').split('\n')[0]).toBe('Project id, region, country, amount, qty, big, ts, day, tags, embedding, links, active')
    expect(printPlan(parseSql('SELECT * FROM sales LIMIT 3').plan)).toBe('Limit 3\n  Scan sales')
  })

  it('parses a repeated SQL text against the schema of the moment (the syntax tree is cached, the plan is not)', () => {
    const sql = 'SELECT * FROM sales WHERE amount > 1'
    const narrow = (): ReturnType<typeof spaces> => { const s = spaces('sales')!; return { ...s, schema: s.schema.filter(c => c.name === 'id' || c.name === 'amount') } }
    expect(plan(sql).split('\n')[0]).toBe('Project id, region, country, amount, qty, big, ts, day, tags, embedding, links, active')
    expect(printPlan(parseSql(sql, { space: narrow }).plan).split('\n')[0]).toBe('Project id, amount')
    expect(plan(sql).split('\n')[0]).toBe('Project id, region, country, amount, qty, big, ts, day, tags, embedding, links, active')
    // A text that does not parse is refused every time, with its position.
    expect(refused('SELECT FROM WHERE').code).toBe('syntax')
    expect(refused('SELECT FROM WHERE').code).toBe('syntax')
  })

  it('groups by several columns and lifts aggregates into the Aggregate node', () => {
    expect(plan('SELECT region, country, count(*) AS n, sum(amount) FROM sales WHERE amount > 0 GROUP BY region, country')).toBe([
      'Project region, country, n, "sum(amount)"',
      '  Aggregate by region, country compute count(*) AS n, sum(amount)',
      '    Filter amount > 0',
      '      Scan sales'
    ].join('\n'))
  })

  it('groups by position and by select alias', () => {
    expect(plan('SELECT lower(region) AS r, count(*) FROM sales GROUP BY 1')).toBe([
      'Project r, "count(*)"',
      '  Aggregate by lower(region) AS r compute count(*)',
      '    Scan sales'
    ].join('\n'))
    expect(plan('SELECT lower(region) AS r, count(*) FROM sales GROUP BY r')).toBe(plan('SELECT lower(region) AS r, count(*) FROM sales GROUP BY 1'))
  })

  it('rewrites aggregates in HAVING and ORDER BY to the aggregate outputs, sharing equal ones', () => {
    expect(plan('SELECT region, sum(amount) AS total FROM sales GROUP BY region HAVING sum(amount) > 100 AND count(*) > 2 ORDER BY max(amount) DESC')).toBe([
      'Project region, total',
      '  Sort "max(amount)" DESC',
      '    Filter total > 100 AND "count(*)" > 2',
      '      Aggregate by region compute sum(amount) AS total, count(*), max(amount)',
      '        Scan sales'
    ].join('\n'))
  })

  it('orders by alias, by 1-based position, by several keys with ASC/DESC and NULLS FIRST', () => {
    expect(plan('SELECT region, amount * 2 AS twice FROM sales ORDER BY twice DESC, 1, qty ASC NULLS FIRST')).toBe([
      'Project region, amount * 2 AS twice',
      '  Sort amount * 2 DESC, region ASC, qty ASC NULLS FIRST',
      '    Scan sales'
    ].join('\n'))
    expect(plan('SELECT region, count(*) AS n FROM sales GROUP BY region ORDER BY 2 DESC, region')).toBe([
      'Project region, n',
      '  Sort n DESC, region ASC',
      '    Aggregate by region compute count(*) AS n',
      '      Scan sales'
    ].join('\n'))
  })

  it('reads LIMIT, OFFSET, LIMIT ALL and OFFSET alone', () => {
    expect(plan('SELECT id FROM sales LIMIT 7').split('\n')[1]).toBe('  Limit 7')
    expect(plan('SELECT id FROM sales LIMIT 7 OFFSET 14').split('\n')[1]).toBe('  Limit 7 offset 14')
    expect(plan('SELECT id FROM sales OFFSET 14').split('\n')[1]).toBe('  Limit none offset 14')
    expect(plan('SELECT id FROM sales LIMIT ALL').split('\n')[1]).toBe('  Limit none')
  })

  it('reads every aggregate function under its DuckDB name', () => {
    expect(plan(`SELECT count(*), count(country), count(DISTINCT country), sum(amount), avg(amount), min(ts), max(day),
      stddev_pop(amount), var_pop(qty), approx_count_distinct(country), approx_quantile(amount, 0.5) AS median FROM sales`).split('\n')[1]).toBe(
      '  Aggregate compute count(*), count(country), count(DISTINCT country), sum(amount), avg(amount), min(ts), max(day), ' +
      'stddev_pop(amount), var_pop(qty), approx_count_distinct(country), approx_quantile(amount, 0.5) AS median')
    const agg = (parseSql('SELECT approx_quantile(amount, 0.25) AS q FROM sales').plan as unknown as { input: { aggregates: unknown[] } }).input.aggregates[0]
    expect(agg).toEqual({ fn: 'approx_quantile', args: [{ kind: 'Column', name: 'amount' }], distinct: false, alias: 'q', params: { quantile: 0.25 } })
  })

  it('turns SELECT DISTINCT into a grouping on every select item', () => {
    expect(plan('SELECT DISTINCT region, country FROM sales')).toBe('Project region, country\n  Aggregate by region, country\n    Scan sales')
  })

  it('refuses joins, subqueries and other constructs, naming them and their position', () => {
    const join = refused('SELECT id FROM sales JOIN other ON sales.id = other.id')
    expect(join.code).toBe('unsupported')
    expect(join.construct).toBe('JOIN')
    expect(join.offset).toBe(21)
    expect(join.message).toContain('line 1, column 22')
    expect(refused('SELECT id FROM sales, other').construct).toBe('several tables')
    const sub = refused('SELECT id FROM sales\nWHERE id IN (SELECT id FROM other)')
    expect([sub.construct, sub.line, sub.column]).toEqual(['subquery', 2, 14])
    expect(refused('SELECT id FROM (SELECT id FROM sales) s').construct).toBe('subquery')
    expect(refused('WITH x AS (SELECT id FROM sales) SELECT id FROM x').construct).toBe('WITH')
    expect(refused('SELECT id FROM sales UNION SELECT id FROM sales').construct).toBe('set operation')
    expect(refused('SELECT sum(amount) OVER () FROM sales').construct).toBe('window function')
    expect(refused('SELECT count(*) FILTER (WHERE qty > 1) FROM sales').construct).toBe('FILTER')
    expect(refused('SELECT CAST(amount AS INT) FROM sales').construct).toBe('CAST')
    // The grammar itself has no sum(DISTINCT x): a syntax error, still with a position.
    expect(refused('SELECT sum(DISTINCT amount) FROM sales').code).toBe('syntax')
    expect(refused('SELECT id FROM sales WHERE active IS TRUE').construct).toBe('IS')
    expect(refused("DELETE FROM sales WHERE id = 'a'").construct).toBe('DELETE')
    expect(refused('SELECT 1').construct).toBe('no FROM')
    expect(refused('SELECT id FROM sales; SELECT id FROM sales').construct).toBe('multiple statements')
  })

  it('reports syntax errors with the line and column', () => {
    const e = refused('SELECT id\nFROM sales\nWHERE amount >')
    expect(e.code).toBe('syntax')
    expect([e.line, e.column]).toEqual([3, 15])
  })

  it('reports bad positions, nested aggregates and bad quantiles with their position', () => {
    expect(refused('SELECT id FROM sales ORDER BY 3').message).toBe('ORDER BY position 3 is not in the select list (1 to 1) (line 1, column 31)')
    expect(refused('SELECT region, count(*) FROM sales GROUP BY 0').construct).toBe('GROUP BY')
    expect(refused('SELECT sum(max(amount)) FROM sales').construct).toBe('nested aggregate')
    expect(refused('SELECT approx_quantile(amount, 2) FROM sales').message).toContain('quantile 2 is not between 0 and 1')
    expect(refused('SELECT approx_quantile(amount, qty) FROM sales').message).toContain('constant quantile')
    expect(refused('SELECT id FROM sales HAVING id > 1').construct).toBe('HAVING')
    expect(refused('SELECT a.id FROM sales').message).toContain("unknown table 'a'")
    expect(refused('SELECT id, region AS id FROM sales').message).toContain("two select items are named 'id'")
  })
})
