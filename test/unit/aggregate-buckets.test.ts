import { describe, it, expect } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationError, AggregationLimitError, AggregationSet, createAggregator, type HistogramResult, type RangeResult, type FiltersResult } from '../../src/query/aggregate/index.js'
import { batchOf, mergeRandomly, splitRows, wire } from './aggregate-helpers.js'

describe('bucket aggregations', () => {
  it('histogram: keys, offset, gap filling with min_doc_count 0, nested sub-aggregations', () => {
    const agg = createAggregator({ kind: 'histogram', field: 'x', interval: 10, aggs: { s: { kind: 'sum', field: 'x' } } })
    const s = agg.init()
    agg.collect(s, batchOf({ x: [1, 5, 12, 41, -3, null, 'a'] }))
    const r = agg.finalize(s) as HistogramResult
    expect(r.buckets.map(b => [b.key, b.doc_count, (b.s as { value: number }).value])).toEqual([
      [-10, 1, -3], [0, 2, 6], [10, 1, 12], [20, 0, 0], [30, 0, 0], [40, 1, 41]
    ])
    const sparse = createAggregator({ kind: 'histogram', field: 'x', interval: 10, offset: 5, minDocCount: 1 })
    const t = sparse.init()
    sparse.collect(t, batchOf({ x: [1, 5, 12, 41] }))
    expect((sparse.finalize(t) as HistogramResult).buckets.map(b => [b.key, b.doc_count])).toEqual([[-5, 1], [5, 2], [35, 1]])
  })

  it('histogram refuses more than maxBuckets, also when filling gaps', () => {
    const agg = createAggregator({ kind: 'histogram', field: 'x', interval: 1, maxBuckets: 10 })
    const s = agg.init()
    agg.collect(s, batchOf({ x: [0, 1000] }))
    expect(() => agg.finalize(s)).toThrow(AggregationLimitError)
    const t = agg.init()
    expect(() => agg.collect(t, batchOf({ x: Array.from({ length: 11 }, (_, i) => i) }))).toThrow(/maxBuckets 10/)
  })

  it('date_histogram: fixed and calendar intervals in UTC, with key_as_string', () => {
    const ts = ['2024-01-31T23:59:59Z', '2024-02-01T00:00:00Z', '2024-02-29T12:00:00Z', '2024-04-15T00:00:00Z'].map(d => new Date(d))
    const month = createAggregator({ kind: 'date_histogram', field: 't', interval: 'month' })
    const s = month.init()
    month.collect(s, batchOf({ t: ts }))
    expect((month.finalize(s) as HistogramResult).buckets.map(b => [b.key_as_string, b.doc_count])).toEqual([
      ['2024-01-01T00:00:00.000Z', 1], ['2024-02-01T00:00:00.000Z', 2], ['2024-03-01T00:00:00.000Z', 0], ['2024-04-01T00:00:00.000Z', 1]
    ])
    const day = createAggregator({ kind: 'date_histogram', field: 't', interval: '1d', minDocCount: 1 })
    const d = day.init()
    day.collect(d, batchOf({ t: ts.map(x => x.getTime()) }))
    expect((day.finalize(wire(day, d)) as HistogramResult).buckets.map(b => b.key_as_string)).toEqual([
      '2024-01-31T00:00:00.000Z', '2024-02-01T00:00:00.000Z', '2024-02-29T00:00:00.000Z', '2024-04-15T00:00:00.000Z'
    ])
    expect(() => createAggregator({ kind: 'date_histogram', field: 't', interval: '1 fortnight' })).toThrow(AggregationError)
    expect(() => day.decode([[1], [1], []])).toThrow(/grid/)
  })

  it('range: from inclusive, to exclusive, overlapping ranges, sub-aggregations', () => {
    const agg = createAggregator({ kind: 'range', field: 'x', ranges: [{ to: 10 }, { from: 10, to: 20 }, { key: 'big', from: 15 }], aggs: { c: { kind: 'value_count', field: 'x' } } })
    const s = agg.init()
    agg.collect(s, batchOf({ x: [0, 9.99, 10, 15, 19, 20, 100, null] }))
    expect((agg.finalize(wire(agg, s)) as RangeResult).buckets).toEqual([
      { key: '*-10', to: 10, doc_count: 2, c: { value: 2 } },
      { key: '10-20', from: 10, to: 20, doc_count: 3, c: { value: 3 } },
      { key: 'big', from: 15, doc_count: 4, c: { value: 4 } }
    ])
  })

  it('filters: caller-supplied row predicates, nested terms', () => {
    const cols = { x: [1, 2, 3, 4, 5, 6], k: ['a', 'b', 'a', 'b', 'a', 'c'] }
    const x = cols.x
    const agg = createAggregator({ kind: 'filters', filters: { even: r => x[r]! % 2 === 0, big: r => x[r]! > 3 }, aggs: { ks: { kind: 'terms', field: 'k', exact: true } } })
    const s = agg.init()
    agg.collect(s, batchOf(cols))
    const r = agg.finalize(wire(agg, s)) as FiltersResult
    expect(r.buckets.map(b => [b.key, b.doc_count, (b.ks as { buckets: Array<{ key: string, doc_count: number }> }).buckets.map(t => `${t.key}:${t.doc_count}`)])).toEqual([
      ['even', 3, ['b:2', 'c:1']], ['big', 3, ['a:1', 'b:1', 'c:1']]
    ])
    const byName = createAggregator({ kind: 'filters', filters: { p: null, q: null } })
    const t = byName.init()
    byName.add(t, ['p', 'q']); byName.add(t, 'q')
    expect((byName.finalize(t) as FiltersResult).buckets.map(b => b.doc_count)).toEqual([1, 2])
  })

  it('rejects reserved or dangerous sub-aggregation names and over-deep nesting', () => {
    expect(() => new AggregationSet({ doc_count: { kind: 'count' } })).toThrow(/invalid sub-aggregation name/)
    expect(() => new AggregationSet(JSON.parse('{"__proto__": {"kind": "count"}}'))).toThrow(/invalid/)
    let spec: any = { kind: 'count' }
    for (let i = 0; i < 12; i++) spec = { kind: 'histogram', field: 'x', interval: 1, aggs: { a: spec } }
    expect(() => createAggregator(spec)).toThrow(/deeper/)
    expect(() => createAggregator({ kind: 'nope' } as any)).toThrow(/a field is required|unknown/)
  })

  it('random splits of nested bucket trees merge to the single-node result', () => {
    const rng = new SeededRandom(77)
    for (let trial = 0; trial < 15; trial++) {
      const n = rng.int(3000)
      const x = Array.from({ length: n }, () => rng.int(20) === 0 ? null : Math.round((rng.next() * 200 - 50) * 8) / 8)
      const t = Array.from({ length: n }, () => Date.UTC(2024, 0, 1) + rng.int(400 * 86_400_000))
      const k = Array.from({ length: n }, () => `g${rng.int(12)}`)
      const b = batchOf({ x, t, k })
      const set = new AggregationSet({
        h: { kind: 'histogram', field: 'x', interval: 25, aggs: { st: { kind: 'stats', field: 'x' }, by: { kind: 'terms', field: 'k', exact: true, size: 5 } } },
        months: { kind: 'date_histogram', field: 't', interval: 'month', aggs: { u: { kind: 'cardinality', field: 'k' }, p: { kind: 'percentiles', field: 'x', percents: [50, 90] } } },
        weeks: { kind: 'date_histogram', field: 't', interval: '1w', minDocCount: 1 },
        r: { kind: 'range', field: 'x', ranges: [{ to: 0 }, { from: 0, to: 100 }, { from: 50 }], aggs: { m: { kind: 'min', field: 'x' } } },
        f: { kind: 'filters', filters: { pos: r => (x[r] ?? 0) > 0, g1: r => k[r] === 'g1' }, aggs: { h: { kind: 'histogram', field: 'x', interval: 50, minDocCount: 1 } } }
      })
      const single = set.init()
      set.collect(single, b)
      const want = set.finalize(single)
      const parts = splitRows(rng, n, 1 + rng.int(8)).map(rows => { const s = set.init(); set.collect(s, b, rows); return wire(set, s) })
      const got = set.finalize(mergeRandomly(rng, parts, (p, q) => set.merge(p, q)))
      // sums here are of multiples of 1/8 and so exact; everything else is exact by construction
      expect(got).toEqual(want)
    }
  })
})
