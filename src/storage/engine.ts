/**
 * StorageEngine: the partitions of every space on this peer, under one data directory, with a
 * memtable budget shared between them.
 */
import { join } from 'node:path'
import type { SpaceDef } from '../schema/index.js'
import { nodeFileSystem, type FileSystem } from '../runtime/index.js'
import { BlockCache } from './block-cache.js'
import { CompactionSlots, defaultMaxConcurrentCompactions } from './compaction-slots.js'
import { FilePool, DEFAULT_MAX_OPEN_FILES } from './files.js'
import { DurableDirs } from './fsutil.js'
import { moveAside, readDamageReports, segmentCorruption } from './damage.js'
import { describeFailure, isDiskFault, probeDisk, type StoreFailure } from './failure.js'
import { LocalPartitionStore, StoreFailedError, removeDir, type DamageReport, type PartitionDeps } from './partition.js'
import { newStorageIoStats } from './context.js'
import { resolvePartitionOptions, type PartitionStoreOptions, type StorageEngineOptions } from './options.js'

/** Default of memtableBudgetBytes (StorageEngineOptions). */
export const DEFAULT_MEMTABLE_BUDGET_BYTES = 64 << 20

/** A partition of a space this peer dropped was asked for. */
export class SpaceDroppedError extends Error {
  override name = 'SpaceDroppedError'
}

/** A space uid as a directory name: as is when harmless, else percent-encoded. */
export function spaceDirName (uid: string): string {
  if (uid.length === 0) throw new Error('space uid is empty')
  return /^[A-Za-z0-9@._:+-]+$/.test(uid) && uid !== '.' && uid !== '..' ? uid : encodeURIComponent(uid).replace(/\./g, '%2E')
}

/** Why a replica is rebuilt from the others (StorageEngine.rebuildPartition). */
export type RebuildReason = 'damaged' | 'stale'

/** A damage report of one of this peer's partitions (StorageEngine.damage). */
export type StoredDamage = DamageReport & {
  space: SpaceDef
  partition: number
  /** Whether the partition is open (false: the damage keeps it from opening, `error` says how). */
  open: boolean
  error?: string
}

/** A disk failure of one of this peer's partitions (StorageEngine.failures). */
export type StoredFailure = StoreFailure & {
  space: SpaceDef
  partition: number
  /** Whether the partition is open (its store failed while it served) or could not open at all. */
  open: boolean
}

export class StorageEngine {
  readonly dataDir: string
  /** Where the files live (node:fs unless the deps say otherwise: a simulated disk). */
  readonly fs: FileSystem
  /** Directories made durable under dataDir in this process (partition directories). */
  private readonly dirs: DurableDirs
  private readonly deps: PartitionDeps
  private readonly partitionOpts: PartitionStoreOptions
  private readonly budgetBytes: number
  private readonly stores = new Map<string, Promise<LocalPartitionStore>>()
  private readonly open = new Map<string, LocalPartitionStore>()
  private closed = false
  /** Partitions a damaged segment kept from opening, with their damage reports (damage()). */
  private readonly openFailures = new Map<string, { space: SpaceDef, partition: number, error: Error, reports: DamageReport[] }>()
  /** Partitions a disk fault (a full disk, an I/O error) kept from opening, until an opening succeeds. */
  private readonly openFaults = new Map<string, { space: SpaceDef, partition: number, failure: StoreFailure, error: unknown }>()
  /** Space uids dropped while this engine runs: their partitions are not opened again. */
  private readonly dropped = new Set<string>()
  /** The bound on open files shared by every partition. */
  readonly files: FilePool
  /** The peer's one cache of blocks read from segment files. */
  readonly cache: BlockCache
  /** The peer's bound on compactions running at once (compaction-slots.ts). */
  readonly compactions: CompactionSlots
  /** WAL fsync durations and compaction totals of every store, for /metrics (context.ts). */
  readonly io = newStorageIoStats()

  constructor (deps: PartitionDeps, opts: StorageEngineOptions) {
    const { dataDir, memtableBudgetBytes, maxOpenFiles, cacheMiB, maxConcurrentCompactions, ...partitionOpts } = opts
    this.files = new FilePool(maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES)
    if (cacheMiB !== undefined && (!Number.isInteger(cacheMiB) || cacheMiB < 1)) throw new RangeError(`storage option cacheMiB must be a positive integer, got ${String(cacheMiB)}`)
    this.cache = new BlockCache((cacheMiB ?? 64) * 1048576)
    this.compactions = new CompactionSlots(maxConcurrentCompactions ?? defaultMaxConcurrentCompactions())
    this.fs = deps.fs ?? nodeFileSystem
    this.dirs = new DurableDirs(this.fs, dataDir)
    this.deps = { clock: deps.clock, log: deps.log.child({ component: 'storage' }), fs: this.fs, dirs: this.dirs, files: this.files, cache: this.cache, compactions: this.compactions, io: this.io }
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
      // A full disk kept it from opening: tried again by reopenPartition (which probes the disk
      // first), not by every write that arrives meanwhile (each would leave a new empty WAL file).
      const fault = this.openFaults.get(key)
      if (fault?.failure.kind === 'no-space') {
        throw new StoreFailedError(`partition ${partition} of '${space.name}' cannot open: its disk is full (${fault.failure.code} at ${fault.failure.path ?? 'its directory'}); it is reopened once a write there succeeds`, { cause: fault.error })
      }
      p = this.openStore(space, partition)
      this.stores.set(key, p)
      this.track(key, p)
    }
    const store = await p
    if (space.schema.length > store.space.schema.length) store.updateSchema(space)
    return store
  }

  /**
   * Opens a partition's store. One that a damaged segment keeps from opening stays known with its
   * reports (damage()) before the failure reaches the caller, until an opening or a rebuild succeeds.
   */
  private async openStore (space: SpaceDef, partition: number): Promise<LocalPartitionStore> {
    const dir = this.partitionDir(space.uid, partition)
    try {
      return await LocalPartitionStore.open(this.deps, space, partition, dir, this.partitionOpts, {
        onMemtableGrowth: () => { this.enforceBudget() }
      })
    } catch (err) {
      const key = `${space.uid}\u0000${partition}`
      const c = segmentCorruption(err)
      if (c !== undefined) {
        const reports = await readDamageReports(this.fs, dir, this.deps.log).catch(() => [])
        this.openFailures.set(key, { space, partition, error: c.error, reports })
      } else if (isDiskFault(err)) {
        this.openFaults.set(key, { space, partition, failure: describeFailure(err, 'open', this.deps.clock.wallNow(), dir), error: err })
      }
      throw err
    }
  }

  /** Follows an opening: the store goes in `open` once it is there; a failed one leaves the cache (the next call tries again). */
  private track (key: string, p: Promise<LocalPartitionStore>): void {
    p.then(s => {
      if (this.stores.get(key) !== p) return
      this.open.set(key, s)
      this.openFailures.delete(key)
      this.openFaults.delete(key)
    }, () => {
      if (this.stores.get(key) === p) this.stores.delete(key)
    })
  }

  /**
   * Rebuilds a damaged replica (a segment file that fails its checks: its rows cannot be read, and
   * a digest sync, which compares ids and versions, would not see what is missing): the store is
   * closed, the partition's directory is moved aside whole to `<dir>.corrupt-<ms>` (kept for
   * inspection, never deleted automatically) and a fresh, empty one is opened in its place
   * carrying the unrepaired damage reports, so it still needs repair: replication then copies the
   * partition from every other replica before it serves (and marks it repaired). Dropping only
   * the bad segment instead would bring back older versions and deleted rows from older segments.
   * Concurrent and later openPartition calls get the new store; writes arriving meanwhile land
   * there. Replication calls this only when other replicas can repair the partition.
   *
   * `reason` 'stale': the replica is intact but was away longer than the tombstone grace, and
   * another replica may have purged tombstones of rows it still holds (repair.ts); pushing those
   * rows would undo the deletes, so it is rebuilt the same way (Cassandra's rule for a node down
   * past gc_grace), its directory moved aside to `<dir>.stale-<ms>`.
   */
  async rebuildPartition (space: SpaceDef, partition: number, reason: RebuildReason = 'damaged'): Promise<LocalPartitionStore> {
    if (this.closed) throw new Error('storage engine is closed')
    const key = `${space.uid}\u0000${partition}`
    if (this.dropped.has(space.uid)) throw new SpaceDroppedError(`space ${space.name} (${space.uid}) was dropped; its partition ${partition} is not rebuilt`)
    const old = this.stores.get(key)
    this.open.delete(key)
    const p = (async () => {
      const store = old === undefined ? undefined : await old.catch(() => undefined)
      await store?.close()
      const dir = this.partitionDir(space.uid, partition)
      const aside = `${dir}.${reason === 'stale' ? 'stale' : 'corrupt'}-${this.deps.clock.wallNow()}`
      const failure = store?.failure()
      const carried = await this.files.run(async () => await moveAside(this.fs, dir, aside, this.deps.log))
      if (reason === 'stale') {
        this.deps.log.warn({ space: space.name, uid: space.uid, partition, movedTo: aside },
          'partition replica away longer than the tombstone grace moved aside (kept there; nothing is deleted): it may hold rows whose deletes the other replicas have purged; a fresh replica is rebuilt from them')
        return await this.openStore(space, partition)
      }
      this.deps.log.error({ space: space.name, uid: space.uid, partition, movedTo: aside, reports: carried.map(d => d.file), ...(failure !== undefined ? { code: failure.code, failedAt: failure.path } : {}) },
        `${failure !== undefined ? `partition replica that failed on a disk error (${failure.code})` : 'damaged partition replica'} moved aside (kept there for inspection; nothing is deleted); a fresh replica is rebuilt from the other replicas`)
      return await this.openStore(space, partition)
    })()
    this.stores.set(key, p)
    this.track(key, p)
    const store = await p
    if (space.schema.length > store.space.schema.length) store.updateSchema(space)
    return store
  }

  /**
   * Reopens a partition whose store failed on its disk (a full disk, StoreFailure kind
   * `no-space`; replication rebuilds `io` failures instead) once its disk takes writes again. First a probe: a write and an fsync in the partition's directory
   * (failure.ts probeDisk); while that fails, its error is thrown and the failed store stays as it
   * is. Then the frames failed writes left in its WAL files are cut (written, maybe readable from
   * the page cache, but never durable: replayed, a power cut could still take them and the older,
   * acknowledged versions a compaction dropped for them), the failed store is closed and the
   * partition opened again from what is durable (nothing that failed was acknowledged). A store that has not failed is returned as it is. Concurrent and later
   * openPartition calls get the new store. Replication calls this with backoff (Ownership), then
   * catches the partition up from the other replicas before it serves again.
   */
  async reopenPartition (space: SpaceDef, partition: number): Promise<LocalPartitionStore> {
    if (this.closed) throw new Error('storage engine is closed')
    const key = `${space.uid}\u0000${partition}`
    if (this.dropped.has(space.uid)) throw new SpaceDroppedError(`space ${space.name} (${space.uid}) was dropped; its partition ${partition} is not reopened`)
    const old = this.stores.get(key)
    const current = old === undefined ? undefined : await old.catch(() => undefined)
    if (current !== undefined && current.failure() === undefined && !current.isClosed()) return await this.openPartition(space, partition)
    const dir = this.partitionDir(space.uid, partition)
    await this.files.run(async () => {
      await this.fs.mkdir(dir)
      await probeDisk(this.fs, dir)
    })
    // Frames a failed write left in the WAL were never durable: recovery must not replay them.
    await current?.cutUndurableWal()
    // Replaced meanwhile (a rebuild, another reopen): that one stands.
    if (this.stores.get(key) !== old) return await this.openPartition(space, partition)
    this.open.delete(key)
    const p = (async () => {
      await current?.close()
      return await this.openStore(space, partition)
    })()
    this.stores.set(key, p)
    this.track(key, p)
    const store = await p
    if (space.schema.length > store.space.schema.length) store.updateSchema(space)
    this.deps.log.info({ space: space.name, uid: space.uid, partition, after: current?.failure()?.code }, 'partition reopened from its durable state: its disk takes writes again')
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

  /**
   * Damage of this peer's partitions (see LocalPartitionStore.damage), with where it is: that of
   * the open ones, and that of partitions a damaged segment keeps from opening (`open: false`,
   * the error saying why).
   */
  damage (): StoredDamage[] {
    const out: StoredDamage[] = []
    for (const s of this.open.values()) {
      for (const d of s.damage()) out.push({ space: s.space, partition: s.partition, open: true, ...d })
    }
    for (const f of this.openFailures.values()) {
      for (const d of f.reports) out.push({ space: f.space, partition: f.partition, open: false, error: f.error.message, ...d })
    }
    return out
  }

  /**
   * Disk failures of this peer's partitions: open stores that failed while they served (a WAL
   * write or fsync, a flush, a manifest swap, a device error) and partitions a disk fault kept
   * from opening (`open: false`), until a reopen, a rebuild or an opening succeeds.
   */
  failures (): StoredFailure[] {
    const out: StoredFailure[] = []
    for (const s of this.open.values()) {
      const f = s.failure()
      if (f !== undefined && !s.isClosed()) out.push({ ...f, space: s.space, partition: s.partition, open: true })
    }
    for (const f of this.openFaults.values()) out.push({ ...f.failure, space: f.space, partition: f.partition, open: false })
    return out
  }

  /** The active memtables' estimated heap across all open partitions (what the budget bounds). */
  memtableHeapBytes (): number {
    let total = 0
    for (const s of this.open.values()) total += s.activeMemtableHeapBytes()
    return total
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
      // A failed store cannot flush (its flush resolves at once and would ask again: a loop that
      // starves the event loop); its memtable waits for the reopen, within its own bounds.
      if (s.isClosed() || s.failure() !== undefined) continue
      total += s.activeMemtableHeapBytes()
      if (largest === undefined || s.activeMemtableHeapBytes() > largest.activeMemtableHeapBytes()) largest = s
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
    for (const key of [...this.openFailures.keys()]) if (key.startsWith(prefix)) this.openFailures.delete(key)
    for (const key of [...this.openFaults.keys()]) if (key.startsWith(prefix)) this.openFaults.delete(key)
    await removeDir(this.fs, join(this.dataDir, 'spaces', spaceDirName(uid)))
    this.dirs.forget(join(this.dataDir, 'spaces', spaceDirName(uid)))
  }

  /**
   * The partition replicas present on disk, open or not: after a restart, the ones this peer no
   * longer owns or whose space was dropped meanwhile must be found to be released.
   */
  async listOnDisk (): Promise<Array<{ uid: string, partition: number }>> {
    const out: Array<{ uid: string, partition: number }> = []
    const spaces = await this.fs.readdir(join(this.dataDir, 'spaces'))
    for (const dir of spaces) {
      let uid: string
      try { uid = decodeURIComponent(dir) } catch { continue }
      const parts = await this.fs.readdir(join(this.dataDir, 'spaces', dir)).catch(() => [] as string[])
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
    this.openFailures.delete(key)
    this.openFaults.delete(key)
    const store = p === undefined ? undefined : await p.catch(() => undefined)
    await store?.close()
    await removeDir(this.fs, this.partitionDir(uid, partition))
    this.dirs.forget(this.partitionDir(uid, partition))
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
