/**
 * The named failures of backup and restore. Callers (HTTP, the CLI, tests) match them by `name`
 * or `code`, never by message; each carries what an operator needs to act: the file, the space,
 * the partition and the replicas tried.
 */

/** One replica asked for a partition's records, and why it did not answer. */
export interface ReplicaFailure { peer: string, error: string }

/** The code of BackupPartitionUnavailableError (HTTP 503, or a stream's error trailer). */
export const PARTITION_UNAVAILABLE = 'PARTITION_UNAVAILABLE'

/**
 * Fewer than a majority of a partition's ready replicas, or of its owners, answered, so a
 * snapshot of it could miss a write acknowledged at QUORUM (it may sit on the other majority):
 * the partition is not backed up. HTTP answers 503 PARTITION_UNAVAILABLE naming it.
 */
export class BackupPartitionUnavailableError extends Error {
  override name = 'BackupPartitionUnavailableError'
  readonly code = PARTITION_UNAVAILABLE
  constructor (
    readonly space: string,
    readonly partition: number,
    readonly needed: number,
    readonly answered: number,
    readonly tried: ReplicaFailure[],
    /** The group that fell short: the partition's ready replicas, or its owners (ready or catching up). */
    readonly among: 'replicas' | 'owners' = 'replicas'
  ) {
    super(`partition ${partition} of space '${space}' cannot be backed up consistently: ${answered} of the ${needed} ${among} needed (a majority) answered` +
      (tried.length > 0 ? ` (${tried.slice(0, 5).map(t => `${t.peer}: ${t.error}`).join('; ')})` : ''))
  }
}

/** The peer already serves as many backup streams as it allows (BackupServiceOptions.maxStreams). */
export class BackupBusyError extends Error {
  override name = 'BackupBusyError'
  readonly code = 'BUSY'
  constructor (readonly maxStreams: number) {
    super(`this peer already serves ${maxStreams} backup streams, its limit; retry, or lower --concurrency`)
  }
}

/** A restore request that is malformed as a whole (not one bad record: those are listed as row errors). */
export class BackupRequestError extends Error {
  override name = 'BackupRequestError'
  constructor (readonly code: 'BAD_REQUEST' | 'BAD_PARTITION' | 'TOO_MANY_RECORDS', message: string) {
    super(message)
  }
}

/**
 * A backup directory that cannot be trusted: its manifest is missing or malformed, or a file is
 * missing, truncated, longer than written, or has another checksum than the manifest says.
 * `file` is the path relative to the backup directory ('manifest.json' for the manifest).
 */
export class BackupCorruptError extends Error {
  override name = 'BackupCorruptError'
  readonly code = 'BACKUP_CORRUPT'
  constructor (readonly file: string, readonly reason: string) {
    super(`backup file ${file} ${reason}`)
  }
}

/**
 * Spaces of the backup exist in the target cluster with another schema: restoring into them
 * would refuse rows or mix two meanings of one column. `conflicts` names every such space and
 * how its columns differ; `space` and `difference` are the first.
 */
export class BackupSchemaConflictError extends Error {
  override name = 'BackupSchemaConflictError'
  readonly code = 'SCHEMA_CONFLICT'
  readonly space: string
  readonly difference: string
  constructor (readonly conflicts: ReadonlyArray<{ space: string, difference: string }>) {
    super(conflicts.map(c => `space '${c.space}' exists in the cluster with another schema than in the backup: ${c.difference}`).join('\n'))
    if (conflicts.length === 0) throw new Error('BackupSchemaConflictError needs at least one conflict')
    this.space = conflicts[0]!.space
    this.difference = conflicts[0]!.difference
  }
}
