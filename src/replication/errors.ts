/**
 * The named failures of replication. Callers (HTTP, query) match them by `name` or `code`.
 */
import type { Hlc } from '../hlc/index.js'

export type Consistency = 'one' | 'quorum' | 'all'

/**
 * The detector says the replicas a level needs cannot be reached from here, so nothing was sent
 * (fail fast, before any replica was written). HTTP maps it to 503 naming the partition.
 */
export class PartitionUnavailableError extends Error {
  override name = 'PartitionUnavailableError'
  readonly code = 'PARTITION_UNAVAILABLE'
  constructor (
    readonly space: string,
    readonly partition: number,
    readonly needed: number,
    readonly reachable: number,
    readonly consistency: Consistency,
    readonly operation: 'write' | 'read'
  ) {
    super(`partition ${partition} of space '${space}' is unavailable for a ${consistency.toUpperCase()} ${operation}: ` +
      `needs ${needed} replica(s), ${reachable} reachable from this peer; nothing was ${operation === 'write' ? 'written' : 'read'}`)
  }
}

/** What happened to one partition's rows in a write. */
export interface PartitionWriteOutcome {
  partition: number
  rows: number
  /**
   * Acknowledgements counted and the fewest that meet the level. When the partition fell short
   * (met false): those of the first group of replicas that must acknowledge (owners, ready
   * replicas) and was not met.
   */
  acks: number
  needed: number
  /** Replicas that got a hint (failed, timed out or unreachable) by the time the write answered. */
  hinted: number
  /** Whether the partition met the consistency level. */
  met: boolean
  /** Why replicas failed, e.g. 'p2: TIMEOUT'. */
  errors: string[]
  /**
   * Ids of this partition's records that every replica which acknowledged the write by the time
   * it answered already held in a newer version: the write lost to them (see WriteResult.stale).
   */
  staleIds?: string[]
}

/**
 * Some partitions of a write did not reach their consistency level. Their rows MAY have been
 * applied on some replicas (and hinted for others), so the write is neither done nor undone: the
 * caller should retry it (writes are idempotent by id, newest version wins).
 */
export class WriteIncompleteError extends Error {
  override name = 'WriteIncompleteError'
  readonly code = 'WRITE_INCOMPLETE'
  constructor (readonly space: string, readonly consistency: Consistency, readonly outcomes: PartitionWriteOutcome[]) {
    const failed = outcomes.filter(o => !o.met)
    const met = outcomes.filter(o => o.met)
    super(`write to space '${space}' did not reach ${consistency.toUpperCase()} on ${failed.length} of ${outcomes.length} partition(s): ` +
      failed.map(o => `partition ${o.partition} (${o.rows} rows) got ${o.acks}/${o.needed} acks${o.errors.length > 0 ? ` [${o.errors.slice(0, 3).join('; ')}]` : ''}`).join(', ') +
      `. Rows of those partitions may have been applied on some replicas; retry the write. ` +
      (met.length > 0 ? `Partitions ${met.map(o => o.partition).join(', ')} met the level.` : 'No partition met the level.'))
  }
}

/** Fewer replicas than the level needs answered a read (or accepted its read repair). */
export class ReadIncompleteError extends Error {
  override name = 'ReadIncompleteError'
  readonly code = 'READ_INCOMPLETE'
  constructor (readonly space: string, readonly partition: number, readonly consistency: Consistency, readonly needed: number, readonly responded: number, detail: string) {
    super(`read of partition ${partition} of space '${space}' at ${consistency.toUpperCase()} needs ${needed} replica(s), ${responded} answered: ${detail}`)
  }
}

/**
 * This peer has not exchanged state with its cluster since it started (it is restarting and has
 * not reached anyone yet): its view of owners and data may be stale, so it coordinates nothing.
 */
export class NotSyncedError extends Error {
  override name = 'NotSyncedError'
  readonly code = 'NOT_SYNCED'
  constructor (readonly space: string, readonly operation: 'write' | 'read') {
    super(`this peer has not reached its cluster since it started, so it does not coordinate a ${operation} of space '${space}' yet; nothing was ${operation === 'write' ? 'written' : 'read'}. Retry, or ask another peer`)
  }
}

/** The rows given to write() do not fit the space's schema; nothing was written. */
export class InvalidRowsError extends Error {
  override name = 'InvalidRowsError'
  readonly code = 'INVALID_ROWS'
  constructor (readonly space: string, readonly errors: Array<{ row: number, field: string, message: string }>) {
    super(`space '${space}': ${errors.slice(0, 5).map(e => `row ${e.row}${e.field !== '' ? ` field '${e.field}'` : ''}: ${e.message}`).join('; ')}${errors.length > 5 ? ` (and ${errors.length - 5} more)` : ''}`)
  }
}

/** Thrown by replica handlers; the transport carries `code` to the caller as a RemoteError. */
export class ReplicaRequestError extends Error {
  override name = 'ReplicaRequestError'
  constructor (readonly code: 'BAD_REQUEST' | 'CLOCK_SKEW' | 'STOPPED' | 'STORE_FAILED' | 'NOT_HELD' | 'STALE_REPLICA' | 'SPACE_GONE', message: string, readonly remote?: Hlc) {
    super(message)
  }
}
