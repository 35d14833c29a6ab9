/**
 * Compaction of a partition's segments: which to merge (size-tiered, or every segment when
 * tombstones have expired or too much is dead), the merge itself (live rows only, into one new
 * segment, tombstones below the purge horizon dropped by a full run only: older than the grace
 * period and than the last repair with every replica, repair.ts), and the periodic check.
 * A merge runs beside writes and flushes: rows that a write superseded meanwhile are decided
 * again at the swap, which happens in one tick after the manifest lists the merged segment.
 */
import type { Timer } from '../runtime/index.js'
import type { PartitionContext } from './context.js'
import type { DiskSegment, LiveBatch } from './disk-segment.js'
import { purgeHorizon } from './repair.js'
import { compareUtf16Order, keyHashesUtf8 } from './key-index.js'
import type { SpaceSchema } from '../schema/index.js'
import type { SegmentFileWriter, SourceColumn } from './segment-file.js'

export interface CompactionResult {
  segmentsIn: number
  segmentsOut: number
  rowsKept: number
  /** Dead rows (superseded versions) dropped. */
  deadDropped: number
  /** Live tombstones below the purge horizon (past the grace period and repaired everywhere) dropped. */
  tombstonesPurged: number
}

export type CompactionContext = Pick<PartitionContext, 'dir' | 'space' | 'clock' | 'log' | 'files' | 'compactions' | 'io' | 'opts' | 'counters' | 'status' | 'index' | 'manifest' | 'corruption' | 'repair' | 'memtable'>

/** The result of a compaction that did not run (its store closed while it waited for a slot). */
function noCompaction (segmentsIn: number): CompactionResult {
  return { segmentsIn, segmentsOut: segmentsIn, rowsKept: 0, deadDropped: 0, tombstonesPurged: 0 }
}

export class Compactor {
  private compacting: Promise<CompactionResult> | undefined
  /** Whether the running compaction takes every segment (and so may drop tombstones). */
  private compactingAll = false
  private timer: Timer | undefined

  /**
   * `flush`: writes the memtable to a segment (the store's Flusher). The periodic check uses it
   * when the memtable holds a tombstone below the purge horizon: a tombstone is purged only from
   * segments, and a partition that takes no more writes would keep it in memory for good, while
   * the other replicas purge theirs (their digests would never agree again).
   */
  constructor (private readonly ctx: CompactionContext, private readonly flush: () => Promise<void> = async () => {}) {}

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
      // The flush's end asks for a compaction itself (Flusher's maybeCompact).
      if (this.memtablePurgeable()) this.flush().catch(() => {})
      else this.maybeCompact()
      this.scheduleChecks()
    })
  }

  /** Whether the active memtable holds a tombstone below the purge horizon (one pass over its records). */
  private memtablePurgeable (): boolean {
    const horizon = this.tombstoneHorizon()
    if (horizon <= 0 || this.ctx.status.failed !== undefined) return false
    for (const r of this.ctx.memtable.records) if (r.deleted && r.version < horizon) return true
    return false
  }

  /** Cancels the periodic check (a running compaction goes on: see settled). */
  stop (): void { this.timer?.cancel() }

  /** Resolves when no compaction runs (whether it succeeded or not). */
  async settled (): Promise<void> { await this.compacting?.catch(() => {}) }

  /**
   * Merges every segment into one, dropping dead rows and tombstones below the purge horizon
   * (tombstoneHorizon). Safe under concurrent apply():
   * writes landing meanwhile win over the rows being copied, decided again at the swap.
   */
  async compact (): Promise<CompactionResult> {
    // A background merge of one tier may be running: this call asks for every segment.
    while (this.compacting !== undefined && !this.compactingAll) await this.compacting.catch(() => {})
    return await this.run(undefined)
  }

  /**
   * Tombstones below this may go: older than the grace period and than the last repair completed
   * with every other replica (repair.ts). Dropped any earlier, a tombstone a replica that was away
   * never received could not win against that replica's older row, which anti-entropy would then
   * copy back everywhere.
   */
  private tombstoneHorizon (): number {
    return purgeHorizon(this.ctx.clock.wallNow(), this.ctx.opts.tombstoneGraceMs, this.ctx.repair.record.repairedTo)
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
    // A k-way merge of the inputs' live rows in key order (each input is in key order), on their
    // key columns (ids as UTF-8, versions, flags of a batch at a time), written as it goes: each
    // merged row is copied from its input's batch by the writer (segment-gather.ts), a record batch
    // at a time; no row becomes an object, no id a string.
    // Memory holds the current batch of each input, the batches the pending output batch copies
    // from, and per output row where it came from (7 bytes: at the swap, a row still live there
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
        for (const h of heads) if (!h.done && (min === undefined || h.before(min))) min = h
        if (min === undefined) break
        if (min.deleted && min.version < horizon) {
          purge.push({ id: min.idString(), version: min.version, seg: min.seg, row: min.row })
        } else {
          if (kept === liveRows) throw new Error(`compaction: more than the ${liveRows} live rows counted`)
          fromSeg[kept] = min.input
          fromRow[kept] = min.row
          fromDeleted[kept] = min.deleted ? 1 : 0
          kept++
          if (w.addFrom(min.sourceIn(w), min.local, min.version, min.deleted)) await w.writeBatch()
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
        this.ctx.status.fail(err, 'compaction')
        throw err
      }
      await segment?.close()
      throw err
    }
    result.segmentsOut = segment === undefined ? 0 : 1
    result.rowsKept = segment === undefined ? 0 : segment.liveCount
    counters.compactions++
    counters.tombstonesPurged += result.tombstonesPurged
    const io = this.ctx.io
    io.compactions++
    for (const s of inputs) io.compactionBytesRead += s.diskBytes
    io.compactionBytesWritten += segment?.diskBytes ?? 0
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
 * One input of a merge: its live rows under a snapshot of its bits, in key order, a batch at a
 * time: the batch's ids (the id column as UTF-8), versions and flags, and its other columns as
 * Arrow data, which the writer copies the rows' values from (read past the block cache: a
 * compaction reads each once, and kept there they would push out what queries read).
 */
class MergeInput {
  /** Every live row was taken. */
  done = false
  /** The current row: its key hash (compared first), version and flag; its row in the segment and in its batch. */
  hash = 0
  version = 0
  deleted = false
  row = 0
  local = 0
  /** Its id: idBytes[idStart, idEnd). */
  private idStart = 0
  private idEnd = 0
  private idBytes: Uint8Array<ArrayBufferLike> = new Uint8Array(0)
  private idOffsets: Int32Array<ArrayBufferLike> = new Int32Array(1)
  private readonly batches: AsyncGenerator<LiveBatch>
  private versions: Float64Array<ArrayBufferLike> = new Float64Array(0)
  private flags: Uint8Array<ArrayBufferLike> = new Uint8Array(0)
  /** The live batch-local rows of the batch (undefined: every row), and the position in them. */
  private live: Uint32Array | undefined
  private length = 0
  private at = 0
  private first = 0
  private batchRows = 0
  private columns: ReadonlyMap<string, SourceColumn> = new Map()
  /** The batch's number as a source of the writer, and the writer's batch it was registered for. */
  private source = -1
  private sourceFor = -1
  private readonly hashes = new Uint32Array(2)

  constructor (readonly seg: DiskSegment, readonly input: number, live: Uint8Array, private readonly schema: SpaceSchema) {
    this.batches = seg.liveBatches(live, true)
  }

  /** Whether the current row comes before `o`'s in key order (compareKeys on the ids' bytes, the hash computed once a row). */
  before (o: MergeInput): boolean {
    return this.hash !== o.hash ? this.hash < o.hash : compareUtf16Order(this.idBytes, this.idStart, this.idEnd, o.idBytes, o.idStart, o.idEnd) < 0
  }

  /** The current row's id as a string (a purge names it). */
  idString (): string {
    return Buffer.from(this.idBytes.buffer, this.idBytes.byteOffset, this.idBytes.byteLength).toString('utf8', this.idStart, this.idEnd)
  }

  /** The current batch's number as a source of `w` (registered once per batch of w's). */
  sourceIn (w: SegmentFileWriter): number {
    if (this.sourceFor !== w.batchesWritten) {
      this.source = w.source(this.batchRows, this.columns)
      this.sourceFor = w.batchesWritten
    }
    return this.source
  }

  /** Moves to the next live row of the batch; false at its end (then load()). */
  step (): boolean {
    if (++this.at >= this.length) return false
    this.head()
    return true
  }

  /** Reads the next batch with a live row and moves to its first one (done at the end). */
  async load (): Promise<void> {
    const next = await this.batches.next()
    if (next.done === true) {
      this.done = true
      this.columns = new Map()
      return
    }
    const { batch: b, rows, length } = next.value
    const f = this.seg.file
    // One at a time: reads completing together would decode in one stretch of the event loop.
    const versions = await f.versions(b, { transient: true })
    const flags = await f.deleted(b, { transient: true })
    const columns = new Map<string, SourceColumn>()
    for (const c of this.schema) {
      const vec = await f.arrowColumn(b, c.name, { transient: true })
      if (vec === undefined) continue
      if (vec.data.length !== 1) throw new Error(`segment ${f.path}: batch ${b}, column ${c.name} in ${vec.data.length} chunks`)
      columns.set(c.name, { type: f.columnType(c.name)!, data: vec.data[0]! })
    }
    const ids = columns.get('id')?.data
    if (ids === undefined || !(ids.valueOffsets instanceof Int32Array) || !(ids.values instanceof Uint8Array)) throw new Error(`segment ${f.path}: batch ${b} has no utf8 id column`)
    this.idOffsets = ids.valueOffsets
    this.idBytes = ids.values
    this.versions = versions
    this.flags = flags
    this.live = rows
    this.length = length
    this.first = f.firstRow(b)
    this.batchRows = f.batchRows(b)
    this.columns = columns
    this.sourceFor = -1
    this.at = 0
    this.head()
  }

  private head (): void {
    const i = this.live === undefined ? this.at : this.live[this.at]!
    this.local = i
    this.row = this.first + i
    this.idStart = this.idOffsets[i]!
    this.idEnd = this.idOffsets[i + 1]!
    keyHashesUtf8(this.idBytes, this.idStart, this.idEnd, this.hashes)
    this.hash = this.hashes[0]!
    this.version = this.versions[i]!
    this.deleted = this.flags[i] === 1
  }
}

/** Rows merged between two yields to the event loop (a few ms of work). */
const MERGE_STEP = 4096

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
