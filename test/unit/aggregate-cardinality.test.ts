import { describe, it, expect } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationDecodeError, CardinalityAggregator } from '../../src/query/aggregate/index.js'
import { mergeRandomly, relErr, splitRows, wire } from './aggregate-helpers.js'

/** n distinct strings, each repeated 1..3 times, in a seeded order. */
function data (rng: SeededRandom, n: number): string[] {
  const tag = rng.nextUint32().toString(36)
  const out: string[] = []
  for (let i = 0; i < n; i++) { const v = `${tag}:${i}`; const r = 1 + rng.int(3); for (let k = 0; k < r; k++) out.push(v) }
  for (let i = out.length - 1; i > 0; i--) { const j = rng.int(i + 1); const t = out[i]!; out[i] = out[j]!; out[j] = t }
  return out
}

describe('cardinality (HyperLogLog, Ertl estimator)', () => {
  it('is exact up to the threshold, for strings and numbers', () => {
    const agg = new CardinalityAggregator('x')
    const rng = new SeededRandom(1)
    for (const n of [0, 1, 2, 10, 100, 999, 2500, 3000]) {
      const s = agg.init()
      agg.addColumn(s, data(rng, n))
      expect(agg.finalize(s).value).toBe(n)
      const t = agg.init()
      for (let i = 0; i < n; i++) { agg.add(t, i * 1.5); agg.add(t, i * 1.5) }
      agg.add(t, null); agg.add(t, NaN)
      expect(agg.finalize(wire(agg, t)).value).toBe(n)
    }
  })

  const se = 1.04 / Math.sqrt(2 ** 14)
  it.each([3001, 5000, 20_000, 100_000, 1_000_000])('is within 3 standard errors at n = %i', (n) => {
    const agg = new CardinalityAggregator('x')
    const s = agg.init()
    for (let i = 0; i < n; i++) agg.add(s, i * 7919 + 0.25)
    expect(relErr(agg.finalize(s).value, n)).toBeLessThan(3 * se)
  })

  it('is unbiased with the stated standard error over many seeds (n = 10,000 and 50,000)', () => {
    for (const n of [10_000, 50_000]) {
      const errs: number[] = []
      for (let seed = 0; seed < 40; seed++) {
        const agg = new CardinalityAggregator('x')
        const s = agg.init()
        agg.addColumn(s, Array.from({ length: n }, (_, i) => `s${seed}-${i}`))
        errs.push((agg.finalize(s).value - n) / n)
      }
      const mean = errs.reduce((a, b) => a + b, 0) / errs.length
      const rms = Math.sqrt(errs.reduce((a, b) => a + b * b, 0) / errs.length)
      expect(Math.abs(mean)).toBeLessThan(3 * se / Math.sqrt(errs.length) + 0.002)
      expect(rms).toBeLessThan(1.5 * se)
    }
  })

  it('merging any split equals the union exactly (same state, same estimate)', () => {
    const rng = new SeededRandom(9)
    for (const n of [50, 2900, 3100, 40_000]) {
      for (const precision of [10, 14]) {
        const agg = new CardinalityAggregator('x', { precision, exactThreshold: precision === 10 ? 500 : undefined })
        const xs = data(rng, n)
        const single = agg.init()
        agg.addColumn(single, xs)
        const parts = splitRows(rng, xs.length, 1 + rng.int(8)).map(rows => { const s = agg.init(); agg.addColumn(s, xs, rows); return wire(agg, s) })
        const merged = mergeRandomly(rng, parts, (a, b) => agg.merge(a, b))
        expect(agg.finalize(merged)).toEqual(agg.finalize(single))
        expect(agg.encode(merged)).toEqual(agg.encode(single))
      }
    }
  })

  it('encodes the exact set compactly and rejects malformed states', () => {
    const agg = new CardinalityAggregator('x')
    const s = agg.init()
    for (let i = 0; i < 1000; i++) agg.add(s, i)
    const enc = agg.encode(s) as [number, number, number, Uint8Array]
    expect(enc[3].length).toBeLessThan(1000 * 8)
    expect(() => agg.decode([12, 1, 4096, new Uint8Array(4096)])).toThrow(/precision/)
    expect(() => agg.decode([14, 1, 16384, new Uint8Array(100)])).toThrow(AggregationDecodeError)
    const bad = new Uint8Array(16384); bad[5] = 60
    expect(() => agg.decode([14, 1, 16384, bad])).toThrow(/register value/)
    expect(() => agg.decode([14, 0, 5000, new Uint8Array(10)])).toThrow(/threshold/)
    expect(() => agg.decode([14, 0, 3, new Uint8Array([1, 0, 2])])).toThrow(/increasing/)
    expect(() => agg.decode([14, 0, 2, new Uint8Array([1])])).toThrow(/truncated/)
    expect(() => agg.decode([14, 2, 0, new Uint8Array(0)])).toThrow(/representation/)
    expect(() => agg.decode('x')).toThrow(AggregationDecodeError)
  })
})
