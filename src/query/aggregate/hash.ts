/**
 * xxHash64 over bytes, in 32-bit halves (no BigInt, no allocation per call), and the helpers
 * cardinality uses to hash numbers and strings. `xxhash64(bytes, seed)` returns the 64-bit hash
 * as [hi, lo] uint32 halves in the shared `out` pair.
 */

// 64-bit constants as [hi, lo]
const P1H = 0x9E3779B1, P1L = 0x85EBCA87
const P2H = 0xC2B2AE3D, P2L = 0x27D4EB4F
const P3H = 0x165667B1, P3L = 0x9E3779F9
const P4H = 0x85EBCA77, P4L = 0xC2B2AE63
const P5H = 0x27D4EB2F, P5L = 0x165667C5

// scratch result of the 64-bit primitives
let rh = 0
let rl = 0

function mul (ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff, a1 = al >>> 16, b0 = bl & 0xffff, b1 = bl >>> 16
  const mid = a1 * b0 + a0 * b1 // < 2^33
  const low = a0 * b0 + (mid % 65536) * 65536 // < 2^33
  rl = low >>> 0
  rh = (a1 * b1 + Math.floor(mid / 65536) + Math.floor(low / 4294967296) +
    Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0
}

function add (ah: number, al: number, bh: number, bl: number): void {
  const lo = al + bl
  rl = lo >>> 0
  rh = (ah + bh + (lo > 0xffffffff ? 1 : 0)) >>> 0
}

function rotl (h: number, l: number, r: number): void {
  if (r >= 32) { const t = h; h = l; l = t; r -= 32 }
  if (r === 0) { rh = h >>> 0; rl = l >>> 0; return }
  rh = ((h << r) | (l >>> (32 - r))) >>> 0
  rl = ((l << r) | (h >>> (32 - r))) >>> 0
}

/** round(acc, input) = rotl(acc + input * P2, 31) * P1 */
function round (ah: number, al: number, ih: number, il: number): void {
  mul(ih, il, P2H, P2L)
  add(ah, al, rh, rl)
  rotl(rh, rl, 31)
  mul(rh, rl, P1H, P1L)
}

function r32 (b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0
}

/** The result of the last xxhash64 call: out[0] = high 32 bits, out[1] = low 32 bits. */
export const out = new Uint32Array(2)

export function xxhash64 (b: Uint8Array, len: number = b.length, seedLo = 0): void {
  let i = 0
  let hh: number, hl: number
  if (len >= 32) {
    add(0, seedLo, P1H, P1L); add(rh, rl, P2H, P2L); let v1h = rh, v1l = rl
    add(0, seedLo, P2H, P2L); let v2h = rh, v2l = rl
    let v3h = 0, v3l = seedLo >>> 0
    add(0, seedLo, (~P1H) >>> 0, (~P1L) >>> 0); add(rh, rl, 0, 1); let v4h = rh, v4l = rl // seed - P1
    const limit = len - 32
    do {
      round(v1h, v1l, r32(b, i + 4), r32(b, i)); v1h = rh; v1l = rl
      round(v2h, v2l, r32(b, i + 12), r32(b, i + 8)); v2h = rh; v2l = rl
      round(v3h, v3l, r32(b, i + 20), r32(b, i + 16)); v3h = rh; v3l = rl
      round(v4h, v4l, r32(b, i + 28), r32(b, i + 24)); v4h = rh; v4l = rl
      i += 32
    } while (i <= limit)
    rotl(v1h, v1l, 1); hh = rh; hl = rl
    rotl(v2h, v2l, 7); add(hh, hl, rh, rl); hh = rh; hl = rl
    rotl(v3h, v3l, 12); add(hh, hl, rh, rl); hh = rh; hl = rl
    rotl(v4h, v4l, 18); add(hh, hl, rh, rl); hh = rh; hl = rl
    const vs = [v1h, v1l, v2h, v2l, v3h, v3l, v4h, v4l]
    for (let k = 0; k < 8; k += 2) {
      round(0, 0, vs[k]!, vs[k + 1]!)
      hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0
      mul(hh, hl, P1H, P1L); add(rh, rl, P4H, P4L); hh = rh; hl = rl
    }
  } else {
    add(0, seedLo, P5H, P5L); hh = rh; hl = rl
  }
  add(hh, hl, Math.floor(len / 4294967296), len >>> 0); hh = rh; hl = rl
  while (i + 8 <= len) {
    round(0, 0, r32(b, i + 4), r32(b, i))
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0
    rotl(hh, hl, 27); mul(rh, rl, P1H, P1L); add(rh, rl, P4H, P4L); hh = rh; hl = rl
    i += 8
  }
  if (i + 4 <= len) {
    mul(0, r32(b, i), P1H, P1L)
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0
    rotl(hh, hl, 23); mul(rh, rl, P2H, P2L); add(rh, rl, P3H, P3L); hh = rh; hl = rl
    i += 4
  }
  while (i < len) {
    mul(0, b[i]!, P5H, P5L)
    hh = (hh ^ rh) >>> 0; hl = (hl ^ rl) >>> 0
    rotl(hh, hl, 11); mul(rh, rl, P1H, P1L); hh = rh; hl = rl
    i++
  }
  // avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
  hl = (hl ^ (hh >>> 1)) >>> 0
  mul(hh, hl, P2H, P2L); hh = rh; hl = rl
  hl = (hl ^ ((hl >>> 29) | (hh << 3))) >>> 0; hh = (hh ^ (hh >>> 29)) >>> 0
  mul(hh, hl, P3H, P3L); hh = rh; hl = rl
  hl = (hl ^ hh) >>> 0
  out[0] = hh; out[1] = hl
}

let scratch = new Uint8Array(256)
const f64 = new Float64Array(1)
const f64bytes = new Uint8Array(f64.buffer)
const encoder = new TextEncoder()

/**
 * A 53-bit hash (a non-negative safe integer) of a cell value: the top 53 bits of xxHash64 over the
 * value's UTF-8 bytes (strings, seed 0) or IEEE-754 bytes (numbers, seed 1; -0 counts as 0;
 * integral bigints hash as the equal number). Booleans hash as the strings "true"/"false".
 * Returns -1 for missing values (null, undefined, NaN).
 */
export function hash53 (v: unknown): number {
  if (typeof v === 'number' || typeof v === 'bigint' || v instanceof Date) {
    const x = toNum(v)
    if (x !== x) return -1
    f64[0] = x === 0 ? 0 : x
    xxhash64(f64bytes, 8, 1)
  } else if (typeof v === 'string') {
    const n = v.length
    if (n * 3 > scratch.length) scratch = new Uint8Array(n * 3)
    let i = 0
    for (; i < n; i++) { // ASCII fast path; anything else goes through TextEncoder
      const c = v.charCodeAt(i)
      if (c >= 0x80) break
      scratch[i] = c
    }
    xxhash64(scratch, i === n ? n : encoder.encodeInto(v, scratch).written, 0)
  } else if (typeof v === 'boolean') {
    return hash53(v ? 'true' : 'false')
  } else {
    return -1
  }
  return out[0]! * 2097152 + (out[1]! >>> 11)
}

function toNum (v: number | bigint | Date): number {
  return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v.getTime()
}
