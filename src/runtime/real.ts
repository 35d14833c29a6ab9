import { randomInt } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Clock, Random, Timer } from './types.js'

/** The process clock: performance.now() for intervals, Date.now() for the wall. */
export class SystemClock implements Clock {
  now (): number { return performance.now() }
  wallNow (): number { return Date.now() }
  setTimer (delayMs: number, fn: () => void): Timer {
    const handle = setTimeout(fn, Math.max(0, delayMs))
    // Protocol timers must never keep a draining process alive on their own.
    handle.unref()
    return { cancel: () => { clearTimeout(handle) } }
  }
}

/** Randomness for production: Math.random is fine for probe order and jitter (not for keys). */
export class SystemRandom implements Random {
  next (): number { return Math.random() }
  int (maxExclusive: number): number {
    if (maxExclusive <= 1) return 0
    // crypto.randomInt avoids the modulo bias of floor(random * n) for large n; n is small here,
    // so this is about correctness of intent more than measurable bias.
    return maxExclusive <= 2 ** 48 ? randomInt(maxExclusive) : Math.floor(Math.random() * maxExclusive)
  }
}
