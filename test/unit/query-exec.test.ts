import { describe, expect, it } from 'vitest'
import { tableFromIPC } from 'apache-arrow'
import { batchFromRows, gatherBatch, type ColumnBatch, type ValueType } from '../../src/columnar/index.js'
import {
  GroupTable, MemoryBudget, QueryExecError, QueryMerger, arrowStream, batchBytes, decodeBatch, encodeBatch, fragmentShape, runFragment, sliceBatch,
  type FragmentOutput, type OutputColumn
} from '../../src/query/exec/index.js'
import { aggregate, column, filter, limit, literal, project, scan, sort, sortKey, spread, topK, binary, type PlanNode } from '../../src/query/model/index.js'
import {
  batchOf, canonical, close, columnType, diffValue, intIn, jsGroups, jsSort, nonNull, overWire, pick, prepare, randomBatches, randomPartitions, randomRows, rng,
  runLocal, runSingle, sourceOf, type Row
} from './query-exec-helpers.js'

const SEEDS = Array.from({ length: 30 }, (_, i) => i + 1)
const REL = 1e-9

/** A row count: now and then none or one, mostly up to 400. */
const rowCount = (r: () => number): number => { const u = r(); return u < 0.07 ? 0 : u < 0.12 ? 1 : intIn(r, 2, 400) }

function expectSame (actual: readonly Row[], expected: readonly Row[], rel = REL, what = ''): void {
  const d = diffValue(actual, expected, rel, what === '' ? 'rows' : what)
  if (d !== null) expect.fail(`${d}\nactual:   ${JSON.stringify(actual.slice(0, 20))}\nexpected: ${JSON.stringify(expected.slice(0, 20))}`)
}

async function expectCode (p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  let err: unknown
  try {
    if (typeof p === 'function') p(); else await p
  } catch (e) { err = e }
  expect(err, `expected QueryExecError ${code}`).toBeInstanceOf(QueryExecError)
  expect((err as QueryExecError).code).toBe(code)
}

// ------------------------------------------------------------------ a JS reference for GROUP BY

interface AggDef { alias: string, fn: string, col?: string, distinct?: boolean, q?: number }

const AGGS: AggDef[] = [
  { alias: 'n', fn: 'count' },
  { alias: 'cx', fn: 'count', col: 'x' },
  { alias: 'cs', fn: 'count', col: 's' },
  { alias: 'di', fn: 'count', col: 'i', distinct: true },
  { alias: 'ds', fn: 'count', col: 's2', distinct: true },
  { alias: 'sx', fn: 'sum', col: 'x' },
  { alias: 'si', fn: 'sum', col: 'i' },
  { alias: 'sb', fn: 'sum', col: 'big' },
  { alias: 'ax', fn: 'avg', col: 'x' },
  { alias: 'ai', fn: 'avg', col: 'i' },
  { alias: 'mnx', fn: 'min', col: 'x' },
  { alias: 'mxx', fn: 'max', col: 'x' },
  { alias: 'mni', fn: 'min', col: 'i' },
  { alias: 'mxt', fn: 'max', col: 'ts' },
  { alias: 'mnd', fn: 'min', col: 'd' },
  { alias: 'mns', fn: 'min', col: 's2' },
  { alias: 'mxs', fn: 'max', col: 's' },
  { alias: 'vx', fn: 'var_pop', col: 'x' },
  { alias: 'sdx', fn: 'stddev_pop', col: 'x' },
  { alias: 'vi', fn: 'var_pop', col: 'i' },
  { alias: 'acs', fn: 'approx_count_distinct', col: 's' },
  { alias: 'acx', fn: 'approx_count_distinct', col: 'x' },
  { alias: 'q50', fn: 'approx_quantile', col: 'x', q: 0.5 },
  { alias: 'q90', fn: 'approx_quantile', col: 'x', q: 0.9 },
  { alias: 'qi', fn: 'approx_quantile', col: 'i', q: 0.25 }
]

const aggSql = (a: AggDef): string =>
  `${a.fn}(${a.distinct === true ? 'DISTINCT ' : ''}${a.col ?? '*'}${a.q !== undefined ? `, ${a.q}` : ''}) AS ${a.alias}`

function jsAgg (a: AggDef, rows: readonly Row[]): unknown {
  if (a.col === undefined) return rows.length
  const vals = nonNull(rows, a.col)
  const nums = vals as number[]
  const sum = (): number => nums.reduce((s, x) => s + x, 0)
  switch (a.fn) {
    case 'count': return a.distinct === true ? new Set(vals).size : vals.length
    case 'sum': return vals.length === 0 ? null : sum()
    case 'avg': return vals.length === 0 ? null : sum() / vals.length
    case 'min': return vals.length === 0 ? null : vals.reduce((m, v) => (v as number) < (m as number) ? v : m)
    case 'max': return vals.length === 0 ? null : vals.reduce((m, v) => (v as number) > (m as number) ? v : m)
    case 'var_pop': case 'stddev_pop': {
      if (vals.length === 0) return null
      const mean = sum() / nums.length
      const v = nums.reduce((s, x) => s + (x - mean) ** 2, 0) / nums.length
      return a.fn === 'var_pop' ? v : Math.sqrt(v)
    }
    case 'approx_count_distinct': return new Set(vals).size
    case 'approx_quantile': {
      if (vals.length === 0) return null
      const sorted = [...nums].sort((p, q) => p - q)
      return sorted[Math.floor(a.q! * (sorted.length - 1))]
    }
  }
  throw new Error(a.fn)
}

/** GROUP BY `keys` in JS: one row per group, keys then aggregates. */
function jsGroupBy (rows: readonly Row[], keys: readonly string[], aggs: readonly AggDef[]): Row[] {
  return jsGroups(rows, keys, g => Object.fromEntries(aggs.map(a => [a.alias, jsAgg(a, g)])))
}

/** Compares an engine answer with the JS reference: sketches within their guarantees, the rest to rounding. */
function expectMatchesReference (actual: readonly Row[], expected: readonly Row[], keys: readonly string[], aggs: readonly AggDef[]): void {
  const a = canonical(actual, keys)
  const e = canonical(expected, keys)
  expect(a.length, 'groups').toBe(e.length)
  for (let i = 0; i < a.length; i++) {
    for (const k of keys) expect(a[i]![k], `key ${k}`).toEqual(e[i]![k])
    for (const g of aggs) {
      const x = a[i]![g.alias]; const y = e[i]![g.alias]
      const at = `group ${JSON.stringify(keys.map(k => e[i]![k]))} ${g.alias}`
      if (g.fn === 'approx_quantile' && typeof x === 'number' && typeof y === 'number') {
        // DDSketch: within 1% of the exact value at rank ⌊q(n−1)⌋; integer columns are then rounded.
        const slack = 0.01 * Math.abs(y) * (1 + 1e-9) + (g.col === 'i' ? 0.5 : 1e-12)
        expect(Math.abs(x - y), `${at}: ${x} vs ${y}`).toBeLessThanOrEqual(slack)
      } else if (typeof x === 'number' && typeof y === 'number') {
        expect(close(x, y, REL) || Math.abs(x - y) < 1e-9, `${at}: ${x} vs ${y}`).toBe(true)
      } else {
        expect(x, at).toEqual(y)
      }
    }
  }
}

// ------------------------------------------------------------------ 1. SQL: split equals single

describe('SQL over split partitions equals one partition', () => {
  const KEY_SETS: string[][] = [['s'], ['s', 'b'], ['s', 's2', 'i'], ['d'], ['b', 'i'], ['x'], ['i', 'x']]

  for (const keys of KEY_SETS) {
    it(`GROUP BY ${keys.join(', ')} with every aggregate`, async () => {
      const sql = `SELECT ${[...keys, ...AGGS.map(aggSql)].join(', ')} FROM t GROUP BY ${keys.join(', ')}`
      for (const seed of SEEDS) {
        const r = rng(seed * 1000 + keys.length)
        const rows = randomRows(r, rowCount(r))
        const parts = randomPartitions(r, rows)
        const single = await runSingle(sql, rows)
        const split = await runLocal(sql, parts)
        expect(split.columns.map(c => c.name)).toEqual([...keys, ...AGGS.map(a => a.alias)])
        expectSame(canonical(split.rows, keys), canonical(single.rows, keys), REL, `seed ${seed}`)
        expectMatchesReference(single.rows, jsGroupBy(rows, keys, AGGS), keys, AGGS)
        expectMatchesReference(split.rows, jsGroupBy(rows, keys, AGGS), keys, AGGS)
      }
    })
  }

  it('GROUP BY expressions', async () => {
    const sql = 'SELECT i % 3 AS m, s IS NULL AS sn, count(*) AS n, sum(x) AS sx, max(s2) AS ms FROM t GROUP BY i % 3, s IS NULL'
    for (const seed of SEEDS) {
      const r = rng(seed * 1009)
      const rows = randomRows(r, rowCount(r))
      const derived = rows.map(row => ({ ...row, m: row.i === null ? null : (row.i as number) % 3, sn: row.s === null }))
      const aggs: AggDef[] = [{ alias: 'n', fn: 'count' }, { alias: 'sx', fn: 'sum', col: 'x' }, { alias: 'ms', fn: 'max', col: 's2' }]
      const split = await runLocal(sql, randomPartitions(r, rows))
      expect(split.columns.map(c => c.name)).toEqual(['m', 'sn', 'n', 'sx', 'ms'])
      expectMatchesReference(split.rows, jsGroupBy(derived, ['m', 'sn'], aggs), ['m', 'sn'], aggs)
    }
  })

  it('types the aggregates as validation does', async () => {
    const sql = `SELECT s, ${AGGS.map(aggSql).join(', ')} FROM t GROUP BY s`
    const res = await runLocal(sql, [[batchOf(randomRows(rng(5), 50))]])
    const types = Object.fromEntries(res.columns.map(c => [c.name, c.type]))
    expect(types).toMatchObject({ s: 'utf8', n: 'int64', cx: 'int64', di: 'int64', sx: 'float64', si: 'int64', sb: 'int64', ax: 'float64', mni: 'int32', mxt: 'timestamp', mnd: 'date', mns: 'utf8', vx: 'float64', acs: 'int64', q50: 'float64', qi: 'int32' })
    // The final batch carries the same types (Arrow output relies on them).
    for (const c of res.columns) expect(res.batch.columns.get(c.name)?.type, c.name).toBe(c.type)
  })

  it('without GROUP BY answers one row, even over no rows (count 0, sum NULL)', async () => {
    const sql = `SELECT ${AGGS.map(aggSql).join(', ')} FROM t`
    for (const seed of SEEDS) {
      const r = rng(seed * 31)
      const rows = randomRows(r, rowCount(r))
      const split = await runLocal(sql, randomPartitions(r, rows))
      const single = await runSingle(sql, rows)
      expect(split.rows).toHaveLength(1)
      expectSame(split.rows, single.rows, REL, `seed ${seed}`)
      expectMatchesReference(split.rows, jsGroupBy(rows, [], AGGS), [], AGGS)
    }
    const empty = await runLocal(sql, [[], [batchOf([])], []])
    expect(empty.rows).toHaveLength(1)
    const row = empty.rows[0]!
    expect(row).toMatchObject({ n: 0, cx: 0, cs: 0, di: 0, ds: 0, sx: null, si: null, ax: null, mnx: null, mns: null, mxs: null, vx: null, sdx: null, acs: 0, q50: null, qi: null })
  })

  it('HAVING filters the merged groups, not each partition\'s', async () => {
    const sql = 'SELECT s, s2, count(*) AS n, sum(x) AS sx FROM t GROUP BY s, s2 HAVING count(*) >= 4 AND (sum(x) > 0 OR min(i) IS NULL)'
    for (const seed of SEEDS) {
      const r = rng(seed * 77)
      const rows = randomRows(r, rowCount(r))
      const split = await runLocal(sql, randomPartitions(r, rows, intIn(r, 2, 8)))
      const groups = jsGroupBy(rows, ['s', 's2'], [{ alias: 'n', fn: 'count' }, { alias: 'sx', fn: 'sum', col: 'x' }, { alias: 'mi', fn: 'min', col: 'i' }])
      const expected = groups.filter(g => (g.n as number) >= 4 && ((g.sx !== null && (g.sx as number) > 0) || g.mi === null)).map(({ mi: _, ...rest }) => rest)
      expect(split.columns.map(c => c.name)).toEqual(['s', 's2', 'n', 'sx'])
      expectSame(canonical(split.rows, ['s', 's2']), canonical(expected, ['s', 's2']), REL, `seed ${seed}`)
    }
  })

  const SORTABLE = ['s', 's2', 'i', 'x', 'b', 'd', 'ts'] as const
  type Key = readonly [string, 'asc' | 'desc', 'first' | 'last']
  const randomKeys = (r: () => number): Key[] => {
    const cols = [...SORTABLE].sort(() => r() - 0.5).slice(0, intIn(r, 1, 4))
    // id last: every row has a unique sort key, so the expected order is fully determined.
    return [...cols.map(c => [c, pick(r, ['asc', 'desc'] as const), pick(r, ['first', 'last'] as const)] as const), ['id', 'asc', 'last'] as const]
  }
  const orderSql = (keys: readonly Key[]): string => keys.map(([c, d, n]) => `${c} ${d.toUpperCase()} NULLS ${n.toUpperCase()}`).join(', ')

  it('ORDER BY several keys with NULLS FIRST/LAST', async () => {
    for (const seed of SEEDS) {
      const r = rng(seed * 13)
      const rows = randomRows(r, rowCount(r))
      const keys = randomKeys(r)
      const sql = `SELECT id, s, s2, i, x, b, d, ts FROM t ORDER BY ${orderSql(keys)}`
      const split = await runLocal(sql, randomPartitions(r, rows))
      const cols = ['id', 's', 's2', 'i', 'x', 'b', 'd', 'ts']
      const expected = jsSort(rows, keys).map(row => Object.fromEntries(cols.map(c => [c, row[c] ?? null])))
      expectSame(split.rows, expected, 0, `seed ${seed} ${sql}`)
    }
  })

  it('ORDER BY ... LIMIT/OFFSET (pushed down to the partitions) equals a full sort then a slice', async () => {
    for (const seed of SEEDS) {
      const r = rng(seed * 17)
      const rows = randomRows(r, rowCount(r))
      const keys = randomKeys(r)
      const lim = pick(r, [0, 1, 3, 10, 50, 1000])
      const off = pick(r, [0, 0, 1, 7, 30])
      const where = r() < 0.5 ? '' : ' WHERE x > 0 OR s IS NULL'
      const sql = `SELECT id, x, s FROM t${where} ORDER BY ${orderSql(keys)} LIMIT ${lim}${off > 0 ? ` OFFSET ${off}` : ''}`
      const p = prepare(sql)
      expect(p.split.perPartitionLimit).toBe(lim + off)
      const input = where === '' ? rows : rows.filter(row => (row.x !== null && (row.x as number) > 0) || row.s === null)
      const expected = jsSort(input, keys).slice(off, off + lim).map(row => ({ id: row.id, x: row.x ?? null, s: row.s ?? null }))
      const split = await runLocal(sql, randomPartitions(r, rows))
      expectSame(split.rows, expected, 0, `seed ${seed} ${sql}`)
      expectSame((await runSingle(sql, rows)).rows, expected, 0, `seed ${seed} single`)
    }
  })

  it('ORDER BY an expression and a select alias, with LIMIT', async () => {
    const rows = randomRows(rng(99), 300)
    const parts = randomPartitions(rng(100), rows, 5)
    const expected = jsSort(rows.map(row => ({ ...row, y: row.x === null ? null : -2 * (row.x as number) })), [['y', 'asc', 'last'], ['id', 'asc', 'last']]).slice(2, 9)
    const res = await runLocal('SELECT id, x * -2 AS y FROM t ORDER BY y, id LIMIT 7 OFFSET 2', parts)
    expectSame(res.rows, expected.map(row => ({ id: row.id, y: row.y })), 0)
  })

  it('LIMIT without ORDER BY answers that many real rows, and a partition stops scanning early', async () => {
    const rows = randomRows(rng(7), 5000)
    const byId = new Map(rows.map(row => [row.id, row]))
    const parts = randomPartitions(rng(8), rows, 4)
    const res = await runLocal('SELECT id, s, x FROM t LIMIT 25', parts)
    expect(res.rows).toHaveLength(25)
    expect(new Set(res.rows.map(row => row.id)).size).toBe(25)
    for (const row of res.rows) expect(row).toEqual({ id: row.id, s: byId.get(row.id)!.s ?? null, x: byId.get(row.id)!.x ?? null })
    const p = prepare('SELECT id FROM t LIMIT 25')
    const batches = Array.from({ length: 50 }, (_, i) => batchOf(rows.slice(i * 100, i * 100 + 100)))
    const f = await runFragment(p.split.fragment, { source: sourceOf(batches), columnType })
    expect(f.stats.rowsScanned).toBeLessThan(rows.length)
    expect(f.output.kind === 'rows' && f.output.batch.length).toBe(25)
  })

  it('ORDER BY an aggregate with LIMIT/OFFSET', async () => {
    for (const seed of SEEDS) {
      const r = rng(seed * 19)
      const rows = randomRows(r, rowCount(r))
      const sql = 'SELECT s, b, count(*) AS n, sum(x) AS sx FROM t GROUP BY s, b ORDER BY n DESC, sx ASC NULLS FIRST, s NULLS FIRST, b DESC NULLS LAST LIMIT 4 OFFSET 1'
      const groups = jsGroupBy(rows, ['s', 'b'], [{ alias: 'n', fn: 'count' }, { alias: 'sx', fn: 'sum', col: 'x' }])
      const expected = jsSort(groups, [['n', 'desc', 'last'], ['sx', 'asc', 'first'], ['s', 'asc', 'first'], ['b', 'desc', 'last']]).slice(1, 5)
      expectSame((await runLocal(sql, randomPartitions(r, rows))).rows, expected, REL, `seed ${seed}`)
    }
  })

  it('SELECT DISTINCT', async () => {
    for (const seed of SEEDS) {
      const r = rng(seed * 23)
      const rows = randomRows(r, rowCount(r))
      const parts = randomPartitions(r, rows)
      const two = await runLocal('SELECT DISTINCT s, b FROM t WHERE i > 3 OR i IS NULL', parts)
      const filtered = rows.filter(row => row.i === null || (row.i as number) > 3)
      expectSame(canonical(two.rows, ['s', 'b']), canonical(jsGroupBy(filtered, ['s', 'b'], []), ['s', 'b']), 0, `seed ${seed}`)
      const ordered = await runLocal('SELECT DISTINCT s2 FROM t ORDER BY s2 DESC NULLS FIRST', parts)
      expect(ordered.rows).toEqual(jsSort(jsGroupBy(rows, ['s2'], []), [['s2', 'desc', 'first']]))
    }
  })

  it('WHERE that matches nothing: no groups, one aggregate row, no rows, every output column named', async () => {
    const rows = randomRows(rng(3), 300)
    const parts = randomPartitions(rng(4), rows, 5)
    const none = 'i > 1000'
    const groups = await runLocal(`SELECT s, count(*) AS n, sum(x) AS sx FROM t WHERE ${none} GROUP BY s`, parts)
    expect(groups.rows).toEqual([])
    expect(groups.columns.map(c => c.name)).toEqual(['s', 'n', 'sx'])
    const one = await runLocal(`SELECT count(*) AS n, count(x) AS cx, sum(x) AS sx, avg(i) AS ai, min(s) AS ms, var_pop(x) AS v, approx_count_distinct(s) AS a, approx_quantile(x, 0.5) AS q FROM t WHERE ${none}`, parts)
    expect(one.rows).toEqual([{ n: 0, cx: 0, sx: null, ai: null, ms: null, v: null, a: 0, q: null }])
    for (const sql of [
      `SELECT id, x FROM t WHERE ${none} ORDER BY x LIMIT 5`,
      `SELECT id, x FROM t WHERE ${none} ORDER BY x`,
      `SELECT * FROM t WHERE ${none}`,
      `SELECT x * 2 AS y FROM t WHERE ${none} LIMIT 3`,
      `SELECT DISTINCT s FROM t WHERE ${none}`,
      `SELECT s, count(*) AS n FROM t WHERE ${none} GROUP BY s HAVING count(*) > 0 ORDER BY n LIMIT 2`
    ]) {
      const res = await runLocal(sql, parts)
      expect(res.rows, sql).toEqual([])
      expect(res.batch.length, sql).toBe(0)
    }
    const knn = await runLocal({ space: 't', filter: { range: { i: { gt: 1000 } } }, knn: { field: 'v', vector: [1, 2, 3, 4], k: 3 }, fields: ['id', '_score'] }, parts)
    expect(knn.rows).toEqual([])
  })

  it('finishes when no partition answered at all', async () => {
    for (const sql of ['SELECT id, x FROM t ORDER BY x LIMIT 3', 'SELECT * FROM t', 'SELECT x * 2 AS y FROM t', 'SELECT s, count(*) AS n FROM t GROUP BY s']) {
      const res = await runLocal(sql, [])
      expect(res.rows, sql).toEqual([])
    }
    expect((await runLocal('SELECT count(*) AS n, sum(x) AS s FROM t', [])).rows).toEqual([{ n: 0, s: null }])
    expect((await runLocal({ space: 't', knn: { field: 'v', vector: [1, 2, 3, 4], k: 3 }, fields: ['id', '_score'] }, [])).rows).toEqual([])
  })

  it('SELECT * and a JSON query without fields read every column (projection pushdown keeps them)', async () => {
    const rows = randomRows(rng(11), 50)
    const parts = randomPartitions(rng(12), rows, 3)
    const all = ['id', 's', 's2', 'i', 'x', 'b', 'big', 'ts', 'd', 'v']
    const full = (row: Row): Row => Object.fromEntries(all.map(c => [c, row[c] ?? null]))
    const f32 = (row: Row): Row => ({ ...row, v: row.v === null ? null : (row.v as number[]).map(Math.fround) })
    const expected = jsSort(rows, [['x', 'desc', 'last'], ['id', 'asc', 'last']]).slice(0, 5).map(full).map(f32)
    expectSame((await runLocal('SELECT * FROM t ORDER BY x DESC, id LIMIT 5', parts)).rows, expected, 0)
    expectSame((await runLocal({ space: 't', sort: [{ x: 'desc' }, { id: 'asc' }], size: 5 }, parts)).rows, expected, 0)
    expectSame(canonical((await runLocal('SELECT * FROM t WHERE s IS NULL', parts)).rows, ['id']), rows.filter(row => row.s === null).map(full).map(f32), 0)
    const knn = await runLocal({ space: 't', knn: { field: 'v', vector: [1, 0, 0, 0], k: 2 } }, parts)
    expect(Object.keys(knn.rows[0]!)).toEqual([...all, '_score'])
    for (const row of knn.rows) expectSame([{ ...row, _score: 0 }], [{ ...f32(full(rows.find(x => x.id === row.id)!)), _score: 0 }], 0)
  })
})

describe('projection pushdown', () => {
  const scanned = (sql: string): readonly string[] => fragmentShape(prepare(sql).split.fragment).scan.columns ?? []

  it('reads only the columns a query mentions below its aggregate, not an output named like a column', async () => {
    // An alias above the aggregate names one of its outputs: `count(*) AS x` reads no column x.
    expect(scanned('SELECT count(*) AS x FROM t')).toEqual([])
    expect(scanned('SELECT count(*) AS n FROM t')).toEqual([])
    expect(scanned('SELECT s, count(*) AS i, sum(x) AS b FROM t GROUP BY s ORDER BY i DESC LIMIT 2')).toEqual(['s', 'x'])
    expect(scanned('SELECT s, count(*) AS x FROM t WHERE i > 3 GROUP BY s HAVING count(*) > 1')).toEqual(['s', 'i'])
    // Without an aggregate the columns above the scan are the space's.
    expect(scanned('SELECT x AS i FROM t ORDER BY x LIMIT 3')).toEqual(['x'])
    // And the answers stay those of a scan reading every column.
    const rows = randomRows(rng(21), 60)
    const parts = randomPartitions(rng(22), rows, 3)
    expect((await runLocal('SELECT count(*) AS x FROM t', parts)).rows).toEqual([{ x: 60 }])
    const byS = new Map<unknown, number>()
    for (const r of rows) if ((r.i as number | null) !== null && (r.i as number) > 3) byS.set(r.s, (byS.get(r.s) ?? 0) + 1)
    const got = (await runLocal('SELECT s, count(*) AS x FROM t WHERE i > 3 GROUP BY s', parts)).rows
    expect(new Map(got.map(r => [r.s, r.x]))).toEqual(byS)
  })
})

// ------------------------------------------------------------------ 2. JSON aggregations

describe('JSON aggregations over split partitions equal one partition', () => {
  const query = {
    space: 't',
    aggs: {
      by_s: { terms: { field: 's', exact: true }, aggs: { sx: { sum: { field: 'x' } }, st: { stats: { field: 'i' } }, mx: { max: { field: 'ts' } } } },
      by_i: { terms: { field: 'i', size: 5, shard_size: 1000 }, aggs: { ax: { avg: { field: 'x' } } } },
      hist: { histogram: { field: 'x', interval: 50 }, aggs: { c: { cardinality: { field: 's2' } } } },
      rng: { range: { field: 'x', ranges: [{ to: 0 }, { from: 0, to: 100 }, { from: 100 }] }, aggs: { a: { avg: { field: 'i' } }, mn: { min: { field: 'x' } } } },
      f: { filters: { filters: { pos: { range: { x: { gt: 0 } } }, a: { term: { s: 'a' } } } }, aggs: { vc: { value_count: { field: 'x' } } } },
      card: { cardinality: { field: 's' } },
      card_x: { cardinality: { field: 'x' } },
      pct: { percentiles: { field: 'x', percents: [10, 50, 99] } },
      weekly: { date_histogram: { field: 'ts', fixed_interval: '7d' }, aggs: { es: { extended_stats: { field: 'x' } } } },
      monthly: { date_histogram: { field: 'ts', calendar_interval: 'month' }, aggs: { p: { percentiles: { field: 'i', percents: [50] } } } },
      days: { date_histogram: { field: 'd', fixed_interval: '1w' } }
    }
  }

  it('merges every aggregation kind to the single-partition answer', async () => {
    for (const seed of SEEDS) {
      const r = rng(seed * 41)
      const rows = randomRows(r, rowCount(r))
      const split = await runLocal(query, randomPartitions(r, rows))
      const single = await runSingle(query, rows)
      expect(split.rows).toEqual([])
      const d = diffValue(split.aggregations, single.aggregations, REL, `seed ${seed}`)
      if (d !== null) expect.fail(d)
    }
  })

  it('matches a JS computation of the same buckets', async () => {
    for (const seed of SEEDS.slice(0, 10)) {
      const r = rng(seed * 43)
      const rows = randomRows(r, intIn(r, 50, 400))
      const aggs = (await runLocal(query, randomPartitions(r, rows))).aggregations as Record<string, any>
      const count = (pred: (row: Row) => boolean): number => rows.filter(pred).length
      // terms (exact): every non-null key with its count, most frequent first.
      const byS = jsGroupBy(rows.filter(row => row.s !== null), ['s'], [{ alias: 'n', fn: 'count' }, { alias: 'sx', fn: 'sum', col: 'x' }])
      expect(aggs.by_s.buckets.length).toBe(Math.min(10, byS.length))
      for (const b of aggs.by_s.buckets) {
        const g = byS.find(x => x.s === b.key)!
        expect(b.doc_count).toBe(g.n)
        if (g.sx !== null) expect(b.sx.value).toBe(g.sx)
      }
      const counts = aggs.by_s.buckets.map((b: { doc_count: number }) => b.doc_count)
      expect(counts).toEqual([...counts].sort((p: number, q: number) => q - p))
      for (const b of aggs.hist.buckets) expect(b.doc_count, `hist ${b.key}`).toBe(count(row => row.x !== null && Math.floor((row.x as number) / 50) * 50 === b.key))
      expect(aggs.hist.buckets.reduce((s: number, b: { doc_count: number }) => s + b.doc_count, 0)).toBe(count(row => row.x !== null))
      const [lo, mid, hi] = aggs.rng.buckets
      expect([lo.doc_count, mid.doc_count, hi.doc_count]).toEqual([
        count(row => row.x !== null && (row.x as number) < 0),
        count(row => row.x !== null && (row.x as number) >= 0 && (row.x as number) < 100),
        count(row => row.x !== null && (row.x as number) >= 100)
      ])
      const fb = (key: string): any => aggs.f.buckets.find((b: { key: string }) => b.key === key)
      expect(fb('pos').doc_count).toBe(count(row => row.x !== null && (row.x as number) > 0))
      expect(fb('a').doc_count).toBe(count(row => row.s === 'a'))
      expect(fb('a').vc.value).toBe(count(row => row.s === 'a' && row.x !== null))
      expect(aggs.card.value).toBe(new Set(nonNull(rows, 's')).size)
      expect(aggs.card_x.value).toBe(new Set(nonNull(rows, 'x')).size)
      const xs = (nonNull(rows, 'x') as number[]).sort((p, q) => p - q)
      for (const p of [10, 50, 99]) {
        const exact = xs[Math.floor(p / 100 * (xs.length - 1))]!
        expect(Math.abs(aggs.pct.values[String(p)] - exact), `p${p}`).toBeLessThanOrEqual(0.01 * Math.abs(exact) * (1 + 1e-9) + 1e-12)
      }
      const weeks = aggs.weekly.buckets as Array<{ key: number, doc_count: number }>
      expect(weeks.reduce((s, b) => s + b.doc_count, 0)).toBe(count(row => row.ts !== null))
      for (const b of weeks) expect(b.doc_count).toBe(count(row => row.ts !== null && (row.ts as number) >= b.key && (row.ts as number) < b.key + 7 * 86_400_000))
      const days = aggs.days.buckets as Array<{ key: number, doc_count: number }>
      for (const b of days) expect(b.doc_count).toBe(count(row => row.d !== null && (row.d as number) * 86_400_000 >= b.key && (row.d as number) * 86_400_000 < b.key + 7 * 86_400_000))
      const months = aggs.monthly.buckets as Array<{ key: number, doc_count: number }>
      expect(months.map(b => b.key)).toEqual(months.map(b => { const dt = new Date(b.key); return Date.UTC(dt.getUTCFullYear(), dt.getUTCMonth(), 1) }))
      expect(months.reduce((s, b) => s + b.doc_count, 0)).toBe(count(row => row.ts !== null))
      expect(months[0]!.key).toBeGreaterThanOrEqual(Date.UTC(2024, 0, 1) - 1)
    }
  })

  it('approximate terms with enough shard_size count exactly', async () => {
    const q = { space: 't', aggs: { by: { terms: { field: 's2', size: 2, shard_size: 50 } } } }
    for (const seed of SEEDS.slice(0, 10)) {
      const r = rng(seed * 47)
      const rows = randomRows(r, intIn(r, 1, 300))
      const split = (await runLocal(q, randomPartitions(r, rows))).aggregations as Record<string, any>
      const single = (await runSingle(q, rows)).aggregations
      expect(split).toEqual(single)
      expect(split.by.doc_count_error_upper_bound).toBe(0)
    }
  })
})

// ------------------------------------------------------------------ 3. Top-K

describe('top-K vector search', () => {
  const f32 = Math.fround
  function score (v: number[], q: number[], metric: string): number {
    const a = v.map(f32); const b = q.map(f32)
    if (metric === 'l2') return Math.sqrt(a.reduce((s, x, j) => s + (x - b[j]!) ** 2, 0))
    const dot = a.reduce((s, x, j) => s + x * b[j]!, 0)
    if (metric === 'dot') return dot
    return dot / (Math.sqrt(a.reduce((s, x) => s + x * x, 0)) * Math.sqrt(b.reduce((s, x) => s + x * x, 0)))
  }

  it('split answers equal a brute-force top-K, best first', async () => {
    for (const seed of SEEDS) {
      for (const metric of ['cosine', 'dot', 'l2'] as const) {
        const r = rng(seed * 53 + metric.length)
        const rows = randomRows(r, rowCount(r))
        const q = [r() * 2 - 1, r() * 2 - 1, r() * 2 - 1, r() * 2 - 1]
        const k = r() < 0.3 ? rows.length + intIn(r, 1, 20) : intIn(r, 1, 30)
        const withFilter = r() < 0.4
        const res = await runLocal({ space: 't', ...(withFilter ? { filter: { term: { s2: 'x' } } } : {}), knn: { field: 'v', vector: q, k, metric }, fields: ['id', '_score'] }, randomPartitions(r, rows))
        const expected = rows
          .filter(row => row.v !== null && (!withFilter || row.s2 === 'x'))
          .map(row => ({ id: row.id, _score: score(row.v as number[], q, metric) }))
          .sort((p, o) => metric === 'l2' ? p._score - o._score : o._score - p._score)
          .slice(0, k)
        expect(res.rows.map(row => row.id), `seed ${seed} ${metric}`).toEqual(expected.map(row => row.id))
        for (let i = 0; i < expected.length; i++) expect(Math.abs((res.rows[i]!._score as number) - expected[i]!._score)).toBeLessThan(1e-6)
      }
    }
  })

  it('size, sort and fields apply after the merge', async () => {
    const rows = randomRows(rng(61), 300)
    const q = [0.5, -0.25, 1, 0]
    const res = await runLocal({ space: 't', knn: { field: 'v', vector: q, k: 20, metric: 'dot' }, sort: [{ id: 'asc' }], size: 5, from: 2, fields: ['id', '_score', 's'] }, randomPartitions(rng(62), rows, 6))
    const best = rows.filter(row => row.v !== null).map(row => ({ id: row.id as string, s: row.s ?? null, _score: score(row.v as number[], q, 'dot') })).sort((p, o) => o._score - p._score).slice(0, 20)
    const expected = best.sort((p, o) => p.id < o.id ? -1 : 1).slice(2, 7)
    expect(res.columns.map(c => c.name)).toEqual(['id', '_score', 's'])
    expectSame(res.rows, expected, 1e-6)
  })
})

// ------------------------------------------------------------------ 4. Memory budget

describe('memory budget', () => {
  const many = (n: number, seed = 1): Row[] => randomRows(rng(seed), n)
  const batchesOf = (rows: readonly Row[], size: number): ColumnBatch[] => Array.from({ length: Math.ceil(rows.length / size) }, (_, i) => batchOf(rows.slice(i * size, (i + 1) * size)))

  it('GROUP BY id over many rows fails with MEMORY_BUDGET on the data peer and on the coordinator', async () => {
    const rows = many(20_000)
    const p = prepare('SELECT id, count(*) AS n, sum(x) AS s FROM t GROUP BY id')
    await expectCode(runFragment(p.split.fragment, { source: sourceOf(batchesOf(rows, 1000)), columnType, budget: new MemoryBudget(100_000) }), 'MEMORY_BUDGET')
    const merger = new QueryMerger(p.split, columnType, new MemoryBudget(100_000))
    const out = await runFragment(p.split.fragment, { source: sourceOf(batchesOf(rows, 1000)), columnType })
    await expectCode(() => { merger.add(overWire(out.output)) }, 'MEMORY_BUDGET')
    // With room enough it runs.
    const ok = await runLocal('SELECT id, count(*) AS n, sum(x) AS s FROM t GROUP BY id', [batchesOf(rows, 1000)], { budget: new MemoryBudget(64 << 20), fragmentBudget: () => new MemoryBudget(64 << 20) })
    expect(ok.rows).toHaveLength(20_000)
  })

  it('count(DISTINCT) sets count against the budget', async () => {
    const rows = many(20_000).map((row, i): Row => ({ ...row, x: i }))
    const p = prepare('SELECT s, count(DISTINCT x) AS n FROM t GROUP BY s')
    await expectCode(runFragment(p.split.fragment, { source: sourceOf(batchesOf(rows, 1000)), columnType, budget: new MemoryBudget(100_000) }), 'MEMORY_BUDGET')
  })

  it('a rows query over a budget too small fails, on the data peer and on the coordinator', async () => {
    const rows = many(20_000)
    const p = prepare('SELECT * FROM t WHERE x IS NOT NULL OR x IS NULL')
    await expectCode(runFragment(p.split.fragment, { source: sourceOf(batchesOf(rows, 1000)), columnType, budget: new MemoryBudget(200_000) }), 'MEMORY_BUDGET')
    await expectCode(runLocal('SELECT id, x FROM t ORDER BY x', randomPartitions(rng(2), rows, 4), { budget: new MemoryBudget(100_000) }), 'MEMORY_BUDGET')
  })

  it('ORDER BY ... LIMIT keeps memory bounded on the data peer (the top-N buffer compacts)', async () => {
    const rows = many(100_000)
    const batches = batchesOf(rows, 1000)
    const allBytes = batches.reduce((s, b) => s + batchBytes(b), 0)
    const p = prepare('SELECT id, x, s FROM t ORDER BY x DESC, id LIMIT 10')
    const budget = new MemoryBudget(allBytes)
    const res = await runFragment(p.split.fragment, { source: sourceOf(batches), columnType, budget })
    expect(budget.peak).toBeGreaterThan(0)
    expect(budget.peak).toBeLessThan(allBytes / 10)
    expect(budget.used).toBe(0)
    const merger = new QueryMerger(p.split, columnType)
    merger.add(overWire(res.output))
    const expected = jsSort(rows, [['x', 'desc', 'last'], ['id', 'asc', 'last']]).slice(0, 10).map(row => ({ id: row.id, x: row.x ?? null, s: row.s ?? null }))
    expect(merger.finish(p.columns).rows).toEqual(expected)
  })

  it('ORDER BY ... LIMIT keeps memory bounded on the coordinator over many partitions', async () => {
    const rows = many(80_000, 3)
    const parts = randomPartitions(rng(4), rows, 4000)
    const budget = new MemoryBudget(Infinity)
    const res = await runLocal('SELECT id, x FROM t ORDER BY x, id LIMIT 7 OFFSET 3', parts, { budget })
    expect(res.rows).toEqual(jsSort(rows, [['x', 'asc', 'last'], ['id', 'asc', 'last']]).slice(3, 10).map(row => ({ id: row.id, x: row.x ?? null })))
    // Each partition ships 10 rows, 40,000 in all; the merger compacts past 4·10 + 4096 rows.
    const row = (n: number): number => batchBytes(batchFromRows(rows.slice(0, n), [{ name: 'id', type: 'utf8' }, { name: 'x', type: 'float64' }]))
    expect(budget.peak).toBeLessThan(3 * row(4136 + 10))
    expect(budget.peak).toBeLessThan(row(40_000) / 3)
  })

  it('a fragment ships only the strings its rows use, whatever dictionary its batches carry', async () => {
    const rows = many(10_000, 6)
    const p = prepare('SELECT id, s FROM t ORDER BY x DESC, id LIMIT 3')
    for (const batches of [[batchOf(rows)], randomBatches(rng(7), rows)]) {
      const out = await runFragment(p.split.fragment, { source: sourceOf(batches), columnType })
      const wire = out.output.kind === 'rows' ? out.output.batch : expect.fail('rows')
      expect(wire.length).toBe(3)
      for (const c of wire.columns) if (c.tag === 'str') expect(c.dict!.length, c.name).toBeLessThanOrEqual(3)
    }
  })

  it('top-K keeps memory bounded whatever the order rows arrive in', async () => {
    // Every batch improves on the last, so each one has rows in the heap when it arrives.
    const rows = many(50_000, 5).map((row, i): Row => ({ ...row, v: [i, 1, 0, 0] }))
    const batches = batchesOf(rows, 500)
    const allBytes = batches.reduce((s, b) => s + batchBytes(b), 0)
    const p = prepare({ space: 't', knn: { field: 'v', vector: [1, 0, 0, 0], k: 5, metric: 'dot' }, fields: ['id', '_score'] })
    const budget = new MemoryBudget(Infinity)
    const out = await runFragment(p.split.fragment, { source: sourceOf(batches), columnType, budget })
    const merger = new QueryMerger(p.split, columnType)
    merger.add(overWire(out.output))
    expect(merger.finish(p.columns).rows).toEqual([49_999, 49_998, 49_997, 49_996, 49_995].map(i => ({ id: rows[i]!.id, _score: i })))
    expect(budget.peak).toBeLessThan(allBytes / 10)
  })
})

// ------------------------------------------------------------------ 5. Wire and untrusted partials

describe('decodeBatch rejects malformed input with BAD_PARTIAL', () => {
  const good = (): any => encodeBatch(batchOf(randomRows(rng(1), 5)))
  const col = (b: any, name: string): any => b.columns.find((c: { name: string }) => c.name === name)

  it('round-trips a good batch through msgpack', () => {
    const batch = batchOf(randomRows(rng(1), 50))
    const wire = overWire({ kind: 'rows', batch: encodeBatch(batch) }) as Extract<FragmentOutput, { kind: 'rows' }>
    const back = decodeBatch(wire.batch)
    expect(back.length).toBe(50)
    for (const [name, v] of batch.columns) expect(back.columns.get(name), name).toEqual(v)
  })

  it('slices an encoded batch into row ranges that decode as the rows gathered and encoded (dictionaries cut down)', () => {
    const batch = batchOf(randomRows(rng(4), 100))
    const whole = encodeBatch(batch)
    for (const [start, end] of [[0, 37], [37, 100], [10, 11], [0, 100]] as const) {
      const rows = Uint32Array.from({ length: end - start }, (_, i) => start + i)
      const expected = decodeBatch((overWire({ kind: 'rows', batch: encodeBatch(gatherBatch(batch, rows)) }) as Extract<FragmentOutput, { kind: 'rows' }>).batch)
      const got = decodeBatch((overWire({ kind: 'rows', batch: sliceBatch(whole, start, end) }) as Extract<FragmentOutput, { kind: 'rows' }>).batch)
      expect(got.length).toBe(end - start)
      for (const [name, v] of expected.columns) expect(got.columns.get(name), `${name} ${start}..${end}`).toEqual(v)
    }
  })

  const cases: Array<[string, (b: any) => unknown]> = [
    ['not an object', () => 'batch'],
    ['null', () => null],
    ['negative length', b => ({ ...b, length: -1 })],
    ['fractional length', b => ({ ...b, length: 2.5 })],
    ['huge length', b => ({ ...b, length: 1e12 })],
    ['length as a string', b => ({ ...b, length: '5' })],
    ['columns not an array', b => ({ ...b, columns: {} })],
    ['too many columns', b => ({ ...b, columns: Array.from({ length: 3000 }, (_, i) => ({ name: `c${i}`, tag: 'num', type: 'float64', data: new Uint8Array(40) })) })],
    ['a column not an object', b => ({ ...b, columns: [...b.columns, 7] })],
    ['a repeated name', b => ({ ...b, columns: [...b.columns, b.columns[3]] })],
    ['a name not a string', b => { col(b, 'x').name = 5; return b }],
    ['an unknown tag', b => { col(b, 'x').tag = 'blob'; return b }],
    ['num: too few bytes', b => { col(b, 'x').data = col(b, 'x').data.subarray(0, 39); return b }],
    ['num: too many bytes', b => { col(b, 'x').data = new Uint8Array(48); return b }],
    ['num: data not bytes', b => { col(b, 'x').data = [1, 2, 3, 4, 5]; return b }],
    ['length disagrees with the columns', b => ({ ...b, length: 6 })],
    ['str: code past the dictionary', b => { const c = col(b, 's'); const codes = new Int32Array(5).fill(0); codes[2] = c.dict.length; c.data = new Uint8Array(codes.buffer); return b }],
    ['str: code below -1', b => { const c = col(b, 's'); const codes = new Int32Array(5).fill(-2); c.data = new Uint8Array(codes.buffer); return b }],
    ['str: dictionary not strings', b => { col(b, 's').dict = ['a', 3]; return b }],
    ['str: no dictionary', b => { delete col(b, 's').dict; return b }],
    ['str: wrong byte length', b => { col(b, 's').data = new Uint8Array(19); return b }],
    ['vec: dim 0', b => { col(b, 'v').dim = 0; return b }],
    ['vec: huge dim', b => { col(b, 'v').dim = 1e9; return b }],
    ['vec: wrong dim for the bytes', b => { col(b, 'v').dim = 3; return b }],
    ['vec: valid too short', b => { col(b, 'v').valid = new Uint8Array(4); return b }],
    ['any: wrong count', () => ({ length: 2, columns: [{ name: 'l', tag: 'any', type: 'list<utf8>', values: [['a']] }] })]
  ]
  for (const [what, mutate] of cases) {
    it(what, async () => {
      await expectCode(() => decodeBatch(mutate(good())), 'BAD_PARTIAL')
    })
  }

  it('through the merger too', async () => {
    const p = prepare('SELECT id, x FROM t ORDER BY x LIMIT 3')
    const merger = new QueryMerger(p.split, columnType)
    await expectCode(() => { merger.add({ kind: 'rows', batch: { length: 3, columns: [{ name: 'x', tag: 'num', type: 'float64', data: new Uint8Array(8) }] } }) }, 'BAD_PARTIAL')
    await expectCode(() => { merger.add({ kind: 'groups', groups: { groups: 0, keys: [], states: [] } }) }, 'BAD_PARTIAL')
    await expectCode(() => { merger.add({ kind: 'aggs', states: {} }) }, 'BAD_PARTIAL')
  })
})

describe('merging malformed partial groups fails with BAD_PARTIAL', () => {
  const SQL = 'SELECT s, i, count(*) AS n, count(x) AS cx, sum(x) AS sx, min(s2) AS ms, max(x) AS mx, count(DISTINCT s2) AS ds, var_pop(x) AS v, approx_count_distinct(s) AS a, approx_quantile(x, 0.5) AS q FROM t GROUP BY s, i'
  const goodPartial = async (): Promise<any> => {
    const p = prepare(SQL)
    const out = await runFragment(p.split.fragment, { source: sourceOf([batchOf(randomRows(rng(9), 40))]), columnType })
    return (overWire(out.output) as Extract<FragmentOutput, { kind: 'groups' }>).groups
  }
  const merge = (g: unknown): void => { new QueryMerger(prepare(SQL).split, columnType).add({ kind: 'groups', groups: g as never }) }
  const acc = (name: string): number => ['n', 'cx', 'sx', 'ms', 'mx', 'ds', 'v', 'a', 'q'].indexOf(name)

  it('accepts the good partial', async () => {
    const g = await goodPartial()
    merge(g)
    const table = new GroupTable(['utf8', 'int32'], [], undefined)
    table.mergeEncoded({ groups: g.groups, keys: g.keys, states: [] })
    expect(table.size).toBe(g.groups)
  })

  const cases: Array<[string, (g: any) => unknown]> = [
    ['not an object', () => 42],
    ['null', () => null],
    ['negative group count', g => ({ ...g, groups: -1 })],
    ['fractional group count', g => ({ ...g, groups: 1.5 })],
    ['huge group count', g => ({ ...g, groups: 1e9 })],
    ['group count disagrees with the keys', g => ({ ...g, groups: g.groups + 1 })],
    ['missing key column', g => ({ ...g, keys: g.keys.slice(1) })],
    ['key column too short', g => ({ ...g, keys: [g.keys[0].slice(1), g.keys[1]] })],
    ['key not a scalar', g => { g.keys[0][0] = { evil: true }; return g }],
    ['string key column given a number', g => { g.keys[0][0] = 12; return g }],
    ['number key column given a string', g => { g.keys[1][0] = 'twelve'; return g }],
    ['missing state column', g => ({ ...g, states: g.states.slice(1) })],
    ['state column too long', g => { g.states[0].push(1); return g }],
    ['count state not a number', g => { g.states[acc('n')][0] = 'many'; return g }],
    ['sum state not a triple', g => { g.states[acc('sx')][0] = [1, 2]; return g }],
    ['sum state with a string', g => { g.states[acc('sx')][0] = ['1', 0, 1]; return g }],
    ['min state of the wrong type', g => { g.states[acc('ms')][0] = 5; return g }],
    ['max state of the wrong type', g => { g.states[acc('mx')][0] = 'big'; return g }],
    ['distinct state not an array', g => { g.states[acc('ds')][0] = 'x'; return g }],
    ['distinct state with an object', g => { g.states[acc('ds')][0] = [{}]; return g }],
    ['var_pop state garbage', g => { g.states[acc('v')][0] = 'garbage'; return g }],
    ['approx_count_distinct state garbage', g => { g.states[acc('a')][0] = { registers: 'no' }; return g }],
    ['approx_quantile state garbage', g => { g.states[acc('q')][0] = new Uint8Array([255, 255, 255, 255, 255]); return g }]
  ]
  for (const [what, mutate] of cases) {
    it(what, async () => {
      const g = await goodPartial()
      await expectCode(() => merge(mutate(g)), 'BAD_PARTIAL')
    })
  }

  it('malformed JSON aggregation states', async () => {
    const p = prepare({ space: 't', aggs: { by: { terms: { field: 's' } }, p: { percentiles: { field: 'x' } } } })
    for (const states of [null, 5, 'x', {}, { by: 1 }, []]) {
      await expectCode(() => { new QueryMerger(p.split, columnType).add({ kind: 'aggs', states }) }, 'BAD_PARTIAL')
    }
  })
})

describe('fragmentShape', () => {
  const s = scan('t', ['id', 'x', 's'])
  const f = filter(s, binary('>', column('x'), literal(0)))

  it('takes the fragment shapes apart', () => {
    expect(fragmentShape(s).top).toEqual({ kind: 'rows', order: [], limit: null })
    expect(fragmentShape(f).filter).not.toBeNull()
    expect(fragmentShape(limit(sort(f, [sortKey(column('x'))]), 5)).top).toMatchObject({ kind: 'rows', limit: 5 })
    expect(fragmentShape(limit(f, 5)).top).toMatchObject({ kind: 'rows', order: [], limit: 5 })
    expect(fragmentShape(sort(s, [sortKey(column('x'))])).top).toMatchObject({ kind: 'rows', limit: null })
    expect(fragmentShape(aggregate(f, [{ expr: column('s'), alias: 's' }], [{ fn: 'count', args: [], alias: 'n' }])).top.kind).toBe('aggregate')
    expect(fragmentShape(topK(s, { column: 'v', vector: [1, 2, 3, 4], k: 3 })).top.kind).toBe('topk')
    for (const q of ['SELECT s, count(*) AS n FROM t GROUP BY s', 'SELECT id FROM t ORDER BY x LIMIT 3 OFFSET 4', 'SELECT * FROM t WHERE x > 0']) {
      expect(() => fragmentShape(prepare(q).split.fragment)).not.toThrow()
    }
  })

  const bad: Array<[string, PlanNode]> = [
    ['a projection', project(s, [{ expr: column('x'), alias: 'x' }])],
    ['a limit with an offset', limit(sort(s, [sortKey(column('x'))]), 5, 2)],
    ['two filters', filter(f, literal(true))],
    ['a sort over a sort', sort(sort(s, [sortKey(column('x'))]), [sortKey(column('id'))])],
    ['a limit over a limit', limit(limit(s, 3), 5)],
    ['a limit over a sort over a projection', limit(sort(project(s, [{ expr: column('x'), alias: 'x' }]), [sortKey(column('x'))]), 5)],
    ['an aggregate over a projection', aggregate(project(s, [{ expr: column('s'), alias: 's' }]), [{ expr: column('s'), alias: 's' }], [])],
    ['an aggregate over an aggregate', aggregate(aggregate(s, [{ expr: column('s'), alias: 's' }], []), [{ expr: column('s'), alias: 's' }], [])],
    ['top-K over a sort', topK(sort(s, [sortKey(column('x'))]), { column: 'v', vector: [1, 2, 3, 4], k: 3 })],
    ['a filter over a limit', filter(limit(s, 3), literal(true))],
    ['a spread', spread({ space: 't', seeds: ['a'], linksColumn: 'l' })],
    ['a whole query plan', prepare('SELECT id FROM t ORDER BY x LIMIT 3').plan]
  ]
  for (const [what, plan] of bad) {
    it(`rejects ${what} with BAD_FRAGMENT`, async () => {
      await expectCode(() => fragmentShape(plan), 'BAD_FRAGMENT')
      await expectCode(runFragment(plan, { source: sourceOf([]), columnType }), 'BAD_FRAGMENT')
    })
  }
})

// ------------------------------------------------------------------ 6. Arrow

describe('arrowStream', () => {
  const COLS: OutputColumn[] = [
    { name: 'id', type: 'utf8' }, { name: 'big', type: 'int64' }, { name: 'ts', type: 'timestamp' }, { name: 'd', type: 'date' },
    { name: 'b', type: 'bool' }, { name: 's', type: 'utf8' }, { name: 'x', type: 'float64' }, { name: 'i', type: 'int32' }
  ]
  const norm = (c: OutputColumn, v: unknown): unknown => {
    if (v === null || v === undefined) return null
    if (typeof v === 'bigint') return Number(v)
    if (v instanceof Date) return c.type === 'date' ? v.getTime() / 86_400_000 : v.getTime()
    if (c.type === 'date' && typeof v === 'number') return v / 86_400_000
    return v
  }
  function readBack (bytes: Uint8Array, cols: readonly OutputColumn[]): Row[] {
    const table = tableFromIPC(bytes)
    expect(table.schema.fields.map(f => f.name)).toEqual(cols.map(c => c.name))
    const out: Row[] = []
    for (let i = 0; i < table.numRows; i++) {
      const row: Row = {}
      for (const c of cols) row[c.name] = norm(c, table.getChild(c.name)!.get(i))
      out.push(row)
    }
    return out
  }
  const expected = (rows: readonly Row[], cols: readonly OutputColumn[]): Row[] => rows.map(row => Object.fromEntries(cols.map(c => [c.name, row[c.name] ?? null])))

  it('reads back the same values, NULLs included, across record batches', () => {
    for (const n of [0, 1, 17, 70_000]) {
      const rows = randomRows(rng(n + 1), n)
      const bytes = arrowStream(batchOf(rows), COLS)
      expect(readBack(bytes, COLS)).toEqual(expected(rows, COLS))
    }
  })

  it('a query answer as Arrow, with int64 counts and a NULL-typed column', async () => {
    const rows = randomRows(rng(71), 200)
    const res = await runLocal('SELECT s, count(*) AS n, sum(i) AS si, max(ts) AS mt, min(d) AS md, avg(x) AS ax FROM t GROUP BY s', randomPartitions(rng(72), rows, 3))
    const back = readBack(arrowStream(res.batch, res.columns), res.columns)
    expect(canonical(back, ['s'])).toEqual(canonical(res.rows, ['s']))
    const table = tableFromIPC(arrowStream(res.batch, res.columns))
    expect(String(table.schema.fields.find(f => f.name === 'n')!.type)).toBe('Int64')
    const nulls = arrowStream(batchFromRows([{}, {}], [{ name: 'z', type: 'null' as ValueType }]), [{ name: 'z', type: 'null' }])
    expect(tableFromIPC(nulls).getChild('z')!.toArray()).toHaveLength(2)
  })
})

describe('grouping by two keys: the dense table and its hand-over to the hash table', () => {
  it('counts every pair right while the dense table grows and after it gives way to the hash table', async () => {
    // First batches: few distinct values (the dense table); later ones: 3,000 × 3,000 possible
    // pairs (past 2^22 cells: the hash table takes over mid-query).
    const rows: Array<Record<string, unknown>> = []
    for (let i = 0; i < 2000; i++) rows.push({ id: `a${i}`, s: `k${i % 5}`, i: i % 7 })
    for (let i = 0; i < 20000; i++) rows.push({ id: `b${i}`, s: `k${(i * 7) % 3000}`, i: (i * 13) % 3000 })
    const batches = [rows.slice(0, 1000), rows.slice(1000, 2000), rows.slice(2000, 12000), rows.slice(12000)].map(batchOf)
    const got = await runLocal('SELECT s, i, count(*) AS n FROM t GROUP BY s, i', [batches.slice(0, 2), batches.slice(2)])
    const want = new Map<string, number>()
    for (const r of rows) want.set(`${r.s as string}|${r.i as number}`, (want.get(`${r.s as string}|${r.i as number}`) ?? 0) + 1)
    expect(got.rows.length).toBe(want.size)
    for (const r of got.rows) expect(r.n).toBe(want.get(`${r.s as string}|${r.i as number}`))
  })
})

describe('queries that name no column', () => {
  it('count(*) and constant select lists read no column and still count every row', async () => {
    const rows = Array.from({ length: 25 }, (_, i) => ({ id: `r${i}`, s: `k${i % 3}` }))
    const parts = [rows.slice(0, 10), rows.slice(10)].map(p => [batchOf(p)])
    const prepared = prepare('SELECT count(*) AS n FROM t')
    const scan = JSON.stringify(prepared.split.fragment).match(/"columns":\[[^\]]*\]/)?.[0]
    expect(scan).toBe('"columns":[]')
    expect((await runLocal('SELECT count(*) AS n FROM t', parts)).rows).toEqual([{ n: 25 }])
    expect((await runLocal('SELECT 1 AS one FROM t LIMIT 3', parts)).rows).toEqual([{ one: 1 }, { one: 1 }, { one: 1 }])
  })
})
