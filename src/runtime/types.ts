/**
 * The three things protocol code may not take from the global environment: time, chance and the
 * network. Membership, replication and scatter/gather receive them from outside, so the same code
 * runs in a real peer (runtime/real.ts, net/) and in the deterministic simulator (test/sim).
 */

/** A libp2p PeerId in its string (base58) form, or a simulated peer's name. */
export type PeerId = string

/** Time as protocol code sees it. */
export interface Clock {
  /** Monotonic milliseconds; only differences mean anything. */
  now(): number
  /** Wall-clock milliseconds since the Unix epoch (for HLC timestamps and logs). */
  wallNow(): number
  /** Runs `fn` once after `delayMs` (clamped to >= 0). */
  setTimer(delayMs: number, fn: () => void): Timer
}

export interface Timer {
  /** Idempotent; a cancelled timer never fires. */
  cancel(): void
}

/** Chance as protocol code sees it. Seeded in tests, so the same seed gives the same run. */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number
}

/** Where to reach a peer. `id` is unknown only when dialling a bootstrap address for the first time. */
export interface PeerAddress {
  id?: PeerId
  addrs: readonly string[]
}

export interface RequestOptions {
  /**
   * Deadline for the whole request, including connection set-up; for stream(), for the whole
   * stream (not per item). Default: the transport's own.
   */
  timeoutMs?: number
  /** Aborting it fails the request with RpcCancelledError and tells the remote side to stop. */
  signal?: AbortSignal
}

/** What a handler learns about the request it serves. */
export interface RequestContext {
  /** Who sent it (authenticated by the transport). */
  from: PeerId
  /** Aborted when the caller cancels, times out or goes away. */
  signal: AbortSignal
}

export type RequestHandler = (body: unknown, ctx: RequestContext) => unknown | Promise<unknown>
export type StreamHandler = (body: unknown, ctx: RequestContext) => AsyncIterable<unknown>

/**
 * A stream handler's item that it knows is its last (`yield new LastItem(value)`): the caller
 * receives `value`, and the transport sends the stream's end with it, in the same write, and
 * ends the handler. Without it the end is known only once the handler returns, a few promise hops
 * after its last item has gone out on its own: one more frame and wake-up each way, and a caller
 * done with the item cancels a call that is already over (src/net/rpc.ts).
 */
export class LastItem {
  constructor (readonly value: unknown) {}
}

export type MessageListener = (body: unknown, from: PeerId) => void

/**
 * Messages between peers. Bodies are plain values that msgpackr can encode (objects, arrays,
 * strings, numbers, booleans, null, Uint8Array); receivers must treat them as untrusted input and
 * validate them, and must not mutate them.
 *
 * Failures are reported with the error classes of runtime/errors.ts, matched by `name`.
 */
/** A request body encoded by Transport.encodeBody (opaque; `bytes` is its encoded size). */
export interface EncodedBody {
  readonly encodedBytes: number
}

export interface Transport {
  readonly localPeerId: PeerId
  /** Addresses other peers can use to reach this one. */
  localAddrs(): string[]
  /**
   * One-way, best-effort message (datagram semantics: may be dropped, never retried, no error).
   * Used by SWIM probes and gossip, which do their own timeouts. An oversized or unencodable
   * body is a programming error: the simulator throws it, the libp2p transport drops and logs it.
   */
  send(to: PeerAddress, method: string, body: unknown): void
  /** Request/response. Resolves with the handler's answer; rejects with an RpcError subclass. */
  request(to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): Promise<unknown>
  /**
   * Optional: encodes a request body once, for sending the same body to several peers through
   * request() without encoding it again per peer. The result is opaque except for its size; only
   * this transport's request() accepts it. Throws FrameTooLargeError when it cannot be sent.
   */
  encodeBody?(body: unknown): EncodedBody
  /** Streamed response: the handler's items, in order, with flow control. */
  stream(to: PeerAddress, method: string, body: unknown, opts?: RequestOptions): AsyncIterable<unknown>
  /** Registers the handler of request/response `method` (one per method). */
  handle(method: string, handler: RequestHandler): void
  /** Registers the handler of streamed `method` (one per method). */
  handleStream(method: string, handler: StreamHandler): void
  /** Registers the listener of one-way `method` (one per method). */
  onMessage(method: string, listener: MessageListener): void
}
