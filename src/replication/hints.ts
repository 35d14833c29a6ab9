/**
 * Hinted handoff: records a replica did not acknowledge, kept by the coordinator per target peer
 * and partition, and replayed when the target is back, each partition's hints in order (a target
 * whose replica of one partition fails still gets its other partitions' hints). Bounded by total
 * bytes and by age (the hint window, as Cassandra's max_hint_window): older hints are dropped and
 * counted, and anti-entropy repairs what they carried. With hint files (hint-log.ts, a real peer's
 * `<data-dir>/hints`) every hint is also appended to its target's file, fsynced before the write
 * that made it is answered, and read back after a restart; without them (tests) hints live in
 * memory. HintStore is the bounded store; HintedHandoff records into it for the write coordinator
 * and replays it (on a target's 'alive' or 'join', and periodically to every reachable target), a
 * bounded number of targets at once.
 */
import type { MemberEvent } from '../membership/index.js'
import type { Clock, Logger, PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { VersionedRecord } from '../storage/index.js'
import { admitCopied, errText, isPermanent, keyOf } from './context.js'
import type { ReplicationContext } from './context.js'
import { encodeHintFrame } from './hint-log.js'
import type { HintFile, HintLog, LoadedHint } from './hint-log.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { chunkRecords, recordBytes } from './wire.js'
import { pushRecords } from './write.js'

export interface Hint {
  target: PeerId
  space: SpaceDef
  partition: number
  records: VersionedRecord[]
  /** clock.now() when written. */
  createdAt: number
  /** Its size: the frame in its hint file, or an estimate when hints live in memory only. */
  bytes: number
  /** The hint file holding it (hint files only). */
  file?: HintFile
}

export interface HintStats {
  /** Hints (one per target and batch) and the records in them. */
  written: number
  writtenRecords: number
  delivered: number
  deliveredRecords: number
  /** Dropped because older than the hint window, because the store was full, or because its hint file could not be written. */
  dropped: number
  droppedRecords: number
  droppedExpired: number
  droppedFull: number
  droppedDisk: number
  /** Records left out of a replay for being versioned past the skew bound (see admitCopied), or a hint its target refused as CLOCK_SKEW. */
  droppedSkewRecords: number
  /** Records of hints whose space was dropped or re-created before they could be delivered. */
  droppedGone: number
  /** Read back from the hint files at start-up. */
  loaded: number
  loadedRecords: number
  /** Held right now. */
  pending: number
  pendingRecords: number
  pendingBytes: number
  targets: number
  /** Bytes of the hint files (0 without them): what hintMaxBytes bounds when they are on. */
  diskBytes: number
}

/** The hint files a HintStore writes through, and what it needs to stamp and report them. */
export interface HintFiles { log: HintLog, clock: Clock, logger: Logger }

/** What became of a hint recorded: kept (durable, with hint files), or dropped for want of room or for a failed disk. */
export type HintOutcome = 'kept' | 'full' | 'failed'

export class HintStore {
  /**
   * Per target, one queue per partition (keyOf(space, partition)), each oldest first: a target's
   * replica of one partition that refuses its hints holds back only that queue.
   */
  private readonly byTarget = new Map<PeerId, Map<string, Hint[]>>()
  private bytes = 0
  private readonly counters = {
    written: 0, writtenRecords: 0, delivered: 0, deliveredRecords: 0, dropped: 0, droppedRecords: 0,
    droppedExpired: 0, droppedFull: 0, droppedDisk: 0, droppedSkewRecords: 0, droppedGone: 0, loaded: 0, loadedRecords: 0
  }

  /** Whether the last hint file write failed (logged once until one succeeds again). */
  private diskFailing = false

  constructor (private readonly maxBytes: number, private readonly windowMs: number, private readonly files?: HintFiles) {}

  /**
   * Adds a hint (appending it to its file, with hint files, without waiting for it); false, and
   * counted as dropped, when it does not fit the byte bound or cannot be encoded.
   */
  add (hint: Hint): boolean {
    return typeof this.admit(hint) !== 'string'
  }

  /**
   * Adds a hint and, with hint files, appends it to its target's file: 'kept' once it is durable
   * (synced), 'full' when it did not fit the byte bound, 'failed' when its file could not be
   * written (the hint is dropped then, unless it was delivered meanwhile). Never rejects.
   */
  async addDurably (hint: Hint): Promise<HintOutcome> {
    return await this.admit(hint)
  }

  /**
   * Takes the hints read back from the hint files at start-up, oldest first per target: their
   * age is their wall-clock age (the monotonic clock restarted with the process). Those past the
   * byte bound (hintMaxBytes lowered since) are dropped.
   */
  load (hints: readonly LoadedHint[]): void {
    if (this.files === undefined) throw new Error('HintStore.load needs hint files')
    const { clock, log } = this.files
    const now = clock.now()
    const wallNow = clock.wallNow()
    for (const h of hints) {
      const hint: Hint = {
        target: h.target, space: h.space, partition: h.partition, records: h.records,
        createdAt: now - Math.max(0, wallNow - h.createdAtWallMs), bytes: h.bytes, file: h.file
      }
      if (this.bytes + hint.bytes > this.maxBytes) {
        this.countDropped(hint, 'full')
        log.done(h.file)
        continue
      }
      this.enqueue(hint)
      this.counters.loaded++
      this.counters.loadedRecords += hint.records.length
    }
  }

  /** The partitions (queue keys) `target` has hints for. */
  queues (target: PeerId): string[] { return [...(this.byTarget.get(target)?.keys() ?? [])] }

  /**
   * The oldest hint for `target` still within the window (expired ones are dropped on the way):
   * of the queue `queue` when given, else of all the target's queues.
   */
  peek (target: PeerId, nowMs: number, queue?: string): Hint | undefined {
    const queues = this.byTarget.get(target)
    if (queues === undefined) return undefined
    let oldest: Hint | undefined
    for (const key of queue === undefined ? [...queues.keys()] : [queue]) {
      const list = queues.get(key)
      if (list === undefined) continue
      while (list.length > 0 && nowMs - list[0]!.createdAt > this.windowMs) this.dropExpired(list)
      if (list.length === 0) { queues.delete(key); continue }
      if (oldest === undefined || list[0]!.createdAt < oldest.createdAt) oldest = list[0]
    }
    if (queues.size === 0) this.byTarget.delete(target)
    return oldest
  }

  /**
   * Removes `hint` once its target acknowledged it; `skewRefused` of its records were not sent
   * (versioned past the skew bound) and count as dropped, the whole hint when none was sent.
   */
  delivered (hint: Hint, skewRefused = 0): void {
    if (!this.remove(hint)) return
    if (skewRefused < hint.records.length) {
      this.counters.delivered++
      this.counters.deliveredRecords += hint.records.length - skewRefused
    } else {
      this.counters.dropped++
    }
    this.counters.droppedRecords += skewRefused
    this.counters.droppedSkewRecords += skewRefused
  }

  /** Drops a hint whose space is gone (dropped or re-created since it was kept): nothing is sent. */
  droppedGone (hint: Hint): void {
    if (!this.remove(hint)) return
    this.counters.dropped++
    this.counters.droppedRecords += hint.records.length
    this.counters.droppedGone += hint.records.length
  }

  /** Drops every hint older than the window. */
  expire (nowMs: number): void {
    for (const target of [...this.byTarget.keys()]) this.peek(target, nowMs)
  }

  targets (): PeerId[] { return [...this.byTarget.keys()] }

  has (target: PeerId): boolean { return (this.byTarget.get(target)?.size ?? 0) > 0 }

  /** Hints held per target (for /metrics: which replica is away, and how far behind). */
  pendingByTarget (): Array<{ target: PeerId, hints: number }> {
    return [...this.byTarget].map(([target, queues]) => {
      let hints = 0
      for (const list of queues.values()) hints += list.length
      return { target, hints }
    })
  }

  stats (): HintStats {
    let pending = 0
    let pendingRecords = 0
    for (const queues of this.byTarget.values()) {
      for (const list of queues.values()) {
        pending += list.length
        for (const h of list) pendingRecords += h.records.length
      }
    }
    return { ...this.counters, pending, pendingRecords, pendingBytes: this.bytes, targets: this.byTarget.size, diskBytes: this.files?.log.diskBytes ?? 0 }
  }

  /**
   * Encodes (with hint files), bounds and queues a hint; with hint files also appends it. Answers
   * the promise of its outcome, or the outcome itself when it was dropped at once.
   */
  private admit (hint: Hint): Promise<HintOutcome> | 'full' | 'failed' {
    let frame: Uint8Array | undefined
    if (this.files !== undefined) {
      const { clock } = this.files
      try {
        frame = encodeHintFrame({ ...hint, createdAtWallMs: clock.wallNow() - (clock.now() - hint.createdAt) })
      } catch (err) {
        this.files.logger.warn({ target: hint.target, space: hint.space.name, partition: hint.partition, err: (err as Error).message }, 'hint cannot be encoded: dropped (anti-entropy will repair)')
        this.countDropped(hint, 'failed')
        return 'failed'
      }
      hint.bytes = frame.length
    }
    const used = this.files?.log.diskBytes ?? this.bytes
    if (used + hint.bytes > this.maxBytes) {
      this.countDropped(hint, 'full')
      return 'full'
    }
    this.enqueue(hint)
    this.counters.written++
    this.counters.writtenRecords += hint.records.length
    if (this.files === undefined || frame === undefined) return Promise.resolve('kept')
    const { file, durable } = this.files.log.append(hint.target, frame)
    hint.file = file
    return durable.then(() => {
      if (this.diskFailing) {
        this.diskFailing = false
        this.files?.logger.info({}, 'hint files are written again')
      }
      return 'kept'
    }, err => this.diskFailed(hint, err))
  }

  /** A hint whose file write failed: dropped (counted, logged once a failing spell), unless already delivered. */
  private diskFailed (hint: Hint, err: unknown): HintOutcome {
    if (!this.remove(hint)) return 'kept'
    this.countDropped(hint, 'failed')
    if (!this.diskFailing) {
      this.diskFailing = true
      this.files?.logger.error({ target: hint.target, err: (err as Error).message },
        'a hint file could not be written: hints are dropped until the disk takes them again (anti-entropy repairs what they carried)')
    }
    return 'failed'
  }

  private enqueue (hint: Hint): void {
    let queues = this.byTarget.get(hint.target)
    if (queues === undefined) { queues = new Map(); this.byTarget.set(hint.target, queues) }
    const key = keyOf(hint.space, hint.partition)
    let list = queues.get(key)
    if (list === undefined) { list = []; queues.set(key, list) }
    list.push(hint)
    this.bytes += hint.bytes
  }

  private countDropped (hint: Hint, why: 'full' | 'failed' | 'expired'): void {
    this.counters.dropped++
    this.counters.droppedRecords += hint.records.length
    if (why === 'full') this.counters.droppedFull++
    else if (why === 'failed') this.counters.droppedDisk++
    else this.counters.droppedExpired++
  }

  /** Takes `hint` out of its queue; false when it is not there (already delivered or dropped). */
  private remove (hint: Hint): boolean {
    const queues = this.byTarget.get(hint.target)
    const key = keyOf(hint.space, hint.partition)
    const list = queues?.get(key)
    if (queues === undefined || list === undefined) return false
    const i = list.indexOf(hint)
    if (i < 0) return false
    list.splice(i, 1)
    this.bytes -= hint.bytes
    if (hint.file !== undefined) this.files?.log.done(hint.file)
    if (list.length === 0) queues.delete(key)
    if (queues.size === 0) this.byTarget.delete(hint.target)
    return true
  }

  private dropExpired (list: Hint[]): void {
    const h = list.shift()!
    this.bytes -= h.bytes
    if (h.file !== undefined) this.files?.log.done(h.file)
    this.countDropped(h, 'expired')
  }
}

/** What the write coordinator needs of hinted handoff. */
export interface HintRecorder {
  /**
   * Keeps records `target` missed: true once they are held (durable, with hint files); false when
   * some were dropped (the store full, or its files failing: counted and logged). Never rejects.
   */
  record(target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[]): Promise<boolean>
}

export type HintedHandoffContext = Pick<ReplicationContext, 'self' | 'transport' | 'clock' | 'hlc' | 'log' | 'detector' | 'life' | 'addr' | 'spaceGone'> & {
  opts: Pick<ResolvedReplicatorOptions, 'requestTimeoutMs' | 'maxBatchRecords' | 'maxBatchBytes' | 'hintReplayConcurrency'>
}

export class HintedHandoff implements HintRecorder {
  private readonly replaying = new Set<PeerId>()
  private readonly replayWanted: PeerId[] = []

  constructor (private readonly ctx: HintedHandoffContext, readonly store: HintStore) {}

  async record (target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[]): Promise<boolean> {
    const { clock, log, opts } = this.ctx
    // One hint per repl.write batch: a hint file's frames stay within the bounds a replica takes.
    const outcomes = await Promise.all(chunkRecords(records, opts.maxBatchRecords, opts.maxBatchBytes).map(async chunk => {
      let bytes = 64
      for (const r of chunk) bytes += recordBytes(r)
      return await this.store.addDurably({ target, space, partition, records: chunk, createdAt: clock.now(), bytes })
    }))
    if (outcomes.includes('full')) log.warn({ target, space: space.name, partition, records: records.length }, 'hint store full: hint dropped (anti-entropy will repair)')
    return outcomes.every(o => o === 'kept')
  }

  /** A peer that is back ('alive', 'join') gets its hints now rather than at the next periodic replay. */
  memberChanged (ev: MemberEvent): void {
    if ((ev.type === 'alive' || ev.type === 'join') && ev.member.id !== this.ctx.self && this.store.has(ev.member.id)) {
      this.requestReplay(ev.member.id)
    }
  }

  /** Drops expired hints and replays the rest to every target the detector says is reachable. */
  replayAll (): void {
    this.store.expire(this.ctx.clock.now())
    for (const t of this.store.targets()) if (this.ctx.detector.isReachable(t)) this.requestReplay(t)
  }

  private requestReplay (target: PeerId): void {
    if (this.ctx.life.stopped || this.replaying.has(target) || this.replayWanted.includes(target)) return
    this.replayWanted.push(target)
    this.pumpReplay()
  }

  private pumpReplay (): void {
    while (!this.ctx.life.stopped && this.replaying.size < this.ctx.opts.hintReplayConcurrency && this.replayWanted.length > 0) {
      const target = this.replayWanted.shift()!
      this.replaying.add(target)
      void this.replay(target).finally(() => {
        this.replaying.delete(target)
        this.pumpReplay()
      })
    }
  }

  /**
   * Replays the hints of one target, partition by partition, each partition's in order. A failure
   * of the target's replica of one partition (STORE_FAILED: its disk failed, it is out of service)
   * leaves that partition's hints for a later replay and goes on with the next partition; any
   * other failure (unreachable, timeout, stopped) ends the replay, the hints stay.
   */
  private async replay (target: PeerId): Promise<void> {
    const { clock, detector, log, life, opts } = this.ctx
    for (const queue of this.store.queues(target)) {
      let hint: Hint | undefined
      while (!life.stopped && (hint = this.store.peek(target, clock.now(), queue)) !== undefined) {
        if (!detector.isReachable(target)) return
        if (this.ctx.spaceGone(hint.space)) {
          // Dropped (or re-created) since: delivered, the hint would re-create its data there.
          log.info({ target, space: hint.space.name, uid: hint.space.uid, partition: hint.partition, records: hint.records.length }, 'hint for a space since dropped: dropped')
          this.store.droppedGone(hint)
          continue
        }
        // The hint's records pass the same skew bound as every copy between replicas: one from
        // the future is not handed on (the target would refuse the whole batch for it anyway, and
        // the hints behind it would wait for as long as the skew lasts).
        const records = admitCopied(this.ctx, hint.records, { peer: target, path: 'hint replay', space: hint.space, partition: hint.partition })
        try {
          for (const chunk of chunkRecords(records, opts.maxBatchRecords, opts.maxBatchBytes)) {
            await pushRecords(this.ctx, target, hint.space, hint.partition, chunk, opts.requestTimeoutMs)
          }
          this.store.delivered(hint, hint.records.length - records.length)
        } catch (err) {
          if ((err as { code?: unknown } | null)?.code === 'CLOCK_SKEW') {
            // The target's bound is stricter than ours (its clock is behind, or ours ran ahead):
            // retrying would hold back every later hint for as long as the skew lasts. Dropped,
            // like a refused copy: anti-entropy offers the records again once they are in bound.
            log.warn({ target, space: hint.space.name, partition: hint.partition, records: hint.records.length, err: (err as Error).message },
              'hint refused by its target for clock skew; dropped (anti-entropy offers the records again)')
            this.store.delivered(hint, hint.records.length)
            continue
          }
          if (isPermanent(err)) {
            log.warn({ target, err: errText(err) }, 'hint refused by its target; dropped')
            this.store.delivered(hint)
            continue
          }
          if (isPartitionFailure(err)) {
            log.debug({ target, space: hint.space.name, partition: hint.partition, err: errText(err) }, "hint replay failed on the target's replica of this partition; its other partitions go on, this one is retried later")
            break
          }
          log.debug({ target, err: errText(err) }, 'hint replay failed; will retry')
          return
        }
      }
    }
  }
}

/** A target's answer that concerns its replica of one partition only, not the target as a whole. */
function isPartitionFailure (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'STORE_FAILED' || code === 'NOT_HELD'
}
