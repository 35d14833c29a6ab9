/**
 * The read side of a partition: a record by id, a scan of every record, the records of one
 * anti-entropy bucket, and the live rows as column batches for queries (segment columns as
 * decoded, the memtable's rows converted to columns and cached while the index is unchanged).
 * Every answer is read from the index of the moment; nothing here changes the partition.
 */
import { gather, gatherCompact, isCompact, shareBatch, vectorFromValues, type BatchOptions, type ColumnBatch, type ColumnVector, type StoredBatch, type StoredVector, type ValueType } from '../columnar/index.js'
import type { Row } from '../schema/index.js'
import type { PartitionContext } from './context.js'
import { stableHash } from './hash.js'
import type { DiskSegment } from './disk-segment.js'
import { STALE, isSegmentEntry } from './live-index.js'
import type { VersionedRecord } from './types.js'

/** Rows in one batch of memtable rows (batches()). */
const MEM_BATCH_ROWS = 65_536
/** Column sets whose memtable batches are cached at once. */
const MEM_CACHE_COLUMN_SETS = 4

type ColumnSpec = ReadonlyArray<{ name: string, type: ValueType }>

export type ReadContext = Pick<PartitionContext, 'space' | 'index' | 'memtable' | 'counters'>

export class PartitionReader {
  /** The index generation the memtable batch cache was built at. */
  private memCacheGeneration = -1
  private readonly memCache = new Map<string, ColumnBatch[]>()

  constructor (private readonly ctx: ReadContext) {}

  async get (id: string): Promise<VersionedRecord | undefined> {
    const { index } = this.ctx
    for (;;) {
      const cur = index.current(id, await index.lookup(id))
      if (cur === STALE) continue
      if (cur === undefined) return undefined
      if (!isSegmentEntry(cur)) return index.shaped(cur)
      // Pinned in the tick that found it live: a compaction meanwhile deletes it only after.
      cur.seg.pin()
      try {
        return await index.materialize(cur)
      } finally {
        cur.seg.unpin()
      }
    }
  }

  /**
   * Every record held (tombstones too unless `includeTombstones` is false), newest version of each
   * id, as of the call: the memtable's current records and each segment's live bits are taken in
   * one synchronous step; the segments' rows are then read a batch at a time (pinned: a compaction
   * meanwhile does not delete them under the scan).
   */
  async * scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    const size = Math.max(1, opts.batchRecords ?? 1000)
    const tombstones = opts.includeTombstones ?? true
    const mem = this.memRecords(r => tombstones || !r.deleted)
    const parts = this.pinLive(tombstones)
    try {
      let batch: VersionedRecord[] = []
      for (const r of mem) {
        batch.push(r)
        if (batch.length >= size) { yield batch; batch = [] }
      }
      const schema = this.ctx.space().schema
      for (const { seg, live } of parts) {
        for await (const lb of seg.liveBatches(live, tombstones)) {
          for (const r of await seg.records(lb.batch, lb.rows, schema)) {
            batch.push(r)
            if (batch.length >= size) { yield batch; batch = [] }
          }
        }
      }
      if (batch.length > 0) yield batch
    } finally {
      for (const { seg } of parts) seg.unpin()
    }
  }

  /**
   * The records of anti-entropy bucket `index` of `buckets` (`stableHash(id) % buckets`),
   * tombstones included, as of the call. For a power of two a bucket is one run of each
   * segment's key order (key-index.ts bucketRows); otherwise every key is read.
   */
  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer, got ${buckets}`)
    if (!Number.isInteger(index) || index < 0 || index >= buckets) throw new RangeError(`bucket ${index} is not in 0..${buckets - 1}`)
    const out = this.memRecords(r => stableHash(r.id) % buckets === index)
    const parts = this.pinLive(true)
    try {
      const schema = this.ctx.space().schema
      const pow2 = (buckets & (buckets - 1)) === 0
      for (const { seg, live } of parts) {
        const isLive = (row: number): boolean => (live[row >> 3]! & (1 << (row & 7))) !== 0
        const rows: number[] = []
        if (pow2) {
          const { from, to } = await seg.file.keys.bucketRows(index, buckets)
          for (let row = from; row < to; row++) if (isLive(row)) rows.push(row)
        } else {
          for await (const e of seg.file.keys.entries()) if (isLive(e.row) && stableHash(e.id) % buckets === index) rows.push(e.row)
        }
        // Rows ascending: grouped by batch, each batch read once.
        for (let i = 0; i < rows.length;) {
          const b = seg.file.batchOf(rows[i]!)
          const first = seg.file.firstRow(b)
          const end = first + seg.file.batchRows(b)
          const local: number[] = []
          for (; i < rows.length && rows[i]! < end; i++) local.push(rows[i]! - first)
          for (const r of await seg.records(b, local, schema)) out.push(r)
        }
      }
    } finally {
      for (const { seg } of parts) seg.unpin()
    }
    return out
  }

  /** The memtable's records still newest of their id (active and being flushed) that `keep` keeps, shaped by the schema. */
  private memRecords (keep: (r: VersionedRecord) => boolean): VersionedRecord[] {
    const { index } = this.ctx
    const out: VersionedRecord[] = []
    for (const r of index.mem.values()) if (keep(r)) out.push(index.shaped(r))
    return out
  }

  /** Every segment holding live rows (live tombstones too when `withTombstones`), its bits taken now (liveSnapshot: shared, copy on write) and itself pinned (the caller unpins). */
  private pinLive (withTombstones: boolean): Array<{ seg: DiskSegment, live: Uint8Array }> {
    const parts: Array<{ seg: DiskSegment, live: Uint8Array }> = []
    for (const seg of this.ctx.index.segments.values()) {
      if (seg.liveCount - (withTombstones ? 0 : seg.liveTombstones) === 0) continue
      seg.pin()
      parts.push({ seg, live: seg.liveSnapshot() })
    }
    return parts
  }

  /**
   * The live rows as column batches (PartitionStore.batches): each segment's record batches
   * holding live rows (the cached columns themselves when every row of the batch is live, else the
   * live rows gathered from them), then the memtable's in batches of at most 64k rows.
   *
   * The snapshot is taken here, in one synchronous step: which rows of which segments are live
   * (live bit set, not a tombstone; the bits follow the index, so each id is live in exactly one
   * place) and which memtable records (active or being flushed) are still the newest of their
   * id. Columns are read as the result is iterated, the segments pinned until the iteration ends
   * (a compaction meanwhile deletes them only then); segments are immutable and memtable records
   * never change, so even a caller that awaits between batches gets the rows of the moment of
   * the call, each id once. A caller must iterate to the end or stop with return() (for await
   * does): the pins are released then.
   */
  batches (columns: readonly string[], opts: BatchOptions = {}): AsyncIterable<StoredBatch> {
    const zones = opts.zones
    const schema = this.ctx.space().schema
    const cols: Array<{ name: string, type: ValueType }> = []
    for (const name of new Set(columns)) cols.push({ name, type: schema.find(c => c.name === name)?.type ?? 'null' })
    const parts = this.pinLive(false)
    const mem = this.memtableBatches(cols)
    const counters = this.ctx.counters
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      for (const { seg } of parts) seg.unpin()
    }
    const generator = (async function * () {
      try {
        for (const { seg, live } of parts) {
          for await (const lb of seg.liveBatches(live)) {
            if (zones !== undefined && !zones(name => seg.file.zone(lb.batch, name), seg.file.batchRows(lb.batch))) {
              counters.batchesSkipped++
              continue
            }
            counters.batchesRead++
            const columns = new Map<string, StoredVector>()
            for (const c of cols) {
              const v = await seg.column(lb.batch, c.name, c.type, opts.lease)
              columns.set(c.name, lb.rows === undefined ? v : isCompact(v) ? gatherCompact(v, lb.rows) : gather(v, lb.rows))
            }
            yield { length: lb.length, columns }
          }
        }
        yield * mem
      } finally {
        release()
      }
    })()
    // return() before the first next() ends a generator without running its finally: release here too.
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => await generator.next(),
        return: async (value?: unknown) => {
          try { return await generator.return(value as undefined) } finally { release() }
        }
      })
    }
  }

  /**
   * The memtable's live rows as column batches, cached until the index changes (a write, a
   * flush, a purge): converting row objects to columns costs about a microsecond a row, and a
   * query that runs again on an unchanged memtable should not pay it again. A few column sets are
   * kept, most recently used last.
   */
  private memtableBatches (cols: ColumnSpec): ColumnBatch[] {
    const { index, memtable } = this.ctx
    const key = cols.map(c => `${c.name}:${c.type}`).join(',')
    if (this.memCacheGeneration !== index.generation) {
      this.memCache.clear()
      this.memCacheGeneration = index.generation
    }
    let cached = this.memCache.get(key)
    if (cached !== undefined) {
      this.memCache.delete(key)
      this.memCache.set(key, cached)
      return cached
    }
    const memRows: Row[] = []
    for (const m of [memtable.frozen, memtable.records]) {
      if (m === undefined) continue
      for (const r of m) if (!r.deleted && index.holds(r)) memRows.push(r.row!)
    }
    cached = []
    for (let i = 0; i < memRows.length; i += MEM_BATCH_ROWS) cached.push(shareBatch(rowsBatch(memRows.slice(i, i + MEM_BATCH_ROWS), cols)))
    this.memCache.set(key, cached)
    while (this.memCache.size > MEM_CACHE_COLUMN_SETS) this.memCache.delete(this.memCache.keys().next().value!)
    return cached
  }
}

/**
 * batchFromRows (columnar) for memtable rows: a row written before a column was added lacks it
 * (NULL), and a column named like an Object.prototype member is read as an own key only.
 */
function rowsBatch (rows: readonly Row[], cols: ColumnSpec): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  const vals = new Array<unknown>(rows.length)
  for (const c of cols) {
    const name = c.name
    if (name in Object.prototype) {
      for (let i = 0; i < rows.length; i++) vals[i] = Object.hasOwn(rows[i]!, name) ? rows[i]![name] : null
    } else {
      for (let i = 0; i < rows.length; i++) vals[i] = rows[i]![name]
    }
    columns.set(name, vectorFromValues(c.type, vals))
  }
  return { length: rows.length, columns }
}
