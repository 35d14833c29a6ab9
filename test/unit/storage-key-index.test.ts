import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SeededRandom } from '../../src/runtime/index.js'
import { BlockCache } from '../../src/storage/block-cache.js'
import { BloomFilter } from '../../src/storage/bloom.js'
import { crc32 } from '../../src/storage/crc32.js'
import { stableHash } from '../../src/storage/hash.js'
import {
  bucketRange, compareKeys, encodeKeyIndex, KeyIndex, KeyIndexCorruptError, keyHash, keyOrder, openFileSource, reverseBits32, searchUint32,
  type KeyIndexCache, type KeyIndexEntry, type KeyIndexSource
} from '../../src/storage/key-index.js'

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'
function randomId (rng: SeededRandom, min = 10, max = 30): string {
  const n = min + rng.int(max - min + 1)
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[rng.int(ALPHABET.length)]
  return s
}

/** `n` distinct random ids with versions and tombstones, in key order. */
function makeEntries (n: number, seed: number, idOf: (rng: SeededRandom) => string = randomId): KeyIndexEntry[] {
  const rng = new SeededRandom(seed)
  const seen = new Set<string>()
  const ids: string[] = []
  while (ids.length < n) {
    const id = idOf(rng)
    if (!seen.has(id)) { seen.add(id); ids.push(id) }
  }
  const order = keyOrder(ids)
  return Array.from(order, i => ({ id: ids[i]!, version: 1_700_000_000_000 * 1024 + rng.int(1 << 30), deleted: rng.int(10) === 0 }))
}

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-key-index-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

interface Written { path: string, at: number, length: number, file: Uint8Array }
let fileNo = 0
/** Writes the section at a non-zero offset of a new file, with other bytes before and after it. */
async function writeSection (section: Uint8Array, before = 1237, after = 311): Promise<Written> {
  const path = join(dir, `idx-${fileNo++}.idx`)
  const file = new Uint8Array(before + section.length + after)
  const rng = new SeededRandom(fileNo)
  for (let i = 0; i < before; i++) file[i] = rng.int(256)
  file.set(section, before)
  for (let i = before + section.length; i < file.length; i++) file[i] = rng.int(256)
  await writeFile(path, file)
  return { path, at: before, length: section.length, file }
}

async function openWritten (w: Written, cache: KeyIndexCache = new BlockCache(64 << 20)): Promise<{ index: KeyIndex, close: () => Promise<void>, source: KeyIndexSource }> {
  const source = await openFileSource(w.path)
  const index = await KeyIndex.open(source, w.at, w.length, cache, w.path)
  return { index, close: source.close, source }
}

/** An in-memory source over a byte array (for corruption tests: no file per flip). */
function memorySource (path: string, bytes: Uint8Array, counter?: { reads: number }): KeyIndexSource {
  return {
    path,
    read: async (offset, length) => {
      if (counter !== undefined) counter.reads++
      return bytes.subarray(offset, Math.min(bytes.length, offset + length))
    }
  }
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

describe('key order', () => {
  it('reverseBits32 reverses bits', () => {
    expect(reverseBits32(1)).toBe(0x80000000)
    expect(reverseBits32(0x80000000)).toBe(1)
    expect(reverseBits32(0xffffffff)).toBe(0xffffffff)
    expect(reverseBits32(0x12345678)).toBe(0x1e6a2c48)
    const rng = new SeededRandom(3)
    for (let i = 0; i < 1000; i++) {
      const x = rng.nextUint32()
      expect(reverseBits32(reverseBits32(x))).toBe(x)
      let r = 0
      for (let b = 0; b < 32; b++) if ((x >>> b) & 1) r += 2 ** (31 - b)
      expect(reverseBits32(x)).toBe(r)
    }
  })

  it('compareKeys orders by keyHash then id, and keyOrder sorts by it', () => {
    const rng = new SeededRandom(4)
    const ids = Array.from({ length: 2000 }, () => randomId(rng, 1, 8))
    const sorted = ids.slice().sort(compareKeys)
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1]!
      const b = sorted[i]!
      expect(keyHash(a) < keyHash(b) || (keyHash(a) === keyHash(b) && a <= b)).toBe(true)
    }
    expect(Array.from(keyOrder(ids), i => ids[i])).toEqual(sorted)
    expect(compareKeys('x', 'x')).toBe(0)
  })

  it('bucketRange holds exactly the ids with stableHash % buckets === index', () => {
    const rng = new SeededRandom(5)
    for (let t = 0; t < 20_000; t++) {
      const id = randomId(rng, 1, 12)
      const k = rng.int(33)
      const buckets = 2 ** k
      const own = stableHash(id) % buckets
      const index = rng.int(2) === 0 ? own : Math.floor(rng.next() * buckets)
      const { lo, hi } = bucketRange(index, buckets)
      const kh = keyHash(id)
      expect(kh >= lo && kh <= hi).toBe(own === index)
    }
    expect(bucketRange(0, 1)).toEqual({ lo: 0, hi: 0xffffffff })
    expect(bucketRange(1, 2)).toEqual({ lo: 0x80000000, hi: 0xffffffff })
    expect(() => bucketRange(0, 3)).toThrow(RangeError)
    expect(() => bucketRange(4, 4)).toThrow(RangeError)
    expect(() => bucketRange(0, 2 ** 33)).toThrow(RangeError)
  })

  it('searchUint32 finds the first element >= x, on uniform and skewed arrays', () => {
    const rng = new SeededRandom(16)
    for (let t = 0; t < 3000; t++) {
      const n = rng.int(300)
      const shape = t % 3
      const a = new Uint32Array(n)
      for (let i = 0; i < n; i++) a[i] = shape === 0 ? rng.nextUint32() : shape === 1 ? rng.int(4) * 1e9 : (rng.int(8) === 0 ? rng.nextUint32() : 5)
      a.sort()
      const probes = [0, 0xffffffff, rng.nextUint32(), ...(n > 0 ? [a[rng.int(n)]!, a[rng.int(n)]! + 1, a[rng.int(n)]! - 1] : [])]
      for (const x of probes) {
        if (x < 0 || x > 0xffffffff) continue
        let want = 0
        while (want < n && a[want]! < x) want++
        expect(searchUint32(a, x)).toBe(want)
      }
    }
  })

  it('the bucket ranges of 2^k buckets tile the key space in order of reversed index', () => {
    for (const buckets of [1, 2, 8, 64]) {
      const ranges = Array.from({ length: buckets }, (_, i) => bucketRange(i, buckets)).sort((a, b) => a.lo - b.lo)
      expect(ranges[0]!.lo).toBe(0)
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.lo).toBe(ranges[i - 1]!.hi + 1)
      expect(ranges[ranges.length - 1]!.hi).toBe(0xffffffff)
    }
  })
})

describe('BloomFilter', () => {
  const rng = new SeededRandom(6)
  const present = Array.from({ length: 100_000 }, (_, i) => `present-${i}-${randomId(rng, 2, 6)}`)
  const absent = Array.from({ length: 100_000 }, (_, i) => `absent-${i}`)
  const h2 = (s: string): number => stableHash(`${s}\u0000`)

  for (const rate of [0.01, 0.001]) {
    it(`has no false negatives and about ${rate * 100} % false positives`, () => {
      const bloom = BloomFilter.forKeys(present.length, { falsePositiveRate: rate })
      for (const id of present) bloom.add(stableHash(id), h2(id))
      for (const id of present) expect(bloom.has(stableHash(id), h2(id))).toBe(true)
      let fp = 0
      for (const id of absent) if (bloom.has(stableHash(id), h2(id))) fp++
      const measured = fp / absent.length
      expect(measured).toBeGreaterThan(rate * 0.6)
      expect(measured).toBeLessThan(rate * 1.4)
      // ~1.44 log2(1/p) bits a key
      expect(bloom.bits / present.length).toBeCloseTo(-Math.log2(rate) * 1.4427, 0)
    })
  }

  it('round-trips through serialize and rejects malformed bytes', () => {
    const bloom = BloomFilter.forKeys(1000)
    for (let i = 0; i < 1000; i++) bloom.add(stableHash(`k${i}`), h2(`k${i}`))
    const bytes = bloom.serialize()
    const back = BloomFilter.deserialize(bytes)
    expect(back.k).toBe(bloom.k)
    expect(back.bits).toBe(bloom.bits)
    for (let i = 0; i < 1000; i++) expect(back.has(stableHash(`k${i}`), h2(`k${i}`))).toBe(true)
    const bad = (mutate: (b: Uint8Array) => Uint8Array): void => {
      expect(() => BloomFilter.deserialize(mutate(bytes.slice()))).toThrow(/Bloom filter/)
    }
    bad(b => { b[0]! ^= 1; return b })
    bad(b => { b[4] = 0; return b })
    bad(b => { b[4] = 31; return b })
    bad(b => { b[8]! ^= 8; return b })
    bad(b => b.subarray(0, b.length - 1))
    bad(b => b.subarray(0, 10))
    expect(() => BloomFilter.forKeys(10, { falsePositiveRate: 0 })).toThrow(RangeError)
    expect(() => BloomFilter.forKeys(-1)).toThrow(RangeError)
  })
})

describe('KeyIndex on a file', () => {
  const N = 100_000
  const entries = makeEntries(N, 7)
  let w: Written
  let index: KeyIndex
  let close: () => Promise<void>
  beforeAll(async () => {
    w = await writeSection(encodeKeyIndex(entries))
    ;({ index, close } = await openWritten(w))
  })
  afterAll(async () => { await close() })

  it('finds every key at its row, version and tombstone flag', async () => {
    expect(index.count).toBe(N)
    for (let i = 0; i < N; i++) {
      const e = entries[i]!
      expect(index.mayContain(e.id)).toBe(true)
      const hit = await index.lookup(e.id)
      expect(hit).toEqual({ row: i, version: e.version, deleted: e.deleted })
    }
  })

  it('finds no absent key, and the Bloom filter turns away about 99 % of them', async () => {
    const rng = new SeededRandom(8)
    const present = new Set(entries.map(e => e.id))
    let maybe = 0
    let tried = 0
    while (tried < N) {
      // Near misses too: a present id with one character changed or appended.
      const base = entries[rng.int(N)]!.id
      const id = tried % 3 === 0 ? randomId(rng) : tried % 3 === 1 ? base + 'x' : base.slice(0, -1) + (base.endsWith('a') ? 'b' : 'a')
      if (present.has(id)) continue
      tried++
      if (index.mayContain(id)) maybe++
      expect(await index.lookup(id)).toBeUndefined()
    }
    expect(maybe / N).toBeGreaterThan(0.005)
    expect(maybe / N).toBeLessThan(0.015)
  })

  it('keeps only the Bloom filter and the sparse index resident (about 10 bits a key plus a key a block)', () => {
    expect(index.blockCount).toBeGreaterThan(N / 150)
    expect(index.residentBytes).toBeGreaterThan(N * 1.2)
    expect(index.residentBytes).toBeLessThan(N * 2)
    expect(index.residentBytes).toBeLessThan(w.length / 15)
  })

  it('entries() gives every row in key order, and any row range of it', async () => {
    const all = await collect(index.entries())
    expect(all.length).toBe(N)
    for (let i = 0; i < N; i++) expect(all[i]).toEqual({ row: i, ...entries[i] })
    const rng = new SeededRandom(9)
    for (let t = 0; t < 50; t++) {
      const a = rng.int(N + 1)
      const b = t % 5 === 0 ? a : a + rng.int(Math.min(N - a, 700) + 1)
      const part = await collect(index.entries(a, b))
      expect(part.map(r => r.row)).toEqual(Array.from({ length: b - a }, (_, i) => a + i))
      expect(part.map(r => r.id)).toEqual(entries.slice(a, b).map(e => e.id))
    }
    await expect(collect(index.entries(5, 4))).rejects.toThrow(RangeError)
    await expect(collect(index.entries(0, N + 1))).rejects.toThrow(RangeError)
  })

  it('bucketRows() is the contiguous run of each bucket, against brute force', async () => {
    for (const buckets of [1, 2, 16, 256, 4096]) {
      const model = new Map<number, number[]>()
      entries.forEach((e, row) => {
        const b = stableHash(e.id) % buckets
        let rows = model.get(b)
        if (rows === undefined) model.set(b, rows = [])
        rows.push(row)
      })
      let covered = 0
      for (let b = 0; b < buckets; b++) {
        const { from, to } = await index.bucketRows(b, buckets)
        const rows = model.get(b) ?? []
        expect(to - from).toBe(rows.length)
        if (rows.length > 0) expect([from, to - 1]).toEqual([rows[0], rows[rows.length - 1]])
        covered += to - from
      }
      expect(covered).toBe(N)
    }
    // 2^20 buckets: most are empty; sample some and every bucket of a few rows.
    const buckets = 1 << 20
    for (let row = 0; row < N; row += 997) {
      const b = stableHash(entries[row]!.id) % buckets
      const { from, to } = await index.bucketRows(b, buckets)
      expect(from <= row && row < to).toBe(true)
      for (let r = from; r < to; r++) expect(stableHash(entries[r]!.id) % buckets).toBe(b)
      if (from > 0) expect(stableHash(entries[from - 1]!.id) % buckets).not.toBe(b)
      if (to < N) expect(stableHash(entries[to]!.id) % buckets).not.toBe(b)
    }
  })

  it('answers right through a cache of a few KiB', async () => {
    const tiny = new BlockCache(6 * 1024)
    const { index: small, close: closeSmall } = await openWritten(w, tiny)
    try {
      const rng = new SeededRandom(10)
      for (let t = 0; t < 5000; t++) {
        const i = rng.int(N)
        expect(await small.lookup(entries[i]!.id)).toEqual({ row: i, version: entries[i]!.version, deleted: entries[i]!.deleted })
      }
      expect(tiny.stats().bytes).toBeLessThanOrEqual(6 * 1024)
      expect(tiny.stats().evictions).toBeGreaterThan(1000)
      expect((await collect(small.entries(N - 3000))).map(r => r.id)).toEqual(entries.slice(N - 3000).map(e => e.id))
      expect(await small.bucketRows(3, 4)).toEqual(await index.bucketRows(3, 4))
    } finally {
      await closeSmall()
    }
  })
})

describe('KeyIndex edge cases', () => {
  it('an empty index answers nothing', async () => {
    const w = await writeSection(encodeKeyIndex([]))
    const { index, close } = await openWritten(w)
    expect(index.count).toBe(0)
    expect(index.mayContain('a')).toBe(false)
    expect(await index.lookup('a')).toBeUndefined()
    expect(await collect(index.entries())).toEqual([])
    expect(await index.bucketRows(0, 1)).toEqual({ from: 0, to: 0 })
    await close()
  })

  it('non-ASCII ids (accents, CJK, astral characters) round-trip', async () => {
    const pieces = ['é', 'ü', '日本', '🐟', 'a', 'Z', '\u0000', '\uffff', '𝄞']
    const entries = makeEntries(5000, 11, rng => {
      let s = ''
      const n = 1 + rng.int(8)
      for (let i = 0; i < n; i++) s += pieces[rng.int(pieces.length)]
      return s
    })
    const w = await writeSection(encodeKeyIndex(entries, { blockBytes: 512 }))
    const { index, close } = await openWritten(w)
    for (let i = 0; i < entries.length; i++) expect((await index.lookup(entries[i]!.id))?.row).toBe(i)
    // Same UTF-16 length, different characters; a prefix; a longer string.
    for (const e of entries.slice(0, 500)) {
      for (const other of [e.id + 'é', e.id.slice(0, -1), e.id.replace(/é/g, 'è')]) {
        if (other === e.id || entries.some(x => x.id === other)) continue
        expect(await index.lookup(other)).toBeUndefined()
      }
    }
    expect((await collect(index.entries())).map(r => r.id)).toEqual(entries.map(e => e.id))
    await close()
  })

  it('ids with equal key hashes, split across blocks, are all found', async () => {
    // Birthday collisions of the 32-bit hash among 600,000 short ids: about 40 pairs.
    const byHash = new Map<number, string>()
    const colliding: string[] = []
    for (let i = 0; i < 600_000; i++) {
      const id = `c${i}`
      const h = stableHash(id)
      const other = byHash.get(h)
      if (other !== undefined) colliding.push(other, id)
      else byHash.set(h, id)
    }
    expect(colliding.length).toBeGreaterThan(20)
    const order = keyOrder(colliding)
    const entries = Array.from(order, (i, row) => ({ id: colliding[i]!, version: row, deleted: false }))
    const section = encodeKeyIndex(entries, { blockBytes: 256 })
    const w = await writeSection(section)
    const { index, close } = await openWritten(w)
    // Read the sparse index's first rows (format in key-index.ts) to find pairs split across blocks.
    const dv = new DataView(section.buffer, section.byteOffset)
    const sparseOffset = dv.getUint32(32, true)
    const firstRows = new Set(Array.from({ length: index.blockCount }, (_, b) => dv.getUint32(sparseOffset + 4 * (index.blockCount + b), true)))
    const split = entries.filter((e, row) => row > 0 && firstRows.has(row) && keyHash(entries[row - 1]!.id) === keyHash(e.id))
    expect(split.length).toBeGreaterThan(0)
    for (let row = 0; row < entries.length; row++) expect((await index.lookup(entries[row]!.id))?.row).toBe(row)
    for (let i = 0; i < 2000; i++) expect(await index.lookup(`d${i}`)).toBeUndefined()
    await close()
  })

  it('encodeKeyIndex refuses entries out of key order, duplicates, lone surrogates and non-HLC versions', () => {
    const entries = makeEntries(10, 12)
    expect(() => encodeKeyIndex([entries[1]!, entries[0]!])).toThrow(/key order/)
    expect(() => encodeKeyIndex([entries[0]!, entries[0]!])).toThrow(/key order/)
    expect(() => encodeKeyIndex([{ id: 'a\ud800', version: 1, deleted: false }])).toThrow(/surrogate/)
    expect(() => encodeKeyIndex([{ id: 'a', version: -1, deleted: false }])).toThrow(/HLC/)
    expect(() => encodeKeyIndex([{ id: 'a', version: 1.5, deleted: false }])).toThrow(/HLC/)
    expect(() => encodeKeyIndex(entries, { blockBytes: 100 })).toThrow(RangeError)
  })

  /** A key index of `n` made-up entries in memory, its reads counted, behind a cache of `cacheBytes`. */
  async function countedIndex (n: number, seed: number, cacheBytes: number): Promise<{ entries: KeyIndexEntry[], counter: { reads: number }, cache: BlockCache, index: KeyIndex }> {
    const entries = makeEntries(n, seed)
    const section = encodeKeyIndex(entries)
    const counter = { reads: 0 }
    const cache = new BlockCache(cacheBytes)
    const index = await KeyIndex.open(memorySource('mem', section, counter), 0, section.length, cache, 'mem')
    return { entries, counter, cache, index }
  }

  it('simultaneous lookups in one cold block read it once', async () => {
    const { entries, counter, cache, index } = await countedIndex(1000, 13, 1 << 20)
    const before = counter.reads
    const hits = await Promise.all(entries.slice(0, 20).map(async e => await index.lookup(e.id)))
    expect(hits.map(h => h?.row)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(counter.reads - before).toBe(1)
    expect(cache.stats().entries).toBe(1)
  })

  it('keeps a block read for an id it holds, not one read for an id it does not (a Bloom filter\'s false positive)', async () => {
    const { entries, counter, cache, index } = await countedIndex(20_000, 15, 64 << 20)
    // Absent ids until a few get past the Bloom filter and read a block each.
    let falsePositives = 0
    for (let i = 0; falsePositives < 5 && i < 100_000; i++) {
      const before = counter.reads
      expect(await index.lookup(`absent-${i}`)).toBeUndefined()
      if (counter.reads > before) falsePositives++
    }
    expect(falsePositives).toBe(5)
    expect(cache.stats().entries).toBe(0)
    // Read, though not kept: counted with the cache's loads (what reads cost).
    expect(cache.stats().loadedBytes).toBeGreaterThan(0)
    // A present id: its block is kept, and the next lookup in it reads nothing.
    const e = entries[777]!
    expect((await index.lookup(e.id))?.row).toBe(777)
    expect(cache.stats().entries).toBe(1)
    const reads = counter.reads
    expect((await index.lookup(e.id))?.row).toBe(777)
    expect(counter.reads).toBe(reads)
  })
})

describe('KeyIndex corruption', () => {
  const entries = makeEntries(3000, 14)
  const section = encodeKeyIndex(entries, { blockBytes: 1024 })
  const at = 100
  const file = new Uint8Array(at + section.length + 50)
  file.set(section, at)
  const dv = new DataView(section.buffer, section.byteOffset)
  const bloomOffset = dv.getUint32(16, true)
  const sparseOffset = dv.getUint32(32, true)
  const blocksOffset = dv.getUint32(48, true)

  /** Opens a copy of the file with `mutate` applied, then asks for every key: right or KeyIndexCorruptError, never wrong. */
  async function probe (mutate: (f: Uint8Array) => void, length = section.length): Promise<{ openError?: KeyIndexCorruptError, errors: KeyIndexCorruptError[] }> {
    const f = file.slice()
    mutate(f)
    let index: KeyIndex
    try {
      index = await KeyIndex.open(memorySource('/data/seg-1.idx', f), at, length, new BlockCache(1 << 20), 'k')
    } catch (err) {
      expect(err).toBeInstanceOf(KeyIndexCorruptError)
      return { openError: err as KeyIndexCorruptError, errors: [] }
    }
    const errors: KeyIndexCorruptError[] = []
    for (let i = 0; i < entries.length; i++) {
      try {
        const hit = await index.lookup(entries[i]!.id)
        expect(hit).toEqual({ row: i, version: entries[i]!.version, deleted: entries[i]!.deleted })
      } catch (err) {
        if (!(err instanceof KeyIndexCorruptError)) throw err
        errors.push(err)
      }
    }
    try {
      const all = await collect(index.entries())
      expect(all).toEqual(entries.map((e, row) => ({ row, ...e })))
    } catch (err) {
      if (!(err instanceof KeyIndexCorruptError)) throw err
      errors.push(err)
    }
    return { errors }
  }

  it('a flipped byte in the header, the Bloom filter or the sparse index fails open, naming the file and offset', async () => {
    for (const [where, part] of [[5, 0], [40, 0], [bloomOffset + 20, bloomOffset], [sparseOffset + 3, sparseOffset], [blocksOffset - 1, sparseOffset]] as const) {
      const { openError } = await probe(f => { f[at + where]! ^= 0x10 })
      expect(openError).toBeDefined()
      expect(openError!.path).toBe('/data/seg-1.idx')
      expect(openError!.offset).toBe(at + part)
      expect(openError!.message).toContain('/data/seg-1.idx')
      expect(openError!.message).toContain(`offset ${at + part}`)
    }
  })

  it('a flipped byte in a block fails the reads of that block only', async () => {
    const { openError, errors } = await probe(f => { f[at + blocksOffset + 1500]! ^= 0x01 })
    expect(openError).toBeUndefined()
    expect(errors.length).toBeGreaterThan(0)
    expect(errors.length).toBeLessThan(60)
    expect(errors[0]!.message).toMatch(/block \d+: CRC-32/)
    expect(errors[0]!.offset).toBeGreaterThan(at + blocksOffset)
  })

  it('a flipped byte anywhere never gives a wrong answer', async () => {
    const rng = new SeededRandom(15)
    for (let t = 0; t < 150; t++) {
      const pos = at + rng.int(section.length)
      const bit = 1 << rng.int(8)
      const { openError, errors } = await probe(f => { f[pos]! ^= bit })
      expect(openError !== undefined || errors.length > 0).toBe(true)
    }
  })

  it('a truncated file or a wrong section length is an error', async () => {
    const short = await probe(() => {}, section.length - 4)
    expect(short.openError?.message).toMatch(/do not tile/)
    const cut = file.subarray(0, at + section.length - 10)
    const index = await KeyIndex.open(memorySource('cut', cut), at, section.length, new BlockCache(1 << 20), 'cut').catch(e => e)
    if (index instanceof KeyIndex) {
      await expect(collect(index.entries())).rejects.toThrow(/file ends inside/)
    } else {
      expect(index).toBeInstanceOf(KeyIndexCorruptError)
    }
    await expect(KeyIndex.open(memorySource('tiny', file), at, 40, new BlockCache(1024), 't')).rejects.toThrow(KeyIndexCorruptError)
  })

  it('a valid-CRC file with a wrong magic or version is refused', async () => {
    const f = section.slice()
    new DataView(f.buffer).setUint16(4, 2, true)
    new DataView(f.buffer).setUint32(76, crc32(f.subarray(0, 76)), true)
    await expect(KeyIndex.open(memorySource('v2', f), 0, f.length, new BlockCache(1024), 'v')).rejects.toThrow(/format version 2/)
  })
})
