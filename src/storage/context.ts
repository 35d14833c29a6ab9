/**
 * What the parts of a partition store share. partition.ts builds one PartitionContext per store:
 * where it lives, the environment (clock, log, file pool), the resolved options, the counters
 * stats report, and the owners of its state (the live index, the memtable, the WAL files, the
 * manifest). Each part declares, by Pick, the slice it uses, so its dependencies show in its type
 * and a test could hand it just those (as src/replication/context.ts does for the replicator).
 */
import { Histogram, type Clock, type FileSystem, type Logger } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { BlockCache } from './block-cache.js'
import type { CompactionSlots } from './compaction-slots.js'
import type { DiskSegment } from './disk-segment.js'
import type { FailedOperation, StoreFailure } from './failure.js'
import type { FilePool } from './files.js'
import type { DurableDirs } from './fsutil.js'
import type { LiveIndex } from './live-index.js'
import type { SegmentManifest } from './manifest.js'
import type { Memtable } from './memtable.js'
import type { RepairLog } from './repair.js'
import type { ResolvedPartitionOptions } from './options.js'
import type { WalFiles } from './wal-files.js'

export interface StoreCounters {
  applyCalls: number
  applied: number
  stale: number
  walFrames: number
  walFsyncs: number
  flushes: number
  compactions: number
  /** Rows written again by compactions (write amplification: compare with `applied`). */
  rowsRewritten: number
  tombstonesPurged: number
  /** Stored batches that query snapshots read, and those their zone maps let them skip. */
  batchesRead: number
  batchesSkipped: number
}

export function newStoreCounters (): StoreCounters {
  return { applyCalls: 0, applied: 0, stale: 0, walFrames: 0, walFsyncs: 0, flushes: 0, compactions: 0, rowsRewritten: 0, tombstonesPurged: 0, batchesRead: 0, batchesSkipped: 0 }
}

/**
 * Peer-wide storage figures for /metrics, shared by every store the engine opens: a store's own
 * counters go when it closes or is dropped, these only grow. WAL fsync durations (seconds, each
 * group commit's fdatasync), and compactions with the segment bytes they read and wrote.
 */
export interface StorageIoStats {
  readonly walFsyncSeconds: Histogram
  compactions: number
  compactionBytesRead: number
  compactionBytesWritten: number
}

export function newStorageIoStats (): StorageIoStats {
  return { walFsyncSeconds: new Histogram(), compactions: 0, compactionBytesRead: 0, compactionBytesWritten: 0 }
}

export interface PartitionDeps {
  clock: Clock
  log: Logger
  /** Where the files live: node:fs for a real peer (the default), a simulated disk in tests. */
  fs?: FileSystem
  /**
   * The engine's record of durable directories under its data directory (fsutil.ts DurableDirs):
   * opening a store makes its directory durable through it. Without it, only the directories the
   * open creates are synced.
   */
  dirs?: DurableDirs
  /** The peer's bound on open files; a store opened without one gets a pool of its own. */
  files?: FilePool
  /** The peer's cache of segment blocks; a store opened without one gets a small one of its own. */
  cache?: BlockCache
  /** The peer's bound on compactions at once; a store opened without one runs one at a time. */
  compactions?: CompactionSlots
  /** The peer's storage figures; a store opened without them keeps its own. */
  io?: StorageIoStats
}

/** The engine's hooks into a store (memtable budget). */
export interface StoreHooks {
  onMemtableGrowth?: () => void
}

/**
 * Whether the store still takes work: closed by close(), failed by a disk write, fsync, flush or
 * manifest swap that did not complete (then writes are refused until a reopen lets recovery decide
 * what is durable, or a rebuild replaces the replica). Background work (flush, compaction) checks
 * it before starting. failure.ts's FailureStatus is the one implementation: the first failure is
 * recorded, classified, logged once and heard by the store's listeners.
 */
export interface StoreStatus {
  closed: boolean
  readonly failed: Error | undefined
  /** The first failure, classified (failure.ts). */
  readonly failure: StoreFailure | undefined
  /** Records a failure of `operation` on `path` (the first one only). */
  fail(err: unknown, operation: FailedOperation, path?: string): void
}

/**
 * Where a part reports a read that failed on a damaged segment (damage.ts): `report` takes any
 * error and records it when it is segment corruption (once per file; the store then leaves
 * service, see LocalPartitionStore.onDamage); `unreadable` says whether a segment's files are
 * known damaged (compaction leaves those out: merging them would fail at the same block).
 */
export interface CorruptionSink {
  report(err: unknown): void
  unreadable(segment: DiskSegment): boolean
}

/** Everything the parts of a store may ask for; a part takes a Pick of it, never the store. */
export interface PartitionContext {
  readonly dir: string
  readonly partition: number
  /** The space's current definition (updateSchema may append nullable columns). */
  readonly space: () => SpaceDef
  readonly clock: Clock
  readonly log: Logger
  readonly fs: FileSystem
  readonly files: FilePool
  readonly compactions: CompactionSlots
  readonly io: StorageIoStats
  readonly opts: ResolvedPartitionOptions
  readonly hooks: StoreHooks
  readonly counters: StoreCounters
  readonly status: StoreStatus
  readonly index: LiveIndex
  readonly memtable: Memtable
  readonly wal: WalFiles
  readonly manifest: SegmentManifest
  readonly corruption: CorruptionSink
  /** The replica's repair record (repair.ts): compaction purges tombstones by it. */
  readonly repair: RepairLog
}
