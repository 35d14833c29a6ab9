import { describe, expect, it } from 'vitest'
import { BlockCache, columnVectorBytes, defaultCacheMiB } from '../../src/storage/block-cache.js'

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

  it('hands back but does not keep a value larger than the whole cache, and replaces a key in place', () => {
    const c = new BlockCache(10)
    c.set('big', 'X', 11)
    expect(c.get('big')).toBeUndefined()
    c.set('k', 1, 4)
    c.set('k', 2, 6)
    expect(c.get('k')).toBe(2)
    expect(c.stats().bytes).toBe(6)
    c.removePrefix('k')
    expect(c.stats()).toMatchObject({ bytes: 0, entries: 0 })
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
    expect(columnVectorBytes({ tag: 'num', type: 'float64', values: new Float64Array(10) })).toBe(80)
    expect(columnVectorBytes({ tag: 'str', type: 'utf8', codes: new Int32Array(4), dict: ['ab', 'cde'] })).toBe(16 + 2 * 8 + (16 + 4) + (16 + 6))
    expect(columnVectorBytes({ tag: 'vec', type: 'vector<2>', dim: 2, values: new Float32Array(8), valid: new Uint8Array(4) })).toBe(36)
  })

  it('defaults to a quarter of the memory, at most 4 GiB', () => {
    expect(defaultCacheMiB(24 * 1024 ** 3)).toBe(4096)
    expect(defaultCacheMiB(8 * 1024 ** 3)).toBe(2048)
  })
})
