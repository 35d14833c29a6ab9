import { describe, expect, it } from 'vitest'
import { PeerMetrics } from '../../src/metrics/index.js'
import { CounterFamily, Histogram, HistogramFamily } from '../../src/runtime/index.js'

describe('the plain recorders (runtime/histogram.ts)', () => {
  it('Histogram puts a value in the first bucket whose bound it does not exceed, above the last in +Inf', () => {
    const h = new Histogram([0.001, 0.01, 1])
    for (const v of [0.001, 0.0011, 0.01, 0.5, 20]) h.observe(v)
    expect([...h.counts]).toEqual([1, 2, 1, 1])
    expect(h.count).toBe(5)
    expect(h.sum).toBeCloseTo(20.5121)
  })

  it('Histogram counts a negative or NaN duration (a clock stepping back) as 0, never corrupting the sum', () => {
    const h = new Histogram([1])
    h.observe(-3)
    h.observe(Number.NaN)
    expect([...h.counts]).toEqual([2, 0])
    expect(h.sum).toBe(0)
  })

  it('Histogram refuses bounds that do not ascend', () => {
    expect(() => new Histogram([1, 1])).toThrow(RangeError)
  })

  it('a family keeps one series per label set, and past maxSeries records new ones under `other`', () => {
    const f = new HistogramFamily(['route'], [1], 2)
    f.observe(['/a'], 0.5)
    f.observe(['/b'], 0.5)
    f.observe(['/c'], 2)
    f.observe(['/d'], 2)
    f.observe(['/a'], 2)
    const series = Object.fromEntries(f.entries().map(([labels, h]) => [labels.route, h.count]))
    expect(series).toEqual({ '/a': 2, '/b': 1, other: 2 })
    expect(() => { f.observe([], 1) }).toThrow(RangeError)
  })

  it('a counter family only grows', () => {
    const c = new CounterFamily(['status'])
    c.inc(['200'])
    c.inc(['200'], 2)
    expect(c.entries()).toEqual([[{ status: '200' }, { value: 3 }]])
    expect(() => { c.inc(['200'], -1) }).toThrow(RangeError)
  })
})

describe('PeerMetrics', () => {
  it('histogramFrom writes a recorder as a Prometheus histogram: cumulative buckets, +Inf, sum and count', async () => {
    const m = new PeerMetrics()
    const f = new HistogramFamily(['op'], [0.01, 0.1])
    f.observe(['put'], 0.005)
    f.observe(['put'], 0.05)
    f.observe(['put'], 3)
    m.histogramFrom('shoal_test_duration_seconds', 'A test', ['op'], () => f.entries())
    const { text } = await m.text()
    const lines = text.split('\n').filter(l => l.includes('shoal_test_duration_seconds'))
    expect(lines).toEqual([
      '# HELP shoal_test_duration_seconds A test',
      '# TYPE shoal_test_duration_seconds histogram',
      'shoal_test_duration_seconds_bucket{op="put",le="0.01"} 1',
      'shoal_test_duration_seconds_bucket{op="put",le="0.1"} 2',
      'shoal_test_duration_seconds_bucket{op="put",le="+Inf"} 3',
      'shoal_test_duration_seconds_sum{op="put"} 3.055',
      'shoal_test_duration_seconds_count{op="put"} 3'
    ])
  })

  it('keeps no gauge of the default collectors named like a counter (promtool rejects them)', async () => {
    const { text } = await new PeerMetrics().text()
    const gaugesNamedTotal = text.split('\n').filter(l => /^# TYPE \S+_total gauge$/.test(l))
    expect(gaugesNamedTotal).toEqual([])
    expect(text).toContain('# TYPE shoal_nodejs_active_handles gauge')
  })
})
