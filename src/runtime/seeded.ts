import type { Random } from './types.js'

/**
 * A small, fast, seedable PRNG (sfc32, from PractRand's test suite: passes BigCrush-class tests,
 * period ~2^128). The simulator and property tests use it so the same seed gives the same run.
 */
export class SeededRandom implements Random {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: number) {
    // splitmix32 spreads a small integer seed over the 128-bit state.
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = next(); this.b = next(); this.c = next(); this.d = next()
    for (let i = 0; i < 12; i++) this.nextUint32()
  }

  nextUint32 (): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) >>> 0
    return t
  }

  next (): number { return this.nextUint32() / 4294967296 }

  int (maxExclusive: number): number {
    if (maxExclusive <= 1) return 0
    return Math.floor(this.next() * maxExclusive)
  }

  /** A child generator with an independent stream, for giving each simulated peer its own. */
  fork (): SeededRandom { return new SeededRandom(this.nextUint32()) }
}

/** Fisher-Yates shuffle in place, driven by the given Random. */
export function shuffle<T> (items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(i + 1)
    const tmp = items[i]!
    items[i] = items[j]!
    items[j] = tmp
  }
  return items
}
