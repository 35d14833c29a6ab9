/**
 * The console's charts from the peer's /metrics: the Prometheus text parsed for the three
 * histograms of operations this peer coordinated, and rates and mean latencies derived between two
 * polls. No DOM here: test/unit/console-metrics.test.ts runs it under Node.
 */

/** Count and sum (seconds) of one histogram, over all its label sets. */
export interface Totals { count: number, sum: number }

/** The operations the charts show, each a histogram of seconds (src/peer/metrics.ts). */
export const OPERATIONS = {
  writes: 'shoal_write_duration_seconds',
  reads: 'shoal_read_duration_seconds',
  queries: 'shoal_query_duration_seconds'
} as const

export type Operation = keyof typeof OPERATIONS
export type Snapshot = Record<Operation, Totals>

/** One interval's figures: operations per second, and their mean latency in ms (null: none ran). */
export type Rates = Record<Operation, { perSec: number, meanMs: number | null }>

/**
 * Sums each operation's `_count` and `_sum` series over their labels (op, consistency, outcome,
 * strategy). Lines that are comments, other metrics or malformed are skipped: the page must not
 * break on a metric it does not know.
 */
export function parseSnapshot (text: string): Snapshot {
  const out = { writes: { count: 0, sum: 0 }, reads: { count: 0, sum: 0 }, queries: { count: 0, sum: 0 } }
  const byName = new Map<string, { op: Operation, field: 'count' | 'sum' }>()
  for (const op of Object.keys(OPERATIONS) as Operation[]) {
    byName.set(`${OPERATIONS[op]}_count`, { op, field: 'count' })
    byName.set(`${OPERATIONS[op]}_sum`, { op, field: 'sum' })
  }
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const nameEnd = line.search(/[{ ]/)
    if (nameEnd <= 0) continue
    const want = byName.get(line.slice(0, nameEnd))
    if (want === undefined) continue
    // The value follows the last space (label values may hold spaces; a timestamp never follows here).
    const value = Number(line.slice(line.lastIndexOf(' ') + 1))
    if (Number.isFinite(value)) out[want.op][want.field] += value
  }
  return out
}

/**
 * Rates between two snapshots `seconds` apart. A counter that went down (the peer restarted)
 * gives 0 for that interval rather than a negative rate.
 */
export function ratesBetween (prev: Snapshot, next: Snapshot, seconds: number): Rates {
  const one = (op: Operation): { perSec: number, meanMs: number | null } => {
    const dCount = next[op].count - prev[op].count
    const dSum = next[op].sum - prev[op].sum
    if (!(seconds > 0) || dCount <= 0 || dSum < 0) return { perSec: 0, meanMs: null }
    return { perSec: dCount / seconds, meanMs: (dSum / dCount) * 1000 }
  }
  return { writes: one('writes'), reads: one('reads'), queries: one('queries') }
}
