/** Every limit of the storage engine, with its unit, default and reason. */

export interface PartitionStoreOptions {
  /**
   * Records in a partition's memtable that trigger a flush to an Arrow segment. Records, default
   * 16,384: a restart replays the memtables from the WAL (about 5 µs a record) before a partition
   * answers, so this bounds restart time; segments stay large through compaction (size tiers of
   * 4x). With 50,000, a peer of 16 partitions killed mid-load replayed 500,000 records and took
   * 4.2 s to its first complete answer; with 16,384, 3.2 s, and it loaded faster (docs/benchmarks.md).
   */
  memtableMaxRows?: number
  /**
   * WAL bytes behind a partition's memtable that trigger a flush. Bytes, default 64 MiB: bounds
   * both memory and the WAL replayed after a crash (recovery time).
   */
  memtableMaxBytes?: number
  /**
   * How long a tombstone is kept after its version's physical time before compaction may drop it.
   * ms, default 10 days (Cassandra's gc_grace_seconds): a replica that was away for less than
   * this still learns of the delete through anti-entropy instead of resurrecting the row.
   */
  tombstoneGraceMs?: number
  /**
   * Segments in a partition above which compaction merges one size tier of them (see
   * Compactor.plan (compaction.ts)). Count, default 12: each get() is one map lookup
   * regardless, but scans and opens touch every file; with tiers four times apart, 12 leaves
   * room for three segments in each of four tiers.
   */
  compactionMaxSegments?: number
  /**
   * Fraction of dead rows (superseded or deleted) across segments above which compaction rewrites
   * them. Ratio, default 0.5: space amplification at most ~2×.
   */
  compactionDeadRatio?: number
  /**
   * How often the compaction policy is checked in the background (it is also checked after every
   * flush); this is what purges expired tombstones from idle partitions. ms, default 10 minutes;
   * 0 disables the timer.
   */
  compactionCheckIntervalMs?: number
  /**
   * Largest WAL frame (one apply() batch, encoded). Bytes, default 256 MiB: a header claiming
   * more is garbage, so recovery stops there instead of trying to read it.
   */
  maxFrameBytes?: number
  /** Read size when replaying the WAL. Bytes, default 8 MiB. */
  walReadChunkBytes?: number
  /**
   * Bucket counts whose digests are kept up to date incrementally (the most recently asked
   * for). Count, default 4: anti-entropy uses one or two; each costs 8 bytes per bucket.
   */
  digestCacheSize?: number
}

export type ResolvedPartitionOptions = Required<PartitionStoreOptions>

export const DEFAULT_PARTITION_OPTIONS: ResolvedPartitionOptions = {
  memtableMaxRows: 16_384,
  memtableMaxBytes: 64 << 20,
  tombstoneGraceMs: 10 * 24 * 3600 * 1000,
  compactionMaxSegments: 12,
  compactionDeadRatio: 0.5,
  compactionCheckIntervalMs: 10 * 60 * 1000,
  maxFrameBytes: 256 << 20,
  walReadChunkBytes: 8 << 20,
  digestCacheSize: 4
}

export interface StorageEngineOptions extends PartitionStoreOptions {
  /** The peer's data directory; partitions live under `<dataDir>/spaces/<space uid>/<partition>/`. */
  dataDir: string
  /**
   * The active memtables' estimated heap across all open partitions (their WAL bytes + 170 bytes a
   * record: Memtable.heapBytes) above which the largest memtable is flushed. Bytes, default
   * 64 MiB: with many partitions per peer the per-partition bounds alone would bound neither the
   * process nor the WAL a restart replays. Counted in heap, not WAL bytes: narrow records take
   * about five times their WAL bytes as objects.
   */
  memtableBudgetBytes?: number
  /**
   * Files storage holds open at once, across every partition: WAL handles kept open between
   * writes and segment files kept open between reads (an idle one is closed, least recently used
   * first, when the slot is needed, and reopened by its next write or read) plus files open for a
   * moment during recovery, flushes and compaction. Count, default 256: well under the usual `ulimit -n` of 1024, leaving the rest to
   * sockets; a peer needs this many descriptors for storage whatever its partition count.
   */
  maxOpenFiles?: number
  /**
   * Size of the peer's block cache (BlockCache): decoded column chunks and index blocks of
   * segments. MiB, default a quarter of the machine's memory, at most 4 GiB (the peer sets it;
   * a bare engine defaults to 64).
   */
  cacheMiB?: number
  /**
   * Compactions running at once across every partition (compaction-slots.ts: each holds rows of
   * its inputs in memory). Count, default half the cores, at least 1, at most 4.
   */
  maxConcurrentCompactions?: number
}

export function resolvePartitionOptions (opts: PartitionStoreOptions): ResolvedPartitionOptions {
  const out = { ...DEFAULT_PARTITION_OPTIONS }
  for (const key of Object.keys(DEFAULT_PARTITION_OPTIONS) as Array<keyof ResolvedPartitionOptions>) {
    const v = opts[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`storage option ${key} must be a non-negative number, got ${String(v)}`)
    out[key] = v
  }
  return out
}
