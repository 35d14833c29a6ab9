/**
 * Plain recorders of durations and counts that the layers feed as work happens and the peer's
 * /metrics reads at scrape time (src/metrics turns them into Prometheus histograms and counters).
 * Like the layers' other counters they know nothing of prom-client: an observation is a bucket
 * search and three additions, and nothing runs between scrapes.
 *
 * ```ts
 * const writes = new HistogramFamily(['consistency'])
 * const t0 = clock.now()
 * await write()
 * writes.observe(['quorum'], (clock.now() - t0) / 1000)
 * ```
 */

/**
 * Upper bounds of the latency buckets, in seconds: from 0.5 ms (an fsync on a fast SSD, a point
 * read from the block cache) to 10 s (a scan of a large space); anything slower, up to the 30 s
 * default query timeout, lands in +Inf. Roughly 1-2.5-5 steps, as Prometheus' client defaults
 * (0.005 .. 10 s), with two finer buckets below 5 ms where a healthy local write or read lies.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])

/** What a scrape reads of a histogram. */
export interface HistogramView {
  /** Upper bounds, ascending; the +Inf bucket is implied. */
  readonly bounds: readonly number[]
  /** Observations per bucket, not cumulative: counts[i] for bounds[i], counts[bounds.length] above the last. */
  readonly counts: ArrayLike<number>
  readonly sum: number
  readonly count: number
}

/** Observations in fixed buckets, with their sum and count. */
export class Histogram implements HistogramView {
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor (readonly bounds: readonly number[] = LATENCY_BUCKETS_SECONDS) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i]! > bounds[i - 1]!)) throw new RangeError(`histogram bounds must ascend: ${bounds.join(', ')}`)
    }
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    // A clock that stepped back or a NaN must not corrupt the sum every later rate() reads.
    if (!(value >= 0)) value = 0
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

/**
 * Most label sets one family keeps. Its labels are bounded by construction (routes, methods,
 * statuses, consistency levels, peers of a cluster); this is the backstop: past it, new label sets
 * are recorded under every label `other`, so a bug cannot grow a scrape without bound.
 */
export const MAX_SERIES = 1000

/** A family of series by label values (in `labelNames` order), bounded by `maxSeries`. */
class Family<T> {
  private readonly series = new Map<string, { values: readonly string[], item: T }>()

  constructor (readonly labelNames: readonly string[], private readonly make: () => T, private readonly maxSeries: number) {
    if (maxSeries < 1) throw new RangeError('maxSeries must be at least 1')
  }

  protected at (values: readonly string[]): T {
    if (values.length !== this.labelNames.length) throw new RangeError(`expected ${this.labelNames.length} label values (${this.labelNames.join(', ')}), got ${values.length}`)
    let key = values.join('\u0000')
    let s = this.series.get(key)
    if (s === undefined) {
      if (this.series.size >= this.maxSeries) {
        values = this.labelNames.map(() => 'other')
        key = values.join('\u0000')
        s = this.series.get(key)
      }
      if (s === undefined) {
        s = { values: [...values], item: this.make() }
        this.series.set(key, s)
      }
    }
    return s.item
  }

  /** Every series with its labels by name. */
  entries (): Array<[labels: Record<string, string>, item: T]> {
    return [...this.series.values()].map(s => [Object.fromEntries(this.labelNames.map((n, i) => [n, s.values[i]!])), s.item])
  }
}

/** Histograms by label values: durations of writes by consistency, of HTTP requests by route. */
export class HistogramFamily extends Family<Histogram> {
  constructor (labelNames: readonly string[], readonly bounds: readonly number[] = LATENCY_BUCKETS_SECONDS, maxSeries = MAX_SERIES) {
    super(labelNames, () => new Histogram(bounds), maxSeries)
  }

  observe (values: readonly string[], value: number): void { this.at(values).observe(value) }
}

/** Counts by label values (only ever growing): HTTP requests by route and status. */
export class CounterFamily extends Family<{ value: number }> {
  constructor (labelNames: readonly string[], maxSeries = MAX_SERIES) {
    super(labelNames, () => ({ value: 0 }), maxSeries)
  }

  inc (values: readonly string[], by = 1): void {
    if (!(by >= 0)) throw new RangeError(`a counter only grows; got ${by}`)
    this.at(values).value += by
  }
}
