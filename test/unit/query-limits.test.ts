import { describe, expect, it } from 'vitest'
import { binary, checkPlanLimits, column, decodePlan, filter, inList, literal, MAX_PLAN_DEPTH, MAX_PLAN_NODES, PlanLimitError, scan, type Expr } from '../../src/query/model/index.js'
import { parseSql, SqlError } from '../../src/query/sql/index.js'

/** The plan limits every peer applies, checked without recursion (a plan too deep to recurse over is refused, not a stack overflow). */
describe('plan limits', () => {
  const chain = (n: number): Expr => {
    let e: Expr = binary('>', column('x'), literal(0))
    for (let i = 1; i < n; i++) e = binary('AND', e, binary('>', column('x'), literal(i)))
    return e
  }

  it('refuses a plan deeper than MAX_PLAN_DEPTH, however deep, naming the limit', () => {
    for (const n of [MAX_PLAN_DEPTH + 10, 100_000]) {
      const plan = filter(scan('t'), chain(n))
      expect(() => checkPlanLimits(plan)).toThrow(PlanLimitError)
      // As a data peer receives it (decoded data, not built by the factories).
      expect(() => decodePlan(n < 1000 ? JSON.parse(JSON.stringify(plan)) : plan)).toThrow(/deeper than 256 levels \(MAX_PLAN_DEPTH/)
    }
    expect(() => checkPlanLimits(filter(scan('t'), chain(200)))).not.toThrow()
  })

  it('refuses a plan of more than MAX_PLAN_NODES nodes', () => {
    const values = (n: number): Expr[] => Array.from({ length: n }, (_, i) => literal(i))
    const err = (() => { try { checkPlanLimits(filter(scan('t'), inList(column('x'), values(MAX_PLAN_NODES)))); return undefined } catch (e) { return e } })()
    expect(err).toBeInstanceOf(PlanLimitError)
    expect((err as PlanLimitError).limit).toBe('MAX_PLAN_NODES')
    expect(() => checkPlanLimits(filter(scan('t'), inList(column('x'), values(MAX_PLAN_NODES - 10))))).not.toThrow()
  })

  it('parses SQL too deep to convert into an SqlError, not a stack overflow', () => {
    for (const sql of [`SELECT ${Array.from({ length: 20_000 }, (_, i) => i).join(' + ')} FROM t`, `SELECT ${'('.repeat(20_000)}1${')'.repeat(20_000)} FROM t`]) {
      expect(() => parseSql(sql)).toThrow(SqlError)
      expect(() => parseSql(sql)).toThrow(/MAX_PLAN_DEPTH/)
    }
  })
})
