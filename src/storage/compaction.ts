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
import { locate, rowOf } from './live-index.js'
import { removeFiles } from './fsutil.js'
import type { Segment } from './segment.js'

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
  private plan (): Segment[] | undefined {
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
  private run (inputs: Segment[] | undefined): Promise<CompactionResult> {
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

  private async merge (inputs: Segment[]): Promise<CompactionResult> {
    const { index, manifest, counters } = this.ctx
    const result: CompactionResult = { segmentsIn: inputs.length, segmentsOut: 0, rowsKept: 0, deadDropped: 0, tombstonesPurged: 0 }
    if (inputs.length === 0) return result
    // Tombstones may go only when every segment is merged (see plan).
    const horizon = inputs.length === index.segments.size ? this.tombstoneHorizon() : -1
    const keep: number[] = []
    const purge: number[] = []
    for (const s of inputs) {
      result.deadDropped += s.rows - s.liveCount
      for (let row = 0; row < s.rows; row++) {
        if (!s.isLive(row)) continue
        const loc = locate(s.id, row)
        if (s.deleted[row] === 1 && s.versions[row]! < horizon) purge.push(loc)
        else keep.push(loc)
      }
    }
    if (inputs.length === 1 && purge.length === 0 && keep.length === inputs[0]!.rows) {
      return { ...result, segmentsOut: 1, rowsKept: keep.length }
    }
    const schema = this.ctx.space().schema
    const records = keep.map(loc => index.seg(loc).record(rowOf(loc), schema))
    const merged = records.length > 0 ? await manifest.writeSegment(schema, records) : undefined
    counters.rowsRewritten += records.length
    const dropped = new Set(inputs.map(s => s.id))
    await manifest.update(m => ({
      ...m,
      nextSegment: manifest.nextSegmentId,
      segments: [...m.segments.filter(x => !dropped.has(x.id)), ...(merged === undefined ? [] : [merged.meta])]
    }))
    // The swap, in one tick: rows still newest move to the merged segment; the rest stay dropped.
    if (merged !== undefined) {
      index.segments.set(merged.id, merged)
      for (let j = 0; j < keep.length; j++) {
        if (index.get(merged.ids[j]!) === keep[j]) index.relocate(merged.ids[j]!, locate(merged.id, j))
      }
    }
    for (const loc of purge) {
      const id = index.seg(loc).ids[rowOf(loc)]!
      if (index.get(id) === loc) {
        index.remove(id)
        result.tombstonesPurged++
      }
    }
    for (const s of inputs) index.segments.delete(s.id)
    result.segmentsOut = merged === undefined ? 0 : 1
    result.rowsKept = merged === undefined ? 0 : merged.liveCount
    counters.compactions++
    counters.tombstonesPurged += result.tombstonesPurged
    await this.ctx.files.run(async () => { await removeFiles(this.ctx.dir, inputs.map(s => s.path)) })
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
