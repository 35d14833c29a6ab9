import type { PeerId } from '../runtime/index.js'

/**
 * What a peer announces about itself. Free-form JSON-like values besides the well-known keys,
 * validated on receipt and bounded in size (SwimOptions.metaMaxBytes).
 */
export interface MemberMeta {
  /** Human-readable name (shoal start --name). */
  name?: string
  /** host:port of the peer's HTTP API. */
  http?: string
  [key: string]: unknown
}

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

export interface MemberInfo {
  id: PeerId
  addrs: string[]
  meta: MemberMeta
  state: MemberState
  /** Only the member itself raises it (to refute a suspicion, or announce new meta / leave). */
  incarnation: number
  /** clock.now() when `state` last changed here. */
  stateChangedAt: number
  /**
   * Set (with state 'left') when an operator removed this member on its behalf (Swim.forceRemove,
   * Consul's force-leave): unlike a graceful leave, the cluster is to forget what it held. Cleared
   * when the member comes back with a higher incarnation.
   */
  removed?: true
}

/**
 * What the cluster still knew of this peer's previous life (before this process started) when it
 * joined: the newest announcement of an earlier incarnation that a push-pull answer carried.
 * Layers above read from it what this peer had announced (placement: which partitions it held
 * ready) and how long it had been gone.
 */
export interface PreviousLife {
  incarnation: number
  meta: MemberMeta
  /** As the peer that told us saw it. */
  state: MemberState
  /** clock.now() (here) when it died or left, dated as the peer that told us saw it; absent when that peer still held it alive or suspect. */
  goneAt?: number
  /** clock.now() when this life began (membership was built). */
  restartedAt: number
}

export type MemberEventType = 'join' | 'alive' | 'suspect' | 'dead' | 'left' | 'update' | 'reaped'

/**
 * 'join': a member appeared (or came back after dead/left); 'alive': a suspicion was refuted;
 * 'update': new meta or addresses at the same state; 'reaped': a dead or left member was forgotten.
 */
export interface MemberEvent {
  type: MemberEventType
  member: MemberInfo
}

export interface SwimStats {
  probes: number
  probeFailures: number
  indirectProbes: number
  suspicionsRaised: number
  suspicionsRefuted: number
  deathsDeclared: number
  messagesSent: Record<string, number>
  messagesReceived: Record<string, number>
  messagesDropped: number
  /** Updates larger than maxPacketBytes, not gossiped (push-pull carries them). */
  updatesTooLarge: number
  /** Updates refused because they raised a known incarnation by more than MAX_INCARNATION_JUMP. */
  incarnationJumpsRefused: number
  /** Suspicions whose timer fired late (this peer was stalled), checked again before a death was declared. */
  lateSuspicionsRechecked: number
  /** Reconnect ticks that knocked on a dead member (and a bootstrap address): Serf's dead/alive throttle. */
  reconnects: number
  /** Members held dead that were told so because a message of theirs reached this peer (they refute). */
  deadNotices: number
  /** Push-pulls this peer started because it had to refute a suspicion or death (it missed gossip). */
  refutePulls: number
  gossipQueueLength: number
  awareness: number
}

export interface JoinResult {
  joined: number
  errors: Array<{ addr: string, error: Error }>
}
