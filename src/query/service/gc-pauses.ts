/**
 * This process's garbage-collection pauses, for EXPLAIN ANALYZE: a query's time includes any GC
 * that ran while it did, and the tail of a healthy cluster's latency is often exactly that. One
 * PerformanceObserver for the process, started by the first query that asks, keeps the last
 * RECENT_PAUSES pauses (start and duration, performance.now() milliseconds); a query sums the
 * parts of them that fall within its own window.
 */
import { PerformanceObserver, performance } from 'node:perf_hooks'

/** Pauses kept: more than any one query sees (a minor GC every few ms of allocation). */
const RECENT_PAUSES = 1024

const starts = new Float64Array(RECENT_PAUSES)
const durations = new Float64Array(RECENT_PAUSES)
let next = 0
let count = 0
let observer: PerformanceObserver | undefined

/** Starts watching (idempotent); until then gcPausedMs answers 0. */
export function watchGcPauses (): void {
  if (observer !== undefined) return
  observer = new PerformanceObserver(list => {
    for (const e of list.getEntries()) {
      starts[next] = e.startTime
      durations[next] = e.duration
      next = (next + 1) % RECENT_PAUSES
      if (count < RECENT_PAUSES) count++
    }
  })
  observer.observe({ entryTypes: ['gc'] })
}

/**
 * Milliseconds of GC pause within [fromMs, toMs] (performance.now() time). The observer hears of
 * a pause a little after it ends, so one still running at `toMs` may be missed.
 */
export function gcPausedMs (fromMs: number, toMs: number): number {
  let sum = 0
  for (let i = 0; i < count; i++) {
    const s = starts[i]!
    const e = s + durations[i]!
    const overlap = Math.min(e, toMs) - Math.max(s, fromMs)
    if (overlap > 0) sum += overlap
  }
  return sum
}

/** performance.now(), the clock the pauses are in. */
export function gcClockMs (): number { return performance.now() }
