/**
 * The wire format of the membership protocol and its validation. Every body that arrives is
 * untrusted: the decoders below check types, lengths and bounds and return null for anything
 * malformed, so handlers drop it with a debug log instead of throwing.
 *
 * Keys are short because every probe and gossip message carries a batch of updates.
 *
 * Compatibility (docs/operations.md, "Upgrades"): every message carries `v`, the sender's
 * MEMBERSHIP_PROTOCOL_VERSION. A decoder takes what it knows and leaves the rest: fields it does
 * not know are ignored, an update of a kind it does not know and a push-pull member in a state it
 * does not know are skipped (well-formed: a short string kind, a valid id and incarnation), and a
 * newer `v` is accepted. Only a malformed message is dropped whole. So a newer peer may add update
 * kinds, states and fields, and the peers one version behind keep probing, acking and merging it
 * (where dropping a whole ping over one unknown update would make them suspect it).
 */
import type { MemberMeta, MemberState } from './types.js'

export const METHOD_PING = 'swim.ping'
export const METHOD_PING_REQ = 'swim.ping-req'
export const METHOD_ACK = 'swim.ack'
export const METHOD_NACK = 'swim.nack'
export const METHOD_GOSSIP = 'swim.gossip'
export const METHOD_PUSH_PULL = 'swim.push-pull'

/**
 * The messages that must never wait behind bulk traffic to the same peer (probes, their answers,
 * gossip: small, and late means a false suspicion): the peer sends them on the transport's control
 * lane (net/rpc.ts, Lane). A push-pull, a whole member table, goes with the data.
 */
export const URGENT_METHODS: readonly string[] = [METHOD_PING, METHOD_PING_REQ, METHOD_ACK, METHOD_NACK, METHOD_GOSSIP]

/** The membership wire format's version, sent as `v` in every message (see above). */
export const MEMBERSHIP_PROTOCOL_VERSION = 1
/** Longest update kind or member state a decoder skips as unknown rather than refuses. */
const MAX_KIND_CHARS = 32

/** What decodeUpdate and decodeMember answer for a well-formed entry of a kind or state they do not know. */
export const UNKNOWN = Symbol('unknown kind')

/** Bounds on identifiers and addresses (not options: they protect the decoder itself). */
export const MAX_ID_CHARS = 128
export const MAX_ADDRS = 16
export const MAX_ADDR_CHARS = 512
const MAX_META_DEPTH = 8

export type UpdateKind = 'alive' | 'suspect' | 'dead' | 'left'

/** One membership update, as gossiped and piggybacked. */
export interface WireUpdate {
  /** Kind. */
  k: UpdateKind
  /** Member the update is about. */
  id: string
  /** Incarnation. */
  i: number
  /** Addresses (alive only). */
  a?: string[]
  /** Meta (alive only). */
  m?: MemberMeta
  /** Who raised it (suspect, dead). */
  f?: string
  /** 'left' only: removed by an operator on the member's behalf (Swim.forceRemove), not a graceful leave. */
  r?: true
}

/** One member in a push-pull state exchange. */
export interface WireMember {
  id: string
  i: number
  s: MemberState
  a: string[]
  m: MemberMeta
  /** 'left' only: removed on its behalf (see WireUpdate.r). */
  r?: true
  /**
   * 'dead' and 'left' only: ms since the sender saw the member die or leave. A peer that learns of
   * a gone member from push-pull (it restarted or joined meanwhile) dates the death as the sender
   * does, so that its view of when the member stops owning matches the cluster's.
   */
  t?: number
}

export interface PingMsg { seq: number, target: string, src?: string[], pb?: WireUpdate[] }
export interface PingReqMsg { seq: number, target: string, ta: string[], nack: boolean, src?: string[], pb?: WireUpdate[] }
export interface AckMsg { seq: number, pb?: WireUpdate[] }
export interface NackMsg { seq: number }
export interface GossipMsg { pb: WireUpdate[] }
/**
 * One push-pull message. A member table larger than one frame (8 MiB: about 15,000 members with
 * small meta, 2,000 with full-size meta) goes in pages: a caller that can page says so (`pg`) in
 * its first request; the answer then holds the first page of the callee's state and, when more
 * follows, `next`, the id of its last member. The caller goes on with continuation requests
 * (`cont`), each carrying its own next page and `after` (the callee's `next`, absent once the
 * callee's state is all sent), until both states are sent. Pages run in member-id order (the
 * sender first), so a page needs no state kept between requests: members that join meanwhile may
 * be missed by this exchange, as by any, and the next one carries them. A peer that does not know
 * paging ignores `pg` and answers in one frame.
 */
export interface PushPullMsg {
  join: boolean
  members: WireMember[]
  /** In an answer only: the caller as the answering peer knew it before this exchange, when the caller's state showed a newer life. */
  p?: WireMember
  /** The sender pages: in a first request, it takes an answer with `next`; in an answer, it takes continuations. */
  pg?: boolean
  /** A continuation request of an exchange already started (no delegate state, no join). */
  cont?: boolean
  /** In a continuation request: send the members after this id (the callee's last `next`). */
  after?: string
  /** In an answer: more of the sender's state follows this member id. */
  next?: string
}

export interface DecodeLimits {
  /** Used by checkAliveDetail, not by the shape decoders. */
  metaMaxBytes: number
  maxUpdatesPerMessage: number
  maxPushPullMembers: number
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

export function isId (v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_CHARS
}

function isCount (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function decodeAddrs (v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length > MAX_ADDRS) return null
  for (const a of v) if (typeof a !== 'string' || a.length > MAX_ADDR_CHARS) return null
  return v as string[]
}

/**
 * UTF-8 size of `value` as msgpack/JSON would roughly encode it, or Infinity as soon as it passes
 * `limitBytes` or is not JSON-like (functions, cycles via depth, non-finite numbers).
 */
export function metaSize (value: unknown, limitBytes: number): number {
  return plainSize(value, limitBytes, MAX_META_DEPTH, false, 0)
}

const MAX_STATE_DEPTH = 32

/**
 * Estimated encoded size of a push-pull delegate state (SwimDelegate): like metaSize, but a
 * Uint8Array counts its bytes and nesting may go deeper. Infinity past `limitBytes` or when the
 * value is not plain data.
 */
export function stateSize (value: unknown, limitBytes: number): number {
  return plainSize(value, limitBytes, MAX_STATE_DEPTH, true, 0)
}

function plainSize (value: unknown, limitBytes: number, maxDepth: number, bytesAllowed: boolean, depth: number): number {
  if (bytesAllowed && value instanceof Uint8Array) return value.byteLength + 5
  if (depth > maxDepth) return Infinity
  if (value === null || typeof value === 'boolean') return 1
  if (typeof value === 'number') return Number.isFinite(value) ? 9 : Infinity
  // UTF-8 takes at least one byte per UTF-16 unit: a string longer than the limit cannot fit.
  if (typeof value === 'string') return value.length > limitBytes ? Infinity : Buffer.byteLength(value) + 5
  if (Array.isArray(value)) {
    let n = 5
    for (const x of value) {
      n += plainSize(x, limitBytes - n, maxDepth, bytesAllowed, depth + 1)
      if (n > limitBytes) return Infinity
    }
    return n
  }
  if (isRecord(value)) {
    let n = 5
    for (const k of Object.keys(value)) {
      n += Buffer.byteLength(k) + 5 + plainSize(value[k], limitBytes - n, maxDepth, bytesAllowed, depth + 1)
      if (n > limitBytes) return Infinity
    }
    return n
  }
  return Infinity
}

/** Checks a meta object; returns its estimated size, or -1 when invalid or over the limit. */
export function checkMeta (v: unknown, metaMaxBytes: number): number {
  if (!isRecord(v)) return -1
  if (v.name !== undefined && typeof v.name !== 'string') return -1
  if (v.http !== undefined && typeof v.http !== 'string') return -1
  const size = metaSize(v, metaMaxBytes)
  return size <= metaMaxBytes ? size : -1
}

const UPDATE_KINDS = new Set<string>(['alive', 'suspect', 'dead', 'left'])
const STATES = new Set<string>(['alive', 'suspect', 'dead', 'left'])

/** Whether `k` may be a kind (or state) of a newer version: a short string. */
function isFutureKind (k: unknown): boolean {
  return typeof k === 'string' && k.length > 0 && k.length <= MAX_KIND_CHARS
}

export function decodeUpdate (v: unknown, limits: DecodeLimits): WireUpdate | typeof UNKNOWN | null {
  if (!isRecord(v)) return null
  const { k, id, i } = v
  if (!isId(id) || !isCount(i)) return null
  if (typeof k !== 'string' || !UPDATE_KINDS.has(k)) return isFutureKind(k) ? UNKNOWN : null
  if (k === 'alive') {
    // Shape only: the addresses and meta are checked in full (checkAliveDetail) when the update is
    // news. Most received updates are duplicates, and a full meta walk for each was the
    // simulator's main cost at 1,000 peers.
    if (!Array.isArray(v.a) || v.a.length > MAX_ADDRS || !isRecord(v.m)) return null
    return { k, id, i, a: v.a as string[], m: v.m as MemberMeta }
  }
  if (v.f !== undefined && !isId(v.f)) return null
  if (v.r !== undefined && (v.r !== true || k !== 'left')) return null
  const u: WireUpdate = v.f === undefined ? { k: k as UpdateKind, id, i } : { k: k as UpdateKind, id, i, f: v.f as string }
  if (v.r === true) u.r = true
  return u
}

function decodePiggyback (v: unknown, limits: DecodeLimits): WireUpdate[] | null {
  if (v === undefined) return []
  if (!Array.isArray(v) || v.length > limits.maxUpdatesPerMessage) return null
  const out: WireUpdate[] = []
  for (const x of v) {
    const u = decodeUpdate(x, limits)
    // One bad update spoils the message: a peer that sends garbage is not trusted for the rest.
    // One of a kind from a newer version is skipped (see the compatibility note above).
    if (u === null) return null
    if (u !== UNKNOWN) out.push(u)
  }
  return out
}

export function decodePing (v: unknown, limits: DecodeLimits): (PingMsg & { pb: WireUpdate[] }) | null {
  if (!isRecord(v) || !isCount(v.seq) || !isId(v.target)) return null
  const src = v.src === undefined ? undefined : decodeAddrs(v.src)
  if (src === null) return null
  const pb = decodePiggyback(v.pb, limits)
  if (pb === null) return null
  return { seq: v.seq, target: v.target, src, pb }
}

export function decodePingReq (v: unknown, limits: DecodeLimits): (PingReqMsg & { pb: WireUpdate[] }) | null {
  if (!isRecord(v) || !isCount(v.seq) || !isId(v.target) || typeof v.nack !== 'boolean') return null
  const ta = decodeAddrs(v.ta)
  if (ta === null) return null
  const src = v.src === undefined ? undefined : decodeAddrs(v.src)
  if (src === null) return null
  const pb = decodePiggyback(v.pb, limits)
  if (pb === null) return null
  return { seq: v.seq, target: v.target, ta, nack: v.nack, src, pb }
}

export function decodeAck (v: unknown, limits: DecodeLimits): (AckMsg & { pb: WireUpdate[] }) | null {
  if (!isRecord(v) || !isCount(v.seq)) return null
  const pb = decodePiggyback(v.pb, limits)
  if (pb === null) return null
  return { seq: v.seq, pb }
}

export function decodeNack (v: unknown): NackMsg | null {
  if (!isRecord(v) || !isCount(v.seq)) return null
  return { seq: v.seq }
}

export function decodeGossip (v: unknown, limits: DecodeLimits): GossipMsg | null {
  if (!isRecord(v)) return null
  const pb = decodePiggyback(v.pb, limits)
  // An empty gossip is malformed; one whose updates were all of unknown kinds is not.
  if (pb === null || (pb.length === 0 && !(Array.isArray(v.pb) && v.pb.length > 0))) return null
  return { pb }
}

export function decodeMember (v: unknown, limits: DecodeLimits): WireMember | typeof UNKNOWN | null {
  if (!isRecord(v)) return null
  const { id, i, s } = v
  if (!isId(id) || !isCount(i)) return null
  if (typeof s !== 'string' || !STATES.has(s)) return isFutureKind(s) ? UNKNOWN : null
  // Shape only, as in decodeUpdate: checkAliveDetail runs before anything is applied.
  if (!Array.isArray(v.a) || v.a.length > MAX_ADDRS || !isRecord(v.m)) return null
  if (v.r !== undefined && (v.r !== true || s !== 'left')) return null
  if (v.t !== undefined && (!isCount(v.t) || (s !== 'dead' && s !== 'left'))) return null
  const out: WireMember = { id, i, s: s as MemberState, a: v.a as string[], m: v.m as MemberMeta }
  if (v.r === true) out.r = true
  if (v.t !== undefined) out.t = v.t as number
  return out
}

export function decodePushPull (v: unknown, limits: DecodeLimits): PushPullMsg | null {
  if (!isRecord(v) || !Array.isArray(v.members) || v.members.length > limits.maxPushPullMembers) return null
  const join = v.join === undefined ? false : v.join
  if (typeof join !== 'boolean') return null
  const members: WireMember[] = []
  for (const x of v.members) {
    const m = decodeMember(x, limits)
    if (m === null) return null
    if (m !== UNKNOWN) members.push(m)
  }
  const out: PushPullMsg = { join, members }
  for (const k of ['pg', 'cont'] as const) {
    if (v[k] === undefined) continue
    if (typeof v[k] !== 'boolean') return null
    if (v[k] === true) out[k] = true
  }
  for (const k of ['after', 'next'] as const) {
    if (v[k] === undefined) continue
    if (!isId(v[k])) return null
    out[k] = v[k] as string
  }
  if (v.p === undefined) return out
  const p = decodeMember(v.p, limits)
  if (p === null) return null
  if (p !== UNKNOWN) out.p = p
  return out
}

/** Estimated encoded size of one member in a push-pull state, used to cut pages. */
export function wireMemberSize (w: WireMember, metaBytes: number): number {
  let n = 40 + w.id.length
  for (const a of w.a) n += a.length + 2
  return n + metaBytes
}

/**
 * The full check of an alive update's addresses and meta, run before it is applied. Returns the
 * meta's estimated size, or -1 when the update must be dropped.
 */
export function checkAliveDetail (addrs: unknown, meta: unknown, metaMaxBytes: number): number {
  if (decodeAddrs(addrs) === null) return -1
  return checkMeta(meta, metaMaxBytes)
}

/** Estimated encoded size of an update, used to fill messages up to maxPacketBytes. */
export function updateSize (u: WireUpdate, metaBytes: number): number {
  let n = 24 + u.id.length + (u.f?.length ?? 0) + (u.r === true ? 4 : 0)
  if (u.a !== undefined) for (const a of u.a) n += a.length + 2
  if (u.m !== undefined) n += metaBytes
  return n
}
