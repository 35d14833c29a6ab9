/**
 * The peer's one cache of what storage reads from disk: decoded column chunks of segments and
 * index blocks (docs/architecture.md, "Disk-resident segments"). Bounded in bytes
 * (`storage.cacheMiB`), least recently used out. Sizes are what the caller declares; for column
 * vectors `columnVectorBytes` counts typed arrays by their length and strings at two bytes a
 * character plus a header, as V8 holds them.
 *
 * Concurrent misses of one key load it once (`getOrLoad`): a query fanned out over a partition's
 * batches must not read the same block twice. A value larger than the whole cache is handed back
 * but not kept. An evicted value stays valid for whoever still holds it (segments are immutable);
 * the cache only forgets it, so for a moment the process may hold more than the cache counts.
 */
import type { ColumnVector } from '../columnar/index.js'

export interface BlockCacheStats {
  hits: number
  misses: number
  evictions: number
  /** Bytes of the values loaded on misses (getOrLoad), since the cache was made: what reads cost. */
  loadedBytes: number
  /** Bytes of segment pages read past the cache (a point get's values: the OS page cache keeps those). */
  pageBytes: number
  /** Bytes of the values held now. */
  bytes: number
  entries: number
  maxBytes: number
}

interface Entry { value: unknown, bytes: number }

export class BlockCache {
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>()
  private readonly loading = new Map<string, Promise<unknown>>()
  private held = 0
  private hits = 0
  private misses = 0
  private evictions = 0
  private loadedBytes = 0
  private pageBytes = 0

  constructor (readonly maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`cache size must be a non-negative integer of bytes, got ${String(maxBytes)}`)
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
    return e.value as T
  }

  /** Keeps `value` (of `bytes` bytes) under `key`, evicting the least recently used to make room. */
  set (key: string, value: unknown, bytes: number): void {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new RangeError(`bytes must be a non-negative number, got ${String(bytes)}`)
    this.remove(key)
    if (bytes > this.maxBytes) return
    this.entries.set(key, { value, bytes })
    this.held += bytes
    this.evictTo(this.maxBytes)
  }

  /**
   * The value under `key`, loading it on a miss. Callers that miss while a load of the key is in
   * flight wait for that load instead of starting another. A failed load caches nothing.
   */
  async getOrLoad<T> (key: string, load: () => Promise<{ value: T, bytes: number }>): Promise<T> {
    const hit = this.get<T>(key)
    if (hit !== undefined) return hit
    const pending = this.loading.get(key)
    if (pending !== undefined) return await (pending as Promise<T>)
    const p = (async () => {
      try {
        const { value, bytes } = await load()
        this.loadedBytes += bytes
        this.set(key, value, bytes)
        return value
      } finally {
        this.loading.delete(key)
      }
    })()
    this.loading.set(key, p)
    return await p
  }

  /** Forgets `key` (a file deleted after a compaction: its blocks will never be asked for again). */
  remove (key: string): void {
    const e = this.entries.get(key)
    if (e === undefined) return
    this.entries.delete(key)
    this.held -= e.bytes
  }

  /** Forgets every key that starts with `prefix` (all blocks of one segment file). */
  removePrefix (prefix: string): void {
    for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.remove(key)
  }

  /** Counts `bytes` read from a segment file without going through the cache (BlockCacheStats.pageBytes). */
  countPageRead (bytes: number): void { this.pageBytes += bytes }

  stats (): BlockCacheStats {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, loadedBytes: this.loadedBytes, pageBytes: this.pageBytes, bytes: this.held, entries: this.entries.size, maxBytes: this.maxBytes }
  }

  private evictTo (limit: number): void {
    for (const [key, e] of this.entries) {
      if (this.held <= limit) break
      this.entries.delete(key)
      this.held -= e.bytes
      this.evictions++
    }
    if (this.held < 0 || (this.entries.size === 0 && this.held !== 0)) throw new Error(`block cache accounting broke: ${this.held} bytes held in ${this.entries.size} entries`)
  }
}

/** V8's cost of a string: two bytes a UTF-16 unit (one-byte strings use less; a safe bound) plus a header. */
const STRING_HEADER_BYTES = 16

/** The bytes a column vector holds, as BlockCache counts them. */
export function columnVectorBytes (v: ColumnVector): number {
  switch (v.tag) {
    case 'num': return v.values.byteLength
    case 'vec': return v.values.byteLength + v.valid.byteLength
    case 'str': {
      let n = v.codes.byteLength + 8 * v.dict.length
      for (const s of v.dict) n += STRING_HEADER_BYTES + 2 * s.length
      return n
    }
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

/** Default cache size: a quarter of the machine's memory, at most 4 GiB (issue 12). */
export function defaultCacheMiB (totalMemBytes: number): number {
  return Math.max(16, Math.min(4096, Math.floor(totalMemBytes / 4 / 1048576)))
}
