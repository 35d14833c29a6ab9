/**
 * The shapes of the operations endpoints ShoalClient speaks (docs/operations.md): cluster status
 * and repair, removing a dead peer, decommissioning one, backup and restore, and a query's
 * explanation. Declared here, like types.ts, so a program compiles against this folder alone;
 * test/unit/client-contract.test.ts checks them against the server's at compile time.
 */

import type { Consistency } from './types.js'

export type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

// ----------------------------------------------------------------------------- status

/** One peer's row of GET /cluster/status; figures are null when it was not asked or did not answer. */
export interface ClusterPeerRow {
  peerId: string
  name: string | null
  state: MemberState
  /** Whether it answered (a dead or left peer is not asked). */
  reachable: boolean
  /** Why it did not answer. */
  error?: string
  http: string | null
  version: string | null
  uptimeMs: number | null
  ready: boolean | null
  partitions: { held: number, ready: number } | null
  rows: number | null
  tombstones: number | null
  diskBytes: number | null
  hintsPending: number | null
}

/** One space's row of GET /cluster/status. */
export interface ClusterSpaceRow {
  name: string
  partitions: number
  /** Replicas asked for, and the fewest and most live (ready and reachable) of any partition. */
  replicas: { wanted: number, fewestLive: number, mostLive: number }
  partitionsShort: number
  /** Partitions with live replicas but fewer than a quorum. */
  belowQuorum: number[]
  /** Partitions with no live replica. */
  unavailable: number[]
  digests: { state: 'agree' | 'differ' | 'unknown', differing: number[], unknown: number[] }
}

/** GET /cluster/status: the whole cluster as the answering peer gathers it. */
export interface ClusterStatus {
  peer: string
  name: string
  at: string
  tookMs: number
  timeoutMs: number
  health: string
  majority: boolean
  peers: ClusterPeerRow[]
  spaces: ClusterSpaceRow[]
}

export interface StatusOptions {
  /** ms the answering peer waits for each other peer before listing it unreachable: 100 to 60,000, default 3,000 (the server's). */
  timeoutMs?: number
}

// ----------------------------------------------------------------------------- repair

export interface RepairOptions {
  /** Only this space; default every space. */
  space?: string
  /** ms each peer's part may take: 1,000 to 86,400,000, default 600,000 (the server's). */
  timeoutMs?: number
}

/** What one peer's part of a repair did. */
export interface RepairReport {
  partitions: number
  syncs: number
  syncsFailed: number
  bucketsCompared: number
  bucketsDiffering: number
  recordsPulled: number
  recordsPushed: number
  /** The failed syncs (at most 100). */
  failures: Array<{ space: string, partition: number, peer: string, error: string }>
  cancelled: boolean
}

/** POST /cluster/repair: anti-entropy run now on every live peer. */
export interface ClusterRepair {
  peer: string
  name: string
  /** The spaces repaired; null: every space. */
  spaces: string[] | null
  tookMs: number
  /** True when every peer asked ran its part and every sync completed. */
  ok: boolean
  peers: Array<{ peerId: string, name: string | null, ok: boolean, error?: string, report?: RepairReport }>
  /** Members not asked: dead or left. */
  notAsked: Array<{ peerId: string, name: string | null, state: MemberState }>
  totals: Omit<RepairReport, 'failures' | 'cancelled'>
}

// ----------------------------------------------------------------------------- remove, decommission

/** POST /cluster/remove: what removing a dead peer gives up, and whether it was removed. */
export interface RemovePeerResult {
  peerId: string
  name: string | null
  state: MemberState
  removed: boolean
  /** Partitions whose only ready copies were on the peer: removing it gives their data up. */
  givesUp: Array<{ space: string, partition: number }>
  message: string
}

export interface DecommissionOptions {
  /** ms to wait for the next owners to be ready; default the peer's decommissionTimeoutMs. */
  timeoutMs?: number
}

/** The last event of a decommission: what was handed off, what was not and why, and whether the peer left. */
export interface DecommissionSummary {
  event: 'done'
  complete: boolean
  left: boolean
  total: number
  handedOff: number
  notHandedOff: Array<{ space: string, partition: number, reason: string, otherReplicas: string[] }>
  finalSync?: { partitions: number, failed: Array<{ space: string, partition: number, reason: string }> }
  tookMs: number
  message: string
}

/** One step of a decommission, as POST /admin/decommission streams it. */
export type DecommissionEvent =
  | { event: 'started', peer: string, name: string, partitions: number, timeoutMs: number }
  | { event: 'handed-off', space: string, partition: number, to: string[], recordsPushed: number, done: number, total: number }
  | { event: 'waiting', done: number, total: number, elapsedMs: number, pending: Array<{ space: string, partition: number, reason: string }> }
  | { event: 'leaving', complete: boolean }
  | DecommissionSummary
  | { event: 'error', message: string }

// ----------------------------------------------------------------------------- backup, restore

/** GET /backup: the backup's start (an HLC timestamp and its time) and the catalog then. */
export interface BackupBegin {
  startHlc: number
  startTime: string
  version: string
  spaces: Array<{ name: string, uid: string, schema: Array<{ name: string, type: string, nullable: boolean }>, partitions: number, replicas: number }>
}

export interface BackupStreamOptions {
  /** Stops the stream (the peer stops reading its replicas). */
  signal?: AbortSignal
}

export interface RestoreOptions {
  consistency?: Consistency
  /** ms the request waits, answer included; default 120,000 (a batch waits for its replicas). */
  timeoutMs?: number
}

/** POST /restore/spaces/:name/records: records written, and those older than what the cluster holds. */
export interface RestoreResult {
  written: number
  stale: number
}

// ----------------------------------------------------------------------------- explain

export interface ExplainOptions {
  /** Run the query and report what each peer did. Default false. */
  analyze?: boolean
  /** ms the server spends on an analyzed query; the client waits this plus a margin. */
  timeoutMs?: number
}

/** One peer's work in an analyzed query; more figures (waitMs, readMs, ...) may follow. */
export interface PeerWork {
  peer: string
  name: string | null
  partitions: number
  rows: number
  bytes: number
  ms: number
  roundTripMs?: number
  mergeMs?: number
}

/** POST /query/explain: the plan as text and data; with `analyze`, who did what. */
export interface ExplainResult {
  text: string
  plan: Record<string, unknown>
  analyze?: {
    peers: PeerWork[]
    tookMs: number
    stages?: { parseMs: number, planMs: number, scatterMs: number, mergeMs: number, finishMs: number, gcMs: number }
  }
}
