/**
 * Issue 12: a partition's segments stay on disk and are read through the peer's block cache. A
 * store run through a cache of a few KiB (every read a miss) against a model of what it must
 * hold, across flushes, compactions and reopens; segments of the first format rewritten at open;
 * a query's snapshot surviving the compaction that deletes the segments it reads.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { widenBatch, type StoredBatch } from '../../src/columnar/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { BlockCache, FilePool, MANIFEST_FILE, crc32, type LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'
import { allBitsSet } from '../../src/storage/disk-segment.js'
import { encodeSegment, segmentFileName } from '../../src/storage/segment.js'
import { T0, TempDirs, del, makeSpace, openStore, put, scanAll } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

const space = makeSpace('id:utf8,n:int64,s:utf8,f:float64')

/** Sum of n and count of live rows as batches() gives them. */
async function batchTotals (store: LocalPartitionStore): Promise<{ rows: number, sum: number, ids: Set<string> }> {
  let rows = 0
  let sum = 0
  const ids = new Set<string>()
  for await (const stored of store.batches(['id', 'n'])) {
    const b = widenBatch(stored)
    const id = b.columns.get('id')!
    const n = b.columns.get('n')!
    if (id.tag !== 'str' || n.tag !== 'num') throw new Error('unexpected vector kinds')
    for (let i = 0; i < b.length; i++) {
      const s = id.dict[id.codes[i]!]!
      if (ids.has(s)) throw new Error(`batches() gave ${s} twice`)
      ids.add(s)
      sum += n.values[i]!
    }
    rows += b.length
  }
  return { rows, sum, ids }
}

describe('disk-resident segments', () => {
  it('answers as a model does through a cache of 16 KiB, across flushes, compactions and reopens', async () => {
    const dir = await dirs.make()
    const cache = new BlockCache(16 << 10)
    const files = new FilePool(8)
    const opts = { memtableMaxRows: 150, compactionMaxSegments: 3 }
    let store = await openStore(dir, space, opts, { cache, files })
    const rnd = new SeededRandom(12)
    const model = new Map<string, VersionedRecord>()
    let t = T0
    for (let step = 0; step < 40; step++) {
      const batch: VersionedRecord[] = []
      for (let i = 0; i < 60; i++) {
        const id = `k${rnd.int(900)}`
        t++
        const r = rnd.next() < 0.15 ? del(id, t) : put(space, id, t, { n: rnd.int(1000), s: `s${rnd.int(30)}`, f: rnd.next() })
        batch.push(r)
        model.set(id, r)
      }
      // Some records arrive late (anti-entropy): older than what is held, they must lose.
      const late = [...model.values()].slice(0, 5).map(r => ({ ...r, version: r.version - 1_000_000 }))
      await store.apply([...batch, ...late])
      if (step % 9 === 4) await store.compact()
      if (step % 13 === 12) {
        await store.close()
        store = await openStore(dir, space, opts, { cache, files })
      }
    }
    expect(store.stats().segments).toBeGreaterThan(0)
    for (const [id, want] of model) expect(await store.get(id), id).toEqual(want)
    expect(await store.get('absent')).toBeUndefined()
    const scanned = await scanAll(store)
    expect(new Map([...scanned].map(([id, r]) => [id, r]))).toEqual(model)
    const live = [...model.values()].filter(r => !r.deleted)
    const totals = await batchTotals(store)
    expect(totals.rows).toBe(live.length)
    expect(totals.sum).toBe(live.reduce((a, r) => a + (r.row!.n as number), 0))
    expect(store.stats().liveRows).toBe(live.length)
    const stats = cache.stats()
    expect(stats.bytes).toBeLessThanOrEqual(16 << 10)
    expect(stats.evictions).toBeGreaterThan(0)
    await store.close()
  })

  it('holds no row of a segment in memory: a get after a flush reads its batch from disk', async () => {
    const dir = await dirs.make()
    const cache = new BlockCache(1 << 20)
    const store = await openStore(dir, space, {}, { cache })
    const records = Array.from({ length: 500 }, (_, i) => put(space, `r${i}`, T0 + i, { n: i, s: `v${i % 7}` }))
    await store.apply(records)
    await store.flush()
    expect(cache.stats().bytes).toBe(0)
    expect(await store.get('r42')).toEqual(records[42])
    expect(cache.stats().misses).toBeGreaterThan(0)
    expect(cache.stats().bytes).toBeGreaterThan(0)
    await store.close()
    // Closing the store drops its blocks.
    expect(cache.stats().bytes).toBe(0)
  })

  it('rewrites segments of the first format at open, keeping every record', async () => {
    const dir = await dirs.make()
    // What a store before issue 12 left: one-batch segments, listed without an index file.
    const first = [put(space, 'a', T0, { n: 1 }), put(space, 'b', T0, { n: 2 }), del('c', T0)]
    const second = [put(space, 'a', T0 + 5, { n: 10 }), put(space, 'd', T0 + 5, { n: 4, f: 0.5 })]
    const metas = []
    for (const [i, recs] of [first, second].entries()) {
      const bytes = encodeSegment(space.schema, recs)
      const file = segmentFileName(i + 1)
      await writeFile(join(dir, file), bytes)
      metas.push({ id: i + 1, file, rows: recs.length, bytes: bytes.length, crc32: crc32(bytes) })
    }
    await writeFile(join(dir, MANIFEST_FILE), JSON.stringify({ format: 1, walFrom: 0, nextSegment: 3, segments: metas }))
    const store = await openStore(dir, space)
    expect(store.recovery.segmentsMigrated).toBe(2)
    expect(await store.get('a')).toEqual(second[0])
    expect(await store.get('b')).toEqual(first[1])
    expect(await store.get('c')).toEqual(first[2])
    expect(await store.get('d')).toEqual(second[1])
    expect(store.stats()).toMatchObject({ liveRows: 3, tombstones: 1, segments: 2 })
    await store.close()
    const names = await readdir(dir)
    expect(names).not.toContain(segmentFileName(1))
    expect(names).not.toContain(segmentFileName(2))
    expect(names.filter(n => n.endsWith('.idx'))).toHaveLength(2)
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: Array<{ index?: string }> }
    expect(manifest.segments.every(s => typeof s.index === 'string')).toBe(true)
    // And again: nothing left to migrate.
    const again = await openStore(dir, space)
    expect(again.recovery.segmentsMigrated).toBe(0)
    expect(await again.get('a')).toEqual(second[0])
    await again.close()
  })

  it('a snapshot taken before a compaction reads its segments after the compaction deleted them from the manifest', async () => {
    const dir = await dirs.make()
    const cache = new BlockCache(4 << 10)
    const store = await openStore(dir, space, {}, { cache })
    for (let s = 0; s < 3; s++) {
      await store.apply(Array.from({ length: 100 }, (_, i) => put(space, `k${s}-${i}`, T0 + s, { n: 1 })))
      await store.flush()
    }
    const snapshot = store.batches(['id', 'n'])[Symbol.asyncIterator]()
    const firstBatch = await snapshot.next()
    expect(firstBatch.done).toBe(false)
    await store.compact()
    expect(store.stats().segments).toBe(1)
    // The old files are still there while the snapshot reads them...
    expect((await readdir(dir)).filter(n => n.endsWith('.arrow'))).toHaveLength(4)
    let rows = (firstBatch.value as StoredBatch).length
    for (let r = await snapshot.next(); r.done !== true; r = await snapshot.next()) rows += r.value.length
    expect(rows).toBe(300)
    // ...and gone once it is done (deleted in the background: polled, no timer).
    let left = -1
    for (let i = 0; i < 1000 && left !== 1; i++) {
      await new Promise(resolve => setImmediate(resolve))
      left = (await readdir(dir)).filter(n => n.endsWith('.arrow')).length
    }
    expect(left).toBe(1)
    // A snapshot abandoned before its first batch releases its pins on return().
    const abandoned = store.batches(['n'])[Symbol.asyncIterator]()
    await abandoned.return?.()
    await store.apply([put(space, 'x', T0 + 9, { n: 1 })])
    await store.flush()
    await store.compact()
    expect((await readdir(dir)).filter(n => n.endsWith('.arrow'))).toHaveLength(1)
    expect((await batchTotals(store)).rows).toBe(301)
    await store.close()
  })

  it('reopens from the saved live state without reading a key or a row; a bad state file is rebuilt from the keys', async () => {
    const dir = await dirs.make()
    const cache = new BlockCache(1 << 20)
    const opts = { memtableMaxRows: 100 }
    const store = await openStore(dir, space, opts, { cache })
    const rnd = new SeededRandom(5)
    let t = T0
    for (let i = 0; i < 30; i++) {
      await store.apply(Array.from({ length: 40 }, () => {
        const id = `k${rnd.int(500)}`
        t++
        return rnd.next() < 0.1 ? del(id, t) : put(space, id, t, { n: rnd.int(100) })
      }))
    }
    // Some records only in the WAL (the memtable), some superseding segment rows.
    expect(store.stats().memtableRows).toBeGreaterThan(0)
    const want = await scanAll(store)
    const digests = [await store.digest(1), await store.digest(64), await store.digest(256)]
    const stats = store.stats()
    await store.close()
    const before = cache.stats()
    const again = await openStore(dir, space, opts, { cache })
    expect(again.recovery.liveRebuilt).toBe(false)
    // Nothing but the WAL's records' lookups read the key indexes: no column block was read.
    expect(cache.stats().bytes - before.bytes).toBeLessThan(64 << 10)
    expect(again.stats()).toMatchObject({ liveRows: stats.liveRows, tombstones: stats.tombstones })
    expect([await again.digest(1), await again.digest(64), await again.digest(256)]).toEqual(digests)
    expect(await scanAll(again)).toEqual(want)
    await again.close()
    // A state file that does not read back: rebuilt from the segments' keys, same answers, and saved again.
    const live = (await readdir(dir)).find(n => n.startsWith('live-'))!
    const bytes = await readFile(join(dir, live))
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff
    await writeFile(join(dir, live), bytes)
    const rebuilt = await openStore(dir, space, opts, { cache })
    expect(rebuilt.recovery.liveRebuilt).toBe(true)
    expect(rebuilt.stats()).toMatchObject({ liveRows: stats.liveRows, tombstones: stats.tombstones })
    expect([await rebuilt.digest(1), await rebuilt.digest(64), await rebuilt.digest(256)]).toEqual(digests)
    expect(await scanAll(rebuilt)).toEqual(want)
    await rebuilt.close()
    const last = await openStore(dir, space, opts, { cache })
    expect(last.recovery.liveRebuilt).toBe(false)
    expect(await scanAll(last)).toEqual(want)
    await last.close()
  })

  it('allBitsSet (a scan\'s fast path over a batch whose rows are all live) agrees with a bit-by-bit check', () => {
    const rnd = new SeededRandom(12)
    for (let t = 0; t < 5000; t++) {
      const bits = new Uint8Array(12).fill(0xff)
      for (let h = rnd.int(3); h > 0; h--) { const at = rnd.int(96); bits[at >> 3]! &= ~(1 << (at & 7)) }
      const from = rnd.int(40)
      const n = 1 + rnd.int(50)
      let want = true
      for (let i = from; i < from + n; i++) if ((bits[i >> 3]! & (1 << (i & 7))) === 0) want = false
      expect(allBitsSet(bits, from, n)).toBe(want)
    }
  })
})
