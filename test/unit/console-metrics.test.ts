/**
 * The console's charts from /metrics (src/console/browser/metrics.ts): the three operation
 * histograms summed over their labels, and rates and mean latencies between two polls.
 */
import { describe, expect, it } from 'vitest'
import { parseSnapshot, ratesBetween } from '../../src/console/browser/metrics.js'

const text = (writes: number, writeSum: number, queries: number, querySum: number): string => `
# HELP shoal_write_duration_seconds Writes
# TYPE shoal_write_duration_seconds histogram
shoal_write_duration_seconds_bucket{op="put",consistency="quorum",outcome="ok",le="0.01"} ${writes}
shoal_write_duration_seconds_sum{op="put",consistency="quorum",outcome="ok"} ${writeSum / 2}
shoal_write_duration_seconds_count{op="put",consistency="quorum",outcome="ok"} ${writes / 2}
shoal_write_duration_seconds_sum{op="delete",consistency="one",outcome="error"} ${writeSum / 2}
shoal_write_duration_seconds_count{op="delete",consistency="one",outcome="error"} ${writes / 2}
shoal_query_duration_seconds_sum{strategy="Broadcast",outcome="ok"} ${querySum}
shoal_query_duration_seconds_count{strategy="Broadcast",outcome="ok"} ${queries}
shoal_http_request_duration_seconds_count{method="GET",route="/a b"} 99
shoal_members{state="alive"} 3
not a metric line
`

describe('the console\'s metrics', () => {
  it('parseSnapshot() sums each operation\'s count and sum over its labels and skips everything else', () => {
    expect(parseSnapshot(text(10, 0.5, 4, 2))).toEqual({ writes: { count: 10, sum: 0.5 }, reads: { count: 0, sum: 0 }, queries: { count: 4, sum: 2 } })
    expect(parseSnapshot('')).toEqual({ writes: { count: 0, sum: 0 }, reads: { count: 0, sum: 0 }, queries: { count: 0, sum: 0 } })
  })

  it('ratesBetween() gives operations per second and mean ms, null latency where none ran, and 0 after a restart', () => {
    const r = ratesBetween(parseSnapshot(text(10, 0.5, 4, 2)), parseSnapshot(text(40, 0.8, 4, 2)), 2)
    expect(r.writes.perSec).toBe(15)
    expect(r.writes.meanMs).toBeCloseTo(10, 9)
    expect(r.queries).toEqual({ perSec: 0, meanMs: null })
    expect(r.reads).toEqual({ perSec: 0, meanMs: null })
    const restarted = ratesBetween(parseSnapshot(text(40, 0.8, 4, 2)), parseSnapshot(text(2, 0.01, 0, 0)), 1.5)
    expect(restarted.writes).toEqual({ perSec: 0, meanMs: null })
  })
})
