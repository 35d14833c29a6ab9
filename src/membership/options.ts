/**
 * Every timing constant and bound of the membership protocol, each with its unit, default and
 * where the default comes from. Defaults are HashiCorp memberlist's DefaultLANConfig unless said
 * otherwise; Serf's values are used for the things memberlist leaves to its caller (reconnect,
 * reaping).
 */
import type { PeerAddress } from '../runtime/index.js'
import type { MemberMeta } from './types.js'

export interface SwimOptions {
  /** Metadata this peer announces (name, HTTP address, ...). Default {}. */
  meta?: MemberMeta
  /** Addresses to join on start(), retried in the background while no other member is alive. Default []. */
  bootstrap?: PeerAddress[]

  /** Period of the failure detector: one member is probed per period. ms, default 1000 (memberlist DefaultLANConfig ProbeInterval). */
  probeIntervalMs?: number
  /** Wait for a direct ack before asking others to probe (ping-req). ms, default 500 (memberlist ProbeTimeout). */
  probeTimeoutMs?: number
  /** Number of members asked to probe indirectly (k of the SWIM paper). Default 3 (memberlist IndirectChecks). */
  indirectChecks?: number
  /**
   * Fraction of the probe timeout after which an intermediary that got no ack from the target
   * sends a nack to the requester (Lifeguard). Default 0.8 (memberlist sends its nack at 80 % of
   * the probe timeout).
   */
  nackFraction?: number

  /**
   * Suspicion timeout multiplier: min timeout = suspicionMult * max(suspicionMinScale, log10(n))
   * * probeIntervalMs. Default 1.25 (memberlist's SuspicionMult is 4, with its own random probe
   * order: a crash took 11 s at p50 and 13 s at p99 to be declared dead at N=100 in the
   * simulator. With the shared probe ring (swim.ts, nextProbeTarget) and 1.25, 4.1 / 5.0 s, and no
   * healthy peer declared dead in the stall-and-loss scenario: docs/benchmarks.md, "SWIM in the
   * simulator").
   */
  suspicionMult?: number
  /**
   * The least log10(n) factor of the minimum suspicion timeout. Default 2 (memberlist floors it
   * at 1; with the smaller multiplier that left a cluster under 100 peers 1.5 probe intervals
   * before declaring a paused peer dead, shorter than a long garbage-collector pause).
   */
  suspicionMinScale?: number
  /**
   * Independent confirmations (other members suspecting the same member) after which the
   * suspicion timeout has shrunk from its maximum to its minimum (Lifeguard's K). Default 2
   * (memberlist derives it as SuspicionMult - 2, which is 2 with its default of 4; kept, with the
   * multiplier now separate).
   */
  suspicionConfirmations?: number
  /** Max suspicion timeout = suspicionMaxTimeoutMult * min timeout (Lifeguard). Default 6 (memberlist SuspicionMaxTimeoutMult). */
  suspicionMaxTimeoutMult?: number
  /** Local Health Multiplier ceiling: awareness runs 0..awarenessMaxMultiplier-1 and timeouts scale by (awareness+1). Default 8 (memberlist AwarenessMaxMultiplier). */
  awarenessMaxMultiplier?: number
  /**
   * A timer of ours firing this late, or an event-loop delay reported through noteEventLoopLag of
   * at least this much, counts as "we are unhealthy" and raises awareness by one. ms, default 200
   * (Shoal: well above normal timer jitter, well below the 500 ms probe timeout it protects).
   */
  lagThresholdMs?: number

  /** Retransmit each update retransmitMult * ceil(log10(n+1)) times. Default 4 (memberlist RetransmitMult). */
  retransmitMult?: number
  /** Period of the gossip tick that sends queued updates apart from probes. ms, default 200 (memberlist GossipInterval). */
  gossipIntervalMs?: number
  /** Members gossiped to per gossip tick. Default 3 (memberlist GossipNodes). */
  gossipNodes?: number
  /** Dead members still receive gossip for this long, so they can learn of their death and refute. ms, default 30000 (memberlist GossipToTheDeadTime). */
  gossipToTheDeadMs?: number

  /** Base period of push-pull anti-entropy with one random alive member; scaled up above 32 members as memberlist does. ms, default 30000 (memberlist PushPullInterval). */
  pushPullIntervalMs?: number
  /** Deadline of one push-pull request (join or anti-entropy). ms, default 10000 (memberlist TCPTimeout). */
  pushPullTimeoutMs?: number
  /** Period at which a random dead (not left) member and the bootstrap addresses are tried, to heal full splits. ms, default 30000 (Serf ReconnectInterval). */
  reconnectIntervalMs?: number
  /** Period of the background bootstrap retry while no other member is alive. ms, default 5000 (Shoal; Serf's retry-join uses 30 s, shorter suits a database coming up). */
  joinRetryIntervalMs?: number

  /** Dead members are removed after this long. ms, default 86400000 = 24 h (Serf ReconnectTimeout). */
  deadReapMs?: number
  /** Left members are removed after this long. ms, default 86400000 = 24 h (Serf TombstoneTimeout). */
  leftReapMs?: number
  /** Period of the reaper. ms, default 5000 (Shoal). */
  reapIntervalMs?: number
  /** At most this many dead + left members are kept; the oldest are reaped first. Default 4096 (Shoal). */
  maxDeadMembers?: number
  /** At most this many tombstones (id -> incarnation of reaped members) are kept, oldest dropped first. Default 16384 (Shoal). */
  maxTombstones?: number
  /** Tombstones older than this are forgotten. ms, default 86400000 = 24 h (Serf TombstoneTimeout). */
  tombstoneTtlMs?: number

  /**
   * Byte budget of the updates piggybacked on one probe or gossip message (estimated UTF-8 size).
   * Default 8192 (Shoal: memberlist's 1400-byte UDP limit does not apply over a libp2p stream, and
   * one update must fit a full-size meta).
   */
  maxPacketBytes?: number
  /** At most this many updates in one message, sent or accepted. Default 256 (Shoal). */
  maxUpdatesPerMessage?: number
  /** At most this many queued updates; the most-retransmitted are dropped first. Default 4096 (Serf MaxQueueDepth). */
  maxBroadcastQueue?: number
  /** At most this many members in a push-pull state, sent or accepted. Default 65536 (Shoal). */
  maxPushPullMembers?: number
  /**
   * A push-pull state goes in pages of about this many bytes (estimated), so a member table
   * larger than one frame (8 MiB) still crosses; the delegate state rides the first page beside
   * it. bytes, default 2097152 = 2 MiB (Shoal).
   */
  pushPullPageBytes?: number
  /** Encoded size limit of one member's metadata; larger remote meta is rejected. bytes, default 4096 (Shoal). */
  metaMaxBytes?: number
  /** At most this many probes/ping-reqs in flight (acks awaited). Default 1024 (Shoal). */
  maxPendingAcks?: number
  /**
   * Estimated encoded size limit of the push-pull delegate state (SwimDelegate, field `d`), sent or
   * accepted; larger state is not sent, and ignored on receipt. bytes, default 1048576 = 1 MiB
   * (Shoal: memberlist bounds the whole push-pull by its stream limits).
   */
  delegateStateMaxBytes?: number
}

export type ResolvedSwimOptions = Required<Omit<SwimOptions, 'meta' | 'bootstrap'>> & { meta: MemberMeta, bootstrap: PeerAddress[] }

export const DEFAULT_SWIM_OPTIONS: Readonly<ResolvedSwimOptions> = Object.freeze({
  meta: {},
  bootstrap: [],
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectChecks: 3,
  nackFraction: 0.8,
  suspicionMult: 1.25,
  suspicionMinScale: 2,
  suspicionConfirmations: 2,
  suspicionMaxTimeoutMult: 6,
  awarenessMaxMultiplier: 8,
  lagThresholdMs: 200,
  retransmitMult: 4,
  gossipIntervalMs: 200,
  gossipNodes: 3,
  gossipToTheDeadMs: 30_000,
  pushPullIntervalMs: 30_000,
  pushPullTimeoutMs: 10_000,
  reconnectIntervalMs: 30_000,
  joinRetryIntervalMs: 5_000,
  deadReapMs: 86_400_000,
  leftReapMs: 86_400_000,
  reapIntervalMs: 5_000,
  maxDeadMembers: 4096,
  maxTombstones: 16_384,
  tombstoneTtlMs: 86_400_000,
  maxPacketBytes: 8192,
  maxUpdatesPerMessage: 256,
  maxBroadcastQueue: 4096,
  maxPushPullMembers: 65_536,
  pushPullPageBytes: 2_097_152,
  metaMaxBytes: 4096,
  maxPendingAcks: 1024,
  delegateStateMaxBytes: 1_048_576
})

export function resolveSwimOptions (opts: SwimOptions = {}): ResolvedSwimOptions {
  const out = { ...DEFAULT_SWIM_OPTIONS } as ResolvedSwimOptions
  for (const [k, v] of Object.entries(opts)) {
    if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v
  }
  const positive: Array<keyof ResolvedSwimOptions> = ['probeIntervalMs', 'probeTimeoutMs', 'gossipIntervalMs', 'pushPullIntervalMs',
    'pushPullTimeoutMs', 'reconnectIntervalMs', 'joinRetryIntervalMs', 'reapIntervalMs', 'maxPacketBytes', 'maxUpdatesPerMessage',
    'maxBroadcastQueue', 'maxPushPullMembers', 'metaMaxBytes', 'awarenessMaxMultiplier', 'retransmitMult', 'suspicionMult',
    'suspicionMaxTimeoutMult', 'maxPendingAcks', 'delegateStateMaxBytes', 'suspicionMinScale', 'pushPullPageBytes']
  for (const k of positive) {
    const v = out[k]
    if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`swim option ${k} must be a positive number, got ${String(v)}`)
  }
  if (out.probeTimeoutMs >= out.probeIntervalMs) throw new RangeError('swim option probeTimeoutMs must be below probeIntervalMs')
  if (!(out.nackFraction > 0 && out.nackFraction < 1)) throw new RangeError('swim option nackFraction must be in (0, 1)')
  if (!(Number.isSafeInteger(out.suspicionConfirmations) && out.suspicionConfirmations >= 0)) throw new RangeError(`swim option suspicionConfirmations must be a whole number >= 0, got ${String(out.suspicionConfirmations)}`)
  return out
}
