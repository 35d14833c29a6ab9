/**
 * The generated aggregation loop (src/query/exec/kernel.ts): WHERE tests, group lookup and
 * fused aggregates in one pass. Random data and random AND chains of simple WHERE terms over
 * every key shape it serves, checked against a JS reference; the same queries with a term it
 * cannot inline (an OR) or an aggregate it cannot fuse take the general path and must agree.
 */
import { describe, expect, it } from 'vitest'
import { GroupTable, runFragment } from '../../src/query/exec/index.js'
import { rowTests } from '../../src/query/exec/select.js'
import { binary, column, literal } from '../../src/query/model/index.js'
import {
  batchOf, canonical, columnType, diffValue, intIn, jsGroups, pick, prepare, randomPartitions, randomRows, rng, runLocal, sourceOf, T0, type Row
} from './query-exec-helpers.js'

const DAY = 86_400_000

/** A WHERE term as SQL and as the JS test of a row (NULL fails, as in SQL). */
interface Term { sql: string, test: (row: Row) => boolean }

const val = (row: Row, c: string): unknown => row[c] ?? null
const num = (row: Row, c: string): number | null => { const v = val(row, c); return v === null ? null : v as number }
const str = (row: Row, c: string): string | null => { const v = val(row, c); return v === null ? null : v as string }

const OPS: Record<string, (a: number | string, b: number | string) => boolean> = {
  '=': (a, b) => a === b, '<>': (a, b) => a !== b, '<': (a, b) => a < b, '<=': (a, b) => a <= b, '>': (a, b) => a > b, '>=': (a, b) => a >= b
}

function randomTerm (r: () => number): Term {
  const op = pick(r, Object.keys(OPS))
  const holds = OPS[op]!
  switch (intIn(r, 0, 8)) {
    case 0: { const k = intIn(r, -3, 18); return { sql: `i ${op} ${k}`, test: row => { const v = num(row, 'i'); return v !== null && holds(v, k) } } }
    case 1: { const k = pick(r, [0, -12.5, 40, 125.25]); return { sql: `x ${op} ${k}`, test: row => { const v = num(row, 'x'); return v !== null && holds(v, k) } } }
    // The constant on the left: the test flips the operator.
    case 2: { const k = intIn(r, 0, 15); return { sql: `${k} ${op} i`, test: row => { const v = num(row, 'i'); return v !== null && holds(k, v) } } }
    case 3: { const k = pick(r, ['a', 'b', 'dd', 'E', '']); return { sql: `s ${op} '${k}'`, test: row => { const v = str(row, 's'); return v !== null && holds(v, k) } } }
    case 4: { const lo = intIn(r, -5, 10); const hi = lo + intIn(r, 0, 10); return { sql: `i BETWEEN ${lo} AND ${hi}`, test: row => { const v = num(row, 'i'); return v !== null && v >= lo && v <= hi } } }
    case 5: { const ks = [intIn(r, -5, 20), intIn(r, -5, 20), intIn(r, -5, 20)]; return { sql: `i IN (${ks.join(', ')})`, test: row => { const v = num(row, 'i'); return v !== null && ks.includes(v) } } }
    case 6: { const ks = ['x', pick(r, ['y', 'z'])]; return { sql: `s2 IN ('${ks.join("', '")}')`, test: row => { const v = str(row, 's2'); return v !== null && ks.includes(v) } } }
    case 7: { const day = intIn(r, 0, 89); const t = T0 + day * DAY; const lit = new Date(t).toISOString().slice(0, 10); return { sql: `ts ${op} '${lit}'`, test: row => { const v = num(row, 'ts'); return v !== null && holds(v, t) } } }
    default: { const k = 19_700 + intIn(r, 0, 60); return { sql: `d ${op} ${k}`, test: row => { const v = num(row, 'd'); return v !== null && holds(v, k) } } }
  }
}

/** Aggregates the loop fuses, with their JS meaning. */
const FUSED: Array<{ sql: string, alias: string, js: (rows: readonly Row[]) => unknown }> = [
  { sql: 'count(*)', alias: 'n', js: rows => rows.length },
  { sql: 'count(x)', alias: 'cx', js: rows => rows.filter(r => val(r, 'x') !== null).length },
  { sql: 'count(s)', alias: 'cs', js: rows => rows.filter(r => val(r, 's') !== null).length },
  { sql: 'sum(x)', alias: 'sx', js: rows => { const v = rows.map(r => num(r, 'x')).filter(x => x !== null); return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) } },
  { sql: 'avg(i)', alias: 'ai', js: rows => { const v = rows.map(r => num(r, 'i')).filter(x => x !== null); return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length } },
  { sql: 'min(x)', alias: 'mnx', js: rows => { const v = rows.map(r => num(r, 'x')).filter(x => x !== null); return v.length === 0 ? null : Math.min(...v) } },
  { sql: 'max(big)', alias: 'mxb', js: rows => { const v = rows.map(r => num(r, 'big')).filter(x => x !== null); return v.length === 0 ? null : Math.max(...v) } }
]

/** Key sets: none, a string, small integers (negative ones too), floats, dates, two keys of each mix. */
const KEY_SETS: string[][] = [[], ['s'], ['i'], ['x'], ['d'], ['s', 'i'], ['i', 's2'], ['x', 's'], ['b', 'd']]

function reference (rows: readonly Row[], keys: readonly string[], aggs: typeof FUSED): Row[] {
  return jsGroups(rows, keys, g => Object.fromEntries(aggs.map(a => [a.alias, a.js(g)])))
}

function expectRows (actual: readonly Row[], expected: readonly Row[], keys: readonly string[], what: string): void {
  const d = diffValue(canonical(actual, keys), canonical(expected, keys), 1e-9, what)
  if (d !== null) expect.fail(d)
}

describe('the generated aggregation loop', () => {
  for (const keys of KEY_SETS) {
    it(`WHERE chains of simple terms, GROUP BY ${keys.length === 0 ? 'nothing' : keys.join(', ')}: as the JS reference, and as the general path`, async () => {
      for (let seed = 1; seed <= 25; seed++) {
        const r = rng(seed * 7919 + keys.length * 31 + (keys[0]?.charCodeAt(0) ?? 0))
        const rows = randomRows(r, intIn(r, 0, 600))
        const parts = randomPartitions(r, rows)
        const terms = Array.from({ length: intIn(r, 1, 3) }, () => randomTerm(r))
        const aggs = FUSED.filter(() => r() < 0.6)
        if (aggs.length === 0) aggs.push(FUSED[0]!)
        const where = terms.map(t => t.sql).join(' AND ')
        const select = [...keys, ...aggs.map(a => `${a.sql} AS ${a.alias}`)].join(', ')
        const groupBy = keys.length === 0 ? '' : ` GROUP BY ${keys.join(', ')}`
        const matching = rows.filter(row => terms.every(t => t.test(row)))
        const want = reference(matching, keys, aggs)
        const what = `seed ${seed}: WHERE ${where}`
        const inline = await runLocal(`SELECT ${select} FROM t WHERE ${where}${groupBy}`, parts)
        expectRows(inline.rows, want, keys, what)
        // An OR the loop cannot test (always true here: i is NULL or in -5..20): rows selected
        // first, then the loop over the selection.
        const viaSelection = await runLocal(`SELECT ${select} FROM t WHERE (${where}) AND (i IS NULL OR i > -100)${groupBy}`, parts)
        expectRows(viaSelection.rows, want, keys, `${what} (selection)`)
        // An aggregate that does not fuse: group ids first, accumulators each in their pass.
        const general = await runLocal(`SELECT ${select}, count(DISTINCT s2) AS dd FROM t WHERE ${where}${groupBy}`, parts)
        expectRows(general.rows.map(row => { const { dd, ...rest } = row; return rest }), want, keys, `${what} (general path)`)
      }
    })
  }

  it('counts the rows matched as the WHERE clause does', async () => {
    const r = rng(5)
    const rows = randomRows(r, 3000)
    const p = prepare('SELECT s, count(*) AS n FROM t WHERE i >= 3 AND s2 <> \'y\' GROUP BY s')
    const res = await runFragment(p.split.fragment, { source: sourceOf([batchOf(rows.slice(0, 1000)), batchOf(rows.slice(1000))]), columnType })
    expect(res.stats.rowsScanned).toBe(3000)
    expect(res.stats.rowsMatched).toBe(rows.filter(row => num(row, 'i') !== null && num(row, 'i')! >= 3 && str(row, 's2') !== null && str(row, 's2') !== 'y').length)
  })

  it('a WHERE that outgrows the dense two-key table mid-batch finishes the batch by hashing, each row counted once', async () => {
    // The second batch goes from a few pairs to 3,000 × 3,000 possible ones (past 2^22 cells).
    const rows: Row[] = []
    for (let i = 0; i < 2000; i++) rows.push({ id: `a${i}`, s: `k${i % 5}`, i: i % 7, x: i % 3 })
    for (let i = 0; i < 30000; i++) rows.push({ id: `b${i}`, s: `k${(i * 7) % 3000}`, i: (i * 13) % 3000, x: i % 3 })
    const batches = [batchOf(rows.slice(0, 2000)), batchOf(rows.slice(2000))]
    const got = await runLocal('SELECT s, i, count(*) AS n, sum(x) AS sx FROM t WHERE x <> 1 GROUP BY s, i', [batches])
    expectRows(got.rows, reference(rows.filter(row => row.x !== 1), ['s', 'i'], [FUSED[0]!, FUSED[3]!]), ['s', 'i'], 'dense hand-over')
  })

  it('addRowsWhere declines what it cannot run in one loop', () => {
    const b = batchOf(randomRows(rng(9), 50))
    const tests = rowTests(binary('>', column('i'), literal(3)), b)!
    expect(tests).toHaveLength(1)
    const s = b.columns.get('s')!
    // Three keys: declined (-1), nothing added.
    const three = new GroupTable(['utf8', 'utf8', 'int32'], [], undefined)
    expect(three.addRowsWhere([s, b.columns.get('s2')!, b.columns.get('i')!], [], b.length, tests)).toBe(-1)
    expect(three.size).toBe(0)
    // An OR is not a chain of row tests.
    expect(rowTests(binary('OR', binary('>', column('i'), literal(3)), binary('<', column('x'), literal(0))), b)).toBeUndefined()
  })
})
