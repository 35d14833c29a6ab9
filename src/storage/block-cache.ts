/**
 * The peer's one cache of what storage reads from disk: column chunks of segments (decoded, or
 * compact: a coded column's checked codes block, columnar/compact.ts) and index blocks (docs/architecture.md, "Disk-resident segments"). Bounded in bytes
 * (`storage.cacheMiB`), least recently used out. Sizes are what the caller declares; for column
 * vectors `storedVectorBytes` counts typed arrays by their length and strings at two bytes a
 * character plus a header, as V8 holds them.
 *
 * Admission (TinyLFU's rule, Einziger et al., with exact counts): a block loaded into a full cache
 * is kept only if it has been asked for more often than every block it would push out; otherwise
 * it is handed back and not kept. Least-recently-used alone keeps nothing of a scan larger than
 * the cache that runs again and again (each block is pushed out before its next turn: a GROUP BY
 * over data 4x the cache read all of it from the files every run); with admission the cache keeps
 * a quarter of it, and a one-off scan does not flush what the cache held. Counts are kept for
 * blocks held and for some that are not (a bounded ghost list), and halved now and then so that a
 * block asked for often long ago makes way for what is asked for now.
 *
 * Concurrent misses of one key load it once (`getOrLoad`): a query fanned out over a partition's
 * batches must not read the same block twice. A value larger than the whole cache is handed back
 * but not kept. An evicted value stays valid for whoever still holds it (segments are immutable);
 * the cache only forgets it, so for a moment the process may hold more than the cache counts.
 */
import type { BatchLease, StoredVector } from '../columnar/index.js'

export interface BlockCacheStats {
  hits: number
  misses: number
  evictions: number
  /** Bytes of the blocks loaded on misses (getOrLoad, and reads past the cache: countLoad), since the cache was made: what reads cost. */
  loadedBytes: number
  /** Loads handed back but not kept: the blocks they would have pushed out were asked for as often or more (admission). */
  rejected: number
  /** Bytes of segment pages read past the cache (a point get's values: the OS page cache keeps those). */
  pageBytes: number
  /** Bytes of the values held now. */
  bytes: number
  /** Shared buffers of evicted values kept for the next loads to decode into (at most maxFreeBytes, on top of `bytes`). */
  freeBytes: number
  /** Loads that decoded into a recycled buffer instead of new memory. */
  reused: number
  entries: number
  maxBytes: number
}

interface Entry {
  value: unknown
  bytes: number
  /** Shared memory of `value` the cache may hand to a later load once nobody holds the value. */
  reusable?: SharedArrayBuffer[]
  /** Leases holding the value (see getOrLoad). */
  pins: number
  /** Handed to a reader without a lease: its memory is never reused. */
  escaped: boolean
  /** No longer in the cache (evicted, replaced, removed). */
  gone: boolean
  /** How often the key was asked for (admission; halved by tick()). */
  freq: number
}

/** The ghost list (counts of keys not held) keeps at least this many keys, and 8 per entry held. */
const GHOST_MIN_KEYS = 4096
/** Counts are halved after this many requests, and 16 per entry held. */
const AGING_MIN_REQUESTS = 8192

/** A loaded value and its size; `reusable`: its shared memory, which the cache may recycle. */
export interface Loaded<T> { value: T, bytes: number, reusable?: SharedArrayBuffer[] }

export class BlockCache {
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>()
  /**
   * The keys held, by group (groupOf): closing a segment forgets its blocks without walking the
   * whole cache (a peer closing 160 segments spent 0.4 s copying and scanning every key for each).
   */
  private readonly groups = new Map<string, Set<string>>()
  /** Loads under way: what they resolve to, and the lease of each caller waiting for them. */
  private readonly loading = new Map<string, { done: Promise<Entry>, leases: Array<BatchLease | undefined> }>()
  private held = 0
  private hits = 0
  private misses = 0
  private evictions = 0
  private loadedBytes = 0
  private pageBytes = 0
  /**
   * Shared buffers of evicted (or turned away) values nobody holds any more, by byte length,
   * oldest first: a cold scan decodes each column into fresh memory otherwise, which the kernel
   * hands over a zeroed page at a time (~10 µs a 4 KiB page on this VM: 1.3 ms for one
   * 65,536-row float64 column before a value is written). At most maxFreeBytes (half the cache,
   * at most 256 MiB) on top of maxBytes. A scan past a full cache frees the values admission
   * turned away as each fragment ends, several partitions' columns at once: with a quarter of
   * the cache, a quarter of the loads of the scan bench's cold GROUP BY got new memory and it
   * took 82-85 ms a run instead of 49-51.
   */
  private readonly free = new Map<number, SharedArrayBuffer[]>()
  private freeBytes = 0
  private reused = 0
  /** How often keys not held were asked for (admission), oldest first; bounded (trimGhosts). */
  private readonly ghosts = new Map<string, number>()
  /** Requests since the counts were last halved. */
  private requests = 0
  private rejected = 0

  readonly maxFreeBytes: number

  constructor (readonly maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`cache size must be a non-negative integer of bytes, got ${String(maxBytes)}`)
    this.maxFreeBytes = Math.min(Math.floor(maxBytes / 2), 256 << 20)
  }

  /** The value under `key`, now the most recently used; undefined (a miss) if not held. */
  get<T> (key: string): T | undefined {
    const e = this.entries.get(key)
    if (e === undefined) {
      this.misses++
      return undefined
    }
    this.hits++
    this.entries.delete(key)
    this.entries.set(key, e)
    e.escaped = true
    this.asked(e)
    return e.value as T
  }

  /**
   * The value under `key` if held, without counting a hit or a miss and without making it the
   * most recently used: for a read that goes past the cache (a compaction's), which takes what is
   * there but must neither skew the hit ratio nor keep entries alive.
   */
  peek<T> (key: string): T | undefined {
    const e = this.entries.get(key)
    if (e === undefined) return undefined
    e.escaped = true
    return e.value as T
  }

  /** Keeps `value` (of `bytes` bytes) under `key`, evicting the least recently used to make room. */
  set (key: string, value: unknown, bytes: number): void {
    this.put(key, { value, bytes, pins: 0, escaped: true, gone: false, freq: 1 }, false)
  }

  /** Keeps `e` under `key`; with `admit`, only if admission lets it in (see the top). */
  private put (key: string, e: Entry, admit: boolean): void {
    if (!(e.bytes >= 0) || !Number.isFinite(e.bytes)) throw new RangeError(`bytes must be a non-negative number, got ${String(e.bytes)}`)
    this.remove(key)
    if (e.bytes > this.maxBytes || (admit && !this.admits(e))) {
      if (e.bytes <= this.maxBytes) this.rejected++
      this.ghosts.set(key, e.freq)
      this.trimGhosts()
      this.drop(e)
      return
    }
    this.ghosts.delete(key)
    this.entries.set(key, e)
    const group = groupOf(key)
    let keys = this.groups.get(group)
    if (keys === undefined) { keys = new Set(); this.groups.set(group, keys) }
    keys.add(key)
    this.held += e.bytes
    this.evictTo(this.maxBytes)
  }

  /**
   * The value under `key`, loading it on a miss. Callers that miss while a load of the key is in
   * flight wait for that load instead of starting another. A failed load caches nothing.
   *
   * With a `lease`, the value's shared memory (Loaded.reusable) is not reused before the lease
   * is released, even if the value leaves the cache meanwhile; a value handed out without one
   * never has its memory reused.
   */
  async getOrLoad<T> (key: string, load: () => Promise<Loaded<T>>, lease?: BatchLease): Promise<T> {
    const e = this.entries.get(key)
    if (e !== undefined) {
      this.hits++
      this.entries.delete(key)
      this.entries.set(key, e)
      this.hold(e, lease)
      this.asked(e)
      return e.value as T
    }
    this.misses++
    const pending = this.loading.get(key)
    if (pending !== undefined) {
      // Held by the load itself, before the value can leave the cache (see below).
      pending.leases.push(lease)
      return (await pending.done).value as T
    }
    // One request however many callers wait on the load (a query's one read of a block).
    const freq = (this.ghosts.get(key) ?? 0) + 1
    this.tick()
    const leases = [lease]
    const done = (async () => {
      try {
        const { value, bytes, reusable } = await load()
        this.loadedBytes += bytes
        const entry: Entry = { value, bytes, pins: 0, escaped: false, gone: false, freq, ...(reusable !== undefined && reusable.length > 0 ? { reusable } : {}) }
        // Held by every caller before it is put: a cache smaller than the value drops it at once
        // (as one admission turns away), and a caller's await resumes only after other work may
        // have evicted it.
        for (const l of leases) this.hold(entry, l)
        this.put(key, entry, true)
        return entry
      } finally {
        this.loading.delete(key)
      }
    })()
    this.loading.set(key, { done, leases })
    return (await done).value as T
  }

  /**
   * Shared memory of `bytes` bytes for a load to decode into: a recycled buffer of exactly that
   * length when one is free (its old contents still there: the caller overwrites every byte it
   * exposes), else new memory.
   */
  allocShared (bytes: number): SharedArrayBuffer {
    const list = this.free.get(bytes)
    const buf = list?.pop()
    if (buf === undefined) return new SharedArrayBuffer(bytes)
    if (list!.length === 0) this.free.delete(bytes)
    this.freeBytes -= bytes
    this.reused++
    return buf
  }

  private hold (e: Entry, lease: BatchLease | undefined): void {
    if (lease === undefined) { e.escaped = true; return }
    e.pins++
    lease.hold(() => {
      if (--e.pins < 0) throw new Error('block cache: a value released more often than held')
      if (e.pins === 0 && e.gone) this.drop(e)
    })
  }

  /** `e` left the cache: its memory goes to the free buffers if nobody can still read it. */
  private drop (e: Entry): void {
    e.gone = true
    if (e.pins > 0 || e.escaped || e.reusable === undefined) return
    const bufs = e.reusable
    delete e.reusable
    for (const buf of bufs) {
      const n = buf.byteLength
      if (n === 0 || n > this.maxBytes) continue
      let list = this.free.get(n)
      if (list === undefined) { list = []; this.free.set(n, list) }
      list.push(buf)
      this.freeBytes += n
    }
    // The oldest go past the bound (a size no load asked for since).
    for (const [n, list] of this.free) {
      if (this.freeBytes <= this.maxFreeBytes) break
      while (this.freeBytes > this.maxFreeBytes && list.length > 0) {
        list.shift()
        this.freeBytes -= n
      }
      if (list.length === 0) this.free.delete(n)
    }
  }

  /** Forgets `key` (a file deleted after a compaction: its blocks will never be asked for again). */
  remove (key: string): void {
    const e = this.entries.get(key)
    if (e === undefined) return
    this.entries.delete(key)
    this.forget(key)
    this.held -= e.bytes
    this.drop(e)
  }

  /** Forgets every key of `group` (made by groupKey; a segment file's path: all its blocks). */
  removeGroup (group: string): void {
    const keys = this.groups.get(group)
    if (keys === undefined) return
    for (const key of [...keys]) this.remove(key)
    if (this.groups.has(group)) throw new Error(`block cache: group ${group} still holds keys after its removal`)
  }

  /** Drops `key` from its group (it left `entries`). */
  private forget (key: string): void {
    const group = groupOf(key)
    const keys = this.groups.get(group)
    if (keys === undefined || !keys.delete(key)) throw new Error(`block cache: key ${key} was not in its group`)
    if (keys.size === 0) this.groups.delete(group)
  }

  /** A request of held entry `e`. */
  private asked (e: Entry): void {
    e.freq++
    this.tick()
  }

  /** Counts a request; halves every count (held and ghost) when enough have come since the last time. */
  private tick (): void {
    if (++this.requests < Math.max(AGING_MIN_REQUESTS, 16 * this.entries.size)) return
    this.requests = 0
    for (const e of this.entries.values()) e.freq >>= 1
    for (const [key, f] of this.ghosts) {
      if (f >> 1 === 0) this.ghosts.delete(key)
      else this.ghosts.set(key, f >> 1)
    }
  }

  /**
   * Whether `e` may go in: it fits beside what is held, or it was asked for more often than
   * each of the least recently used entries that would make room for it (a tie keeps them:
   * in a scan that runs again and again every block is asked for alike, and keeping what is
   * held is what leaves some of it in the cache).
   */
  private admits (e: Entry): boolean {
    let need = this.held + e.bytes - this.maxBytes
    if (need <= 0) return true
    for (const victim of this.entries.values()) {
      if (victim.freq >= e.freq) return false
      need -= victim.bytes
      if (need <= 0) return true
    }
    return true
  }

  /** Bounds the ghost list (GHOST_MIN_KEYS, 8 per entry held), oldest first. */
  private trimGhosts (): void {
    const max = Math.max(GHOST_MIN_KEYS, 8 * this.entries.size)
    for (const key of this.ghosts.keys()) {
      if (this.ghosts.size <= max) break
      this.ghosts.delete(key)
    }
  }

  /** Counts `bytes` of a block read on a miss and not kept (a read past the cache) in loadedBytes, as getOrLoad counts what it loads. */
  countLoad (bytes: number): void { this.loadedBytes += bytes }

  /** Counts `bytes` read from a segment file without going through the cache (BlockCacheStats.pageBytes). */
  countPageRead (bytes: number): void { this.pageBytes += bytes }

  stats (): BlockCacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, loadedBytes: this.loadedBytes, rejected: this.rejected, pageBytes: this.pageBytes, freeBytes: this.freeBytes, reused: this.reused, bytes: this.held, entries: this.entries.size, maxBytes: this.maxBytes }
  }

  private evictTo (limit: number): void {
    for (const [key, e] of this.entries) {
      if (this.held <= limit) break
      this.entries.delete(key)
      this.forget(key)
      this.held -= e.bytes
      this.evictions++
      this.ghosts.set(key, e.freq)
      this.drop(e)
    }
    this.trimGhosts()
    if (this.held < 0 || (this.entries.size === 0 && this.held !== 0)) throw new Error(`block cache accounting broke: ${this.held} bytes held in ${this.entries.size} entries`)
  }
}

/** V8's cost of a string: two bytes a UTF-16 unit (one-byte strings use less; a safe bound) plus a header. */
const STRING_HEADER_BYTES = 16

/**
 * The bytes a column vector (or a compact one) holds, as BlockCache counts them. A compact
 * vector views the block it was read from: the whole of that memory counts (its codes and values,
 * and for utf8 the block's offsets and bytes beside the strings made of them).
 */
export function storedVectorBytes (v: StoredVector): number {
  switch (v.tag) {
    case 'num': return v.values.byteLength
    case 'vec': return v.values.byteLength + v.valid.byteLength
    case 'str': return v.codes.byteLength + dictBytes(v.dict)
    case 'coded': return v.codes.buffer === v.dict.buffer ? v.codes.buffer.byteLength : v.codes.buffer.byteLength + v.dict.buffer.byteLength
    case 'narrow': return v.codes.buffer.byteLength + dictBytes(v.dict)
    case 'any': {
      // list<T>: one array per row; a rough bound (8 bytes a slot, strings as above).
      let n = 8 * v.values.length
      for (const row of v.values) {
        if (!Array.isArray(row)) continue
        n += 16 + 8 * row.length
        for (const x of row) if (typeof x === 'string') n += STRING_HEADER_BYTES + 2 * x.length
      }
      return n
    }
  }
}

function dictBytes (dict: readonly string[]): number {
  let n = 8 * dict.length
  for (const s of dict) n += STRING_HEADER_BYTES + 2 * s.length
  return n
}

/** Default cache size: a quarter of the machine's memory, at most 4 GiB (issue 12). */
export function defaultCacheMiB (totalMemBytes: number): number {
  return Math.max(16, Math.min(4096, Math.floor(totalMemBytes / 4 / 1048576)))
}

/**
 * A cache key of `group` (a file's path: removeGroup forgets all its keys at once). NUL ends the
 * group: no path holds one, so no group is a prefix of another's keys.
 */
export function groupKey (group: string, rest: string): string {
  return `${group}\0${rest}`
}

/** The group of a cache key: what groupKey was given ('' for a key not made by it). */
function groupOf (key: string): string {
  const end = key.indexOf('\0')
  return end < 0 ? '' : key.slice(0, end)
}
