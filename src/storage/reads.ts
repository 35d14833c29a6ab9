/**
 * The read side of a partition: a record by id, a scan of every record, the records of one
 * anti-entropy bucket, and the live rows as column batches for queries (segment columns as
 * decoded, the memtable's rows converted to columns and cached while the index is unchanged).
 * Every answer is read from the index of the moment; nothing here changes the partition.
 */
import { gather, shareBatch, vectorFromValues, type ColumnBatch, type ColumnVector, type ValueType } from '../columnar/index.js'
import type { Row } from '../schema/index.js'
import type { PartitionContext } from './context.js'
import { stableHash } from './hash.js'
import type { DiskSegment, LiveBatch } from './disk-segment.js'
import { rowOf, type Entry } from './live-index.js'
import type { VersionedRecord } from './types.js'

/** Rows in one batch of memtable rows (batches()). */
const MEM_BATCH_ROWS = 65_536
/** Column sets whose memtable batches are cached at once. */
const MEM_CACHE_COLUMN_SETS = 4

type ColumnSpec = ReadonlyArray<{ name: string, type: ValueType }>

export type ReadContext = Pick<PartitionContext, 'space' | 'index' | 'memtable'>

export class PartitionReader {
  /** The index generation the memtable batch cache was built at. */
  private memCacheGeneration = -1
  private readonly memCache = new Map<string, ColumnBatch[]>()

  constructor (private readonly ctx: ReadContext) {}

  async get (id: string): Promise<VersionedRecord | undefined> {
    const e = this.ctx.index.get(id)
    if (e === undefined) return undefined
    return (await this.materializeMany([e]))[0]
  }

  /**
   * Every record held (tombstones too unless `includeTombstones` is false), newest version of each
   * id, as of the call: the memtable's current records and each segment's live rows are taken in
   * one synchronous step; the segments' rows are then read a batch at a time (pinned: a compaction
   * meanwhile does not delete them under the scan).
   */
  async * scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    const { index, memtable } = this.ctx
    const size = Math.max(1, opts.batchRecords ?? 1000)
    const tombstones = opts.includeTombstones ?? true
    const mem: VersionedRecord[] = []
    for (const m of [memtable.frozen, memtable.records]) {
      if (m === undefined) continue
      for (const r of m) if ((tombstones || !r.deleted) && index.holds(r)) mem.push(index.shaped(r))
    }
    const parts = this.pinLive(tombstones)
    try {
      let batch: VersionedRecord[] = []
      for (const r of mem) {
        batch.push(r)
        if (batch.length >= size) { yield batch; batch = [] }
      }
      const schema = this.ctx.space().schema
      for (const { seg, live } of parts) {
        for (const lb of live) {
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

  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer, got ${buckets}`)
    if (!Number.isInteger(index) || index < 0 || index >= buckets) throw new RangeError(`bucket ${index} is not in 0..${buckets - 1}`)
    const entries: Entry[] = []
    for (const [id, e] of this.ctx.index.entries) if (stableHash(id) % buckets === index) entries.push(e)
    return await this.materializeMany(entries)
  }

  /**
   * The records entries stand for, in their order, as of the call: locators are grouped by segment
   * and batch so that each batch is read once, the segments pinned while they are read.
   */
  private async materializeMany (entries: readonly Entry[]): Promise<VersionedRecord[]> {
    const { index } = this.ctx
    const out = new Array<VersionedRecord>(entries.length)
    const bySegment = new Map<DiskSegment, Map<number, Array<{ at: number, row: number }>>>()
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!
      if (typeof e !== 'number') { out[i] = index.shaped(e); continue }
      const seg = index.seg(e)
      let batches = bySegment.get(seg)
      if (batches === undefined) { batches = new Map(); bySegment.set(seg, batches); seg.pin() }
      const row = rowOf(e)
      const b = seg.file.batchOf(row)
      let list = batches.get(b)
      if (list === undefined) { list = []; batches.set(b, list) }
      list.push({ at: i, row: row - seg.file.firstRow(b) })
    }
    try {
      const schema = this.ctx.space().schema
      for (const [seg, batches] of bySegment) {
        for (const [b, list] of batches) {
          const rs = await seg.records(b, list.map(x => x.row), schema)
          for (let k = 0; k < list.length; k++) out[list[k]!.at] = rs[k]!
        }
      }
    } finally {
      for (const seg of bySegment.keys()) seg.unpin()
    }
    return out
  }

  /** Every segment's live batches as of now, each segment pinned (the caller unpins). */
  private pinLive (withTombstones: boolean): Array<{ seg: DiskSegment, live: LiveBatch[] }> {
    const parts: Array<{ seg: DiskSegment, live: LiveBatch[] }> = []
    for (const seg of this.ctx.index.segments.values()) {
      if (seg.liveCount - (withTombstones ? 0 : seg.liveTombstones) === 0) continue
      seg.pin()
      parts.push({ seg, live: seg.liveBatches(withTombstones) })
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
  batches (columns: readonly string[]): AsyncIterable<ColumnBatch> {
    const schema = this.ctx.space().schema
    const cols: Array<{ name: string, type: ValueType }> = []
    for (const name of new Set(columns)) cols.push({ name, type: schema.find(c => c.name === name)?.type ?? 'null' })
    const parts = this.pinLive(false)
    const mem = this.memtableBatches(cols)
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      for (const { seg } of parts) seg.unpin()
    }
    const generator = (async function * () {
      try {
        for (const { seg, live } of parts) {
          for (const lb of live) {
            const columns = new Map<string, ColumnVector>()
            for (const c of cols) {
              const v = await seg.column(lb.batch, c.name, c.type)
              columns.set(c.name, lb.rows === undefined ? v : gather(v, lb.rows))
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
