/**
 * The key-index section of a segment's `.idx` sidecar (issue 12, docs/architecture.md "Disk-resident
 * segments"): for the rows of one segment, stored in key order, it answers "which row holds this
 * id, at which version, is it a tombstone" reading at most one ~4 KiB block, and "which rows make
 * up anti-entropy bucket i of 2^k" as one contiguous row range. What it keeps resident is small
 * (a Bloom filter of about 10 bits a key and one key per block); the blocks go through the peer's
 * block cache.
 *
 * Key order: the bit-reversed `stableHash(id)` (`keyHash`), then the id (JS string order, UTF-16
 * code units). Reversing the bits puts the low bits of the hash, which pick the anti-entropy
 * bucket (`stableHash(id) % 2^k`), at the top, so one bucket is one run of keys.
 *
 * The section works on a byte range of a file it does not own: the segment writer embeds it in the
 * `.idx` file and passes the range to `KeyIndex.open`. All offsets inside are relative to the
 * section's start; all integers are little-endian.
 *
 *   header (80 bytes)
 *     0  u32 magic "SKIX"          4  u16 format version (1)    6  u16 header bytes (80)
 *     8  u32 entries              12  u32 blocks
 *    16  u64 Bloom offset         24  u64 Bloom length
 *    32  u64 sparse offset        40  u64 sparse length
 *    48  u64 blocks offset        56  u64 blocks length
 *    64  u32 CRC-32 of the Bloom filter   68  u32 CRC-32 of the sparse index
 *    72  u32 reserved (0)         76  u32 CRC-32 of bytes 0-75
 *   Bloom filter (bloom.ts), then the sparse index, then the blocks, contiguous in that order.
 *   sparse index (B = blocks), columns of u32: first key hash [B], first row [B], block length [B],
 *     end of the block's first id in the id bytes [B]; then the UTF-8 first ids.
 *   block (about blockBytes; its offset is the sum of the lengths before it)
 *     0  u32 entries n   4  u32 id bytes L   8  u32 flags (bit 0: every id is ASCII)   12  u32 first row
 *    16  u32 key hash [n]   16+4n  u32 end of each id in the id bytes [n]
 *    16+8n  f64 version [n] (an HLC)   16+16n  u8 deleted [n] (0 or 1)   16+17n  id bytes (UTF-8) [L]
 *    zero padding to a multiple of 4, then u32 CRC-32 of everything before it.
 *   A block is decoded into typed-array views of one copy of its bytes (no per-entry objects, no
 *   string decoding): a lookup binary-searches the hashes and compares the one or two candidate
 *   ids' bytes in place.
 */
import { nodeFileSystem, type FileSystem } from '../runtime/index.js'
import { isHlc, type Hlc } from '../hlc/index.js'
import { BloomFilter } from './bloom.js'
import { ScratchBuffers } from './scratch.js'
import { crc32 } from './crc32.js'
import { SEED_BUCKET, fmix32, hashString32, round, stableHash } from './hash.js'

// ---------------------------------------------------------------------------------------------
// Key order

/** Reverses the 32 bits of `x` (as a uint32). */
export function reverseBits32 (x: number): number {
  x = ((x >>> 1) & 0x55555555) | ((x & 0x55555555) << 1)
  x = ((x >>> 2) & 0x33333333) | ((x & 0x33333333) << 2)
  x = ((x >>> 4) & 0x0f0f0f0f) | ((x & 0x0f0f0f0f) << 4)
  x = ((x >>> 8) & 0x00ff00ff) | ((x & 0x00ff00ff) << 8)
  return ((x >>> 16) | (x << 16)) >>> 0
}

/** The first component of an id's key: its bucket hash, bit-reversed (a uint32). */
/** The two hashes a Bloom filter of a key index tests for `id` (see mayContainHashes). */
export function bloomHashes (id: string, out: Uint32Array): void {
  out[0] = stableHash(id)
  out[1] = hashString32(id, BLOOM_SEED)
}

export function keyHash (id: string): number { return reverseBits32(stableHash(id)) }

/** Key order: by `keyHash`, then by the id (JS string order). Negative, zero or positive. */
export function compareKeys (a: string, b: string): number {
  if (a === b) return 0
  const ha = keyHash(a)
  const hb = keyHash(b)
  if (ha !== hb) return ha < hb ? -1 : 1
  return a < b ? -1 : 1
}

/**
 * Compares two ids in UTF-8 (a[aS, aE) and b[bS, bE)) in JS string order (UTF-16 code units), the
 * second component of key order. Byte order is code-point order; the two differ only between a
 * character of U+E000..U+FFFF (lead byte 0xEE or 0xEF) and one beyond U+FFFF (lead 0xF0..0xF4, a
 * surrogate pair in UTF-16, which sorts first). Equal prefixes put both at the same character
 * boundary, so the first differing byte tells. Negative, zero or positive.
 */
export function compareUtf16Order (a: Uint8Array, aS: number, aE: number, b: Uint8Array, bS: number, bE: number): number {
  const n = Math.min(aE - aS, bE - bS)
  for (let k = 0; k < n; k++) {
    const x = a[aS + k]!
    const y = b[bS + k]!
    if (x === y) continue
    if (x >= 0xf0 && (y === 0xee || y === 0xef)) return -1
    if (y >= 0xf0 && (x === 0xee || x === 0xef)) return 1
    return x < y ? -1 : 1
  }
  return (aE - aS) - (bE - bS)
}

/**
 * The permutation that puts `ids` in key order (hashes computed once, not per comparison):
 * `ids[order[0]]` is the first key. Ties (equal ids) keep their input order.
 */
export function keyOrder (ids: readonly string[]): Uint32Array {
  const n = ids.length
  const h = new Uint32Array(n)
  for (let i = 0; i < n; i++) h[i] = keyHash(ids[i]!)
  // A stable LSD radix sort on the hash, 16 bits a pass (a comparison sort of a million ids
  // took about 5 times as long), then equal hashes, which are rare, ordered by id.
  let src = new Uint32Array(n)
  for (let i = 0; i < n; i++) src[i] = i
  let dst = new Uint32Array(n)
  const counts = new Uint32Array(65537)
  for (const shift of [0, 16]) {
    counts.fill(0)
    for (let i = 0; i < n; i++) counts[((h[i]! >>> shift) & 0xffff) + 1]!++
    for (let d = 1; d <= 65536; d++) counts[d]! += counts[d - 1]!
    for (let i = 0; i < n; i++) {
      const j = src[i]!
      dst[counts[(h[j]! >>> shift) & 0xffff]!++] = j
    }
    const t = src; src = dst; dst = t
  }
  for (let i = 0; i < n;) {
    let e = i + 1
    const hi = h[src[i]!]!
    while (e < n && h[src[e]!] === hi) e++
    if (e - i > 1) {
      src.subarray(i, e).sort((a, b) => {
        const x = ids[a]!
        const y = ids[b]!
        return x < y ? -1 : x > y ? 1 : a - b
      })
    }
    i = e
  }
  return src
}

/**
 * The inclusive `keyHash` range [lo, hi] of anti-entropy bucket `index` of `buckets` (a power of
 * two, 1 to 2^32): the keys whose `stableHash(id) % buckets === index`. The low k bits of the
 * hash are the top k bits of the key hash, reversed.
 */
export function bucketRange (index: number, buckets: number): { lo: number, hi: number } {
  const k = Math.log2(buckets)
  if (!Number.isInteger(k) || k < 0 || k > 32) throw new RangeError(`buckets must be a power of two from 1 to 2^32, got ${buckets}`)
  if (!Number.isInteger(index) || index < 0 || index >= buckets) throw new RangeError(`bucket index must be an integer in [0, ${buckets}), got ${index}`)
  const lo = k === 0 ? 0 : reverseBits32(index)
  return { lo, hi: lo + 2 ** (32 - k) - 1 }
}

// ---------------------------------------------------------------------------------------------
// Format

const MAGIC = 0x58494b53 // "SKIX" little-endian
const FORMAT_VERSION = 1
const HEADER_BYTES = 80
const BLOCK_HEADER_BYTES = 16
const FLAG_ASCII = 1
/** Second Bloom hash of an id; the first is `stableHash`, which a lookup needs anyway. */
const BLOOM_SEED = 0x3c6ef372
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const align4 = (n: number): number => (n + 3) & ~3
/** Bytes of a block of `n` entries whose ids take `idBytes` bytes of UTF-8. */
const blockSize = (n: number, idBytes: number): number => align4(BLOCK_HEADER_BYTES + 17 * n + idBytes) + 4

export interface KeyIndexEntry {
  id: string
  /** The row's HLC version. */
  version: Hlc
  /** A tombstone. */
  deleted: boolean
}

export interface KeyIndexOptions {
  /** Target bytes of one index block (the unit read and cached), 256 to 1 MiB. Default 4,096. */
  blockBytes?: number
  /** Bloom filter false-positive rate for absent ids, in (0, 0.5]. Default 0.01 (about 10 bits a key). */
  falsePositiveRate?: number
}

export const KEY_INDEX_DEFAULT_BLOCK_BYTES = 4096

/**
 * A key-index section, the bytes of decoded on-disk input failing a check: names the file, the
 * absolute offset of the part that failed (the section, the Bloom filter, the sparse index or a
 * block), and what is wrong.
 */
export class KeyIndexCorruptError extends Error {
  override name = 'KeyIndexCorruptError'
  constructor (readonly path: string, readonly offset: number, readonly reason: string, options?: { cause?: unknown }) {
    super(`key index in ${path} at offset ${offset} is corrupt: ${reason}`, options)
  }
}

/** UTF-8 length of `s`, or -1 if it holds a lone surrogate (which UTF-8 cannot carry back). */
function utf8Length (s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0
      if (d < 0xdc00 || d > 0xdfff) return -1
      n += 4
      i++
    } else if (c >= 0xdc00 && c <= 0xdfff) return -1
    else n += 3
  }
  return n
}

/**
 * Encodes the key-index section of a segment whose row i is `entries[i]`. Entries must be in key
 * order with unique ids (`keyOrder` sorts them), versions HLCs, ids well-formed UTF-16; anything
 * else throws, since a reader's binary search would silently give wrong answers.
 */
export function encodeKeyIndex (entries: readonly KeyIndexEntry[] | KeyIndexColumns | KeyIndexRows, opts: KeyIndexOptions = {}): Uint8Array {
  const steps = encodeSteps(Array.isArray(entries) ? keyIndexColumns(entries as readonly KeyIndexEntry[]) : entries as KeyIndexColumns | KeyIndexRows, opts)
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
  }
}

/**
 * encodeKeyIndex, yielding to the event loop after every ENCODE_STEP entries of each pass: a
 * compaction's index of millions of keys would otherwise hold the loop for hundreds of ms.
 */
export async function encodeKeyIndexYielding (entries: KeyIndexColumns | KeyIndexRows, opts: KeyIndexOptions = {}): Promise<Uint8Array> {
  const steps = encodeSteps(entries, opts)
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
    await new Promise(resolve => setImmediate(resolve))
  }
}

/**
 * Entries as columns: row i is (ids[i], versions[i], deleted[i] === 1). What a writer that
 * gathered millions of rows hands over, without an object per row.
 */
export interface KeyIndexColumns {
  readonly ids: readonly string[]
  readonly versions: ArrayLike<number>
  readonly deleted: ArrayLike<number>
}

/**
 * Entries with their ids in UTF-8 and their hashes already computed, in chunks (rows in order,
 * chunk after chunk). What a streaming writer keeps instead of a string per row: each batch's id
 * column as written, and the hashes it took of the ids to check their order. The encoder copies
 * ids, hashes, versions and flags into the blocks as bytes.
 */
export interface KeyIndexRows {
  readonly chunks: readonly KeyIndexChunk[]
}

/**
 * Rows of a KeyIndexRows: row i's id is idBytes[idOffsets[i], idOffsets[i + 1]), its keyHash
 * hashes[i], its second Bloom hash bloomHashes[i] (keyBloomHash), its version and flag.
 */
export interface KeyIndexChunk {
  readonly idBytes: Uint8Array
  readonly idOffsets: Int32Array | Float64Array
  readonly hashes: Uint32Array
  readonly bloomHashes: Uint32Array
  readonly versions: Float64Array
  readonly deleted: Uint8Array
}

/** The second hash a key index's Bloom filter takes of `id` (the first is stableHash(id): keyHash's bits reversed). */
export function keyBloomHash (id: string): number { return hashString32(id, BLOOM_SEED) }

/**
 * keyHash and keyBloomHash (into out[0] and out[1]) of the id whose UTF-8 is bytes[s, e), without
 * making the string: hashString32's murmur3 rounds over its UTF-16 code units, decoded on the fly
 * (a compaction hashes a million ids it never needs as strings), with hash.ts's rounds: the
 * tests check both give the same hashes for ids of every UTF-8 length. Throws on a sequence
 * running past `e` (ids come CRC-checked from files this code wrote).
 */
export function keyHashesUtf8 (bytes: Uint8Array, s: number, e: number, out: Uint32Array): void {
  let h1 = SEED_BUCKET | 0
  let h2 = BLOOM_SEED | 0
  let units = 0
  let pending = -1
  for (let p = s; p < e;) {
    const x = bytes[p]!
    let cp: number
    if (x < 0x80) {
      cp = x
      p += 1
    } else {
      const len = x < 0xe0 ? 2 : x < 0xf0 ? 3 : 4
      if (p + len > e) throw new RangeError(`a UTF-8 id ends inside a character (byte ${p - s} of ${e - s})`)
      cp = len === 2
        ? ((x & 0x1f) << 6) | (bytes[p + 1]! & 0x3f)
        : len === 3
          ? ((x & 0x0f) << 12) | ((bytes[p + 1]! & 0x3f) << 6) | (bytes[p + 2]! & 0x3f)
          : ((x & 0x07) << 18) | ((bytes[p + 1]! & 0x3f) << 12) | ((bytes[p + 2]! & 0x3f) << 6) | (bytes[p + 3]! & 0x3f)
      p += len
    }
    // One code unit, or a surrogate pair; units go to the rounds two at a time, as hashString32 takes them.
    let u = cp
    if (cp >= 0x10000) {
      const c = cp - 0x10000
      u = 0xd800 + (c >> 10)
      if (pending < 0) {
        pending = u
      } else {
        const k = pending | (u << 16)
        h1 = round(h1, k)
        h2 = round(h2, k)
        pending = -1
      }
      units++
      u = 0xdc00 + (c & 0x3ff)
    }
    if (pending < 0) {
      pending = u
    } else {
      const k = pending | (u << 16)
      h1 = round(h1, k)
      h2 = round(h2, k)
      pending = -1
    }
    units++
  }
  if (pending >= 0) {
    h1 = round(h1, pending)
    h2 = round(h2, pending)
  }
  out[0] = reverseBits32(fmix32(h1 ^ units))
  out[1] = fmix32(h2 ^ units)
}


/** Entries (records too) as key-index columns, in their order. */
export function keyIndexColumns (entries: readonly KeyIndexEntry[]): KeyIndexColumns {
  const n = entries.length
  const ids = new Array<string>(n)
  const versions = new Float64Array(n)
  const deleted = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const e = entries[i]!
    if (e === null || typeof e !== 'object') throw new TypeError(`entry ${i} is not an entry`)
    if (typeof e.deleted !== 'boolean') throw new TypeError(`entry ${i} (${JSON.stringify(e.id)}): deleted is not a boolean`)
    ids[i] = e.id
    versions[i] = e.version
    deleted[i] = e.deleted ? 1 : 0
  }
  return { ids, versions, deleted }
}

/** Entries encoded between two yields of encodeSteps. */
const ENCODE_STEP = 16_384

/** Columns as one chunk of rows: each id's UTF-8 (refusing lone surrogates, which UTF-8 cannot carry back) and hashes. */
function * chunkOf (entries: KeyIndexColumns): Generator<undefined, KeyIndexChunk> {
  const { ids, versions, deleted } = entries
  const n = ids.length
  if (versions.length !== n || deleted.length !== n) throw new RangeError(`key index columns of ${n} ids, ${versions.length} versions and ${deleted.length} flags`)
  const idOffsets = new Float64Array(n + 1)
  const hashes = new Uint32Array(n)
  const bloomHashes = new Uint32Array(n)
  let total = 0
  for (let i = 0; i < n; i++) {
    if (i % ENCODE_STEP === ENCODE_STEP - 1) yield
    const id = ids[i]!
    if (typeof id !== 'string') throw new TypeError(`entry ${i}: id is not a string`)
    const len = utf8Length(id)
    if (len < 0) throw new TypeError(`entry ${i}: id ${JSON.stringify(id)} holds a lone surrogate`)
    total += len
    idOffsets[i + 1] = total
    hashes[i] = keyHash(id)
    bloomHashes[i] = keyBloomHash(id)
  }
  const idBytes = Buffer.allocUnsafe(total)
  for (let i = 0; i < n; i++) {
    if (i % ENCODE_STEP === ENCODE_STEP - 1) yield
    const id = ids[i]!
    const at = idOffsets[i]!
    const len = idOffsets[i + 1]! - at
    // Equal lengths mean every character is ASCII: copied by hand, as Buffer.write's call
    // overhead was a fifth of the encode.
    if (len === id.length) for (let c = 0; c < len; c++) idBytes[at + c] = id.charCodeAt(c)
    else idBytes.write(id, at, len, 'utf8')
  }
  return { idBytes, idOffsets, hashes, bloomHashes, versions: Float64Array.from(versions), deleted: Uint8Array.from(deleted) }
}

/** encodeKeyIndex as steps: yields (nothing) every ENCODE_STEP entries of each pass, returns the section. */
function * encodeSteps (entries: KeyIndexColumns | KeyIndexRows, opts: KeyIndexOptions): Generator<undefined, Uint8Array> {
  const blockBytes = opts.blockBytes ?? KEY_INDEX_DEFAULT_BLOCK_BYTES
  if (!Number.isInteger(blockBytes) || blockBytes < 256 || blockBytes > 1 << 20) throw new RangeError(`blockBytes must be an integer from 256 to 1 MiB, got ${blockBytes}`)
  const chunks = 'ids' in entries ? [yield * chunkOf(entries)] : entries.chunks
  let n = 0
  for (const c of chunks) {
    const m = c.hashes.length
    if (c.idOffsets.length !== m + 1 || c.bloomHashes.length !== m || c.versions.length !== m || c.deleted.length !== m || !(c.idOffsets[m]! <= c.idBytes.length)) {
      throw new RangeError(`a key index chunk of ${m} hashes, ${c.idOffsets.length} id offsets, ${c.bloomHashes.length} Bloom hashes, ${c.versions.length} versions and ${c.deleted.length} flags`)
    }
    n += m
  }
  if (n > 0xffffffff) throw new RangeError(`a key index holds at most 2^32 - 1 entries, got ${n}`)
  const bloom = BloomFilter.forKeys(n, { falsePositiveRate: opts.falsePositiveRate })
  const idText = (c: KeyIndexChunk, i: number): string => JSON.stringify(Buffer.from(c.idBytes.buffer, c.idBytes.byteOffset, c.idBytes.length).toString('utf8', c.idOffsets[i], c.idOffsets[i + 1]))

  // Pass 1: checks, the Bloom filter, block boundaries (entry numbers across the chunks).
  const blockStarts: number[] = []
  const blockIdBytes: number[] = []
  let blocksLength = 0
  let inBlock = 0
  let idBytesIn = 0
  let g = 0
  let prev: KeyIndexChunk | undefined
  let prevAt = 0
  for (const c of chunks) {
    const { idOffsets, hashes, versions, deleted } = c
    for (let i = 0; i < hashes.length; i++, g++) {
      if (g % ENCODE_STEP === ENCODE_STEP - 1) yield
      if (!isHlc(versions[i])) throw new TypeError(`entry ${g} (${idText(c, i)}): version ${String(versions[i])} is not an HLC`)
      if (deleted[i] !== 0 && deleted[i] !== 1) throw new TypeError(`entry ${g} (${idText(c, i)}): deleted is not a boolean`)
      const s = idOffsets[i]!
      const len = idOffsets[i + 1]! - s
      if (!(len >= 0)) throw new RangeError(`entry ${g}: id offsets ${s} to ${idOffsets[i + 1]!}`)
      const h = hashes[i]!
      if (prev !== undefined) {
        const ph = prev.hashes[prevAt]!
        if (h < ph || (h === ph && compareUtf16Order(prev.idBytes, prev.idOffsets[prevAt]!, prev.idOffsets[prevAt + 1]!, c.idBytes, s, s + len) >= 0)) {
          throw new RangeError(`entries are not in key order with unique ids: entry ${g} ${idText(c, i)} does not follow ${idText(prev, prevAt)}`)
        }
      }
      prev = c
      prevAt = i
      bloom.add(reverseBits32(h), c.bloomHashes[i]!)
      if (inBlock > 0 && blockSize(inBlock + 1, idBytesIn + len) > blockBytes) {
        blocksLength += blockSize(inBlock, idBytesIn)
        blockIdBytes.push(idBytesIn)
        inBlock = 0
        idBytesIn = 0
      }
      if (inBlock === 0) blockStarts.push(g)
      inBlock++
      idBytesIn += len
    }
  }
  if (inBlock > 0) {
    blocksLength += blockSize(inBlock, idBytesIn)
    blockIdBytes.push(idBytesIn)
  }
  const blockCount = blockStarts.length
  blockStarts.push(n)
  yield

  // Where each block starts: its chunk and row there (blocks and chunks both in entry order).
  const firstChunk = new Uint32Array(blockCount)
  const firstRow = new Float64Array(blockCount)
  let sparseIdBytes = 0
  for (let b = 0, k = 0, base = 0; b < blockCount; b++) {
    while (blockStarts[b]! >= base + chunks[k]!.hashes.length) base += chunks[k++]!.hashes.length
    firstChunk[b] = k
    firstRow[b] = blockStarts[b]! - base
    const c = chunks[k]!
    sparseIdBytes += c.idOffsets[firstRow[b]! + 1]! - c.idOffsets[firstRow[b]!]!
  }
  const bloomBytes = bloom.serialize()
  const bloomOffset = HEADER_BYTES
  const sparseOffset = bloomOffset + bloomBytes.length
  const sparseLength = 16 * blockCount + sparseIdBytes
  const blocksOffset = sparseOffset + sparseLength
  const total = blocksOffset + blocksLength
  const out = Buffer.alloc(total)
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength)
  out.set(bloomBytes, bloomOffset)
  // The filter's copies (about 1.2 bytes a key, twice) and the fresh pages they touch took a step's time.
  yield

  // Blocks, and the sparse index entry of each. Hashes, versions, flags and ids lie in the chunks
  // as in a block (little-endian words, ids back to back): copied as bytes, a chunk's run at a time.
  let at = blocksOffset
  let sparseIdAt = sparseOffset + 16 * blockCount
  let sinceYield = 0
  for (let b = 0; b < blockCount; b++) {
    const cnt = blockStarts[b + 1]! - blockStarts[b]!
    sinceYield += cnt
    if (sinceYield >= ENCODE_STEP) { sinceYield = 0; yield }
    const idLength = blockIdBytes[b]!
    const size = blockSize(cnt, idLength)
    const hAt = at + BLOCK_HEADER_BYTES
    const endAt = hAt + 4 * cnt
    const vAt = hAt + 8 * cnt
    const dAt = hAt + 16 * cnt
    const idStart = hAt + 17 * cnt
    let idAt = idStart
    let ascii = true
    // The block's rows: from row firstRow[b] of chunk firstChunk[b], on into the next chunks.
    for (let j = 0, k = firstChunk[b]!, from = firstRow[b]!; j < cnt; k++, from = 0) {
      const c = chunks[k]!
      const to = Math.min(c.hashes.length, from + cnt - j)
      const run = to - from
      if (LITTLE_ENDIAN) {
        out.set(new Uint8Array(c.hashes.buffer, c.hashes.byteOffset + 4 * from, 4 * run), hAt + 4 * j)
        out.set(new Uint8Array(c.versions.buffer, c.versions.byteOffset + 8 * from, 8 * run), vAt + 8 * j)
      } else {
        for (let r = 0; r < run; r++) {
          dv.setUint32(hAt + 4 * (j + r), c.hashes[from + r]!, true)
          dv.setFloat64(vAt + 8 * (j + r), c.versions[from + r]!, true)
        }
      }
      out.set(c.deleted.subarray(from, to), dAt + j)
      const idFrom = c.idOffsets[from]!
      const idTo = c.idOffsets[to]!
      out.set(c.idBytes.subarray(idFrom, idTo), idAt)
      for (let k2 = idFrom; k2 < idTo && ascii; k2++) if (c.idBytes[k2]! >= 0x80) ascii = false
      for (let r = 0; r < run; r++) dv.setUint32(endAt + 4 * (j + r), idAt - idStart + c.idOffsets[from + r + 1]! - idFrom, true)
      idAt += idTo - idFrom
      j += run
    }
    if (idAt - idStart !== idLength) throw new Error(`key index layout: block ${b} holds ${idAt - idStart} id bytes, planned ${idLength}`)
    dv.setUint32(at, cnt, true)
    dv.setUint32(at + 4, idLength, true)
    dv.setUint32(at + 8, ascii ? FLAG_ASCII : 0, true)
    dv.setUint32(at + 12, blockStarts[b]!, true)
    dv.setUint32(at + size - 4, crc32(out.subarray(at, at + size - 4)), true)

    const c = chunks[firstChunk[b]!]!
    const r = firstRow[b]!
    const firstFrom = c.idOffsets[r]!
    const firstTo = c.idOffsets[r + 1]!
    dv.setUint32(sparseOffset + 4 * b, c.hashes[r]!, true)
    dv.setUint32(sparseOffset + 4 * (blockCount + b), blockStarts[b]!, true)
    dv.setUint32(sparseOffset + 4 * (2 * blockCount + b), size, true)
    out.set(c.idBytes.subarray(firstFrom, firstTo), sparseIdAt)
    sparseIdAt += firstTo - firstFrom
    dv.setUint32(sparseOffset + 4 * (3 * blockCount + b), sparseIdAt - (sparseOffset + 16 * blockCount), true)
    at += size
  }
  if (at !== total) throw new Error(`key index layout: wrote ${at} bytes, planned ${total}`)

  dv.setUint32(0, MAGIC, true)
  dv.setUint16(4, FORMAT_VERSION, true)
  dv.setUint16(6, HEADER_BYTES, true)
  dv.setUint32(8, n, true)
  dv.setUint32(12, blockCount, true)
  setU64(dv, 16, bloomOffset)
  setU64(dv, 24, bloomBytes.length)
  setU64(dv, 32, sparseOffset)
  setU64(dv, 40, sparseLength)
  setU64(dv, 48, blocksOffset)
  setU64(dv, 56, blocksLength)
  dv.setUint32(64, crc32(out.subarray(bloomOffset, bloomOffset + bloomBytes.length)), true)
  dv.setUint32(68, crc32(out.subarray(sparseOffset, sparseOffset + sparseLength)), true)
  dv.setUint32(72, 0, true)
  dv.setUint32(76, crc32(out.subarray(0, 76)), true)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

function setU64 (dv: DataView, at: number, v: number): void {
  dv.setUint32(at, v % 4294967296, true)
  dv.setUint32(at + 4, Math.floor(v / 4294967296), true)
}

function getU64 (dv: DataView, at: number): number {
  return dv.getUint32(at + 4, true) * 4294967296 + dv.getUint32(at, true)
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A byte source: the file the section lives in. `read` may return fewer bytes at end of file. */
export interface KeyIndexSource {
  readonly path: string
  /** `length` bytes at `offset` (fewer at the end), into `into` (at least `length` long) when given. */
  read (offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>
}

/** The part of the peer's BlockCache (src/storage/block-cache.ts) the key index uses. */
export interface KeyIndexCache {
  getOrLoad<T> (key: string, load: () => Promise<{ value: T, bytes: number }>): Promise<T>
  /** The value held under `key`, undefined on a miss (nothing loaded). */
  get<T> (key: string): T | undefined
  /** Keeps `value` (of `bytes` bytes) under `key`. */
  set (key: string, value: unknown, bytes: number): void
  /** Counts a block read on a miss, kept or not (BlockCache.countLoad). */
  countLoad (bytes: number): void
}

export interface KeyIndexHit { row: number, version: Hlc, deleted: boolean }
export interface KeyIndexRow extends KeyIndexHit { id: string }

/** One decoded block: views into one private copy of its bytes. */
interface Block {
  /** What it costs in the cache: its bytes and BLOCK_OVERHEAD_BYTES. */
  readonly bytes: number
  readonly firstRow: number
  readonly count: number
  readonly ascii: boolean
  readonly hashes: Uint32Array
  readonly idEnds: Uint32Array
  readonly versions: Float64Array
  readonly deleted: Uint8Array
  readonly ids: Uint8Array
}

/** What a cached block costs beyond its bytes: the object and its five views. */
const BLOCK_OVERHEAD_BYTES = 400
/** What the sparse index's resident strings cost beyond two bytes a character (the block cache's rule). */
const STRING_OVERHEAD_BYTES = 16

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A key-index section opened for reading: the header, Bloom filter and sparse index are read,
 * checked and kept; blocks are read on demand through the cache, each decoded once per cache
 * residency. Safe for concurrent use (the cache loads a block once for simultaneous misses).
 */
export class KeyIndex {
  private constructor (
    private readonly source: KeyIndexSource,
    private readonly cache: KeyIndexCache,
    private readonly cacheKey: string,
    /** Entries (rows of the segment). */
    readonly count: number,
    private readonly bloom: BloomFilter,
    private readonly firstHash: Uint32Array,
    /** First row of each block, and `count` after the last. */
    private readonly firstRow: Uint32Array,
    /** Absolute file offset of each block, and the section's end after the last. */
    private readonly blockOffset: Float64Array,
    private readonly firstIds: string[],
    private readonly sparseStringBytes: number
  ) {}

  get path (): string { return this.source.path }
  get blockCount (): number { return this.firstHash.length }

  /** Bytes held while open, excluding cached blocks: the Bloom filter and the sparse index. */
  get residentBytes (): number {
    return this.bloom.byteLength + this.firstHash.byteLength + this.firstRow.byteLength + this.blockOffset.byteLength +
      8 * this.firstIds.length + this.sparseStringBytes
  }

  /**
   * Opens the section at `[at, at + length)` of `source`: reads and checks the header, the Bloom
   * filter and the sparse index (two reads). `cacheKey` must be unique to this section among the
   * cache's users (e.g. groupKey of the `.idx` file's path): blocks are cached as `${cacheKey}#${block}`.
   */
  static async open (source: KeyIndexSource, at: number, length: number, cache: KeyIndexCache, cacheKey: string): Promise<KeyIndex> {
    const path = source.path
    const bad = (offset: number, reason: string, cause?: unknown): KeyIndexCorruptError =>
      new KeyIndexCorruptError(path, at + offset, reason, cause === undefined ? undefined : { cause })
    if (!Number.isSafeInteger(at) || at < 0 || !Number.isSafeInteger(length) || length < 0) throw new RangeError(`key index range [${at}, +${length}) is not a byte range`)
    if (length < HEADER_BYTES) throw bad(0, `section of ${length} bytes is shorter than its ${HEADER_BYTES}-byte header`)
    const head = await readExactly(source, at, HEADER_BYTES, () => bad(0, 'the file ends inside the header'))
    const dv = new DataView(head.buffer, head.byteOffset, head.byteLength)
    const magic = dv.getUint32(0, true)
    if (magic !== MAGIC) throw bad(0, `magic is 0x${magic.toString(16)}, expected 0x${MAGIC.toString(16)} ("SKIX")`)
    const headerCrc = crc32(head.subarray(0, 76))
    if (headerCrc !== dv.getUint32(76, true)) throw bad(0, `header CRC-32 is ${hex(headerCrc)}, the header says ${hex(dv.getUint32(76, true))}`)
    const version = dv.getUint16(4, true)
    if (version !== FORMAT_VERSION) throw bad(0, `format version ${version}, this reader knows ${FORMAT_VERSION}`)
    if (dv.getUint16(6, true) !== HEADER_BYTES) throw bad(0, `header size ${dv.getUint16(6, true)}, expected ${HEADER_BYTES}`)
    if (dv.getUint32(72, true) !== 0) throw bad(0, 'reserved header field is not zero')
    const count = dv.getUint32(8, true)
    const blockCount = dv.getUint32(12, true)
    const bloomOffset = getU64(dv, 16)
    const bloomLength = getU64(dv, 24)
    const sparseOffset = getU64(dv, 32)
    const sparseLength = getU64(dv, 40)
    const blocksOffset = getU64(dv, 48)
    const blocksLength = getU64(dv, 56)
    if (bloomOffset !== HEADER_BYTES || sparseOffset !== bloomOffset + bloomLength || blocksOffset !== sparseOffset + sparseLength ||
        blocksOffset + blocksLength !== length) {
      throw bad(0, `sections [Bloom ${bloomOffset}+${bloomLength}, sparse ${sparseOffset}+${sparseLength}, blocks ${blocksOffset}+${blocksLength}] do not tile the section's ${length} bytes`)
    }
    if ((count === 0) !== (blockCount === 0) || blockCount > count) throw bad(0, `${count} entries in ${blockCount} blocks`)
    if (sparseLength < 16 * blockCount) throw bad(0, `sparse index of ${sparseLength} bytes is too short for ${blockCount} blocks`)
    if (blocksLength < blockCount * blockSize(1, 0)) throw bad(0, `${blocksLength} bytes of blocks is too short for ${blockCount} blocks`)

    // The Bloom filter and the sparse index are adjacent: one read.
    const resident = await readExactly(source, at + bloomOffset, bloomLength + sparseLength, () => bad(bloomOffset, 'the file ends inside the Bloom filter or sparse index'))
    const bloomBytes = resident.subarray(0, bloomLength)
    const sparse = resident.subarray(bloomLength)
    const bloomCrc = crc32(bloomBytes)
    if (bloomCrc !== dv.getUint32(64, true)) throw bad(bloomOffset, `Bloom filter CRC-32 is ${hex(bloomCrc)}, the header says ${hex(dv.getUint32(64, true))}`)
    const sparseCrc = crc32(sparse)
    if (sparseCrc !== dv.getUint32(68, true)) throw bad(sparseOffset, `sparse index CRC-32 is ${hex(sparseCrc)}, the header says ${hex(dv.getUint32(68, true))}`)
    let bloom: BloomFilter
    try {
      bloom = BloomFilter.deserialize(bloomBytes)
    } catch (err) {
      throw bad(bloomOffset, (err as Error).message, err)
    }

    const sdv = new DataView(sparse.buffer, sparse.byteOffset, sparse.byteLength)
    const firstHash = new Uint32Array(blockCount)
    const firstRow = new Uint32Array(blockCount + 1)
    const blockOffset = new Float64Array(blockCount + 1)
    const firstIds: string[] = new Array(blockCount)
    const idBase = 16 * blockCount
    const idBytes = sparseLength - idBase
    let off = at + blocksOffset
    let idPrev = 0
    let stringBytes = 0
    for (let b = 0; b < blockCount; b++) {
      const h = sdv.getUint32(4 * b, true)
      const row = sdv.getUint32(4 * (blockCount + b), true)
      const len = sdv.getUint32(4 * (2 * blockCount + b), true)
      const idEnd = sdv.getUint32(4 * (3 * blockCount + b), true)
      if (idEnd < idPrev || idEnd > idBytes) throw bad(sparseOffset, `block ${b}: first id ends at ${idEnd}, outside [${idPrev}, ${idBytes}]`)
      let id: string
      try {
        id = fatalUtf8.decode(sparse.subarray(idBase + idPrev, idBase + idEnd))
      } catch (err) {
        throw bad(sparseOffset, `block ${b}: first id is not UTF-8`, err)
      }
      idPrev = idEnd
      if (b === 0 ? row !== 0 : row <= firstRow[b - 1]! || row >= count) throw bad(sparseOffset, `block ${b}: first row ${row} out of order or range (${count} entries)`)
      if (b > 0 && (h < firstHash[b - 1]! || (h === firstHash[b - 1]! && !(firstIds[b - 1]! < id)))) throw bad(sparseOffset, `block ${b}: first key is not after block ${b - 1}'s`)
      if (len < blockSize(1, 0) || len % 4 !== 0) throw bad(sparseOffset, `block ${b}: length ${len} is not a block's`)
      firstHash[b] = h
      firstRow[b] = row
      blockOffset[b] = off
      firstIds[b] = id
      stringBytes += STRING_OVERHEAD_BYTES + 2 * id.length
      off += len
    }
    if (idPrev !== idBytes) throw bad(sparseOffset, `sparse index holds ${idBytes} bytes of ids, its blocks use ${idPrev}`)
    if (off !== at + length) throw bad(sparseOffset, `block lengths add up to ${off - at - blocksOffset} bytes, the header says ${blocksLength}`)
    firstRow[blockCount] = count
    blockOffset[blockCount] = off
    return new KeyIndex(source, cache, cacheKey, count, bloom, firstHash, firstRow, blockOffset, firstIds, stringBytes)
  }

  /** False when the segment certainly does not hold `id`; true when it may (1 % false positives by default). */
  mayContain (id: string): boolean {
    return this.count > 0 && this.bloom.has(stableHash(id), hashString32(id, BLOOM_SEED))
  }

  /** mayContain() with the id's two Bloom hashes computed once (bloomHashes) for several segments. */
  mayContainHashes (h1: number, h2: number): boolean {
    return this.count > 0 && this.bloom.has(h1, h2)
  }

  /**
   * The row, version and tombstone flag of `id`, or undefined: at most one block read, cached
   * only when it holds `id`. `transient`:
   * a block not in the cache is read into borrowed memory, checked, searched and forgotten, not
   * cached: for a pass of lookups that will not come back to these blocks (a WAL replay at
   * restart looked up 16,512 ids its Bloom filters could not rule out and cached 55 MB of blocks
   * for it, a fresh page fault for every 4 KiB of them).
   */
  lookup (id: string, transient = false): Promise<KeyIndexHit | undefined> {
    // Not an async function: a promise chain of one step costs less on this hot path.
    if (this.count === 0) return NO_HIT
    const h1 = stableHash(id)
    if (!this.bloom.has(h1, hashString32(id, BLOOM_SEED))) return NO_HIT
    const h = reverseBits32(h1)
    // The last block whose first key is <= (h, id): the only one that can hold the key.
    const fh = this.firstHash
    let p = searchUint32(fh, h)
    while (p < fh.length && fh[p] === h && this.firstIds[p]! <= id) p++
    if (p === 0) return NO_HIT
    const key = `${this.cacheKey}#${p - 1}`
    const cached = this.cache.get<Block>(key)
    if (cached !== undefined) return Promise.resolve(findInBlock(cached, h, id))
    if (transient) return this.transientLookup(p - 1, h, id)
    // A block read for an id it does not hold (a Bloom filter's false positive, one lookup in a
    // hundred a segment: what an ingest of new ids mostly reads) is not kept: it would fill the
    // cache with blocks nothing asks for again, pushing out what queries read. One that holds
    // the id is (a get or an update of that id, or of its neighbours, comes back to it).
    // Lookups arriving while the block is read wait for that read (one read however many ask).
    let reading = this.reading.get(p - 1)
    if (reading === undefined) {
      reading = this.loadBlock(p - 1)
      this.cache.countLoad(this.blockOffset[p]! - this.blockOffset[p - 1]!)
      this.reading.set(p - 1, reading)
      const done = (): void => { this.reading.delete(p - 1) }
      reading.then(done, done)
    }
    return reading.then(block => {
      const hit = findInBlock(block, h, id)
      if (hit !== undefined) this.cache.set(key, block, block.bytes)
      return hit
    })
  }

  /** Blocks being read for lookup(), by number. */
  private readonly reading = new Map<number, Promise<Block>>()

  private async transientLookup (b: number, h: number, id: string): Promise<KeyIndexHit | undefined> {
    const length = this.blockOffset[b + 1]! - this.blockOffset[b]!
    const scratch = blockScratch.take(length)
    this.cache.countLoad(length)
    try {
      return findInBlock(await this.loadBlock(b, scratch), h, id)
    } finally {
      blockScratch.give(scratch)
    }
  }

  /** Rows `[fromRow, toRow)` (default all) in key order, a block at a time. */
  async * entries (fromRow = 0, toRow = this.count): AsyncGenerator<KeyIndexRow> {
    if (!Number.isInteger(fromRow) || !Number.isInteger(toRow) || fromRow < 0 || toRow > this.count || fromRow > toRow) {
      throw new RangeError(`row range [${fromRow}, ${toRow}) is not within [0, ${this.count})`)
    }
    if (fromRow === toRow) return
    let b = upperBound(this.firstRow, fromRow, this.blockCount) - 1
    for (; b < this.blockCount && this.firstRow[b]! < toRow; b++) {
      const block = await this.block(b)
      const from = Math.max(fromRow, block.firstRow) - block.firstRow
      const to = Math.min(toRow, block.firstRow + block.count) - block.firstRow
      const ids = this.decodeIds(b, block, from, to)
      for (let i = from; i < to; i++) {
        yield { row: block.firstRow + i, id: ids[i - from]!, version: block.versions[i]!, deleted: block.deleted[i] === 1 }
      }
    }
  }

  /**
   * The rows `[from, to)` of anti-entropy bucket `index` of `buckets` (a power of two): the keys
   * whose `stableHash(id) % buckets === index`, contiguous in key order. Reads at most two blocks.
   */
  async bucketRows (index: number, buckets: number): Promise<{ from: number, to: number }> {
    const { lo, hi } = bucketRange(index, buckets)
    const from = await this.firstRowAtOrAfter(lo)
    const to = hi === 0xffffffff ? this.count : await this.firstRowAtOrAfter(hi + 1)
    return { from, to }
  }

  /** The first row whose key hash is >= h (`count` if none). */
  private async firstRowAtOrAfter (h: number): Promise<number> {
    // Blocks whose first hash is < h may end with keys >= h; the last of them decides.
    const b = searchUint32(this.firstHash, h) - 1
    if (b < 0) return 0
    const block = await this.block(b)
    return block.firstRow + searchUint32(block.hashes, h)
  }

  private block (b: number): Promise<Block> {
    // getOrLoad alone, not get first: a get that misses would count the miss twice.
    return this.cache.getOrLoad<Block>(`${this.cacheKey}#${b}`, async () => {
      const value = await this.loadBlock(b)
      return { value, bytes: value.bytes }
    })
  }

  /**
   * Reads block `b` and checks it against its CRC and what the sparse index says of it. `into`
   * (at offset 0 of its buffer, at least the block long): read there, the block's views then
   * point into it.
   */
  private async loadBlock (b: number, into?: Uint8Array): Promise<Block> {
    const offset = this.blockOffset[b]!
    const length = this.blockOffset[b + 1]! - offset
    const bad = (reason: string): KeyIndexCorruptError => new KeyIndexCorruptError(this.source.path, offset, `block ${b}: ${reason}`)
    if (into !== undefined && (into.byteOffset !== 0 || into.length < length)) throw new RangeError(`block ${b} of ${length} bytes read into ${into.length} bytes at offset ${into.byteOffset}`)
    let bytes = await readExactly(this.source, offset, length, () => bad('the file ends inside it'), into)
    // The typed-array views need an aligned buffer of their own (the read may be a slice of a
    // shared pool, or unaligned); a copy of ~4 KiB costs far less than the read.
    if (into === undefined && (bytes.byteOffset !== 0 || bytes.buffer.byteLength !== length)) bytes = bytes.slice()
    const dv = new DataView(bytes.buffer, 0, length)
    const stored = dv.getUint32(length - 4, true)
    const actual = crc32(bytes.subarray(0, length - 4))
    if (stored !== actual) throw bad(`CRC-32 is ${hex(actual)}, the block says ${hex(stored)}`)
    const n = dv.getUint32(0, true)
    const idBytes = dv.getUint32(4, true)
    const flags = dv.getUint32(8, true)
    const firstRow = dv.getUint32(12, true)
    const expected = this.firstRow[b + 1]! - this.firstRow[b]!
    if (n !== expected) throw bad(`holds ${n} entries, the sparse index says ${expected}`)
    if (firstRow !== this.firstRow[b]) throw bad(`first row is ${firstRow}, the sparse index says ${this.firstRow[b]!}`)
    if ((flags & ~FLAG_ASCII) !== 0) throw bad(`unknown flags 0x${flags.toString(16)}`)
    if (idBytes > length || blockSize(n, idBytes) !== length) throw bad(`${n} entries and ${idBytes} id bytes do not fill ${length} bytes`)
    const base = BLOCK_HEADER_BYTES
    let hashes: Uint32Array, idEnds: Uint32Array, versions: Float64Array
    if (LITTLE_ENDIAN) {
      hashes = new Uint32Array(bytes.buffer, base, n)
      idEnds = new Uint32Array(bytes.buffer, base + 4 * n, n)
      versions = new Float64Array(bytes.buffer, base + 8 * n, n)
    } else {
      hashes = new Uint32Array(n)
      idEnds = new Uint32Array(n)
      versions = new Float64Array(n)
      for (let i = 0; i < n; i++) {
        hashes[i] = dv.getUint32(base + 4 * i, true)
        idEnds[i] = dv.getUint32(base + 4 * n + 4 * i, true)
        versions[i] = dv.getFloat64(base + 8 * n + 8 * i, true)
      }
    }
    const deleted = new Uint8Array(bytes.buffer, base + 16 * n, n)
    const ids = new Uint8Array(bytes.buffer, base + 17 * n, idBytes)
    let prevHash = 0
    let prevEnd = 0
    for (let i = 0; i < n; i++) {
      const h = hashes[i]!
      if (h < prevHash) throw bad(`key hash of entry ${i} is below the one before it`)
      prevHash = h
      const e = idEnds[i]!
      if (e < prevEnd) throw bad(`id ${i} ends before it starts`)
      prevEnd = e
      if (!isHlc(versions[i])) throw bad(`version of entry ${i} is ${versions[i]!}, not an HLC`)
      if (deleted[i]! > 1) throw bad(`deleted flag of entry ${i} is ${deleted[i]!}`)
    }
    if (prevEnd !== idBytes) throw bad(`ids end at ${prevEnd}, the block holds ${idBytes} id bytes`)
    const ascii = (flags & FLAG_ASCII) !== 0
    if (ascii) for (let i = 0; i < idBytes; i++) if (ids[i]! >= 0x80) throw bad(`marked ASCII, id byte ${i} is 0x${ids[i]!.toString(16)}`)
    // The block must sit where the sparse index put it: its first key is the sparse index's and
    // its last hash does not pass the next block's first.
    if (hashes[0] !== this.firstHash[b]) throw bad(`first key hash ${hex(hashes[0]!)}, the sparse index says ${hex(this.firstHash[b]!)}`)
    if (b + 1 < this.blockCount && prevHash > this.firstHash[b + 1]!) throw bad('last key hash is past the next block\'s first')
    const block: Block = { bytes: length + BLOCK_OVERHEAD_BYTES, firstRow, count: n, ascii, hashes, idEnds, versions, deleted, ids }
    if (!idEquals(block, 0, this.firstIds[b]!)) throw bad('first id differs from the sparse index\'s')
    return block
  }

  /** The ids of entries [from, to) of a block, as strings. */
  private decodeIds (b: number, block: Block, from: number, to: number): string[] {
    const out: string[] = new Array(to - from)
    const ends = block.idEnds
    if (block.ascii) {
      // One decode of the whole run, then substrings: ASCII bytes are one UTF-16 unit each.
      const start = from === 0 ? 0 : ends[from - 1]!
      const all = Buffer.from(block.ids.buffer, block.ids.byteOffset + start, ends[to - 1]! - start).toString('latin1')
      for (let i = from; i < to; i++) out[i - from] = all.substring((i === 0 ? 0 : ends[i - 1]!) - start, ends[i]! - start)
      return out
    }
    for (let i = from; i < to; i++) {
      const s = i === 0 ? 0 : ends[i - 1]!
      try {
        out[i - from] = fatalUtf8.decode(block.ids.subarray(s, ends[i]!))
      } catch (err) {
        throw new KeyIndexCorruptError(this.source.path, this.blockOffset[b]!, `block ${b}: id ${i} is not UTF-8`, { cause: err })
      }
    }
    return out
  }
}

const NO_HIT: Promise<undefined> = Promise.resolve(undefined)

function findInBlock (block: Block, h: number, id: string): KeyIndexHit | undefined {
  const hs = block.hashes
  for (let i = searchUint32(hs, h); i < block.count && hs[i] === h; i++) {
    if (idEquals(block, i, id)) return { row: block.firstRow + i, version: block.versions[i]!, deleted: block.deleted[i] === 1 }
  }
  return undefined
}

/** Whether id `i` of a block is `id`, comparing bytes in place (no string decoded). */
function idEquals (block: Block, i: number, id: string): boolean {
  const ids = block.ids
  const start = i === 0 ? 0 : block.idEnds[i - 1]!
  const end = block.idEnds[i]!
  if (block.ascii) {
    if (end - start !== id.length) return false
    for (let j = 0; j < id.length; j++) if (ids[start + j] !== id.charCodeAt(j)) return false
    return true
  }
  // Decode UTF-8 code points and compare them with the string's UTF-16 units.
  let p = start
  let j = 0
  while (p < end) {
    const c0 = ids[p]!
    let cp: number
    if (c0 < 0x80) { cp = c0; p += 1 } else if (c0 < 0xe0) { cp = ((c0 & 0x1f) << 6) | (ids[p + 1]! & 0x3f); p += 2 } else if (c0 < 0xf0) {
      cp = ((c0 & 0x0f) << 12) | ((ids[p + 1]! & 0x3f) << 6) | (ids[p + 2]! & 0x3f); p += 3
    } else {
      cp = ((c0 & 0x07) << 18) | ((ids[p + 1]! & 0x3f) << 12) | ((ids[p + 2]! & 0x3f) << 6) | (ids[p + 3]! & 0x3f); p += 4
    }
    if (cp >= 0x10000) {
      const v = cp - 0x10000
      if (id.charCodeAt(j) !== (0xd800 | (v >> 10)) || id.charCodeAt(j + 1) !== (0xdc00 | (v & 0x3ff))) return false
      j += 2
    } else {
      if (id.charCodeAt(j) !== cp) return false
      j += 1
    }
  }
  return j === id.length
}

/**
 * First index i with a[i] >= x (a.length if none); `a` sorted ascending. Key hashes are close to
 * uniform, so an interpolated guess lands within a few places of the answer: it is bracketed by
 * doubling steps from the guess and then bisected. A lookup thus touches one or two cache lines of
 * a block's hashes where a plain bisection touches seven, the cost of a get once blocks outgrow
 * the CPU caches. Skewed input (many equal hashes) costs at most about twice a bisection.
 */
export function searchUint32 (a: Uint32Array, x: number): number {
  const n = a.length
  if (n === 0 || x <= a[0]!) return 0
  const first = a[0]!
  const last = a[n - 1]!
  if (x > last) return n
  // Now a[0] < x <= a[n - 1]: keep a[lo] < x <= a[hi].
  const g = Math.floor((x - first) / (last - first) * (n - 1))
  let lo: number
  let hi: number
  if (a[g]! < x) {
    lo = g
    hi = n - 1
    for (let step = 1; g + step < n - 1; step *= 2) {
      if (a[g + step]! >= x) { hi = g + step; break }
      lo = g + step
    }
  } else {
    lo = 0
    hi = g
    for (let step = 1; g - step > 0; step *= 2) {
      if (a[g - step]! < x) { lo = g - step; break }
      hi = g - step
    }
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1
    if (a[mid]! < x) lo = mid
    else hi = mid
  }
  return hi
}

/** First index i in [0, n) with a[i] > x (n if none); a is sorted ascending. */
function upperBound (a: Uint32Array, x: number, n = a.length): number {
  let lo = 0
  let hi = n
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (a[mid]! <= x) lo = mid + 1
    else hi = mid
  }
  return lo
}

async function readExactly (source: KeyIndexSource, offset: number, length: number, short: () => Error, into?: Uint8Array): Promise<Uint8Array> {
  const bytes = await source.read(offset, length, into)
  if (into !== undefined && bytes.buffer !== into.buffer) throw new Error(`${source.path}: a read into a buffer answered another`)
  if (bytes.length < length) throw short()
  return bytes.length === length ? bytes : bytes.subarray(0, length)
}

/**
 * Memory for transient block reads (KeyIndex.lookup), lent and given back: recovery replays
 * every partition at once, so a few are out at a time.
 */
const blockScratch = new ScratchBuffers(16 << 10, 64, 64 << 10)

const hex = (x: number): string => `0x${(x >>> 0).toString(16).padStart(8, '0')}`

/** A `KeyIndexSource` over a file opened read-only; `close` it when done. */
export async function openFileSource (path: string, fs: FileSystem = nodeFileSystem): Promise<KeyIndexSource & { close (): Promise<void> }> {
  const fh = await fs.open(path, 'r')
  return {
    path,
    async read (offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
      const buf = into !== undefined ? into.subarray(0, length) : Buffer.allocUnsafeSlow(length)
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      return got === length ? buf : buf.subarray(0, got)
    },
    close: async () => { await fh.close() }
  }
}
