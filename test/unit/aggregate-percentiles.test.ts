import { describe, it, expect } from 'vitest'
import { DDSketch } from '@datadog/sketches-js'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationDecodeError, AggregationLimitError, packState, PercentilesAggregator } from '../../src/query/aggregate/index.js'
import { mergeRandomly, normal, splitRows, wire } from './aggregate-helpers.js'

const percents = [0, 0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]

const distributions: Record<string, (r: SeededRandom) => number> = {
  uniform: r => r.next() * 1000,
  normal: r => 5 + 100 * normal(r),
  lognormal: r => Math.exp(2 * normal(r)),
  exponential: r => -Math.log(1 - r.next()) * 1e-3,
  integers: r => r.int(20),
  pareto_signed: r => (r.int(2) === 0 ? -1 : 1) * Math.pow(1 - r.next(), -1 / 1.5),
  huge_range: r => Math.pow(10, r.next() * 40 - 20)
}

function exactQuantile (sorted: Float64Array, p: number): number {
  return sorted[Math.floor((p / 100) * (sorted.length - 1))]!
}

describe('percentiles (DDSketch, 1% relative accuracy)', () => {
  for (const [name, gen] of Object.entries(distributions)) {
    it(`every percentile is within 1% of the exact one, single node and merged: ${name}`, () => {
      const rng = new SeededRandom(name.length * 31)
      const n = 50_000
      const xs = new Float64Array(n)
      for (let i = 0; i < n; i++) xs[i] = gen(rng)
      const sorted = xs.slice().sort()
      const agg = new PercentilesAggregator('x', { percents })
      const single = agg.init()
      agg.addColumn(single, xs)
      const want = agg.finalize(single)
      for (const p of percents) {
        const exact = exactQuantile(sorted, p)
        const got = want.values[String(p)]!
        expect(Math.abs(got - exact), `p${p}: ${got} vs ${exact}`).toBeLessThanOrEqual(0.01 * Math.abs(exact) + 1e-12 * Math.abs(exact))
      }
      for (let trial = 0; trial < 3; trial++) {
        const parts = splitRows(rng, n, 1 + rng.int(8)).map(rows => { const s = agg.init(); agg.addColumn(s, xs, rows); return wire(agg, s) })
        const merged = mergeRandomly(rng, parts, (a, b) => agg.merge(a, b))
        expect(agg.finalize(merged)).toEqual(want)
        expect(merged.sk.count).toBe(n)
      }
    })
  }

  it('merges negative values (which the library merge drops)', () => {
    const agg = new PercentilesAggregator('x', { percents: [10, 50] })
    const a = agg.init(), b = agg.init()
    for (let i = 1; i <= 100; i++) agg.add(a, -i)
    for (let i = 1; i <= 100; i++) agg.add(b, -i)
    const merged = agg.finalize(agg.merge(a, b))
    expect(Math.abs(merged.values['10']! - -90)).toBeLessThan(1)
    // the library's own merge loses the negative store: the sketch no longer adds up
    const x = new DDSketch(), y = new DDSketch()
    x.accept(-1); y.accept(-2)
    x.merge(y)
    expect(x.negativeStore.count).toBe(1)
  })

  it('reports null for no data and clamps to the observed extremes', () => {
    const agg = new PercentilesAggregator('x', { percents: [50] })
    expect(agg.finalize(agg.init()).values).toEqual({ 50: null })
    const s = agg.init()
    agg.add(s, 42)
    expect(agg.finalize(wire(agg, s)).values).toEqual({ 50: 42 })
  })

  it('encodes compactly and validates on decode', () => {
    const agg = new PercentilesAggregator('x', { maxBins: 2000 })
    const s = agg.init()
    const rng = new SeededRandom(5)
    for (let i = 0; i < 100_000; i++) agg.add(s, Math.exp(3 * normal(rng)))
    const bytes = packState(agg.encode(s))
    expect(bytes.length).toBeLessThan(4000)
    const enc = agg.encode(s) as unknown[]
    expect(() => agg.decode([0.02, ...enc.slice(1)])).toThrow(/relative accuracy/)
    expect(() => agg.decode(enc.slice(1))).toThrow(AggregationDecodeError)
    // a key far outside the mapping's range
    expect(() => agg.decode([0.01, 0, 0, 1, 1, 1, new Uint8Array([0xfe, 0xff, 0xff, 0x0f, 1]), 0, new Uint8Array(0)])).toThrow(/range/)
    expect(() => agg.decode([0.01, 0, 0, 1, 1, 5000, new Uint8Array(0), 0, new Uint8Array(0)])).toThrow(/maxBins/)
    expect(() => agg.decode([0.01, 0, 0, 1, 1, 2, new Uint8Array([2, 1, 0, 1]), 0, new Uint8Array(0)])).toThrow(/increasing/)
    expect(() => agg.decode([0.01, 0, 0, 1, 1, 1, new Uint8Array([2, 0]), 0, new Uint8Array(0)])).toThrow(/empty bin/)
    expect(() => agg.decode([0.01, 0, 0, 5, 1, 1, new Uint8Array([2, 1]), 0, new Uint8Array(0)])).toThrow(/min > max/)
    const wide = agg.init()
    for (let e = -100; e <= 100; e += 0.1) agg.add(wide, 10 ** e)
    expect(() => agg.encode(wide)).toThrow(AggregationLimitError)
  })
})
