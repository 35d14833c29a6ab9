import { describe, it, expect } from 'vitest'
import { xxhash64, out, hash53 } from '../../src/query/aggregate/hash.js'
import { SeededRandom } from '../../src/runtime/index.js'

const M = (1n << 64n) - 1n
const P1 = 0x9E3779B185EBCA87n, P2 = 0xC2B2AE3D27D4EB4Fn, P3 = 0x165667B19E3779F9n, P4 = 0x85EBCA77C2B2AE63n, P5 = 0x27D4EB2F165667C5n
const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M
const rd64 = (b: Uint8Array, i: number): bigint => { let v = 0n; for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(b[i + k]!); return v }
const rd32 = (b: Uint8Array, i: number): bigint => { let v = 0n; for (let k = 3; k >= 0; k--) v = (v << 8n) | BigInt(b[i + k]!); return v }
const round = (acc: bigint, x: bigint): bigint => (rotl((acc + x * P2) & M, 31n) * P1) & M

/** Straightforward BigInt reference of xxHash64. */
function ref (b: Uint8Array, seed = 0n): bigint {
  const len = b.length
  let i = 0
  let h: bigint
  if (len >= 32) {
    let v1 = (seed + P1 + P2) & M, v2 = (seed + P2) & M, v3 = seed, v4 = (seed - P1) & M
    while (i + 32 <= len) { v1 = round(v1, rd64(b, i)); v2 = round(v2, rd64(b, i + 8)); v3 = round(v3, rd64(b, i + 16)); v4 = round(v4, rd64(b, i + 24)); i += 32 }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M
    for (const v of [v1, v2, v3, v4]) h = (((h ^ round(0n, v)) * P1) + P4) & M
  } else h = (seed + P5) & M
  h = (h + BigInt(len)) & M
  while (i + 8 <= len) { h ^= round(0n, rd64(b, i)); h = (rotl(h, 27n) * P1 + P4) & M; i += 8 }
  if (i + 4 <= len) { h ^= (rd32(b, i) * P1) & M; h = (rotl(h, 23n) * P2 + P3) & M; i += 4 }
  while (i < len) { h ^= (BigInt(b[i]!) * P5) & M; h = (rotl(h, 11n) * P1) & M; i++ }
  h ^= h >> 33n; h = (h * P2) & M; h ^= h >> 29n; h = (h * P3) & M; h ^= h >> 32n
  return h
}
const got = (b: Uint8Array, seed = 0): bigint => { xxhash64(b, b.length, seed); return (BigInt(out[0]!) << 32n) | BigInt(out[1]!) }

describe('xxhash64', () => {
  it('matches the published test vectors', () => {
    const enc = new TextEncoder()
    expect(got(new Uint8Array(0))).toBe(0xEF46DB3751D8E999n)
    expect(got(enc.encode('a'))).toBe(0xD24EC4F1A98C6E5Bn)
    expect(got(enc.encode('abc'))).toBe(0x44BC2CF5AD770999n)
  })
  it('matches a BigInt reference on random inputs of every length 0..100', () => {
    const rng = new SeededRandom(7)
    for (let len = 0; len <= 100; len++) {
      for (let t = 0; t < 3; t++) {
        const b = new Uint8Array(len)
        for (let i = 0; i < len; i++) b[i] = rng.int(256)
        const seed = t === 2 ? rng.nextUint32() : t
        expect(got(b, seed)).toBe(ref(b, BigInt(seed)))
      }
    }
  })
  it('hash53 is a safe integer and treats -0 as 0 and bigint as number', () => {
    expect(hash53(-0)).toBe(hash53(0))
    expect(hash53(5n)).toBe(hash53(5))
    expect(hash53(null)).toBe(-1)
    expect(hash53(NaN)).toBe(-1)
    expect(Number.isSafeInteger(hash53('héllo ✓'))).toBe(true)
    expect(hash53('1')).not.toBe(hash53(1))
  })
})
