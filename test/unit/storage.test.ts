import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { makeHlc } from '../../src/hlc/index.js'
import { addColumn } from '../../src/schema/index.js'
import { SpaceDroppedError, StorageEngine, StoreClosedError, stableHash, type VersionedRecord } from '../../src/storage/index.js'
import { crc32Js } from '../../src/storage/crc32.js'
import { crc32 } from '../../src/storage/index.js'
import { T0, TempDirs, del, makeSpace, manualClock, openStore, put, recordingLogger, row, scanAll } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

describe('storage: apply, get and last-writer-wins', () => {
  it('apply stores records durably and get returns the newest version', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    const r = await store.apply([put(space, 'a', T0, { n: 1, s: 'x' }), put(space, 'b', T0, { n: 2 })])
    expect(r).toEqual({ applied: 2, stale: 0 })
    expect((await store.get('a'))?.row).toEqual(row(space, { id: 'a', n: 1, s: 'x' }))
    expect((await store.get('zz'))).toBeUndefined()
    expect(store.stats()).toMatchObject({ liveRows: 2, tombstones: 0, memtableRows: 2, segments: 0 })
    await store.close()
  })

  it('an older version is ignored and counted as stale', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    await store.apply([put(space, 'a', T0 + 10, { n: 2 })])
    expect(await store.apply([put(space, 'a', T0, { n: 1 })])).toEqual({ applied: 0, stale: 1 })
    expect((await store.get('a'))?.row?.n).toBe(2)
    await store.flush()
    // Also when the held version is in a segment.
    expect(await store.apply([put(space, 'a', T0 + 5, { n: 3 })])).toEqual({ applied: 0, stale: 1 })
    expect((await store.get('a'))?.row?.n).toBe(2)
    expect(store.counters.stale).toBe(2)
    await store.close()
  })

  it('a tombstone hides the row, get returns the tombstone, and a newer write revives it', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    await store.apply([put(space, 'a', T0, { n: 1 })])
    await store.apply([del('a', T0 + 1)])
    expect((await store.get('a'))).toEqual({ id: 'a', version: makeHlc(T0 + 1, 0), deleted: true, row: null })
    expect(store.stats()).toMatchObject({ liveRows: 0, tombstones: 1 })
    expect([...(await scanAll(store, false)).keys()]).toEqual([])
    await store.flush()
    expect((await store.get('a'))?.deleted).toBe(true)
    await store.apply([put(space, 'a', T0 + 2, { n: 5 })])
    expect((await store.get('a'))?.row?.n).toBe(5)
    await store.close()
  })

  it('equal versions: a delete wins, then the larger content, whatever the arrival order', async () => {
    const space = makeSpace()
    const v = T0
    const a = put(space, 'k', v, { s: 'apple' })
    const b = put(space, 'k', v, { s: 'banana' })
    const d = del('k', v)
    const orders = [[a, b, d], [d, b, a], [b, a, d], [a, d, b]]
    for (const order of orders) {
      const store = await openStore(await dirs.make(), space)
      for (const r of order.filter(r => !r.deleted)) await store.apply([r])
      const winnerWithoutDelete = (await store.get('k'))
      expect(winnerWithoutDelete?.row?.s).toBe('banana')
      for (const r of order) await store.apply([r])
      expect((await store.get('k'))?.deleted).toBe(true)
      // The same exact record again is stale (idempotent), also once it sits in a segment.
      await store.flush()
      expect(await store.apply([d, b])).toEqual({ applied: 0, stale: 2 })
      await store.close()
    }
  })

  it('columns named like Object.prototype members survive the WAL and a segment', async () => {
    const space = makeSpace('id:utf8,__proto__:int32,constructor:utf8')
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const r = put(space, 'a', T0, { ['__proto__']: 5, constructor: 'c' })
    expect(r.row?.['__proto__']).toBe(5)
    expect(Object.keys(r.row!)).toEqual(['id', '__proto__', 'constructor'])
    await store.apply([r])
    await store.close()
    const again = await openStore(dir, space)
    expect((await again.get('a'))).toEqual(r)
    await again.flush()
    expect((await again.get('a'))?.row).toEqual(r.row)
    await again.close()
  })

  it('a batch holding the same id twice keeps the newer and counts the older stale', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    expect(await store.apply([put(space, 'a', T0 + 1, { n: 1 }), put(space, 'a', T0, { n: 0 }), put(space, 'a', T0 + 2, { n: 2 })])).toEqual({ applied: 2, stale: 1 })
    expect((await store.get('a'))?.row?.n).toBe(2)
    await store.close()
  })

  it('apply rejects a malformed record and writes nothing of its batch', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    const bad = { id: 'b', version: -1, deleted: false, row: {} } as unknown as VersionedRecord
    await expect(store.apply([put(space, 'a', T0), bad])).rejects.toThrow(/records\[1\]\.version/)
    await expect(store.apply([{ id: 'c', version: T0, deleted: true, row: { id: 'c' } }])).rejects.toThrow(/null for a tombstone/)
    expect((await store.get('a'))).toBeUndefined()
    await store.close()
    await expect(store.apply([put(space, 'a', T0)])).rejects.toBeInstanceOf(StoreClosedError)
  })
})

describe('storage: segments', () => {
  it('a memtable over its row bound flushes to a segment, deletes the old WAL, and reads stay the same', async () => {
    const space = makeSpace()
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 10 })
    for (let i = 0; i < 10; i++) await store.apply([put(space, `k${i}`, T0 + i, { n: i })])
    await store.flush() // the bound started one; wait for it
    expect(store.stats()).toMatchObject({ segments: 1, memtableRows: 0, liveRows: 10 })
    const files = (await readdir(dir)).sort()
    expect(files.filter(f => f.endsWith('.arrow'))).toHaveLength(1)
    expect(files.filter(f => f.startsWith('wal-'))).toHaveLength(1)
    expect(files).toContain('MANIFEST')
    for (let i = 0; i < 10; i++) expect((await store.get(`k${i}`))?.row?.n).toBe(i)
    await store.close()
  })

  it('every column type round-trips through a segment, nulls included', async () => {
    const space = makeSpace('id:utf8,b:bool,i:int32,l:int64,f:float32,d:float64,s:utf8,t:timestamp,dt:date,tags:list<utf8>,nums:list<int64>,days:list<date>,v:vector<4>')
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const full = row(space, {
      id: 'full', b: true, i: -2147483648, l: '9007199254740993', f: 1.1, d: Math.PI, s: 'héllo ✓ 𝄞', t: '2024-02-29T12:34:56.789Z', dt: '2024-02-29',
      tags: ['a', '', 'ü'], nums: [1, '-9223372036854775808'], days: ['1970-01-02'], v: [0.1, -2, 3.5, 1e-3]
    })
    expect(full.l).toBe(9007199254740993n)
    const small = row(space, { id: 'small', b: false, i: 7, l: -42, f: 0, d: -0.5, s: '', t: 0, dt: -1, tags: [], nums: [], days: [], v: [0, 0, 0, 0] })
    const empty = row(space, { id: 'empty' })
    // int64 as numbers go to Arrow as 32-bit halves: the extremes of the safe range, both signs.
    const edge = row(space, { id: 'edge', l: -(2 ** 53 - 1), t: 2 ** 53 - 1, nums: [-(2 ** 32), 2 ** 32 - 1] })
    await store.apply([
      { id: 'edge', version: makeHlc(T0, 4), deleted: false, row: edge },
      { id: 'full', version: makeHlc(T0, 1), deleted: false, row: full },
      { id: 'small', version: makeHlc(T0, 2), deleted: false, row: small },
      { id: 'empty', version: makeHlc(T0, 3), deleted: false, row: empty },
      del('gone', T0)
    ])
    await store.flush()
    await store.close()
    const again = await openStore(dir, space)
    expect(again.stats()).toMatchObject({ segments: 1, memtableRows: 0 })
    expect((await again.get('full'))?.row).toEqual(full)
    expect((await again.get('small'))?.row).toEqual(small)
    expect((await again.get('empty'))?.row).toEqual(empty)
    expect((await again.get('edge'))?.row).toEqual(edge)
    expect((await again.get('gone'))).toEqual(del('gone', T0))
    expect(typeof (await again.get('small'))?.row?.l).toBe('number')
    expect((await again.get('full'))?.row?.nums).toEqual([1, -9223372036854775808n])
    await again.close()
  })

  it('schema evolution: segments written before a nullable column was added read it as null', async () => {
    const space = makeSpace('id:utf8,n:int64')
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply([put(space, 'old', T0, { n: 1 })])
    await store.flush()
    await store.apply([put(space, 'mem', T0, { n: 2 })])
    const next = { ...space, schema: addColumn(space.schema, { name: 'note', type: 'utf8', nullable: true }) }
    store.updateSchema(next)
    expect(() => { store.updateSchema({ ...space, schema: [space.schema[0]!] }) }).toThrow(/lost columns/)
    await store.apply([put(next, 'new', T0, { n: 3, note: 'hi' })])
    expect((await store.get('old'))?.row).toEqual(row(next, { id: 'old', n: 1, note: null }))
    expect((await store.get('mem'))?.row).toEqual(row(next, { id: 'mem', n: 2 }))
    expect((await store.get('new'))?.row?.note).toBe('hi')
    await store.flush()
    await store.close()
    const again = await openStore(dir, next)
    expect((await again.get('old'))?.row?.note).toBeNull()
    expect((await again.get('new'))?.row?.note).toBe('hi')
    await again.compact()
    expect((await again.get('old'))?.row).toEqual(row(next, { id: 'old', n: 1 }))
    await again.close()
  })

  it('scan returns the newest version of every id once, from segments and memtable, tombstones optional', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    await store.apply([put(space, 'a', T0, { n: 1 }), put(space, 'b', T0, { n: 1 }), put(space, 'c', T0, { n: 1 })])
    await store.flush()
    await store.apply([put(space, 'a', T0 + 1, { n: 2 }), del('b', T0 + 1), put(space, 'd', T0, { n: 1 })])
    await store.flush()
    await store.apply([put(space, 'a', T0 + 2, { n: 3 }), put(space, 'e', T0, { n: 1 })])
    const all = await scanAll(store)
    expect([...all.keys()].sort()).toEqual(['a', 'b', 'c', 'd', 'e'])
    expect((await all.get('a'))?.row?.n).toBe(3)
    expect((await all.get('b'))?.deleted).toBe(true)
    expect([...(await scanAll(store, false)).keys()].sort()).toEqual(['a', 'c', 'd', 'e'])
    await store.close()
  })
})

describe('storage: digests for anti-entropy', () => {
  it('digests are equal for equal contents whatever the insertion order, flushes and duplicates', async () => {
    const space = makeSpace()
    const records: VersionedRecord[] = []
    for (let i = 0; i < 300; i++) records.push(i % 7 === 0 ? del(`id${i}`, T0 + i) : put(space, `id${i}`, T0 + i, { n: i }))
    const one = await openStore(await dirs.make(), space, { memtableMaxRows: 50 })
    for (const r of records) await one.apply([r])
    const two = await openStore(await dirs.make(), space)
    const reversed = [...records].reverse()
    await two.apply(reversed)
    await two.apply([put(space, 'id1', T0 - 5, { n: -1 })]) // stale: changes nothing
    const d1 = (await one.digest())
    expect((await two.digest())).toEqual(d1)
    expect(d1.records).toBe(300)
    expect(d1.hashes).toHaveLength(64)
    // Incremental upkeep matches a fresh computation.
    await one.apply([put(space, 'id1', T0 + 999, { n: 9 })])
    await two.apply([put(space, 'id1', T0 + 999, { n: 9 })])
    const d1b = (await one.digest())
    expect(d1b.root).not.toBe(d1.root)
    expect((await two.digest(16))).toEqual((await one.digest(16)))
    expect((await two.digest())).toEqual(d1b)
    await one.close()
    await two.close()
  })

  it('a differing version changes the root and exactly one bucket; bucket() returns the records of a bucket', async () => {
    const space = makeSpace()
    const a = await openStore(await dirs.make(), space)
    const b = await openStore(await dirs.make(), space)
    const records: VersionedRecord[] = []
    for (let i = 0; i < 200; i++) records.push(put(space, `r${i}`, T0, { n: i }))
    await a.apply(records)
    await b.apply(records)
    await b.apply([put(space, 'r42', T0 + 1, { n: 42 })])
    const da = (await a.digest(32))
    const db = (await b.digest(32))
    expect(da.root).not.toBe(db.root)
    const differing = da.hashes.map((h, i) => h === db.hashes[i] ? -1 : i).filter(i => i >= 0)
    expect(differing).toEqual([stableHash('r42') % 32])
    const bucket = await b.bucket(differing[0]!, 32)
    expect(bucket.map(r => r.id)).toContain('r42')
    expect(bucket.find(r => r.id === 'r42')?.version).toBe(makeHlc(T0 + 1, 0))
    for (const r of bucket) expect(stableHash(r.id) % 32).toBe(differing[0])
    let total = 0
    for (let i = 0; i < 32; i++) total += (await a.bucket(i, 32)).length
    expect(total).toBe(200)
    // A tombstone versus a row of the same version is a difference too.
    await a.apply([del('r1', T0)])
    expect((await a.digest(32)).hashes[stableHash('r1') % 32]).not.toBe((await b.digest(32)).hashes[stableHash('r1') % 32])
    await a.close()
    await b.close()
  })
})

describe('storage: group commit', () => {
  it('many concurrent applies are acknowledged after far fewer fsyncs than applies', async () => {
    const space = makeSpace()
    const store = await openStore(await dirs.make(), space)
    const before = store.counters.walFsyncs
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.apply([put(space, `c${i}`, T0, { n: i })])))
    expect(results.every(r => r.applied === 1)).toBe(true)
    const fsyncs = store.counters.walFsyncs - before
    expect(store.counters.walFrames).toBe(200)
    expect(fsyncs).toBeGreaterThan(0)
    expect(fsyncs).toBeLessThan(20)
    await store.close()
  })
})

describe('storage: checksums', () => {
  it('the table-driven CRC-32 agrees with the one in use', () => {
    const data = Buffer.from('The quick brown fox jumps over the lazy dog')
    expect(crc32Js(data)).toBe(0x414fa339)
    expect(crc32(data)).toBe(0x414fa339)
    expect(crc32Js(data.subarray(10), crc32Js(data.subarray(0, 10)))).toBe(0x414fa339)
  })
})

describe('StorageEngine', () => {
  it('caches partitions, shares concurrent opens, lists them, drops a space and closes', async () => {
    const dataDir = await dirs.make()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    const space = makeSpace()
    const other = makeSpace('id:utf8', 'other@2')
    const [p1, p1b] = await Promise.all([engine.openPartition(space, 1), engine.openPartition(space, 1)])
    expect(p1).toBe(p1b)
    const p2 = await engine.openPartition(space, 2)
    const o = await engine.openPartition(other, 0)
    expect(engine.partitions().map(p => `${p.space.uid}/${p.partition}`).sort()).toEqual(['other@2/0', 'things@1/1', 'things@1/2'])
    await p1.apply([put(space, 'a', T0)])
    expect(p1.dir).toBe(join(dataDir, 'spaces', 'things@1', '1'))
    // An open that starts while the space is dropped is refused: it would create files under the
    // delete (the directory left behind, ENOTEMPTY) or bring the directory back.
    const dropping = engine.dropSpace(space.uid)
    await expect(engine.openPartition(space, 3)).rejects.toThrow(SpaceDroppedError)
    await dropping
    expect(p1.isClosed() && p2.isClosed()).toBe(true)
    expect(await readdir(join(dataDir, 'spaces'))).toEqual(['other@2'])
    expect(engine.partitions()).toEqual([o])
    await expect(engine.openPartition(space, 1)).rejects.toThrow(/was dropped/)
    expect(await readdir(join(dataDir, 'spaces'))).toEqual(['other@2'])
    await engine.close()
    expect(o.isClosed()).toBe(true)
    await expect(engine.openPartition(space, 1)).rejects.toThrow(/closed/)
  })

  it('keeps the memtables of all partitions under the engine budget by flushing the largest', async () => {
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir: await dirs.make(), memtableBudgetBytes: 20_000, compactionCheckIntervalMs: 0 })
    const space = makeSpace()
    const big = await engine.openPartition(space, 0)
    const small = await engine.openPartition(space, 1)
    await small.apply([put(space, 's', T0, { s: 'x' })])
    for (let i = 0; i < 30; i++) await big.apply([put(space, `b${i}`, T0, { s: 'y'.repeat(1000) })])
    await big.flush()
    expect(big.stats().segments).toBeGreaterThan(0)
    expect(small.stats().segments).toBe(0)
    expect(engine.memtableBytes()).toBeLessThanOrEqual(20_000 + 1100)
    await engine.close()
  })

  it('counts the budget in estimated heap, not WAL bytes: many narrow records are flushed though their WAL is small', async () => {
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir: await dirs.make(), memtableBudgetBytes: 20_000, compactionCheckIntervalMs: 0 })
    const space = makeSpace()
    const store = await engine.openPartition(space, 0)
    // 150 records of about 30 WAL bytes each: 4.5 KB of WAL, over 25 KB as objects.
    for (let i = 0; i < 150; i += 10) await store.apply(Array.from({ length: 10 }, (_, k) => put(space, `n${i + k}`, T0, { n: i + k })))
    // The budget's flush runs on its own; let its file writes finish (event-loop turns, no timer).
    for (let turn = 0; turn < 100_000 && (store.isFlushing() || store.stats().segments === 0); turn++) await new Promise(resolve => setImmediate(resolve))
    expect(store.stats().segments).toBeGreaterThan(0)
    expect(engine.memtableBytes()).toBeLessThan(5_000)
    await engine.close()
  })
})

describe('storage: a failed flush', () => {
  it('keeps the memtable and its WAL: nothing is lost, and a later flush writes it', async () => {
    const space = makeSpace()
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const { mkdir, rm } = await import('node:fs/promises')
    const { segmentFileName } = await import('../../src/storage/index.js')
    // A directory where the segment file must go: writing the segment fails.
    for (let id = 0; id < 4; id++) await mkdir(join(dir, segmentFileName(id)))
    const records = Array.from({ length: 20 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await store.apply(records)
    const newer = put(space, 'k3', T0 + 100, { n: 33 })
    await store.apply([newer])
    await expect(store.flush()).rejects.toThrow()
    expect((await store.get('k3'))).toEqual(newer)
    expect((await store.get('k7'))).toEqual(records[7])
    expect(store.stats()).toMatchObject({ liveRows: 20, segments: 0 })
    expect((await scanAll(store)).size).toBe(20)
    for (let id = 0; id < 4; id++) await rm(join(dir, segmentFileName(id)), { recursive: true })
    await store.flush()
    expect(store.stats()).toMatchObject({ liveRows: 20, segments: 1, memtableRows: 0 })
    await store.close()
    const again = await openStore(dir, space)
    expect((await again.get('k3'))).toEqual(newer)
    expect((await again.get('k7'))).toEqual(records[7])
    expect(again.stats().liveRows).toBe(20)
    await again.close()
  })
})
