/**
 * Compaction of a partition's segments: which to merge (size-tiered, or every segment when
 * tombstones have expired or too much is dead), the merge itself (live rows only, into one new
 * segment, tombstones past their grace dropped by a full run only), and the periodic check.
 * A merge runs beside writes and flushes: rows that a write superseded meanwhile are decided
 * again at the swap, which happens in one tick after the manifest lists the merged segment.
 */
import { makeHlc } from '../hlc/index.js'
import type { Timer } from '../runtime/index.js'
import type { PartitionContext } from './context.js'
import type { DiskSegment } from './disk-segment.js'
import type { VersionedRecord } from './types.js'

export interface CompactionResult {
  segmentsIn: number
  segmentsOut: number
  rowsKept: number
  /** Dead rows (superseded versions) dropped. */
  deadDropped: number
  /** Live tombstones past the grace period dropped. */
  tombstonesPurged: number
}

export type CompactionContext = Pick<PartitionContext, 'dir' | 'space' | 'clock' | 'log' | 'files' | 'opts' | 'counters' | 'status' | 'index' | 'manifest'>

export class Compactor {
  private compacting: Promise<CompactionResult> | undefined
  /** Whether the running compaction takes every segment (and so may drop tombstones). */
  private compactingAll = false
  private timer: Timer | undefined

  constructor (private readonly ctx: CompactionContext) {}

  /** The running compaction, if any. */
  get inFlight (): Promise<CompactionResult> | undefined { return this.compacting }

  /** Whether the compaction policy asks for a run now (of either kind, see plan). */
  due (): boolean {
    return this.plan() !== undefined
  }

  /** Starts the compaction the policy asks for, if any and nothing stops one. */
  maybeCompact (): void {
    const { status } = this.ctx
    if (this.compacting !== undefined || status.closed || status.failed !== undefined) return
    const plan = this.plan()
    if (plan !== undefined) this.run(plan).catch(() => {})
  }

  /** Checks the policy every compactionCheckIntervalMs (tombstones expire with no write to notice it). */
  scheduleChecks (): void {
    this.timer = this.ctx.clock.setTimer(this.ctx.opts.compactionCheckIntervalMs, () => {
      if (this.ctx.status.closed) return
      this.maybeCompact()
      this.scheduleChecks()
    })
  }

  /** Cancels the periodic check (a running compaction goes on: see settled). */
  stop (): void { this.timer?.cancel() }

  /** Resolves when no compaction runs (whether it succeeded or not). */
  async settled (): Promise<void> { await this.compacting?.catch(() => {}) }

  /**
   * Merges every segment into one, dropping dead rows and tombstones older than the grace period
   * (by their HLC's physical time against clock.wallNow()). Safe under concurrent apply():
   * writes landing meanwhile win over the rows being copied, decided again at the swap.
   */
  async compact (): Promise<CompactionResult> {
    // A background merge of one tier may be running: this call asks for every segment.
    while (this.compacting !== undefined && !this.compactingAll) await this.compacting.catch(() => {})
    return await this.run(undefined)
  }

  private tombstoneHorizon (): number {
    return makeHlc(Math.max(0, this.ctx.clock.wallNow() - this.ctx.opts.tombstoneGraceMs), 0)
  }

  /**
   * What the policy asks for: a full compaction when tombstones have expired or too much of the
   * segments is dead (only a run over every segment may drop a tombstone: an older version of its
   * id in a segment left out would come back at the next recovery); else, past
   * compactionMaxSegments, a merge of one size tier (size-tiered compaction, as Cassandra's
   * default): segments of similar size merge into one about four times larger, so a row is
   * rewritten about once per tier (log4 of the partition over the flush size) rather than at every
   * merge, as it would be if each merge took every segment.
   */
  private plan (): DiskSegment[] | undefined {
    const segments = this.ctx.index.segments
    if (segments.size === 0) return undefined
    if (this.fullCompactionDue()) return [...segments.values()]
    if (segments.size <= this.ctx.opts.compactionMaxSegments) return undefined
    return sizeTier([...segments.values()])
  }

  private fullCompactionDue (): boolean {
    let rows = 0
    let live = 0
    const horizon = this.tombstoneHorizon()
    for (const s of this.ctx.index.segments.values()) {
      rows += s.rows
      live += s.liveCount
      if (s.liveTombstones > 0 && s.oldestTombstone < horizon) return true
    }
    return rows > 0 && (rows - live) / rows > this.ctx.opts.compactionDeadRatio
  }

  /** Runs one compaction of `inputs` (every segment when undefined); a call while one runs shares it. */
  private run (inputs: DiskSegment[] | undefined): Promise<CompactionResult> {
    if (this.compacting !== undefined) return this.compacting
    const all = this.ctx.index.segments
    const segments = inputs ?? [...all.values()]
    this.compactingAll = segments.length === all.size
    this.compacting = this.merge(segments).then(r => {
      this.compacting = undefined
      return r
    }, (err: unknown) => {
      this.compacting = undefined
      this.ctx.log.error({ err }, 'compaction failed; the old segments are kept')
      throw err
    })
    return this.compacting
  }

  private async merge (inputs: DiskSegment[]): Promise<CompactionResult> {
    const { index, manifest, counters } = this.ctx
    const result: CompactionResult = { segmentsIn: inputs.length, segmentsOut: 0, rowsKept: 0, deadDropped: 0, tombstonesPurged: 0 }
    if (inputs.length === 0) return result
    // Tombstones may go only when every segment is merged (see plan).
    const horizon = inputs.length === index.segments.size ? this.tombstoneHorizon() : -1
    let liveRows = 0
    for (const s of inputs) {
      result.deadDropped += s.rows - s.liveCount
      liveRows += s.liveCount
    }
    if (inputs.length === 1 && inputs[0]!.liveCount === inputs[0]!.rows && !(inputs[0]!.liveTombstones > 0 && inputs[0]!.oldestTombstone < horizon)) {
      return { ...result, segmentsOut: 1, rowsKept: liveRows }
    }
    // The rows live now, read a batch at a time (the reads yield to the event loop between
    // batches), with where each came from: at the swap, a row still live there moves.
    const schema = this.ctx.space().schema
    const records: VersionedRecord[] = []
    const from: Array<{ seg: DiskSegment, row: number }> = []
    const purge: Array<{ r: VersionedRecord, seg: DiskSegment, row: number }> = []
    for (const s of inputs) {
      for await (const lb of s.liveBatches(s.liveSnapshot(), true)) {
        const first = s.file.firstRow(lb.batch)
        const rs = await s.records(lb.batch, lb.rows, schema)
        for (let k = 0; k < rs.length; k++) {
          const r = rs[k]!
          const row = first + (lb.rows === undefined ? k : lb.rows[k]!)
          if (r.deleted && r.version < horizon) purge.push({ r, seg: s, row })
          else { records.push(r); from.push({ seg: s, row }) }
        }
      }
    }
    const written = records.length > 0 ? await manifest.writeSegment(schema, records) : undefined
    counters.rowsRewritten += records.length
    const dropped = new Set(inputs.map(s => s.id))
    let swapped = false
    try {
      await manifest.update(m => {
        // The swap, in the manifest's turn and one tick: rows still newest move to the merged
        // segment; the rest stay dropped; expired tombstones still newest go.
        if (written !== undefined) {
          const { segment, order } = written
          index.addSegment(segment)
          for (let j = 0; j < segment.rows; j++) {
            const k = order[j]!
            index.moveRow(from[k]!.seg, from[k]!.row, segment, j, records[k]!.deleted)
          }
        }
        for (const { r, seg, row } of purge) if (index.purge(r.id, seg, row, r.version)) result.tombstonesPurged++
        for (const s of inputs) index.removeSegment(s)
        index.moved()
        swapped = true
        return { ...m, nextSegment: manifest.nextSegmentId, segments: [...m.segments.filter(x => !dropped.has(x.id)), ...(written === undefined ? [] : [written.segment.meta])] }
      })
    } catch (err) {
      if (swapped) {
        this.ctx.status.failed ??= err as Error
        throw err
      }
      await written?.segment.close()
      throw err
    }
    result.segmentsOut = written === undefined ? 0 : 1
    result.rowsKept = written === undefined ? 0 : written.segment.liveCount
    counters.compactions++
    counters.tombstonesPurged += result.tombstonesPurged
    // Queries that took their snapshot before the swap may still read the old segments: each is
    // deleted when the last of them is done (a crash before that leaves files recovery deletes).
    // Those no query reads go now, before the compaction answers.
    const retiring = inputs.map(s => {
      const pinned = s.pinned
      const done = s.retire().catch((err: unknown) => { this.ctx.log.warn({ err, file: s.path }, 'deleting a compacted segment failed; recovery deletes it at the next open') })
      return pinned ? undefined : done
    })
    await Promise.all(retiring)
    this.ctx.log.debug({ ...result }, 'compacted')
    return result
  }
}

/** Segments this many times larger than the smallest of a tier still belong to it. */
const TIER_FACTOR = 4
/** Segments a tier needs before it is merged. */
const TIER_MIN_SEGMENTS = 4

/**
 * The segments to merge next: the smallest tier (a run of segments, by rows ascending, each at
 * most TIER_FACTOR times the tier's smallest) with at least TIER_MIN_SEGMENTS members; failing
 * that, the TIER_MIN_SEGMENTS smallest segments (a bounded amount of work that still lowers the
 * count).
 */
export function sizeTier<T extends { rows: number }> (segments: readonly T[]): T[] {
  const sorted = [...segments].sort((a, b) => a.rows - b.rows)
  for (let i = 0; i < sorted.length; i++) {
    const limit = Math.max(1, sorted[i]!.rows) * TIER_FACTOR
    let j = i
    while (j < sorted.length && sorted[j]!.rows <= limit) j++
    if (j - i >= TIER_MIN_SEGMENTS) return sorted.slice(i, j)
  }
  return sorted.slice(0, Math.min(TIER_MIN_SEGMENTS, sorted.length))
}
