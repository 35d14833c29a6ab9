import { describe, it, expect } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationDecodeError, createAggregator, ExtendedStatsAggregator } from '../../src/query/aggregate/index.js'
import { batchOf, mergeRandomly, relErr, splitRows, wire } from './aggregate-helpers.js'

describe('metric aggregations', () => {
  const col = [3, null, -1.5, 10, undefined, NaN, 7, 2n, new Date(5)]
  const batch = batchOf({ x: col })

  it('compute count, value_count, sum, min, max, avg, stats over a batch (missing values skipped)', () => {
    const run = (spec: Parameters<typeof createAggregator>[0]): unknown => {
      const a = createAggregator(spec)
      const s = a.init()
      a.collect(s, batch)
      return a.finalize(s)
    }
    expect(run({ kind: 'count' })).toEqual({ value: 9 })
    expect(run({ kind: 'value_count', field: 'x' })).toEqual({ value: 6 })
    expect(run({ kind: 'sum', field: 'x' })).toEqual({ value: 25.5 })
    expect(run({ kind: 'min', field: 'x' })).toEqual({ value: -1.5 })
    expect(run({ kind: 'max', field: 'x' })).toEqual({ value: 10 })
    expect(run({ kind: 'avg', field: 'x' })).toMatchObject({ value: 25.5 / 6 })
    expect(run({ kind: 'stats', field: 'x' })).toEqual({ count: 6, min: -1.5, max: 10, sum: 25.5, avg: 25.5 / 6 })
    expect(run({ kind: 'min', field: 'missing' })).toEqual({ value: null })
    expect(run({ kind: 'avg', field: 'missing' })).toMatchObject({ value: null, count: 0 })
  })

  it('treats NaN and ±Infinity as missing in numeric aggregations', () => {
    const b = batchOf({ x: [1, Infinity, -Infinity, NaN, 2] })
    for (const kind of ['sum', 'stats', 'extended_stats', 'min', 'max'] as const) {
      const a = createAggregator({ kind, field: 'x' })
      const s = a.init()
      a.collect(s, b)
      a.add(s, Infinity)
      const r = a.finalize(wire(a, s)) as { value?: number, sum?: number, count?: number }
      if (kind === 'sum') expect(r.value).toBe(3)
      else if (kind === 'min') expect(r.value).toBe(1)
      else if (kind === 'max') expect(r.value).toBe(2)
      else expect([r.count, r.sum]).toEqual([2, 3])
    }
  })

  it('addColumn honours a selection and typed arrays', () => {
    const a = createAggregator({ kind: 'sum', field: 'x' })
    const s = a.init()
    a.addColumn(s, new Float64Array([1, 2, 4, 8]), Uint32Array.from([1, 3]))
    expect(a.finalize(s)).toEqual({ value: 10 })
  })

  it('extended_stats is exact around 1e9 with tiny variance where the sum-of-squares formula fails', () => {
    // x = 1e9 + k/1024, k in [0, 1024): exactly representable; exact moments from BigInt sums of k.
    const rng = new SeededRandom(11)
    const n = 200_000
    const xs = new Float64Array(n)
    let sk = 0n, sk2 = 0n
    for (let i = 0; i < n; i++) {
      const k = rng.int(1024)
      xs[i] = 1e9 + k / 1024
      sk += BigInt(k); sk2 += BigInt(k * k)
    }
    // exact population variance of k = (n·Σk² − (Σk)²) / n², then scale by 1/1024²
    const N = BigInt(n)
    const num = N * sk2 - sk * sk
    const exactVar = Number(num) / Number(N * N) / (1024 * 1024)

    const naive = (): number => { let s = 0, s2 = 0; for (const x of xs) { s += x; s2 += x * x } return s2 / n - (s / n) ** 2 }
    expect(relErr(naive(), exactVar)).toBeGreaterThan(0.01) // the textbook formula is badly off

    const agg = new ExtendedStatsAggregator('x')
    const single = agg.init()
    agg.addColumn(single, xs)
    const r1 = agg.finalize(single)
    expect(relErr(r1.variance!, exactVar)).toBeLessThan(1e-9)

    // any split, any merge order, through the wire
    for (let trial = 0; trial < 5; trial++) {
      const parts = splitRows(rng, n, 1 + rng.int(8)).map(rows => { const s = agg.init(); agg.addColumn(s, xs, rows); return wire(agg, s) })
      const merged = agg.finalize(mergeRandomly(rng, parts, (a, b) => agg.merge(a, b)))
      expect(relErr(merged.variance!, exactVar)).toBeLessThan(1e-9)
      expect(merged.count).toBe(n)
      expect(relErr(merged.std_deviation!, Math.sqrt(exactVar))).toBeLessThan(1e-9)
      expect(relErr(merged.avg!, r1.avg!)).toBeLessThan(1e-15)
    }
    expect(r1.std_deviation_bounds.upper).toBeCloseTo(r1.avg! + 2 * r1.std_deviation!, 6)
  })

  it('extended_stats reports sample variance, sum of squares and null for no data', () => {
    const agg = new ExtendedStatsAggregator('x', 3)
    const s = agg.init()
    for (const v of [2, 4, 4, 4, 5, 5, 7, 9]) agg.add(s, v)
    const r = agg.finalize(s)
    expect(r.variance).toBeCloseTo(4, 12)
    expect(r.std_deviation).toBeCloseTo(2, 12)
    expect(r.variance_sample).toBeCloseTo(32 / 7, 12)
    expect(r.sum_of_squares).toBeCloseTo(4 + 16 * 3 + 25 * 2 + 49 + 81, 9)
    expect(r.std_deviation_bounds).toEqual({ upper: 11, lower: -1 })
    expect(agg.finalize(agg.init()).variance).toBeNull()
  })

  it('random splits and merge orders give the single-node result', () => {
    const rng = new SeededRandom(3)
    const kinds = ['count', 'value_count', 'sum', 'min', 'max', 'avg', 'stats', 'extended_stats'] as const
    for (let trial = 0; trial < 40; trial++) {
      const n = rng.int(2000)
      const scale = 10 ** (rng.int(12) - 3)
      const x = Array.from({ length: n }, () => rng.int(10) === 0 ? null : (rng.next() - 0.3) * scale)
      const b = batchOf({ x })
      const parts = splitRows(rng, n, 1 + rng.int(8))
      for (const kind of kinds) {
        const agg = createAggregator(kind === 'count' ? { kind } : { kind, field: 'x' })
        const single = agg.init()
        agg.collect(single, b)
        const want = agg.finalize(single) as Record<string, unknown>
        const states = parts.map(rows => { const s = agg.init(); agg.collect(s, b, rows); return wire(agg, s) })
        const got = agg.finalize(mergeRandomly(rng, states, (p, q) => agg.merge(p, q))) as Record<string, unknown>
        expectClose(got, want, 1e-9, `${kind} trial ${trial}`)
      }
    }
  })

  it('decode rejects malformed states', () => {
    const sum = createAggregator({ kind: 'sum', field: 'x' })
    expect(() => sum.decode([1])).toThrow(AggregationDecodeError)
    expect(() => sum.decode({ s: 1, c: 0 })).toThrow(AggregationDecodeError)
    expect(() => sum.decode(['1', 0])).toThrow(/sum must be a number/)
    const count = createAggregator({ kind: 'count' })
    expect(() => count.decode(-1)).toThrow(AggregationDecodeError)
    expect(() => count.decode(1.5)).toThrow(AggregationDecodeError)
    const ext = createAggregator({ kind: 'extended_stats', field: 'x' })
    expect(() => ext.decode([1, 0, 0, -1, 0, 0, 0, 0])).toThrow(/M2/)
  })
})

function expectClose (got: unknown, want: unknown, tol: number, what: string): void {
  if (typeof want === 'number' && typeof got === 'number') {
    const scale = Math.max(Math.abs(want), 1e-300)
    if (Math.abs(got - want) > tol * scale + 1e-300) expect.fail(`${what}: ${got} vs ${want}`)
    return
  }
  if (want !== null && typeof want === 'object') {
    expect(typeof got, what).toBe('object')
    for (const k of Object.keys(want)) expectClose((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], tol, `${what}.${k}`)
    return
  }
  expect(got, what).toEqual(want)
}
