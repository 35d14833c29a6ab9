import { pack, unpack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import {
  aggregate, aggSpec, and, between, binary, call, caseWhen, children, collect, column, decodePlan, filter, inList, int64Literal, isNull, like,
  limit, literal, literalValue, negate, not, planEquals, printExpr, printPlan, project, scan, sort, sortKey, spread, topK, transform, walk,
  PlanDecodeError
} from '../../src/query/model/index.js'
import type { Expr, PlanNode, QueryNode } from '../../src/query/model/index.js'
import { parseJsonQuery } from '../../src/query/json/index.js'
import { parseSql } from '../../src/query/sql/index.js'

const where = and([
  binary('>', column('amount'), literal(10)),
  inList(column('region'), [literal('eu'), literal('us')]),
  not(isNull(column('ts')))
])!

const plan = project(
  limit(sort(filter(scan('sales'), where), [sortKey(column('amount'), 'desc'), sortKey(column('region'), 'asc', 'first')]), 10, 20),
  [{ expr: column('region'), alias: 'region' }, { expr: binary('*', column('amount'), literal(2)), alias: 'double' }]
)

describe('query model', () => {
  it('builds frozen nodes that cannot be changed after construction', () => {
    expect(Object.isFrozen(plan)).toBe(true)
    expect(Object.isFrozen(plan.items)).toBe(true)
    expect(() => { (plan as { kind: string }).kind = 'Scan' }).toThrow(TypeError)
  })

  it('printPlan() shows the tree root first, one node per line, indented by depth', () => {
    expect(printPlan(plan)).toBe([
      'Project region, amount * 2 AS double',
      '  Limit 10 offset 20',
      '    Sort amount DESC, region ASC NULLS FIRST',
      '      Filter amount > 10 AND region IN (\'eu\', \'us\') AND NOT (ts IS NULL)',
      '        Scan sales'
    ].join('\n'))
  })

  it('printPlan() shows top-K, spread and JSON aggregation trees', () => {
    const k = topK(filter(scan('notes'), binary('=', column('kind'), literal('fact'))), { column: 'embedding', vector: [0.5, 1, -2], metric: 'dot', k: 3 })
    expect(printPlan(k)).toBe("TopK 3 by dot(embedding, [0.5, 1, -2])\n  Filter kind = 'fact'\n    Scan notes")
    expect(printPlan(spread({ space: 'notes', seeds: ['a', 'b'], linksColumn: 'links', decay: 0.7, maxHops: 2, limit: 5 })))
      .toBe("Spread notes from ['a', 'b'] via links decay 0.7 maxHops 2 limit 5")
    const a = aggregate(scan('sales'), [], [], [aggSpec({ name: 'by', type: 'terms', field: 'region', params: { size: 3 }, aggs: [aggSpec({ name: 'm', type: 'max', field: 'amount' })] })])
    expect(printPlan(a)).toBe('Aggregate aggs\n  - by: terms(region) {"size":3}\n    - m: max(amount)\n  Scan sales')
  })

  it('printExpr() adds parentheses only where binding needs them', () => {
    const a = column('a'); const b = column('b'); const c = column('c')
    expect(printExpr(binary('*', binary('+', a, b), c))).toBe('(a + b) * c')
    expect(printExpr(binary('+', a, binary('*', b, c)))).toBe('a + b * c')
    expect(printExpr(binary('-', a, binary('-', b, c)))).toBe('a - (b - c)')
    expect(printExpr(binary('AND', binary('OR', a, b), c))).toBe('(a OR b) AND c')
    expect(printExpr(negate(binary('+', a, b)))).toBe('-(a + b)')
    expect(printExpr(between(a, literal(1), literal(2.5), true))).toBe('a NOT BETWEEN 1 AND 2.5')
    expect(printExpr(like(column('Name'), literal("it's%"), { escape: '!', caseInsensitive: true, negated: true }))).toBe('"Name" NOT ILIKE \'it\'\'s%\' ESCAPE \'!\'')
    expect(printExpr(caseWhen([{ when: binary('>', a, literal(0)), then: literal('pos') }], literal(null)))).toBe("CASE WHEN a > 0 THEN 'pos' ELSE NULL END")
    expect(printExpr(call('count', []))).toBe('count(*)')
    expect(printExpr(call('COUNT', [a], true))).toBe('count(DISTINCT a)')
    expect(printExpr(column('select'))).toBe('"select"')
  })

  it('printExpr() output parses back to the same expression', () => {
    const exprs: Expr[] = [
      where,
      binary('-', column('a'), binary('-', column('b'), literal(1.5))),
      like(column('s'), literal('a\\%%'), { escape: '\\' }),
      between(column('a'), negate(column('b')), literal(3)),
      caseWhen([{ when: literal(1), then: literal('x') }], literal('y'), column('a')),
      binary('OR', not(inList(column('a'), [literal(1), literal(2)], true)), isNull(column('b'), true)),
      binary('=', column('big'), int64Literal('9223372036854775807'))
    ]
    for (const e of exprs) {
      const back = parseSql(`SELECT x FROM t WHERE ${printExpr(e)}`).plan
      expect(back.kind === 'Project' && back.input.kind === 'Filter' && planEquals(back.input.predicate, e)).toBe(true)
    }
  })

  it('keeps int64 literals exact as decimal strings', () => {
    const big = int64Literal(2n ** 62n)
    expect(big).toEqual({ kind: 'Literal', type: 'int64', value: '4611686018427387904' })
    expect(literalValue(big)).toBe(2n ** 62n)
    expect(literalValue(literal(42))).toBe(42)
    expect(literal(1.25)).toEqual({ kind: 'Literal', type: 'float64', value: 1.25 })
    expect(() => int64Literal(2n ** 63n)).toThrow('int64 range')
  })

  it('walk() visits parents before children, inputs before expressions', () => {
    const kinds: string[] = []
    walk(plan, (n, depth) => { kinds.push(`${depth}:${n.kind}`) })
    expect(kinds.slice(0, 5)).toEqual(['0:Project', '1:Limit', '2:Sort', '3:Filter', '4:Scan'])
    expect(collect(plan, (n): n is QueryNode & { kind: 'Column' } => n.kind === 'Column').map(c => c.name)).toEqual(['amount', 'region', 'ts', 'amount', 'region', 'region', 'amount'])
    expect(children(plan.input).map(n => n.kind)).toEqual(['Sort'])
  })

  it('walk() skips the children of a node when the visitor returns false', () => {
    const seen: string[] = []
    walk(plan, n => { seen.push(n.kind); return n.kind !== 'Filter' })
    expect(seen).not.toContain('Scan')
    expect(seen).toContain('Filter')
  })

  it('transform() rewrites bottom-up and shares the subtrees it does not change', () => {
    const renamed = transform(plan, n => n.kind === 'Column' && n.name === 'amount' ? column('total') : undefined)
    expect(printPlan(renamed)).toContain('Filter total > 10')
    expect(printPlan(renamed)).toContain('Sort total DESC')
    const scanOf = (p: PlanNode): PlanNode => 'input' in p ? scanOf(p.input) : p
    const scanNode = scanOf(plan)
    const scanAfter = scanOf(renamed)
    expect(scanAfter).toBe(scanNode)
    expect(transform(plan, () => undefined)).toBe(plan)
    expect(Object.isFrozen(renamed)).toBe(true)
  })

  it('transform() can replace plan nodes, e.g. pushing a limit into the scan', () => {
    const out = transform(plan, n => n.kind === 'Scan' ? scan(n.space, ['region', 'amount', 'ts']) : undefined)
    expect(printPlan(out).split('\n').at(-1)).toBe('        Scan sales [region, amount, ts]')
  })

  it('planEquals() compares structure, not identity or key order', () => {
    const again = project(
      limit(sort(filter(scan('sales'), and([binary('>', column('amount'), literal(10)), inList(column('region'), [literal('eu'), literal('us')]), not(isNull(column('ts')))])!), [sortKey(column('amount'), 'desc'), sortKey(column('region'), 'asc', 'first')]), 10, 20),
      [{ expr: column('region'), alias: 'region' }, { expr: binary('*', column('amount'), literal(2)), alias: 'double' }]
    )
    expect(again).not.toBe(plan)
    expect(planEquals(again, plan)).toBe(true)
    expect(planEquals(limit(scan('sales'), 10, 20), limit(scan('sales'), 10, 0))).toBe(false)
    expect(planEquals(literal(1), literal(1.5))).toBe(false)
    expect(planEquals({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true)
  })

  it('plans survive msgpackr and JSON encode/decode unchanged', () => {
    const fromSql = parseSql("SELECT region, count(DISTINCT country) AS c, approx_quantile(amount, 0.5) FROM sales WHERE big = 9223372036854775807 OR region LIKE 'e!%%' ESCAPE '!' GROUP BY region HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 3").plan
    const fromJson = parseJsonQuery({ space: 'sales', filter: { range: { amount: { gte: 1, lte: 2 } } }, aggs: { r: { terms: { field: 'region' }, aggs: { p: { percentiles: { field: 'amount', percents: [50] } } } } } }).plan
    const recall = topK(scan('notes'), { column: 'embedding', vector: [0.25, -1, 3.5], k: 5 })
    for (const p of [plan, fromSql, fromJson, recall, spread({ space: 'notes', seeds: ['x'], linksColumn: 'links' })]) {
      const viaMsgpack = decodePlan(unpack(pack(p)))
      const viaJson = decodePlan(JSON.parse(JSON.stringify(p)))
      expect(planEquals(viaMsgpack, p)).toBe(true)
      expect(planEquals(viaJson, p)).toBe(true)
      expect(printPlan(viaMsgpack)).toBe(printPlan(p))
      expect(Object.isFrozen(viaMsgpack)).toBe(true)
    }
  })

  it('decodePlan() refuses data that is not a plan', () => {
    expect(() => decodePlan({ kind: 'Drop', space: 'x' })).toThrow(PlanDecodeError)
    expect(() => decodePlan({ kind: 'Filter', input: { kind: 'Scan', space: 's', columns: null }, predicate: { kind: 'Eval', code: 'x' } })).toThrow('plan.predicate: unknown node kind "Eval"')
    expect(() => decodePlan(literal(1))).toThrow('not a plan node')
  })
})
