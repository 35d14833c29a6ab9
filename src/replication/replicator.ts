/**
 * The replicator: write and read coordinator, replica-side handlers, hinted handoff, read repair,
 * anti-entropy and ownership moves. See index.ts for the overview.
 */
import { ClockSkewError } from '../hlc/index.js'
import type { HybridClock, Hlc } from '../hlc/index.js'
import type { MemberEvent } from '../membership/index.js'
import type { Placement, PartitionPlacement } from '../placement/index.js'
import type { Clock, EncodedBody, Logger, PeerAddress, PeerId, Random, RequestContext, Timer, Transport } from '../runtime/index.js'
import { validateRows, MAX_ID_LENGTH } from '../schema/index.js'
import type { Row, SpaceDef } from '../schema/index.js'
import { compareVersions } from '../storage/index.js'
import type { PackedRecords, PartitionStore, VersionedRecord } from '../storage/index.js'
import {
  InvalidRowsError, NotSyncedError, PartitionUnavailableError, ReadIncompleteError, ReplicaRequestError, WriteIncompleteError
} from './errors.js'
import type { Consistency, PartitionWriteOutcome } from './errors.js'
import { HintStore } from './hints.js'
import type { Hint, HintStats } from './hints.js'
import {
  chunkRecords, maxVersion, METHOD_BUCKET, METHOD_DIGEST, METHOD_READ, METHOD_SCAN, METHOD_WRITE, parseBucketRequest,
  parseDigestAnswer, parseDigestRequest, parseReadAnswer, parseReadRequest, parseRecordsAnswer, parseScanRequest,
  packRecords, parseWriteAnswer, parseWriteRequest, recordBytes
} from './wire.js'

/** Opens (creating if needed) this peer's replica of a partition; the real one wraps storage. */
export interface StoreProvider {
  open(space: SpaceDef, partition: number): Promise<PartitionStore>
  /** Deletes this peer's replica once it was handed off. Optional: without it data is kept. */
  drop?(space: SpaceDef, partition: number): Promise<void>
}

/** What replication needs of the partition detector (PartitionDetector satisfies it). */
export interface ReachabilityView {
  isReachable(peerId: PeerId): boolean
  quorumReachable(replicas: readonly PeerId[], needed: number): boolean
}

/** What replication needs of membership (Swim satisfies it): 'alive' / 'join' events replay hints. */
export interface MembershipEvents {
  onChange(listener: (ev: MemberEvent) => void): () => void
  /**
   * Whether membership has exchanged state with the cluster since start (Swim.hasSynced). Until
   * then this peer neither catches up nor marks partitions ready, and refuses to coordinate:
   * its view is only itself. Default: always synced.
   */
  hasSynced?(): boolean
}

export interface ReplicatorDeps {
  transport: Transport
  clock: Clock
  random: Random
  hlc: HybridClock
  log: Logger
  placement: Placement
  stores: StoreProvider
  detector: ReachabilityView
  membership: MembershipEvents
}

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
}

export const DEFAULT_REPLICATOR_OPTIONS: Readonly<Required<ReplicatorOptions>> = {
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
  readSpeculativeMs: 20
}

export interface WriteOptions {
  consistency?: Consistency
  timeoutMs?: number
  /**
   * The rows are already the output of validateRows against this space's schema (DataService
   * validated them to report errors): skip validating them a second time.
   */
  prevalidated?: boolean
}

export interface WriteResult {
  written: number
  /** The newest version stamped in this write (the version of a single-row write or delete). */
  version: Hlc
  partitions: Array<{ partition: number, rows: number, acks: number, needed: number, hinted: number }>
}

export interface ReadOptions {
  consistency?: Consistency
  timeoutMs?: number
}

export interface ReadResult {
  /** The newest live version; undefined when the newest is a tombstone or nothing is held. */
  record: VersionedRecord | undefined
  /** Version of the newest record seen (tombstone included). */
  version: Hlc | undefined
  /** Replicas brought up to date by read repair before answering. */
  repaired: number
}

export interface ReplicationStats {
  hints: HintStats
  antiEntropy: { rounds: number, bucketsRepaired: number, recordsPulled: number, recordsPushed: number, failures: number }
  readRepair: { reads: number, replicasRepaired: number, recordsRepaired: number }
  /**
   * Catch-ups of partitions this peer owns but is not ready for: streamed whole (recordsStreamed)
   * when it holds nothing of one, else by comparing digests with each source (digestSyncs) and
   * pulling and pushing only the differing buckets' newer records.
   */
  catchUp: { started: number, completed: number, failed: number, recordsStreamed: number, digestSyncs: number, recordsPulled: number, recordsPushed: number, pending: number, running: number }
  release: { released: number, dropped: number }
  replica: { writes: number, recordsApplied: number, recordsStale: number, badRequests: number, clockSkewRefusals: number }
  readyPartitions: number
  heldPartitions: number
}

/** One repl.write request: its records, its body (encoded once when the transport can), and the records packed when they were. */
interface WriteBatch { records: VersionedRecord[], body: unknown, packed?: PackedRecords }

interface DeliverResult { ok: boolean, failed: VersionedRecord[], error?: string, noHint?: boolean }

function keyOf (space: SpaceDef, partition: number): string { return `${space.uid}\u0000${partition}` }

function errText (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown } | null
  if (typeof e?.code === 'string') return e.code
  return typeof e?.message === 'string' ? e.message : String(err)
}

/** Replica errors not worth hinting: the same request would be refused again. */
function isPermanent (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'BAD_REQUEST' || code === 'FRAME_TOO_LARGE' || code === 'NO_HANDLER'
}

export class Replicator {
  private readonly transport: Transport
  private readonly clock: Clock
  private readonly random: Random
  private readonly hlc: HybridClock
  private readonly log: Logger
  private readonly placement: Placement
  private readonly stores: StoreProvider
  private readonly detector: ReachabilityView
  private readonly membership: MembershipEvents
  private readonly opts: Required<ReplicatorOptions>
  private readonly self: PeerId
  readonly hints: HintStore

  private started = false
  private stopped = false
  private handlersRegistered = false
  private readonly unsubscribers: Array<() => void> = []
  private readonly timers = new Set<Timer>()

  private readonly openStores = new Map<string, Promise<PartitionStore>>()
  /** Partitions whose store this peer opened (it holds data, or may). */
  private readonly held = new Map<string, { space: SpaceDef, partition: number }>()
  /** Stores opened, by key (a released one may linger here; only held keys are read). */
  private readonly opened = new Map<string, PartitionStore>()
  /** Owned partitions this peer has caught up and marked ready. */
  private readonly ready = new Set<string>()
  private readonly catchUpQueue: Array<{ key: string, space: SpaceDef, partition: number }> = []
  private readonly catchUpQueued = new Set<string>()
  private readonly catchUpRunning = new Set<string>()
  private readonly catchUpRetryAt = new Map<string, number>()
  private readonly releasing = new Map<string, Timer | null>()
  private readonly replaying = new Set<PeerId>()
  /** Recent read latency per remote peer (ms, EWMA), to ask the fastest replicas first. */
  private readonly latency = new Map<PeerId, number>()
  private readonly replayWanted: PeerId[] = []
  private antiEntropyRunning = 0
  private antiEntropyCursor = 0
  private reconcileScheduled = false

  private readonly counters = {
    antiEntropy: { rounds: 0, bucketsRepaired: 0, recordsPulled: 0, recordsPushed: 0, failures: 0 },
    readRepair: { reads: 0, replicasRepaired: 0, recordsRepaired: 0 },
    catchUp: { started: 0, completed: 0, failed: 0, recordsStreamed: 0, digestSyncs: 0, recordsPulled: 0, recordsPushed: 0 },
    release: { released: 0, dropped: 0 },
    replica: { writes: 0, recordsApplied: 0, recordsStale: 0, badRequests: 0, clockSkewRefusals: 0 }
  }

  constructor (deps: ReplicatorDeps, options: ReplicatorOptions = {}) {
    this.transport = deps.transport
    this.clock = deps.clock
    this.random = deps.random
    this.hlc = deps.hlc
    this.log = deps.log
    this.placement = deps.placement
    this.stores = deps.stores
    this.detector = deps.detector
    this.membership = deps.membership
    const opts = { ...DEFAULT_REPLICATOR_OPTIONS }
    for (const [k, v] of Object.entries(options)) if (v !== undefined) (opts as Record<string, unknown>)[k] = v
    for (const [k, v] of Object.entries(opts)) {
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new RangeError(`replication option ${k} must be a finite number >= 0, got ${String(v)}`)
    }
    for (const k of ['maxBatchRecords', 'maxBatchBytes', 'hintReplayConcurrency', 'antiEntropyConcurrency', 'antiEntropyMaxBuckets', 'catchUpConcurrency', 'scanBatchRecords'] as const) {
      if (opts[k] < 1) throw new RangeError(`replication option ${k} must be >= 1`)
    }
    this.opts = opts
    this.self = deps.transport.localPeerId
    this.hints = new HintStore(opts.hintMaxBytes, opts.hintWindowMs)
  }

  // ------------------------------------------------------------------------------ lifecycle

  start (): void {
    if (this.started) return
    this.started = true
    this.stopped = false
    this.registerHandlers()
    this.unsubscribers.push(this.placement.onChange(() => { this.scheduleReconcile() }))
    this.unsubscribers.push(this.membership.onChange(ev => {
      if ((ev.type === 'alive' || ev.type === 'join') && ev.member.id !== this.self && this.hints.has(ev.member.id)) {
        this.requestReplay(ev.member.id)
      }
    }))
    this.every(this.opts.reconcileIntervalMs, () => { this.reconcile() })
    this.every(this.opts.hintReplayIntervalMs, () => { this.replayAll() })
    if (this.opts.antiEntropyIntervalMs > 0) this.scheduleAntiEntropy()
    this.scheduleReconcile()
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.stopped = true
    for (const u of this.unsubscribers.splice(0)) u()
    for (const t of this.timers) t.cancel()
    this.timers.clear()
    for (const t of this.releasing.values()) t?.cancel()
    this.releasing.clear()
  }

  stats (): ReplicationStats {
    return {
      hints: this.hints.stats(),
      antiEntropy: { ...this.counters.antiEntropy },
      readRepair: { ...this.counters.readRepair },
      catchUp: { ...this.counters.catchUp, pending: this.catchUpQueue.length, running: this.catchUpRunning.size },
      release: { ...this.counters.release },
      replica: { ...this.counters.replica },
      readyPartitions: this.ready.size,
      heldPartitions: this.held.size
    }
  }

  /** Whether this peer has caught up (and marked ready) its replica of the partition. */
  isReady (space: SpaceDef, partition: number): boolean { return this.ready.has(keyOf(space, partition)) }

  private timer (delayMs: number, fn: () => void): Timer {
    const t = this.clock.setTimer(delayMs, () => {
      this.timers.delete(t)
      if (!this.stopped) fn()
    })
    this.timers.add(t)
    return t
  }

  private every (periodMs: number, fn: () => void): void {
    if (periodMs <= 0) return
    const tick = (): void => {
      fn()
      this.timer(periodMs, tick)
    }
    this.timer(periodMs, tick)
  }

  private addr (peer: PeerId): PeerAddress {
    return this.placement.addressOf(peer) ?? { id: peer, addrs: [] }
  }

  /**
   * Takes charge of a replica found on disk (after a restart): it is opened and held, so the next
   * reconcile catches it up if this peer owns it, or hands it to its owners and drops it if not.
   */
  async adopt (space: SpaceDef, partition: number): Promise<void> {
    if (this.stopped || partition < 0 || partition >= space.partitions) return
    await this.store(space, partition)
    this.scheduleReconcile()
  }

  private async store (space: SpaceDef, partition: number): Promise<PartitionStore> {
    const key = keyOf(space, partition)
    let p = this.openStores.get(key)
    if (p === undefined) {
      p = this.stores.open(space, partition)
      this.openStores.set(key, p)
      p.catch(() => { if (this.openStores.get(key) === p) this.openStores.delete(key) })
    }
    const s = await p
    if (!this.held.has(key)) this.held.set(key, { space: s.space, partition })
    this.opened.set(key, s)
    return s
  }

  // ------------------------------------------------------------------------------ write

  /** Writes rows (validated against the space's schema, stamped with one HLC version each). */
  async write (space: SpaceDef, rows: readonly Row[], opts: WriteOptions = {}): Promise<WriteResult> {
    let valid = rows
    if (opts.prevalidated !== true) {
      const v = validateRows(space.schema, rows)
      if (v.errors.length > 0) throw new InvalidRowsError(space.name, v.errors)
      valid = v.rows
    }
    const records = new Array<VersionedRecord>(valid.length)
    for (let i = 0; i < valid.length; i++) {
      const row = valid[i]!
      records[i] = { id: row.id as string, version: this.hlc.now(), deleted: false, row }
    }
    return await this.writeRecords(space, records, opts, true)
  }

  /** Deletes records by id: tombstones, replicated like writes. */
  async remove (space: SpaceDef, ids: readonly string[], opts: WriteOptions = {}): Promise<WriteResult> {
    const errors: Array<{ row: number, field: string, message: string }> = []
    ids.forEach((id, i) => {
      if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) errors.push({ row: i, field: 'id', message: `must be a string of 1 to ${MAX_ID_LENGTH} characters` })
    })
    if (errors.length > 0) throw new InvalidRowsError(space.name, errors)
    const records: VersionedRecord[] = ids.map(id => ({ id, version: this.hlc.now(), deleted: true, row: null }))
    return await this.writeRecords(space, records, opts, true)
  }

  /**
   * Replicates already-versioned records (writes, deletes, imports) at a consistency level.
   * `normalized`: every row is validateRows output for this very space (sent packed, see wire.ts).
   */
  async writeRecords (space: SpaceDef, records: readonly VersionedRecord[], opts: WriteOptions = {}, normalized = false): Promise<WriteResult> {
    this.requireSynced(space, 'write')
    const consistency = opts.consistency ?? 'quorum'
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs
    const deadline = this.clock.now() + timeoutMs
    const byPartition = new Map<number, VersionedRecord[]>()
    for (const r of records) {
      const p = this.placement.partitionOf(space, r.id)
      let list = byPartition.get(p)
      if (list === undefined) { list = []; byPartition.set(p, list) }
      list.push(r)
    }
    // Plan every partition first: fail fast before anything is sent, so nothing is half-written.
    const plans = [...byPartition].sort((a, b) => a[0] - b[0]).map(([partition, recs]) => {
      const pp = this.placement.locate(space, partition)
      const lvl = this.writeLevel(pp, consistency)
      if (!this.detector.quorumReachable(lvl.counted, lvl.needed)) {
        const reachable = lvl.counted.filter(p => this.detector.isReachable(p)).length
        throw new PartitionUnavailableError(space.name, partition, lvl.needed, reachable, consistency, 'write')
      }
      return { partition, recs, pp, ...lvl }
    })
    const outcomes = await Promise.all(plans.map(async plan =>
      await this.writePartition(space, plan.partition, plan.recs, plan.targets, new Set(plan.counted), plan.needed, deadline, normalized)))
    if (outcomes.some(o => !o.met)) throw new WriteIncompleteError(space.name, consistency, outcomes)
    return {
      written: records.length,
      version: maxVersion(records),
      partitions: outcomes.map(o => ({ partition: o.partition, rows: o.rows, acks: o.acks, needed: o.needed, hinted: o.hinted }))
    }
  }

  /** Who to send to, whose acks count, and how many are needed. */
  private writeLevel (pp: PartitionPlacement, consistency: Consistency): { targets: PeerId[], counted: PeerId[], needed: number } {
    const targets = [...new Set([...pp.writeReplicas, ...pp.readReplicas])]
    if (consistency === 'one') return { targets, counted: targets, needed: 1 }
    if (consistency === 'all') return { targets, counted: targets, needed: Math.max(1, targets.length) }
    if (pp.readReplicas.length > 0) {
      return { targets, counted: [...new Set(pp.readReplicas)], needed: Math.max(1, Math.min(pp.quorum, pp.readReplicas.length)) }
    }
    // Nobody ready yet (every owner is catching up): a majority of the write replicas.
    return { targets, counted: targets, needed: Math.floor(targets.length / 2) + 1 }
  }

  private async writePartition (space: SpaceDef, partition: number, records: VersionedRecord[], targets: PeerId[],
    counted: Set<PeerId>, needed: number, deadline: number, normalized: boolean): Promise<PartitionWriteOutcome> {
    return await new Promise(resolve => {
      const o: PartitionWriteOutcome = { partition, rows: records.length, acks: 0, needed, hinted: 0, met: false, errors: [] }
      let done = 0
      let settled = false
      const check = (): void => {
        if (settled) return
        if (o.acks >= needed) o.met = true
        if (o.met || done === targets.length) {
          settled = true
          resolve({ ...o, errors: [...o.errors] })
        }
      }
      // The batches (and their encoded bodies) are built once and sent to every remote target; a
      // local replica logs their packed bytes.
      let batches: WriteBatch[] | undefined
      for (const target of targets) {
        if ((target !== this.self || normalized) && batches === undefined) {
          // On failure (a record too large to send) deliver() retries and reports it per target.
          try { batches = this.writeBatches(space, partition, records, normalized) } catch { /* see above */ }
        }
        void this.deliver(target, space, partition, records, batches, deadline, normalized).then(res => {
          done++
          if (res.ok) {
            if (counted.has(target)) o.acks++
          } else {
            o.errors.push(`${target}: ${res.error ?? 'failed'}`)
            if (res.failed.length > 0 && res.noHint !== true && this.addHint(target, space, partition, res.failed)) o.hinted++
          }
          check()
        })
      }
      check()
    })
  }

  /**
   * Splits a partition's records into repl.write requests. When the transport can encode a body
   * once for every target, each batch is encoded here, and the encoded size decides the split
   * (a batch over maxBatchBytes is halved): no per-row size estimate, no per-target encoding.
   */
  private writeBatches (space: SpaceDef, partition: number, records: VersionedRecord[], normalized: boolean): WriteBatch[] {
    const out: WriteBatch[] = []
    const batch = (recs: VersionedRecord[]): WriteBatch => {
      const hlc = Math.max(maxVersion(recs), this.hlc.current())
      if (!normalized) return { records: recs, body: { space, partition, records: recs, hlc } }
      const packed = packRecords(space, recs)
      return { records: recs, body: { space, partition, packed: packed.bytes, hlc }, packed }
    }
    const encode = this.transport.encodeBody?.bind(this.transport)
    if (encode === undefined) {
      for (const recs of chunkRecords(records, this.opts.maxBatchRecords, this.opts.maxBatchBytes)) out.push(batch(recs))
      return out
    }
    const add = (recs: VersionedRecord[]): void => {
      let b: WriteBatch | undefined
      let encoded: EncodedBody | undefined
      try {
        b = batch(recs)
        encoded = encode(b.body)
      } catch (err) {
        if (recs.length === 1 || !isPermanent(err)) throw err
      }
      if (b !== undefined && encoded !== undefined && (encoded.encodedBytes <= this.opts.maxBatchBytes || recs.length === 1)) {
        out.push({ ...b, body: encoded })
        return
      }
      const half = recs.length >> 1
      add(recs.slice(0, half))
      add(recs.slice(half))
    }
    const max = this.opts.maxBatchRecords
    for (let i = 0; i < records.length; i += max) add(records.length <= max ? records : records.slice(i, i + max))
    return out
  }

  /** Sends records to one replica, in bounded batches; never rejects. */
  private async deliver (target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[], batches: WriteBatch[] | undefined,
    deadline: number, normalized: boolean): Promise<DeliverResult> {
    if (target === this.self) {
      try {
        await this.applyLocal(space, partition, records, batches)
        return { ok: true, failed: [] }
      } catch (err) {
        this.log.error({ err, space: space.name, partition }, 'local replica failed to apply a write')
        // A hint to ourselves would not help; anti-entropy repairs the local replica.
        return { ok: false, failed: records, error: errText(err), noHint: true }
      }
    }
    if (!this.detector.isReachable(target)) return { ok: false, failed: records, error: 'UNREACHABLE (detector)' }
    if (batches === undefined) {
      try {
        batches = this.writeBatches(space, partition, records, normalized)
      } catch (err) {
        return { ok: false, failed: records, error: errText(err), noHint: isPermanent(err) }
      }
    }
    for (let i = 0; i < batches.length; i++) {
      const left = deadline - this.clock.now()
      const rest = (): VersionedRecord[] => batches.slice(i).flatMap(b => b.records)
      if (left <= 0) return { ok: false, failed: rest(), error: 'TIMEOUT' }
      try {
        parseWriteAnswer(await this.transport.request(this.addr(target), METHOD_WRITE, batches[i]!.body, { timeoutMs: left }))
      } catch (err) {
        return { ok: false, failed: rest(), error: errText(err), noHint: isPermanent(err) }
      }
    }
    return { ok: true, failed: [] }
  }

  private async sendWrite (target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[], timeoutMs: number): Promise<{ applied: number, stale: number }> {
    const answer = await this.transport.request(this.addr(target), METHOD_WRITE,
      { space, partition, records, hlc: Math.max(maxVersion(records), this.hlc.current()) }, { timeoutMs })
    return parseWriteAnswer(answer)
  }

  /** Applies records to this peer's replica: batch by batch when they were packed for sending (their bytes go to the log). */
  private async applyLocal (space: SpaceDef, partition: number, records: VersionedRecord[], batches?: WriteBatch[]): Promise<void> {
    const store = await this.store(space, partition)
    if (batches === undefined || batches.some(b => b.packed === undefined)) {
      await store.apply(records)
      return
    }
    // Last-writer-wins on versions: the order the batches land in does not matter.
    await Promise.all(batches.map(async b => await store.apply(b.records, b.packed)))
  }

  private addHint (target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[]): boolean {
    let bytes = 64
    for (const r of records) bytes += recordBytes(r)
    const ok = this.hints.add({ target, space, partition, records, createdAt: this.clock.now(), bytes })
    if (!ok) this.log.warn({ target, space: space.name, partition, records: records.length }, 'hint store full: hint dropped (anti-entropy will repair)')
    return ok
  }

  // ------------------------------------------------------------------------------ hints

  private requestReplay (target: PeerId): void {
    if (this.stopped || this.replaying.has(target) || this.replayWanted.includes(target)) return
    this.replayWanted.push(target)
    this.pumpReplay()
  }

  private replayAll (): void {
    this.hints.expire(this.clock.now())
    for (const t of this.hints.targets()) if (this.detector.isReachable(t)) this.requestReplay(t)
  }

  private pumpReplay (): void {
    while (!this.stopped && this.replaying.size < this.opts.hintReplayConcurrency && this.replayWanted.length > 0) {
      const target = this.replayWanted.shift()!
      this.replaying.add(target)
      void this.replay(target).finally(() => {
        this.replaying.delete(target)
        this.pumpReplay()
      })
    }
  }

  /** Replays the hints of one target in order; stops at the first failure (they stay). */
  private async replay (target: PeerId): Promise<void> {
    let hint: Hint | undefined
    while (!this.stopped && (hint = this.hints.peek(target, this.clock.now())) !== undefined) {
      if (!this.detector.isReachable(target)) return
      try {
        for (const chunk of chunkRecords(hint.records, this.opts.maxBatchRecords, this.opts.maxBatchBytes)) {
          await this.sendWrite(target, hint.space, hint.partition, chunk, this.opts.requestTimeoutMs)
        }
        this.hints.delivered(hint)
      } catch (err) {
        if (isPermanent(err)) {
          this.log.warn({ target, err: errText(err) }, 'hint refused by its target; dropped')
          this.hints.delivered(hint)
          continue
        }
        this.log.debug({ target, err: errText(err) }, 'hint replay failed; will retry')
        return
      }
    }
  }

  // ------------------------------------------------------------------------------ read

  async read (space: SpaceDef, id: string, opts: ReadOptions = {}): Promise<ReadResult> {
    this.requireSynced(space, 'read')
    const consistency = opts.consistency ?? 'quorum'
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs
    const partition = this.placement.partitionOf(space, id)
    const pp = this.placement.locate(space, partition)
    const replicas = [...new Set(pp.readReplicas)]
    const needed = consistency === 'one' ? 1 : consistency === 'all' ? Math.max(1, replicas.length) : Math.max(1, Math.min(pp.quorum, replicas.length))
    const reachable = replicas.filter(p => this.detector.isReachable(p))
    if (reachable.length < needed || replicas.length === 0) {
      throw new PartitionUnavailableError(space.name, partition, needed, reachable.length, consistency, 'read')
    }
    if (consistency === 'one') return await this.readOne(space, partition, id, reachable, timeoutMs)
    return await this.readQuorum(space, partition, id, reachable, needed, consistency, timeoutMs)
  }

  private async readFrom (peer: PeerId, space: SpaceDef, partition: number, id: string, timeoutMs: number): Promise<VersionedRecord | undefined> {
    if (peer === this.self) return (await this.store(space, partition)).get(id)
    const answer = await this.transport.request(this.addr(peer), METHOD_READ, { space, partition, ids: [id] }, { timeoutMs })
    return parseReadAnswer(answer, space, [id])[0]
  }

  /** Replicas in the order a read asks them: this peer, then remotes by recent latency. */
  private readOrder (reachable: PeerId[]): PeerId[] {
    const remotes = reachable.filter(p => p !== this.self)
    remotes.sort((a, b) => (this.latency.get(a) ?? 0) - (this.latency.get(b) ?? 0))
    return reachable.includes(this.self) ? [this.self, ...remotes] : remotes
  }

  /** Exponentially weighted read latency per peer (a failure counts as a full timeout). */
  private observeLatency (peer: PeerId, ms: number): void {
    const prev = this.latency.get(peer)
    this.latency.set(peer, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
  }

  private async readOne (space: SpaceDef, partition: number, id: string, reachable: PeerId[], timeoutMs: number): Promise<ReadResult> {
    const deadline = this.clock.now() + timeoutMs
    const order = reachable.includes(this.self) ? [this.self, ...reachable.filter(p => p !== this.self)] : reachable
    const errors: string[] = []
    for (const peer of order) {
      const left = deadline - this.clock.now()
      if (left <= 0) break
      try {
        const rec = await this.readFrom(peer, space, partition, id, left)
        return { record: rec === undefined || rec.deleted ? undefined : rec, version: rec?.version, repaired: 0 }
      } catch (err) {
        errors.push(`${peer}: ${errText(err)}`)
      }
    }
    throw new ReadIncompleteError(space.name, partition, 'one', 1, 0, errors.join('; ') || 'deadline passed')
  }

  private async readQuorum (space: SpaceDef, partition: number, id: string, reachable: PeerId[], needed: number,
    consistency: Consistency, timeoutMs: number): Promise<ReadResult> {
    const deadline = this.clock.now() + timeoutMs
    this.counters.readRepair.reads++
    type Answer = { peer: PeerId, rec: VersionedRecord | undefined }
    const answers: Answer[] = []
    const errors: string[] = []
    let newest: VersionedRecord | undefined
    let decided = false
    const repairIfStale = async (a: Answer, target: VersionedRecord, left: number): Promise<boolean> => {
      if (a.rec !== undefined && compareVersions(target, a.rec) <= 0) return true
      try {
        if (a.peer === this.self) await this.applyLocal(space, partition, [target])
        else await this.sendWrite(a.peer, space, partition, [target], Math.max(1, left))
        this.counters.readRepair.replicasRepaired++
        this.counters.readRepair.recordsRepaired++
        return true
      } catch (err) {
        this.log.debug({ peer: a.peer, err: errText(err) }, 'read repair failed')
        return false
      }
    }
    // Ask just `needed` replicas: this peer first (no network), then the remotes that answered
    // fastest lately. Another one is asked when one fails, or all the rest when the answers are
    // slow (readSpeculativeMs): a healthy read costs one remote request, not one per replica.
    const order = this.readOrder(reachable)
    await new Promise<void>(resolve => {
      let done = 0
      let launched = 0
      let timer: Timer | undefined
      const check = (): void => {
        if (decided) return
        if (answers.length >= needed || done === order.length) {
          decided = true
          timer?.cancel()
          resolve()
        }
      }
      const launch = (): void => {
        const peer = order[launched++]!
        const t0 = this.clock.now()
        void this.readFrom(peer, space, partition, id, Math.max(1, deadline - this.clock.now())).then(rec => {
          done++
          if (peer !== this.self) this.observeLatency(peer, this.clock.now() - t0)
          const a = { peer, rec }
          if (decided) {
            // A late answer: repair it in the background if it is behind what we returned.
            if (newest !== undefined) void repairIfStale(a, newest, this.opts.requestTimeoutMs)
            return
          }
          answers.push(a)
          check()
        }, err => {
          done++
          if (peer !== this.self) this.observeLatency(peer, this.opts.requestTimeoutMs)
          errors.push(`${peer}: ${errText(err)}`)
          if (!decided && launched < order.length) launch()
          check()
        })
      }
      while (launched < Math.min(needed, order.length)) launch()
      if (launched < order.length) {
        timer = this.clock.setTimer(this.opts.readSpeculativeMs, () => {
          timer = undefined
          if (!decided) while (launched < order.length) launch()
        })
      }
    })
    if (answers.length < needed) {
      throw new ReadIncompleteError(space.name, partition, consistency, needed, answers.length, errors.join('; ') || 'too few replicas answered')
    }
    for (const a of answers) if (a.rec !== undefined && (newest === undefined || compareVersions(a.rec, newest) > 0)) newest = a.rec
    let repaired = 0
    if (newest !== undefined) {
      const target = newest
      const stale = answers.filter(a => a.rec === undefined || compareVersions(target, a.rec) > 0)
      let upToDate = answers.length - stale.length
      if (stale.length > 0) {
        // Blocking read repair: answer once `needed` replicas hold the newest version.
        await new Promise<void>(resolve => {
          let left = stale.length
          let resolved = false
          const finish = (): void => { if (!resolved && (upToDate >= needed || left === 0)) { resolved = true; resolve() } }
          for (const a of stale) {
            void repairIfStale(a, target, deadline - this.clock.now()).then(ok => {
              left--
              if (ok) { upToDate++; repaired++ }
              finish()
            })
          }
          finish()
        })
      }
      if (upToDate < needed) {
        throw new ReadIncompleteError(space.name, partition, consistency, needed, upToDate, 'read repair did not reach enough replicas')
      }
    }
    return { record: newest === undefined || newest.deleted ? undefined : newest, version: newest?.version, repaired }
  }

  // ------------------------------------------------------------------------------ replica side

  private registerHandlers (): void {
    if (this.handlersRegistered) return
    this.handlersRegistered = true
    this.transport.handle(METHOD_WRITE, async (body, ctx) => await this.guard(ctx, async () => await this.onWrite(body)))
    this.transport.handle(METHOD_READ, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseReadRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      return { records: req.ids.map(id => store.get(id) ?? null) }
    }))
    this.transport.handle(METHOD_DIGEST, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseDigestRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      return { digest: store.digest(req.buckets) }
    }))
    this.transport.handle(METHOD_BUCKET, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseBucketRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      return { records: store.bucket(req.index, req.buckets) }
    }))
    this.transport.handleStream(METHOD_SCAN, (body, ctx) => this.onScan(body, ctx))
  }

  private async guard<T> (ctx: RequestContext, fn: () => Promise<T>): Promise<T> {
    if (this.stopped) throw new ReplicaRequestError('STOPPED', 'replication is stopped on this peer')
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ReplicaRequestError && err.code === 'BAD_REQUEST') {
        this.counters.replica.badRequests++
        this.log.debug({ from: ctx.from, err: err.message }, 'bad replication request')
      }
      throw err
    }
  }

  private async storeOrFail (space: SpaceDef, partition: number): Promise<PartitionStore> {
    try {
      return await this.store(space, partition)
    } catch (err) {
      throw new ReplicaRequestError('STORE_FAILED', `cannot open partition ${partition} of '${space.name}': ${(err as Error).message}`)
    }
  }

  /** The local replica of a partition for a query; refuses (NOT_HELD) one this peer neither holds nor owns. */
  async openForQuery (space: SpaceDef, partition: number): Promise<PartitionStore> {
    return await this.storeForRead(space, partition)
  }

  /** Live rows of the local replica, if this peer holds the partition open (for query cost estimates). */
  localRows (space: SpaceDef, partition: number): number | undefined {
    const key = keyOf(space, partition)
    if (!this.held.has(key)) return undefined
    try {
      return this.opened.get(key)?.stats().liveRows
    } catch {
      return undefined
    }
  }

  /**
   * Read-only requests do not create replicas: a peer that neither holds nor owns the partition
   * (a coordinator's view is stale) refuses with NOT_HELD, and the coordinator asks another.
   */
  private async storeForRead (space: SpaceDef, partition: number): Promise<PartitionStore> {
    if (!this.held.has(keyOf(space, partition)) && !this.placement.locate(space, partition).owners.includes(this.self)) {
      throw new ReplicaRequestError('NOT_HELD', `this peer holds no replica of partition ${partition} of '${space.name}'`)
    }
    return await this.storeOrFail(space, partition)
  }

  private async onWrite (body: unknown): Promise<{ applied: number, stale: number }> {
    const req = parseWriteRequest(body)
    try {
      this.hlc.observe(Math.max(req.hlc, maxVersion(req.records)))
    } catch (err) {
      if (err instanceof ClockSkewError) {
        this.counters.replica.clockSkewRefusals++
        throw new ReplicaRequestError('CLOCK_SKEW', err.message, err.remote)
      }
      throw err
    }
    const store = await this.storeOrFail(req.space, req.partition)
    let res
    try {
      res = await store.apply(req.records, req.packed)
    } catch (err) {
      throw new ReplicaRequestError('STORE_FAILED', `partition ${req.partition} of '${req.space.name}' did not apply the write: ${(err as Error).message}`)
    }
    this.counters.replica.writes++
    this.counters.replica.recordsApplied += res.applied
    this.counters.replica.recordsStale += res.stale
    return { applied: res.applied, stale: res.stale }
  }

  private async * onScan (body: unknown, ctx: RequestContext): AsyncIterable<unknown> {
    if (this.stopped) throw new ReplicaRequestError('STOPPED', 'replication is stopped on this peer')
    let req
    try {
      req = parseScanRequest(body)
    } catch (err) {
      this.counters.replica.badRequests++
      throw err
    }
    const store = await this.storeForRead(req.space, req.partition)
    const batch = Math.min(req.batchRecords, this.opts.maxBatchRecords)
    for await (const records of store.scan({ batchRecords: batch, includeTombstones: true })) {
      if (ctx.signal.aborted || this.stopped) return
      for (const chunk of chunkRecords(records, batch, this.opts.maxBatchBytes)) yield { records: chunk }
    }
  }

  // ------------------------------------------------------------------------------ ownership

  private scheduleReconcile (): void {
    if (this.reconcileScheduled || this.stopped) return
    this.reconcileScheduled = true
    this.timer(0, () => {
      this.reconcileScheduled = false
      this.reconcile()
    })
  }

  /** Catches up owned partitions that are not ready; releases held partitions no longer owned. */
  /** A peer that has not heard from its cluster since it started does not coordinate. */
  private requireSynced (space: SpaceDef, operation: 'write' | 'read'): void {
    if (this.membership.hasSynced?.() === false) throw new NotSyncedError(space.name, operation)
  }

  reconcile (): void {
    if (this.stopped || this.membership.hasSynced?.() === false) return
    const owned = new Map<string, { space: SpaceDef, partition: number }>()
    for (const o of this.placement.ownedPartitions()) owned.set(keyOf(o.space, o.partition), o)
    const now = this.clock.now()
    for (const [key, o] of owned) {
      const t = this.releasing.get(key)
      if (t !== undefined) { t?.cancel(); this.releasing.delete(key) }
      if (this.ready.has(key) || this.catchUpQueued.has(key) || this.catchUpRunning.has(key)) continue
      if ((this.catchUpRetryAt.get(key) ?? 0) > now) continue
      this.catchUpQueued.add(key)
      this.catchUpQueue.push({ key, ...o })
    }
    for (const key of [...this.ready]) if (!owned.has(key)) this.ready.delete(key)
    for (const [key, h] of this.held) {
      if (owned.has(key) || this.releasing.has(key) || this.catchUpRunning.has(key)) continue
      const pp = this.placement.locate(h.space, h.partition)
      if (pp.owners.length === 0 || !pp.owners.every(o => pp.readReplicas.includes(o))) continue
      this.releasing.set(key, null)
      void this.release(key, h.space, h.partition)
    }
    this.pumpCatchUp()
  }

  private pumpCatchUp (): void {
    while (!this.stopped && this.catchUpRunning.size < this.opts.catchUpConcurrency && this.catchUpQueue.length > 0) {
      const job = this.catchUpQueue.shift()!
      this.catchUpQueued.delete(job.key)
      this.catchUpRunning.add(job.key)
      void this.catchUp(job.key, job.space, job.partition).then(ok => {
        if (!ok) {
          this.counters.catchUp.failed++
          this.catchUpRetryAt.set(job.key, this.clock.now() + this.opts.catchUpRetryMs)
          this.timer(this.opts.catchUpRetryMs, () => { this.scheduleReconcile() })
        }
      }, err => {
        this.counters.catchUp.failed++
        this.log.error({ err, space: job.space.name, partition: job.partition }, 'catch-up failed')
        this.catchUpRetryAt.set(job.key, this.clock.now() + this.opts.catchUpRetryMs)
        this.timer(this.opts.catchUpRetryMs, () => { this.scheduleReconcile() })
      }).finally(() => {
        this.catchUpRunning.delete(job.key)
        this.pumpCatchUp()
      })
    }
  }

  /**
   * Streams the partition from every reachable ready replica and marks it ready once enough of
   * them (every quorum of readReplicas intersects them) were streamed completely.
   */
  private async catchUp (key: string, space: SpaceDef, partition: number): Promise<boolean> {
    if (!this.placement.ownedPartitions().some(o => keyOf(o.space, o.partition) === key)) return true
    this.counters.catchUp.started++
    const store = await this.store(space, partition)
    const pp = this.placement.locate(space, partition)
    // A replica whose WAL was damaged lacks what the bad frames held, and any other replica may
    // hold it (a write's quorum is not known afterwards): it syncs with every other replica,
    // even of a fresh partition (a whole cluster restarted), before it serves again.
    const damaged = store.needsRepair?.() === true
    // A fresh partition has nothing to catch up from: streaming it between owners that are all
    // starting from the same writes would only copy those writes back and forth.
    const sources = pp.fresh && !damaged ? [] : pp.readReplicas.filter(p => p !== this.self)
    let required = 0
    if (damaged) {
      required = sources.length
    } else if (sources.length > 0) {
      const r = new Set(pp.readReplicas).size
      required = Math.max(1, r - Math.max(1, Math.min(pp.quorum, r)) + 1) - (pp.readReplicas.includes(this.self) ? 1 : 0)
    }
    // A replica that already holds data (a restarted peer, one that was away) compares digests
    // with each source and repairs only the buckets that differ, instead of streaming the whole
    // partition again; an empty one streams it.
    const stats = store.stats()
    const held = stats.liveRows + stats.tombstones > 0
    let ok = 0
    for (const source of sources) {
      if (this.stopped) return false
      if (!this.detector.isReachable(source)) continue
      if (held) {
        this.counters.catchUp.digestSyncs++
        if (await this.syncWith(source, space, partition, { pull: true, maxBuckets: Number.MAX_SAFE_INTEGER, tally: this.counters.catchUp })) {
          ok++
          this.log.debug({ space: space.name, partition, source }, 'caught up from source by digest comparison')
        }
        continue
      }
      try {
        let n = 0
        for await (const item of this.transport.stream(this.addr(source), METHOD_SCAN,
          { space, partition, batchRecords: this.opts.scanBatchRecords }, { timeoutMs: this.opts.catchUpTimeoutMs })) {
          const records = parseRecordsAnswer(item, space, 'repl.scan item')
          if (records.length === 0) continue
          this.observeQuietly(maxVersion(records))
          await store.apply(records)
          n += records.length
        }
        this.counters.catchUp.recordsStreamed += n
        ok++
        this.log.debug({ space: space.name, partition, source, records: n }, 'caught up from source')
      } catch (err) {
        this.log.warn({ space: space.name, partition, source, err: errText(err) }, 'catch-up stream failed')
      }
    }
    if (this.stopped || ok < required) return false
    if (!this.placement.ownedPartitions().some(o => keyOf(o.space, o.partition) === key)) return true
    if (damaged) {
      if (sources.length > 0) {
        await store.markRepaired?.()
        this.log.warn({ space: space.name, partition, sources: ok }, 'damaged partition repaired from every other replica')
      } else {
        // Nobody else holds it: serving what is left beats serving nothing; the loss stays reported.
        this.log.error({ space: space.name, partition }, 'damaged partition has no other replica to repair it from: what the bad WAL frames held is lost; serving the rest')
      }
    }
    this.ready.add(key)
    this.catchUpRetryAt.delete(key)
    this.counters.catchUp.completed++
    this.placement.markReady(space, partition)
    this.log.info({ space: space.name, partition, sources: ok }, 'partition ready')
    return true
  }

  private observeQuietly (v: Hlc): void {
    try { this.hlc.observe(v) } catch { /* skewed data is still data; the write path refuses new skew */ }
  }

  /**
   * Hands a partition this peer no longer owns to its (ready) owners: pushes what they lack,
   * marks it released, and drops the store after the grace period (pushing once more first).
   */
  private async release (key: string, space: SpaceDef, partition: number): Promise<void> {
    const owners = this.placement.locate(space, partition).owners.filter(o => o !== this.self)
    let pushed = true
    for (const owner of owners) {
      if (!await this.syncWith(owner, space, partition, { pull: false, maxBuckets: Number.MAX_SAFE_INTEGER })) pushed = false
    }
    if (this.stopped || this.releasing.get(key) !== null) return
    if (!pushed) {
      // Some owner did not take our data yet: try again on a later reconcile.
      this.releasing.delete(key)
      return
    }
    this.placement.markReleased(space, partition)
    this.counters.release.released++
    this.log.info({ space: space.name, partition }, 'partition released; dropping after grace period')
    const t = this.timer(this.opts.releaseGraceMs, () => { void this.dropReleased(key, space, partition) })
    this.releasing.set(key, t)
  }

  private async dropReleased (key: string, space: SpaceDef, partition: number): Promise<void> {
    if (this.placement.ownedPartitions().some(o => keyOf(o.space, o.partition) === key)) { this.releasing.delete(key); return }
    const pp = this.placement.locate(space, partition)
    if (!pp.owners.every(o => pp.readReplicas.includes(o))) { this.releasing.delete(key); return }
    for (const owner of pp.owners) if (owner !== this.self) await this.syncWith(owner, space, partition, { pull: false, maxBuckets: Number.MAX_SAFE_INTEGER })
    if (this.stopped || this.placement.ownedPartitions().some(o => keyOf(o.space, o.partition) === key)) { this.releasing.delete(key); return }
    this.held.delete(key)
    this.openStores.delete(key)
    this.opened.delete(key)
    this.releasing.delete(key)
    if (this.stores.drop !== undefined) {
      try {
        await this.stores.drop(space, partition)
        this.counters.release.dropped++
      } catch (err) {
        this.log.error({ err, space: space.name, partition }, 'dropping a released partition failed')
      }
    }
  }

  // ------------------------------------------------------------------------------ anti-entropy

  private scheduleAntiEntropy (): void {
    const mean = this.opts.antiEntropyIntervalMs
    this.timer(mean * (0.5 + this.random.next()), () => {
      this.antiEntropyTick()
      this.scheduleAntiEntropy()
    })
  }

  private antiEntropyTick (): void {
    const owned = this.placement.ownedPartitions().filter(o => this.ready.has(keyOf(o.space, o.partition)))
    if (owned.length === 0) return
    while (this.antiEntropyRunning < this.opts.antiEntropyConcurrency) {
      const o = owned[this.antiEntropyCursor++ % owned.length]!
      this.antiEntropyRunning++
      void this.antiEntropyRound(o.space, o.partition).finally(() => { this.antiEntropyRunning-- })
      if (this.antiEntropyRunning >= owned.length) break
    }
  }

  /** One anti-entropy round for one partition with one random other ready replica. */
  async antiEntropyRound (space: SpaceDef, partition: number): Promise<boolean> {
    const pp = this.placement.locate(space, partition)
    const peers = pp.readReplicas.filter(p => p !== this.self && this.detector.isReachable(p))
    if (peers.length === 0) return false
    const peer = peers[this.random.int(peers.length)]!
    this.counters.antiEntropy.rounds++
    return await this.syncWith(peer, space, partition, { pull: true, maxBuckets: this.opts.antiEntropyMaxBuckets })
  }

  /**
   * Compares digests with `peer` and, for each differing bucket, applies the newer records both
   * ways (or only pushes ours when pull is false). True when every differing bucket was handled.
   */
  private async syncWith (peer: PeerId, space: SpaceDef, partition: number,
    opts: { pull: boolean, maxBuckets: number, tally?: { recordsPulled: number, recordsPushed: number } }): Promise<boolean> {
    const timeoutMs = this.opts.requestTimeoutMs
    const tally = opts.tally ?? this.counters.antiEntropy
    try {
      const store = await this.store(space, partition)
      let buckets = 64
      const records = store.digest(1).records
      while (buckets < 16_384 && records / buckets > 256) buckets *= 2
      const local = store.digest(buckets)
      const remote = parseDigestAnswer(await this.transport.request(this.addr(peer), METHOD_DIGEST, { space, partition, buckets }, { timeoutMs }), buckets)
      if (remote.root === local.root) return true
      const differing: number[] = []
      for (let i = 0; i < buckets; i++) if (local.hashes[i] !== remote.hashes[i]) differing.push(i)
      const start = differing.length > opts.maxBuckets ? this.random.int(differing.length) : 0
      const n = Math.min(differing.length, opts.maxBuckets)
      for (let k = 0; k < n; k++) {
        if (this.stopped) return false
        const index = differing[(start + k) % differing.length]!
        const theirs = parseRecordsAnswer(await this.transport.request(this.addr(peer), METHOD_BUCKET,
          { space, partition, index, buckets }, { timeoutMs }), space, 'repl.bucket answer')
        const ours = store.bucket(index, buckets)
        const theirById = new Map<string, VersionedRecord>()
        for (const r of theirs) theirById.set(r.id, r)
        const ourById = new Map<string, VersionedRecord>()
        for (const r of ours) ourById.set(r.id, r)
        const pull = opts.pull ? theirs.filter(r => { const o = ourById.get(r.id); return o === undefined || compareVersions(r, o) > 0 }) : []
        const push = ours.filter(r => { const t = theirById.get(r.id); return t === undefined || compareVersions(r, t) > 0 })
        if (pull.length > 0) {
          this.observeQuietly(maxVersion(pull))
          await store.apply(pull)
          tally.recordsPulled += pull.length
        }
        for (const chunk of chunkRecords(push, this.opts.maxBatchRecords, this.opts.maxBatchBytes)) {
          await this.sendWrite(peer, space, partition, chunk, timeoutMs)
          tally.recordsPushed += chunk.length
        }
        if ((pull.length > 0 || push.length > 0) && opts.tally === undefined) this.counters.antiEntropy.bucketsRepaired++
      }
      return n === differing.length
    } catch (err) {
      this.counters.antiEntropy.failures++
      this.log.debug({ peer, space: space.name, partition, err: errText(err) }, 'anti-entropy sync failed')
      return false
    }
  }
}
