/**
 * Fast non-cryptographic hashes for buckets and digests (murmur3-style 32-bit rounds over UTF-16
 * code units). Stable across peers, processes and versions: anti-entropy compares them between
 * replicas, so changing any constant here is a wire-format change.
 */
import type { Hlc } from '../hlc/index.js'

/** murmur3's finalizer (exported for key-index.ts's hashing of ids from their UTF-8 bytes). */
export function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** One murmur3 round over a 32-bit block (exported with fmix32). */
export function round (h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, 0x1b873593)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/** 32-bit hash of a string's UTF-16 code units, with a seed. */
export function hashString32 (s: string, seed: number): number {
  let h = seed | 0
  const n = s.length
  let i = 0
  for (; i + 1 < n; i += 2) h = round(h, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16))
  if (i < n) h = round(h, s.charCodeAt(i))
  return fmix32(h ^ n)
}

export const SEED_BUCKET = 0x9747b28c
const SEED_LO = 0x2545f491
const SEED_HI = 0x6c8e9cf5

/** The hash that places an id in a digest bucket: bucket = stableHash(id) % buckets. */
export function stableHash (id: string): number { return hashString32(id, SEED_BUCKET) }

/**
 * 64-bit hash of one (id, version, deleted), as two uint32 halves written into `out` at `at`
 * (hi, lo). Digests XOR these, so the combination is order-independent and updatable.
 */
export function recordHash (id: string, version: Hlc, deleted: boolean, out: Uint32Array, at = 0): void {
  const vlo = version >>> 0
  const vhi = Math.floor(version / 4294967296) >>> 0
  const d = deleted ? 0x5bd1e995 : 0x1b873593
  out[at] = fmix32(round(round(round(hashString32(id, SEED_HI), vhi), vlo), d))
  out[at + 1] = fmix32(round(round(round(hashString32(id, SEED_LO), vlo), vhi), d ^ 0x7f4a7c15))
}

export function hex32 (x: number): string { return (x >>> 0).toString(16).padStart(8, '0') }
