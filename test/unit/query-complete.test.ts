import { afterAll, describe, expect, it } from 'vitest'
import { batchFromRows, shareBatch, valueAt, vectorFromValues, type ColumnBatch, type ValueType } from '../../src/columnar/index.js'
import {
  COMPLETE_ORDER, FragmentPool, compareValues, completion, defaultScale, fillMean, fillVote, keepBest, runFragment, scoreRecords, similarity, splitPlan,
  type ScoringTerm
} from '../../src/query/exec/index.js'
import { parseJsonQuery } from '../../src/query/json/index.js'
import { complete, filter, binary, column, literal, planEquals, printPlan, scan } from '../../src/query/model/index.js'
import { parseSql, SqlError } from '../../src/query/sql/index.js'
import { fillColumns, givenValue } from '../../src/query/validate/index.js'
import { answerBody, answerJson, explainText, planQuery, PeerHealth, type QueryAnswer } from '../../src/query/service/index.js'
import { batchOf, columnType, prepare, randomRows, runLocal, randomPartitions, rng, sourceOf, space, type Row } from './query-exec-helpers.js'

const term = (value: ScoringTerm['value'], opts: Partial<ScoringTerm> = {}): ScoringTerm => ({ column: 'c', value, weight: 1, scale: null, ...opts })
const sims = (type: string, values: unknown[], t: ScoringTerm): number[] => Array.from(similarity(vectorFromValues(type as never, values), t))

describe('completion: per-column similarity', () => {
  it('vectors: cosine mapped to (1 + cos) / 2; NULL and zero vectors are 0', () => {
    const s = sims('vector<2>', [[1, 0], [0, 1], [-1, 0], [2, 2], null, [0, 0]], term([1, 0]))
    expect(s.slice(0, 3)).toEqual([1, 0.5, 0])
    expect(s[3]).toBeCloseTo((1 + Math.SQRT1_2) / 2, 6)
    expect(s.slice(4)).toEqual([0, 0])
    expect(sims('vector<2>', [[1, 0]], term([0, 0]))).toEqual([0])
  })

  it('numbers: exp(-|a - b| / scale), the scale given or a tenth of the given value, NULL 0', () => {
    expect(sims('int32', [31, 41, 21, null], term(31, { scale: 10 }))).toEqual([1, Math.exp(-1), Math.exp(-1), 0])
    expect(sims('float64', [100, 110, -100], term(100))).toEqual([1, Math.exp(-1), Math.exp(-20)])
    expect(defaultScale(100)).toBe(10)
    expect(defaultScale(-5)).toBe(0.5)
    // A given 0 has no size: the scale is tiny, only an exact match counts.
    expect(defaultScale(0)).toBe(1e-9)
    expect(sims('float64', [0, 1e-6], term(0))).toEqual([1, Math.exp(-1000)])
  })

  it('text, booleans, timestamps, dates and lists: 1 when equal, else 0; NULL 0', () => {
    expect(sims('utf8', ['Paris', 'paris', null, 'Paris'], term('Paris'))).toEqual([1, 0, 0, 1])
    expect(sims('bool', [true, false, null], term(true))).toEqual([1, 0, 0])
    expect(sims('bool', [true, false, null], term(false))).toEqual([0, 1, 0])
    expect(sims('timestamp', [1000, 1001, null], term(1000))).toEqual([1, 0, 0])
    expect(sims('list<utf8>', [['a', 'b'], ['b', 'a'], ['a'], null], term(['a', 'b']))).toEqual([1, 0, 0, 0])
  })

  it('given values are read as the column stores them: ISO timestamps, dates, float32', () => {
    expect(givenValue('timestamp', '2024-01-01T00:00:00Z')).toEqual({ ok: Date.UTC(2024, 0, 1) })
    expect(givenValue('date', '1970-01-11')).toEqual({ ok: 10 })
    expect(givenValue('float32', 0.1)).toEqual({ ok: Math.fround(0.1) })
    expect(givenValue('int64', '1234567890123456789')).toEqual({ ok: 1234567890123456789 })
    expect(givenValue('int32', 1.5)).toHaveProperty('bad')
    expect(givenValue('utf8', 3)).toHaveProperty('bad')
    expect(givenValue('vector<3>', [1, 2])).toHaveProperty('bad')
  })

  it('the score is the weighted mean of the similarities; a weight of 0 leaves a column out', () => {
    const batch = batchFromRows([
      { id: 'a', city: 'Paris', age: 31 },
      { id: 'b', city: 'Paris', age: 41 },
      { id: 'c', city: 'Rome', age: 31 },
      { id: 'd', city: null, age: null }
    ], [{ name: 'id', type: 'utf8' }, { name: 'city', type: 'utf8' }, { name: 'age', type: 'int32' }])
    const terms: ScoringTerm[] = [{ column: 'city', value: 'Paris', weight: 2, scale: null }, { column: 'age', value: 31, weight: 1, scale: 10 }]
    expect(Array.from(scoreRecords(terms, batch))).toEqual([1, (2 + Math.exp(-1)) / 3, 1 / 3, 0])
    const cityOnly: ScoringTerm[] = [terms[0]!, { ...terms[1]!, weight: 0 }]
    expect(Array.from(scoreRecords(cityOnly, batch))).toEqual([1, 1, 0, 0])
  })
})

describe('completion: the best K (the top-K heap of recall, with ties by id)', () => {
  const rowsBatch = (ids: string[]): ColumnBatch => batchFromRows(ids.map(id => ({ id })), [{ name: 'id', type: 'utf8' }])

  it('keeps the K best by score, ties going to the smaller id, whatever the order rows arrive in', () => {
    for (const order of [['e', 'd', 'c', 'b', 'a'], ['a', 'b', 'c', 'd', 'e'], ['c', 'a', 'e', 'b', 'd']]) {
      const best = keepBest({ k: 3, lowerIsBetter: false, tieColumn: 'id', order: COMPLETE_ORDER })
      // Every row scores 0.5 but 'd' (0.9); each arrives in its own batch.
      for (const id of order) best.push(rowsBatch([id]), Float64Array.of(id === 'd' ? 0.9 : 0.5))
      const out = best.result()
      const column = (name: string): unknown[] => [...Array(out.length).keys()].map(i => valueAt(out.columns.get(name)!, i))
      expect(column('id'), order.join('')).toEqual(['d', 'a', 'b'])
      expect(column('_score')).toEqual([0.9, 0.5, 0.5])
    }
  })

  it('leaves out rows scored NaN and answers fewer than K when there are fewer rows', () => {
    const best = keepBest({ k: 5, lowerIsBetter: false, tieColumn: 'id', order: COMPLETE_ORDER })
    best.push(rowsBatch(['x', 'y', 'z']), Float64Array.of(0.1, NaN, 0.3))
    expect(best.result().length).toBe(2)
  })
})

describe('completion: filling the missing columns', () => {
  it('a float column: the score-weighted mean; confidence the weight within a tenth of it; support how many', () => {
    const f = fillMean([{ value: 100, weight: 1 }, { value: 104, weight: 1 }, { value: 130, weight: 0.5 }, { value: null, weight: 1 }])
    expect(f.value).toBeCloseTo((100 + 104 + 65) / 2.5, 12)
    // Within 10.76 of 107.6: 100 and 104, not 130.
    expect(f.confidence).toBeCloseTo(2 / 2.5, 12)
    expect(f.support).toBe(2)
    expect(fillMean([{ value: 5, weight: 1 }, { value: 5, weight: 3 }])).toEqual({ value: 5, confidence: 1, support: 2 })
  })

  it('every other column: a score-weighted vote; ties go to the smaller value', () => {
    expect(fillVote([{ value: 'a', weight: 0.5 }, { value: 'b', weight: 0.4 }, { value: 'b', weight: 0.3 }, { value: null, weight: 0.9 }]))
      .toEqual({ value: 'b', confidence: 0.7 / 1.2, support: 2 })
    expect(fillVote([{ value: 'b', weight: 0.5 }, { value: 'a', weight: 0.5 }])).toEqual({ value: 'a', confidence: 0.5, support: 1 })
    expect(fillVote([{ value: 3, weight: 1 }, { value: 2, weight: 1 }, { value: 10, weight: 1 }]).value).toBe(2)
    expect(fillVote([{ value: true, weight: 1 }, { value: false, weight: 1 }]).value).toBe(false)
    expect(fillVote([{ value: ['b'], weight: 1 }, { value: ['a', 'z'], weight: 1 }, { value: ['b'], weight: 0.5 }])).toEqual({ value: ['b'], confidence: 0.6, support: 2 })
    // A number and its digits as text are different values.
    expect(fillVote([{ value: 1, weight: 1 }, { value: '1', weight: 1.5 }]).value).toBe('1')
    expect(compareValues('B', 'a')).toBeLessThan(0)
  })

  it('no neighbour with a value (or with any weight) fills null with confidence 0', () => {
    const nothing = { value: null, confidence: 0, support: 0 }
    expect(fillVote([{ value: null, weight: 1 }])).toEqual(nothing)
    expect(fillMean([{ value: null, weight: 1 }])).toEqual(nothing)
    expect(fillVote([])).toEqual(nothing)
    expect(fillVote([{ value: 'a', weight: 0 }])).toEqual(nothing)
    expect(fillMean([{ value: 3, weight: 0 }])).toEqual(nothing)
  })

  it('fills every column not given but id and vectors by default, or those named, given values first', () => {
    const columns = space.schema.map(c => ({ name: c.name, type: c.type })).concat({ name: '_score', type: 'float64' })
    const node = complete(scan('t'), { terms: [{ column: 's', value: 'a' }, { column: 'x', value: 10 }] })
    expect(fillColumns(node, columns).map(c => c.name)).toEqual(['s2', 'i', 'b', 'big', 'ts', 'd'])
    const named = complete(scan('t'), { terms: [{ column: 's', value: 'a' }], fill: ['x', 'b'] })
    const rows = [
      { id: 'r1', s: 'a', x: 1, b: true, _score: 0.75 },
      { id: 'r2', s: 'a', x: 1.05, b: false, _score: 0.25 }
    ]
    const c = completion(named, rows, columns)
    expect(Object.keys(c.record)).toEqual(['s', 'x', 'b'])
    expect(c.record).toEqual({ s: 'a', x: 0.75 + 1.05 * 0.25, b: true })
    expect(c.confidence).toEqual({ x: 1, b: 0.75 })
    expect(c.support).toEqual({ x: 2, b: 1 })
  })
})

describe('completion: front ends, EXPLAIN and the split', () => {
  const body = { record: { s: 'a', x: 31, v: [0.1, 0.2, 0.3, 0.4] }, k: 7, fill: ['i', 'b'], weights: { s: 2 }, scales: { x: 10 } }

  it('reads a JSON completion into Complete(Filter(Scan)) and prints it', () => {
    const p = parseJsonQuery({ space: 't', filter: { term: { s2: 'x' } }, complete: body }).plan
    expect(printPlan(p)).toBe([
      "Complete 7 like (s = 'a' weight 2, x = 31 scale 10, v = [0.1, 0.2, 0.3, 0.4]) fill (i, b)",
      "  Filter s2 = 'x'",
      '    Scan t'
    ].join('\n'))
    expect(printPlan(parseJsonQuery({ space: 't', complete: { record: { s: 'a' } } }).plan)).toBe("Complete 5 like (s = 'a')\n  Scan t")
  })

  it('reads SELECT * FROM complete(space, record, k) [WHERE] into the same plan as JSON', () => {
    const sql = parseSql(`SELECT * FROM complete('t', '{"s": "a", "x": 31}', 3) WHERE s2 = 'x'`).plan
    const json = parseJsonQuery({ space: 't', filter: { term: { s2: 'x' } }, complete: { record: { s: 'a', x: 31 }, k: 3 } }).plan
    expect(planEquals(sql, json)).toBe(true)
    expect(planEquals(sql, complete(filter(scan('t'), binary('=', column('s2'), literal('x'))), { terms: [{ column: 's', value: 'a' }, { column: 'x', value: 31 }], k: 3 }))).toBe(true)
    expect(planEquals(parseSql(`SELECT * FROM complete('t', '{"s": "it''s"}')`).plan, complete(scan('t'), { terms: [{ column: 's', value: "it's" }] }))).toBe(true)
  })

  it('refuses in SQL what would reshape the answer, and a record that is not JSON, naming where', () => {
    const refused = (text: string): SqlError => {
      try { parseSql(text) } catch (err) { if (err instanceof SqlError) return err; throw err }
      throw new Error(`expected an SqlError for ${text}`)
    }
    expect(refused(`SELECT id FROM complete('t', '{"s": "a"}', 3)`).message).toContain('a select list other than *')
    expect(refused(`SELECT * FROM complete('t', '{"s": "a"}', 3) ORDER BY id`).message).toContain('ORDER BY')
    expect(refused(`SELECT * FROM complete('t', '{"s": "a"}', 3) LIMIT 2`).message).toContain('LIMIT')
    const notJson = refused(`SELECT * FROM complete('t', '{s: a}', 3)`)
    expect(notJson.message).toContain('the record is not JSON')
    expect(notJson.column).toBe(15)
    expect(refused(`SELECT * FROM complete('t', '{"s": null}', 3)`).message).toContain('complete.record.s: must be a value')
    expect(refused(`SELECT * FROM complete('t', '{"s": "a"}', 'x')`).message).toContain('k must be an integer')
  })

  it('EXPLAIN shows the Complete node on each partition and the merge that fills the record', () => {
    const p = parseJsonQuery({ space: 't', complete: { record: { s: 'a' }, k: 4 } }).plan
    const split = splitPlan(p, space.schema.map(c => c.name))
    expect(split.merge).toBe('complete')
    expect(split.perPartitionLimit).toBe(4)
    const qp = planQuery(space, split, { self: 'me', partitionOf: () => 0, readReplicas: () => ['me'], isReachable: () => true, isSuspect: () => false, health: new PeerHealth(5, 10) })
    const text = explainText(qp, p => p)
    expect(text).toContain(`  Complete 4 like (s = 'a')\n    Scan t [${space.schema.map(c => c.name).join(', ')}]`)
    expect(text).toContain('Final (on the coordinator): merge top-K by score, fill the missing columns')
  })
})

describe('completion through the split pipeline (partitions, wire, merge)', () => {
  const rows: Row[] = [
    { id: 'r1', s: 'a', x: 10, i: 1, b: true },
    { id: 'r2', s: 'a', x: 12, i: 1, b: false },
    { id: 'r3', s: 'b', x: 10, i: 2, b: true },
    { id: 'r4', s: null, x: null, i: 2, b: null },
    { id: 'r5', s: 'c', x: 50, i: 3, b: false }
  ]

  it('answers the K nearest, best first, with every column and _score, and the filled record', async () => {
    const res = await runLocal({ space: 't', complete: { record: { s: 'a', x: 10 }, k: 3, fill: ['i', 'b', 's2'] } }, [[batchOf(rows.slice(0, 2))], [batchOf(rows.slice(2))]])
    const w2 = (1 + Math.exp(-2)) / 2
    expect(res.rows.map(r => [r.id, r._score])).toEqual([['r1', 1], ['r2', w2], ['r3', 0.5]])
    expect(Object.keys(res.rows[0]!)).toEqual([...space.schema.map(c => c.name), '_score'])
    const total = 1 + w2 + 0.5
    expect(res.completion).toEqual({
      record: { s: 'a', x: 10, i: 1, b: true, s2: null },
      confidence: { i: (1 + w2) / total, b: 1.5 / total, s2: 0 },
      support: { i: 2, b: 2, s2: 0 }
    })
  })

  it('the streamed JSON answer carries the completion after the rows, as JSON.stringify of the whole would', async () => {
    const res = await runLocal({ space: 't', complete: { record: { s: 'a', x: 10 }, k: 3 } }, [[batchOf(rows)]])
    const a: QueryAnswer = Object.assign(res, { coverage: { total: 1, answered: 1, missing: [] }, confidence: 1, tookMs: 1, strategy: 'Broadcast' })
    const text = [...answerJson(a, 2)].join('')
    expect(text).toBe(JSON.stringify(answerBody(a)))
    expect(Object.keys(JSON.parse(text))).toEqual(['columns', 'rows', 'completion', 'coverage', 'confidence', 'tookMs'])
    expect(JSON.parse(text).completion.record.i).toBe(1)
  })

  it('equal scores go to the smaller id, across partitions', async () => {
    const many = Array.from({ length: 40 }, (_, n) => ({ id: `t${String(n).padStart(2, '0')}`, s: n % 2 === 0 ? 'a' : 'b' }))
    const parts = randomPartitions(rng(5), many, 6)
    const res = await runLocal({ space: 't', complete: { record: { s: 'a' }, k: 4 } }, parts)
    expect(res.rows.map(r => r.id)).toEqual(['t00', 't02', 't04', 't06'])
    const none = await runLocal({ space: 't', filter: { term: { s: 'zzz' } }, complete: { record: { s: 'a' }, k: 4 } }, parts)
    expect(none.rows).toEqual([])
    expect(none.completion!.confidence.s2).toBe(0)
  })
})

describe('completion on a worker thread', () => {
  // The worker runs compiled code: npm test compiles before it runs the tests.
  const pool = new FragmentPool(1, new URL('../../dist/src/query/exec/worker.js', import.meta.url), 1)
  afterAll(async () => { await pool.close() })

  it('gives the same best K on a worker as on the calling thread', async () => {
    const rows = randomRows(rng(9), 3000)
    const { split } = prepare({ space: 't', complete: { record: { s: 'a', x: 12.5, ts: '2024-01-05T00:00:00Z', v: [1, 0, 0, 0] }, k: 9, weights: { v: 2 } } })
    const batches = [batchOf(rows.slice(0, 1500)), batchOf(rows.slice(1500))].map(shareBatch)
    const types: Array<[string, ValueType]> = space.schema.map(c => [c.name, c.type])
    const job = { plan: split.fragment, batches, columnType, types, budgetBytes: 1 << 30 }
    const [a, b] = await Promise.all([pool.run(job), pool.run(job)])
    expect(pool.counters.onWorkers).toBeGreaterThan(0)
    const inline = await runFragment(split.fragment, { source: sourceOf(batches), columnType })
    expect(a!.output).toEqual(inline.output)
    expect(b!.output).toEqual(inline.output)
  })
})
