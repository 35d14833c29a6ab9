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
import type { DiskSegment, LiveBatch } from './disk-segment.js'
import { keyHash } from './key-index.js'
import type { SpaceSchema } from '../schema/index.js'
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

export type CompactionContext = Pick<PartitionContext, 'dir' | 'space' | 'clock' | 'log' | 'files' | 'compactions' | 'opts' | 'counters' | 'status' | 'index' | 'manifest' | 'corruption'>

/** The result of a compaction that did not run (its store closed while it waited for a slot). */
function noCompaction (segmentsIn: number): CompactionResult {
  return { segmentsIn, segmentsOut: segmentsIn, rowsKept: 0, deadDropped: 0, tombstonesPurged: 0 }
}

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
    const all = this.ctx.index.segments
    if (all.size === 0) return undefined
    // A segment known damaged would fail the merge at the same block every time: the others merge
    // without it (a merge that leaves one out keeps tombstones, as a size tier does), until the
    // replica is rebuilt from the other replicas or, with none, for good.
    const segments = [...all.values()].filter(s => !this.ctx.corruption.unreadable(s))
    if (segments.length === 0) return undefined
    if (this.fullCompactionDue()) return segments
    if (segments.length <= this.ctx.opts.compactionMaxSegments) return undefined
    return sizeTier(segments)
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
    // It waits for one of the peer's compaction slots (compaction-slots.ts) before reading
    // anything; the store may close meanwhile, and then there is nothing to merge.
    const { compactions, status } = this.ctx
    const merged = compactions.run(async () => status.closed ? noCompaction(segments.length) : await this.merge(segments))
    this.compacting = merged.then(r => {
      this.compacting = undefined
      return r
    }, (err: unknown) => {
      this.compacting = undefined
      // A block of an input that fails its check is damage, not a disk failure: the partition keeps
      // taking writes (status.failed stays unset), the damage is reported (the replica leaves
      // service and is repaired from the other replicas) and later plans leave that segment out.
      this.ctx.corruption.report(err)
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
    // A k-way merge of the inputs' live rows in key order (each input is in key order), written as
    // it goes, a record batch at a time: memory holds a chunk of records per input, one batch being
    // written, and per output row where it came from (7 bytes: at the swap, a row still live there
    // moves). The live bits of every input are taken in this tick, with liveRows: each id is live
    // in at most one of them.
    const schema = this.ctx.space().schema
    if (inputs.length > 0xffff) throw new RangeError(`a compaction of ${inputs.length} segments (at most 65,535)`)
    const heads = inputs.map((s, k) => new MergeInput(s, k, s.liveSnapshot(), schema))
    const fromSeg = new Uint16Array(liveRows)
    const fromRow = new Uint32Array(liveRows)
    const fromDeleted = new Uint8Array(liveRows)
    const purge: Array<{ id: string, version: number, seg: DiskSegment, row: number }> = []
    let kept = 0
    const segment = await manifest.writeSegmentStream(schema, async w => {
      for (const h of heads) await h.load()
      let sinceYield = 0
      for (;;) {
        let min: MergeInput | undefined
        for (const h of heads) if (h.record !== undefined && (min === undefined || h.before(min))) min = h
        if (min === undefined) break
        const r = min.record!
        if (r.deleted && r.version < horizon) {
          purge.push({ id: r.id, version: r.version, seg: min.seg, row: min.row })
        } else {
          if (kept === liveRows) throw new Error(`compaction: more than the ${liveRows} live rows counted`)
          fromSeg[kept] = min.input
          fromRow[kept] = min.row
          fromDeleted[kept] = r.deleted ? 1 : 0
          kept++
          if (w.add(r)) await w.writeBatch()
        }
        if (!min.step()) await min.load()
        // Reads through the cache may answer without leaving the microtask queue: let timers and I/O in.
        if (++sinceYield === MERGE_STEP) { sinceYield = 0; await new Promise(resolve => setImmediate(resolve)) }
      }
    })
    counters.rowsRewritten += kept
    const dropped = new Set(inputs.map(s => s.id))
    let swapped = false
    try {
      await manifest.update(m => {
        // The swap, in the manifest's turn and one tick: rows still newest move to the merged
        // segment; the rest stay dropped; expired tombstones still newest go.
        if (segment !== undefined) {
          if (segment.rows !== kept) throw new Error(`compaction wrote ${segment.rows} rows of ${kept}`)
          index.addSegment(segment)
          for (let j = 0; j < kept; j++) index.moveRow(inputs[fromSeg[j]!]!, fromRow[j]!, segment, j, fromDeleted[j] === 1)
        }
        for (const { id, version, seg, row } of purge) if (index.purge(id, seg, row, version)) result.tombstonesPurged++
        for (const s of inputs) index.removeSegment(s)
        swapped = true
        return { ...m, nextSegment: manifest.nextSegmentId, segments: [...m.segments.filter(x => !dropped.has(x.id)), ...(segment === undefined ? [] : [segment.meta])] }
      })
    } catch (err) {
      if (swapped) {
        this.ctx.status.failed ??= err as Error
        throw err
      }
      await segment?.close()
      throw err
    }
    result.segmentsOut = segment === undefined ? 0 : 1
    result.rowsKept = segment === undefined ? 0 : segment.liveCount
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

/**
 * Records read from an input at a time (of one of its batches): 8,192 rows of a few columns are a
 * few MB of objects; each read takes the batch's columns from the block cache.
 */
const MERGE_CHUNK_ROWS = 8192

/** One input of a merge: its live rows under a snapshot of its bits, in key order, a chunk at a time. */
class MergeInput {
  /** The current row; undefined once every live row was taken. */
  record: VersionedRecord | undefined
  /** Its key hash (compared first) and its row in the segment. */
  hash = 0
  row = 0
  private readonly batches: AsyncGenerator<LiveBatch>
  private batch: LiveBatch | undefined
  private batchAt = 0
  private chunk: VersionedRecord[] = []
  private chunkRows = new Uint32Array(0)
  private at = 0

  constructor (readonly seg: DiskSegment, readonly input: number, live: Uint8Array, private readonly schema: SpaceSchema) {
    this.batches = seg.liveBatches(live, true)
  }

  /** Whether the current row comes before `o`'s in key order (compareKeys, the hash computed once a row). */
  before (o: MergeInput): boolean {
    return this.hash !== o.hash ? this.hash < o.hash : this.record!.id < o.record!.id
  }

  /** Moves to the next row of the chunk; false at its end (then load()). */
  step (): boolean {
    if (++this.at >= this.chunk.length) return false
    this.head()
    return true
  }

  /** Reads the next chunk and moves to its first row (record undefined at the end). */
  async load (): Promise<void> {
    if (this.batch === undefined || this.batchAt >= this.batch.length) {
      const next = await this.batches.next()
      if (next.done === true) {
        this.record = undefined
        this.chunk = []
        return
      }
      this.batch = next.value
      this.batchAt = 0
    }
    const b = this.batch
    const k = Math.min(MERGE_CHUNK_ROWS, b.length - this.batchAt)
    let local: Uint32Array
    if (b.rows !== undefined) {
      local = b.rows.subarray(this.batchAt, this.batchAt + k)
    } else {
      local = new Uint32Array(k)
      for (let i = 0; i < k; i++) local[i] = this.batchAt + i
    }
    this.batchAt += k
    this.chunk = await this.seg.records(b.batch, local, this.schema)
    const first = this.seg.file.firstRow(b.batch)
    this.chunkRows = new Uint32Array(k)
    for (let i = 0; i < k; i++) this.chunkRows[i] = first + local[i]!
    this.at = 0
    this.head()
  }

  private head (): void {
    const r = this.chunk[this.at]!
    this.record = r
    this.hash = keyHash(r.id)
    this.row = this.chunkRows[this.at]!
  }
}

/** Records merged between two yields to the event loop (a few ms of work). */
const MERGE_STEP = 8192

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
