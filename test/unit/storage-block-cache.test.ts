import { describe, expect, it } from 'vitest'
import { BatchLease } from '../../src/columnar/index.js'
import { BlockCache, storedVectorBytes, defaultCacheMiB, groupKey } from '../../src/storage/block-cache.js'

describe('BlockCache', () => {
  it('keeps at most maxBytes, evicting the least recently used first', () => {
    const c = new BlockCache(100)
    c.set('a', 'A', 40)
    c.set('b', 'B', 40)
    expect(c.get('a')).toBe('A') // a is now more recent than b
    c.set('c', 'C', 40)
    expect(c.get('b')).toBeUndefined()
    expect(c.get('a')).toBe('A')
    expect(c.get('c')).toBe('C')
    expect(c.stats()).toMatchObject({ bytes: 80, entries: 2, evictions: 1, hits: 3, misses: 1, maxBytes: 100 })
  })

  it('peek answers what is held without counting a hit or a miss and without making it recent', () => {
    const c = new BlockCache(100)
    c.set('a', 'A', 40)
    c.set('b', 'B', 40)
    expect(c.peek('a')).toBe('A')
    expect(c.peek('z')).toBeUndefined()
    expect(c.stats()).toMatchObject({ hits: 0, misses: 0 })
    c.set('c', 'C', 40) // a is still the least recently used
    expect(c.peek('a')).toBeUndefined()
    expect(c.peek('b')).toBe('B')
  })

  it('hands back but does not keep a value larger than the whole cache, and replaces a key in place', () => {
    const c = new BlockCache(10)
    c.set('big', 'X', 11)
    expect(c.get('big')).toBeUndefined()
    c.set('k', 1, 4)
    c.set('k', 2, 6)
    expect(c.get('k')).toBe(2)
    expect(c.stats().bytes).toBe(6)
    c.removeGroup('')
    expect(c.stats()).toMatchObject({ bytes: 0, entries: 0 })
  })

  it('forgets the keys of one group at once, whichever path is a prefix of another, evicted ones included', () => {
    const c = new BlockCache(1000)
    for (const path of ['/d/seg-1.arrow', '/d/seg-1.arrow#x', '/d/seg-10.arrow']) for (let b = 0; b < 3; b++) c.set(groupKey(path, `${b}/amount:float64`), path, 10)
    c.set('plain', 'p', 10)
    c.removeGroup('/d/seg-1.arrow')
    expect(c.stats().entries).toBe(7)
    for (let b = 0; b < 3; b++) {
      expect(c.get(groupKey('/d/seg-1.arrow', `${b}/amount:float64`))).toBeUndefined()
      expect(c.get(groupKey('/d/seg-1.arrow#x', `${b}/amount:float64`))).toBe('/d/seg-1.arrow#x')
      expect(c.get(groupKey('/d/seg-10.arrow', `${b}/amount:float64`))).toBe('/d/seg-10.arrow')
    }
    // An evicted key leaves its group: removing the group later forgets only what is held.
    const small = new BlockCache(20)
    for (let b = 0; b < 3; b++) small.set(groupKey('/f', String(b)), b, 10)
    small.removeGroup('/f')
    expect(small.stats()).toMatchObject({ bytes: 0, entries: 0, evictions: 1 })
    c.removeGroup('')
    expect(c.get('plain')).toBeUndefined()
    expect(c.stats().entries).toBe(6)
  })

  it('loads a key once for concurrent misses, and caches nothing from a failed load', async () => {
    const c = new BlockCache(1 << 20)
    let loads = 0
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    const load = async (): Promise<{ value: string, bytes: number }> => { loads++; await gate; return { value: 'v', bytes: 1 } }
    const all = Promise.all([c.getOrLoad('k', load), c.getOrLoad('k', load), c.getOrLoad('k', load)])
    release()
    expect(await all).toEqual(['v', 'v', 'v'])
    expect(loads).toBe(1)
    await expect(c.getOrLoad('bad', async () => { throw new Error('disk') })).rejects.toThrow('disk')
    expect(c.get('bad')).toBeUndefined()
    expect(await c.getOrLoad('bad', async () => ({ value: 'ok', bytes: 1 }))).toBe('ok')
  })

  it('counts a column vector by its arrays, and strings at two bytes a character plus a header', () => {
    expect(storedVectorBytes({ tag: 'num', type: 'float64', values: new Float64Array(10) })).toBe(80)
    expect(storedVectorBytes({ tag: 'str', type: 'utf8', codes: new Int32Array(4), dict: ['ab', 'cde'] })).toBe(16 + 2 * 8 + (16 + 4) + (16 + 6))
    expect(storedVectorBytes({ tag: 'vec', type: 'vector<2>', dim: 2, values: new Float32Array(8), valid: new Uint8Array(4) })).toBe(36)
  })

  it('counts a compact column by the whole block it views, once, and its strings', () => {
    const block = new SharedArrayBuffer(8192)
    const coded = { tag: 'coded' as const, type: 'int32' as const, codes: new Uint8Array(block, 0, 100), dict: new Float64Array(block, 104, 3), nulls: 0 }
    expect(storedVectorBytes(coded)).toBe(8192)
    // Remapped (NULLs): codes and values in memory of their own.
    expect(storedVectorBytes({ ...coded, codes: new Uint8Array(100), dict: new Float64Array(4), nulls: 1 })).toBe(100 + 32)
    expect(storedVectorBytes({ tag: 'narrow', type: 'utf8', codes: new Uint16Array(block, 0, 10), dict: ['ab'], nulls: 0 })).toBe(8192 + 8 + 16 + 4)
  })

  it('defaults to a quarter of the memory, at most 4 GiB', () => {
    expect(defaultCacheMiB(24 * 1024 ** 3)).toBe(4096)
    expect(defaultCacheMiB(8 * 1024 ** 3)).toBe(2048)
  })
})

describe('BlockCache: admission', () => {
  const value = async (): Promise<{ value: string, bytes: number }> => ({ value: 'v', bytes: 1024 })
  const keys = (n: number, prefix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
  /** One pass over `ks` in order; the hits it made. */
  const scan = async (c: BlockCache, ks: string[]): Promise<number> => {
    const before = c.stats().hits
    for (const k of ks) await c.getOrLoad(k, value)
    return c.stats().hits - before
  }

  it('keeps a quarter of a scan four times its size that runs again and again (least recently used alone kept none)', async () => {
    const c = new BlockCache(8 * 1024)
    const blocks = keys(32, 'b')
    expect(await scan(c, blocks)).toBe(0)
    for (let run = 0; run < 5; run++) expect(await scan(c, blocks)).toBe(8)
    expect(c.stats()).toMatchObject({ entries: 8, evictions: 0, rejected: 24 * 6 })
  })

  it('a one-off scan does not push out blocks asked for more often; a block asked for more often than those it pushes out goes in', async () => {
    const c = new BlockCache(4 * 1024)
    const hot = keys(4, 'h')
    for (let i = 0; i < 3; i++) await scan(c, hot)
    await scan(c, keys(64, 'once'))
    expect(await scan(c, hot)).toBe(4)
    // Asked for 5 times: more than the hot blocks' 4. It pushes out the least recently used.
    for (let i = 0; i < 4; i++) await c.getOrLoad('new', value)
    expect(c.peek('new')).toBeUndefined()
    await c.getOrLoad('new', value)
    expect(c.peek('new')).toBe('v')
    expect(c.peek('h0')).toBeUndefined()
    expect(c.stats().evictions).toBe(1)
  })

  it('halves the counts now and then, so blocks asked for often long ago make way', async () => {
    const c = new BlockCache(4 * 1024)
    const hot = keys(4, 'h')
    for (let i = 0; i < 6; i++) await scan(c, hot) // asked for 6 times each
    for (let i = 0; i < 2; i++) await c.getOrLoad('early', value)
    expect(c.peek('early')).toBeUndefined()
    // Enough requests of other keys, once each, to halve the counts twice (at least 8,192 between
    // halvings): the hot blocks' 6 become 1.
    await scan(c, keys(16_500, 'o'))
    expect(await scan(c, hot)).toBe(4)
    for (let i = 0; i < 3; i++) await c.getOrLoad('late', value)
    expect(c.peek('late')).toBe('v')
  })
})

describe('BlockCache: recycling the shared memory of values nobody holds', () => {
  const load = (bytes: number, buf = new SharedArrayBuffer(bytes)) => async () => ({ value: new Float64Array(buf), bytes, reusable: [buf] })

  // A cache of 8 KiB: values of 1 KiB (free buffers: at most half of it, four values).
  // Pushed in by set(), which admission does not stop (a load asked for once would not push out
  // one asked for as often: see the admission tests).
  const fill = async (c: BlockCache, keys: string[]): Promise<void> => {
    for (const k of keys) c.set(k, new Float64Array(128), 1024)
  }
  const others = (n: number, prefix = 'o'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

  it('hands an evicted value\'s buffer to the next load of that size, once its lease is released', async () => {
    const c = new BlockCache(8192)
    const lease = new BatchLease()
    const a = await c.getOrLoad('a', load(1024), lease)
    await fill(c, others(8)) // evicts a, which the lease still holds
    expect(c.stats()).toMatchObject({ evictions: 1, freeBytes: 0 })
    expect(c.allocShared(1024)).not.toBe(a.buffer) // not while held
    lease.release()
    expect(c.stats().freeBytes).toBe(1024)
    expect(c.allocShared(512)).not.toBe(a.buffer) // another size: new memory
    expect(c.allocShared(1024)).toBe(a.buffer)
    expect(c.stats()).toMatchObject({ freeBytes: 0, reused: 1 })
  })

  it('recycles a value evicted after its lease was released, at once', async () => {
    const c = new BlockCache(8192)
    const lease = new BatchLease()
    const a = await c.getOrLoad('a', load(1024), lease)
    lease.release()
    await fill(c, others(8))
    expect(c.allocShared(1024)).toBe(a.buffer)
  })

  it('never recycles a value handed out without a lease or by get; a caller that waited on another\'s load holds it by its lease', async () => {
    const c = new BlockCache(8192)
    const leased = new BatchLease()
    const a = await c.getOrLoad('a', load(1024), leased)
    expect(c.get('a')).toBe(a) // a reader without a lease: it may keep the value as long as it likes
    leased.release()
    await fill(c, others(8)) // evicts a
    expect(c.stats().freeBytes).toBe(0)

    let finish!: () => void
    const gate = new Promise<void>(resolve => { finish = resolve })
    const buf = new SharedArrayBuffer(1024)
    const l1 = new BatchLease()
    const first = c.getOrLoad('x', async () => { await gate; return { value: new Float64Array(buf), bytes: 1024, reusable: [buf] } }, l1)
    const l2 = new BatchLease()
    const second = c.getOrLoad('x', load(1024), l2)
    finish()
    expect(await second).toBe(await first)
    l1.release()
    await fill(c, others(8, 'p')) // evicts x, which l2 still holds
    expect(c.stats().freeBytes).toBe(0)
    l2.release()
    expect(c.allocShared(1024)).toBe(buf)

    // A waiter without a lease: never recycled.
    let open!: () => void
    const gate2 = new Promise<void>(resolve => { open = resolve })
    const buf2 = new SharedArrayBuffer(1024)
    const l3 = new BatchLease()
    const owner = c.getOrLoad('y', async () => { await gate2; return { value: new Float64Array(buf2), bytes: 1024, reusable: [buf2] } }, l3)
    const bare = c.getOrLoad('y', load(1024))
    open()
    expect(await bare).toBe(await owner)
    l3.release()
    await fill(c, others(8, 'q'))
    expect(c.stats().freeBytes).toBe(0)
  })

  it('keeps at most half the cache in free buffers, dropping the oldest', async () => {
    const c = new BlockCache(8192) // free buffers: at most 4096 bytes
    const lease = new BatchLease()
    const values = []
    for (const k of others(16)) values.push(await c.getOrLoad(k, load(512), lease))
    c.removeGroup('')
    lease.release()
    expect(c.stats().freeBytes).toBe(4096)
    const kept = Array.from({ length: 8 }, () => c.allocShared(512))
    expect(kept).toEqual(expect.arrayContaining(values.slice(8).map(v => v.buffer)))
  })

  it('a value larger than the cache is handed back, and its buffer recycled once released', async () => {
    const c = new BlockCache(16384)
    const lease = new BatchLease()
    const big = await c.getOrLoad('big', load(1024 * 1024), lease)
    expect(c.stats().entries).toBe(0)
    lease.release()
    // Larger than the free bound: not kept.
    expect(c.stats().freeBytes).toBe(0)
    expect(big.length).toBe(131072)
  })
})
