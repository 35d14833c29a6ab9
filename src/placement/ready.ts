/**
 * The readiness announcement in membership meta: `meta.ready = { [space.uid]: hex }`, where hex is
 * a bitmap of the partitions this peer holds ready: byte i (two hex digits, in order) covers
 * partitions 8i..8i+7, least significant bit first; trailing zero bytes are trimmed and a space
 * with no ready partition is left out. 16 partitions cost 4 hex digits, 1,024 cost 256.
 */

export const READY_META_KEY = 'ready'
/**
 * Same format: the partitions a restarted peer had announced ready in its previous life and still
 * holds on disk, while it catches them up again (its readiness went with its previous life's
 * meta). Not read replicas: what a returning holder's catch-up must also take in (see
 * PlacementService.selfAsSource).
 */
export const RETURNING_META_KEY = 'back'
/**
 * `meta.leaving = true`: the peer is decommissioning (issue 13). It owns nothing from then on, so
 * its partitions' next owners catch up from it, but it still holds what it announced ready and
 * serves it (a read replica, and a write replica while the new owners are not ready) until it
 * leaves membership.
 */
export const LEAVING_META_KEY = 'leaving'
const MAX_HEX_CHARS = 256 // 1,024 partitions
const MAX_UID_CHARS = 128
const MAX_SPACES_PER_PEER = 4096

export function encodeBitmap (parts: Iterable<number>): string {
  const bytes: number[] = []
  for (const p of parts) {
    const i = p >>> 3
    while (bytes.length <= i) bytes.push(0)
    bytes[i]! |= 1 << (p & 7)
  }
  while (bytes.length > 0 && bytes[bytes.length - 1] === 0) bytes.pop()
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

/** The partitions in a bitmap, or null when it is malformed. */
export function decodeBitmap (hex: unknown): Set<number> | null {
  if (typeof hex !== 'string' || hex.length > MAX_HEX_CHARS || hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) return null
  const out = new Set<number>()
  for (let i = 0; i < hex.length; i += 2) {
    const b = parseInt(hex.slice(i, i + 2), 16)
    for (let bit = 0; bit < 8; bit++) if ((b & (1 << bit)) !== 0) out.add((i / 2) * 8 + bit)
  }
  return out
}

/** A peer's announcement, validated; malformed spaces are skipped (never throws). */
export function decodeReady (v: unknown): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>()
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out
  let n = 0
  for (const uid of Object.keys(v)) {
    if (++n > MAX_SPACES_PER_PEER) break
    if (uid.length === 0 || uid.length > MAX_UID_CHARS) continue
    const parts = decodeBitmap((v as Record<string, unknown>)[uid])
    if (parts !== null && parts.size > 0) out.set(uid, parts)
  }
  return out
}

/** This peer's announcement as a plain object for meta, spaces in uid order. */
export function encodeReady (ready: ReadonlyMap<string, ReadonlySet<number>>): Record<string, string> {
  const out: Record<string, string> = {}
  const uids = [...ready.keys()].sort()
  for (const uid of uids) {
    const hex = encodeBitmap(ready.get(uid)!)
    if (hex !== '') out[uid] = hex
  }
  return out
}
