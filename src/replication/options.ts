/**
 * The replicator's options, each with its unit, default and source, and the check that refuses a
 * bad value when the replicator is built (a zero batch size or concurrency would stall a loop
 * forever; better a RangeError at start-up than a peer that never catches up).
 */

export interface ReplicatorOptions {
  /** Deadline of a write or read (every request in it) when the caller gives none. ms, default 5000. */
  requestTimeoutMs?: number
  /** Records per repl.write request; larger batches are split. Default 5000. */
  maxBatchRecords?: number
  /** Estimated bytes per repl.write request (below the 8 MiB RPC frame limit). Default 2 MiB. */
  maxBatchBytes?: number
  /** Total bytes of hints held for all targets. Default 64 MiB. */
  hintMaxBytes?: number
  /** Hints older than this are dropped (counted); anti-entropy covers them. ms, default 3 h (Cassandra's max_hint_window). */
  hintWindowMs?: number
  /** Period of hint replay to reachable targets (besides replay on 'alive'). ms, default 10000. */
  hintReplayIntervalMs?: number
  /** Targets replayed at once. Default 2. */
  hintReplayConcurrency?: number
  /** Mean period of anti-entropy rounds (jittered ±50 %); 0 disables. ms, default 60000. */
  antiEntropyIntervalMs?: number
  /** Partitions synchronised at once by anti-entropy. Default 1. */
  antiEntropyConcurrency?: number
  /** Differing buckets repaired per partition per round. Default 64. */
  antiEntropyMaxBuckets?: number
  /** Concurrent ownership catch-ups. Default 1 (at most 2 recommended). */
  catchUpConcurrency?: number
  /** Deadline of streaming one partition from one source. ms, default 600000. */
  catchUpTimeoutMs?: number
  /** Wait before retrying a failed catch-up. ms, default 5000. */
  catchUpRetryMs?: number
  /** Records per repl.scan batch. Default 1000. */
  scanBatchRecords?: number
  /** After a released partition is marked released, wait this long before dropping its store. ms, default 60000. */
  releaseGraceMs?: number
  /** Period of the ownership reconcile (also run on every placement change). ms, default 5000. */
  reconcileIntervalMs?: number
  /**
   * A QUORUM or ALL read asks only as many replicas as it needs; when they have not all answered
   * after this long, it asks the remaining ones too. ms, default 20.
   */
  readSpeculativeMs?: number
  /**
   * A replica that failed for want of space (a full disk) probes its disk (a write and an fsync)
   * this long after it failed, and is reopened once one succeeds; each failed probe doubles the
   * wait, up to diskProbeMaxMs. ms, default 1000.
   */
  diskProbeMinMs?: number
  /** The longest wait between two probes of a full disk (see diskProbeMinMs). ms, default 30000. */
  diskProbeMaxMs?: number
}

/** Options with every default filled in: what the parts of the replicator read. */
export type ResolvedReplicatorOptions = Readonly<Required<ReplicatorOptions>>

export const DEFAULT_REPLICATOR_OPTIONS: ResolvedReplicatorOptions = {
  requestTimeoutMs: 5000,
  maxBatchRecords: 5000,
  maxBatchBytes: 2 * 1024 * 1024,
  hintMaxBytes: 64 * 1024 * 1024,
  hintWindowMs: 3 * 3600 * 1000,
  hintReplayIntervalMs: 10_000,
  hintReplayConcurrency: 2,
  antiEntropyIntervalMs: 60_000,
  antiEntropyConcurrency: 1,
  antiEntropyMaxBuckets: 64,
  catchUpConcurrency: 1,
  catchUpTimeoutMs: 600_000,
  catchUpRetryMs: 5000,
  scanBatchRecords: 1000,
  releaseGraceMs: 60_000,
  reconcileIntervalMs: 5000,
  readSpeculativeMs: 20,
  diskProbeMinMs: 1000,
  diskProbeMaxMs: 30_000
}

/** Fills in the defaults (an undefined option is absent) and refuses a negative, non-finite or zero-where-it-stalls value. */
export function resolveReplicatorOptions (options: ReplicatorOptions): ResolvedReplicatorOptions {
  const opts = { ...DEFAULT_REPLICATOR_OPTIONS }
  for (const [k, v] of Object.entries(options)) if (v !== undefined) (opts as Record<string, unknown>)[k] = v
  for (const [k, v] of Object.entries(opts)) {
    if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new RangeError(`replication option ${k} must be a finite number >= 0, got ${String(v)}`)
  }
  for (const k of ['maxBatchRecords', 'maxBatchBytes', 'hintReplayConcurrency', 'antiEntropyConcurrency', 'antiEntropyMaxBuckets', 'catchUpConcurrency', 'scanBatchRecords', 'diskProbeMinMs'] as const) {
    if (opts[k] < 1) throw new RangeError(`replication option ${k} must be >= 1`)
  }
  if (opts.diskProbeMaxMs < opts.diskProbeMinMs) throw new RangeError('replication option diskProbeMaxMs must be >= diskProbeMinMs')
  return opts
}
