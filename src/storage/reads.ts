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
import type { Segment } from './segment.js'
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
    return e === undefined ? undefined : this.ctx.index.materialize(e)
  }

  async * scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    const { index } = this.ctx
    const size = Math.max(1, opts.batchRecords ?? 1000)
    const tombstones = opts.includeTombstones ?? true
    let batch: VersionedRecord[] = []
    // Map iterators survive concurrent changes; each entry is read as it is now (newest version).
    for (const [id] of index.entries) {
      const e = index.get(id)
      if (e === undefined) continue
      const r = index.materialize(e)
      if (r.deleted && !tombstones) continue
      batch.push(r)
      if (batch.length >= size) {
        yield batch
        batch = []
      }
    }
    if (batch.length > 0) yield batch
  }

  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer, got ${buckets}`)
    if (!Number.isInteger(index) || index < 0 || index >= buckets) throw new RangeError(`bucket ${index} is not in 0..${buckets - 1}`)
    const out: VersionedRecord[] = []
    for (const [id, e] of this.ctx.index.entries) if (stableHash(id) % buckets === index) out.push(this.ctx.index.materialize(e))
    return out
  }

  /**
   * The live rows as column batches (PartitionStore.batches): one batch per segment holding live
   * rows (the segment's cached columns themselves when every row of it is live, else the live
   * rows gathered from them), then the memtable's in batches of at most 64k rows.
   *
   * The snapshot is taken here, in one synchronous step: which rows of which segments are live
   * (live bit set, not a tombstone; the bits follow the index, so each id is live in exactly one
   * place) and which memtable records (active or being flushed) are still the newest of their
   * id. The vectors are built as the result is iterated; segments are immutable and memtable
   * records never change, so even a caller that awaits between batches (a flush, a compaction or
   * writes running meanwhile) gets the rows of the moment of the call, each id once.
   */
  batches (columns: readonly string[]): AsyncIterable<ColumnBatch> {
    const snapshot = this.batchesNow(columns)
    return (async function * () { yield * snapshot })()
  }

  /** The snapshot of batches(), taken synchronously (see there). */
  private batchesNow (columns: readonly string[]): Iterable<ColumnBatch> {
    const schema = this.ctx.space().schema
    const cols: Array<{ name: string, type: ValueType }> = []
    for (const name of new Set(columns)) cols.push({ name, type: schema.find(c => c.name === name)?.type ?? 'null' })
    const parts: Array<{ seg: Segment, rows: Uint32Array | undefined }> = []
    for (const s of this.ctx.index.segments.values()) {
      const n = s.liveCount - s.liveTombstones
      if (n === 0) continue
      parts.push({ seg: s, rows: n === s.rows ? undefined : s.liveRowNumbers(n) })
    }
    return columnBatches(parts, this.memtableBatches(cols), cols)
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

function * columnBatches (parts: ReadonlyArray<{ seg: Segment, rows: Uint32Array | undefined }>, memBatches: readonly ColumnBatch[], cols: ColumnSpec): Generator<ColumnBatch> {
  for (const { seg, rows } of parts) {
    const columns = new Map<string, ColumnVector>()
    for (const c of cols) {
      const v = seg.column(c.name, c.type)
      columns.set(c.name, rows === undefined ? v : gather(v, rows))
    }
    yield { length: rows === undefined ? seg.rows : rows.length, columns }
  }
  yield * memBatches
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
