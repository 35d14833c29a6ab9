import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DuckDBInstance } from '@duckdb/node-api'
import type { DuckDBConnection } from '@duckdb/node-api'
import { batchFromRows, valueAt, vectorLength } from '../../src/columnar/index.js'
import type { ColumnBatch, ColumnVector, StrVector, ValueType } from '../../src/columnar/index.js'
import { EvalError, evalExpr, evalPredicate, exprType } from '../../src/query/exec/eval.js'
import { between, binary, call, caseWhen, column, float64Literal, inList, isNull, like, literal, negate, not } from '../../src/query/model/index.js'
import type { Expr, FilterNode, PlanNode, ProjectNode } from '../../src/query/model/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import { parseSchemaSpec } from '../../src/schema/index.js'
import type { SpaceDef } from '../../src/schema/index.js'

const SPEC = 'n:int64,s:utf8,t:utf8,x:float64,y:float64,i:int64,q:int32,b:bool,ts:timestamp,d:date,tags:list<utf8>,emb:vector<2>'
const space: SpaceDef = { name: 't', uid: 't-1', partitions: 1, replicas: 1, schema: parseSchemaSpec(SPEC) }
const COLUMNS = space.schema.map(c => ({ name: c.name, type: c.type as ValueType }))

type Row = Record<string, unknown>
const batchOf = (rows: Row[]): ColumnBatch => batchFromRows(rows, COLUMNS)
const values = (v: ColumnVector): unknown[] => Array.from({ length: vectorLength(v) }, (_, i) => valueAt(v, i))

/** A validated plan from SQL, so that every expression tested is one validation accepts. */
function validated (sql: string): PlanNode {
  const plan = parseSql(sql).plan
  const r = validatePlan(plan, space)
  if (!r.ok) throw new Error(`invalid test query ${sql}: ${r.errors.map(e => e.message).join('; ')}`)
  return plan
}
/** The expression of `SELECT <sql> AS v FROM t`. */
const sel = (sql: string): Expr => (validated(`SELECT ${sql} AS v FROM t`) as ProjectNode).items[0]!.expr
/** The predicate of `SELECT id FROM t WHERE <sql>`. */
const where = (sql: string): Expr => ((validated(`SELECT id FROM t WHERE ${sql}`) as ProjectNode).input as FilterNode).predicate

const ev = (sql: string, rows: Row[]): unknown[] => values(evalExpr(sel(sql), batchOf(rows)))
const rowsWhere = (sql: string, rows: Row[]): number[] => Array.from(evalPredicate(where(sql), batchOf(rows)))

const day = (iso: string): number => Date.parse(iso + 'T00:00:00Z') / 86_400_000
const ms = (iso: string): number => Date.parse(iso)

describe('evalExpr: arithmetic', () => {
  const rows: Row[] = [{ i: 7, q: 2, x: 1.5 }, { i: -7, q: -3, x: -0.5 }, { i: 0, q: 0, x: null }, { i: null, q: 5, x: 2 }]

  it('adds, subtracts, multiplies with integer and float result types', () => {
    const plus = evalExpr(sel('i + q'), batchOf(rows))
    expect(plus).toMatchObject({ tag: 'num', type: 'int64' })
    expect(values(plus)).toEqual([9, -10, 0, null])
    expect(values(evalExpr(sel('q + q'), batchOf(rows)))).toEqual([4, -6, 0, 10])
    expect(evalExpr(sel('q + q'), batchOf(rows)).type).toBe('int32')
    expect(evalExpr(sel('q * i'), batchOf(rows)).type).toBe('int64')
    expect(values(evalExpr(sel('i - x'), batchOf(rows)))).toEqual([5.5, -6.5, null, null])
    expect(evalExpr(sel('i - x'), batchOf(rows)).type).toBe('float64')
    expect(ev('x * 2', rows)).toEqual([3, -1, null, 4])
    expect(ev('10 - i', rows)).toEqual([3, 17, 10, null])
  })

  it('divides as floats: 7/2 = 3.5, x/0 is ±Infinity, 0/0 (NaN in DuckDB) is NULL', () => {
    const div = evalExpr(sel('i / q'), batchOf(rows))
    expect(div.type).toBe('float64')
    expect(values(div)).toEqual([3.5, -7 / -3, null, null])
    expect(ev('i / 0', rows)).toEqual([Infinity, -Infinity, null, null])
    expect(ev('1 / i', rows)).toEqual([1 / 7, -1 / 7, Infinity, null])
    expect(ev('7 / 2', [{}])).toEqual([3.5])
    expect(evalExpr(sel('q / q'), batchOf(rows)).type).toBe('float64')
  })

  it('takes the remainder with the sign of the dividend; % 0 is NULL', () => {
    expect(ev('i % 3', rows)).toEqual([1, -1, 0, null])
    expect(ev('i % -3', rows)).toEqual([1, -1, 0, null])
    expect(ev('7 % -3', [{}])).toEqual([1])
    expect(ev('i % q', rows)).toEqual([1, -1, null, null])
    expect(ev('x % 0', rows)).toEqual([null, null, null, null])
    expect(ev('x % 1', rows)).toEqual([0.5, -0.5, null, 0])
  })

  it('never gives an integer -0 (0 * -1, -6 % 3, -0)', () => {
    const r = [{ i: 0, q: -6 }]
    for (const sql of ['i * -1', 'q % 3', '-i', '0 * -1']) {
      const v = evalExpr(sel(sql), batchOf(r)) as { values: Float64Array }
      expect(Object.is(v.values[0], 0), sql).toBe(true)
    }
  })

  it('negates and propagates NULL literals with the validated type', () => {
    expect(ev('-x', rows)).toEqual([-1.5, 0.5, null, -2])
    expect(ev('-i', rows)).toEqual([-7, 7, 0, null])
    const n = evalExpr(binary('+', column('i'), literal(null)), batchOf(rows))
    expect(n).toMatchObject({ tag: 'num', type: 'int64' })
    expect(values(n)).toEqual([null, null, null, null])
    expect(values(evalExpr(negate(literal(null)), batchOf(rows)))).toEqual([null, null, null, null])
  })

  it('folds constant arithmetic into a vector of the batch length', () => {
    const v = evalExpr(sel('1 + 2 * 3'), batchOf(rows))
    expect(v).toMatchObject({ tag: 'num', type: 'int64' })
    expect(values(v)).toEqual([7, 7, 7, 7])
    expect(values(evalExpr(sel('2.5 * 2'), batchOf(rows)))).toEqual([5, 5, 5, 5])
  })
})

describe('evalExpr: comparisons and logic', () => {
  it('compares numbers with NULL giving NULL', () => {
    const rows = [{ x: 1, y: 2 }, { x: 2, y: 2 }, { x: 3, y: 2 }, { x: null, y: 2 }, { x: 1, y: null }]
    expect(ev('x = y', rows)).toEqual([false, true, false, null, null])
    expect(ev('x <> y', rows)).toEqual([true, false, true, null, null])
    expect(ev('x < y', rows)).toEqual([true, false, false, null, null])
    expect(ev('x <= y', rows)).toEqual([true, true, false, null, null])
    expect(ev('x > y', rows)).toEqual([false, false, true, null, null])
    expect(ev('x >= y', rows)).toEqual([false, true, true, null, null])
    expect(ev('x >= 2', rows)).toEqual([false, true, true, null, false])
    expect(ev('2 > x', rows)).toEqual([true, false, false, null, true])
    expect(ev('x = NULL', rows)).toEqual([null, null, null, null, null])
    expect(evalExpr(sel('x = y'), batchOf(rows))).toMatchObject({ tag: 'num', type: 'bool' })
  })

  it('compares strings in code point order, against constants and other string columns', () => {
    const rows = [{ s: 'apple', t: 'banana' }, { s: 'b', t: 'ab' }, { s: '\uffff', t: '😀' }, { s: 'B', t: 'a' }, { s: null, t: 'a' }, { s: 'é', t: 'z' }, { s: 'same', t: 'same' }]
    expect(ev('s < t', rows)).toEqual([true, false, true, true, null, false, false])
    expect(ev('s = t', rows)).toEqual([false, false, false, false, null, false, true])
    expect(ev("s >= 'b'", rows)).toEqual([false, true, true, false, null, true, true])
    expect(ev("'b' < s", rows)).toEqual([false, false, true, false, null, true, true])
    expect(ev("s <> 'apple'", rows)).toEqual([false, true, true, true, null, true, true])
  })

  it('compares a column with itself through one shared dictionary', () => {
    const rows = [{ s: 'a' }, { s: null }, { s: 'b' }]
    expect(values(evalExpr(binary('=', column('s'), column('s')), batchOf(rows)))).toEqual([true, null, true])
    expect(values(evalExpr(binary('<>', column('s'), column('s')), batchOf(rows)))).toEqual([false, null, false])
  })

  it('uses three-valued logic for AND, OR and NOT', () => {
    const tv = [true, false, null]
    const rows: Row[] = []
    for (const a of tv) for (const c of tv) rows.push({ b: a, x: c === null ? null : c ? 1 : 0 })
    const and = ev('b AND x = 1', rows)
    const or = ev('b OR x = 1', rows)
    const k = (v: boolean | null): string => String(v)
    const AND: Record<string, boolean | null> = { 'true,true': true, 'true,false': false, 'true,null': null, 'false,true': false, 'false,false': false, 'false,null': false, 'null,true': null, 'null,false': false, 'null,null': null }
    const OR: Record<string, boolean | null> = { 'true,true': true, 'true,false': true, 'true,null': true, 'false,true': true, 'false,false': false, 'false,null': null, 'null,true': true, 'null,false': null, 'null,null': null }
    let r = 0
    for (const a of tv) {
      for (const c of tv) {
        expect(and[r], `${k(a)} AND ${k(c)}`).toBe(AND[`${k(a)},${k(c)}`])
        expect(or[r], `${k(a)} OR ${k(c)}`).toBe(OR[`${k(a)},${k(c)}`])
        r++
      }
    }
    expect(ev('NOT b', [{ b: true }, { b: false }, { b: null }])).toEqual([false, true, null])
  })

  it('handles constant operands of AND/OR', () => {
    const rows = [{ b: true }, { b: false }, { b: null }]
    expect(ev('b AND NULL', rows)).toEqual([null, false, null])
    expect(ev('b OR NULL', rows)).toEqual([true, null, null])
    expect(ev('NULL AND b', rows)).toEqual([null, false, null])
    expect(ev('b AND TRUE', rows)).toEqual([true, false, null])
    expect(ev('b AND FALSE', rows)).toEqual([false, false, false])
    expect(ev('FALSE OR b', rows)).toEqual([true, false, null])
    expect(ev('TRUE OR b', rows)).toEqual([true, true, true])
    expect(ev('NOT NULL', rows)).toEqual([null, null, null])
  })

  it('drops FALSE and NULL rows in evalPredicate, returning ascending indexes', () => {
    const rows = [{ x: 5 }, { x: null }, { x: 1 }, { x: 7 }]
    const r = evalPredicate(where('x > 2'), batchOf(rows))
    expect(r).toBeInstanceOf(Uint32Array)
    expect(Array.from(r)).toEqual([0, 3])
    expect(rowsWhere('NOT (x > 2)', rows)).toEqual([2])
    expect(rowsWhere('TRUE', rows)).toEqual([0, 1, 2, 3])
    expect(rowsWhere('1 = 2', rows)).toEqual([])
    expect(rowsWhere('NULL', rows)).toEqual([])
    expect(Array.from(evalPredicate(where('x > 2'), batchOf([])))).toEqual([])
  })
})

describe('evalExpr: IN, BETWEEN, IS NULL', () => {
  it('IN and NOT IN with a NULL in the list give NULL when nothing matches', () => {
    const rows = [{ i: 1 }, { i: 3 }, { i: null }]
    expect(ev('i IN (1, 2)', rows)).toEqual([true, false, null])
    expect(ev('i IN (1, NULL)', rows)).toEqual([true, null, null])
    expect(ev('i NOT IN (1, 2)', rows)).toEqual([false, true, null])
    expect(ev('i NOT IN (1, NULL)', rows)).toEqual([false, null, null])
    expect(ev('1 IN (1, NULL)', rows)).toEqual([true, true, true])
    expect(ev('NULL IN (1, 2)', rows)).toEqual([null, null, null])
  })

  it('IN over a long list (a hash set), strings and floats', () => {
    const list = Array.from({ length: 20 }, (_, k) => k * 3).join(', ')
    expect(ev(`i IN (${list})`, [{ i: 0 }, { i: 57 }, { i: 58 }, { i: null }])).toEqual([true, true, false, null])
    expect(ev(`i NOT IN (${list}, NULL)`, [{ i: 0 }, { i: 58 }])).toEqual([false, null])
    const rows = [{ s: 'eu' }, { s: 'us' }, { s: 'apac' }, { s: null }]
    expect(ev("s IN ('eu', 'us')", rows)).toEqual([true, true, false, null])
    expect(ev("s NOT IN ('eu', NULL)", rows)).toEqual([false, null, null, null])
    expect(ev('x IN (1.5, 2)', [{ x: 1.5 }, { x: 2 }, { x: 3 }])).toEqual([true, true, false])
  })

  it('IN with non-constant values is an OR of equalities', () => {
    const rows = [{ i: 1, q: 1 }, { i: 2, q: 3 }, { i: 5, q: null }, { i: 4, q: null }, { i: null, q: 1 }]
    expect(ev('i IN (q, 5)', rows)).toEqual([true, false, true, null, null])
    expect(ev('i NOT IN (q, 5)', rows)).toEqual([false, true, false, null, null])
  })

  it('BETWEEN is low <= x AND x <= high, with NULL bounds as in SQL', () => {
    const rows = [{ x: 1 }, { x: 2 }, { x: 3 }, { x: 4 }, { x: null }]
    expect(ev('x BETWEEN 2 AND 3', rows)).toEqual([false, true, true, false, null])
    expect(ev('x NOT BETWEEN 2 AND 3', rows)).toEqual([true, false, false, true, null])
    expect(ev('x BETWEEN NULL AND 3', rows)).toEqual([null, null, null, false, null])
    expect(ev('x NOT BETWEEN NULL AND 3', rows)).toEqual([null, null, null, true, null])
    expect(ev('x BETWEEN 3 AND 2', rows)).toEqual([false, false, false, false, null])
    const cols = [{ x: 2, i: 1, q: 3 }, { x: 2, i: 3, q: 4 }, { x: 2, i: null, q: 1 }]
    expect(ev('x BETWEEN i AND q', cols)).toEqual([true, false, false])
    const strs = [{ s: 'b' }, { s: 'a' }, { s: 'c' }, { s: 'bz' }, { s: null }]
    expect(ev("s BETWEEN 'b' AND 'c'", strs)).toEqual([true, false, true, true, null])
    expect(ev("s NOT BETWEEN 'b' AND 'c'", strs)).toEqual([false, true, false, false, null])
  })

  it('IS [NOT] NULL is never NULL, for every kind of column', () => {
    const rows = [{ x: 1, s: 'a', tags: ['a'], emb: [1, 2] }, { x: null, s: null, tags: null, emb: null }]
    expect(ev('x IS NULL', rows)).toEqual([false, true])
    expect(ev('s IS NULL', rows)).toEqual([false, true])
    expect(ev('tags IS NULL', rows)).toEqual([false, true])
    expect(ev('emb IS NOT NULL', rows)).toEqual([true, false])
    expect(ev('NULL IS NULL', rows)).toEqual([true, true])
    expect(ev('x + NULL IS NOT NULL', rows)).toEqual([false, false])
  })
})

describe('evalExpr: LIKE and ILIKE', () => {
  const like1 = (s: string | null, pattern: string, opts: { escape?: string, ci?: boolean, negated?: boolean } = {}): unknown =>
    values(evalExpr(like(column('s'), literal(pattern), { escape: opts.escape ?? null, caseInsensitive: opts.ci ?? false, negated: opts.negated ?? false }), batchOf([{ s }])))[0]

  it('matches % (any run) and _ (one code point) anchored at both ends', () => {
    const rows = [{ s: 'apple' }, { s: 'banana' }, { s: 'grape' }, { s: null }, { s: '' }]
    expect(ev("s LIKE 'a%'", rows)).toEqual([true, false, false, null, false])
    expect(ev("s LIKE '%e'", rows)).toEqual([true, false, true, null, false])
    expect(ev("s LIKE '%an%'", rows)).toEqual([false, true, false, null, false])
    expect(ev("s LIKE '_pple'", rows)).toEqual([true, false, false, null, false])
    expect(ev("s LIKE 'b_n_n_'", rows)).toEqual([false, true, false, null, false])
    expect(ev("s LIKE '%'", rows)).toEqual([true, true, true, null, true])
    expect(ev("s LIKE ''", rows)).toEqual([false, false, false, null, true])
    expect(ev("s LIKE 'apple'", rows)).toEqual([true, false, false, null, false])
    expect(ev("s NOT LIKE 'a%'", rows)).toEqual([false, true, true, null, true])
    expect(ev("s LIKE 'g%p%e'", rows)).toEqual([false, false, true, null, false])
    expect(like1('😀', '_')).toBe(true)
    expect(like1('a\nb', 'a_b')).toBe(true)
    expect(like1('a\nb', 'a%')).toBe(true)
    expect(like1('apple', 'APPLE')).toBe(false)
  })

  it('treats regex metacharacters in the pattern as literal characters', () => {
    expect(like1('a.c', 'a.c')).toBe(true)
    expect(like1('abc', 'a.c')).toBe(false)
    expect(like1('a*', 'a*')).toBe(true)
    expect(like1('aaa', 'a*')).toBe(false)
    expect(like1('(x)', '(_)')).toBe(true)
    expect(like1('x', '[x]')).toBe(false)
    expect(like1('[x]', '[x]')).toBe(true)
    expect(like1('^$', '^$')).toBe(true)
    expect(like1('a+b?', '%+b?')).toBe(true)
    expect(like1('a{2}|b', 'a{2}|b')).toBe(true)
    expect(like1('aa', 'a{2}')).toBe(false)
    expect(like1('a\\b', 'a\\b')).toBe(true)
    expect(like1('a/b-c', 'a/b-c')).toBe(true)
  })

  it('has no escape character unless ESCAPE names one', () => {
    expect(like1('a%', 'a\\%')).toBe(false)
    expect(like1('a\\x', 'a\\%')).toBe(true)
    expect(like1('a%', 'a\\%', { escape: '\\' })).toBe(true)
    expect(like1('ab', 'a\\%', { escape: '\\' })).toBe(false)
    expect(like1('50%', '50!%', { escape: '!' })).toBe(true)
    expect(like1('500', '50!%', { escape: '!' })).toBe(false)
    expect(like1('a_', 'a!_', { escape: '!' })).toBe(true)
    expect(like1('ax', 'a!_', { escape: '!' })).toBe(false)
    expect(like1('a!b', 'a!!b', { escape: '!' })).toBe(true)
    expect(like1('ab', 'a!b', { escape: '!' })).toBe(true)
    expect(like1('x50% off', '%50!%%', { escape: '!' })).toBe(true)
    expect(ev("s LIKE '50!%%' ESCAPE '!'", [{ s: '50% off' }, { s: '500' }])).toEqual([true, false])
    expect(() => like1('a', 'a!', { escape: '!' })).toThrow(EvalError)
  })

  it('ILIKE compares lowered strings as DuckDB lowers them', () => {
    const rows = [{ s: 'Apple' }, { s: 'APPLE PIE' }, { s: 'Äpfel' }, { s: null }]
    expect(ev("s ILIKE 'apple%'", rows)).toEqual([true, true, false, null])
    expect(ev("s ILIKE 'ä%'", rows)).toEqual([false, false, true, null])
    expect(ev("s NOT ILIKE '%PIE'", rows)).toEqual([true, false, true, null])
    expect(like1('\u212A', 'k', { ci: true })).toBe(true) // Kelvin sign lowers to k
    expect(like1('\u017F', 's', { ci: true })).toBe(false) // ſ is already lower case
    expect(like1('A%', 'a^%', { escape: '^', ci: true })).toBe(true)
    expect(like1('AB', 'a^%', { escape: '^', ci: true })).toBe(false)
  })

  it('takes the pattern from a column, compiling each distinct pattern once', () => {
    const rows = [{ s: 'apple', t: 'a%' }, { s: 'apple', t: '%x%' }, { s: 'Pear', t: 'p%' }, { s: null, t: 'a%' }, { s: 'a', t: null }]
    expect(ev('s LIKE t', rows)).toEqual([true, false, false, null, null])
    expect(ev('s ILIKE t', rows)).toEqual([true, false, true, null, null])
    expect(ev("'apple' LIKE t", rows)).toEqual([true, false, false, true, null])
  })
})

describe('evalExpr: CASE and coalesce', () => {
  it('searched CASE takes the first TRUE branch; NULL conditions do not match', () => {
    const rows = [{ x: 5 }, { x: -2 }, { x: 0 }, { x: null }]
    expect(ev("CASE WHEN x > 0 THEN 'pos' WHEN x < 0 THEN 'neg' ELSE 'zero' END", rows)).toEqual(['pos', 'neg', 'zero', 'zero'])
    expect(ev("CASE WHEN x > 0 THEN 'pos' WHEN x < 0 THEN 'neg' END", rows)).toEqual(['pos', 'neg', null, null])
    expect(ev('CASE WHEN x > 0 THEN x WHEN x < 0 THEN 0 END', rows)).toEqual([5, 0, null, null])
    expect(ev('CASE WHEN x > 100 THEN 1 END', rows)).toEqual([null, null, null, null])
    expect(ev('CASE WHEN TRUE THEN x END', rows)).toEqual([5, -2, 0, null])
    expect(ev('CASE WHEN x >= 0 THEN x > 1 ELSE NULL END', rows)).toEqual([true, null, false, null])
  })

  it('simple CASE compares the operand with each WHEN; a NULL operand takes ELSE', () => {
    const rows = [{ s: 'a', i: 1 }, { s: 'b', i: 2 }, { s: 'c', i: 3 }, { s: null, i: 4 }]
    expect(ev("CASE s WHEN 'a' THEN i WHEN 'b' THEN i * 10 ELSE -1 END", rows)).toEqual([1, 20, -1, -1])
    expect(ev('CASE i WHEN 1 THEN s WHEN 3 THEN s || s END', rows)).toEqual(['a', null, 'cc', null])
    expect(ev('CASE NULL WHEN NULL THEN 1 ELSE 2 END', rows)).toEqual([2, 2, 2, 2])
  })

  it('unifies branch types: int64 and float64 give float64; strings from several dictionaries merge without duplicates', () => {
    const rows = [{ i: 1, x: 2.5, s: 'a', t: 'b' }, { i: 2, x: 3.5, s: 'b', t: 'a' }, { i: 3, x: null, s: 'c', t: 'a' }]
    const v = evalExpr(sel('CASE WHEN i = 1 THEN i ELSE x END'), batchOf(rows))
    expect(v.type).toBe('float64')
    expect(values(v)).toEqual([1, 3.5, null])
    const s = evalExpr(sel("CASE WHEN i = 1 THEN s WHEN i = 2 THEN t ELSE 'b' END"), batchOf(rows)) as StrVector
    expect(values(s)).toEqual(['a', 'a', 'b'])
    expect(new Set(s.dict).size).toBe(s.dict.length)
    expect(s.codes[0]).toBe(s.codes[1])
  })

  it('evaluates only the branches some row takes', () => {
    const rows = [{ x: 1, s: 'a' }, { x: 2, s: 'b' }]
    // The ELSE branch has an invalid LIKE pattern: only an error when some row reaches it.
    const ok = caseWhen([{ when: binary('>', column('x'), literal(0)), then: literal(true) }], like(column('s'), literal('a!'), { escape: '!' }))
    expect(values(evalExpr(ok, batchOf(rows)))).toEqual([true, true])
    expect(() => evalExpr(ok, batchOf([{ x: -1, s: 'a' }]))).toThrow(EvalError)
  })

  it('picks list and vector values row by row', () => {
    const rows = [{ x: 1, tags: ['a'], emb: [1, 2] }, { x: -1, tags: ['b', 'c'], emb: [3, 4] }, { x: null, tags: null, emb: null }]
    expect(ev('CASE WHEN x > 0 THEN tags END', rows)).toEqual([['a'], null, null])
    expect(ev('CASE WHEN x > 0 THEN emb END', rows)).toEqual([[1, 2], null, null])
    expect(ev('coalesce(emb, emb)', rows)).toEqual([[1, 2], [3, 4], null])
  })

  it('coalesce takes the first non-NULL argument', () => {
    const rows = [{ x: 1, y: 2, i: 3 }, { x: null, y: 2, i: 3 }, { x: null, y: null, i: 3 }, { x: null, y: null, i: null }]
    const v = evalExpr(sel('coalesce(x, y, i)'), batchOf(rows))
    expect(v.type).toBe('float64')
    expect(values(v)).toEqual([1, 2, 3, null])
    expect(ev('coalesce(x, 0)', rows)).toEqual([1, 0, 0, 0])
    expect(ev('coalesce(NULL, 7)', rows)).toEqual([7, 7, 7, 7])
    expect(ev('coalesce(NULL, x)', rows)).toEqual([1, null, null, null])
    expect(ev('coalesce(NULL)', rows)).toEqual([null, null, null, null])
    const s = [{ s: 'a', t: 'z' }, { s: null, t: 'y' }, { s: null, t: null }]
    expect(ev("coalesce(s, t, 'none')", s)).toEqual(['a', 'y', 'none'])
    expect(ev('coalesce(s, t)', s)).toEqual(['a', 'y', null])
  })
})

describe('evalExpr: scalar functions and ||', () => {
  it('lower/upper keep the codes and build a new dictionary; length counts code points', () => {
    const b = batchOf([{ s: 'Hello' }, { s: null }, { s: 'ÄÖÜ' }, { s: 'Hello' }, { s: '😀x' }])
    const src = b.columns.get('s') as StrVector
    const lo = evalExpr(call('lower', [column('s')]), b) as StrVector
    expect(values(lo)).toEqual(['hello', null, 'äöü', 'hello', '😀x'])
    expect(lo.codes).toEqual(src.codes)
    expect(lo.dict).not.toBe(src.dict)
    expect(values(evalExpr(call('upper', [column('s')]), b))).toEqual(['HELLO', null, 'ÄÖÜ', 'HELLO', '😀X'])
    expect(values(evalExpr(call('length', [column('s')]), b))).toEqual([5, null, 3, 5, 2])
    expect(evalExpr(call('length', [column('s')]), b).type).toBe('int64')
    expect(ev("length('e' || 'x')", [{}])).toEqual([2])
  })

  it('lower/upper merge entries that become equal, so grouping by code stays right', () => {
    const b = batchOf([{ s: 'A' }, { s: 'a' }, { s: 'B' }])
    const lo = evalExpr(call('lower', [column('s')]), b) as StrVector
    expect(values(lo)).toEqual(['a', 'a', 'b'])
    expect(lo.codes[0]).toBe(lo.codes[1])
    expect(new Set(lo.dict).size).toBe(lo.dict.length)
  })

  it('lower/upper map each code point on its own, as DuckDB (no final sigma, no expansion)', () => {
    const rows = [{ s: 'ΑΣ' }, { s: 'İ' }, { s: 'straße' }, { s: 'ŉ' }]
    expect(ev('lower(s)', rows)).toEqual(['ασ', 'i', 'straße', 'ŉ'])
    expect(ev('upper(s)', rows)).toEqual(['ΑΣ', 'İ', 'STRAẞE', 'ŉ'])
  })

  it('abs and round (halves away from zero; digits; integers with negative digits)', () => {
    const rows = [{ x: 2.5, i: 1250 }, { x: -2.5, i: -1250 }, { x: 2.675, i: 15 }, { x: -0.4, i: 5 }, { x: null, i: null }]
    expect(ev('abs(x)', rows)).toEqual([2.5, 2.5, 2.675, 0.4, null])
    expect(ev('abs(i)', rows)).toEqual([1250, 1250, 15, 5, null])
    expect(ev('round(x)', rows)).toEqual([3, -3, 3, -0, null])
    expect(ev('round(x, 1)', rows)).toEqual([2.5, -2.5, 2.7, -0.4, null])
    expect(ev('round(x, 2)', rows)).toEqual([2.5, -2.5, 2.68, -0.4, null]) // 2.675 * 100 rounds to 267.5 in doubles, as in DuckDB
    expect(ev('round(x, -1)', rows)).toEqual([0, -0, 0, -0, null])
    expect(ev('round(i, -2)', rows)).toEqual([1300, -1300, 0, 0, null])
    expect(ev('round(i, -1)', rows)).toEqual([1250, -1250, 20, 10, null])
    expect(ev('round(i, 2)', rows)).toEqual([1250, -1250, 15, 5, null])
    expect(ev('round(i, -30)', rows)).toEqual([0, 0, 0, 0, null])
    expect(ev('round(1.005, 2)', [{}])).toEqual([1])
    expect(ev('round(x, i)', [{ x: 1.25, i: 1 }, { x: 1.25, i: null }, { x: 1234.5, i: -2 }])).toEqual([1.3, null, 1200])
    expect(evalExpr(sel('round(q)'), batchOf([{ q: 3 }])).type).toBe('int32')
  })

  it('|| joins strings; NULL on either side is NULL', () => {
    const rows = [{ s: 'a', t: 'b' }, { s: 'a', t: null }, { s: null, t: 'b' }, { s: 'ab', t: '' }, { s: 'a', t: 'b' }]
    expect(ev('s || t', rows)).toEqual(['ab', null, null, 'ab', 'ab'])
    const v = evalExpr(sel('s || t'), batchOf(rows)) as StrVector
    expect(v.codes[0]).toBe(v.codes[3])
    expect(ev("s || '-'", rows)).toEqual(['a-', 'a-', null, 'ab-', 'a-'])
    expect(ev("'<' || s || '>'", rows)).toEqual(['<a>', '<a>', null, '<ab>', '<a>'])
    expect(ev("s || NULL", rows)).toEqual([null, null, null, null, null])
  })
})

describe('evalExpr: dictionary-encoded strings across batches', () => {
  it('gives the same answers whatever the dictionary order, size or unused entries', () => {
    const pred = where("s IN ('eu', 'us') AND lower(t) LIKE 'a%' AND s < 'v' AND length(t) > 1")
    const b1 = batchOf([{ s: 'eu', t: 'Ab' }, { s: 'us', t: 'ab' }, { s: 'apac', t: 'ax' }, { s: null, t: 'ab' }])
    const b2 = batchOf([{ s: 'us', t: 'B' }, { s: 'eu', t: 'ab' }, { s: 'eu', t: 'a' }])
    // A batch whose dictionary has entries no row uses, in another order.
    const b3: ColumnBatch = {
      length: 3,
      columns: new Map<string, ColumnVector>([
        ['s', { tag: 'str', type: 'utf8', codes: Int32Array.from([2, 0, -1]), dict: ['us', 'zz', 'eu', 'never'] }],
        ['t', { tag: 'str', type: 'utf8', codes: Int32Array.from([1, 1, 1]), dict: ['unused', 'AAA'] }]
      ])
    }
    expect(Array.from(evalPredicate(pred, b1))).toEqual([0, 1])
    expect(Array.from(evalPredicate(pred, b2))).toEqual([1])
    expect(Array.from(evalPredicate(pred, b3))).toEqual([0, 1])
    expect(values(evalExpr(sel("upper(s) || '!'"), b3))).toEqual(['EU!', 'US!', null])
  })

  it('never writes into the batch it reads', () => {
    const b = batchOf([{ s: 'B', x: 1, i: 2 }, { s: null, x: null, i: 3 }])
    const snap = [...b.columns].map(([k, v]) => [k, JSON.stringify(v)])
    for (const sql of ['lower(s)', 'x * 2', '-x', "CASE WHEN x > 0 THEN s ELSE 'z' END", 'coalesce(x, i)', 'round(x, 1)', "s || 'x'", 'abs(i)']) evalExpr(sel(sql), b)
    expect([...b.columns].map(([k, v]) => [k, JSON.stringify(v)])).toEqual(snap)
  })
})

describe('evalExpr: timestamps and dates', () => {
  const rows = [
    { ts: ms('2024-01-01T09:00:00Z'), d: day('2024-01-01'), s: '2024-01-01 09:00:00' },
    { ts: ms('2024-06-15T12:30:00.250Z'), d: day('2024-06-15'), s: 'not a date' },
    { ts: null, d: null, s: null }
  ]

  it('compares a timestamp with ISO strings parsed to ms', () => {
    expect(ev("ts > '2024-01-01'", rows)).toEqual([true, true, null])
    expect(ev("ts = '2024-01-01 09:00:00'", rows)).toEqual([true, false, null])
    expect(ev("ts = '2024-01-01T09:00:00Z'", rows)).toEqual([true, false, null])
    expect(ev("ts = '2024-06-15 12:30:00.25'", rows)).toEqual([false, true, null])
    expect(ev("ts < '2024-06-15T12:30:00.250001'", rows)).toEqual([true, true, null])
    expect(ev("ts = '2024-1-1 9:00'", rows)).toEqual([true, false, null])
    expect(ev("'2024-03-01' < ts", rows)).toEqual([false, true, null])
    expect(ev("ts BETWEEN '2024-01-01' AND '2024-02-01'", rows)).toEqual([true, false, null])
    expect(ev("ts IN ('2024-01-01 09:00:00', '2020-01-01')", rows)).toEqual([true, false, null])
    expect(ev("ts NOT IN ('2020-01-01', NULL)", rows)).toEqual([null, null, null])
    expect(ev(`ts > ${ms('2024-03-01T00:00:00Z')}`, rows)).toEqual([false, true, null])
    expect(ev("CASE ts WHEN '2024-01-01 09:00' THEN 'first' ELSE 'other' END", rows)).toEqual(['first', 'other', 'other'])
  })

  it('keeps the wall clock of an offset, as DuckDB casts to TIMESTAMP (like Postgres)', () => {
    expect(ev("ts = '2024-01-01 09:00:00+02'", rows)).toEqual([true, false, null])
    expect(ev("ts = '2024-01-01 09:00:00 UTC'", rows)).toEqual([true, false, null])
  })

  it('compares a date with strings cast to dates (the time part dropped) and with timestamps as ms', () => {
    expect(ev("d = '2024-01-01'", rows)).toEqual([true, false, null])
    expect(ev("d = '2024-01-01 10:00:00'", rows)).toEqual([true, false, null])
    expect(ev("d < '2024-03-01'", rows)).toEqual([true, false, null])
    expect(ev("d BETWEEN '2024-06-01' AND '2024-06-30'", rows)).toEqual([false, true, null])
    expect(ev('d < ts', rows)).toEqual([true, true, null])
    expect(ev('d = ts', [{ d: day('2024-01-01'), ts: ms('2024-01-01T00:00:00Z') }])).toEqual([true])
    expect(ev(`d >= ${day('2024-06-15')}`, rows)).toEqual([false, true, null])
  })

  it('handles dates before 1970 and year 0', () => {
    const old = [{ d: day('1969-12-31'), ts: Date.UTC(1900, 1, 28, 23, 59, 59) }]
    expect(ev("d = '1969-12-31'", old)).toEqual([true])
    expect(ev("ts = '1900-02-28 23:59:59'", old)).toEqual([true])
    expect(ev("d > '0000-01-01'", old)).toEqual([true])
  })

  it('refuses a string that is not a timestamp, but only when a row uses it', () => {
    expect(() => ev("ts > 'yesterday'", rows)).toThrow(EvalError)
    expect(() => ev("ts > '2024-02-30'", rows)).toThrow(EvalError)
    expect(() => ev("d = '2024-13-01'", rows)).toThrow(EvalError)
    expect(() => ev('ts = s', rows)).toThrow(/not a date/)
    expect(ev('ts = s', rows.slice(0, 1))).toEqual([true])
    const unused: ColumnBatch = {
      length: 1,
      columns: new Map<string, ColumnVector>([
        ['ts', { tag: 'num', type: 'timestamp', values: Float64Array.from([ms('2024-01-01T09:00:00Z')]) }],
        ['s', { tag: 'str', type: 'utf8', codes: Int32Array.from([1]), dict: ['garbage', '2024-01-01 09:00:00'] }]
      ])
    }
    expect(values(evalExpr(sel('ts = s'), unused))).toEqual([true])
  })
})

describe('exprType and errors', () => {
  const types = new Map(COLUMNS.map(c => [c.name, c.type]))
  const ty = (sql: string): ValueType => exprType(sel(sql), n => types.get(n))

  it('types every expression as validation does', () => {
    expect(ty('q + q')).toBe('int32')
    expect(ty('q + i')).toBe('int64')
    expect(ty('q / q')).toBe('float64')
    expect(ty('i * x')).toBe('float64')
    expect(ty('-q')).toBe('int32')
    expect(ty('x > 1 AND b')).toBe('bool')
    expect(ty("s || 'x'")).toBe('utf8')
    expect(ty('length(s)')).toBe('int64')
    expect(ty('round(q, -1)')).toBe('int32')
    expect(ty('coalesce(q, i)')).toBe('int64')
    expect(ty('coalesce(NULL, x)')).toBe('float64')
    expect(ty('CASE WHEN b THEN q ELSE x END')).toBe('float64')
    expect(ty('CASE WHEN b THEN NULL END')).toBe('null')
    expect(ty("ts > '2024-01-01'")).toBe('bool')
    expect(ty('CASE WHEN b THEN tags END')).toBe('list<utf8>')
    expect(exprType(literal(null), () => undefined)).toBe('null')
    expect(exprType(float64Literal(1), () => undefined)).toBe('float64')
  })

  it('rejects what validation rejects', () => {
    const t = (n: string): ValueType | undefined => types.get(n)
    expect(() => exprType(column('nope'), t)).toThrow(/unknown column 'nope'/)
    expect(() => exprType(binary('+', column('s'), literal(1)), t)).toThrow(EvalError)
    expect(() => exprType(binary('=', column('s'), literal(1)), t)).toThrow(EvalError)
    expect(() => exprType(call('nope', []), t)).toThrow(/unknown function/)
    expect(() => exprType(caseWhen([{ when: column('b'), then: column('s') }], column('x')), t)).toThrow(EvalError)
    expect(() => exprType(not(column('x')), t)).toThrow(EvalError)
  })

  it('reports a column missing from the batch', () => {
    expect(() => evalExpr(column('nope'), batchOf([{}]))).toThrow(/no column 'nope'/)
    expect(() => evalPredicate(binary('>', column('nope'), literal(1)), batchOf([{}]))).toThrow(Error)
  })

  it('returns a bare column as it is and a literal as a full vector', () => {
    const b = batchOf([{ x: 1 }, { x: 2 }])
    expect(evalExpr(column('x'), b)).toBe(b.columns.get('x'))
    expect(values(evalExpr(literal('k'), b))).toEqual(['k', 'k'])
    expect(values(evalExpr(literal(null), b))).toEqual([null, null])
    expect(values(evalExpr(literal(true), b))).toEqual([true, true])
    expect(values(evalExpr(inList(column('x'), []), b))).toEqual([false, false])
    expect(values(evalExpr(isNull(literal(null), true), b))).toEqual([false, false])
    expect(values(evalExpr(between(literal(2), column('x'), literal(3)), b))).toEqual([true, true])
  })
})

// ---------------------------------------------------------------------------------------------
// Differential check against DuckDB

describe('evalExpr against DuckDB', () => {
  const N = 200
  let seed = 12345
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!
  const maybe = <T>(v: T): T | null => rnd() < 0.15 ? null : v
  const S = ['apple', 'Banana', 'cherry', 'date', 'É', 'a%b', 'a_b', '', 'APPLE pie', 'zebra', '😀', '\uffff']
  const rows: Row[] = []
  for (let r = 0; r < N; r++) {
    rows.push({
      n: r,
      s: maybe(pick(S)),
      t: maybe(pick(S)),
      x: maybe(Math.round((rnd() - 0.5) * 20000) / 100),
      y: maybe(Math.round((rnd() - 0.5) * 200) / 8),
      i: maybe(Math.floor((rnd() - 0.5) * 40)),
      q: maybe(Math.floor((rnd() - 0.5) * 10)),
      b: maybe(rnd() < 0.5),
      ts: maybe(Date.UTC(2023, 0, 1) + Math.floor(rnd() * 3 * 365 * 86_400) * 1000),
      d: maybe(day('2023-01-01') + Math.floor(rnd() * 3 * 365))
    })
  }
  let conn: DuckDBConnection
  let instance: DuckDBInstance

  beforeAll(async () => {
    instance = await DuckDBInstance.create(':memory:')
    conn = await instance.connect()
    await conn.run('CREATE TABLE t (n BIGINT, s VARCHAR, t VARCHAR, x DOUBLE, y DOUBLE, i BIGINT, q INTEGER, b BOOLEAN, ts TIMESTAMP, d DATE)')
    const lit = (v: unknown, kind: string): string => {
      if (v === null) return 'NULL'
      switch (kind) {
        case 'str': return `'${String(v).replace(/'/g, "''")}'`
        case 'dbl': return `'${String(v)}'::DOUBLE`
        case 'ts': return `epoch_ms(${String(v)})`
        case 'date': return `DATE '1970-01-01' + ${String(v)}`
        default: return String(v)
      }
    }
    const tuples = rows.map(r => `(${[lit(r.n, 'n'), lit(r.s, 'str'), lit(r.t, 'str'), lit(r.x, 'dbl'), lit(r.y, 'dbl'), lit(r.i, 'n'), lit(r.q, 'n'), lit(r.b, 'n'), lit(r.ts, 'ts'), lit(r.d, 'date')].join(', ')})`)
    await conn.run(`INSERT INTO t VALUES ${tuples.join(',\n')}`)
  })

  afterAll(() => {
    conn?.closeSync()
    instance?.closeSync()
  })

  /** Three batches with their own dictionaries, as storage would hand them over. */
  const batches = [rows.slice(0, 70), rows.slice(70, 71), rows.slice(71)].map(batchOf)

  const mine = (sql: string): unknown[] => batches.flatMap(b => values(evalExpr(sel(sql), b)))
  const duck = async (sql: string): Promise<unknown[]> => {
    const res = await conn.runAndReadAll(`SELECT ${sql} AS v FROM t ORDER BY n`)
    return res.getRowObjectsJson().map(r => r.v)
  }
  const same = (a: unknown, b: unknown): boolean => {
    // DuckDB's NaN (0/0) is NULL in the columnar format.
    if (b === 'NaN') b = null
    if (a === null || b === null) return a === b
    if (typeof a === 'number') {
      const x = typeof b === 'number' ? b : Number(b)
      if (a === x) return true
      return Math.abs(a - x) <= 1e-9 * Math.max(Math.abs(a), Math.abs(x))
    }
    return a === b
  }

  const SELECTS = [
    'x + y * 2 - i',
    'i / q',
    'i % 7',
    'q % i',
    'x % 3',
    '-x * q',
    'abs(i) + abs(x)',
    'round(x, 1)',
    'round(x)',
    'round(i, -1)',
    "lower(s) || '-' || upper(t)",
    'length(s)',
    "CASE WHEN x > 0 THEN 'pos' WHEN x < 0 THEN 'neg' END",
    "CASE s WHEN 'apple' THEN i WHEN 'cherry' THEN x ELSE q END",
    'coalesce(x, y, i)',
    "coalesce(s, t, 'none')",
    'x > y',
    's < t',
    's = t',
    'b AND x > 0',
    'b OR i > 5',
    'NOT b',
    "s LIKE 'a%'",
    "s ILIKE '%A%'",
    "s LIKE '%!%%' ESCAPE '!'",
    "s LIKE '_'",
    's LIKE t',
    "ts > '2024-06-01'",
    "d BETWEEN '2023-06-01' AND '2024-06-30 12:00:00'",
    'd < ts',
    "s IN ('apple', 'date', NULL)",
    'i NOT IN (1, 2, 3)',
    'i IN (q, 5)',
    'x IS NULL OR s IS NOT NULL',
    'x BETWEEN y AND i',
    'q NOT BETWEEN -2 AND 2'
  ]

  it.each(SELECTS)('SELECT %s', async sql => {
    const got = mine(sql)
    const want = await duck(sql)
    expect(got.length).toBe(N)
    const diff = got.map((g, r) => ({ r, g, w: want[r] })).filter(({ g, w }) => !same(g, w))
    expect(diff.slice(0, 5)).toEqual([])
  })

  const WHERES = [
    "x > 10 AND s <> 'apple'",
    'b OR (i BETWEEN -3 AND 3 AND q IS NOT NULL)',
    "NOT (s IN ('apple', 'Banana'))",
    "lower(s) LIKE 'a%' OR t ILIKE '%E%'",
    'coalesce(x, 0) + coalesce(y, 0) > i',
    "ts BETWEEN '2023-03-01' AND '2024-03-01 12:00' AND d >= '2023-06-01'",
    'CASE WHEN q > 0 THEN x > 0 ELSE y < 0 END',
    'i % 3 = 0 AND i / 2 > 1',
    "length(s || coalesce(t, '')) > 6",
    'abs(round(x, -1)) >= 50',
    'q NOT IN (0, 1) OR q IN (2, NULL)',
    "s >= 'a' AND s < 'd'"
  ]

  it.each(WHERES)('WHERE %s', async sql => {
    const got = batches.flatMap((b, k) => Array.from(evalPredicate(where(sql), b)).map(r => (k === 0 ? 0 : k === 1 ? 70 : 71) + r))
    const res = await conn.runAndReadAll(`SELECT n FROM t WHERE ${sql} ORDER BY n`)
    const want = res.getRowObjectsJson().map(r => Number(r.n))
    expect(got).toEqual(want)
    expect(want.length).toBeGreaterThan(0)
  })
})
