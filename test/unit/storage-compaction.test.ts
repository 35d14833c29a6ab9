import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { makeHlc } from '../../src/hlc/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { addColumn, type ColumnType, type SpaceDef } from '../../src/schema/index.js'
import { compareVersions, type VersionedRecord } from '../../src/storage/index.js'
import { writeSegmentFiles, type SegmentFileMeta } from '../../src/storage/segment-file.js'
import { sizeTier } from '../../src/storage/partition.js'
import { BlockCache } from '../../src/storage/block-cache.js'
import { T0, TempDirs, del, makeSpace, manualClock, openStore, put, scanAll } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })
const space = makeSpace()
const DAY = 86_400_000
const ALL_TYPES = 'id:utf8,b:bool,i:int32,n:int64,f:float32,x:float64,s:utf8,t:timestamp,d:date,li:list<int64>,ls:list<utf8>,v:vector<3>'
const STRINGS = ['', 'a', 'zebra', 'héllo', '日本語', '🐟 shoal', 'x'.repeat(100), '\uffff', '\ue000 private']

/** Random values for every column of `sp` but the id, NULL about one time in six. */
function randomFields (sp: SpaceDef, random: SeededRandom): Record<string, unknown> {
  const value = (type: ColumnType): unknown => {
    if (random.next() < 0.16) return null
    switch (type) {
      case 'bool': return random.next() < 0.5
      case 'int32': return random.int(2 ** 32) - 2 ** 31
      case 'int64': return random.next() < 0.2 ? 2n ** 60n + BigInt(random.int(1000)) : random.int(2 ** 40) - 2 ** 39
      case 'float32': return Math.fround(random.next() * 1000 - 500)
      case 'float64': return random.next() * 1e6 - 5e5
      case 'utf8': return STRINGS[random.int(STRINGS.length)]
      case 'timestamp': return T0 + random.int(1e9)
      case 'date': return 19_000 + random.int(1000)
      case 'list<int64>': return Array.from({ length: random.int(4) }, () => random.next() < 0.2 ? 2n ** 55n + 3n : random.int(100))
      case 'list<utf8>': return Array.from({ length: random.int(3) }, () => STRINGS[random.int(STRINGS.length)])
      case 'vector<3>': return [Math.fround(random.next()), Math.fround(-random.next()), 0]
    }
    throw new Error(`no generator for ${type}`)
  }
  const out: Record<string, unknown> = {}
  for (const c of sp.schema) if (c.name !== 'id') out[c.name] = value(c.type)
  return out
}

describe('storage compaction', () => {
  it('drops dead rows and keeps the newest versions', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { compactionDeadRatio: 1, compactionMaxSegments: 100 })
    for (let round = 0; round < 4; round++) {
      await store.apply(Array.from({ length: 50 }, (_, i) => put(space, `k${i}`, T0 + round, { n: round })))
      await store.flush()
    }
    expect(store.stats().segments).toBe(4)
    expect(store.compactionDue()).toBe(false) // 75 % dead, but the policy is off here
    const r = await store.compact()
    expect(r).toMatchObject({ segmentsIn: 4, segmentsOut: 1, rowsKept: 50, deadDropped: 150, tombstonesPurged: 0 })
    expect(store.stats().segments).toBe(1)
    expect((await readdir(dir)).filter(f => f.endsWith('.arrow'))).toHaveLength(1)
    for (let i = 0; i < 50; i++) expect((await store.get(`k${i}`))?.row?.n).toBe(3)
    await store.close()
    const again = await openStore(dir, space)
    for (let i = 0; i < 50; i++) expect((await again.get(`k${i}`))?.row?.n).toBe(3)
    await again.close()
  })

  it('drops tombstones past the grace period only, measured on the tombstone HLC against the wall clock (every tombstone covered by a repair)', async () => {
    const clock = manualClock()
    const dir = await dirs.make()
    const store = await openStore(dir, space, { tombstoneGraceMs: 10 * DAY }, { clock })
    await store.apply([put(space, 'live', T0, { n: 1 }), del('old', T0 - 11 * DAY), del('young', T0 - 9 * DAY), del('edge', T0 - 10 * DAY)])
    await store.flush()
    // A repair with every replica that started after all of them: the grace alone decides here.
    await store.recordRepair({ repairedTo: makeHlc(T0 + 3 * DAY, 0) })
    const before = (await store.digest())
    expect(store.compactionDue()).toBe(true)
    const r = await store.compact()
    expect(r.tombstonesPurged).toBe(1)
    expect((await store.get('old'))).toBeUndefined()
    expect((await store.get('young'))?.deleted).toBe(true)
    expect((await store.get('edge'))?.deleted).toBe(true)
    expect((await store.get('live'))?.row?.n).toBe(1)
    expect((await store.digest()).records).toBe(before.records - 1)
    expect(store.compactionDue()).toBe(false)
    clock.t += 2 * DAY
    expect(store.compactionDue()).toBe(true)
    expect((await store.compact()).tombstonesPurged).toBe(2)
    expect(store.stats()).toMatchObject({ liveRows: 1, tombstones: 0 })
    // Tombstones still in the memtable are never purged.
    await store.apply([del('fresh-in-mem', T0 - 30 * DAY)])
    await store.compact()
    expect((await store.get('fresh-in-mem'))?.deleted).toBe(true)
    await store.close()
  })

  it('loses no write applied concurrently with compaction and flushes', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 40 })
    const random = new SeededRandom(42)
    const expected = new Map<string, VersionedRecord>()
    let clockMs = T0
    const write = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const id = `k${random.int(150)}`
        const r = random.next() < 0.15 ? del(id, clockMs++) : put(space, id, clockMs++, { n: i, s: `w${i}` })
        const cur = expected.get(id)
        if (cur === undefined || compareVersions(r, cur) > 0) expected.set(id, r)
        await store.apply([r])
      }
    }
    await write(300)
    await store.flush()
    for (let round = 0; round < 5; round++) {
      const writers = Promise.all([write(120), write(120), write(60)])
      const compactions = (async () => {
        for (let c = 0; c < 3; c++) {
          await store.compact()
          await new Promise(resolve => setImmediate(resolve))
        }
      })()
      await Promise.all([writers, compactions])
    }
    const check = async (s: typeof store): Promise<void> => {
      const all = await scanAll(s)
      expect(all.size).toBe(expected.size)
      for (const [id, r] of expected) expect((await s.get(id)), id).toEqual(r)
      for (const [id, r] of all) expect(r).toEqual(expected.get(id))
    }
    await check(store)
    expect(store.counters.compactions).toBeGreaterThan(0)
    await store.close()
    const again = await openStore(dir, space)
    await check(again)
    await again.compact()
    await check(again)
    await again.close()
  })

  it('merges inputs of several batches into a segment of several batches, in key order, losing no write made meanwhile', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { compactionDeadRatio: 1, compactionMaxSegments: 100, memtableMaxRows: 1_000_000 })
    const want = new Map<string, VersionedRecord>()
    let version = T0
    const apply = async (rs: VersionedRecord[]): Promise<void> => {
      for (const r of rs) want.set(r.id, r)
      await store.apply(rs)
    }
    // Three segments of 30,000 rows (more than a 65,536-row batch in all, and many 8,192-row
    // chunks an input), overlapping: later rounds overwrite and delete ids of earlier ones.
    for (let round = 0; round < 3; round++) {
      const rs: VersionedRecord[] = []
      for (let i = 0; i < 30_000; i++) {
        const k = round * 25_000 + i
        rs.push(i % 97 === 0 ? del(`k${k}`, version++) : put(space, `k${k}`, version++, { n: k, s: `r${round}` }))
      }
      await apply(rs)
      await store.flush()
    }
    expect(store.stats().segments).toBe(3)
    let merged = false
    const compaction = store.compact().finally(() => { merged = true })
    // Writes while the merge runs (it yields between batches): they win over the rows being copied.
    let during = 0
    for (let i = 0; i < 20; i++) {
      if (!merged) during++
      await apply([put(space, `k${i * 3001}`, version++, { n: -1 - i }), del(`k${i * 3001 + 1}`, version++), put(space, `new${i}`, version++, { n: i })])
      await new Promise(resolve => setImmediate(resolve))
    }
    const r = await compaction
    expect(during).toBeGreaterThan(0)
    expect(r).toMatchObject({ segmentsIn: 3, segmentsOut: 1, deadDropped: 10_000 })
    const all = await scanAll(store)
    expect(all.size).toBe(want.size)
    for (const [id, rec] of all) expect(rec, id).toEqual(want.get(id))
    await store.close()
    const again = await openStore(dir, space)
    for (const id of ['k0', 'k1', 'k3001', 'k3002', 'k54999', 'k79999', 'new19']) expect(await again.get(id), id).toEqual(want.get(id))
    expect((await scanAll(again)).size).toBe(want.size)
    await again.compact()
    const after = await scanAll(again)
    expect(after.size).toBe(want.size)
    for (const [id, rec] of after) expect(rec, id).toEqual(want.get(id))
    await again.close()
  })

  it('writes the merged segment byte for byte as the record path writes its rows: every type, NULLs, superseded rows, tombstones expired and not, a column added midway', async () => {
    for (const seed of [1, 2, 3]) {
      const clock = manualClock()
      const dir = await dirs.make()
      let sp = makeSpace(ALL_TYPES.replace(',v:vector<3>', ''), `all${seed}@1`)
      const store = await openStore(dir, sp, { compactionDeadRatio: 1, compactionMaxSegments: 100, tombstoneGraceMs: 10 * DAY }, { clock })
      const random = new SeededRandom(seed)
      // The reference model: the newest version of each id (compareVersions), as the merge keeps it.
      const model = new Map<string, VersionedRecord>()
      // Versions from the clock on, over about a day: no tombstone expires while they are written
      // (a full compaction would start by itself).
      let ms = clock.t
      for (let round = 0; round < 5; round++) {
        // A column added midway: rows written before read it as NULL.
        if (round === 2) store.updateSchema(sp = { ...sp, schema: addColumn(sp.schema, { name: 'v', type: 'vector<3>', nullable: true }) })
        const rs: VersionedRecord[] = []
        for (let i = 0; i < 300; i++) {
          const id = `k${random.int(500)}${random.next() < 0.1 ? '-é🐟' : ''}`
          ms += random.int(2 * DAY / 1500)
          const r = random.next() < 0.2 ? del(id, ms) : put(sp, id, ms, randomFields(sp, random), random.int(3))
          const cur = model.get(id)
          if (cur === undefined || compareVersions(r, cur) > 0) model.set(id, r)
          rs.push(r)
        }
        await store.apply(rs)
        await store.flush()
      }
      expect(store.stats().segments).toBe(5)
      // Tombstones of the first half day expire (and a repair with every replica covers them all).
      clock.t += 10 * DAY + DAY / 2
      await store.recordRepair({ repairedTo: makeHlc(clock.wallNow(), 0) })
      const result = await store.compact()
      const horizon = makeHlc(clock.wallNow() - 10 * DAY, 0)
      const kept = [...model.values()].filter(r => !(r.deleted && r.version < horizon))
      expect(result).toMatchObject({ segmentsIn: 5, segmentsOut: 1, rowsKept: kept.length, tombstonesPurged: model.size - kept.length })
      expect(result.tombstonesPurged).toBeGreaterThan(0)
      // What the record path wrote: the same rows, in the same format (rows written before the
      // column was added have no value for it, as the records read back held none).
      const manifest = JSON.parse(await readFile(join(dir, 'MANIFEST'), 'utf8')) as { segments: SegmentFileMeta[] }
      expect(manifest.segments).toHaveLength(1)
      const merged = manifest.segments[0]!
      const refDir = await dirs.make()
      const ref = await writeSegmentFiles(refDir, merged.id, sp.schema, kept)
      expect(merged).toEqual(ref)
      for (const f of [ref.file, ref.index]) expect(Buffer.compare(await readFile(join(dir, f)), await readFile(join(refDir, f))), `seed ${seed}: ${f}`).toBe(0)
      for (const r of kept) expect(await store.get(r.id), r.id).toEqual(r.deleted ? r : { ...r, row: { v: null, ...r.row } })
      await store.close()
    }
  })

  it('reads its inputs past the block cache: the columns a query read stay cached through a compaction several times the cache', async () => {
    const cache = new BlockCache(256 << 10)
    const hot = await openStore(await dirs.make(), space, {}, { cache })
    const busy = await openStore(await dirs.make(), space, { compactionMaxSegments: 100 }, { cache })
    await hot.apply(Array.from({ length: 2000 }, (_, i) => put(space, `h${i}`, T0, { n: i })))
    await hot.flush()
    const sum = async (): Promise<number> => {
      let total = 0
      for await (const b of hot.batches(['n'])) { const v = b.columns.get('n')!; if (v.tag === 'num') for (const x of v.values) total += x }
      return total
    }
    for (let round = 0; round < 4; round++) {
      await busy.apply(Array.from({ length: 5000 }, (_, i) => put(space, `b${round}-${i}`, T0 + round, { n: i, s: `value ${i} of round ${round}` })))
      await busy.flush()
    }
    // The query's column is read (cached) last before the compaction.
    expect(await sum()).toBe(1999 * 1000)
    const before = cache.stats()
    const r = await busy.compact()
    expect(r).toMatchObject({ segmentsIn: 4, rowsKept: 20_000 })
    // The inputs' columns were several times the cache: read (counted with the cache's loads) and let go.
    expect(cache.stats().loadedBytes - before.loadedBytes).toBeGreaterThan(256 << 10)
    expect(cache.stats().bytes).toBeLessThan(64 << 10)
    const misses = cache.stats().misses
    expect(await sum()).toBe(1999 * 1000)
    expect(cache.stats().misses).toBe(misses)
    expect((await scanAll(busy)).size).toBe(20_000)
    await hot.close()
    await busy.close()
  })

  it('runs by policy after a flush when segments exceed the limit', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { compactionMaxSegments: 3, compactionDeadRatio: 1 })
    for (let i = 0; i < 4; i++) {
      await store.apply([put(space, `k${i}`, T0, { n: i })])
      await store.flush()
    }
    await store.compact() // joins the policy's run if one is in flight
    expect(store.counters.compactions).toBeGreaterThanOrEqual(1)
    expect(store.stats().segments).toBeLessThanOrEqual(3)
    for (let i = 0; i < 4; i++) expect((await store.get(`k${i}`))?.row?.n).toBe(i)
    await store.close()
  })
})

describe('storage: size-tiered background compaction', () => {
  it('sizeTier picks the smallest run of similar sizes with at least 4 segments, else the 4 smallest', () => {
    const seg = (rows: number): { rows: number } => ({ rows })
    const rows = (xs: Array<{ rows: number }>): number[] => xs.map(x => x.rows)
    expect(rows(sizeTier([seg(800), seg(10), seg(12), seg(11), seg(30), seg(9), seg(3000)]))).toEqual([9, 10, 11, 12, 30])
    // The small ones are too few: the next tier up.
    expect(rows(sizeTier([seg(10), seg(12), seg(200), seg(210), seg(220), seg(250)]))).toEqual([200, 210, 220, 250])
    expect(rows(sizeTier([seg(1), seg(100), seg(10_000), seg(1_000_000), seg(100_000_000)]))).toEqual([1, 100, 10_000, 1_000_000])
  })

  it('bounds the segments while rewriting each row about once per tier, not at every merge; nothing lost across a reopen', async () => {
    const dir = await dirs.make()
    // Small flushes, a low segment limit: many background merges.
    const store = await openStore(dir, space, { memtableMaxRows: 10, compactionMaxSegments: 6, compactionDeadRatio: 1 })
    const rnd = new SeededRandom(3)
    const want = new Map<string, VersionedRecord>()
    let version = T0
    for (let i = 0; i < 4000; i++) {
      // Mostly new ids, some overwrites and deletes of earlier ones.
      const id = rnd.next() < 0.8 || i < 10 ? `k${i}` : `k${rnd.int(i)}`
      const r = rnd.next() < 0.05 ? del(id, version++) : put(space, id, version++, { n: i })
      await store.apply([r])
      want.set(id, r)
      expect(store.stats().segments).toBeLessThanOrEqual(7 + 1) // the limit, a merge's output, one flush landing meanwhile
    }
    await store.flush()
    for (const [id, r] of want) expect((await store.get(id)), id).toEqual(r)
    // A full merge at every limit crossing would have rewritten ~4000 * 4000 / (10 * 6) / 2 rows.
    expect(store.counters.rowsRewritten).toBeLessThan(40_000)
    expect(store.counters.compactions).toBeGreaterThan(20)
    await store.close()
    const again = await openStore(dir, space)
    for (const [id, r] of want) expect((await again.get(id)), id).toEqual(r)
    expect((await scanAll(again)).size).toBe(want.size)
    await again.close()
  })
})
