/**
 * Flushing a partition's memtable to a segment. The order makes a crash at any point
 * recoverable: a new WAL file (durable in the directory), then, in one tick, writes switch to it
 * and to a new memtable; the frozen records still current are written as a segment (fsynced), the
 * manifest is swapped (its `walFrom` moves past the old WAL), and only then is the old WAL
 * deleted. Replaying WAL records already in a segment is harmless under last-writer-wins.
 * One flush runs at a time; concurrent calls share it.
 */
import { join } from 'node:path'
import type { PartitionContext } from './context.js'
import { isDiskFault } from './failure.js'
import { MANIFEST_FILE } from './manifest.js'
import { segmentFileName } from './segment.js'
import type { VersionedRecord } from './types.js'
import type { WalFile } from './wal.js'

export type FlushContext = Pick<PartitionContext, 'dir' | 'space' | 'log' | 'hooks' | 'counters' | 'status' | 'index' | 'memtable' | 'wal' | 'manifest'> & {
  /** Starts a compaction if the policy asks for one (after each flush: it adds a segment). */
  maybeCompact: () => void
}

export class Flusher {
  private flushing: Promise<void> | undefined

  constructor (private readonly ctx: FlushContext) {}

  /** The running flush, if any. */
  get inFlight (): Promise<void> | undefined { return this.flushing }

  /** Starts a flush when the memtable is past its bounds and nothing stops one. */
  maybeFlush (): void {
    const { status, memtable } = this.ctx
    if (this.flushing !== undefined || status.closed || status.failed !== undefined) return
    if ((memtable.records.length > 0 || memtable.bytes > 0) && memtable.overBound(1)) this.flush().catch(() => {})
  }

  /**
   * Writes the memtable to a segment now (if not empty). Resolves when the segment is durable,
   * in the manifest, and the old WAL deleted. Concurrent calls share one flush.
   */
  flush (): Promise<void> {
    this.flushing ??= this.run().then(() => {
      this.flushing = undefined
      this.maybeFlush()
      this.ctx.maybeCompact()
      if (!this.ctx.status.closed) this.ctx.hooks.onMemtableGrowth?.()
    }, (err: unknown) => {
      this.flushing = undefined
      // One that met a disk fault failed the store, which logged it once (see run).
      if (this.ctx.status.failed === undefined && !this.ctx.status.closed) this.ctx.log.error({ err }, 'flush failed; the memtable and its WAL are kept')
      throw err
    })
    return this.flushing
  }

  /** Flushes, and retires every WAL file before the new one even when the memtable is empty. */
  async rotate (): Promise<void> {
    while (this.flushing !== undefined) await this.flushing.catch(() => {})
    this.flushing = this.run(true).finally(() => { this.flushing = undefined })
    await this.flushing
  }

  /** Resolves when no flush runs (whether it succeeded or not). */
  async settled (): Promise<void> { await this.flushing?.catch(() => {}) }

  private async run (always = false): Promise<void> {
    const { index, memtable, wal, manifest, status, dir } = this.ctx
    if ((memtable.records.length === 0 && memtable.bytes === 0 && !always) || status.failed !== undefined) return
    // The file each step writes, for the failure's report.
    let writing = dir
    let next: { seq: number, file: WalFile }
    try {
      next = await wal.openNext()
    } catch (err) {
      if (isDiskFault(err)) status.fail(err, 'flush', dir)
      throw err
    }
    // One tick: from here on, writes go to the new WAL and the new memtable together.
    const frozen = memtable.freeze()
    const frozenGeneration = memtable.generation - 1
    const oldWal = wal.switchTo(next)
    let swapped = false
    try {
      await oldWal.drain()
      // Every frame of the old WAL is durable; its applies put their records in `frozen` now.
      await memtable.settled(frozenGeneration)
      const records: VersionedRecord[] = []
      for (const r of frozen) if (index.holds(r)) records.push(r)
      writing = join(dir, segmentFileName(manifest.nextSegmentId))
      const written = records.length > 0 ? await manifest.writeSegment(this.ctx.space().schema, records) : undefined
      writing = join(dir, MANIFEST_FILE)
      try {
        await manifest.update(m => {
          // The swap, in the manifest's turn and one tick: row j of the segment is
          // records[order[j]], which lives there now unless a newer write replaced it meanwhile.
          if (written !== undefined) {
            const { segment, order } = written
            index.addSegment(segment)
            for (let row = 0; row < segment.rows; row++) index.moveToSegment(records[order[row]!]!, segment, row)
            swapped = true
          }
          return { ...m, walFrom: next.seq, nextSegment: manifest.nextSegmentId, segments: written === undefined ? m.segments : [...m.segments, written.segment.meta] }
        })
      } catch (err) {
        if (!swapped) await written?.segment.close()
        throw err
      }
    } catch (err) {
      if (swapped) {
        // The records live in the new segment in memory, which no manifest lists: serving them is
        // right (their old WAL still holds them), but nothing more may be written until a reopen
        // decides from what is on disk.
        status.fail(err, 'flush', writing)
        memtable.release()
        throw err
      }
      // A full disk or an I/O error fails the store (retried at every write, a flush would only
      // fail again, and the disk is the WAL's too); anything else (a file in the way, no
      // descriptor free) leaves the memtable to a later flush.
      if (isDiskFault(err)) status.fail(err, 'flush', writing)
      // Keep the frozen records in the memtable: their WAL (not yet deleted) still covers them.
      // Applies still pending on it settle first (their frames are durable or failed by now).
      await memtable.settled(frozenGeneration)
      memtable.thaw(r => index.holds(r))
      throw err
    }
    memtable.release()
    this.ctx.counters.flushes++
    await wal.retire(oldWal, next.seq)
  }
}
