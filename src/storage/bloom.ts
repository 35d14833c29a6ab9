/**
 * A Bloom filter over two 32-bit hashes of a key (Kirsch–Mitzenmacher: probe i is h1 + i·h2 mod m,
 * which keeps the false-positive rate of k independent hashes while hashing the key only twice).
 * The key index keeps one per segment resident so a get of an id the segment does not hold, the
 * common case for new ids and for all but one segment, costs no block read.
 *
 * Serialized form (little-endian): u32 magic "SBLM", u32 k, u32 m (bits), u32 keys it was sized
 * for, then ceil(m / 8) bytes of bits (bit j is byte j >> 3, bit j & 7).
 */

const MAGIC = 0x4d4c4253 // "SBLM" little-endian
const HEADER_BYTES = 16
/** More probes than this buy nothing at any sane rate (k = 30 is a rate of about 1e-9). */
export const BLOOM_MAX_K = 30
/** The bit array is addressed by a uint32 probe and is whole bytes. */
export const BLOOM_MAX_BITS = 0xfffffff8
/** Small filters still get a few words so that an empty segment's filter is well-formed. */
const MIN_BITS = 64

export interface BloomOptions {
  /** Target false-positive rate, in (0, 0.5]. Default 0.01 (about 9.6 bits and 7 probes a key). */
  falsePositiveRate?: number
}

export class BloomFilter {
  private constructor (
    /** Probes per key. */
    readonly k: number,
    /** Size of the bit array, in bits. */
    readonly bits: number,
    /** The number of keys it was sized for (informational; the rate rises past it). */
    readonly sizedFor: number,
    private readonly words: Uint8Array
  ) {}

  /** An empty filter sized for `keys` keys at `falsePositiveRate`: m = -n ln p / ln² 2, k = m/n ln 2. */
  static forKeys (keys: number, opts: BloomOptions = {}): BloomFilter {
    const p = opts.falsePositiveRate ?? 0.01
    if (!(p > 0 && p <= 0.5)) throw new RangeError(`falsePositiveRate must be in (0, 0.5], got ${p}`)
    if (!Number.isSafeInteger(keys) || keys < 0) throw new RangeError(`keys must be a non-negative integer, got ${keys}`)
    const n = Math.max(1, keys)
    const ideal = Math.ceil(-n * Math.log(p) / (Math.LN2 * Math.LN2))
    if (ideal > BLOOM_MAX_BITS) throw new RangeError(`a Bloom filter of ${keys} keys at rate ${p} needs ${ideal} bits, over ${BLOOM_MAX_BITS}`)
    // Round up to whole bytes: the bits past m would be wasted otherwise.
    const bits = Math.min(BLOOM_MAX_BITS, Math.max(MIN_BITS, Math.ceil(ideal / 8) * 8))
    const k = Math.min(BLOOM_MAX_K, Math.max(1, Math.round(bits / n * Math.LN2)))
    return new BloomFilter(k, bits, keys, new Uint8Array(bits >>> 3))
  }

  add (h1: number, h2: number): void {
    const m = this.bits
    const w = this.words
    let pos = (h1 >>> 0) % m
    // A zero step would probe one bit k times: the filter would degrade to k = 1 for that key.
    const step = (h2 >>> 0) % m || 1
    for (let i = 0; i < this.k; i++) {
      w[pos >>> 3]! |= 1 << (pos & 7)
      pos += step
      if (pos >= m) pos -= m
    }
  }

  has (h1: number, h2: number): boolean {
    const m = this.bits
    const w = this.words
    let pos = (h1 >>> 0) % m
    const step = (h2 >>> 0) % m || 1
    for (let i = 0; i < this.k; i++) {
      if ((w[pos >>> 3]! & (1 << (pos & 7))) === 0) return false
      pos += step
      if (pos >= m) pos -= m
    }
    return true
  }

  /** Bytes of the serialized form (and, within a few dozen, of the resident filter). */
  get byteLength (): number { return HEADER_BYTES + this.words.length }

  serialize (): Uint8Array {
    const out = new Uint8Array(this.byteLength)
    const dv = new DataView(out.buffer)
    dv.setUint32(0, MAGIC, true)
    dv.setUint32(4, this.k, true)
    dv.setUint32(8, this.bits, true)
    dv.setUint32(12, this.sizedFor, true)
    out.set(this.words, HEADER_BYTES)
    return out
  }

  /**
   * Reads a serialized filter, checking every field (the bytes come from disk). Throws an Error
   * saying what is wrong; the caller names the file and offset. Copies the bits: the filter stays
   * resident and must not pin a larger read buffer.
   */
  static deserialize (bytes: Uint8Array): BloomFilter {
    if (bytes.length < HEADER_BYTES) throw new Error(`Bloom filter of ${bytes.length} bytes is shorter than its ${HEADER_BYTES}-byte header`)
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const magic = dv.getUint32(0, true)
    if (magic !== MAGIC) throw new Error(`Bloom filter magic is 0x${magic.toString(16)}, expected 0x${MAGIC.toString(16)}`)
    const k = dv.getUint32(4, true)
    const bits = dv.getUint32(8, true)
    const sizedFor = dv.getUint32(12, true)
    if (k < 1 || k > BLOOM_MAX_K) throw new Error(`Bloom filter has k = ${k}, expected 1 to ${BLOOM_MAX_K}`)
    if (bits < MIN_BITS || bits % 8 !== 0) throw new Error(`Bloom filter has ${bits} bits, expected a multiple of 8 of at least ${MIN_BITS}`)
    if (bytes.length !== HEADER_BYTES + bits / 8) throw new Error(`Bloom filter of ${bits} bits should be ${HEADER_BYTES + bits / 8} bytes, is ${bytes.length}`)
    return new BloomFilter(k, bits, sizedFor, bytes.slice(HEADER_BYTES))
  }
}
