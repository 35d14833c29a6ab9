/**
 * Memory stores on a disk that can fill up or fail (issue 13, "disk faults leave zombie
 * replicas"), as LocalPartitionStore reports it: while a peer's SimDisk is full (or failing), a
 * write meets ENOSPC (or EIO), the store fails once (failure(), the onFailure listeners), keeps
 * what it held before (all durable) and refuses every later write. FailingStores.reopen is
 * StorageEngine.reopenPartition: a probe that fails while the disk is still full, else a new store
 * holding what the failed one held; rebuild() sets the failed store aside for an empty one.
 */
import type { SpaceDef } from '../../src/schema/index.js'
import type { ApplyResult, StoreFailure, VersionedRecord } from '../../src/storage/index.js'
import { MemoryPartitionStore, MemoryStores } from './memory-store.js'

/** One peer's disk: what a write meets now. */
export class SimDisk {
  /** 'full': ENOSPC; 'eio': EIO; undefined: writes succeed. */
  fault: 'full' | 'eio' | undefined

  errorNow (path: string): Error | undefined {
    if (this.fault === undefined) return undefined
    const code = this.fault === 'full' ? 'ENOSPC' : 'EIO'
    return Object.assign(new Error(`write-ahead log ${path} failed: ${code}: ${this.fault === 'full' ? 'no space left on device' : 'i/o error'}, write`), { code })
  }
}

export class FailingPartitionStore extends MemoryPartitionStore {
  private failed: StoreFailure | undefined
  private readonly failureListeners = new Set<(f: StoreFailure) => void>()

  constructor (space: SpaceDef, partition: number, private readonly disk: SimDisk, private readonly wallNow: () => number) {
    super(space, partition)
  }

  get walPath (): string { return `${this.space.uid}/${this.partition}/wal-00000001.log` }

  override async apply (records: readonly VersionedRecord[]): Promise<ApplyResult> {
    if (this.failed !== undefined) {
      await Promise.resolve()
      throw Object.assign(new Error(`partition ${this.space.name}/${this.partition} refuses writes after a disk failure (${this.failed.code})`), { name: 'StoreFailedError' })
    }
    const err = this.disk.errorNow(this.walPath)
    if (err !== undefined) {
      await Promise.resolve()
      this.fail(err)
      throw err
    }
    return await super.apply(records)
  }

  private fail (err: Error): void {
    if (this.failed !== undefined) return
    const code = (err as { code?: string }).code ?? 'UNKNOWN'
    this.failed = { kind: code === 'ENOSPC' ? 'no-space' : 'io', code, operation: 'write-ahead log', path: this.walPath, message: err.message, at: this.wallNow() }
    for (const l of [...this.failureListeners]) l(this.failed)
  }

  failure (): StoreFailure | undefined { return this.failed }

  onFailure (listener: (f: StoreFailure) => void): () => void {
    this.failureListeners.add(listener)
    return () => { this.failureListeners.delete(listener) }
  }

  override needsRebuild (): boolean { return super.needsRebuild() || this.failed?.kind === 'io' }
}

/** One peer's stores on one SimDisk: the StoreProvider a Replicator gets, with reopen(). */
export class FailingStores extends MemoryStores {
  readonly disk = new SimDisk()
  /** Every reopen() asked for: when (wall ms) and whether the probe passed. */
  readonly reopens: Array<{ at: number, ok: boolean }> = []
  /** Stores replaced by reopen(), in order. */
  readonly reopened: FailingPartitionStore[] = []

  constructor (private readonly wallNow: () => number) { super() }

  override async open (space: SpaceDef, partition: number): Promise<FailingPartitionStore> {
    const key = MemoryStores.key(space, partition)
    let s = this.stores.get(key)
    if (s === undefined) {
      s = new FailingPartitionStore(space, partition, this.disk, this.wallNow)
      this.stores.set(key, s)
    }
    await Promise.resolve()
    return s as FailingPartitionStore
  }

  /** As StorageEngine.reopenPartition: probe, then a new store from what the failed one held. */
  async reopen (space: SpaceDef, partition: number): Promise<FailingPartitionStore> {
    const key = MemoryStores.key(space, partition)
    const old = this.stores.get(key) as FailingPartitionStore | undefined
    await Promise.resolve()
    const err = this.disk.errorNow(`${key}/disk-probe.tmp`)
    this.reopens.push({ at: this.wallNow(), ok: err === undefined })
    if (err !== undefined) throw err
    if (old !== undefined && old.failure() === undefined) return old
    const fresh = new FailingPartitionStore(space, partition, this.disk, this.wallNow)
    if (old !== undefined) {
      old.closed = true
      this.reopened.push(old)
      await fresh.apply(old.all())
    }
    this.stores.set(key, fresh)
    return fresh
  }

  override async rebuild (space: SpaceDef, partition: number): Promise<MemoryPartitionStore> {
    const key = MemoryStores.key(space, partition)
    const old = this.stores.get(key)
    if (old !== undefined) {
      old.closed = true
      this.rebuilt.push(old)
    }
    const fresh = new FailingPartitionStore(space, partition, this.disk, this.wallNow)
    this.stores.set(key, fresh)
    await Promise.resolve()
    return fresh
  }
}
