/**
 * Anti-entropy digests of a partition: per bucket, an order-independent 64-bit XOR of
 * recordHash(id, version, deleted) over the records held. The accumulators for the bucket counts
 * asked for recently are kept and updated on every change of the index (toggle), so a digest
 * costs one pass over the buckets, not a rescan of the partition.
 */
import { hashString32, hex32, recordHash, stableHash } from './hash.js'
import type { PartitionDigest } from './types.js'

/** Most bucket counts a digest may ask for (one accumulator is 8 bytes a bucket). */
const MAX_BUCKETS = 1 << 20

/** Calls `add` once for every record the partition holds (its newest version). */
export type RecordVisitor = (add: (id: string, version: number, deleted: boolean) => void) => void

export class BucketDigests {
  /** Accumulators by bucket count, most recently used last: two u32 halves per bucket. */
  private readonly accs = new Map<number, Uint32Array>()
  private readonly scratch = new Uint32Array(2)

  /** `maxCached`: bucket counts kept up to date (each costs a hash per write). */
  constructor (private readonly maxCached: number) {}

  /** Adds or removes (XOR is its own inverse) one record version in every kept accumulator. */
  toggle (id: string, version: number, deleted: boolean): void {
    if (this.accs.size === 0) return
    recordHash(id, version, deleted, this.scratch)
    const h = stableHash(id)
    for (const [n, acc] of this.accs) {
      const b = (h % n) * 2
      acc[b]! ^= this.scratch[0]!
      acc[b + 1]! ^= this.scratch[1]!
    }
  }

  /** The accumulator for `buckets`, built by one pass over the records on first use. */
  accumulator (buckets: number, visit: RecordVisitor): Uint32Array {
    let acc = this.accs.get(buckets)
    if (acc !== undefined) {
      // Most recently used last.
      this.accs.delete(buckets)
      this.accs.set(buckets, acc)
      return acc
    }
    const built = new Uint32Array(buckets * 2)
    visit((id, version, deleted) => {
      recordHash(id, version, deleted, this.scratch)
      const b = (stableHash(id) % buckets) * 2
      built[b]! ^= this.scratch[0]!
      built[b + 1]! ^= this.scratch[1]!
    })
    this.accs.set(buckets, built)
    while (this.accs.size > Math.max(1, this.maxCached)) this.accs.delete(this.accs.keys().next().value!)
    return built
  }

  /** The digest of the partition in `buckets` buckets (PartitionStore.digest). */
  digest (buckets: number, records: number, visit: RecordVisitor): PartitionDigest {
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > MAX_BUCKETS) throw new RangeError(`buckets must be an integer from 1 to ${MAX_BUCKETS}, got ${buckets}`)
    const acc = this.accumulator(buckets, visit)
    const hashes = new Array<string>(buckets)
    for (let b = 0; b < buckets; b++) hashes[b] = hex32(acc[b * 2]!) + hex32(acc[b * 2 + 1]!)
    const all = hashes.join('')
    const root = hex32(hashString32(all, 0x3c6ef372)) + hex32(hashString32(all, 0xa54ff53a))
    return { buckets, hashes, root, records }
  }
}
