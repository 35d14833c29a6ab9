/**
 * replication: any peer coordinates writes and reads of any partition. A write stamps every
 * record with an HLC version, groups the records by partition and sends each group to the
 * partition's write replicas in parallel (the local replica directly), answering once every
 * partition met the consistency level: ONE (any write replica), QUORUM (default: a majority of
 * the owners, pending ones counting, and a majority of the ready replicas; see writeLevel in
 * quorum.ts) or ALL (every write replica). When the partition detector
 * says a level cannot be met it fails fast with PartitionUnavailableError, before anything is
 * sent; when replicas fail it throws WriteIncompleteError naming the partitions that fell short
 * (their rows may be on some replicas). Replicas that failed get a hint, kept by the coordinator
 * (bounded by bytes and by a 3 h window; in hint files under the data directory when the peer
 * passes them, see hint-log.ts) and replayed, per partition in order, when the replica is alive
 * again.
 * Reads at QUORUM ask the same two majorities (readLevel), at ALL every ready replica; they compare versions (last writer wins, compareVersions) and repair stale
 * replicas before answering; background anti-entropy compares partition digests with another
 * replica and exchanges the differing buckets; when placement moves a partition to this peer it
 * streams the partition from the ready replicas before marking it ready, and a partition this
 * peer no longer owns is pushed to its owners, released, and dropped after a grace period.
 *
 * ```ts
 * import { Replicator } from '../replication/index.js'
 * const replicator = new Replicator({ transport, clock, random, hlc, log, placement, stores, detector, membership: swim },
 *   { antiEntropyIntervalMs: 60_000 })
 * replicator.start()
 * await replicator.write(space, [{ id: 'a', amount: 1.5 }], { consistency: 'quorum' })
 * const { record } = await replicator.read(space, 'a', { consistency: 'quorum' })
 * await replicator.remove(space, ['a'])
 * replicator.stats().hints            // { written, delivered, dropped, pending, ... }
 * replicator.stop()
 * ```
 *
 * RPC methods (bodies validated on receipt, refused with code BAD_REQUEST): repl.write,
 * repl.read, repl.digest, repl.bucket and the stream repl.scan; shapes in wire.ts.
 *
 * Files: replicator.ts composes the parts and is the API; write.ts, read.ts, hints.ts,
 * replica.ts, ownership.ts and anti-entropy.ts are one job each; quorum.ts says who must answer
 * a write or a read at each level; context.ts is what they share
 * (views of other layers, lifecycle, counters), local-replicas.ts this peer's replicas and which
 * are ready, options.ts the options, wire.ts the messages, errors.ts the errors; on-demand.ts is
 * anti-entropy run now for `shoal repair` (Replicator.repairNow); decommission.ts hands this peer's
 * partitions to their next owners before it leaves (Replicator.handOff, finishHandOff).
 */
export { Replicator } from './replicator.js'
export type { ReplicatorDeps, ReplicationStats } from './replicator.js'
export { DEFAULT_REPLICATOR_OPTIONS } from './options.js'
export type { ReplicatorOptions } from './options.js'
export type { StoreProvider, ReachabilityView, MembershipEvents } from './context.js'
export type { WriteOptions, WriteResult } from './write.js'
export type { RepairReport, RepairRequest, RepairFailure } from './on-demand.js'
export type { HandOffEvent, HandOffOptions, HandOffReport, FinalSyncReport, NotHandedOff, PendingPartition } from './decommission.js'
export { MAX_REPORTED_FAILURES } from './on-demand.js'
export type { ReadOptions, ReadResult } from './read.js'
export { readLevel, writeLevel, shortGroup } from './quorum.js'
export type { AckGroup, ReadLevel, WriteLevel } from './quorum.js'
export { PartitionUnavailableError, WriteIncompleteError, ReadIncompleteError, InvalidRowsError, ReplicaRequestError, NotSyncedError } from './errors.js'
export type { Consistency, PartitionWriteOutcome } from './errors.js'
export { HintStore } from './hints.js'
export type { Hint, HintStats } from './hints.js'
export { HintLog, DEFAULT_HINT_FILE_BYTES, hintFileBytesFor } from './hint-log.js'
export type { HintLogLoad, HintLogOptions } from './hint-log.js'
export {
  METHOD_WRITE, METHOD_READ, METHOD_DIGEST, METHOD_BUCKET, METHOD_SCAN, MAX_RECORDS_PER_MESSAGE,
  parseWriteRequest, parseRecord, parseSpace, chunkRecords, packRecords, parseDigestAnswer, parseRecordsAnswer
} from './wire.js'
