import { SeededRandom } from '../../src/runtime/index.js'

/** SeededRandom with the few helpers the generators use. */
export class Rng {
  private readonly r: SeededRandom

  constructor (readonly seed: number) {
    this.r = new SeededRandom(seed)
  }

  /** Uniform in [0, 1). */
  next (): number { return this.r.next() }
  /** Uniform integer in [0, n). */
  int (n: number): number { return this.r.int(n) }
  /** Uniform integer in [lo, hi], both included. */
  range (lo: number, hi: number): number { return lo + this.r.int(hi - lo + 1) }
  /** True with probability p. */
  chance (p: number): boolean { return this.r.next() < p }
  pick<T> (items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[this.r.int(items.length)]!
  }

  /** Picks by weight: `[[weight, value], ...]`. */
  weighted<T> (choices: ReadonlyArray<readonly [number, T]>): T {
    const total = choices.reduce((s, [w]) => s + w, 0)
    let x = this.r.next() * total
    for (const [w, v] of choices) {
      x -= w
      if (x < 0) return v
    }
    return choices[choices.length - 1]![1]
  }

  /** A new generator with its own stream. */
  fork (): Rng { return new Rng(this.r.nextUint32()) }

  shuffle<T> (items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.r.int(i + 1)
      const tmp = items[i]!
      items[i] = items[j]!
      items[j] = tmp
    }
    return items
  }
}

/** A per-index seed from a base seed (query i of a run gets its own, reproducible alone). */
export function deriveSeed (base: number, index: number): number {
  let z = (base >>> 0) ^ Math.imul(index + 1, 0x9e3779b9)
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
  return (z ^ (z >>> 16)) >>> 0
}
