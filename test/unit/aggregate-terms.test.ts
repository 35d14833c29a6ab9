import { describe, it, expect } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationLimitError, createAggregator, TermsAggregator, type TermsResult } from '../../src/query/aggregate/index.js'
import { batchOf, mergeRandomly, splitRows, wire } from './aggregate-helpers.js'

/** Zipf-ish keys: key k with weight 1/(k+1)^s, some numeric, some strings. */
function zipf (rng: SeededRandom, n: number, keys: number, s: number): Array<string | number | null> {
  const w = Array.from({ length: keys }, (_, k) => 1 / Math.pow(k + 1, s))
  const cum: number[] = []
  let t = 0
  for (const x of w) { t += x; cum.push(t) }
  return Array.from({ length: n }, () => {
    if (rng.int(50) === 0) return null
    const u = rng.next() * t
    let lo = 0, hi = keys - 1
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cum[mid]! < u) lo = mid + 1; else hi = mid }
    return lo % 3 === 0 ? lo : `k${lo}`
  })
}

function trueCounts (col: Array<string | number | null>): Map<string | number, number> {
  const m = new Map<string | number, number>()
  for (const v of col) if (v !== null) m.set(v, (m.get(v) ?? 0) + 1)
  return m
}

describe('terms', () => {
  it('exact mode equals the single-node result for any split, with nested sub-aggregations', () => {
    const rng = new SeededRandom(21)
    for (let trial = 0; trial < 20; trial++) {
      const n = 1 + rng.int(3000)
      const k = zipf(rng, n, 1 + rng.int(300), 1.1)
      const v = Array.from({ length: n }, () => rng.int(1000))
      const b = batchOf({ k, v })
      const agg = createAggregator({ kind: 'terms', field: 'k', size: 1 + rng.int(20), exact: true, aggs: { s: { kind: 'sum', field: 'v' }, m: { kind: 'max', field: 'v' }, u: { kind: 'cardinality', field: 'v' } } })
      const single = agg.init()
      agg.collect(single, b)
      const want = agg.finalize(single) as TermsResult
      const parts = splitRows(rng, n, 1 + rng.int(8)).map(rows => { const s = agg.init(); agg.collect(s, b, rows); return wire(agg, s) })
      const got = agg.finalize(mergeRandomly(rng, parts, (x, y) => agg.merge(x, y))) as TermsResult
      expect(got).toEqual(want)
      expect(got.doc_count_error_upper_bound).toBe(0)
      // and the counts are the true ones
      const truth = trueCounts(k)
      for (const bk of got.buckets) expect(bk.doc_count).toBe(truth.get(bk.key))
      expect(got.sum_other_doc_count).toBe([...truth.values()].reduce((a, c) => a + c, 0) - got.buckets.reduce((a, c) => a + c.doc_count, 0))
    }
  })

  it('approximate mode: every true count lies within [doc_count, doc_count + error]', () => {
    const rng = new SeededRandom(22)
    let sawError = false
    for (let trial = 0; trial < 60; trial++) {
      const n = 200 + rng.int(5000)
      const k = zipf(rng, n, 20 + rng.int(500), 0.3 + rng.next())
      const b = batchOf({ k })
      const size = 1 + rng.int(10)
      const agg = new TermsAggregator('k', undefined, { size, shardSize: size + rng.int(10) })
      const parts = splitRows(rng, n, 1 + rng.int(8)).map(rows => { const s = agg.init(); agg.collect(s, b, rows); return wire(agg, s) })
      // two-level merge: some merged states are shipped again (re-reduced) before the final merge
      const groups: typeof parts[] = [[], []]
      for (const p of parts) groups[rng.int(2)]!.push(p)
      const mids = groups.filter(g => g.length > 0).map(g => wire(agg, mergeRandomly(rng, g, (x, y) => agg.merge(x, y))))
      const res = agg.finalize(mergeRandomly(rng, mids, (x, y) => agg.merge(x, y)))
      const truth = trueCounts(k)
      expect(res.buckets.length).toBe(Math.min(size, truth.size))
      for (const bk of res.buckets) {
        const t = truth.get(bk.key)!
        expect(t).toBeGreaterThanOrEqual(bk.doc_count)
        expect(t).toBeLessThanOrEqual(bk.doc_count + bk.doc_count_error_upper_bound)
        expect(bk.doc_count_error_upper_bound).toBeLessThanOrEqual(res.doc_count_error_upper_bound)
        if (bk.doc_count_error_upper_bound > 0) sawError = true
      }
      // any key that made no bucket and was seen nowhere has at most the overall bound
      const total = [...truth.values()].reduce((a, c) => a + c, 0)
      expect(res.sum_other_doc_count).toBe(total - res.buckets.reduce((a, c) => a + c.doc_count, 0))
    }
    expect(sawError).toBe(true)
  })

  it('a partition ships its top shardSize keys and the next count as its bound', () => {
    const agg = new TermsAggregator('k', undefined, { size: 2, shardSize: 3 })
    const s = agg.init()
    for (const [key, c] of [['a', 10], ['b', 8], ['c', 5], ['d', 4], ['e', 1]] as const) for (let i = 0; i < c; i++) agg.add(s, key)
    const enc = agg.encode(s) as unknown[]
    expect(enc.slice(0, 5)).toEqual([28, 4, ['a', 'b', 'c'], [10, 8, 5], [0, 0, 0]])
    const other = agg.init()
    for (let i = 0; i < 9; i++) agg.add(other, 'd')
    const res = agg.finalize(agg.merge(agg.decode(enc), wire(agg, other)))
    expect(res.buckets).toEqual([
      { key: 'd', doc_count: 9, doc_count_error_upper_bound: 4 },
      { key: 'a', doc_count: 10, doc_count_error_upper_bound: 0 }
    ].sort((x, y) => y.doc_count - x.doc_count))
    expect(res.doc_count_error_upper_bound).toBe(4)
    expect(res.sum_other_doc_count).toBe(37 - 19)
  })

  it('exact mode past maxBuckets is a clear error; maxTerms bounds one partition', () => {
    const agg = new TermsAggregator('k', undefined, { exact: true, maxBuckets: 5 })
    const s = agg.init()
    for (let i = 0; i < 6; i++) agg.add(s, i)
    expect(() => agg.encode(s)).toThrow(AggregationLimitError)
    expect(() => agg.encode(s)).toThrow(/maxBuckets 5 in exact mode/)
    const small = new TermsAggregator('k', undefined, { maxTerms: 3 })
    const t = small.init()
    expect(() => { for (let i = 0; i < 4; i++) small.add(t, i) }).toThrow(/maxTerms/)
  })

  it('decode validates keys, lengths and sizes', () => {
    const agg = new TermsAggregator('k', undefined, { size: 2, shardSize: 3 })
    expect(() => agg.decode([1, 0, ['a', 'a'], [1, 0], [0, 0], []])).toThrow(/duplicate/)
    expect(() => agg.decode([1, 0, ['a', 'b', 'c', 'd'], [1, 0, 0, 0], [0, 0, 0, 0], []])).toThrow(/limit/)
    expect(() => agg.decode([1, 0, [{}], [1], [0], []])).toThrow(/keys must be/)
    expect(() => agg.decode([1, 0, ['a'], [5], [0], []])).toThrow(/exceed the total/)
    expect(() => agg.decode([1, 0, ['a'], [1, 2], [0], []])).toThrow(/lengths/)
    expect(() => agg.decode([1, 0, ['__proto__'], [1], [0], []])).not.toThrow()
    const st = agg.decode([1, 0, ['__proto__'], [1], [0], []])
    expect(agg.finalize(st).buckets[0]!.key).toBe('__proto__')
    expect(({} as Record<string, unknown>).doc_count).toBeUndefined()
  })
})
