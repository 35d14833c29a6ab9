/**
 * The memtable of a partition: the records applied since the last flush, in the order they were
 * applied, superseded ones included (the live index says which is current), with the WAL bytes
 * behind them; and, while a flush runs, the frozen memtable it is writing. Its bounds
 * (memtableMaxRows, memtableMaxBytes) decide when a flush is due and when a writer must wait.
 *
 * A record enters the memtable only once its WAL frame is durable (nothing is visible, served or
 * pushed before it is), so between the append and the insert an apply is *pending* on the
 * memtable generation its frame's WAL file belongs to. A flush freezes generation g with its WAL
 * file; once that file is drained it waits for g's pending applies to insert (into the frozen
 * records) before writing them: a record must never outlive its WAL file only in memory.
 */
import type { ResolvedPartitionOptions } from './options.js'
import type { VersionedRecord } from './types.js'

/**
 * What a memtable record costs in the heap beyond its WAL bytes: the record and row objects, the
 * id string's header, boxed numbers, the live index's map entry. Measured: records of (utf8 id,
 * int64, float64, short utf8) take about 46 WAL bytes and 216 bytes of heap each (225,000 of
 * them, live heap after a full collection); a row's long strings cost about their length in
 * both, so WAL bytes + this per record is close for narrow and wide rows alike.
 */
export const RECORD_HEAP_BYTES = 170

export class Memtable {
  /**
   * The active records. An array, not a map by id: the index already finds a record by id, and
   * a second hash map cost as much again per write.
   */
  records: VersionedRecord[] = []
  /** Bytes of WAL behind the active records. */
  bytes = 0
  /** The records a running flush is writing (undefined when none runs). */
  frozen: VersionedRecord[] | undefined
  /** Bytes of WAL behind the frozen records. */
  frozenBytes = 0
  /** The active memtable's generation (the frozen one, while a flush runs, is the one before). */
  generation = 0
  /** Applies between their WAL append and their insert, by generation. */
  private readonly pending = new Map<number, number>()
  private readonly settledWaiters = new Map<number, Array<() => void>>()

  constructor (private readonly opts: Pick<ResolvedPartitionOptions, 'memtableMaxRows' | 'memtableMaxBytes'>) {}

  /** The active records' estimated heap: their WAL bytes + RECORD_HEAP_BYTES a record (what the engine's budget counts). */
  heapBytes (): number { return this.bytes + this.records.length * RECORD_HEAP_BYTES }

  /** Whether the active memtable is past `factor` times either bound (1: flush due; 2: writers wait). */
  overBound (factor: number): boolean {
    return this.records.length >= this.opts.memtableMaxRows * factor || this.bytes >= this.opts.memtableMaxBytes * factor
  }

  /** An apply appended its frame to the active WAL: it will insert into this generation. */
  beginPending (): number {
    const g = this.generation
    this.pending.set(g, (this.pending.get(g) ?? 0) + 1)
    return g
  }

  /** The apply of `beginPending` has inserted its records, or given up (its frame failed). */
  endPending (g: number): void {
    const n = this.pending.get(g)
    if (n === undefined || n < 1) throw new Error(`memtable: no apply pending on generation ${g}`)
    if (n > 1) { this.pending.set(g, n - 1); return }
    this.pending.delete(g)
    const waiters = this.settledWaiters.get(g)
    this.settledWaiters.delete(g)
    for (const w of waiters ?? []) w()
  }

  /** Resolves once no apply is pending on generation `g`. */
  async settled (g: number): Promise<void> {
    if (!this.pending.has(g)) return
    await new Promise<void>(resolve => {
      const list = this.settledWaiters.get(g)
      if (list === undefined) this.settledWaiters.set(g, [resolve])
      else list.push(resolve)
    })
  }

  /** The records of generation `g`: the active ones, or the frozen ones a flush is writing. */
  recordsOf (g: number): VersionedRecord[] {
    if (g === this.generation) return this.records
    if (g === this.generation - 1 && this.frozen !== undefined) return this.frozen
    throw new Error(`memtable: generation ${g} is gone (active ${this.generation}, ${this.frozen === undefined ? 'none' : 'one'} frozen)`)
  }

  /** Starts a flush: the active records become the frozen ones and a new memtable starts empty. */
  freeze (): VersionedRecord[] {
    this.generation++
    const frozen = this.records
    this.frozen = frozen
    this.frozenBytes = this.bytes
    this.records = []
    this.bytes = 0
    return frozen
  }

  /** Ends a flush that wrote the frozen records. */
  release (): void {
    this.frozen = undefined
    this.frozenBytes = 0
  }

  /**
   * Ends a flush that failed: the frozen records still current (`holds`) go back before the
   * active ones, as their WAL (not yet deleted) still covers them.
   */
  thaw (holds: (r: VersionedRecord) => boolean): void {
    const frozen = this.frozen ?? []
    this.records = [...frozen.filter(holds), ...this.records]
    this.bytes += this.frozenBytes
    this.release()
  }
}
