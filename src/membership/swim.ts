/**
 * SWIM failure detection and membership (Das et al. 2002) with the Lifeguard refinements
 * (Dadgar et al. 2018), following HashiCorp memberlist's behaviour. See index.ts for the overview.
 */
import assert from 'node:assert'
import { shuffle } from '../runtime/index.js'
import type { Clock, Logger, PeerAddress, PeerId, Random, Timer, Transport } from '../runtime/index.js'
import { BroadcastQueue } from './broadcast.js'
import { resolveSwimOptions } from './options.js'
import type { ResolvedSwimOptions, SwimOptions } from './options.js'
import { KeyedMemberTable, MapMemberTable, Member } from './member.js'
import type { MemberRecord, MemberRecords, MemberTable } from './member.js'
import { Awareness, Suspicion, suspicionMinMs } from './suspicion.js'
import type { JoinResult, MemberEvent, MemberEventType, MemberInfo, MemberMeta, MemberState, PreviousLife, SwimStats } from './types.js'
import {
  METHOD_ACK, METHOD_GOSSIP, METHOD_NACK, METHOD_PING, METHOD_PING_REQ, METHOD_PUSH_PULL,
  checkAliveDetail, checkMeta, decodeAck, decodeGossip, decodeNack, decodePing, decodePingReq, decodePushPull, updateSize, MEMBERSHIP_PROTOCOL_VERSION
} from './wire.js'
import type { DecodeLimits, PushPullMsg, WireMember, WireUpdate } from './wire.js'
import { stateSize, wireMemberSize } from './wire.js'

export interface SwimDeps {
  transport: Transport
  clock: Clock
  random: Random
  log: Logger
  /** State of a higher layer carried on every push-pull exchange (memberlist's Delegate). */
  delegate?: SwimDelegate
  /**
   * Where this peer's incarnation ceiling survives restarts (a file in the data dir). Without
   * one, a restart starts again at `startIncarnation` and depends on hearing its old self to
   * outbid it (see IncarnationStore).
   */
  incarnations?: IncarnationStore
  /**
   * Shares members' records with other views in this process (the simulator's peers); without
   * one each view keeps its own (see member.ts).
   */
  records?: MemberRecords
  /**
   * The least incarnation to start at (default 0). A real peer passes its HLC's milliseconds, so
   * that a peer whose store is lost still starts above its previous life (see IncarnationStore).
   */
  startIncarnation?: number
}

/**
 * Issue 13. SWIM orders a member's announcements by incarnation, and only the member issues its
 * incarnations, so a peer that restarts must start above every incarnation it used before: one
 * that started again at 0 with a new HTTP port was ignored by everyone who knew it at 0 or more,
 * for good at an equal incarnation (nothing made it refute) and until its next push-pull above.
 *
 * The store keeps a ceiling: no incarnation above it was ever used. Swim starts at ceiling + 1
 * and saves a new ceiling (INCARNATION_LEASE ahead, so refutation storms cost one write per
 * lease) before it uses an incarnation above the saved one, exactly as the HLC persists its
 * ceiling. That is independent of the clocks, unlike memberlist and Serf, which persist nothing
 * and start from 0, and unlike starting from the wall clock alone, which a clock set back defeats
 * silently. A lost or restored-from-backup file is covered twice: the peer starts at least at
 * `startIncarnation` (the HLC's milliseconds: its own persisted ceiling, else the wall clock), and
 * if that fails too, hearing its old self at an equal incarnation with other meta or addresses
 * makes it refute, as memberlist does.
 */
export interface IncarnationStore {
  /** The saved ceiling, or undefined when none was ever saved. */
  load(): number | undefined
  /** Records a new ceiling durably (fsync, atomic replace) before it returns; throws on failure. */
  save(ceiling: number): void
}

/** How far ahead of the incarnation in use the persisted ceiling is set: one write per this many bumps. */
export const INCARNATION_LEASE = 1000

/**
 * The largest step by which an update may raise an incarnation this peer knows (a member's, a
 * tombstone's, its own). Incarnations are safe integers: one update at 2^53 - 1 about a member
 * left it no incarnation to refute with, dead for good, and one about this peer made it jump
 * there. Honest steps are far smaller: a new life starts at the HLC's milliseconds (about 2^40.7
 * in 2026, so even a peer that ran from 0 without a store jumps less than 2^41), and refutations
 * and announcements add one each. At 2^42 (139 years of milliseconds) it takes over 2,000 refused-
 * size steps, each an update the member itself refutes, to exhaust the range.
 */
export const MAX_INCARNATION_JUMP = 2 ** 42

/**
 * memberlist's Delegate.LocalState / MergeRemoteState: a higher layer (the space catalog) rides
 * its full state on each push-pull exchange, join and periodic anti-entropy alike, as field `d` of
 * the request and of the answer. The state must be plain data (a Uint8Array is best) of at most
 * SwimOptions.delegateStateMaxBytes; larger state is not sent (logged). What arrives is untrusted:
 * mergeRemoteState validates it. A delegate that throws is logged and never breaks membership.
 */
export interface SwimDelegate {
  /** This peer's state; `join` is true for a join exchange. */
  localState(join: boolean): unknown
  /** A remote peer's state, already bounded in size but not otherwise checked. */
  mergeRemoteState(state: unknown, join: boolean): void
}

interface PendingAck {
  onAck: () => void
  onNack?: () => void
}

interface Tombstone { incarnation: number, at: number }

/** The push-pull order: self, then the other members by id, and the members added since (see stateOrder). */
interface StateCache { members: Member[], added: Member[] }

/** A push-pull request or answer as sent (PushPullMsg, plus the version and delegate state). */
type PushPullBody = Omit<PushPullMsg, 'join'> & { v: number, join?: boolean, d?: unknown }

/** One exchange stops after this many pages (65,536 members of full-size meta take about 160). */
const MAX_PUSH_PULL_PAGES = 1024

/** memberlist pushPullScale: above 32 members the anti-entropy period grows with log2(n). */
const PUSH_PULL_SCALE_THRESHOLD = 32
/** Probe intervals between two push-pulls that a refutation starts (pullAfterRefuting). */
const REFUTE_PULL_INTERVALS = 5
/** A bootstrap address failing push-pulls for this many reconnect intervals no longer keeps joinSettled() false. */
const JOIN_GIVE_UP_INTERVALS = 3
/** One bootstrap address as a map key (its id, if known, and its multiaddrs). */
function addrKey (a: PeerAddress): string {
  return JSON.stringify([a.id ?? null, a.addrs])
}

export function pushPullScaleMs (intervalMs: number, n: number): number {
  if (n <= PUSH_PULL_SCALE_THRESHOLD) return intervalMs
  const mult = Math.ceil(Math.log2(n) - Math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1
  return intervalMs * mult
}

/** Retransmissions of one update: retransmitMult * ceil(log10(n + 1)) (memberlist retransmitLimit). */
export function retransmitLimit (retransmitMult: number, n: number): number {
  return retransmitMult * Math.ceil(Math.log10(n + 1))
}

function isLive (s: MemberState): boolean { return s === 'alive' || s === 'suspect' }

function sameStrings (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function addrLabel (a: PeerAddress): string { return a.addrs[0] ?? a.id ?? '?' }

export class Swim {
  readonly opts: ResolvedSwimOptions
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly random: Random
  private readonly log: Logger
  private readonly limits: DecodeLimits
  private delegate: SwimDelegate | undefined

  private readonly self: Member
  private readonly incarnations: IncarnationStore | undefined
  private readonly records: MemberRecords | undefined
  /** The highest incarnation the store vouches for (Infinity without a store: nothing to save). */
  private incarnationCeiling = Infinity
  private readonly membersById: MemberTable
  /** Every member but self, for O(1) random picks (each member's position in its `slot`). */
  private readonly memberList: Member[] = []
  private readonly tombstones = new Map<PeerId, Tombstone>()
  private liveCount = 1
  private deadOrLeftCount = 0

  /**
   * Self and the live members in id order, the same at every peer whose view agrees: the probe
   * schedule (nextProbeTarget). Kept sorted as members come, go or change liveness (a binary
   * search and a splice: a rebuild at every change cost a 3,000-peer formation most of its time).
   */
  private ring: PeerId[] = []
  /** Self's index in `ring`. */
  private ringSelf = 0
  /** Ids becoming live during a ringBatch, merged into the ring at its end. */
  private ringPending: PeerId[] | undefined
  /** The probe slot (probe intervals since the epoch) of this peer's last probe. */
  private lastProbeSlot = -Infinity
  /** A probe of ours waits for its ack (until its awareness-scaled interval ends): the ticker skips. */
  private probeInFlight = false
  private seq = 0
  private readonly pendingAcks = new Map<number, PendingAck>()
  private readonly queue: BroadcastQueue
  private readonly awareness: Awareness
  private readonly listeners = new Set<(ev: MemberEvent) => void>()

  private running = false
  private leaving = false
  private lastLagPenaltyAt = -Infinity
  private readonly timers = new Set<Timer>()
  private bootstrap: PeerAddress[]
  /** A full-state exchange with another member succeeded since start (either direction). */
  private synced = false
  private joinRetryScheduled = false
  /**
   * Bootstrap addresses that have not answered a push-pull since start, with their failures: a
   * peer that restarted with its whole cluster reaches only the peers already up at first, and
   * keeps knocking on the others (reconnectTick) until they answer or have failed for
   * JOIN_GIVE_UP_INTERVALS reconnect intervals. Until then its view may be an island (joinSettled).
   */
  private readonly unanswered = new Map<string, { addr: PeerAddress, since: number }>()
  /**
   * When each member we hold dead was last told so because a message of its reached us (see
   * deadNotice): at most once a probe interval each. Pruned by the reconnect tick.
   */
  private readonly deadNoticedAt = new Map<string, number>()
  /** When pullAfterRefuting last pulled (-Infinity: never). */
  private lastRefutePullAt = -Infinity
  private readonly joinAnswered = new Set<string>()
  private stateCache: StateCache | undefined
  /** Resolves a pending leave() when stop() comes first. */
  private finishLeave: (() => void) | undefined
  /** The incarnation this life started at: anything about us below it is a previous life. */
  private readonly lifeStartIncarnation: number
  private readonly restartedAt: number
  private previous: PreviousLife | undefined

  private readonly counters = {
    probes: 0,
    probeFailures: 0,
    indirectProbes: 0,
    suspicionsRaised: 0,
    suspicionsRefuted: 0,
    deathsDeclared: 0,
    messagesDropped: 0,
    updatesTooLarge: 0,
    incarnationJumpsRefused: 0,
    lateSuspicionsRechecked: 0,
    reconnects: 0,
    deadNotices: 0,
    refutePulls: 0,
    messagesSent: {} as Record<string, number>,
    messagesReceived: {} as Record<string, number>
  }

  constructor (deps: SwimDeps, options: SwimOptions = {}) {
    this.opts = resolveSwimOptions(options)
    this.transport = deps.transport
    this.clock = deps.clock
    this.random = deps.random
    this.log = deps.log.child({ component: 'swim' })
    this.delegate = deps.delegate
    this.limits = { metaMaxBytes: this.opts.metaMaxBytes, maxUpdatesPerMessage: this.opts.maxUpdatesPerMessage, maxPushPullMembers: this.opts.maxPushPullMembers }
    const metaBytes = checkMeta(this.opts.meta, this.opts.metaMaxBytes)
    if (metaBytes < 0) throw new RangeError(`invalid or oversize meta (limit ${this.opts.metaMaxBytes} bytes)`)
    this.incarnations = deps.incarnations
    this.records = deps.records
    this.membersById = this.records !== undefined ? new KeyedMemberTable(this.records) : new MapMemberTable()
    const floor = deps.startIncarnation ?? 0
    if (!Number.isSafeInteger(floor) || floor < 0) throw new RangeError(`startIncarnation must be a non-negative safe integer, got ${String(floor)}`)
    let start = floor
    if (this.incarnations !== undefined) {
      const saved = this.incarnations.load()
      if (saved !== undefined) {
        if (!Number.isSafeInteger(saved) || saved < 0) throw new RangeError(`saved incarnation ceiling ${String(saved)} is not a non-negative safe integer`)
        start = Math.max(start, saved + 1)
      }
      this.incarnationCeiling = saved ?? -1
    }
    this.self = new Member(this.record(this.transport.localPeerId, -1, this.transport.localAddrs(), this.opts.meta, metaBytes), 'alive', this.now())
    this.ring = [this.self.id]
    // Saved before anyone hears of it; a store that cannot be written fails construction here,
    // where the caller can still refuse to start.
    this.useIncarnation(start, true)
    this.lifeStartIncarnation = this.self.incarnation
    this.restartedAt = this.clock.now()
    this.membersById.set(this.self)
    this.queue = new BroadcastQueue(this.opts.maxBroadcastQueue)
    this.awareness = new Awareness(this.opts.awarenessMaxMultiplier)
    this.bootstrap = this.opts.bootstrap.filter(a => a.id !== this.self.id)
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Registers the handlers and starts the timers; joins `bootstrap` in the background (never
   * fails for unreachable addresses: they are retried). Resolves at once.
   */
  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.leaving = false
    if (this.self.state !== 'alive') {
      // Started again after leave(): come back with an incarnation that outbids our 'left'.
      this.useIncarnation(this.self.incarnation + 1)
      this.setState(this.self, 'alive')
    }
    const self = this.self
    self.rec = this.record(self.id, self.incarnation, this.transport.localAddrs(), self.meta, self.metaBytes)
    const t = this.transport
    t.onMessage(METHOD_PING, (b, from) => { this.guard(METHOD_PING, from, () => { this.onPing(b, from) }) })
    t.onMessage(METHOD_PING_REQ, (b, from) => { this.guard(METHOD_PING_REQ, from, () => { this.onPingReq(b, from) }) })
    t.onMessage(METHOD_ACK, (b, from) => { this.guard(METHOD_ACK, from, () => { this.onAck(b, from) }) })
    t.onMessage(METHOD_NACK, (b, from) => { this.guard(METHOD_NACK, from, () => { this.onNack(b, from) }) })
    t.onMessage(METHOD_GOSSIP, (b, from) => { this.guard(METHOD_GOSSIP, from, () => { this.onGossip(b, from) }) })
    t.handle(METHOD_PUSH_PULL, (b, ctx) => this.onPushPull(b, ctx.from))

    // Random first offsets, so peers started together do not tick in lockstep.
    const o = this.opts
    // The probe ticker runs at the plain interval, as memberlist's does: a slow peer (awareness)
    // waits longer for a failed probe (probeInFlight), but an answered one lets the next go at the
    // next tick. Ticking at the scaled interval made recovery one answered probe per scaled
    // interval: from the maximum, 36 s of health to get back to 0, and repeated stalls kept
    // awareness pinned there.
    this.every(() => o.probeIntervalMs * this.random.next(), () => o.probeIntervalMs, () => { this.probeTick() })
    this.every(() => o.gossipIntervalMs * this.random.next(), () => o.gossipIntervalMs, () => { this.gossipTick() })
    this.every(() => o.pushPullIntervalMs * this.random.next(), () => pushPullScaleMs(o.pushPullIntervalMs, this.liveCount), () => { this.pushPullTick() })
    this.every(() => o.reconnectIntervalMs * this.random.next(), () => o.reconnectIntervalMs, () => { this.reconnectTick() })
    this.every(() => o.reapIntervalMs, () => o.reapIntervalMs, () => { this.reapTick() })
    // A restarted peer announces itself; its first push-pull tells it whether it must refute.
    this.broadcast(this.aliveUpdate(this.self), this.self.metaBytes)
    if (this.bootstrap.length > 0) void this.join(this.bootstrap)
  }

  /** Stops every timer. Handlers stay registered but ignore input. */
  async stop (): Promise<void> {
    this.running = false
    for (const t of this.timers) t.cancel()
    this.timers.clear()
    this.pendingAcks.clear()
    this.probeInFlight = false
    for (const m of this.membersById.values()) { m.suspicion?.cancel(); m.suspicion = undefined }
    this.finishLeave?.()
  }

  /**
   * Announces a graceful departure: broadcasts 'left' with a bumped incarnation and resolves once
   * it went out to min(gossipNodes, live members) peers, or after timeoutMs. Probing stops; acks
   * and gossip continue until stop().
   */
  leave (timeoutMs: number): Promise<void> {
    if (this.leaving) return Promise.resolve()
    this.leaving = true
    this.useIncarnation(this.self.incarnation + 1)
    this.setState(this.self, 'left')
    this.emit('left', this.self)
    const others = this.liveCount
    const want = Math.min(this.opts.gossipNodes, others)
    return new Promise<void>(resolve => {
      let done = false
      const finish = (): void => {
        if (done) return
        done = true
        this.finishLeave = undefined
        timer.cancel()
        this.timers.delete(timer)
        resolve()
      }
      this.finishLeave = finish
      const timer = this.clock.setTimer(timeoutMs, finish)
      this.timers.add(timer)
      const u: WireUpdate = { k: 'left', id: this.self.id, i: this.self.incarnation }
      this.queue.push(u, updateSize(u, 0), sent => { if (sent >= want) finish() })
      if (want === 0 || !this.running) finish()
      // Do not wait for the next gossip tick.
      else this.gossipTick()
    })
  }

  /**
   * Push-pull full state with each bootstrap address. Resolves with how many answered; never
   * rejects (errors are listed per address). The addresses are remembered: while no other member
   * is alive they are retried in the background, and later used by the reconnect tick.
   */
  async join (bootstrap: PeerAddress[]): Promise<JoinResult> {
    const targets = bootstrap.filter(a => a.id !== this.self.id && !(a.id === undefined && a.addrs.length > 0 && a.addrs.every(x => this.self.addrs.includes(x))))
    for (const a of targets) {
      const key = addrKey(a)
      if (!this.bootstrap.some(b => addrKey(b) === key)) this.bootstrap.push({ id: a.id, addrs: [...a.addrs] })
      // Pending until it answers: an exchange another peer starts with us may sync us first.
      if (!this.joinAnswered.has(key) && !this.unanswered.has(key)) this.unanswered.set(key, { addr: { id: a.id, addrs: [...a.addrs] }, since: this.clock.now() })
    }
    const out = await this.joinOnce(targets)
    this.ensureJoinRetry()
    return out
  }

  private async joinOnce (targets: PeerAddress[]): Promise<JoinResult> {
    const results = await Promise.allSettled(targets.map(async a => { await this.pushPull(a, true) }))
    const out: JoinResult = { joined: 0, errors: [] }
    results.forEach((r, i) => {
      this.noteJoinAnswer(targets[i]!, r.status === 'fulfilled')
      if (r.status === 'fulfilled') out.joined++
      else out.errors.push({ addr: addrLabel(targets[i]!), error: r.reason instanceof Error ? r.reason : new Error(String(r.reason)) })
    })
    return out
  }

  private noteJoinAnswer (addr: PeerAddress, answered: boolean): void {
    const key = addrKey(addr)
    const entry = this.unanswered.get(key)
    if (answered) { this.unanswered.delete(key); this.joinAnswered.add(key); return }
    // Given up once it has failed for JOIN_GIVE_UP_INTERVALS reconnect intervals: a peer still
    // starting answers by then, one that is gone never will.
    const now = this.clock.now()
    const since = entry?.since ?? now
    if (now - since >= JOIN_GIVE_UP_INTERVALS * this.opts.reconnectIntervalMs) this.unanswered.delete(key)
    else this.unanswered.set(key, { addr, since })
  }

  /**
   * Whether every bootstrap address has answered a push-pull since start, is known alive through
   * others, or has failed for JOIN_GIVE_UP_INTERVALS reconnect intervals: until then this peer's view may be an
   * island of the peers that happened to be up first (a whole cluster restarting at once), and
   * what it would decide alone (that a partition is fresh, who its first ready holder is) waits.
   */
  joinSettled (): boolean {
    for (const [key, { addr }] of this.unanswered) {
      if (addr.id !== undefined && this.membersById.get(addr.id)?.state === 'alive') this.unanswered.delete(key)
    }
    return this.unanswered.size === 0
  }

  /** Keeps joining the bootstrap addresses while we know no other live member. */
  private ensureJoinRetry (): void {
    if (this.joinRetryScheduled || !this.running || this.leaving || this.liveCount > 1 || this.bootstrap.length === 0) return
    this.joinRetryScheduled = true
    this.after(this.opts.joinRetryIntervalMs, () => {
      this.joinRetryScheduled = false
      if (this.liveCount > 1) return
      void this.joinOnce(this.bootstrap).then(res => {
        if (res.joined === 0) this.log.debug({ errors: res.errors.map(e => `${e.addr}: ${e.error.message}`) }, 'bootstrap join failed, will retry')
        this.ensureJoinRetry()
      })
    })
  }

  /** New metadata for this peer: bumps the incarnation and gossips it. */
  updateMeta (meta: MemberMeta): void {
    const size = checkMeta(meta, this.opts.metaMaxBytes)
    if (size < 0) throw new RangeError(`invalid or oversize meta (limit ${this.opts.metaMaxBytes} bytes)`)
    this.self.rec = this.record(this.self.id, this.self.incarnation, this.self.addrs, meta, size)
    this.useIncarnation(this.self.incarnation + 1)
    this.broadcast(this.aliveUpdate(this.self), size)
    this.emit('update', this.self)
  }

  /**
   * Whether this peer's view is worth acting on: it has exchanged full state with another member
   * since it started, or it has nobody to join (no bootstrap address: the first peer of a
   * cluster). A peer that restarts knows nothing of the others until then; layers that would
   * otherwise take its lonely view for the cluster's (placement, replication) wait for this.
   */
  hasSynced (): boolean {
    return this.synced || this.bootstrap.length === 0
  }

  /**
   * What a push-pull answer said of this peer's previous life (see PreviousLife), the newest
   * incarnation heard; undefined when nobody told of one (a first start, or a reaped member).
   */
  previousLife (): PreviousLife | undefined {
    return this.previous === undefined ? undefined : { ...this.previous }
  }

  /** Installs (or removes) the push-pull delegate after construction. */
  setDelegate (delegate: SwimDelegate | undefined): void { this.delegate = delegate }

  // ---------------------------------------------------------------- views

  get localPeerId (): PeerId { return this.self.id }

  members (): MemberInfo[] {
    const out: MemberInfo[] = []
    for (const m of this.membersById.values()) out.push(snapshot(m))
    return out
  }

  member (id: PeerId): MemberInfo | undefined {
    const m = this.membersById.get(id)
    return m === undefined ? undefined : snapshot(m)
  }

  localMember (): MemberInfo { return snapshot(this.self) }

  /** Number of alive + suspect members, self included (the n of every log(n) in the protocol). */
  liveMembers (): number { return this.liveCount }

  onChange (listener: (ev: MemberEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /**
   * Event-loop delay measured outside (perf_hooks.monitorEventLoopDelay in a real peer). A delay
   * of lagThresholdMs or more raises awareness, at most once per probe interval.
   */
  noteEventLoopLag (lagMs: number): void {
    if (!(lagMs >= this.opts.lagThresholdMs)) return
    const now = this.clock.now()
    if (now - this.lastLagPenaltyAt < this.opts.probeIntervalMs) return
    this.lastLagPenaltyAt = now
    this.awareness.apply(1)
    this.log.debug({ lagMs, awareness: this.awareness.value }, 'event loop lag raises awareness')
  }

  /** Lifeguard Local Health Multiplier score: 0 (healthy) .. awarenessMaxMultiplier - 1. */
  localHealthScore (): number { return this.awareness.value }

  stats (): SwimStats {
    const c = this.counters
    return {
      probes: c.probes,
      probeFailures: c.probeFailures,
      indirectProbes: c.indirectProbes,
      suspicionsRaised: c.suspicionsRaised,
      suspicionsRefuted: c.suspicionsRefuted,
      deathsDeclared: c.deathsDeclared,
      messagesSent: { ...c.messagesSent },
      messagesReceived: { ...c.messagesReceived },
      messagesDropped: c.messagesDropped,
      updatesTooLarge: c.updatesTooLarge,
      incarnationJumpsRefused: c.incarnationJumpsRefused,
      lateSuspicionsRechecked: c.lateSuspicionsRechecked,
      reconnects: c.reconnects,
      deadNotices: c.deadNotices,
      refutePulls: c.refutePulls,
      gossipQueueLength: this.queue.length,
      awareness: this.awareness.value
    }
  }

  // ---------------------------------------------------------------- timers

  /** A timer that notices when it fires late (a stalled process) and feeds that to awareness. */
  private after (delayMs: number, fn: (lateMs: number) => void): Timer {
    const due = this.clock.now() + delayMs
    const timer = this.clock.setTimer(delayMs, () => {
      this.timers.delete(timer)
      if (!this.running) return
      const late = this.clock.now() - due
      if (late >= this.opts.lagThresholdMs) this.noteEventLoopLag(late)
      try { fn(late) } catch (err) { this.log.error({ err }, 'swim timer failed') }
    })
    this.timers.add(timer)
    return timer
  }

  private every (first: () => number, period: () => number, fn: () => void): void {
    const tick = (): void => {
      fn()
      if (this.running) this.after(period(), tick)
    }
    this.after(first(), tick)
  }

  // ---------------------------------------------------------------- failure detector

  private probeTick (): void {
    if (this.leaving || this.probeInFlight) return
    const target = this.nextProbeTarget()
    if (target !== undefined) this.probe(target, true)
  }

  /**
   * A round robin shared by the whole cluster. In probe slot t (t = now / probeIntervalMs, the
   * same at every peer within clock skew) the peer at position p of the ring probes the member at
   * p + 1 + (t mod (L - 1)): the targets of one slot are a rotation of the ring, so every live
   * member is probed by exactly one peer in every slot (where views agree), and each peer still
   * probes every member once per L - 1 slots, as SWIM's round robin does.
   *
   * Why not SWIM's randomized round robin (memberlist): there each peer walks its own shuffled
   * list, so in a slot a given member is probed by nobody with probability (1 - 1/(L-1))^(L-1),
   * about 0.37. A crash then went unnoticed for 4-5 slots at the 99th percentile, and the
   * suspicion timeout had to be cut to keep crash-to-dead under 8 s, leaving too little for a
   * peer paused by its garbage collector or its disk to come back and refute. Here a crash is
   * suspected within one slot (plus the probe timeout), so the suspicion timeout can stay long.
   */
  private nextProbeTarget (): Member | undefined {
    const n = this.ring.length
    if (n < 2) return undefined
    // Never the same slot twice (a timer firing early); a slow peer (awareness) skips slots.
    const slot = Math.max(this.lastProbeSlot + 1, Math.floor(this.clock.now() / this.opts.probeIntervalMs))
    this.lastProbeSlot = slot
    const m = this.membersById.get(this.ring[(this.ringSelf + 1 + (slot % (n - 1))) % n]!)
    return m !== undefined && m !== this.self && isLive(m.state) ? m : undefined
  }

  /** Where `id` is in the ring, or where it would go (binary search over the sorted ids). */
  private ringSearch (id: PeerId): { at: number, found: boolean } {
    let lo = 0
    let hi = this.ring.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.ring[mid]! < id) lo = mid + 1
      else hi = mid
    }
    return { at: lo, found: this.ring[lo] === id }
  }

  /** A member became live (joined, or came back): into the probe ring. */
  private ringAdd (id: PeerId): void {
    if (this.ringPending !== undefined) { this.ringPending.push(id); return }
    const { at, found } = this.ringSearch(id)
    if (found) return
    this.ring.splice(at, 0, id)
    if (at <= this.ringSelf) this.ringSelf++
  }

  /**
   * Runs `fn` with additions to the ring batched: one sort at the end instead of a splice per
   * member (a join's push-pull of 10,000 members moved 5 * 10^7 ids, and every peer joins).
   */
  private ringBatch<T> (fn: () => T): T {
    if (this.ringPending !== undefined) return fn()
    this.ringPending = []
    try {
      return fn()
    } finally {
      const pending = this.ringPending
      this.ringPending = undefined
      if (pending.length > 0) this.ringMerge(pending)
    }
  }

  private ringMerge (ids: PeerId[]): void {
    const all = this.ring.concat(ids).sort()
    let w = 0
    for (let r = 0; r < all.length; r++) if (r === 0 || all[r] !== all[r - 1]) all[w++] = all[r]!
    all.length = w
    this.ring = all
    this.ringSelf = this.ringSearch(this.self.id).at
  }

  /** A member stopped being live (dead, left, removed): out of the probe ring. */
  private ringRemove (id: PeerId): void {
    if (this.ringPending !== undefined && this.ringPending.length > 0) {
      const pending = this.ringPending
      this.ringPending = []
      this.ringMerge(pending)
    }
    const { at, found } = this.ringSearch(id)
    if (!found) return
    assert(id !== this.self.id, 'self never leaves its own probe ring')
    this.ring.splice(at, 1)
    if (at < this.ringSelf) this.ringSelf--
  }

  /** Probes `target`; `ticked` for the ticker's own probe, which the next ticks wait for (probeInFlight). */
  private probe (target: Member, ticked = false): void {
    if (this.pendingAcks.size >= this.opts.maxPendingAcks) return
    this.counters.probes++
    const seq = this.nextSeq()
    const timeoutMs = this.awareness.scale(this.opts.probeTimeoutMs)
    const intervalMs = this.awareness.scale(this.opts.probeIntervalMs)
    const incarnation = target.incarnation
    let acked = false
    let nacks = 0
    let expectedNacks = 0
    let stalled = false
    const timers: Timer[] = []
    if (ticked) this.probeInFlight = true
    this.pendingAcks.set(seq, {
      onAck: () => {
        if (acked) return
        acked = true
        if (ticked) this.probeInFlight = false
        this.pendingAcks.delete(seq)
        for (const t of timers) { t.cancel(); this.timers.delete(t) }
        this.awareness.apply(-1)
      },
      onNack: () => { nacks++ }
    })
    // Buddy system (Lifeguard): a suspect learns of its suspicion from the prober and refutes.
    const extra: WireUpdate[] = target.state === 'suspect' ? [{ k: 'suspect', id: target.id, i: target.incarnation, f: this.self.id }] : []
    this.sendTo(target, METHOD_PING, { seq, target: target.id, src: this.self.addrs, pb: this.piggyback(extra) })

    timers.push(this.after(timeoutMs, late => {
      if (acked) return
      if (late >= this.opts.lagThresholdMs) stalled = true
      const helpers = this.randomMembers(this.opts.indirectChecks, m => m !== target && m.state === 'alive')
      expectedNacks = helpers.length
      this.counters.indirectProbes += helpers.length
      for (const h of helpers) {
        this.sendTo(h, METHOD_PING_REQ, { seq, target: target.id, ta: target.addrs, nack: true, src: this.self.addrs, pb: this.piggyback([]) })
      }
    }))
    timers.push(this.after(intervalMs, late => {
      if (acked) return
      if (ticked) this.probeInFlight = false
      this.pendingAcks.delete(seq)
      if (stalled || late >= this.opts.lagThresholdMs) {
        // We were the slow one (our own timers fired late): the missing ack says nothing about
        // the target, so do not blame it. Awareness has already been raised.
        this.log.debug({ target: target.id }, 'probe inconclusive: local timers fired late')
        return
      }
      this.counters.probeFailures++
      // Lifeguard: nacks we expected but did not get mean our own network or process is at fault.
      this.awareness.apply(expectedNacks > 0 ? Math.max(0, expectedNacks - nacks) : 1)
      const cur = this.membersById.get(target.id)
      if (cur === undefined || cur.incarnation !== incarnation || !isLive(cur.state)) return
      if (cur.state === 'alive') this.counters.suspicionsRaised++
      this.onSuspect({ k: 'suspect', id: target.id, i: incarnation, f: this.self.id })
    }))
  }

  private onPing (body: unknown, from: PeerId): void {
    const msg = decodePing(body, this.limits)
    if (msg === null) { this.drop(METHOD_PING, from); return }
    const stale = this.applyUpdates(msg.pb)
    // A ping meant for a previous owner of our address is not ours to answer.
    if (msg.target !== this.self.id) { this.drop(METHOD_PING, from, 'ping for another peer'); return }
    // Buddy system, completed: a prober still suspecting an incarnation we already refuted missed
    // the refutation's gossip; our ack carries it to them.
    const first = stale ? [this.aliveUpdate(this.self)] : []
    const notice = this.deadNotice(from)
    if (notice !== undefined) first.push(notice)
    this.sendTo(this.replyAddr(from, msg.src), METHOD_ACK, { seq: msg.seq, pb: this.piggyback(first) })
  }

  private onPingReq (body: unknown, from: PeerId): void {
    const msg = decodePingReq(body, this.limits)
    if (msg === null) { this.drop(METHOD_PING_REQ, from); return }
    this.answerAboutSelf(from, this.applyUpdates(msg.pb))
    if (msg.target === this.self.id || this.pendingAcks.size >= this.opts.maxPendingAcks) return
    const requester = this.replyAddr(from, msg.src)
    const localSeq = this.nextSeq()
    let answered = false
    const timers: Timer[] = []
    this.pendingAcks.set(localSeq, {
      onAck: () => {
        if (answered) return
        answered = true
        this.pendingAcks.delete(localSeq)
        for (const t of timers) { t.cancel(); this.timers.delete(t) }
        this.sendTo(requester, METHOD_ACK, { seq: msg.seq, pb: this.piggyback([]) })
      }
    })
    const known = this.membersById.get(msg.target)
    const targetAddr: PeerAddress = { id: msg.target, addrs: msg.ta.length > 0 ? msg.ta : known?.addrs ?? [] }
    this.sendTo(targetAddr, METHOD_PING, { seq: localSeq, target: msg.target, src: this.self.addrs, pb: this.piggyback([]) })
    if (msg.nack) {
      timers.push(this.after(this.opts.probeTimeoutMs * this.opts.nackFraction, () => {
        if (!answered) this.sendTo(requester, METHOD_NACK, { seq: msg.seq })
      }))
    }
    timers.push(this.after(this.opts.probeTimeoutMs, () => { this.pendingAcks.delete(localSeq) }))
  }

  private onAck (body: unknown, from: PeerId): void {
    const msg = decodeAck(body, this.limits)
    if (msg === null) { this.drop(METHOD_ACK, from); return }
    this.answerAboutSelf(from, this.applyUpdates(msg.pb))
    this.pendingAcks.get(msg.seq)?.onAck()
  }

  private onNack (body: unknown, from: PeerId): void {
    const msg = decodeNack(body)
    if (msg === null) { this.drop(METHOD_NACK, from); return }
    this.pendingAcks.get(msg.seq)?.onNack?.()
  }

  // ---------------------------------------------------------------- dissemination

  private gossipTick (): void {
    if (this.queue.length === 0) return
    const targets = this.randomMembers(this.opts.gossipNodes, m => isLive(m.state) ||
      (m.state === 'dead' && this.clock.now() - m.stateChangedAt <= this.opts.gossipToTheDeadMs))
    for (const t of targets) {
      const pb = this.piggyback([])
      if (pb.length === 0) break
      this.sendTo(t, METHOD_GOSSIP, { pb })
    }
  }

  private onGossip (body: unknown, from: PeerId): void {
    const msg = decodeGossip(body, this.limits)
    if (msg === null) { this.drop(METHOD_GOSSIP, from); return }
    this.answerAboutSelf(from, this.applyUpdates(msg.pb))
  }

  /**
   * After applying a message's updates: tells the sender directly what it has wrong about the two
   * of us. `aboutSelf`: it holds us suspect or dead at an incarnation we have refuted (now or
   * before), so it gets our alive at once rather than when gossip happens to reach it. And if we
   * hold the sender dead, it is told so (deadNotice) and refutes.
   */
  private answerAboutSelf (from: PeerId, aboutSelf: boolean): void {
    const pb = aboutSelf ? [this.aliveUpdate(this.self)] : []
    const notice = this.deadNotice(from)
    if (notice !== undefined) pb.push(notice)
    if (pb.length > 0) this.sendTo(this.replyAddr(from, undefined), METHOD_GOSSIP, { pb })
  }

  /**
   * The death we hold of `from`, when a message of its just reached us, so it is alive: it learns
   * of its death from us and refutes, and its alive comes back to us (answerAboutSelf on its side).
   * Without it, a member declared dead across a cut that has healed stays dead in our view until
   * someone happens to tell it: dead members are not probed, the deaths' gossip is long spent, and
   * a reconnect knock reaches one dead member a period across the cluster (30 peers, a fifth cut
   * off for 20 s: one view alive again 24.6 s after the heal, the last refutations waiting). At most
   * once a probe interval per member.
   */
  private deadNotice (from: PeerId): WireUpdate | undefined {
    const m = this.membersById.get(from)
    if (m === undefined || m.state !== 'dead' || m === this.self || this.leaving) return undefined
    const now = this.clock.now()
    const last = this.deadNoticedAt.get(from)
    if (last !== undefined && now - last < this.opts.probeIntervalMs) return undefined
    this.deadNoticedAt.set(from, now)
    this.counters.deadNotices++
    return { k: 'dead', id: m.id, i: m.incarnation, f: this.self.id }
  }

  /** Queued updates for one message, after `first` (which is always sent). */
  private piggyback (first: WireUpdate[]): WireUpdate[] {
    const limit = retransmitLimit(this.opts.retransmitMult, this.liveCount)
    let budget = this.opts.maxPacketBytes
    for (const u of first) budget -= updateSize(u, 0)
    const taken = this.queue.take(budget, this.opts.maxUpdatesPerMessage - first.length, limit)
    return first.length === 0 ? taken : first.concat(taken)
  }

  private broadcast (u: WireUpdate, metaBytes: number): void {
    const size = updateSize(u, metaBytes)
    if (size > this.opts.maxPacketBytes) {
      // It would never fit a message (piggyback skips what does not fit), so it would sit in the
      // queue unsent and never dropped. Push-pull still carries the member's state.
      this.counters.updatesTooLarge++
      if (this.counters.updatesTooLarge <= 10 || this.counters.updatesTooLarge % 1000 === 0) {
        this.log.warn({ member: u.id, kind: u.k, bytes: size, maxPacketBytes: this.opts.maxPacketBytes, dropped: this.counters.updatesTooLarge }, 'membership update larger than a message: not gossiped (push-pull carries it)')
      }
      return
    }
    this.queue.push(u, size)
  }

  private aliveUpdate (m: Member): WireUpdate {
    return { k: 'alive', id: m.id, i: m.incarnation, a: m.addrs, m: m.meta }
  }

  // ---------------------------------------------------------------- anti-entropy and joins

  /**
   * The members in the order push-pull sends them: this peer first, then every other member by id
   * (see PushPullMsg for the paging). Members, not their wire form, and rebuilt only when the set
   * of members changed: a bootstrap peer answers many joins from it, and at 10,000 members a
   * second copy of the table in wire form cost as much as the table itself.
   */
  private stateOrder (): Member[] {
    const byId = (a: Member, b: Member): number => a.id < b.id ? -1 : a.id > b.id ? 1 : 0
    const cache = this.stateCache
    if (cache !== undefined && cache.added.length === 0) return cache.members
    let order: Member[]
    if (cache !== undefined) {
      // Only additions since (a removal drops the cache): merge them in, O(n) rather than a sort
      // of everything: a bootstrap peer of 10,000 answers 10,000 joins, each after a change.
      const added = cache.added.sort(byId)
      const old = cache.members
      order = [this.self]
      let i = 1
      for (const m of added) {
        while (i < old.length && old[i]!.id < m.id) order.push(old[i++]!)
        order.push(m)
      }
      while (i < old.length) order.push(old[i++]!)
    } else {
      order = this.memberList.slice().sort(byId)
      order.unshift(this.self)
    }
    this.stateCache = { members: order, added: [] }
    return order
  }

  /**
   * One page of this peer's state for `forPeer`: from the start, or after the member id `after`;
   * `paged` false gives all of it in one (a caller that cannot page). `next` is the id to go on
   * after, absent on the last page.
   */
  private statePage (forPeer: PeerId | undefined, after: PeerId | undefined, paged: boolean): { members: WireMember[], next?: PeerId } {
    const members = this.stateOrder()
    // The first member after `after`, by binary search over the id-ordered rest (index 0 is self).
    let i = 0
    if (after !== undefined) {
      let lo = 1
      let hi = members.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (members[mid]!.id <= after) lo = mid + 1
        else hi = mid
      }
      i = lo
    }
    const now = this.clock.now()
    const out: WireMember[] = []
    // At least one member besides self a page, however large (meta is bounded by metaMaxBytes),
    // so that `next` is always one of the id-ordered rest. A message holds at most
    // maxPushPullMembers (the receiver's decode limit), paged or not.
    const least = after === undefined ? 2 : 1
    for (let budget = this.opts.pushPullPageBytes; i < members.length && out.length < this.opts.maxPushPullMembers; i++) {
      const w = this.wireMember(members[i]!, now)
      const size = wireMemberSize(w, members[i]!.metaBytes)
      if (paged && out.length >= least && size > budget) break
      budget -= size
      out.push(w)
    }
    // A reaped peer that comes back learns from its tombstone that it must refute.
    if (after === undefined && forPeer !== undefined && !this.membersById.has(forPeer)) {
      const t = this.tombstones.get(forPeer)
      if (t !== undefined && out.length < this.opts.maxPushPullMembers) out.push({ id: forPeer, i: t.incarnation, s: 'dead', a: [], m: {} })
    }
    return i < members.length && i > 0 ? { members: out, next: members[i - 1]!.id } : { members: out }
  }

  /** One member as push-pull carries it, with its age if gone. */
  private wireMember (m: Member, now: number): WireMember {
    const w: WireMember = { id: m.id, i: m.incarnation, s: m.state, a: m.addrs, m: m.meta }
    if (m.removed && m.state === 'left') w.r = true
    if (!isLive(m.state)) w.t = Math.max(0, Math.floor(now - m.stateChangedAt))
    return w
  }

  /** One exchange of member tables with `to`, in as many pages as either needs; the members received. */
  private async pushPull (to: PeerAddress, join: boolean): Promise<number> {
    this.count(this.counters.messagesSent, METHOD_PUSH_PULL)
    let mine = this.statePage(to.id, undefined, true)
    const body: PushPullBody = { v: MEMBERSHIP_PROTOCOL_VERSION, join, members: mine.members, pg: true }
    const d = this.delegateState(join)
    if (d !== undefined) body.d = d
    const res = await this.transport.request(to, METHOD_PUSH_PULL, body, { timeoutMs: this.opts.pushPullTimeoutMs })
    let msg = decodePushPull(res, this.limits)
    if (msg === null) throw new Error('malformed push-pull response')
    this.count(this.counters.messagesReceived, METHOD_PUSH_PULL)
    if (!this.running) return msg.members.length
    // Before the merge, so listeners woken by the merge's events already see it.
    this.synced = true
    if (msg.p !== undefined && msg.p.id === this.self.id) this.notePreviousLife(msg.p)
    this.mergeState(msg.members)
    this.mergeDelegateState(res, join, to.id ?? addrLabel(to))
    let received = msg.members.length
    // The rest of both states, a page of each per request (an older callee, without `pg`, took
    // the first page only: its own push-pulls bring it the rest).
    let theirs = msg.next
    for (let pages = 1; msg.pg === true && (mine.next !== undefined || theirs !== undefined); pages++) {
      if (pages >= MAX_PUSH_PULL_PAGES) throw new Error(`push-pull over ${MAX_PUSH_PULL_PAGES} pages; the rest is left to the next exchange`)
      mine = mine.next !== undefined ? this.statePage(to.id, mine.next, true) : { members: [] }
      const more: PushPullBody = { v: MEMBERSHIP_PROTOCOL_VERSION, join, members: mine.members, cont: true }
      if (theirs !== undefined) more.after = theirs
      const page = await this.transport.request(to, METHOD_PUSH_PULL, more, { timeoutMs: this.opts.pushPullTimeoutMs })
      msg = decodePushPull(page, this.limits)
      if (msg === null) throw new Error('malformed push-pull response')
      if (!this.running) break
      this.mergeState(msg.members)
      received += msg.members.length
      // A callee that had nothing more to send answers with none and no `next`.
      if (theirs !== undefined && msg.next !== undefined && msg.next <= theirs) throw new Error('push-pull page does not move forward')
      theirs = theirs === undefined ? undefined : msg.next
    }
    return received
  }

  private onPushPull (body: unknown, from: PeerId): unknown {
    // Not an answer to count as a join: the caller should try elsewhere.
    if (!this.running) throw new Error('membership is not running on this peer')
    this.count(this.counters.messagesReceived, METHOD_PUSH_PULL)
    const msg = decodePushPull(body, this.limits)
    if (msg === null) { this.drop(METHOD_PUSH_PULL, from); return { members: [] } }
    if (msg.cont === true) return this.onPushPullPage(msg, from)
    let tombstoned: PeerId[] = []
    this.synced = true
    // What we knew of the caller before its state replaces it: if the caller is a new life of a
    // member we knew, that was its previous life, which only we can tell it now (see PreviousLife).
    const known = this.membersById.get(from)
    const callerNow = msg.members.find(m => m.id === from)
    const before = known !== undefined && known !== this.self && callerNow !== undefined && callerNow.i > known.incarnation
      ? this.wireMember(known, this.clock.now())
      : undefined
    try {
      // Merge first, so the answer already carries our refutation if the caller thought us dead:
      // that is what lets two halves of a healed split accept each other in one exchange.
      tombstoned = this.mergeState(msg.members)
    } catch (err) {
      this.log.debug({ err, from }, 'push-pull merge failed')
    }
    this.mergeDelegateState(body, msg.join, from)
    this.count(this.counters.messagesSent, METHOD_PUSH_PULL)
    const page = this.statePage(from, undefined, msg.pg === true)
    this.tellTombstoned(page.members, tombstoned)
    const out: PushPullBody = { v: MEMBERSHIP_PROTOCOL_VERSION, members: page.members }
    if (msg.pg === true) out.pg = true
    if (page.next !== undefined) out.next = page.next
    const d = this.delegateState(msg.join)
    if (d !== undefined) out.d = d
    if (before !== undefined) out.p = before
    return out
  }

  /** A continuation of a paged exchange: merge the caller's page, answer with our next (PushPullMsg). */
  private onPushPullPage (msg: PushPullMsg, from: PeerId): PushPullBody {
    let tombstoned: PeerId[] = []
    try {
      tombstoned = this.mergeState(msg.members)
    } catch (err) {
      this.log.debug({ err, from }, 'push-pull merge failed')
    }
    this.count(this.counters.messagesSent, METHOD_PUSH_PULL)
    const page = msg.after !== undefined ? this.statePage(from, msg.after, true) : { members: [] as WireMember[] }
    this.tellTombstoned(page.members, tombstoned)
    const out: PushPullBody = { v: MEMBERSHIP_PROTOCOL_VERSION, members: page.members, pg: true }
    if (page.next !== undefined) out.next = page.next
    return out
  }

  /**
   * Members the caller holds alive but we reaped as dead: tell it, so it suspects them and they
   * refute with an incarnation we accept (healing after a split longer than deadReapMs).
   */
  private tellTombstoned (members: WireMember[], tombstoned: PeerId[]): void {
    for (const id of tombstoned) {
      if (members.length >= this.opts.maxPushPullMembers) break
      const t = this.tombstones.get(id)
      if (t !== undefined) members.push({ id, i: t.incarnation, s: 'dead', a: [], m: {} })
    }
  }

  /** The delegate's state for a push-pull message, or undefined (no delegate, failure, too big). */
  private delegateState (join: boolean): unknown {
    if (this.delegate === undefined) return undefined
    let d: unknown
    try {
      d = this.delegate.localState(join)
    } catch (err) {
      this.log.warn({ err }, 'push-pull delegate localState failed; sending membership only')
      return undefined
    }
    if (d === undefined) return undefined
    const size = stateSize(d, this.opts.delegateStateMaxBytes)
    if (size > this.opts.delegateStateMaxBytes) {
      this.log.warn({ limit: this.opts.delegateStateMaxBytes }, 'push-pull delegate state over the size limit (or not plain data); not sent')
      return undefined
    }
    return d
  }

  /** Hands a received `d` to the delegate, bounded; failures are logged, never thrown. */
  private mergeDelegateState (body: unknown, join: boolean, from: string): void {
    if (this.delegate === undefined || body === null || typeof body !== 'object') return
    const d = (body as { d?: unknown }).d
    if (d === undefined) return
    if (stateSize(d, this.opts.delegateStateMaxBytes) > this.opts.delegateStateMaxBytes) {
      this.drop(METHOD_PUSH_PULL, from, 'push-pull delegate state over the size limit; ignored')
      return
    }
    try {
      this.delegate.mergeRemoteState(d, join)
    } catch (err) {
      this.log.warn({ err, from }, 'push-pull delegate mergeRemoteState failed')
    }
  }

  /**
   * memberlist mergeState: a remote 'dead' only makes us suspect, so anti-entropy cannot kill.
   * Unlike memberlist, members we never heard of are learned whatever their state: a peer that
   * restarts or joins while a member is dead must still know it and what it announced (placement
   * counts a dead member's partitions as held: without it, a restarted peer took its own stale
   * copy for the only one, and lost an acknowledged write in a Jepsen run).
   */
  private mergeState (remote: WireMember[]): PeerId[] {
    return this.ringBatch(() => this.mergeMembers(remote))
  }

  private mergeMembers (remote: WireMember[]): PeerId[] {
    const tombstoned: PeerId[] = []
    for (const r of remote) {
      if (r.id === this.self.id) this.notePreviousLife(r)
      else if (r.s !== 'alive' && !this.membersById.has(r.id)) {
        if (r.s === 'suspect') {
          // Alive as far as we know: our own probes decide, as for any member.
          if (!this.onAlive({ k: 'alive', id: r.id, i: r.i, a: r.a, m: r.m }, true)) tombstoned.push(r.id)
        } else {
          this.learnGone(r)
        }
        continue
      }
      switch (r.s) {
        case 'alive': if (!this.onAlive({ k: 'alive', id: r.id, i: r.i, a: r.a, m: r.m }, true)) tombstoned.push(r.id); break
        case 'left': this.onDead(r.r === true ? { k: 'left', id: r.id, i: r.i, f: r.id, r: true } : { k: 'left', id: r.id, i: r.i, f: r.id }); break
        case 'dead':
        case 'suspect': this.onSuspect({ k: 'suspect', id: r.id, i: r.i, f: this.self.id }); break
      }
    }
    return tombstoned
  }

  /**
   * A dead or left member heard of first in a push-pull state: added as the sender holds it, dated
   * as the sender saw it go (`t`), never gossiped (it is news to nobody but us). A reaped one stays
   * forgotten unless this incarnation is newer than its tombstone, as for an alive update.
   */
  private learnGone (r: WireMember): void {
    const tomb = this.tombstones.get(r.id)
    if (tomb !== undefined && (r.i <= tomb.incarnation || this.jumpTooFar({ k: r.s, id: r.id, i: r.i }, tomb.incarnation))) return
    const metaBytes = checkAliveDetail(r.a, r.m, this.opts.metaMaxBytes)
    if (metaBytes < 0) { this.drop(METHOD_PUSH_PULL, r.id, 'invalid addrs or oversize meta of a gone member'); return }
    const state: MemberState = r.s === 'left' ? 'left' : 'dead'
    // No older than the reap horizon: an older one is reaped at the next tick, as the sender will.
    const ageMs = Math.min(r.t ?? 0, state === 'left' ? this.opts.leftReapMs : this.opts.deadReapMs)
    this.tombstones.delete(r.id)
    const m = new Member(this.record(r.id, r.i, r.a, r.m, metaBytes), state, this.now() - ageMs)
    if (state === 'left' && r.r === true) m.removed = true
    this.addMember(m)
    this.emit(state, m)
  }

  /**
   * Keeps the newest announcement of an earlier life of ours that a push-pull answer carried.
   * Incarnations below the one this life started at are earlier lives (see IncarnationStore);
   * at an equal incarnation, the earliest death heard is kept (the most cautious date).
   */
  private notePreviousLife (r: WireMember): void {
    if (r.i >= this.lifeStartIncarnation) return
    const goneAt = r.s === 'dead' || r.s === 'left' ? this.clock.now() - (r.t ?? 0) : undefined
    const p = this.previous
    if (p !== undefined && (r.i < p.incarnation || (r.i === p.incarnation && (goneAt === undefined || (p.goneAt !== undefined && p.goneAt <= goneAt))))) return
    this.previous = { incarnation: r.i, meta: r.m, state: r.s, restartedAt: this.restartedAt }
    if (goneAt !== undefined) this.previous.goneAt = goneAt
  }

  private pushPullTick (): void {
    if (this.leaving) return
    const [peer] = this.randomMembers(1, m => m.state === 'alive')
    if (peer === undefined) return
    this.pushPull(peer, false).catch(err => { this.log.debug({ err, peer: peer.id }, 'anti-entropy push-pull failed') })
  }

  /** Members declared dead (not left): what a reconnect tick may knock on. O(members), once a period. */
  private deadCount (): number {
    if (this.deadOrLeftCount === 0) return 0
    let n = 0
    for (const m of this.memberList) if (m.state === 'dead') n++
    return n
  }

  /** Serf's reconnect: keep knocking on a dead member (and the bootstrap) so full splits heal. */
  private reconnectTick (): void {
    if (this.leaving) return
    const now = this.clock.now()
    for (const [id, at] of this.deadNoticedAt) if (now - at >= this.opts.probeIntervalMs) this.deadNoticedAt.delete(id)
    // A bootstrap address not yet answered (its peer was still starting when we joined): its
    // side of the cluster may know members ours does not.
    if (!this.joinSettled()) {
      const pending = [...this.unanswered.values()]
      const { addr } = pending[this.random.int(pending.length)]!
      this.pushPull(addr, false).then(() => { this.noteJoinAnswer(addr, true) }, err => {
        this.noteJoinAnswer(addr, false)
        this.log.debug({ err, addr: addrLabel(addr) }, 'bootstrap reconnect failed')
      })
    }
    // Serf's throttle: knock with probability dead / alive, so the cluster as a whole tries about
    // one dead member a period, not one per peer (10,000 peers with one dead member sent it, and
    // the bootstrap addresses, 10,000 push-pulls of the whole member table every period). A full
    // split (half dead on each side) still knocks from every peer.
    const dead = this.deadCount()
    const knock = dead > 0 && this.random.next() < Math.min(1, dead / Math.max(1, this.liveCount - 1))
    if (knock) {
      this.counters.reconnects++
      const [peer] = this.randomMembers(1, m => m.state === 'dead')
      if (peer !== undefined) {
        this.pushPull(peer, false).catch(err => { this.log.debug({ err, peer: peer.id }, 'reconnect push-pull failed') })
      }
    }
    if (this.bootstrap.length > 0 && (knock || this.liveCount <= 1)) {
      const b = this.bootstrap[this.random.int(this.bootstrap.length)]!
      if (b.id === undefined || this.membersById.get(b.id)?.state !== 'alive') {
        this.pushPull(b, false).catch(err => { this.log.debug({ err, addr: addrLabel(b) }, 'bootstrap reconnect failed') })
      }
    }
  }

  // ---------------------------------------------------------------- state machine

  /**
   * Applies a batch; returns true when it held a suspicion or death of ours below our incarnation
   * once applied: one we refuted before (the sender missed the refutation) or just now. Either way
   * the sender holds us wrongly, and the caller tells it directly.
   */
  private applyUpdates (updates: WireUpdate[]): boolean {
    let wrongAboutSelf = false
    for (const u of updates) {
      switch (u.k) {
        case 'alive': this.onAlive(u); break
        case 'suspect': this.onSuspect(u); break
        case 'dead':
        case 'left': this.onDead(u); break
      }
      if (u.id === this.self.id && (u.k === 'suspect' || u.k === 'dead') && u.i < this.self.incarnation && !this.leaving) wrongAboutSelf = true
    }
    return wrongAboutSelf
  }

  /**
   * `viaPushPull`: a member first heard of in a push-pull state is not re-gossiped. It announces
   * itself (start() queues its own alive), and the peer we pulled from gossiped it when it learned
   * of it; re-gossiping every joiner's full state download is what makes N simultaneous joins cost
   * O(N² log N) messages in memberlist. State changes of known members are still re-gossiped: that
   * is anti-entropy repairing a missed update. Returns false when a tombstone rejected it.
   */
  private onAlive (u: WireUpdate, viaPushPull = false): boolean {
    const addrs = u.a ?? []
    const meta = u.m ?? {}
    if (u.id === this.self.id) {
      // Only we issue our incarnations; a higher one is an echo of a previous life: outbid it. So
      // is an equal one that says something else (memberlist does the same): a previous life
      // that used this number with other meta or addresses, if our incarnation was lost.
      if (this.leaving || this.jumpTooFar(u, this.self.incarnation)) return true
      if (u.i > this.self.incarnation ||
          (u.i === this.self.incarnation && (!sameStrings(addrs, this.self.addrs) || JSON.stringify(meta) !== JSON.stringify(this.self.meta)))) this.refute(u.i)
      return true
    }
    const m = this.membersById.get(u.id)
    if (m === undefined) {
      const tomb = this.tombstones.get(u.id)
      // A reaped member comes back only with an incarnation it issued after its death.
      if (tomb !== undefined && u.i <= tomb.incarnation) return false
      if (tomb !== undefined && this.jumpTooFar(u, tomb.incarnation)) return true
      const metaBytes = checkAliveDetail(addrs, meta, this.opts.metaMaxBytes)
      if (metaBytes < 0) { this.drop('alive', u.id, 'invalid addrs or oversize meta'); return true }
      this.tombstones.delete(u.id)
      const nm = new Member(this.record(u.id, u.i, addrs, meta, metaBytes), 'alive', this.now())
      this.addMember(nm)
      this.emit('join', nm)
      if (!viaPushPull) this.broadcast(u, metaBytes)
      return true
    }
    // Equal incarnation carries nothing new; for a dead or left member it is a stale echo from a
    // third party and must not revive it.
    if (u.i <= m.incarnation || this.jumpTooFar(u, m.incarnation)) return true
    const metaBytes = checkAliveDetail(addrs, meta, this.opts.metaMaxBytes)
    if (metaBytes < 0) { this.drop('alive', u.id, 'invalid addrs or oversize meta'); return true }
    const prev = m.state
    const changed = !sameStrings(m.addrs, addrs) || JSON.stringify(m.meta) !== JSON.stringify(meta)
    m.rec = this.record(m.id, u.i, addrs, meta, metaBytes)
    // Back with an incarnation of its own after being removed: a member like any other again.
    m.removed = false
    m.suspicion?.cancel()
    m.suspicion = undefined
    if (prev !== 'alive') {
      this.setState(m, 'alive')
      if (prev === 'suspect') this.counters.suspicionsRefuted++
      this.emit(prev === 'suspect' ? 'alive' : 'join', m)
    } else if (changed) {
      this.emit('update', m)
    }
    this.broadcast(u, m.metaBytes)
    return true
  }

  private onSuspect (u: WireUpdate): void {
    const m = this.membersById.get(u.id)
    if (m === undefined || u.i < m.incarnation || this.jumpTooFar(u, m.incarnation)) return
    if (m === this.self) {
      if (!this.leaving) this.refute(u.i)
      return
    }
    if (m.state === 'dead' || m.state === 'left') return
    if (m.state === 'suspect') {
      // Another member's independent suspicion shortens the timeout (Lifeguard); pass it on.
      if (u.f !== undefined && m.suspicion?.confirm(u.f) === true) this.broadcast(u, 0)
      return
    }
    m.rec = this.record(m.id, u.i, m.addrs, m.meta, m.metaBytes)
    this.setState(m, 'suspect')
    const n = this.liveCount
    // Lifeguard's K, bounded by who else could confirm (neither the suspect nor the accuser).
    const k = this.opts.suspicionConfirmations
    const expected = n - 2 < k ? 0 : k
    const minMs = suspicionMinMs(this.opts.suspicionMult, n, this.opts.probeIntervalMs, this.opts.suspicionMinScale)
    const maxMs = this.opts.suspicionMaxTimeoutMult * minMs
    const inc = u.i
    const stillSuspect = (): boolean => this.running && m.state === 'suspect' && m.incarnation === inc && this.membersById.get(m.id) === m
    const declare = (confirmations: number): void => {
      this.log.debug({ member: m.id, confirmations }, 'suspicion timed out: marking dead')
      this.counters.deathsDeclared++
      this.onDead({ k: 'dead', id: m.id, i: inc, f: this.self.id })
    }
    m.suspicion = new Suspicion(this.clock, u.f ?? this.self.id, expected, minMs, maxMs, (confirmations, lateMs) => {
      if (!stillSuspect()) return
      if (lateMs >= this.opts.lagThresholdMs) {
        // Our timer fired late: this peer was stalled (a GC pause, a blocked loop), and whatever
        // reached it meanwhile, a refutation among it, is not read yet: after a stall Node runs
        // due timers before it reads sockets. Read first, and ask the member ourselves (the
        // buddy system makes a live one refute); decide one probe interval later.
        this.counters.lateSuspicionsRechecked++
        this.probe(m)
        this.after(this.opts.probeIntervalMs, () => { if (stillSuspect()) declare(confirmations) })
        return
      }
      declare(confirmations)
    })
    this.emit('suspect', m)
    this.broadcast(u, 0)
    if (u.f !== this.self.id) {
      // A lone suspicion we only heard of may be one whose refutation's gossip missed us (it
      // happens: each peer gets ~λ·log N copies, and 0 has a small but real chance). If it is
      // still unconfirmed halfway to the minimum timeout, probe the member ourselves: the buddy
      // suspicion on our ping makes it answer with its current incarnation.
      this.after(minMs / 2, () => {
        if (m.state === 'suspect' && m.incarnation === inc && m.suspicion?.confirmations === 0 && !this.leaving &&
            this.membersById.get(m.id) === m) this.probe(m)
      })
    }
  }

  private onDead (u: WireUpdate): void {
    const m = this.membersById.get(u.id)
    if (m === undefined || u.i < m.incarnation || this.jumpTooFar(u, m.incarnation)) return
    if (m === this.self) {
      if (!this.leaving) this.refute(u.i)
      return
    }
    const next: MemberState = u.k === 'left' ? 'left' : 'dead'
    const removing = next === 'left' && u.r === true && !m.removed
    if ((m.state === 'left' && !removing) || (m.state === 'dead' && next === 'dead')) return
    m.rec = this.record(m.id, u.i, m.addrs, m.meta, m.metaBytes)
    m.suspicion?.cancel()
    m.suspicion = undefined
    if (removing) m.removed = true
    this.setState(m, next)
    this.emit(next, m)
    this.broadcast(u, 0)
  }

  /**
   * An operator removes a member that is gone (dead, or left) on its behalf, as Consul's
   * force-leave does: it becomes 'left' with `removed` at its current incarnation, and that
   * spreads like any leave (gossip, then push-pull). Layers above read `removed` as "forget what
   * it held" (placement stops waiting for its data). Only the member can raise its incarnation,
   * so if it is in fact alive, or comes back later, it refutes with a higher one and rejoins.
   * Throws for an unknown member, this peer, or one not dead or left here.
   */
  forceRemove (id: PeerId): MemberInfo {
    const m = this.membersById.get(id)
    if (m === undefined) throw new RangeError(`unknown member ${id}`)
    if (m === this.self) throw new RangeError('a peer cannot remove itself')
    if (m.state !== 'dead' && m.state !== 'left') throw new RangeError(`member ${id} is ${m.state}, not dead`)
    if (!m.removed) this.onDead({ k: 'left', id, i: m.incarnation, f: this.self.id, r: true })
    return snapshot(m)
  }

  private refute (incarnation: number): void {
    this.useIncarnation(Math.max(this.self.incarnation, incarnation) + 1)
    // Lifeguard: having to refute is a sign that we are the slow one.
    this.awareness.apply(1)
    this.broadcast(this.aliveUpdate(this.self), this.self.metaBytes)
    this.pullAfterRefuting()
  }

  /**
   * Someone held us suspect or dead: we were cut off or stalled, so we have likely missed gossip
   * too (other members' refutations among it, whose copies are spent by now). One push-pull with
   * a random alive member brings the current state at once rather than at the next anti-entropy
   * period (30 s): after a cut healed, a peer held one member dead 15 s after everyone else had it
   * alive again. At most one such pull every REFUTE_PULL_INTERVALS probe intervals.
   */
  private pullAfterRefuting (): void {
    const now = this.clock.now()
    if (this.leaving || now - this.lastRefutePullAt < REFUTE_PULL_INTERVALS * this.opts.probeIntervalMs) return
    const [peer] = this.randomMembers(1, m => m.state === 'alive')
    if (peer === undefined) return
    this.lastRefutePullAt = now
    this.counters.refutePulls++
    this.pushPull(peer, false).catch(err => { this.log.debug({ err, peer: peer.id }, 'push-pull after a refutation failed') })
  }

  /**
   * Every change of our own incarnation goes through here: above the saved ceiling, a new one is
   * saved first (see IncarnationStore). A failed save after start is logged and the incarnation
   * used anyway: refusing to refute would get this peer declared dead, which is worse than the
   * restart case the store protects (and that refutation still heals at the next push-pull).
   */
  private useIncarnation (next: number, starting = false): void {
    if (next > this.incarnationCeiling && this.incarnations !== undefined) {
      const ceiling = next + INCARNATION_LEASE
      try {
        this.incarnations.save(ceiling)
        this.incarnationCeiling = ceiling
      } catch (err) {
        if (starting) throw err
        this.log.error({ err, incarnation: next }, 'could not save the incarnation ceiling; a restart may start below this incarnation')
      }
    }
    const s = this.self
    s.rec = this.record(s.id, next, s.addrs, s.meta, s.metaBytes)
  }

  /** A member's record: shared with the other views of this process when there is a pool (member.ts). */
  private record (id: PeerId, incarnation: number, addrs: string[], meta: MemberMeta, metaBytes: number): MemberRecord {
    return this.records !== undefined ? this.records.intern(id, incarnation, addrs, meta, metaBytes) : { id, incarnation, addrs, meta, metaBytes }
  }

  /** clock.now() in whole ms, as members' stateChangedAt keeps it (an integer is stored inline; a fraction costs a heap number per member). */
  private now (): number { return Math.floor(this.clock.now()) }

  private setState (m: Member, state: MemberState): void {
    if (m.state === state) return
    if (isLive(m.state)) this.liveCount--
    else this.deadOrLeftCount--
    if (isLive(state)) this.liveCount++
    else this.deadOrLeftCount++
    if (m !== this.self && isLive(m.state) !== isLive(state)) {
      if (isLive(state)) this.ringAdd(m.id)
      else this.ringRemove(m.id)
    }
    m.state = state
    m.stateChangedAt = this.now()
  }

  private addMember (m: Member): void {
    this.stateCache?.added.push(m)
    this.membersById.set(m)
    m.slot = this.memberList.length
    this.memberList.push(m)
    if (isLive(m.state)) this.liveCount++
    else this.deadOrLeftCount++
    if (isLive(m.state)) this.ringAdd(m.id)
  }

  private removeMember (m: Member): void {
    this.stateCache = undefined
    this.membersById.delete(m.id)
    assert(this.memberList[m.slot] === m, 'a member is at its slot in memberList')
    const last = this.memberList.pop()!
    if (last !== m) { this.memberList[m.slot] = last; last.slot = m.slot }
    m.slot = -1
    if (isLive(m.state)) this.liveCount--
    else this.deadOrLeftCount--
    if (isLive(m.state)) this.ringRemove(m.id)
    m.suspicion?.cancel()
    this.records?.forget(m.id)
  }

  private reapTick (): void {
    const now = this.clock.now()
    const gone: Member[] = []
    for (const m of this.membersById.values()) {
      if (m === this.self) continue
      if ((m.state === 'dead' && now - m.stateChangedAt >= this.opts.deadReapMs) ||
          (m.state === 'left' && now - m.stateChangedAt >= this.opts.leftReapMs)) gone.push(m)
    }
    if (this.deadOrLeftCount - gone.length > this.opts.maxDeadMembers) {
      const rest = [...this.membersById.values()]
        .filter(m => m !== this.self && !isLive(m.state) && !gone.includes(m))
        .sort((a, b) => a.stateChangedAt - b.stateChangedAt)
      gone.push(...rest.slice(0, this.deadOrLeftCount - gone.length - this.opts.maxDeadMembers))
    }
    for (const m of gone) {
      this.removeMember(m)
      this.tombstones.delete(m.id)
      this.tombstones.set(m.id, { incarnation: m.incarnation, at: now })
      this.emit('reaped', m)
    }
    // Insertion order is age order: drop expired and over-the-bound tombstones from the front.
    for (const [id, t] of this.tombstones) {
      if (this.tombstones.size > this.opts.maxTombstones || now - t.at >= this.opts.tombstoneTtlMs) this.tombstones.delete(id)
      else break
    }
  }

  // ---------------------------------------------------------------- plumbing

  /** Up to k distinct random members (not self) passing `filter`, memberlist kRandomNodes style. */
  private randomMembers (k: number, filter: (m: Member) => boolean): Member[] {
    const out: Member[] = []
    const n = this.memberList.length
    if (n === 0 || k <= 0) return out
    if (n <= 3 * k + 8) {
      // Small cluster: an exact pick from a shuffled copy.
      for (const m of shuffle(this.memberList.slice(), this.random)) {
        if (filter(m)) { out.push(m); if (out.length >= k) break }
      }
      return out
    }
    for (let tries = 0; tries < 3 * n && out.length < k && tries < 64 * k; tries++) {
      const m = this.memberList[this.random.int(n)]!
      if (!out.includes(m) && filter(m)) out.push(m)
    }
    return out
  }

  private nextSeq (): number {
    this.seq = this.seq >= Number.MAX_SAFE_INTEGER ? 1 : this.seq + 1
    return this.seq
  }

  private replyAddr (from: PeerId, src: string[] | undefined): PeerAddress {
    const known = this.membersById.get(from)
    return { id: from, addrs: src !== undefined && src.length > 0 ? src : known?.addrs ?? [] }
  }

  private sendTo (to: PeerAddress, method: string, body: object): void {
    this.count(this.counters.messagesSent, method)
    try {
      // Every message says which version of the wire format it is in (wire.ts, compatibility).
      this.transport.send(to.addrs === undefined ? { id: to.id, addrs: [] } : { id: to.id, addrs: to.addrs }, method, { v: MEMBERSHIP_PROTOCOL_VERSION, ...body })
    } catch (err) {
      this.log.debug({ err, to: to.id, method }, 'send failed')
    }
  }

  private guard (method: string, from: PeerId, fn: () => void): void {
    if (!this.running) return
    this.count(this.counters.messagesReceived, method)
    try { fn() } catch (err) {
      this.counters.messagesDropped++
      this.log.debug({ err, from, method }, 'swim handler failed; message dropped')
    }
  }

  /** True (refused, counted, logged) when `u` would raise the incarnation `known` by more than MAX_INCARNATION_JUMP. */
  private jumpTooFar (u: WireUpdate, known: number): boolean {
    if (u.i - known <= MAX_INCARNATION_JUMP) return false
    const n = ++this.counters.incarnationJumpsRefused
    if (n <= 10 || n % 1000 === 0) {
      this.log.warn({ member: u.id, kind: u.k, incarnation: u.i, known, refused: n }, 'membership update refused: it raises an incarnation by more than 2^42')
    }
    return true
  }

  private drop (method: string, from: PeerId, reason = 'malformed message'): void {
    this.counters.messagesDropped++
    this.log.debug({ from, method }, reason)
  }

  private count (into: Record<string, number>, key: string): void {
    into[key] = (into[key] ?? 0) + 1
  }

  private emit (type: MemberEventType, m: Member): void {
    if (this.listeners.size === 0) return
    const ev: MemberEvent = { type, member: snapshot(m) }
    for (const l of this.listeners) {
      try { l(ev) } catch (err) { this.log.error({ err, type }, 'membership listener failed') }
    }
  }
}

function snapshot (m: Member): MemberInfo {
  const out: MemberInfo = { id: m.id, addrs: m.addrs.slice(), meta: m.meta, state: m.state, incarnation: m.incarnation, stateChangedAt: m.stateChangedAt }
  if (m.removed && m.state === 'left') out.removed = true
  return out
}
