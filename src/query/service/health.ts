/**
 * What the coordinator learns about peers from its own queries: an EWMA of each peer's fragment
 * latency (to pick the fastest replica) and a recent-latency window for its p95 (the hedging
 * delay); and the token bucket that caps hedged requests so that hedging cannot multiply load on
 * an already overloaded cluster.
 */
import type { PeerId } from '../../runtime/index.js'

/** Latencies kept per peer for the p95. */
const WINDOW = 64

export class PeerHealth {
  private readonly ewma = new Map<PeerId, number>()
  private readonly recent = new Map<PeerId, { samples: Float64Array, next: number, count: number }>()

  /**
   * @param defaultMs what an unmeasured peer is expected to take (ranks it after measured fast peers)
   * @param minHedgeMs the hedging delay never goes below this (sub-millisecond p95s would hedge on noise)
   */
  constructor (readonly defaultMs = 5, readonly minHedgeMs = 10, readonly maxHedgeMs = 2000) {}

  observe (peer: PeerId, ms: number): void {
    const prev = this.ewma.get(peer)
    this.ewma.set(peer, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
    let r = this.recent.get(peer)
    if (r === undefined) this.recent.set(peer, r = { samples: new Float64Array(WINDOW), next: 0, count: 0 })
    r.samples[r.next] = ms
    r.next = (r.next + 1) % WINDOW
    r.count = Math.min(WINDOW, r.count + 1)
  }

  /** A failure or a timeout counts as slow as the time it took (at least the timeout seen). */
  observeFailure (peer: PeerId, ms: number): void { this.observe(peer, Math.max(ms, this.expectedMs(peer) * 2)) }

  expectedMs (peer: PeerId): number { return this.ewma.get(peer) ?? this.defaultMs }

  /** The peer's p95 over its recent answers, or undefined before 8 samples. */
  p95 (peer: PeerId): number | undefined {
    const r = this.recent.get(peer)
    if (r === undefined || r.count < 8) return undefined
    // A typed copy sorts numerically without a comparator: asked once per remote request.
    const s = r.samples.slice(0, r.count).sort()
    return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]
  }

  /** How long to wait for a peer before hedging to another replica. */
  hedgeDelayMs (peer: PeerId): number {
    const p = this.p95(peer) ?? this.expectedMs(peer) * 3
    return Math.min(this.maxHedgeMs, Math.max(this.minHedgeMs, p))
  }

  forget (peer: PeerId): void { this.ewma.delete(peer); this.recent.delete(peer) }

  snapshot (): Array<{ peer: PeerId, ewmaMs: number, p95Ms: number | undefined }> {
    return [...this.ewma].map(([peer, ms]) => ({ peer, ewmaMs: ms, p95Ms: this.p95(peer) }))
  }
}

/** Refills `ratePerSec` tokens per second up to `burst`; a hedged request takes one. */
export class TokenBucket {
  private tokens: number
  private last: number
  constructor (private readonly ratePerSec: number, private readonly burst: number, private readonly now: () => number) {
    this.tokens = burst
    this.last = now()
  }

  /** Takes n tokens if there are that many, else none. */
  take (n = 1): boolean {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + (t - this.last) / 1000 * this.ratePerSec)
    this.last = t
    if (this.tokens < n) return false
    this.tokens -= n
    return true
  }
}
