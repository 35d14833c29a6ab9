/**
 * StorageEngine: the partitions of every space on this peer, under one data directory, with a
 * memtable budget shared between them.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { SpaceDef } from '../schema/index.js'
import { BlockCache } from './block-cache.js'
import { FilePool, DEFAULT_MAX_OPEN_FILES } from './files.js'
import { LocalPartitionStore, removeDir, type DamageReport, type PartitionDeps } from './partition.js'
import { resolvePartitionOptions, type PartitionStoreOptions, type StorageEngineOptions } from './options.js'

const DEFAULT_MEMTABLE_BUDGET_BYTES = 64 << 20

/** A partition of a space this peer dropped was asked for. */
export class SpaceDroppedError extends Error {
  override name = 'SpaceDroppedError'
}

/** A space uid as a directory name: as is when harmless, else percent-encoded. */
export function spaceDirName (uid: string): string {
  if (uid.length === 0) throw new Error('space uid is empty')
  return /^[A-Za-z0-9@._:+-]+$/.test(uid) && uid !== '.' && uid !== '..' ? uid : encodeURIComponent(uid).replace(/\./g, '%2E')
}

export class StorageEngine {
  readonly dataDir: string
  private readonly deps: PartitionDeps
  private readonly partitionOpts: PartitionStoreOptions
  private readonly budgetBytes: number
  private readonly stores = new Map<string, Promise<LocalPartitionStore>>()
  private readonly open = new Map<string, LocalPartitionStore>()
  private closed = false
  /** Space uids dropped while this engine runs: their partitions are not opened again. */
  private readonly dropped = new Set<string>()
  /** The bound on open files shared by every partition. */
  readonly files: FilePool
  /** The peer's one cache of blocks read from segment files. */
  readonly cache: BlockCache

  constructor (deps: PartitionDeps, opts: StorageEngineOptions) {
    const { dataDir, memtableBudgetBytes, maxOpenFiles, cacheMiB, ...partitionOpts } = opts
    this.files = new FilePool(maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES)
    if (cacheMiB !== undefined && (!Number.isInteger(cacheMiB) || cacheMiB < 1)) throw new RangeError(`storage option cacheMiB must be a positive integer, got ${String(cacheMiB)}`)
    this.cache = new BlockCache((cacheMiB ?? 64) * 1048576)
    this.deps = { clock: deps.clock, log: deps.log.child({ component: 'storage' }), files: this.files, cache: this.cache }
    resolvePartitionOptions(partitionOpts) // fail fast on a bad option
    this.dataDir = dataDir
    this.partitionOpts = partitionOpts
    this.budgetBytes = memtableBudgetBytes ?? DEFAULT_MEMTABLE_BUDGET_BYTES
  }

  /** `<dataDir>/spaces/<uid>/<partition>`. */
  partitionDir (uid: string, partition: number): string {
    return join(this.dataDir, 'spaces', spaceDirName(uid), String(partition))
  }

  /**
   * Opens (recovering if needed) one partition of a space. Cached: later and concurrent calls get
   * the same store. A newer definition of the same space (columns added) updates the store's.
   */
  async openPartition (space: SpaceDef, partition: number): Promise<LocalPartitionStore> {
    if (this.closed) throw new Error('storage engine is closed')
    if (!Number.isInteger(partition) || partition < 0) throw new RangeError(`partition must be a non-negative integer, got ${partition}`)
    const key = `${space.uid}\u0000${partition}`
    let p = this.stores.get(key)
    if (p === undefined) {
      // Opening would create files in a directory being deleted (or bring it back after).
      if (this.dropped.has(space.uid)) throw new SpaceDroppedError(`space ${space.name} (${space.uid}) was dropped; its partition ${partition} is not opened`)
      p = LocalPartitionStore.open(this.deps, space, partition, this.partitionDir(space.uid, partition), this.partitionOpts, {
        onMemtableGrowth: () => { this.enforceBudget() }
      })
      this.stores.set(key, p)
      p.then(s => { this.open.set(key, s) }, () => { this.stores.delete(key) })
    }
    const store = await p
    if (space.schema.length > store.space.schema.length) store.updateSchema(space)
    return store
  }

  /** The open partitions. */
  partitions (): LocalPartitionStore[] { return [...this.open.values()] }

  /** An open partition, if it is open. */
  getPartition (uid: string, partition: number): LocalPartitionStore | undefined {
    return this.open.get(`${uid}\u0000${partition}`)
  }

  /** Files storage holds open now (never more than `files.maxOpen`). */
  openFiles (): number { return this.files.open }

  /** WAL damage of the open partitions (see LocalPartitionStore.damage), with where it is. */
  damage (): Array<DamageReport & { space: string, uid: string, partition: number, replicas: number }> {
    const out: Array<DamageReport & { space: string, uid: string, partition: number, replicas: number }> = []
    for (const s of this.open.values()) {
      for (const d of s.damage()) out.push({ space: s.space.name, uid: s.space.uid, partition: s.partition, replicas: s.space.replicas, ...d })
    }
    return out
  }

  /** Memtable bytes across all open partitions. */
  memtableBytes (): number {
    let total = 0
    for (const s of this.open.values()) total += s.memtableBytes()
    return total
  }

  /**
   * Over budget, flushes the partition with the largest active memtable; if that one is already
   * flushing, waits for it (it re-checks when done) rather than flushing small ones.
   */
  private enforceBudget (): void {
    let total = 0
    let largest: LocalPartitionStore | undefined
    for (const s of this.open.values()) {
      if (s.isClosed()) continue
      total += s.activeMemtableBytes()
      if (largest === undefined || s.activeMemtableBytes() > largest.activeMemtableBytes()) largest = s
    }
    if (total <= this.budgetBytes || largest === undefined || largest.isFlushing()) return
    largest.flush().catch(() => {})
  }

  /** Closes every partition of a space and deletes its directory. */
  async dropSpace (uid: string): Promise<void> {
    // First, so that no open of one of its partitions starts while the directory goes (it created
    // files under the delete and left the directory behind: ENOTEMPTY). A uid is never reused.
    this.dropped.add(uid)
    const prefix = `${uid}\u0000`
    for (const [key, p] of [...this.stores]) {
      if (!key.startsWith(prefix)) continue
      this.stores.delete(key)
      this.open.delete(key)
      const store = await p.catch(() => undefined)
      await store?.close()
    }
    await removeDir(join(this.dataDir, 'spaces', spaceDirName(uid)))
  }

  /**
   * The partition replicas present on disk, open or not: after a restart, the ones this peer no
   * longer owns or whose space was dropped meanwhile must be found to be released.
   */
  async listOnDisk (): Promise<Array<{ uid: string, partition: number }>> {
    const out: Array<{ uid: string, partition: number }> = []
    let spaces: string[]
    try {
      spaces = await readdir(join(this.dataDir, 'spaces'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out
      throw err
    }
    for (const dir of spaces) {
      let uid: string
      try { uid = decodeURIComponent(dir) } catch { continue }
      const parts = await readdir(join(this.dataDir, 'spaces', dir)).catch(() => [] as string[])
      for (const p of parts) if (/^\d{1,5}$/.test(p)) out.push({ uid, partition: Number(p) })
    }
    return out
  }

  /** Closes one partition and deletes its directory (a replica handed off to its new owners). */
  async dropPartition (uid: string, partition: number): Promise<void> {
    const key = `${uid}\u0000${partition}`
    const p = this.stores.get(key)
    this.stores.delete(key)
    this.open.delete(key)
    const store = p === undefined ? undefined : await p.catch(() => undefined)
    await store?.close()
    await removeDir(this.partitionDir(uid, partition))
  }

  /** Closes every partition: in-flight writes, flushes and compactions finish first. */
  async close (): Promise<void> {
    this.closed = true
    const all = [...this.stores.values()]
    this.stores.clear()
    this.open.clear()
    for (const p of all) {
      const store = await p.catch(() => undefined)
      await store?.close()
    }
  }
}
