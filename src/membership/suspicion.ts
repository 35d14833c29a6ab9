/**
 * Lifeguard's suspicion timeout (memberlist suspicion.go): it starts at `maxMs` and shrinks
 * towards `minMs` as independent confirmations arrive, because each one makes a false positive
 * less likely:
 *
 *   timeout(C) = max(minMs, maxMs - (maxMs - minMs) * log(C + 1) / log(K + 1))
 *
 * with C confirmations so far and K the number expected.
 */
import type { Clock, Timer } from '../runtime/index.js'

/** The timeout after `confirmations` of `expected` confirmations (ms). */
export function suspicionTimeoutMs (confirmations: number, expected: number, minMs: number, maxMs: number): number {
  if (expected < 1) return minMs
  const frac = Math.log(confirmations + 1) / Math.log(expected + 1)
  const raw = maxMs - frac * (maxMs - minMs)
  return Math.max(minMs, Math.floor(raw))
}

/**
 * The minimum suspicion timeout: suspicionMult * max(minScale, log10(max(1, n))) *
 * probeIntervalMs (ms). memberlist floors the log factor at 1 so a small cluster does not get a
 * near-zero timeout; Shoal at 2 (SwimOptions.suspicionMinScale).
 */
export function suspicionMinMs (suspicionMult: number, clusterSize: number, probeIntervalMs: number, minScale = 1): number {
  const scale = Math.max(minScale, Math.log10(Math.max(1, clusterSize)))
  return Math.floor(suspicionMult * scale * probeIntervalMs)
}

export class Suspicion {
  private readonly confirmers = new Set<string>()
  private readonly startedAt: number
  private timer: Timer | undefined
  private fired = false

  /**
   * `from` is the member who raised the suspicion: it does not count as a confirmation.
   * `onTimeout` gets the number of confirmations seen and how late (ms) its timer fired.
   */
  constructor (
    private readonly clock: Clock,
    from: string,
    private readonly expected: number,
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly onTimeout: (confirmations: number, lateMs: number) => void
  ) {
    this.startedAt = clock.now()
    this.confirmers.add(from)
    this.schedule(expected < 1 ? minMs : maxMs)
  }

  get confirmations (): number { return this.confirmers.size - 1 }

  /** Records an independent confirmation; true if it was new (then the caller re-gossips it). */
  confirm (from: string): boolean {
    if (this.fired || this.confirmations >= this.expected || this.confirmers.has(from)) return false
    this.confirmers.add(from)
    const timeout = suspicionTimeoutMs(this.confirmations, this.expected, this.minMs, this.maxMs)
    const elapsed = this.clock.now() - this.startedAt
    this.timer?.cancel()
    this.schedule(Math.max(0, timeout - elapsed))
    return true
  }

  cancel (): void {
    this.fired = true
    this.timer?.cancel()
    this.timer = undefined
  }

  private schedule (delayMs: number): void {
    const dueAt = this.clock.now() + delayMs
    this.timer = this.clock.setTimer(delayMs, () => {
      if (this.fired) return
      this.fired = true
      this.onTimeout(this.confirmations, Math.max(0, this.clock.now() - dueAt))
    })
  }
}

/**
 * Lifeguard's Local Health Multiplier (memberlist awareness.go): a score in
 * [0, maxMultiplier - 1] that rises when this peer shows signs of being the slow one (missed
 * nacks, having to refute, its own timers firing late) and falls with each successful probe.
 * Probe interval and timeouts are multiplied by score + 1.
 */
export class Awareness {
  private score = 0
  constructor (private readonly maxMultiplier: number) {}
  get value (): number { return this.score }
  apply (delta: number): void {
    this.score = Math.min(this.maxMultiplier - 1, Math.max(0, this.score + delta))
  }
  scale (ms: number): number { return ms * (this.score + 1) }
}
