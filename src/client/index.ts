/**
 * client: a typed client of a Shoal cluster's HTTP API, for programs that use Shoal as a
 * database (docs/client.md). Keep-alive connections per client, failover over a list of peers,
 * and errors as classes with stable codes.
 *
 * ```ts
 * import { ShoalClient, ShoalError } from 'shoal'
 *
 * const shoal = new ShoalClient(['http://10.0.0.1:7947', 'http://10.0.0.2:7947'])
 * await shoal.createSpace({ name: 'people', schema: [{ name: 'name', type: 'utf8' }, { name: 'age', type: 'int32' }] })
 * await shoal.put('people', [{ id: 'p1', name: 'Ann', age: 30 }], { consistency: 'quorum' })
 * const { record, version } = (await shoal.get('people', 'p1'))!
 * const { rows, coverage } = await shoal.query('SELECT count(*) AS n FROM people')
 * shoal.close()
 * ```
 */
export { ShoalClient } from './client.js'
export type { ShoalClientOptions } from './client.js'
export { ShoalError, ShoalUnavailableError } from './errors.js'
export type { RowError, PeerAttempt, ShoalErrorInit } from './errors.js'
export { RETRY_ELSEWHERE_CODES, DEFAULT_TIMEOUT_MS } from './transport.js'
export type { RetryClass } from './transport.js'
export { DEFAULT_IMPORT_BATCH_ROWS, DEFAULT_IMPORT_MAX_BATCH_BYTES, DEFAULT_IMPORT_TIMEOUT_MS } from './import.js'
export type {
  ArrowQueryResult, Consistency, ColumnSpec, CreateSpaceInput, Space, ShoalRecord, WriteOptions, ReadOptions, WriteResult, GetResult,
  DeleteResult, QueryOptions, QueryResult, Completion, Coverage, JsonQuery, ImportOptions, ImportResult, Member, Health,
  PutTextOptions, QueryStreamFormat, QueryStreamOptions, QueryStream
} from './types.js'
export type {
  MemberState, ClusterPeerRow, ClusterSpaceRow, ClusterStatus, StatusOptions, RepairOptions, RepairReport, ClusterRepair,
  RemovePeerResult, DecommissionOptions, DecommissionSummary, DecommissionEvent, BackupBegin, BackupStreamOptions,
  RestoreOptions, RestoreResult, ExplainOptions, PeerWork, ExplainResult
} from './ops-types.js'
