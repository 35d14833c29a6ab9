/**
 * The memtable of a partition: the records applied since the last flush, in the order they were
 * applied, superseded ones included (the live index says which is current), with the WAL bytes
 * behind them; and, while a flush runs, the frozen memtable it is writing. Its bounds
 * (memtableMaxRows, memtableMaxBytes) decide when a flush is due and when a writer must wait.
 */
import type { ResolvedPartitionOptions } from './options.js'
import type { VersionedRecord } from './types.js'

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

  constructor (private readonly opts: Pick<ResolvedPartitionOptions, 'memtableMaxRows' | 'memtableMaxBytes'>) {}

  /** Whether the active memtable is past `factor` times either bound (1: flush due; 2: writers wait). */
  overBound (factor: number): boolean {
    return this.records.length >= this.opts.memtableMaxRows * factor || this.bytes >= this.opts.memtableMaxBytes * factor
  }

  /** Starts a flush: the active records become the frozen ones and a new memtable starts empty. */
  freeze (): VersionedRecord[] {
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
