/**
 * This peer's replicas: the stores it opened, the partitions it holds (it opened their store, so
 * it has data, or may) and the owned ones it has caught up and marked ready. The one owner of
 * that state, so no part keeps a copy that could drift: the write path, the replica handlers,
 * catch-up and anti-entropy open stores here; only ownership marks partitions ready or forgets
 * them. Partitions are keyed by keyOf(space, partition).
 */
import type { SpaceDef } from '../schema/index.js'
import type { PartitionStore } from '../storage/index.js'
import { keyOf } from './context.js'
import type { StoreProvider } from './context.js'

export interface HeldPartition { space: SpaceDef, partition: number }

export class LocalReplicas {
  private readonly openStores = new Map<string, Promise<PartitionStore>>()
  /** Partitions whose store this peer opened (it holds data, or may). */
  private readonly held = new Map<string, HeldPartition>()
  /** Stores opened, by key (a released one may linger here; only held keys are read). */
  private readonly opened = new Map<string, PartitionStore>()
  /** Owned partitions this peer has caught up and marked ready. */
  private readonly ready = new Set<string>()

  constructor (private readonly stores: StoreProvider) {}

  /** This peer's replica of a partition, opened once (concurrent callers share the opening) and held from then on. */
  async open (space: SpaceDef, partition: number): Promise<PartitionStore> {
    const key = keyOf(space, partition)
    let p = this.openStores.get(key)
    if (p === undefined) {
      p = this.stores.open(space, partition)
      this.openStores.set(key, p)
      p.catch(() => { if (this.openStores.get(key) === p) this.openStores.delete(key) })
    }
    const s = await p
    if (!this.held.has(key)) this.held.set(key, { space: s.space, partition })
    this.opened.set(key, s)
    return s
  }

  holds (key: string): boolean { return this.held.has(key) }

  /** The held partitions, live (a partition forgotten meanwhile is skipped by the iteration). */
  heldPartitions (): IterableIterator<[string, HeldPartition]> { return this.held.entries() }

  get heldCount (): number { return this.held.size }

  /** Lets go of a released partition: no longer held, its store no longer kept open here. */
  forget (key: string): void {
    this.held.delete(key)
    this.openStores.delete(key)
    this.opened.delete(key)
  }

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
