/**
 * FilePool: one bound on the file descriptors storage holds open across every partition of a peer.
 *
 * A partition's WAL handle is kept open between writes (reopening per group commit would cost
 * two syscalls a write), but a peer may hold thousands of partitions: an open handle each would
 * run the process out of descriptors (EMFILE), and then every socket and file of the peer fails
 * with it. So each open descriptor takes a slot: a WAL handle holds its slot while open, and an
 * idle one (no write or fsync in flight) is closed, least recently used first, when a slot is
 * needed; files opened for a moment (recovery reads, segment and manifest writes, directory
 * fsyncs) hold a slot for that moment (run()). A caller never waits for a second slot while it
 * holds one, so waiting cannot deadlock.
 */

/** A holder of a slot that can give it up while idle (a WAL handle between writes). */
export interface Evictable {
  /** Closes the file; the slot passes to whoever asked for it (do not release() it). */
  evict(): Promise<void>
}

/** Default of maxOpenFiles (StorageEngineOptions). */
export const DEFAULT_MAX_OPEN_FILES = 256

export class FilePool {
  private used = 0
  /** Most open at once since the pool was made. */
  peak = 0
  /** Handles open but idle, least recently used first (a Set keeps insertion order). */
  private readonly idle = new Set<Evictable>()
  private readonly waiters: Array<() => void> = []
  /** Idle handles closed to make room. */
  evictions = 0

  constructor (readonly maxOpen: number = DEFAULT_MAX_OPEN_FILES) {
    if (!Number.isInteger(maxOpen) || maxOpen < 1) throw new RangeError(`storage option maxOpenFiles must be an integer >= 1, got ${String(maxOpen)}`)
  }

  /** Descriptors open now (WAL handles kept open plus files open for a moment). */
  get open (): number { return this.used }

  /** Takes a slot, closing the least recently used idle handle if none is free; waits if all are busy. */
  async acquire (): Promise<void> {
    for (;;) {
      if (this.used < this.maxOpen) {
        this.used++
        if (this.used > this.peak) this.peak = this.used
        return
      }
      const lru = this.idle.values().next()
      if (lru.done !== true) {
        this.idle.delete(lru.value)
        this.evictions++
        // The evicted handle's slot becomes ours: `used` is unchanged.
        await lru.value.evict()
        return
      }
      await new Promise<void>(resolve => { this.waiters.push(resolve) })
    }
  }

  release (): void {
    this.used--
    this.wake()
  }

  /** A handle's write finished: it may be closed to make room, after those idle longer. */
  markIdle (h: Evictable): void {
    this.idle.delete(h)
    this.idle.add(h)
    this.wake()
  }

  /** A handle is in use (a write or fsync in flight), or closed by its owner: never evicted. */
  markBusy (h: Evictable): void {
    this.idle.delete(h)
  }

  /** Runs `fn`, which opens at most one file at a time, holding one slot. */
  async run<T> (fn: () => Promise<T>): Promise<T> {
    await this.acquire()
    try {
      return await fn()
    } finally {
      this.release()
    }
  }

  private wake (): void {
    this.waiters.shift()?.()
  }
}
