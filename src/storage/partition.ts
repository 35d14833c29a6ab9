/**
 * One partition replica on disk: WAL + memtable + Arrow segments + manifest, behind the
 * PartitionStore contract (types.ts). This file is the composition root: it builds the shared
 * context (context.ts) and the parts, each handed only the slice it uses, and keeps the public
 * API the engine, replication and the tests use.
 *
 * State, each with one owner: the id index and the segments it points into (live-index.ts, which
 * keeps live bitmaps, counts and digests in step), the memtable (memtable.ts), the WAL files
 * (wal-files.ts), the manifest and segment numbering (manifest.ts), damage reports of the WAL
 * and of segments (damage.ts). Work: recovery.ts (open from disk), write.ts (apply and group commit), flush.ts
 * (memtable to segment), compaction.ts (size-tiered merges, tombstone purge), reads.ts (get,
 * scan, bucket, column batches), digest.ts (anti-entropy digests).
 *
 * Durability: apply() updates memory synchronously and queues one WAL frame in the same tick, then
 * resolves when that frame is fsynced. A flush switches to a new WAL file and a new memtable in
 * one tick, writes the frozen records as a segment, swaps the manifest atomically (its `walFrom`
 * moves past the old WAL), and only then deletes the old WAL. Recovery replays the WAL files at
 * or after `walFrom`. Files opened here take slots of the peer's FilePool (files.ts), so
 * thousands of partitions do not mean thousands of descriptors.
 */
import { join } from 'node:path'
import type { BatchOptions, StoredBatch } from '../columnar/index.js'
import type { SpaceDef } from '../schema/index.js'
import { nodeFileSystem, type FileSystem } from '../runtime/index.js'
import { BlockCache } from './block-cache.js'
import { Compactor, type CompactionResult } from './compaction.js'
import { CompactionSlots } from './compaction-slots.js'
import { newStorageIoStats, newStoreCounters, type PartitionContext, type PartitionDeps, type StoreCounters, type StoreHooks } from './context.js'
import { DamageLog, segmentCorruption, type DamageReport } from './damage.js'
import type { DiskSegment } from './disk-segment.js'
import { FailureStatus, isDiskFault, isNoSpace, type StoreFailure } from './failure.js'
import { FilePool } from './files.js'
import { mkdirDurable } from './fsutil.js'
import { Flusher } from './flush.js'
import { LiveIndex } from './live-index.js'
import { SegmentManifest } from './manifest.js'
import { Memtable } from './memtable.js'
import { resolvePartitionOptions, type PartitionStoreOptions, type ResolvedPartitionOptions } from './options.js'
import { PartitionReader } from './reads.js'
import { recover, type RecoveryStats } from './recovery.js'
import { graceHorizon, purgeHorizon, RepairLog, type RepairRecord, type RepairUpdate } from './repair.js'
import type { ApplyResult, PartitionDigest, PartitionStats, PartitionStore, VersionedRecord } from './types.js'
import type { PackedRecords } from './wal.js'
import { WalFiles } from './wal-files.js'
import { PartitionWriter } from './write.js'

// The store's public names, wherever they are defined: importers keep importing them from here.
export { sizeTier, type CompactionResult } from './compaction.js'
export type { FailedOperation, StoreFailure } from './failure.js'
export type { PartitionDeps, StoreCounters, StoreHooks } from './context.js'
export { CORRUPT_COPY_SUFFIX, DAMAGE_REPORT_SUFFIX, isSegmentCorruption, type DamageReport, type SegmentDamageReport, type WalDamageReport } from './damage.js'
export { MANIFEST_FILE } from './manifest.js'
export type { RecoveryStats } from './recovery.js'
export { StoreClosedError, StoreFailedError } from './write.js'

/** The cache of a store opened without the peer's (tests, tools): 16 MiB. */
const OWN_CACHE_BYTES = 16 << 20

export class LocalPartitionStore implements PartitionStore {
  private spaceDef: SpaceDef
  readonly partition: number
  readonly dir: string

  /** What the parts share; the store itself reads the status, index, memtable and WAL files. */
  private readonly ctx: PartitionContext
  private readonly damaged: DamageLog
  private readonly writer: PartitionWriter
  private readonly flusher: Flusher
  private readonly compactor: Compactor
  private readonly reader: PartitionReader
  private closing: Promise<void> | undefined
  /** Called when a read or a compaction finds a segment file damaged (the first time per file). */
  private readonly damageListeners = new Set<() => void>()
  /** Called once, when the store fails on a disk error (failure.ts). */
  private readonly failureListeners = new Set<(f: StoreFailure) => void>()

  readonly counters: StoreCounters = newStoreCounters()
  recovery!: RecoveryStats

  private constructor (deps: Required<Omit<PartitionDeps, 'dirs'>>, space: SpaceDef, partition: number, dir: string, opts: ResolvedPartitionOptions, hooks: StoreHooks, manifest: SegmentManifest) {
    this.spaceDef = space
    this.partition = partition
    this.dir = dir
    const log = deps.log.child({ space: space.name, uid: space.uid, partition })
    const status = new FailureStatus(log, () => deps.clock.wallNow(), f => { this.failed(f) })
    this.damaged = new DamageLog(deps.fs, deps.files, deps.clock, log)
    const ctx: PartitionContext = {
      dir,
      partition,
      space: () => this.spaceDef,
      clock: deps.clock,
      log,
      fs: deps.fs,
      files: deps.files,
      compactions: deps.compactions,
      io: deps.io,
      opts,
      hooks,
      counters: this.counters,
      status,
      index: new LiveIndex(() => this.spaceDef.schema, opts.digestCacheSize),
      memtable: new Memtable(opts),
      wal: new WalFiles(deps.fs, dir, deps.files, { now: () => deps.clock.now(), synced: ms => { this.counters.walFsyncs++; deps.io.walFsyncSeconds.observe(ms / 1000) } }),
      manifest,
      corruption: {
        report: err => { this.noteCorruption(err) },
        unreadable: seg => this.isUnreadable(seg)
      },
      repair: new RepairLog(deps.fs, dir, deps.files, deps.clock, log)
    }
    this.ctx = ctx
    // The compactor's failures are told apart from reads' (a disk fault fails the store as one of a compaction).
    this.compactor = new Compactor({ ...ctx, corruption: { ...ctx.corruption, report: err => { this.noteCorruption(err, 'compaction') } } }, async () => { await this.flusher.flush() })
    this.flusher = new Flusher({ ...ctx, maybeCompact: () => { this.compactor.maybeCompact() } })
    this.writer = new PartitionWriter({ ...ctx, flusher: this.flusher, compactor: this.compactor })
    this.reader = new PartitionReader(ctx)
  }

  get space (): SpaceDef { return this.spaceDef }

  /** Opens (creating or recovering) the partition stored in `dir`. */
  static async open (deps: PartitionDeps, space: SpaceDef, partition: number, dir: string, options: PartitionStoreOptions = {}, hooks: StoreHooks = {}): Promise<LocalPartitionStore> {
    const opts = resolvePartitionOptions(options)
    const t0 = deps.clock.now()
    const fs = deps.fs ?? nodeFileSystem
    const files = deps.files ?? new FilePool()
    // Directory fsyncs open descriptors: they hold a slot of the pool like every other open.
    await files.run(async () => { await (deps.dirs !== undefined ? deps.dirs.ensure(dir) : mkdirDurable(fs, dir)) })
    const cache = deps.cache ?? new BlockCache(OWN_CACHE_BYTES)
    const manifest = await SegmentManifest.read(fs, dir, files, cache)
    const compactions = deps.compactions ?? new CompactionSlots(1)
    const io = deps.io ?? newStorageIoStats()
    const store = new LocalPartitionStore({ ...deps, fs, files, cache, compactions, io }, space, partition, dir, opts, hooks, manifest)
    manifest.stateSource = () => store.ctx.index.savedState()
    try {
      store.recovery = await recover({ ...store.ctx, damage: store.damaged, rotate: async () => { await store.flusher.rotate() } }, t0)
      await store.ctx.repair.load(store.ctx.index.liveRows + store.ctx.index.tombstones > 0)
    } catch (err) {
      await store.closeSegments()
      // A segment listed in the manifest that fails its checks: the partition does not open (its
      // rows are not known, so nothing it would answer could be trusted), and the damage is
      // reported beside the file, for health and for the rebuild from the other replicas
      // (StorageEngine.rebuildPartition). The error, naming the file, goes to the caller.
      const c = segmentCorruption(err)
      if (c !== undefined) {
        store.damaged.segmentFound(c)
        await store.damaged.settled()
      }
      throw err
    }
    if (opts.compactionCheckIntervalMs > 0) store.compactor.scheduleChecks()
    return store
  }

  // ------------------------------------------------------------------------------ damage

  /**
   * The damage this replica has had (WAL files, segment files), while its report file is there (an
   * operator clears one by deleting it); each says whether other replicas have repaired it since.
   */
  damage (): DamageReport[] { return this.damaged.list() }

  /** Whether this replica holds damage that no sync with the other replicas has repaired yet. */
  needsRepair (): boolean {
    return this.damage().some(d => !d.repaired)
  }

  /**
   * Whether this replica still holds a damaged segment file: rows there cannot be read, and a
   * digest sync (ids and versions) would not see it, so repairing it means rebuilding the
   * replica from the other replicas (StorageEngine.rebuildPartition), not syncing it.
   */
  needsRebuild (): boolean {
    const f = this.ctx.status.failure
    return (f !== undefined && f.kind === 'io') || this.damage().some(d => d.kind === 'segment' && !d.repaired && d.movedTo === undefined)
  }

  // ------------------------------------------------------------------------------ disk failure

  /**
   * The disk failure that stopped this store, if one did (failure.ts): a WAL write or fsync, a
   * flush, a manifest swap, a compaction that met an I/O error. It then refuses writes and serves
   * what it holds; `no-space` heals by reopening the partition once the disk has room
   * (StorageEngine.reopenPartition), `io` by rebuilding it from the other replicas (needsRebuild).
   */
  failure (): StoreFailure | undefined { return this.ctx.status.failure }

  /** Calls `listener` once, when the store fails on a disk error; returns the unsubscribe. */
  onFailure (listener: (f: StoreFailure) => void): () => void {
    this.failureListeners.add(listener)
    return () => { this.failureListeners.delete(listener) }
  }

  private failed (f: StoreFailure): void {
    for (const l of [...this.failureListeners]) {
      try { l(f) } catch (e) { this.ctx.log.error({ err: e }, 'a failure listener failed') }
    }
  }

  /**
   * Calls `listener` when a read or a compaction finds a segment file damaged, the first time for
   * each file (a damaged file met again by later reads is the same damage). Returns the
   * unsubscribe. Replication takes the replica out of service then.
   */
  onDamage (listener: () => void): () => void {
    this.damageListeners.add(listener)
    return () => { this.damageListeners.delete(listener) }
  }

  /**
   * Records `err` if it is segment corruption (damage.ts): the report is held at once and written
   * beside the file, and the listeners hear of it; or fails the store if it is a device error
   * (failure.ts). A closed store's reads (one rebuilt meanwhile, whose directory is elsewhere now)
   * report nothing: its files are no longer this replica's.
   */
  private noteCorruption (err: unknown, operation: 'read' | 'compaction' = 'read'): void {
    if (this.ctx.status.closed) return
    // A device error met by a read or a compaction fails the store (it is rebuilt from the other
    // replicas). A compaction that runs out of space does not: its output is abandoned, the old
    // segments stay and nothing it promised is lost; the WAL meets a disk still full soon enough.
    if (isDiskFault(err) && !isNoSpace(err)) this.ctx.status.fail(err, operation)
    const c = segmentCorruption(err)
    if (c === undefined || !this.damaged.segmentFound(c)) return
    for (const l of [...this.damageListeners]) {
      try { l() } catch (e) { this.ctx.log.error({ err: e }, 'a damage listener failed') }
    }
  }

  private isUnreadable (seg: DiskSegment): boolean {
    const files = this.damaged.unreadableFiles()
    return files.size > 0 && (files.has(seg.path) || files.has(join(this.dir, seg.meta.index)))
  }

  /** Runs a read, recording the segment damage it meets (the error still goes to the caller). */
  private async guarded<T> (read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (err) {
      this.noteCorruption(err)
      throw err
    }
  }

  /**
   * Before a failed store is reopened (StorageEngine.reopenPartition): cuts the frames its WAL
   * files hold past what was durably written, so that recovery replays only durable records.
   * Throws while the disk refuses.
   */
  async cutUndurableWal (): Promise<void> { await this.ctx.wal.cutBrokenTails() }

  /**
   * Records that this replica has synced with every other replica since its damage was found (so
   * it holds again whatever they held); the reports stay, marked repaired.
   */
  async markRepaired (): Promise<void> { await this.damaged.markRepaired() }

  // ------------------------------------------------------------------------------ repair record

  /** What anti-entropy has established about this replica against the others (repair.ts). */
  repairRecord (): RepairRecord { return this.ctx.repair.record }

  /**
   * Records a completed sync or repair (horizons only move forward); resolves once durable. A
   * closed store records nothing: after a rebuild its directory holds another replica's record.
   */
  async recordRepair (update: RepairUpdate): Promise<void> {
    if (this.ctx.status.closed) return
    await this.ctx.repair.update(update)
  }

  /** Tombstones below this version may be dropped now (compaction's horizon). */
  purgeHorizon (): number { return purgeHorizon(this.ctx.clock.wallNow(), this.ctx.opts.tombstoneGraceMs, this.ctx.repair.record.repairedTo) }

  /** hlc(now - tombstoneGraceMs): no tombstone at or above it is purged. */
  graceHorizon (): number { return graceHorizon(this.ctx.clock.wallNow(), this.ctx.opts.tombstoneGraceMs) }

  // ------------------------------------------------------------------------------ writes

  async apply (records: readonly VersionedRecord[], packed?: PackedRecords): Promise<ApplyResult> {
    // A write looks its ids up in the segments' key indexes: a damaged block fails it too.
    return await this.guarded(async () => await this.writer.apply(records, packed))
  }

  /** Bytes of WAL behind the memtable (active and being flushed). */
  memtableBytes (): number { return this.ctx.memtable.bytes + this.ctx.memtable.frozenBytes }
  /** Bytes of WAL behind the active memtable only (not the one being flushed). */
  activeMemtableBytes (): number { return this.ctx.memtable.bytes }
  /** The active memtable's estimated heap (Memtable.heapBytes): what the engine's budget counts. */
  activeMemtableHeapBytes (): number { return this.ctx.memtable.heapBytes() }
  isFlushing (): boolean { return this.flusher.inFlight !== undefined }

  /**
   * Writes the memtable to a segment now (if not empty). Resolves when the segment is durable,
   * in the manifest, and the old WAL deleted. Concurrent calls share one flush.
   */
  flush (): Promise<void> { return this.flusher.flush() }

  /** Whether the compaction policy asks for a run now (of either kind, see compaction.ts). */
  compactionDue (): boolean { return this.compactor.due() }

  /**
   * Merges every segment into one, dropping dead rows and tombstones older than the grace period
   * (by their HLC's physical time against clock.wallNow()). Safe under concurrent apply():
   * writes landing meanwhile win over the rows being copied, decided again at the swap.
   */
  async compact (): Promise<CompactionResult> { return await this.guarded(async () => await this.compactor.compact()) }

  // ------------------------------------------------------------------------------ reads

  // Every read goes through guarded (or guardedIterable): one that meets a damaged segment block
  // fails naming the file, and the damage is recorded.

  async get (id: string): Promise<VersionedRecord | undefined> { return await this.guarded(async () => await this.reader.get(id)) }

  scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    return this.guardedIterable(this.reader.scan(opts))
  }

  /** The live rows as column batches, a snapshot taken by the call itself (see reads.ts). */
  batches (columns: readonly string[], opts?: BatchOptions): AsyncIterable<StoredBatch> { return this.guardedIterable(this.reader.batches(columns, opts)) }

  async digest (buckets = 64): Promise<PartitionDigest> { return await this.guarded(async () => await this.ctx.index.digest(buckets)) }

  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> { return await this.guarded(async () => await this.reader.bucket(index, buckets)) }

  /**
   * `source` with every step guarded. Its iterator is taken now, so a snapshot its call took
   * (batches) stays the call's; return() passes through (releasing the source's pins).
   */
  private guardedIterable<T> (source: AsyncIterable<T>): AsyncIterable<T> {
    const it = source[Symbol.asyncIterator]()
    const step = async (next: () => Promise<IteratorResult<T>>): Promise<IteratorResult<T>> => {
      try {
        return await next()
      } catch (err) {
        this.noteCorruption(err)
        throw err
      }
    }
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => await step(async () => await it.next()),
        return: async (value?: unknown) => await (it.return?.(value) ?? Promise.resolve({ done: true as const, value: undefined as T }))
      })
    }
  }

  /** The records a running flush is writing, if one runs (a test watches it to catch a flush in flight). */
  private get frozen (): VersionedRecord[] | undefined { return this.ctx.memtable.frozen }

  stats (): PartitionStats {
    const { index, memtable } = this.ctx
    let diskBytes = 0
    for (const s of index.segments.values()) diskBytes += s.diskBytes
    // Replayed WAL files not yet rotated away are counted in memBytes' share.
    const walBytes = Math.max(this.ctx.wal.bytes(), memtable.bytes + memtable.frozenBytes)
    return {
      liveRows: index.liveRows,
      tombstones: index.tombstones,
      memtableRows: memtable.records.length + (this.frozen?.length ?? 0),
      segments: index.segments.size,
      walBytes,
      diskBytes: diskBytes + walBytes
    }
  }

  // ------------------------------------------------------------------------------ lifecycle

  /**
   * Takes a new definition of the same space. Only appending nullable columns is allowed (the one
   * schema change a live space accepts): old segments and memtable rows read them as null.
   */
  updateSchema (space: SpaceDef): void {
    if (space.uid !== this.spaceDef.uid) throw new Error(`space uid ${space.uid} is not this store's (${this.spaceDef.uid})`)
    const old = this.spaceDef.schema
    const next = space.schema
    if (next.length < old.length) throw new Error(`schema of ${space.name} lost columns (${old.length} → ${next.length})`)
    for (let i = 0; i < old.length; i++) {
      const a = old[i]!
      const b = next[i]!
      if (a.name !== b.name || a.type !== b.type) throw new Error(`schema of ${space.name} changed column ${i} (${a.name}:${a.type} → ${b.name}:${b.type}); only adding nullable columns is allowed`)
    }
    for (let i = old.length; i < next.length; i++) {
      if (!next[i]!.nullable) throw new Error(`column ${next[i]!.name} added to ${space.name} must be nullable`)
    }
    this.spaceDef = space
  }

  /** Waits for in-flight writes, flushes and compactions, then closes the files. Idempotent. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.ctx.status.closed = true
      this.compactor.stop()
      await this.flusher.settled()
      await this.compactor.settled()
      await this.ctx.manifest.settled()
      await this.ctx.wal.close()
      await this.closeSegments()
      await this.damaged.settled()
      await this.ctx.repair.settled()
    })()
    return this.closing
  }

  /** Closes the segments' descriptors and drops their blocks from the cache. */
  private async closeSegments (): Promise<void> {
    for (const s of this.ctx.index.segments.values()) await s.close()
  }

  isClosed (): boolean { return this.ctx.status.closed }
}

/** Removes a partition directory entirely (dropSpace). */
export async function removeDir (fs: FileSystem, dir: string): Promise<void> {
  await fs.removeTree(dir)
}
