/**
 * metrics: the peer's Prometheus registry (prom-client). Layers do not import prom-client: they
 * keep plain counters (e.g. Swim.stats()) and plain histograms (runtime's HistogramFamily), and
 * the metrics here read them at scrape time through collect callbacks, so protocol code stays
 * free of metric plumbing and costs nothing between scrapes.
 *
 * ```ts
 * const metrics = new PeerMetrics()
 * metrics.gaugeFrom('shoal_members', 'Members by state', ['state'], () => [[{ state: 'alive' }, 5]])
 * metrics.histogramFrom('shoal_write_duration_seconds', 'Writes', ['consistency'], () => writes.entries())
 * const text = await metrics.text()
 * ```
 *
 * Every name is in base units (seconds, bytes) and passes `promtool check metrics` (the test in
 * test/integration/metrics.test.ts runs it when promtool is installed).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricType } from 'prom-client'
import type { HistogramView } from '../runtime/index.js'

export type Sample = [labels: Record<string, string>, value: number]
export type HistogramSample = [labels: Record<string, string>, histogram: HistogramView]

/**
 * Default collectors' gauges named `_total` (prom-client's totals of active handles, requests and
 * resources): promtool rejects a gauge with a counter's suffix, and each is the sum of the gauge
 * beside it that has a `type` label (sum(shoal_nodejs_active_handles) gives it back).
 */
const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

export class PeerMetrics {
  readonly registry = new Registry()

  /**
   * `eventLoopResolutionMs`: how often the event-loop lag gauges sample the loop (prom-client's
   * eventLoopMonitoringPrecision, default 10 ms); the peer passes its lag monitor's, so that the two
   * timers wake the process together (Peer's metricsAndLagMonitor).
   */
  constructor (opts: { eventLoopResolutionMs?: number } = {}) {
    // Process CPU, memory, GC and event-loop lag: the first things to look at on a slow peer.
    collectDefaultMetrics({ register: this.registry, prefix: 'shoal_', ...(opts.eventLoopResolutionMs !== undefined ? { eventLoopMonitoringPrecision: opts.eventLoopResolutionMs } : {}) })
    for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(`shoal_${name}`)
  }

  /** A gauge whose samples are read from `read()` at every scrape. */
  gaugeFrom (name: string, help: string, labelNames: string[], read: () => Sample[]): void {
    const gauge = new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect () {
        gauge.reset()
        for (const [labels, value] of read()) gauge.set(labels, value)
      }
    })
  }

  /**
   * A counter whose totals are read from `read()` at every scrape (the source only ever grows, so
   * Prometheus' rate() works on it).
   */
  counterFrom (name: string, help: string, labelNames: string[], read: () => Sample[]): void {
    const counter = new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect () {
        counter.reset()
        for (const [labels, value] of read()) counter.inc(labels, value)
      }
    })
  }

  /**
   * A histogram whose buckets, sum and count are read from `read()` at every scrape: one series
   * per label set, each a HistogramView the layer keeps (its bounds become the `le` labels).
   */
  histogramFrom (name: string, help: string, labelNames: string[], read: () => HistogramSample[]): void {
    // prom-client's Histogram only observes; this one reports the recorders' buckets as they are.
    class ReadHistogram extends Histogram<string> {
      override async get (): Promise<Awaited<ReturnType<Histogram<string>['get']>>> {
        const values: Array<{ metricName: string, labels: Record<string, string | number>, value: number }> = []
        for (const [labels, h] of read()) {
          let cumulative = 0
          for (let i = 0; i < h.bounds.length; i++) {
            cumulative += h.counts[i]!
            values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: h.bounds[i]! }, value: cumulative })
          }
          values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count })
          values.push({ metricName: `${name}_sum`, labels, value: h.sum })
          values.push({ metricName: `${name}_count`, labels, value: h.count })
        }
        // MetricType is a type-only enum in prom-client's typings; the registry writes the string.
        return { name, help, type: 'histogram' as unknown as MetricType, values, aggregator: 'sum', collect: () => {} }
      }

      /** The registry asks this first when it writes the text format. */
      async getForPromString (): Promise<Awaited<ReturnType<Histogram<string>['get']>>> { return await this.get() }
    }
    new ReadHistogram({ name, help, labelNames, registers: [this.registry] })
  }

  async text (): Promise<{ contentType: string, text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() }
  }
}
