/**
 * storage: each partition replica on this peer as a write-ahead log, a memtable and immutable
 * Arrow IPC segments, behind the PartitionStore contract (types.ts). apply() is last-writer-wins
 * on HLC versions and resolves once the batch is fsynced (concurrent calls share one fsync);
 * memtables flush to segments by size (per partition and across the engine); compaction drops
 * superseded rows and tombstones past their grace period and repaired on every replica (repair.ts);
 * recovery after kill -9 replays the WAL, truncating a torn tail, recovering every good frame
 * after a bad one (and reporting the damage), and refuses to open over a corrupt segment rather
 * than lose it (a damaged segment, found at open or by a read, is reported; replication rebuilds
 * such a replica from the others). Each
 * partition keeps per-bucket digests up to date on every write, for anti-entropy. Queries read the
 * live rows as column batches (columnar/): segment columns are read and decoded per record batch
 * on demand and kept in the peer's block cache (block-cache.ts).
 *
 * ```ts
 * const engine = new StorageEngine({ clock: new SystemClock(), log }, { dataDir: '/var/lib/shoal' })
 * const store = await engine.openPartition(space, 3)   // reads index headers and saved live bits, not rows
 * await store.apply([{ id: 'a', version: hlc.now(), deleted: false, row: { id: 'a', amount: 1.5 } }])
 * await store.get('a')            // newest version, tombstones included
 * (await store.digest(64)).root   // compare with a replica's; then await store.bucket(i, 64) to repair
 * for await (const batch of store.scan({ batchRecords: 1000 })) send(batch)
 * for await (const b of store.batches(['id', 'amount'])) sum(b.columns.get('amount')!) // a snapshot taken by the call
 * await engine.close()
 * ```
 *
 * On disk, under `<dataDir>/spaces/<space uid>/<partition>/`:
 * - `wal-<seq>.log`: a 32-byte header (magic, version, salt, twice), then frames `[u32 LE magic]
 *   [u32 LE CRC-32 of length + payload, salted][u32 LE length][payload]`, the payload msgpackr
 *   `[[id, version, deleted, row], ...]` or a coordinator's packed records as they came (wal.ts;
 *   files of the old format, without header and markers, are still read);
 * - `wal-<seq>.log.corrupt` and `.corrupt.json`: a damaged WAL file's original bytes and what
 *   was found in it (kept until an operator deletes them); `seg-<id>.arrow.corrupt.json` (or
 *   `.idx`): a segment file found damaged, and, in a replica rebuilt from the other replicas,
 *   `<n>.corrupt-<ms>-<report>` carrying the report of what was moved aside to
 *   `<partition dir>.corrupt-<ms>` (damage.ts);
 * - `seg-<id>.arrow`: Arrow IPC file of record batches (at most 65,536 rows each, rows in key
 *   order), the space's columns plus `$version` (float64) and `$deleted` (bool);
 * - `seg-<id>.idx`: the segment's batch directory (byte ranges, CRCs, zone maps of each column of
 *   each batch) and key index (Bloom filter, sparse index, blocks of keys): segment-file.ts. Rows
 *   are read from the `.arrow` file on demand through the peer's block cache (disk-segment.ts);
 * - `live-<n>.bin`: the id index's saved state as of the manifest that names it: each segment's
 *   live bits and counts, the digest accumulator (live-state.ts);
 * - `REPAIR`: JSON `{ format, since, repairedTo, synced: { <peer>: hlc } }`, what anti-entropy
 *   established about this copy (repair.ts): tombstones are purged only below both the grace
 *   period and `repairedTo`, the start of the last repair completed with every replica;
 * - `MANIFEST`: JSON `{ format, walFrom, nextSegment, segments: [{ id, file, rows, bytes, crc32,
 *   index, indexBytes, indexCrc32, batches }], live }` (an entry without `index` is a segment of
 *   the first format, one batch and no `.idx`, rewritten at open),
 *   replaced atomically (tmp, fsync, rename, fsync directory).
 */
export type { VersionedRecord, ApplyResult, PartitionDigest, PartitionStats, PartitionStore } from './types.js'
export { compareVersions } from './types.js'
export { DEFAULT_MEMTABLE_BUDGET_BYTES, SpaceDroppedError, StorageEngine, spaceDirName, type StoredDamage, type StoredFailure } from './engine.js'
export { LocalPartitionStore, StoreClosedError, StoreFailedError, MANIFEST_FILE, CORRUPT_COPY_SUFFIX, DAMAGE_REPORT_SUFFIX, isSegmentCorruption } from './partition.js'
export type { RecoveryStats, StoreCounters, CompactionResult, PartitionDeps, DamageReport, SegmentDamageReport, WalDamageReport, FailedOperation, StoreFailure } from './partition.js'
export { isDiskFault, isNoSpace, errnoCode } from './failure.js'
export { FilePool, DEFAULT_MAX_OPEN_FILES } from './files.js'
export { CompactionSlots, defaultMaxConcurrentCompactions } from './compaction-slots.js'
export { BlockCache, storedVectorBytes, defaultCacheMiB, type BlockCacheStats } from './block-cache.js'
export type { PartitionStoreOptions, StorageEngineOptions } from './options.js'
export { REPAIR_FILE, purgeHorizon, graceHorizon, wallHlc, parseRepairFile, type RepairRecord, type RepairUpdate } from './repair.js'
export type { RebuildReason } from './engine.js'
export { DEFAULT_PARTITION_OPTIONS } from './options.js'
export { SegmentCorruptError, segmentFileName } from './segment.js'
export { WalFailedError, walFileName, packRecords, unpackFlat } from './wal.js'
export type { PackedRecords, WalBadRegion } from './wal.js'
export { stableHash } from './hash.js'
export { crc32 } from './crc32.js'
