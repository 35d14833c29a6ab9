/**
 * Anti-entropy digests of a partition: per bucket, an order-independent 64-bit XOR of
 * recordHash(id, version, deleted) over the records held. Accumulators for the bucket counts
 * asked for are kept and updated on every change of the index (toggle), so a digest costs one
 * pass over the buckets, not a rescan of the partition.
 *
 * Buckets are `stableHash(id) % n`; for powers of two a bucket of n is the XOR of the buckets of
 * any larger power of two m that it folds (b, b + n, b + 2n, ...), so the finest power-of-two
 * accumulator answers every coarser one without reading a record. That one is saved with the
 * partition's state (live-state.ts) and a restarted store starts from it; a bucket count it
 * cannot answer is built by one asynchronous pass over a snapshot of the records (the segments'
 * keys are on disk), the changes made meanwhile applied on top.
 */
import { hashString32, hex32, recordHash, stableHash } from './hash.js'
import type { PartitionDigest } from './types.js'

/** Most bucket counts a digest may ask for (one accumulator is 8 bytes a bucket). */
const MAX_BUCKETS = 1 << 20
/** Buckets of the accumulator every partition keeps from its creation (512 bytes). */
export const BASE_BUCKETS = 64

/** Calls `add` once for every record of a snapshot of the partition (its newest version). */
export type RecordVisitor = (add: (id: string, version: number, deleted: boolean) => void) => Promise<void>

function isPowerOfTwo (n: number): boolean { return n > 0 && (n & (n - 1)) === 0 }

/** The accumulator of `buckets` (a power of two) from a finer power-of-two one. */
function fold (fine: Uint32Array, buckets: number): Uint32Array {
  const m = fine.length / 2
  const folded = new Uint32Array(buckets * 2)
  for (let b = 0; b < m; b++) {
    const t = (b % buckets) * 2
    folded[t]! ^= fine[b * 2]!
    folded[t + 1]! ^= fine[b * 2 + 1]!
  }
  return folded
}

export class BucketDigests {
  /** Accumulators by bucket count, most recently used last: two u32 halves per bucket. */
  private readonly accs = new Map<number, Uint32Array>()
  /** Changes made while accumulators are built (applied to them when the pass ends). */
  private readonly building = new Set<Array<[string, number, boolean]>>()
  private readonly scratch = new Uint32Array(2)

  /** `maxCached`: bucket counts kept up to date (each costs a hash per write). Starts empty. */
  constructor (private readonly maxCached: number) {
    this.accs.set(BASE_BUCKETS, new Uint32Array(BASE_BUCKETS * 2))
  }

  /** Starts over from a saved finest accumulator (recovery, before the WAL is replayed on top). */
  restore (finest: Uint32Array): void {
    const n = finest.length / 2
    if (!isPowerOfTwo(n) || n < BASE_BUCKETS) throw new RangeError(`a saved digest accumulator of ${n} buckets (a power of two from ${BASE_BUCKETS} expected)`)
    this.accs.clear()
    this.accs.set(n, finest)
    if (n !== BASE_BUCKETS) this.accs.set(BASE_BUCKETS, fold(finest, BASE_BUCKETS))
  }

  /** Adds or removes (XOR is its own inverse) one record version in every kept accumulator. */
  toggle (id: string, version: number, deleted: boolean): void {
    for (const log of this.building) log.push([id, version, deleted])
    recordHash(id, version, deleted, this.scratch)
    const h = stableHash(id)
    for (const [n, acc] of this.accs) {
      const b = (h % n) * 2
      acc[b]! ^= this.scratch[0]!
      acc[b + 1]! ^= this.scratch[1]!
    }
  }

  /** The finest power-of-two accumulator kept (what the partition's saved state carries). */
  finest (): Uint32Array {
    let best = BASE_BUCKETS
    for (const n of this.accs.keys()) if (isPowerOfTwo(n) && n > best) best = n
    return this.accs.get(best)!
  }

  /** The accumulator for `buckets`: kept, folded from a finer one, or built by a pass over `visit`. */
  async accumulator (buckets: number, visit: RecordVisitor): Promise<Uint32Array> {
    const kept = this.accs.get(buckets)
    if (kept !== undefined) {
      // Most recently used last (the base accumulator is never dropped: see install).
      this.accs.delete(buckets)
      this.accs.set(buckets, kept)
      return kept
    }
    if (isPowerOfTwo(buckets)) {
      const fine = this.finest()
      const m = fine.length / 2
      if (m >= buckets) return this.install(buckets, fold(fine, buckets))
    }
    const log: Array<[string, number, boolean]> = []
    this.building.add(log)
    try {
      const built = new Uint32Array(buckets * 2)
      const hash = new Uint32Array(2)
      const add = (id: string, version: number, deleted: boolean): void => {
        recordHash(id, version, deleted, hash)
        const b = (stableHash(id) % buckets) * 2
        built[b]! ^= hash[0]!
        built[b + 1]! ^= hash[1]!
      }
      await visit(add)
      // What changed since the snapshot, in order (each a toggle, so the order does not matter).
      for (const [id, version, deleted] of log) add(id, version, deleted)
      return this.install(buckets, this.accs.get(buckets) ?? built)
    } finally {
      this.building.delete(log)
    }
  }

  private install (buckets: number, acc: Uint32Array): Uint32Array {
    this.accs.delete(buckets)
    this.accs.set(buckets, acc)
    // Drop the least recently used, but never the base nor the finest (the saved state's).
    const finest = this.finest()
    for (const [n, a] of this.accs) {
      if (this.accs.size <= Math.max(2, this.maxCached)) break
      if (n === BASE_BUCKETS || a === finest || n === buckets) continue
      this.accs.delete(n)
    }
    return acc
  }

  /** The digest of the partition in `buckets` buckets (PartitionStore.digest). */
  async digest (buckets: number, records: () => number, visit: RecordVisitor): Promise<PartitionDigest> {
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS) throw new RangeError(`buckets must be an integer from 1 to ${MAX_BUCKETS}, got ${buckets}`)
    const acc = await this.accumulator(buckets, visit)
    // Read in one step with the count, after any pass: both describe the same moment.
    const hashes = new Array<string>(buckets)
    for (let b = 0; b < buckets; b++) hashes[b] = hex32(acc[b * 2]!) + hex32(acc[b * 2 + 1]!)
    const all = hashes.join('')
    const root = hex32(hashString32(all, 0x3c6ef372)) + hex32(hashString32(all, 0xa54ff53a))
    return { buckets, hashes, root, records: records() }
  }
}
