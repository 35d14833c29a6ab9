import type { Clock, Timer } from '../../src/runtime/index.js'

/**
 * A clock moved by hand, for unit tests of pure protocol parts that need timers but no network
 * (suspicion timers, the partition detector's stable window). Timers fire in time order during
 * advance(); wallNow() equals now().
 */
export class ManualClock implements Clock {
  t = 0
  private timers: Array<{ at: number, fn: () => void, dead: boolean }> = []
  now (): number { return this.t }
  wallNow (): number { return this.t }
  setTimer (delayMs: number, fn: () => void): Timer {
    const entry = { at: this.t + Math.max(0, delayMs), fn, dead: false }
    this.timers.push(entry)
    return { cancel: () => { entry.dead = true } }
  }

  advance (ms: number): void {
    const end = this.t + ms
    for (;;) {
      const due = this.timers.filter(x => !x.dead && x.at <= end).sort((a, b) => a.at - b.at)[0]
      if (due === undefined) break
      due.dead = true
      this.t = due.at
      due.fn()
    }
    this.timers = this.timers.filter(x => !x.dead)
    this.t = end
  }
}
