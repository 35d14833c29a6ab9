/**
 * The partition detector: is this peer on the majority side of the last stable cluster, and which
 * replicas can it reach? See index.ts for the overview.
 */
import type { Clock, Logger, PeerId, Timer } from '../runtime/index.js'
import type { MemberEvent, MemberInfo } from '../membership/index.js'

/** The part of membership the detector reads (Swim satisfies it). */
export interface MembershipView {
  readonly localPeerId: PeerId
  members(): MemberInfo[]
  /** Optional O(1) lookup; without it the detector indexes members() (cached between changes). */
  member?(id: PeerId): MemberInfo | undefined
  onChange(listener: (ev: MemberEvent) => void): () => void
}

export interface PartitionDetectorOptions {
  /**
   * The view must be unchanged this long before its non-left members become the new stable
   * cluster. ms, default 10000 (Shoal: longer than a join burst or a refuted suspicion takes to
   * settle at the default 1 s probe interval, short enough that a grown cluster counts soon).
   */
  stableWindowMs?: number
}

export interface PartitionStatus {
  /** reachable > stableClusterSize / 2. */
  majority: boolean
  /** Members of the stable cluster this peer can reach (self, alive and suspect). */
  reachable: number
  stableClusterSize: number
  /** Dead members, and members of the stable cluster no longer known. */
  unreachable: PeerId[]
  /** Suspect members (still counted reachable). */
  suspect: PeerId[]
}

export type PartitionEvent =
  | { type: 'majority-lost', status: PartitionStatus }
  | { type: 'majority-regained', status: PartitionStatus }
  | { type: 'reachability', peerId: PeerId, reachable: boolean }

export const DEFAULT_STABLE_WINDOW_MS = 10_000

function reachableState (m: MemberInfo | undefined): boolean {
  return m !== undefined && (m.state === 'alive' || m.state === 'suspect')
}

export class PartitionDetector {
  private readonly membership: MembershipView
  private readonly clock: Clock
  private readonly log: Logger
  private readonly stableWindowMs: number
  private stable = new Set<PeerId>()
  private stableTimer: Timer | undefined
  private unsubscribe: (() => void) | undefined
  private lastMajority = true
  private readonly reachable = new Map<PeerId, boolean>()
  private readonly listeners = new Set<(ev: PartitionEvent) => void>()
  private indexCache: Map<PeerId, MemberInfo> | undefined

  constructor (deps: { membership: MembershipView, clock: Clock, log: Logger }, opts: PartitionDetectorOptions = {}) {
    this.membership = deps.membership
    this.clock = deps.clock
    this.log = deps.log
    this.stableWindowMs = opts.stableWindowMs ?? DEFAULT_STABLE_WINDOW_MS
    if (!(this.stableWindowMs >= 0)) throw new RangeError('stableWindowMs must be >= 0')
    this.commitStable(this.membership.members())
  }

  start (): void {
    if (this.unsubscribe !== undefined) return
    this.unsubscribe = this.membership.onChange(ev => { this.onMemberEvent(ev) })
    const members = this.membership.members()
    this.commitStable(members)
    this.refresh(members)
  }

  stop (): void {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.indexCache = undefined
    this.stableTimer?.cancel()
    this.stableTimer = undefined
  }

  onChange (listener: (ev: PartitionEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** The stable cluster's members, self included. */
  stableCluster (): PeerId[] { return [...this.stable] }

  status (): PartitionStatus {
    return this.compute(this.membership.members())
  }

  isReachable (peerId: PeerId): boolean {
    if (peerId === this.membership.localPeerId) return true
    return reachableState(this.lookup(peerId))
  }

  /** True when at least `needed` of `replicas` (duplicates counted once) are reachable from here. */
  quorumReachable (replicas: readonly PeerId[], needed: number): boolean {
    if (needed <= 0) return true
    let n = 0
    for (const r of new Set(replicas)) {
      if (this.isReachable(r)) n++
      if (n >= needed) return true
    }
    return false
  }

  anyReachable (replicas: readonly PeerId[]): boolean {
    return this.quorumReachable(replicas, 1)
  }

  private lookup (id: PeerId): MemberInfo | undefined {
    if (this.membership.member !== undefined) return this.membership.member(id)
    // Cached between membership events while started; rebuilt on every call otherwise.
    let index = this.indexCache
    if (index === undefined) {
      index = new Map<PeerId, MemberInfo>()
      for (const m of this.membership.members()) index.set(m.id, m)
      if (this.unsubscribe !== undefined) this.indexCache = index
    }
    return index.get(id)
  }

  private compute (members: MemberInfo[]): PartitionStatus {
    const self = this.membership.localPeerId
    const byId = new Map<PeerId, MemberInfo>()
    for (const m of members) byId.set(m.id, m)
    let reachable = 0
    const unreachable: PeerId[] = []
    const suspect: PeerId[] = []
    for (const id of this.stable) {
      if (id === self || reachableState(byId.get(id))) reachable++
      else unreachable.push(id)
    }
    // Self is always in the cluster it reasons about, even before the first stable point.
    const size = this.stable.has(self) ? this.stable.size : this.stable.size + 1
    if (!this.stable.has(self)) reachable++
    for (const m of members) {
      if (m.state === 'suspect') suspect.push(m.id)
      else if (m.state === 'dead' && !this.stable.has(m.id)) unreachable.push(m.id)
    }
    return { majority: reachable > size / 2, reachable, stableClusterSize: size, unreachable, suspect }
  }

  private onMemberEvent (ev: MemberEvent): void {
    this.indexCache = undefined
    // A meta update does not change who is reachable.
    if (ev.type === 'update') return
    if (ev.type === 'left' || ev.type === 'reaped') {
      // A graceful leave, or a dead member finally forgotten, no longer counts against us.
      this.stable.delete(ev.member.id)
    }
    this.stableTimer?.cancel()
    this.stableTimer = this.clock.setTimer(this.stableWindowMs, () => {
      this.stableTimer = undefined
      const members = this.membership.members()
      this.commitStable(members)
      this.refresh(members)
    })
    this.refresh(this.membership.members())
  }

  private commitStable (members: MemberInfo[]): void {
    const next = new Set<PeerId>()
    for (const m of members) if (m.state !== 'left') next.add(m.id)
    next.add(this.membership.localPeerId)
    this.stable = next
  }

  private refresh (members: MemberInfo[]): void {
    const self = this.membership.localPeerId
    for (const m of members) {
      if (m.id === self) continue
      const now = reachableState(m)
      const before = this.reachable.get(m.id)
      if (before !== now) {
        this.reachable.set(m.id, now)
        if (before !== undefined || !now) this.emit({ type: 'reachability', peerId: m.id, reachable: now })
      }
    }
    const present = new Set(members.map(m => m.id))
    for (const [id, was] of this.reachable) {
      if (!present.has(id)) {
        this.reachable.delete(id)
        if (was) this.emit({ type: 'reachability', peerId: id, reachable: false })
      }
    }
    const status = this.compute(members)
    if (status.majority !== this.lastMajority) {
      this.lastMajority = status.majority
      // At warn either way: an operator watching for the loss needs to see the recovery too.
      this.log.warn({ ...status }, status.majority ? 'majority regained' : 'majority lost: this peer is on the minority side and refuses what needs a majority')
      this.emit({ type: status.majority ? 'majority-regained' : 'majority-lost', status })
    }
  }

  private emit (ev: PartitionEvent): void {
    for (const l of this.listeners) {
      try { l(ev) } catch (err) { this.log.error({ err }, 'partition listener failed') }
    }
  }
}
