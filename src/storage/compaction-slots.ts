/**
 * The peer's bound on compactions running at once, across all its partitions. A merge holds,
 * for each of its inputs, a chunk of rows read back and, for its output, a record batch being
 * built: without a bound every partition compacts at once, and a peer loading 10 M rows into 16
 * partitions held 1.6 M decoded rows in merge chunks at one moment (a heap snapshot taken at
 * its heap limit, docs/benchmarks.md "Resident memory"), several times what its memtables and
 * block cache hold. A compaction waits for a slot before it reads anything; waiting is safe
 * because a writer that outruns compaction waits for it in turn (write.ts), so the peer slows
 * its writers instead of growing.
 */
import { availableParallelism } from 'node:os'

/** Default of maxConcurrentCompactions: half the cores, at least one, at most four. */
export function defaultMaxConcurrentCompactions (): number {
  return Math.min(4, Math.max(1, Math.floor(availableParallelism() / 2)))
}

export class CompactionSlots {
  private running = 0
  private readonly waiters: Array<() => void> = []
  /** Most running at once since the slots were made (what a test checks the bound by). */
  peak = 0

  constructor (readonly max: number = defaultMaxConcurrentCompactions()) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`storage option maxConcurrentCompactions must be an integer >= 1, got ${String(max)}`)
  }

  /** Compactions running now. */
  get active (): number { return this.running }
  /** Compactions waiting for a slot. */
  get waiting (): number { return this.waiters.length }

  /** Runs `work` once a slot is free, holding it until `work` settles. */
  async run<T> (work: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>(resolve => { this.waiters.push(resolve) })
    else this.running++
    this.peak = Math.max(this.peak, this.running)
    try {
      return await work()
    } finally {
      // The slot passes straight to the next waiter (running stays counted), so nobody can take
      // it in between and the bound holds.
      const next = this.waiters.shift()
      if (next !== undefined) next()
      else this.running--
      if (this.running < 0 || this.running > this.max) throw new Error(`compaction slots: ${this.running} running of ${this.max}`)
    }
  }
}
