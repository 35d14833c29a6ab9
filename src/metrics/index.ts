/**
 * metrics: the peer's Prometheus registry (prom-client). Layers do not import prom-client: they
 * keep plain counters (e.g. Swim.stats()), and the gauges here read them at scrape time through
 * collect callbacks, so protocol code stays free of metric plumbing and costs nothing between
 * scrapes.
 *
 * ```ts
 * const metrics = new PeerMetrics()
 * metrics.gaugeFrom('shoal_members', 'Members by state', ['state'], () => [[{ state: 'alive' }, 5]])
 * const text = await metrics.text()
 * ```
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'

export type Sample = [labels: Record<string, string>, value: number]

export class PeerMetrics {
  readonly registry = new Registry()

  constructor () {
    // Process CPU, memory, GC and event-loop lag: the first things to look at on a slow peer.
    collectDefaultMetrics({ register: this.registry, prefix: 'shoal_' })
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

  async text (): Promise<{ contentType: string, text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() }
  }
}
