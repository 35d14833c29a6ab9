/**
 * Where partitions live: rendezvous (HRW) hashing over the placement members, plus the readiness
 * every peer announces in its membership meta, which decides who may serve reads while ownership
 * moves. See index.ts for the overview.
 *
 * Placement members are the alive, suspect AND dead members (not left ones). A dead member keeps
 * its partitions, as a down node keeps its token range in Cassandra: if unreachable members
 * dropped out, a peer cut off from the rest would own every partition alone and accept QUORUM
 * writes by itself, and both sides of a split would do so. Replication hints writes for the
 * unreachable owner and the partition detector makes quorums fail fast. Only a peer on the
 * majority side drops a member that has been dead for deadOwnerTimeoutMs; its partitions then
 * move to live peers, which catch up from the remaining replicas.
 *
 * Ownership and data are apart, though (issue 13): a member that stops owning still holds what it
 * held. "Fresh" (nothing to catch up from, the owners are ready at once) means that no member in
 * the list, alive, suspect, dead (expired or not) or left, has announced the partition ready or
 * returning (restarted holding data of it: meta `back`). When the only announcements are
 * returning ones (every holder restarted), it has no read replicas and an owner becomes ready
 * only once it has taken in every returning copy and every other owner's (`returning`).
 * When every member that did is gone (expired dead, or left), the partition is unavailable, not
 * fresh: those members stay its read replicas, unreachable, so reads answer 503 naming it,
 * queries list it missing, and the new owners, whose catch-up cannot reach them, stay not ready.
 * It comes back when a holder does, or becomes fresh when an operator removes the holders on
 * purpose (Swim.forceRemove: state 'left' with `removed`), which gives up their data.
 *
 * Decommission (issue 13): a member whose meta says `leaving` owns nothing, as a left one, but while
 * it is alive or suspect it still counts as a live holder of what it announced ready: its
 * partitions' new owners catch up from it (it is their read replica until they are ready, and a
 * write replica beside them), exactly as when a join moves ownership, and it releases each
 * partition once its owners are ready. Then it leaves membership having handed everything off.
 */
import type { MemberEvent, MemberInfo, MemberMeta, PreviousLife } from '../membership/index.js'
import type { Clock, Logger, PeerAddress, PeerId, Timer } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { partitionKey, partitionOfId, rendezvous } from './hash.js'
import { LEAVING_META_KEY, READY_META_KEY, RETURNING_META_KEY, decodeReady, encodeReady } from './ready.js'
import type { PartitionPlacement, Placement, SelfSource, SpaceCatalog } from './types.js'

/** What placement reads from membership (Swim implements it). */
export interface PlacementMembership {
  readonly localPeerId: PeerId
  members(): MemberInfo[]
  member(id: PeerId): MemberInfo | undefined
  localMember(): MemberInfo
  onChange(listener: (ev: MemberEvent) => void): () => void
  updateMeta(meta: MemberMeta): void
  /** What the cluster knew of this peer before it restarted (Swim.previousLife); none: never a returning holder. */
  previousLife?(): PreviousLife | undefined
}

export interface PlacementOptions {
  /** Readiness changes reach membership meta at most once per this period. ms, default 200. */
  readyDebounceMs?: number
  /** Warn when this peer's meta grows past this (membership refuses meta over its metaMaxBytes, 4 KiB by default). bytes, default 3072. */
  metaWarnBytes?: number
  /** At most this many cached placements; the cache is cleared when it grows past. Default 200000. */
  maxCachedPlacements?: number
  /**
   * A member dead this long stops owning partitions, if this peer is on the majority side. ms,
   * default 300000 (5 min: long enough that a restart or a short partition moves no data, short
   * enough that a lost machine's partitions are re-replicated the same hour).
   */
  deadOwnerTimeoutMs?: number
}

/** The defaults, and the options a config file's `placement` section may set (numbers all). */
export const DEFAULT_PLACEMENT_OPTIONS: Required<PlacementOptions> = Object.freeze({
  readyDebounceMs: 200,
  metaWarnBytes: 3072,
  maxCachedPlacements: 200_000,
  deadOwnerTimeoutMs: 300_000
})

export interface PlacementDeps {
  membership: PlacementMembership
  catalog: SpaceCatalog
  clock: Clock
  log: Logger
  /** Whether this peer is on the majority side (PartitionDetector); default: never drop dead owners. */
  isMajority?: () => boolean
  /**
   * Whether membership has synced with the cluster (Swim.hasSynced); default: always. Until it
   * has, no partition counts as fresh: a restarted peer that has not heard from the others must
   * not take its own old data for the only copy.
   */
  isSynced?: () => boolean
}

interface PeerReadiness { meta: MemberMeta, ready: Map<string, Set<number>>, back: Map<string, Set<number>> }

const EMPTY: ReadonlySet<number> = new Set()


export class PlacementService implements Placement {
  private readonly membership: PlacementMembership
  private readonly catalog: SpaceCatalog
  private readonly clock: Clock
  private readonly log: Logger
  private readonly debounceMs: number
  private readonly metaWarnBytes: number
  private readonly maxCached: number
  private readonly deadOwnerTimeoutMs: number
  private readonly isMajority: () => boolean
  private readonly isSynced: () => boolean
  private expiryTimer: Timer | undefined
  readonly localPeerId: PeerId

  /** Placement members, sorted; recomputed lazily after a membership event. */
  private live: PeerId[] = []
  /**
   * Members that own nothing but whose last announcement still counts (dead past the timeout, or
   * left without being removed), sorted: where a partition's data is when no live member holds it.
   */
  private gone: PeerId[] = []
  /**
   * Members that own nothing because they are decommissioning (meta `leaving`), alive or suspect,
   * this peer too when it is: their readiness counts like a live member's. Sorted.
   */
  private leaving: PeerId[] = []
  /** live and leaving together, sorted: the members whose ready partitions are live holders. */
  private holderCandidates: PeerId[] = []
  /** Whether this peer is decommissioning (setLeaving); announced in its meta as `leaving`. */
  private localLeaving = false
  private liveKey = ''
  private viewDirty = true
  private readonly readiness = new Map<PeerId, PeerReadiness>()
  /** This peer's ready partitions (authoritative here; meta follows after the debounce). */
  private readonly localReady = new Map<string, Set<number>>()
  /** Partitions this peer holds data of from before it started (claimed from its disk, or its previous life had them ready), not ready yet (meta `back`). */
  private readonly localReturning = new Map<string, Set<number>>()
  /** The replicas found on disk at start-up (claimReturning), until found empty or damaged. */
  private readonly startupClaims = new Map<string, Set<number>>()
  /**
   * Every partition each member has announced ready since this service started, kept when the
   * announcement is withdrawn (a restart replaces a member's meta): a member that was a holder
   * while this peer was back may hold writes this peer's copy lacks.
   */
  private readonly everReady = new Map<PeerId, Map<string, Set<number>>>()

  private readonly ownersCache = new Map<string, PeerId[]>()
  private readonly placementCache = new Map<string, PartitionPlacement>()

  private readonly listeners = new Set<() => void>()
  private notifyTimer: Timer | undefined
  private metaTimer: Timer | undefined
  private lastMetaAt = -Infinity
  private unsubscribe: Array<() => void> = []
  private running = false

  constructor (deps: PlacementDeps, opts: PlacementOptions = {}) {
    this.membership = deps.membership
    this.catalog = deps.catalog
    this.clock = deps.clock
    this.log = deps.log.child({ component: 'placement' })
    const o = { ...DEFAULT_PLACEMENT_OPTIONS, ...opts }
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isInteger(v) || v < (k === 'readyDebounceMs' ? 0 : 1)) throw new RangeError(`placement option ${k} must be ${k === 'readyDebounceMs' ? 'a non-negative' : 'a positive'} integer, got ${String(v)}`)
    }
    this.debounceMs = o.readyDebounceMs
    this.metaWarnBytes = o.metaWarnBytes
    this.maxCached = o.maxCachedPlacements
    this.deadOwnerTimeoutMs = o.deadOwnerTimeoutMs
    this.isMajority = deps.isMajority ?? (() => false)
    this.isSynced = deps.isSynced ?? (() => true)
    this.localPeerId = this.membership.localPeerId
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.viewDirty = true
    this.unsubscribe.push(this.membership.onChange(ev => {
      // Our own meta carries our readiness, which we already know: not a change.
      if (ev.type === 'update' && ev.member.id === this.localPeerId) return
      this.changed(true)
    }))
    this.unsubscribe.push(this.catalog.onChange(ev => {
      if (ev.type === 'dropped') {
        const ready = this.localReady.delete(ev.space.uid)
        this.startupClaims.delete(ev.space.uid)
        if (this.localReturning.delete(ev.space.uid) || ready) this.scheduleMeta()
      }
      this.ownersCache.clear()
      this.changed(false)
    }))
  }

  stop (): void {
    this.running = false
    for (const u of this.unsubscribe) u()
    this.unsubscribe = []
    this.notifyTimer?.cancel()
    this.notifyTimer = undefined
    this.metaTimer?.cancel()
    this.metaTimer = undefined
    this.expiryTimer?.cancel()
    this.expiryTimer = undefined
  }

  // ---------------------------------------------------------------- the contract

  partitionOf (space: SpaceDef, id: string): number {
    return partitionOfId(id, space.partitions)
  }

  locate (space: SpaceDef, partition: number): PartitionPlacement {
    this.checkPartition(space, partition)
    this.refresh()
    const key = partitionKey(space.uid, partition)
    const cached = this.placementCache.get(key)
    if (cached !== undefined) {
      if (cached.space === space) return cached
      const again = { ...cached, space }
      this.placementCache.set(key, again)
      return again
    }
    const owners = this.ownersOf(space, partition)
    const ownerSet = new Set(owners)
    const holders: PeerId[] = []
    for (const id of this.holderCandidates) if (this.readySet(id, space.uid).has(partition)) holders.push(id)
    // No live holder: the data is on members that own nothing any more (or nowhere).
    const goneHolders: PeerId[] = []
    if (holders.length === 0) for (const id of this.gone) if (this.readySet(id, space.uid).has(partition)) goneHolders.push(id)
    // Nobody has it ready, but members that restarted hold data of it (meta `back`): every holder's
    // announcement was replaced by a restart (a whole cluster restarted, or its holders one after
    // another). Their copies together are the partition; none of them alone is.
    const returning: PeerId[] = []
    if (holders.length === 0 && goneHolders.length === 0) {
      for (const id of [...this.holderCandidates, ...this.gone]) if (this.backSet(id, space.uid).has(partition)) returning.push(id)
    }
    // Fresh: no member at all has it ready or holds data of it (a new space, or its holders removed
    // by an operator): the owners are it. Holders that are merely gone, or restarted and not ready
    // yet, do not make it fresh: its owners would answer "not found" for every row they hold.
    const fresh = holders.length === 0 && goneHolders.length === 0 && returning.length === 0 && this.isSynced()
    const readyOwners = fresh ? owners : owners.filter(o => holders.includes(o))
    // The gone holders are read replicas nobody can reach: reads and QUORUM writes fail fast
    // naming the partition, and a new owner's catch-up, finding no reachable source, waits.
    const former = holders.length > 0 ? holders.filter(h => !ownerSet.has(h)) : goneHolders
    const formerOrdered = former.length > 1 ? rendezvous(former, key, former.length) : former
    const readReplicas = readyOwners.concat(formerOrdered).slice(0, owners.length + 2)
    const writeReplicas = owners.concat(readReplicas.filter(r => !ownerSet.has(r)))
    const n = readReplicas.length
    const placement: PartitionPlacement = {
      space,
      partition,
      owners: Object.freeze(owners) as PeerId[],
      writeReplicas: Object.freeze(writeReplicas) as PeerId[],
      readReplicas: Object.freeze(readReplicas) as PeerId[],
      quorum: n === 0 ? 0 : Math.floor(n / 2) + 1,
      fresh,
      returning: Object.freeze(returning.sort()) as PeerId[]
    }
    if (this.placementCache.size >= this.maxCached) this.placementCache.clear()
    this.placementCache.set(key, placement)
    return placement
  }

  addressOf (peerId: PeerId): PeerAddress | undefined {
    const m = this.membership.member(peerId)
    return m === undefined ? undefined : { id: m.id, addrs: m.addrs }
  }

  ownedPartitions (): Array<{ space: SpaceDef, partition: number }> {
    this.refresh()
    const out: Array<{ space: SpaceDef, partition: number }> = []
    const self = this.localPeerId
    for (const space of this.catalog.list()) {
      for (let p = 0; p < space.partitions; p++) {
        if (this.ownersOf(space, p).includes(self)) out.push({ space, partition: p })
      }
    }
    return out
  }

  /** ownedPartitions() has it: its space is the catalog's current one of that name, and this peer is among its owners. */
  owns (space: SpaceDef, partition: number): boolean {
    const current = this.catalog.get(space.name)
    if (current === undefined || current.uid !== space.uid || partition < 0 || partition >= current.partitions) return false
    return this.ownersOf(current, partition).includes(this.localPeerId)
  }

  markReady (space: SpaceDef, partition: number): void {
    this.checkPartition(space, partition)
    let set = this.localReady.get(space.uid)
    if (set === undefined) { set = new Set(); this.localReady.set(space.uid, set) }
    if (set.has(partition)) return
    set.add(partition)
    removeFrom(this.localReturning, space.uid, partition)
    this.placementCache.clear()
    this.scheduleMeta()
    this.notify()
  }

  markReleased (space: SpaceDef, partition: number): void {
    this.checkPartition(space, partition)
    const returning = removeFrom(this.localReturning, space.uid, partition)
    if (!removeFrom(this.localReady, space.uid, partition) && !returning) return
    this.placementCache.clear()
    this.scheduleMeta()
    this.notify()
  }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /**
   * Starts (or, with false, cancels) this peer's decommission: from now on it owns nothing, so
   * placement without it decides each partition's owners, here at once and on every other peer
   * once its meta (`leaving`) arrives; what it holds ready still counts, so the new owners catch
   * up from it. Replication hands each partition off (Replicator.handOff) before the peer leaves.
   */
  setLeaving (leaving: boolean): void {
    if (this.localLeaving === leaving) return
    this.localLeaving = leaving
    this.viewDirty = true
    this.ownersCache.clear()
    this.placementCache.clear()
    this.scheduleMeta()
    this.notify()
  }

  /** Whether this peer is decommissioning (setLeaving). */
  isLeaving (): boolean { return this.localLeaving }

  /**
   * Replication holds undamaged data of this partition from before this process started (found
   * on disk at start-up, or its previous life had it ready): it is announced as returning (meta
   * `back`) until it is ready again or released. Its copy holds every
   * write acknowledged by a quorum it was part of, which the others' catch-ups may need, and while
   * nobody has the partition ready it keeps the partition from passing for fresh (a restart
   * replaced every holder's announcement: a whole cluster restarted, or its holders one after
   * another). Whether its previous life had it ready matters only to selfAsSource.
   */
  markReturning (space: SpaceDef, partition: number): void {
    this.checkPartition(space, partition)
    if (this.localReady.get(space.uid)?.has(partition) === true) return
    // Only data from before this process started: writes taken in this life (an owner of a new
    // partition written to before its catch-up) are not a returning copy. Such data is what the
    // start-up claims found on disk, or what the previous life had ready.
    const prev = this.membership.previousLife?.()
    const prevReady = prev !== undefined && decodeReady(prev.meta[READY_META_KEY]).get(space.uid)?.has(partition) === true
    if (!prevReady && this.startupClaims.get(space.uid)?.has(partition) !== true) return
    let set = this.localReturning.get(space.uid)
    if (set === undefined) { set = new Set(); this.localReturning.set(space.uid, set) }
    if (set.has(partition)) return
    set.add(partition)
    this.placementCache.clear()
    this.scheduleMeta()
    this.notify()
  }

  /**
   * The replicas this peer found on its disk at start-up, before membership started, claimed as
   * returning at once: a peer that restarted says what it holds in its very first meta (the stack
   * puts returningMeta() there), so that while the peers of a cluster that restarted together are
   * still opening their stores none of them takes a partition for fresh. Each claim is confirmed
   * by markReturning once its store has opened intact, or withdrawn (withdrawReturning).
   */
  claimReturning (claims: Iterable<{ uid: string, partition: number }>): void {
    for (const { uid, partition } of claims) {
      if (!Number.isInteger(partition) || partition < 0) continue
      if (this.localReady.get(uid)?.has(partition) === true) continue
      for (const sets of [this.localReturning, this.startupClaims]) {
        let set = sets.get(uid)
        if (set === undefined) { set = new Set(); sets.set(uid, set) }
        set.add(partition)
      }
    }
    this.placementCache.clear()
    if (this.running) { this.scheduleMeta(); this.notify() }
  }

  /** The `back` meta value of what this peer claims as returning (for the first meta: claimReturning). */
  returningMeta (): Record<string, string> {
    return encodeReady(this.localReturning)
  }

  /** A replica claimed as returning turned out empty, damaged or gone: no longer announced. */
  withdrawReturning (space: SpaceDef, partition: number): void {
    // Found empty or damaged: what it takes from now on is not a returning copy either.
    removeFrom(this.startupClaims, space.uid, partition)
    if (!removeFrom(this.localReturning, space.uid, partition)) return
    this.placementCache.clear()
    this.scheduleMeta()
    this.notify()
  }

  /**
   * Whether this returning peer may count its own copy as one of the sources of its catch-up, the
   * copies that together must meet every quorum of the ready holders (this peer counted among
   * them). A copy holds every write acknowledged by a quorum it was in, so that is safe exactly
   * when every write acknowledged since this peer stopped counting as a holder (QUORUM writes are
   * acknowledged by a majority of the ready holders) was acknowledged by a quorum it was in, which
   * holds when no other holder could acknowledge anything since:
   *
   * - this peer stopped counting when its restart replaced its announcement, or earlier when its
   *   death outlasted deadOwnerTimeoutMs (from then on only live holders count), or at once when it
   *   left;
   * - every other member that announced the partition ready (now, or at any point since this
   *   service started) must be dead or left, and have gone no later than that. One still alive, or
   *   gone later, may have acknowledged writes without us: then we catch up from the holders as
   *   any owner does (undefined);
   * - other returning holders may hold writes acknowledged without us before they restarted: the
   *   catch-up must take in each of them too (`alsoFrom`).
   *
   * The dates of deaths that happened before this peer joined are the cluster's (membership passes
   * on how long ago a gone member went). Not covered: a holder that restarted and never learned
   * of its previous life (reaped meanwhile, or its incarnation lost), or one that restarted at the
   * same moment and has not announced itself returning yet.
   */
  selfAsSource (space: SpaceDef, partition: number): SelfSource | undefined {
    this.refresh()
    if (this.localReturning.get(space.uid)?.has(partition) !== true) return undefined
    // Only a copy its previous life had announced ready (as the cluster remembered it when we
    // joined) is known to hold every write acknowledged by a quorum it was in.
    const prev = this.membership.previousLife?.()
    if (prev === undefined || decodeReady(prev.meta[READY_META_KEY]).get(space.uid)?.has(partition) !== true) return undefined
    const excludedAt = prev.state === 'left'
      ? (prev.goneAt ?? prev.restartedAt)
      : Math.min(prev.restartedAt, prev.goneAt === undefined ? Infinity : prev.goneAt + this.deadOwnerTimeoutMs)
    const alsoFrom: PeerId[] = []
    for (const m of this.membership.members()) {
      if (m.id === this.localPeerId || (m.state === 'left' && m.removed === true)) continue
      const r = this.readiness.get(m.id)
      if (r?.back.get(space.uid)?.has(partition) === true) { alsoFrom.push(m.id); continue }
      const held = r?.ready.get(space.uid)?.has(partition) === true || this.everReady.get(m.id)?.get(space.uid)?.has(partition) === true
      if (!held) continue
      if ((m.state !== 'dead' && m.state !== 'left') || m.stateChangedAt > excludedAt) return undefined
    }
    return { alsoFrom: alsoFrom.sort() }
  }

  // ---------------------------------------------------------------- more views

  /** The placement members (alive, suspect, and dead ones not yet dropped), sorted. */
  members (): PeerId[] {
    this.refresh()
    return this.live.slice()
  }

  /**
   * The partitions (of every space) that `peerId` has announced ready and no other member has:
   * what the cluster gives up when that member is removed (forceRemove) while it is gone.
   */
  partitionsOnlyOn (peerId: PeerId): Array<{ space: SpaceDef, partition: number }> {
    this.refresh()
    const out: Array<{ space: SpaceDef, partition: number }> = []
    const others = [...this.holderCandidates, ...this.gone].filter(id => id !== peerId)
    for (const space of this.catalog.list()) {
      const mine = this.readySet(peerId, space.uid)
      if (mine.size === 0) continue
      for (const p of [...mine].sort((a, b) => a - b)) {
        if (p >= space.partitions) continue
        if (!others.some(id => this.readySet(id, space.uid).has(p))) out.push({ space, partition: p })
      }
    }
    return out
  }

  /** The members decommissioning (meta `leaving`) and still up, this peer too when it is: they own nothing, their ready partitions still count. Sorted. */
  leavingMembers (): PeerId[] {
    this.refresh()
    return this.leaving.slice()
  }

  /** The partitions of `space` that `peerId` has announced ready (this peer: marked ready). */
  readyPartitions (peerId: PeerId, space: SpaceDef): number[] {
    this.refresh()
    return [...this.readySet(peerId, space.uid)].sort((a, b) => a - b)
  }

  /** The owners alone (cheaper than locate when readiness does not matter). */
  ownersOf (space: SpaceDef, partition: number): PeerId[] {
    this.refresh()
    const key = partitionKey(space.uid, partition)
    let owners = this.ownersCache.get(key)
    if (owners === undefined) {
      owners = rendezvous(this.live, key, space.replicas)
      if (this.ownersCache.size >= this.maxCached) this.ownersCache.clear()
      this.ownersCache.set(key, owners)
    }
    return owners.slice()
  }

  // ---------------------------------------------------------------- internals

  private checkPartition (space: SpaceDef, partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= space.partitions) {
      throw new RangeError(`partition ${partition} out of range for space '${space.name}' (0..${space.partitions - 1})`)
    }
  }

  private readySet (peerId: PeerId, uid: string): ReadonlySet<number> {
    if (peerId === this.localPeerId) return this.localReady.get(uid) ?? EMPTY
    return this.readiness.get(peerId)?.ready.get(uid) ?? EMPTY
  }

  /** The partitions of a space that `peerId` announces returning (meta `back`; this peer: markReturning). */
  private backSet (peerId: PeerId, uid: string): ReadonlySet<number> {
    if (peerId === this.localPeerId) return this.localReturning.get(uid) ?? EMPTY
    return this.readiness.get(peerId)?.back.get(uid) ?? EMPTY
  }

  /** Rebuilds the member list and the remote readiness after a membership event. */
  private refresh (): void {
    if (!this.viewDirty) return
    this.viewDirty = false
    const live: PeerId[] = []
    const gone: PeerId[] = []
    const leaving: PeerId[] = []
    const seen = new Set<PeerId>()
    const now = this.clock.now()
    const majority = this.isMajority()
    let nextExpiry = Infinity
    for (const m of this.membership.members()) {
      // Removed by an operator: its readiness is given up (what remove-peer confirmed).
      if (m.state === 'left' && m.removed === true) continue
      seen.add(m.id)
      if (m.id !== this.localPeerId) {
        const prev = this.readiness.get(m.id)
        // Meta objects are replaced, never mutated, by membership: identity says "unchanged".
        if (prev === undefined || prev.meta !== m.meta) {
          const ready = decodeReady(m.meta[READY_META_KEY])
          this.readiness.set(m.id, { meta: m.meta, ready, back: decodeReady(m.meta[RETURNING_META_KEY]) })
          let ever = this.everReady.get(m.id)
          if (ever === undefined) { ever = new Map(); this.everReady.set(m.id, ever) }
          for (const [uid, parts] of ready) {
            const set = ever.get(uid)
            if (set === undefined) ever.set(uid, new Set(parts))
            else for (const p of parts) set.add(p)
          }
        }
      }
      // A decommissioning member owns nothing; while it is up its ready partitions still count as
      // live copies (its new owners catch up from it). This peer counts itself as one until it
      // stops, even once it has broadcast its leave: it must never take what it holds for fresh.
      const isSelf = m.id === this.localPeerId
      const decommissioning = isSelf ? this.localLeaving : m.meta[LEAVING_META_KEY] === true
      if (decommissioning && (isSelf || m.state === 'alive' || m.state === 'suspect')) {
        leaving.push(m.id)
        continue
      }
      // A member that left gracefully handed off what it held (decommission) or did not (a leave
      // cut short, an older peer): it owns nothing, but what it still announced counts, as for a
      // long-dead member, when no live member holds the partition.
      let owns = m.state !== 'left' && !decommissioning
      if (m.state === 'dead' && owns) {
        const expiresAt = m.stateChangedAt + this.deadOwnerTimeoutMs
        if (majority && now >= expiresAt) owns = false
        else nextExpiry = Math.min(nextExpiry, expiresAt)
      }
      if (owns) live.push(m.id)
      else if (!isSelf) gone.push(m.id)
    }
    for (const id of this.readiness.keys()) if (!seen.has(id)) { this.readiness.delete(id); this.everReady.delete(id) }
    gone.sort()
    this.gone = gone
    live.sort()
    leaving.sort()
    this.leaving = leaving
    this.holderCandidates = leaving.length === 0 ? live : [...live, ...leaving].sort()
    const liveKey = live.join('\n')
    if (liveKey !== this.liveKey) {
      this.liveKey = liveKey
      this.ownersCache.clear()
    }
    this.live = live
    this.placementCache.clear()
    // Re-evaluate when the next dead member's ownership expires; no membership event marks it.
    this.expiryTimer?.cancel()
    this.expiryTimer = undefined
    if (this.running && nextExpiry !== Infinity) {
      this.expiryTimer = this.clock.setTimer(Math.max(0, nextExpiry - now) + 1, () => {
        this.expiryTimer = undefined
        this.changed(true)
      })
    }
  }

  private changed (membership: boolean): void {
    if (membership) this.viewDirty = true
    this.placementCache.clear()
    this.notify()
  }

  private notify (): void {
    if (!this.running || this.notifyTimer !== undefined) return
    this.notifyTimer = this.clock.setTimer(0, () => {
      this.notifyTimer = undefined
      if (!this.running) return
      for (const l of this.listeners) {
        try { l() } catch (err) { this.log.error({ err }, 'placement listener failed') }
      }
    })
  }

  private scheduleMeta (): void {
    if (this.metaTimer !== undefined) return
    const delay = Math.max(0, this.lastMetaAt + this.debounceMs - this.clock.now())
    this.metaTimer = this.clock.setTimer(delay, () => {
      this.metaTimer = undefined
      this.publishMeta()
    })
  }

  /** Writes this peer's readiness into its membership meta (keeping the other keys). */
  private publishMeta (): void {
    const self = this.membership.localMember()
    // After its leave, a new meta would go out as `alive` with a higher incarnation and undo it.
    if (self.state === 'left') return
    const current = self.meta
    const ready = encodeReady(this.localReady)
    const back = encodeReady(this.localReturning)
    if (JSON.stringify(current[READY_META_KEY] ?? {}) === JSON.stringify(ready) &&
        JSON.stringify(current[RETURNING_META_KEY] ?? {}) === JSON.stringify(back) &&
        (current[LEAVING_META_KEY] === true) === this.localLeaving) return
    const meta: MemberMeta = {}
    for (const k of Object.keys(current)) if (k !== READY_META_KEY && k !== RETURNING_META_KEY && k !== LEAVING_META_KEY) meta[k] = current[k]
    if (Object.keys(ready).length > 0) meta[READY_META_KEY] = ready
    if (Object.keys(back).length > 0) meta[RETURNING_META_KEY] = back
    if (this.localLeaving) meta[LEAVING_META_KEY] = true
    const size = Buffer.byteLength(JSON.stringify(meta))
    if (size > this.metaWarnBytes) this.log.warn({ bytes: size, limit: this.metaWarnBytes }, 'membership meta is large (readiness of many spaces); it may soon exceed the membership limit')
    this.lastMetaAt = this.clock.now()
    try {
      this.membership.updateMeta(meta)
    } catch (err) {
      this.log.error({ err, bytes: size }, 'readiness announcement refused by membership (meta too large?)')
    }
  }
}

/** Removes `partition` from the set of `uid` (and the set when it empties); whether it was there. */
function removeFrom (sets: Map<string, Set<number>>, uid: string, partition: number): boolean {
  const set = sets.get(uid)
  if (set === undefined || !set.delete(partition)) return false
  if (set.size === 0) sets.delete(uid)
  return true
}
