/**
 * This peer's replicas: the stores it opened, the partitions it holds (it opened their store, so
 * it has data, or may) and the owned ones it has caught up and marked ready. The one owner of
 * that state, so no part keeps a copy that could drift: the write path, the replica handlers,
 * catch-up and anti-entropy open stores here; only ownership marks partitions ready or forgets
 * them. Partitions are keyed by keyOf(space, partition). Each store opened here is watched for
 * damage found while it serves (PartitionStore.onDamage), which goes to the `damaged` callback,
 * and for a disk failure (PartitionStore.onFailure), which goes to the `failed` callback.
 */
import type { Hlc } from '../hlc/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { PartitionStore, StoreFailure } from '../storage/index.js'
import { keyOf } from './context.js'
import type { RebuildReason, StoreProvider } from './context.js'

export interface HeldPartition { space: SpaceDef, partition: number }

export class LocalReplicas {
  private readonly openStores = new Map<string, Promise<PartitionStore>>()
  /** Partitions whose store this peer opened (it holds data, or may). */
  private readonly held = new Map<string, HeldPartition>()
  /** Stores opened, by key (a released one may linger here; only held keys are read). */
  private readonly opened = new Map<string, PartitionStore>()
  /** Owned partitions this peer has caught up and marked ready. */
  private readonly ready = new Set<string>()
  /** Replicas found stale against another (repair.ts), each with the highest purge horizon met. */
  private readonly stale = new Map<string, Hlc>()
  private readonly staleListeners = new Set<(key: string) => void>()
  /** Each store opened, by key (one store per key at a time), and how to end its damage and failure subscriptions. */
  private readonly watched = new Map<string, { store: PartitionStore, off: () => void }>()
  /** Set once this peer has left after a decommission: no write is applied here any more (closeWrites). */
  private writesClosed = false
  /** Writes being applied to this peer's replicas now (a replica's repl.write, or a local one), and who waits for them to end. */
  private writesInFlight = 0
  private writesDrained: Array<() => void> = []

  /**
   * `damaged(key)`: a store opened here found damage while serving (see Ownership.replicaDamaged);
   * `failed(key, failure)`: one failed on a disk error (see Ownership.replicaFailed).
   */
  constructor (
    private readonly stores: StoreProvider,
    private readonly damaged: (key: string) => void = () => {},
    private readonly failed: (key: string, failure: StoreFailure) => void = () => {}
  ) {}

  /** This peer's replica of a partition, opened once (concurrent callers share the opening) and held from then on. */
  async open (space: SpaceDef, partition: number): Promise<PartitionStore> {
    const key = keyOf(space, partition)
    let p = this.openStores.get(key)
    if (p === undefined) p = this.opening(key, this.stores.open(space, partition))
    const s = await p
    if (!this.held.has(key)) this.held.set(key, { space: s.space, partition })
    this.opened.set(key, s)
    return s
  }

  /**
   * Replaces the damaged replica of a partition by a fresh one (StoreProvider.rebuild): from this
   * tick every open() gets the new store (waiting for it), and the old one is no longer watched.
   */
  async rebuild (space: SpaceDef, partition: number, reason: RebuildReason = 'damaged'): Promise<PartitionStore> {
    const rebuild = this.stores.rebuild
    if (rebuild === undefined) throw new Error('this peer\'s storage cannot rebuild a replica')
    const key = keyOf(space, partition)
    this.unwatch(key)
    const s = await this.opening(key, rebuild.call(this.stores, space, partition, reason))
    if (reason === 'stale') this.stale.delete(key)
    if (!this.held.has(key)) this.held.set(key, { space: s.space, partition })
    this.opened.set(key, s)
    return s
  }

  /** Whether this peer's storage can rebuild a damaged replica. */
  get canRebuild (): boolean { return this.stores.rebuild !== undefined }

  /**
   * Reopens the replica of a partition that failed for want of space (StoreProvider.reopen: a
   * probe of its disk first, which throws while the disk is still full): from this tick every
   * open() gets the reopened store (waiting for it). Throws what the probe or the opening met.
   */
  async reopen (space: SpaceDef, partition: number): Promise<PartitionStore> {
    const reopen = this.stores.reopen
    if (reopen === undefined) throw new Error('this peer\'s storage cannot reopen a replica')
    const key = keyOf(space, partition)
    const s = await this.opening(key, reopen.call(this.stores, space, partition))
    if (!this.held.has(key)) this.held.set(key, { space: s.space, partition })
    this.opened.set(key, s)
    return s
  }

  /** Whether this peer's storage can reopen a replica that failed for want of space. */
  get canReopen (): boolean { return this.stores.reopen !== undefined }

  /** Caches an opening under `key` (a failed one is forgotten) and watches the store it gives. */
  private opening (key: string, opened: Promise<PartitionStore>): Promise<PartitionStore> {
    const p = opened.then(s => {
      if (this.openStores.get(key) === p) this.watch(key, s)
      return s
    })
    this.openStores.set(key, p)
    p.catch(() => { if (this.openStores.get(key) === p) this.openStores.delete(key) })
    return p
  }

  private watch (key: string, s: PartitionStore): void {
    if (this.watched.get(key)?.store === s) return
    this.unwatch(key)
    const offDamage = s.onDamage?.(() => { this.damaged(key) })
    const offFailure = s.onFailure?.(f => { this.failed(key, f) })
    this.watched.set(key, { store: s, off: () => { offDamage?.(); offFailure?.() } })
    // Failed before anyone listened (while opening, or a store handed back as it was).
    const f = s.failure?.()
    if (f !== undefined) this.failed(key, f)
  }

  private unwatch (key: string): void {
    this.watched.get(key)?.off()
    this.watched.delete(key)
  }

  holds (key: string): boolean { return this.held.has(key) }

  /** The space and partition of a held key. */
  heldPartition (key: string): HeldPartition | undefined { return this.held.get(key) }

  /** The held partitions, live (a partition forgotten meanwhile is skipped by the iteration). */
  heldPartitions (): IterableIterator<[string, HeldPartition]> { return this.held.entries() }

  get heldCount (): number { return this.held.size }

  /** Lets go of a released partition: no longer held, its store no longer kept open here. */
  forget (key: string): void {
    this.unwatch(key)
    this.held.delete(key)
    this.openStores.delete(key)
    this.opened.delete(key)
    this.stale.delete(key)
  }

  /**
   * Marks this peer's replica of `key` stale: another replica, whose purge horizon is
   * `purgeHorizon`, may have dropped tombstones of rows it holds (repair.ts). It serves nothing
   * and pushes nothing older than that until rebuilt. The listeners hear of it the first time.
   */
  markStale (key: string, purgeHorizon: Hlc): void {
    const first = !this.stale.has(key)
    this.stale.set(key, Math.max(purgeHorizon, this.stale.get(key) ?? 0))
    if (first) for (const l of [...this.staleListeners]) l(key)
  }

  isStale (key: string): boolean { return this.stale.has(key) }

  /** The highest purge horizon of another replica this stale one met (undefined: not stale). */
  staleHorizon (key: string): Hlc | undefined { return this.stale.get(key) }

  /** Calls `listener` when a replica is found stale (the first time until it is rebuilt); returns the unsubscribe. */
  onStale (listener: (key: string) => void): () => void {
    this.staleListeners.add(listener)
    return () => { this.staleListeners.delete(listener) }
  }

  /**
   * Runs one write to this peer's replicas (a replica's repl.write, or the coordinator's local
   * delivery), unless writes are closed: then it throws `closed()` and nothing is applied.
   */
  async applyWrite<T> (apply: () => Promise<T>, closed: () => Error): Promise<T> {
    if (this.writesClosed) throw closed()
    this.writesInFlight++
    try {
      return await apply()
    } finally {
      this.writesInFlight--
      if (this.writesInFlight === 0) for (const done of this.writesDrained.splice(0)) done()
    }
  }

  /**
   * After a decommissioned peer has left: no write is applied here from now on, and this resolves
   * once those being applied have ended, so that the last push to the new owners
   * (Decommission.finish) sees every write this peer acknowledged.
   */
  async closeWrites (): Promise<void> {
    this.writesClosed = true
    if (this.writesInFlight === 0) return
    await new Promise<void>(resolve => { this.writesDrained.push(resolve) })
  }

  /** Takes writes again (a decommission given up before the peer left). */
  openWrites (): void { this.writesClosed = false }

  isReady (key: string): boolean { return this.ready.has(key) }

  markReady (key: string): void { this.ready.add(key) }

  unmarkReady (key: string): void { this.ready.delete(key) }

  /** A copy: the caller may unmark while it walks them. */
  readyKeys (): string[] { return [...this.ready] }

  get readyCount (): number { return this.ready.size }

  /** Live rows of the local replica, if this peer holds the partition open (for query cost estimates). */
  localRows (space: SpaceDef, partition: number): number | undefined {
    const key = keyOf(space, partition)
    if (!this.held.has(key)) return undefined
    try {
      return this.opened.get(key)?.stats().liveRows
    } catch {
      return undefined
    }
  }
}
