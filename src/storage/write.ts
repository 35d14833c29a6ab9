/**
 * The write path of a partition: apply() checks the records, keeps the winners under
 * last-writer-wins, queues one WAL frame, and once that frame is fsynced (group commit:
 * concurrent calls share one write and one fsync, wal.ts) puts the winners in the memtable and
 * the index, checking last-writer-wins again against what concurrent applies put there meanwhile,
 * and resolves. Nothing is visible to reads, digests or anti-entropy before it is durable: a
 * write whose frame fails leaves no trace but the error (DESIGN.md section 5). A writer
 * outrunning the flusher waits for it rather than growing memory; a WAL write or fsync that fails
 * fails the store (failure.ts: logged once, replication takes the replica out of service), which
 * refuses writes until it is reopened.
 */
import { isHlc } from '../hlc/index.js'
import type { PartitionContext } from './context.js'
import { NEEDS_READ, type Entry } from './live-index.js'
import type { ApplyResult, VersionedRecord } from './types.js'
import { FRAME_HEADER_BYTES, encodeFrame, encodePackedFrame, type PackedRecords } from './wal.js'

/** The store was closed; nothing was written. */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError'
}

/** The store's disk failed earlier; it refuses writes until reopened (recovery decides what is durable). */
export class StoreFailedError extends Error {
  override name = 'StoreFailedError'
}

export type WriteContext = Pick<PartitionContext, 'space' | 'partition' | 'log' | 'opts' | 'hooks' | 'counters' | 'status' | 'index' | 'memtable' | 'wal'> & {
  flusher: { readonly inFlight: Promise<void> | undefined, maybeFlush: () => void }
  compactor: { readonly inFlight: Promise<unknown> | undefined }
}

export class PartitionWriter {
  constructor (private readonly ctx: WriteContext) {}

  async apply (records: readonly VersionedRecord[], packed?: PackedRecords): Promise<ApplyResult> {
    const { status, index, memtable, counters, flusher } = this.ctx
    this.refuseIfClosed()
    if (status.failed !== undefined) throw new StoreFailedError(`partition ${this.name()} refuses writes after a disk failure (${status.failure?.code ?? 'unknown'}): ${status.failed.message}`, { cause: status.failed })
    for (let i = 0; i < records.length; i++) checkRecord(records[i]!, i)
    // Back-pressure: a writer outrunning the flusher waits for it rather than growing memory.
    if (flusher.inFlight !== undefined && memtable.overBound(2)) await flusher.inFlight.catch(() => {})
    // And one outrunning compaction waits for it rather than piling up segments (each one more
    // place a read may have to look).
    const merging = this.ctx.compactor.inFlight
    if (merging !== undefined && index.segments.size > this.ctx.opts.compactionMaxSegments + 1) await merging.catch(() => {})
    this.refuseIfClosed()
    counters.applyCalls++
    // The batch's winners, in first-seen order: a record repeated in the batch replaces its
    // earlier copy in place. Checked against what is durable now; checked again at the insert.
    const slot = new Map<string, number>()
    const winners: VersionedRecord[] = []
    // The index epoch at which each winner's id was in no segment (-1: it may be): until a swap,
    // the insert need not ask the segments' Bloom filters again.
    const absentAt: number[] = []
    let applied = 0
    let stale = 0
    for (const r of records) {
      const at = slot.get(r.id)
      let cur: Entry | undefined | typeof NEEDS_READ = at !== undefined ? winners[at]! : index.lookupNow(r.id)
      const absent = at === undefined && cur === undefined ? index.epoch : -1
      if (cur === NEEDS_READ) cur = await index.currentEntry(r.id)
      if (cur !== undefined && !(index.winsKnown(r, cur) ?? await index.wins(r, cur))) { stale++; continue }
      if (at !== undefined) {
        winners[at] = r
      } else {
        slot.set(r.id, winners.length)
        winners.push(r)
        absentAt.push(absent)
      }
      applied++
    }
    if (winners.length === 0) {
      counters.stale += stale
      // Nothing new, but "already held" must also mean "already durable".
      await this.ctx.wal.barrier()
      return { applied, stale }
    }
    // Every record new and distinct: the coordinator's bytes are the frame. Otherwise (some stale
    // or repeated) only the winners are logged, encoded here; that throws before anything changed
    // if a value is unencodable.
    const frame = packed !== undefined && winners.length === records.length ? encodePackedFrame(packed) : encodeFrame(winners)
    if (frame.length - FRAME_HEADER_BYTES > this.ctx.opts.maxFrameBytes) {
      throw new RangeError(`batch encodes to ${frame.length - FRAME_HEADER_BYTES} bytes, over maxFrameBytes (${this.ctx.opts.maxFrameBytes}); split it`)
    }
    const walFile = this.ctx.wal.active
    const done = walFile.append(frame)
    const generation = memtable.beginPending()
    counters.walFrames++
    memtable.bytes += frame.length
    flusher.maybeFlush()
    this.ctx.hooks.onMemtableGrowth?.()
    try {
      await done
    } catch (err) {
      memtable.endPending(generation)
      // A write or sync that failed leaves the file's state unknown: the store fails (logged once,
      // by the status, however many applies shared the group commit). One whose handle could not
      // be reopened wrote nothing: only these writes fail.
      if (walFile.broken !== undefined) status.fail(err, 'write-ahead log', walFile.path)
      throw err
    }
    // Durable: visible now, in the memtable of the WAL file that holds the frame. A concurrent
    // apply may have put a newer version of an id in meanwhile; then this one lost after all.
    try {
      for (let i = 0; i < winners.length; i++) {
        const w = winners[i]!
        const p = index.putIfNewer(w, () => { memtable.recordsOf(generation).push(w) }, absentAt[i])
        const put = typeof p === 'boolean' ? p : await p
        if (!put) { applied--; stale++ }
      }
    } catch (err) {
      // A key-index block or a row read back from disk failed: some winners are in, the rest only
      // in the WAL. Recovery at the next open decides them all from the WAL; until then the store
      // refuses writes.
      status.fail(err, 'read')
      throw err
    } finally {
      memtable.endPending(generation)
    }
    counters.applied += applied
    counters.stale += stale
    return { applied, stale }
  }

  private name (): string { return `${this.ctx.space().name}/${this.ctx.partition}` }

  private refuseIfClosed (): void {
    if (this.ctx.status.closed) throw new StoreClosedError(`partition ${this.name()} is closed`)
  }
}

function checkRecord (r: VersionedRecord, i: number): void {
  if (r === null || typeof r !== 'object') throw new TypeError(`records[${i}] is not a record`)
  if (typeof r.id !== 'string' || r.id.length === 0) throw new TypeError(`records[${i}].id must be a non-empty string`)
  if (!isHlc(r.version)) throw new TypeError(`records[${i}].version must be an HLC timestamp`)
  if (typeof r.deleted !== 'boolean') throw new TypeError(`records[${i}].deleted must be a boolean`)
  if (r.deleted ? r.row !== null : (r.row === null || typeof r.row !== 'object')) {
    throw new TypeError(`records[${i}].row must be ${r.deleted ? 'null for a tombstone' : 'an object'}`)
  }
}
