import type { Table } from 'apache-arrow'
/**
 * The shapes ShoalClient takes and gives, as the HTTP API defines them (src/http, docs/query.md,
 * docs/operations.md). Declared here rather than imported from the server's modules so a user of
 * the client compiles against this folder alone; test/unit/client-contract.test.ts checks at
 * compile time that they still match the server's.
 */

export type Consistency = 'one' | 'quorum' | 'all'

/** One column of a space's schema: an Arrow type name (utf8, int32, float64, bool, ...). */
export interface ColumnSpec {
  name: string
  type: string
  /** Default true. */
  nullable?: boolean
}

export interface CreateSpaceInput {
  name: string
  schema: ColumnSpec[]
  /** Default the server's (docs/operations.md). */
  partitions?: number
  /** Copies of each partition; default the server's. */
  replicas?: number
}

/** A space as GET /spaces shows it; more fields (placement, effectiveReplicas) may follow. */
export interface Space {
  name: string
  uid: string
  schema: Array<{ name: string, type: string, nullable: boolean }>
  partitions: number
  replicas: number
  [extra: string]: unknown
}

/** A record: `id` plus the space's columns. */
export type ShoalRecord = Record<string, unknown>

export interface WriteOptions {
  /** Default quorum. */
  consistency?: Consistency
  /** ms the coordinator waits for replicas (1 to 600,000); default the server's. */
  timeoutMs?: number
  /** A causality token: a `version` this client saw; the write is made newer than it. */
  after?: number
}

export interface ReadOptions {
  /** Default quorum. */
  consistency?: Consistency
  /** ms the coordinator waits for replicas (1 to 600,000); default the server's. */
  timeoutMs?: number
  /** A causality token: a `version` this client saw. */
  after?: number
}

/** The answer of a write: POST /spaces/:name/records. */
export interface WriteResult {
  written: number
  /** Records that lost to a newer version already on every replica that acknowledged them. */
  stale?: number
  staleIds?: string[]
  [extra: string]: unknown
}

/** GET /spaces/:name/records/:id: the record and its version (an HLC timestamp). */
export interface GetResult {
  record: ShoalRecord
  version: number
  /** Replicas a QUORUM or ALL read found stale and repaired on the way; absent when none. */
  repaired?: number
}

export interface DeleteResult {
  deleted: true
  version: number
}

export interface QueryOptions {
  /** Answer with what could be read when some partitions cannot be (coverage says what is missing). Default false. */
  allowPartial?: boolean
  /** ms the server spends on the query; the client waits this plus a margin. Default the server's. */
  timeoutMs?: number
  /** Queries read one replica per partition: only 'one' is accepted by the server. */
  consistency?: 'one'
}

export interface Coverage {
  total: number
  answered: number
  missing: Array<{ space: string, partition: number, reason: string }>
}

/** A completion's record: the given values and the filled ones, each filled column with how much its neighbours agree and how many hold the value. */
export interface Completion {
  record: Record<string, unknown>
  confidence: Record<string, number>
  support: Record<string, number>
}

export interface QueryResult {
  columns: Array<{ name: string, type: string }>
  rows: Array<Record<string, unknown>>
  /** A JSON query's aggregations (then there are no columns or rows). */
  aggregations?: Record<string, unknown>
  /** A completion query's filled record (docs/query.md). */
  completion?: Completion
  coverage: Coverage
  confidence: number
  tookMs: number
  /** The URL of the peer that coordinated the query (set by the client, not sent by the peer). */
  peer: string
}

/** Formats a query's rows can stream in, beside JSON. */
export type QueryStreamFormat = 'arrow' | 'ndjson'

export interface QueryStreamOptions extends QueryOptions {
  /** `arrow`: an Arrow IPC stream; `ndjson`: one JSON object a row. */
  format: QueryStreamFormat
  /** Stops the query's answer part way. */
  signal?: AbortSignal
}

/**
 * A query's rows as the peer streams them: the body's bytes unchanged, and how complete they are
 * (from the answer's `x-shoal-*` headers, known before the first byte).
 */
export interface QueryStream {
  contentType: string
  coverage: Coverage | undefined
  confidence: number | undefined
  tookMs: number | undefined
  /** The bytes as they arrive; an answer cut short throws INCOMPLETE_ANSWER. */
  body: AsyncIterable<Uint8Array>
}

/** A query's rows as an Arrow Table, with how complete they are (queryArrowResult). */
export interface ArrowQueryResult {
  table: Table
  /** From the answer's x-shoal-* headers; undefined only from a peer that sent none. */
  coverage: Coverage | undefined
  confidence: number | undefined
  tookMs: number | undefined
  /** The URL of the peer that coordinated the query. */
  peer: string
}

/** A JSON query (docs/query.md): `{space, query?, size?, aggs?, ...}`. */
export type JsonQuery = Record<string, unknown>

export interface ImportOptions {
  consistency?: Consistency
  /** Rows per request: default 5,000 (~1 MB of JSON, well under the server's 64 MiB body limit). */
  batchRows?: number
  /** Bytes of NDJSON per request at most: default 8 MiB. A batch is sent early when it would exceed it. */
  maxBatchBytes?: number
  /** ms per batch request; default 120,000 (a batch waits for its replicas). */
  timeoutMs?: number
  /** Called after each batch is acknowledged, with the rows written so far. */
  onProgress?: (written: number) => void
}

/** Options of putText: records already serialized, sent as they are. */
export interface PutTextOptions {
  /** How the text is framed; default a JSON array when it starts with `[`, else NDJSON. */
  format?: 'json' | 'ndjson'
  consistency?: Consistency
  /** ms the request waits, answer included; default 120,000 (a large body waits for its replicas). */
  timeoutMs?: number
}

export interface ImportResult {
  written: number
  batches: number
  stale: number
}

export interface Member {
  peerId: string
  name: string | null
  addrs: string[]
  http: string | null
  version: string | null
  state: 'alive' | 'suspect' | 'dead' | 'left'
  incarnation: number
  removed?: true
  leaving?: true
}

export interface Health {
  status: 'green' | 'yellow' | 'red'
  peer: string
  name: string
  addrs: string[]
  majority: boolean
  [extra: string]: unknown
}
