/**
 * The hashes placement depends on. They must give the same answer on every peer, every run and
 * every version of Shoal that shares a cluster: changing one moves data. Unit tests pin values.
 *
 * - partitionOf: MurmurHash3 x86_32 (seed 0) over the UTF-8 bytes of the record id, modulo P.
 *   Murmur's finalizer mixes every input bit into the low bits, which `% P` uses (FNV-1a's low k
 *   bits depend only on the low k bits of each byte, so ids differing in high bits would collide).
 * - Rendezvous (HRW) score: a 64-bit hash of `${peerId}/${space.uid}/${partition}`, made of two
 *   MurmurHash3 x86_32 lanes with different fixed seeds, compared as (hi, lo).
 */

const encoder = new TextEncoder()
let scratch = new Uint8Array(256)

/** UTF-8 bytes of `s` in a reused buffer (valid until the next call). */
function utf8 (s: string): Uint8Array {
  // A UTF-16 code unit is at most 3 UTF-8 bytes.
  if (s.length * 3 > scratch.length) scratch = new Uint8Array(Math.max(s.length * 3, scratch.length * 2))
  const { written } = encoder.encodeInto(s, scratch)
  return scratch.subarray(0, written)
}

/** MurmurHash3 x86_32 of `bytes` (Austin Appleby's reference), as an unsigned 32-bit integer. */
export function murmur3 (bytes: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  let h = seed >>> 0
  const n = bytes.length
  const blocks = n & ~3
  let i = 0
  for (; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const tail = n & 3
  if (tail !== 0) {
    let k = 0
    if (tail === 3) k ^= bytes[i + 2]! << 16
    if (tail >= 2) k ^= bytes[i + 1]! << 8
    k ^= bytes[i]!
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
  }
  h ^= n
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** MurmurHash3 x86_32 of the UTF-8 bytes of `s`. */
export function murmur3String (s: string, seed = 0): number {
  return murmur3(utf8(s), seed)
}

/** The partition of a record id: murmur3(utf8(id), 0) % partitions. */
export function partitionOfId (id: string, partitions: number): number {
  return murmur3String(id, 0) % partitions
}

const HRW_SEED_HI = 0x9e3779b9
const HRW_SEED_LO = 0x85ebca6b

/** 64-bit rendezvous score of (peer, key) as [hi, lo] unsigned 32-bit halves. */
export function hrwScore (peerId: string, key: string): [number, number] {
  const bytes = utf8(`${peerId}/${key}`)
  return [murmur3(bytes, HRW_SEED_HI), murmur3(bytes, HRW_SEED_LO)]
}

/** The rendezvous key of one partition of one space. */
export function partitionKey (spaceUid: string, partition: number): string {
  return `${spaceUid}/${partition}`
}

/**
 * The top `r` of `peers` by rendezvous score for `key`, best first. Ties (astronomically rare)
 * go to the smaller peer id, so the order is total and the same everywhere.
 */
export function rendezvous (peers: readonly string[], key: string, r: number): string[] {
  const n = Math.min(r, peers.length)
  if (n <= 0) return []
  const scored: Array<{ id: string, hi: number, lo: number }> = []
  for (const id of peers) {
    const [hi, lo] = hrwScore(id, key)
    scored.push({ id, hi, lo })
  }
  scored.sort((a, b) => b.hi - a.hi || b.lo - a.lo || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const out = new Array<string>(n)
  for (let i = 0; i < n; i++) out[i] = scored[i]!.id
  return out
}
