import { describe, it, expect } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { AggregationDecodeError, AggregationSet, packState, unpackState } from '../../src/query/aggregate/index.js'
import { batchOf } from './aggregate-helpers.js'

/** Replaces one random node of a nested value with junk. */
function mutate (rng: SeededRandom, v: unknown): unknown {
  const junk = (): unknown => [null, -1, 1.5, 2 ** 60, NaN, Infinity, 'x', '__proto__', {}, { __proto__: { polluted: 1 } }, [], [[]], new Uint8Array([255, 255, 255]), true][rng.int(14)]
  if (rng.int(4) === 0 || !(Array.isArray(v) || v instanceof Uint8Array)) return junk()
  if (v instanceof Uint8Array) { const c = v.slice(); if (c.length > 0) c[rng.int(c.length)] = rng.int(256); return rng.int(3) === 0 ? c.subarray(0, rng.int(c.length + 1)) : c }
  const c = [...v]
  if (c.length === 0) return junk()
  const i = rng.int(c.length)
  if (rng.int(5) === 0) c.splice(i, 1)
  else c[i] = mutate(rng, c[i])
  return c
}

describe('decoding states from other peers', () => {
  it('throws AggregationDecodeError (never another error, never pollutes prototypes) on mutated input', () => {
    const rng = new SeededRandom(99)
    const n = 500
    const x = Array.from({ length: n }, () => rng.next() * 100 - 20)
    const k = Array.from({ length: n }, () => `k${rng.int(40)}`)
    const t = Array.from({ length: n }, () => rng.int(1e10))
    const set = new AggregationSet({
      c: { kind: 'count' }, v: { kind: 'value_count', field: 'x' }, s: { kind: 'sum', field: 'x' }, mn: { kind: 'min', field: 'x' },
      a: { kind: 'avg', field: 'x' }, st: { kind: 'stats', field: 'x' }, e: { kind: 'extended_stats', field: 'x' },
      u: { kind: 'cardinality', field: 'k' }, U: { kind: 'cardinality', field: 'x', precision: 8, exactThreshold: 10 },
      p: { kind: 'percentiles', field: 'x' },
      tm: { kind: 'terms', field: 'k', size: 3, shardSize: 50, aggs: { p: { kind: 'percentiles', field: 'x' } } },
      h: { kind: 'histogram', field: 'x', interval: 10, aggs: { u: { kind: 'cardinality', field: 'k' } } },
      d: { kind: 'date_histogram', field: 't', interval: '1d', minDocCount: 1 },
      r: { kind: 'range', field: 'x', ranges: [{ to: 0 }, { from: 0 }], aggs: { m: { kind: 'max', field: 'x' } } },
      f: { kind: 'filters', filters: { a: r => r % 2 === 0 }, aggs: { s: { kind: 'sum', field: 'x' } } }
    })
    const state = set.init()
    set.collect(state, batchOf({ x, k, t }))
    const enc = unpackState(packState(set.encode(state)))
    expect(set.finalize(set.decode(enc))).toEqual(set.finalize(state))
    let rejected = 0
    for (let i = 0; i < 3000; i++) {
      const bad = mutate(rng, enc)
      try {
        const s = set.decode(unpackState(packState(bad)))
        set.finalize(set.merge(set.init(), s))
      } catch (err) {
        if (!(err instanceof AggregationDecodeError)) throw err
        rejected++
      }
    }
    expect(rejected).toBeGreaterThan(2000)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(() => unpackState(new Uint8Array([0x92, 0x01]))).toThrow(AggregationDecodeError)
    expect(() => unpackState(new Uint8Array(10), 5)).toThrow(/limit/)
  })
})
