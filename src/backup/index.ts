/**
 * backup: an online, consistent backup of a whole cluster, and its restore into a cluster.
 *
 * A backup starts at T (the coordinating peer's HLC) and reads every partition after it as a
 * majority of the partition's replicas hold it, merged newest version first (snapshot.ts): the
 * merge holds every write acknowledged at QUORUM before T, as a QUORUM read would. Rows written
 * while it runs may be in it or not; a row updated after T is in it with its newer value (last
 * writer wins keeps no older versions to read "as of T"). The peer streams each partition as
 * NDJSON lines (format.ts); the CLI (src/cli/backup.ts) writes one file per partition, fsynced and
 * renamed into place, and the manifest, with every file's SHA-256, last (files.ts). A restore
 * (src/cli/restore.ts) checks every file against the manifest before it writes anything, creates
 * the spaces the cluster lacks, refuses one that exists with another schema, and writes the
 * records through replication's write path with their own versions (service.ts), so running it
 * again changes nothing and a row written in the cluster since is kept.
 *
 * ```ts
 * import { createBackupService, verifyBackup } from '../backup/index.js'
 * const backup = createBackupService({ transport, placement, detector, catalog, hlc, openLocal, write, isSynced, nameOf, log })
 * registerBackupApi(http, backup)               // GET /backup, GET /backup/spaces/:name/partitions/:p, POST /restore/...
 * const manifest = await verifyBackup('/backups/monday')   // BackupCorruptError naming the file
 * ```
 *
 * Files: format.ts (manifest, record lines, schema comparison), files.ts (atomic files, the
 * checks of a restore), plan.ts (what a restore does with each space), snapshot.ts (a partition merged from a majority), service.ts (the peer's
 * side), errors.ts.
 */
export {
  BACKUP_FORMAT, BACKUP_FORMAT_VERSION, MANIFEST_FILE, partitionFile, encodeRecordLine, checkRecordLine, parseManifest, schemaDifference
} from './format.js'
export type { BackupManifest, ManifestSpace, ManifestFile, MissingPartition, BackupBegin, StreamEnd, RecordLine } from './format.js'
export { AtomicFile, TEMP_SUFFIX, readManifest, sha256File, verifyBackup, verifyFile, writeManifest } from './files.js'
export { PartitionSnapshot, BucketTooLargeError, bucketCount, mergeNewest, MAX_BUCKETS } from './snapshot.js'
export type { ReplicaReader, SnapshotDeps, SnapshotOptions } from './snapshot.js'
export { planRestore } from './plan.js'
export type { ClusterSpace, RestorePlan } from './plan.js'
export { BackupService, BackupNotSyncedError, createBackupService, MAX_RESTORE_RECORDS } from './service.js'
export type { BackupServiceDeps, BackupServiceOptions, PeerBackupDeps, PartitionStream, RestoreOutcome } from './service.js'
export {
  PARTITION_UNAVAILABLE, BackupPartitionUnavailableError, BackupBusyError, BackupRequestError, BackupCorruptError, BackupSchemaConflictError
} from './errors.js'
export type { ReplicaFailure } from './errors.js'
