/**
 * membership: who is in the cluster, and who is alive. SWIM (Das et al. 2002) with the Lifeguard
 * refinements (Dadgar et al. 2018), as HashiCorp memberlist does it: each period one member is
 * probed in randomized round-robin order (ping, then ping-req through k others, with nacks);
 * a member that fails is suspected, and declared dead when the suspicion times out, a timeout
 * that shrinks as independent confirmations arrive; a live member refutes by raising its
 * incarnation. Updates ride on probes and on a separate gossip tick, each retransmitted
 * λ·log N times; push-pull full-state exchange does joins and periodic anti-entropy; a
 * Serf-style reconnect tick heals full splits. The Local Health Multiplier stretches this peer's
 * own timeouts when it is the slow one (missed nacks, refutations, its timers firing late).
 *
 * Protocol code receives its Transport, Clock and Random, so the same class runs in a real peer
 * and in the simulator (test/sim).
 *
 * ```ts
 * import { Swim } from '../membership/index.js'
 * const swim = new Swim({ transport, clock, random, log }, {
 *   meta: { name: 'shoal-1', http: '127.0.0.1:7947' },
 *   bootstrap: [{ addrs: ['/ip4/10.0.0.2/tcp/7946'] }]
 * })
 * swim.onChange(ev => log.info({ type: ev.type, peer: ev.member.id }, 'membership'))
 * swim.start()                       // joins the bootstrap in the background, retrying
 * swim.members()                     // [{ id, addrs, meta, state, incarnation, stateChangedAt }]
 * await swim.leave(2000); swim.stop()
 * ```
 */
export { Swim, pushPullScaleMs, retransmitLimit, INCARNATION_LEASE, MAX_INCARNATION_JUMP } from './swim.js'
export { MemberRecords } from './member.js'
export type { MemberRecord } from './member.js'
export type { SwimDeps, SwimDelegate, IncarnationStore } from './swim.js'
export { DEFAULT_SWIM_OPTIONS, resolveSwimOptions } from './options.js'
export type { SwimOptions, ResolvedSwimOptions } from './options.js'
export { suspicionTimeoutMs, suspicionMinMs } from './suspicion.js'
export type { MemberInfo, MemberMeta, MemberState, MemberEvent, MemberEventType, PreviousLife, SwimStats, JoinResult } from './types.js'
export { METHOD_PING, METHOD_PING_REQ, METHOD_ACK, METHOD_NACK, METHOD_GOSSIP, METHOD_PUSH_PULL, URGENT_METHODS } from './wire.js'
