/**
 * cardinality: a HyperLogLog sketch of our own. Values are hashed to 53 bits (top bits of
 * xxHash64). Below `exactThreshold` distinct hashes the state is the exact set of hashes (count is
 * exact up to 64-bit hash collisions, ~n²/2^54); past it, dense 2^p registers of 6 bits each, and
 * the estimate is Ertl's improved estimator (2017, "New cardinality estimation algorithms for
 * HyperLogLog sketches"), unbiased over the whole range without empirical bias tables.
 * Standard error 1.04/√(2^p): 0.81% at p = 14.
 *
 * Merge is exact: set union, or register-wise max — so merging any split of the data gives the
 * very state (and estimate) one node would have built. Never add cardinalities.
 */
import type { Aggregator, Batch, Column, Selection } from './types.js'
import { AggregationError, ByteReader, ByteWriter, dbytes, dcount, fail, tuple } from './types.js'
import { hash53 } from './hash.js'

const HASH_BITS = 53

export interface CardinalityOptions {
  /** Register index bits, 4..18; 2^p one-byte registers once dense. Default 14 (16 KiB, 0.81% standard error). */
  precision?: number
  /** Distinct values kept exactly (as hashes) before switching to registers; at most 2^p. Default 3000. */
  exactThreshold?: number
}

export interface CardinalityState {
  /** Exact hashes while small; null once dense. */
  set: Set<number> | null
  regs: Uint8Array | null
}

export class CardinalityAggregator implements Aggregator<CardinalityState, { value: number }> {
  readonly kind = 'cardinality'
  readonly p: number
  readonly m: number
  readonly threshold: number
  private readonly q: number
  private readonly idxDiv: number
  private readonly wDiv: number

  constructor (readonly field: string, opts: CardinalityOptions = {}) {
    this.p = opts.precision ?? 14
    if (!Number.isInteger(this.p) || this.p < 4 || this.p > 18) throw new AggregationError(`cardinality: precision must be an integer in 4..18, got ${this.p}`)
    this.m = 2 ** this.p
    this.threshold = opts.exactThreshold ?? Math.min(3000, this.m)
    if (!Number.isInteger(this.threshold) || this.threshold < 0 || this.threshold > this.m) throw new AggregationError(`cardinality: exactThreshold must be an integer in 0..${this.m}`)
    this.q = HASH_BITS - this.p
    this.idxDiv = 2 ** this.q
    this.wDiv = 2 ** 32
  }

  init (): CardinalityState { return { set: new Set(), regs: null } }

  add (s: CardinalityState, v: unknown): void {
    const h = hash53(v)
    if (h >= 0) this.addHash(s, h)
  }

  addHash (s: CardinalityState, h: number): void {
    if (s.set !== null) {
      s.set.add(h)
      if (s.set.size > this.threshold) this.densify(s)
    } else {
      this.setRegister(s.regs!, h)
    }
  }

  addColumn (s: CardinalityState, column: Column, selection?: Selection | null): void {
    const n = selection == null ? column.length : selection.length
    for (let i = 0; i < n; i++) {
      const h = hash53(column[selection == null ? i : selection[i]!])
      if (h >= 0) this.addHash(s, h)
    }
  }

  collect (s: CardinalityState, batch: Batch, selection?: Selection | null): void {
    const col = batch.column(this.field)
    if (col !== undefined) this.addColumn(s, col, selection)
  }

  private setRegister (regs: Uint8Array, h: number): void {
    const idx = Math.floor(h / this.idxDiv)
    const w = h - idx * this.idxDiv // q bits
    let rank: number
    if (w === 0) rank = this.q + 1
    else {
      const hi = Math.floor(w / this.wDiv)
      // leading zeros of w within q bits, plus one
      rank = hi !== 0 ? Math.clz32(hi) - (64 - this.q) + 1 : Math.clz32(w >>> 0) + (this.q - 32) + 1
    }
    if (rank > regs[idx]!) regs[idx] = rank
  }

  private densify (s: CardinalityState): void {
    const regs = new Uint8Array(this.m)
    for (const h of s.set!) this.setRegister(regs, h)
    s.set = null
    s.regs = regs
  }

  merge (a: CardinalityState, b: CardinalityState): CardinalityState {
    if (b.set !== null) {
      for (const h of b.set) this.addHash(a, h)
      return a
    }
    if (a.set !== null) this.densify(a)
    const ra = a.regs!, rb = b.regs!
    for (let i = 0; i < this.m; i++) if (rb[i]! > ra[i]!) ra[i] = rb[i]!
    return a
  }

  finalize (s: CardinalityState): { value: number } {
    return { value: s.set !== null ? s.set.size : Math.round(this.estimate(s.regs!)) }
  }

  /** Ertl's improved raw estimator over the register histogram. */
  estimate (regs: Uint8Array): number {
    const q = this.q, m = this.m
    const c = new Float64Array(q + 2)
    for (let i = 0; i < m; i++) c[regs[i]!]!++
    let z = m * tau(1 - c[q + 1]! / m)
    for (let k = q; k >= 1; k--) z = 0.5 * (z + c[k]!)
    z += m * sigma(c[0]! / m)
    return (m * m) / (2 * Math.LN2 * z)
  }

  /** [precision, kind, payload]: kind 0 = sorted hashes delta-varint encoded, 1 = raw registers. */
  encode (s: CardinalityState): unknown {
    if (s.set !== null) {
      const hs = [...s.set].sort((x, y) => x - y)
      const w = new ByteWriter()
      let prev = 0
      for (const h of hs) { w.uint(h - prev); prev = h }
      return [this.p, 0, s.set.size, w.finish()]
    }
    return [this.p, 1, this.m, s.regs!.slice()]
  }

  decode (v: unknown): CardinalityState {
    const k = this.kind
    const t = tuple(k, v, 4)
    if (t[0] !== this.p) fail(k, `precision ${String(t[0])} does not match ${this.p}`)
    if (t[1] === 0) {
      const n = dcount(k, t[2], 'size')
      if (n > this.threshold) fail(k, `exact set of ${n} over the threshold ${this.threshold}`)
      const r = new ByteReader(dbytes(k, t[3], 'hashes', n * 8), k)
      const set = new Set<number>()
      let h = 0
      for (let i = 0; i < n; i++) {
        const d = r.uint()
        if (i > 0 && d === 0) fail(k, 'hashes not strictly increasing')
        h += d
        if (h >= 2 ** HASH_BITS) fail(k, 'hash out of range')
        set.add(h)
      }
      if (!r.done) fail(k, 'trailing bytes')
      return { set, regs: null }
    }
    if (t[1] === 1) {
      if (t[2] !== this.m) fail(k, 'register count mismatch')
      const b = dbytes(k, t[3], 'registers', this.m)
      if (b.length !== this.m) fail(k, `expected ${this.m} registers`)
      const regs = new Uint8Array(b)
      for (let i = 0; i < this.m; i++) if (regs[i]! > this.q + 1) fail(k, 'register value out of range')
      return { set: null, regs }
    }
    return fail(k, 'unknown representation')
  }
}

function sigma (x: number): number {
  if (x === 1) return Infinity
  let y = 1
  let z = x
  for (;;) {
    x *= x
    const zPrev = z
    z += x * y
    y += y
    if (z === zPrev) return z
  }
}

function tau (x: number): number {
  if (x === 0 || x === 1) return 0
  let y = 1
  let z = 1 - x
  for (;;) {
    x = Math.sqrt(x)
    const zPrev = z
    y *= 0.5
    z -= (1 - x) * (1 - x) * y
    if (z === zPrev) return z / 3
  }
}
