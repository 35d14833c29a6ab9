/**
 * PartitionStore.batches(): the live rows in columnar form, checked against scan() (and a model of
 * what was written) across segments, memtable, a flush and a compaction in flight, recovery and an
 * added column; the segment column cache; Arrow decoding of every type with NULLs.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { valueAt, vectorLength, widenBatch, type ColumnBatch, type StoredBatch } from '../../src/columnar/index.js'
import { makeHlc } from '../../src/hlc/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { addColumn, type ColumnType, type SpaceDef } from '../../src/schema/index.js'
import type { LocalPartitionStore, VersionedRecord } from '../../src/storage/index.js'
import { Segment, encodeSegment } from '../../src/storage/segment.js'
import { MemoryPartitionStore } from '../sim/memory-store.js'
import { T0, TempDirs, del, makeSpace, openStore, put, row } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

const ALL_TYPES = 'id:utf8,b:bool,i:int32,l:int64,f:float32,d:float64,s:utf8,t:timestamp,dt:date,v:vector<3>,li:list<int32>'
const COLS = ['id', 'b', 'i', 'l', 'f', 'd', 's', 't', 'dt', 'v', 'li']

/** A seeded PRNG in [0, 1): the project's SeededRandom as a function. */
function rng (seed: number): () => number {
  const r = new SeededRandom(seed)
  return () => r.next()
}

const STRINGS = ['', 'a', 'héllo', 'naïve café', '日本語', '🙂 emoji', 'x'.repeat(40), 'b', 'a ']

/** Random values for every column, about a quarter NULL. */
function randomFields (r: () => number): Record<string, unknown> {
  const maybe = (v: unknown): unknown => r() < 0.25 ? null : v
  return {
    b: maybe(r() < 0.5),
    i: maybe((Math.floor(r() * 4e9) - 2e9) | 0),
    l: maybe(r() < 0.1 ? Number.MAX_SAFE_INTEGER - Math.floor(r() * 10) : Math.floor((r() - 0.5) * 1e15)),
    f: maybe((r() - 0.5) * 1000),
    d: maybe((r() - 0.5) * 1e12),
    s: maybe(STRINGS[Math.floor(r() * STRINGS.length)]!),
    t: maybe(T0 + Math.floor((r() - 0.5) * 1e10)),
    dt: maybe(Math.floor((r() - 0.5) * 40000)),
    v: maybe([r(), -r(), r() * 100]),
    li: maybe(r() < 0.1 ? [] : [Math.floor(r() * 100), -Math.floor(r() * 100) | 0])
  }
}

/** JS values of a row as batches report them: int64 as a number, absent columns as NULL. */
function normalize (v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v)
  if (Array.isArray(v)) return v.map(normalize)
  return v ?? null
}

/** Every batch of an async iterable, in order. */
/** The batches as the store hands them out. */
async function stored (batches: AsyncIterable<StoredBatch>): Promise<StoredBatch[]> {
  const out: StoredBatch[] = []
  for await (const b of batches) out.push(b)
  return out
}

/** The batches, compact columns widened (as the executor reads them). */
async function collect (batches: AsyncIterable<StoredBatch>): Promise<ColumnBatch[]> {
  const out: ColumnBatch[] = []
  for await (const b of batches) out.push(widenBatch(b))
  return out
}

/** The batches as rows id → {column: value}, checking shapes and that each id comes once. */
async function fromBatches (batches: AsyncIterable<StoredBatch>, cols: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>()
  for await (const stored of batches) {
    const batch = widenBatch(stored)
    for (const c of cols) {
      const v = batch.columns.get(c)
      expect(v, `column ${c}`).toBeDefined()
      expect(vectorLength(v!)).toBe(batch.length)
    }
    const ids = batch.columns.get('id')!
    for (let i = 0; i < batch.length; i++) {
      const id = valueAt(ids, i) as string
      if (out.has(id)) throw new Error(`batches returned ${id} twice`)
      const rec: Record<string, unknown> = {}
      for (const c of cols) rec[c] = valueAt(batch.columns.get(c)!, i)
      out.set(id, rec)
    }
  }
  return out
}

/** scan()'s live rows in the same shape. One big scan batch: a synchronous snapshot. */
async function fromScan (store: LocalPartitionStore, cols: readonly string[]): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>()
  for await (const batch of store.scan({ batchRecords: 1e9, includeTombstones: false })) {
    for (const r of batch) {
      const rec: Record<string, unknown> = {}
      for (const c of cols) rec[c] = normalize(r.row![c])
      out.set(r.id, rec)
    }
  }
  return out
}

/** The model: the newest record written per id (versions only grow in these tests). */
function fromModel (model: Map<string, VersionedRecord>, cols: readonly string[]): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>()
  for (const [id, r] of model) {
    if (r.deleted) continue
    const rec: Record<string, unknown> = {}
    for (const c of cols) rec[c] = normalize(r.row![c])
    out.set(id, rec)
  }
  return out
}

function sorted (m: Map<string, Record<string, unknown>>): Array<[string, Record<string, unknown>]> {
  return [...m].sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
}

/** batches() equals scan()'s live rows and the model. */
async function check (store: LocalPartitionStore, model: Map<string, VersionedRecord>, cols = COLS): Promise<void> {
  const got = sorted(await fromBatches(store.batches(cols), cols))
  expect(got).toEqual(sorted(await fromScan(store, cols)))
  expect(got).toEqual(sorted(fromModel(model, cols)))
}

/** A writer of random puts and deletes over `ids` ids, with growing versions, kept in `model`. */
class Workload {
  readonly model = new Map<string, VersionedRecord>()
  private clock = T0
  private readonly r: () => number
  constructor (private space: SpaceDef, private readonly ids: number, seed: number) { this.r = rng(seed) }

  setSpace (space: SpaceDef): void { this.space = space }

  batch (n: number, deleteRatio = 0.2, extra: (r: () => number) => Record<string, unknown> = () => ({})): VersionedRecord[] {
    const out = new Map<string, VersionedRecord>()
    for (let k = 0; k < n; k++) {
      const id = `id${Math.floor(this.r() * this.ids)}`
      const ms = ++this.clock
      const rec = this.r() < deleteRatio ? del(id, ms) : put(this.space, id, ms, { ...randomFields(this.r), ...extra(this.r) })
      out.set(id, rec)
    }
    return [...out.values()]
  }

  async write (store: LocalPartitionStore, n: number, deleteRatio = 0.2, extra?: (r: () => number) => Record<string, unknown>): Promise<void> {
    const recs = this.batch(n, deleteRatio, extra)
    await store.apply(recs)
    for (const rec of recs) this.model.set(rec.id, rec)
  }
}

const MANUAL = { memtableMaxRows: 1e9, compactionMaxSegments: 1000, compactionDeadRatio: 1 }

describe('storage: batches() against scan()', () => {
  it('every type, NULLs, updates and deletes across segments and the memtable, a compaction, a reopen', async () => {
    const space = makeSpace(ALL_TYPES, 'all@1')
    const dir = await dirs.make()
    let store = await openStore(dir, space, MANUAL)
    const w = new Workload(space, 400, 1)
    await check(store, w.model)
    expect((await collect(store.batches(COLS)))).toEqual([])

    // Memtable only.
    await w.write(store, 200)
    await check(store, w.model)
    // Several segments, each id updated or deleted across them, and a memtable on top.
    for (let s = 0; s < 4; s++) {
      await store.flush()
      await check(store, w.model)
      await w.write(store, 150, 0.3)
      await check(store, w.model)
    }
    expect(store.stats().segments).toBe(4)
    // A segment whose rows are all superseded or deleted yields no batch.
    const counts = (await collect(store.batches([]))).map(b => b.length)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(store.stats().liveRows)
    expect(counts.every(n => n > 0)).toBe(true)

    // Compaction: one segment, same live rows.
    await store.compact()
    expect(store.stats().segments).toBe(1)
    await check(store, w.model)
    await w.write(store, 100, 0.3)
    await store.flush()
    await w.write(store, 50, 0.3)
    await check(store, w.model)

    // Recovery: segments plus the WAL replayed into the memtable.
    await store.close()
    store = await openStore(dir, space, MANUAL)
    expect(store.stats().segments).toBe(2)
    expect(store.stats().memtableRows).toBeGreaterThan(0)
    await check(store, w.model)
    await store.close()
  })

  it('a column added by updateSchema reads as NULL from old segments and old memtable rows', async () => {
    const space = makeSpace(ALL_TYPES, 'all@1')
    const dir = await dirs.make()
    let store = await openStore(dir, space, MANUAL)
    const w = new Workload(space, 300, 2)
    await w.write(store, 200)
    await store.flush()
    await w.write(store, 100)

    const next: SpaceDef = { ...space, schema: addColumn(addColumn(space.schema, { name: 'note', type: 'utf8', nullable: true }), { name: 'score', type: 'float64', nullable: true }) }
    store.updateSchema(next)
    w.setSpace(next)
    const cols = [...COLS, 'note', 'score']
    await check(store, w.model, cols)
    // New rows carry the columns; some of them land in a new segment, some stay in the memtable.
    const extra = (r: () => number): Record<string, unknown> => ({ note: r() < 0.3 ? null : `n${Math.floor(r() * 5)}`, score: r() < 0.3 ? null : r() })
    await w.write(store, 100, 0.2, extra)
    await check(store, w.model, cols)
    await store.flush()
    await w.write(store, 60, 0.2, extra)
    await check(store, w.model, cols)
    // The old segment has no `note`: an all-NULL vector of the schema's type.
    const old = (await collect(store.batches(['id', 'note'])))[0]!
    expect(old.columns.get('note')?.tag).toBe('str')

    await store.compact()
    await check(store, w.model, cols)
    await store.close()
    store = await openStore(dir, next, MANUAL)
    await check(store, w.model, cols)
    await store.close()
  })

  it('a column the schema lacks reads as untyped NULL; no columns still counts rows', async () => {
    const space = makeSpace('id:utf8,n:int64,s:utf8', 'things@1')
    const store = await openStore(await dirs.make(), space, MANUAL)
    await store.apply([put(space, 'a', T0, { n: 1 }), put(space, 'b', T0, { n: 2 })])
    await store.flush()
    await store.apply([put(space, 'c', T0, { n: 3 }), del('a', T0 + 1)])
    const batches = (await collect(store.batches(['nope', 'n', 'n'])))
    expect(batches.map(b => b.length).reduce((a, b) => a + b, 0)).toBe(2)
    for (const b of batches) {
      expect([...b.columns.keys()]).toEqual(['nope', 'n'])
      const v = b.columns.get('nope')!
      expect(v.tag === 'num' && v.type === 'null').toBe(true)
      for (let i = 0; i < b.length; i++) expect(valueAt(v, i)).toBeNull()
    }
    expect((await collect(store.batches([]))).map(b => b.length).reduce((a, b) => a + b, 0)).toBe(2)
    await store.close()
  })

  it('during a flush and a compaction, with writes landing meanwhile, each live id comes once and newest', async () => {
    const space = makeSpace(ALL_TYPES, 'all@1')
    const store = await openStore(await dirs.make(), space, MANUAL)
    const w = new Workload(space, 500, 3)
    await w.write(store, 300)
    await store.flush()
    await w.write(store, 300, 0.3)

    // Flush in flight: check at every turn of the event loop while writes keep arriving.
    let done = false
    let sawFrozen = false
    const flushing = store.flush().then(() => { done = true })
    while (!done) {
      if ((store as unknown as { frozen?: Map<string, unknown> }).frozen !== undefined) sawFrozen = true
      await check(store, w.model)
      const recs = w.batch(5, 0.3)
      // Visible once durable, when apply resolves (not before: DESIGN.md section 5).
      await store.apply(recs)
      for (const rec of recs) w.model.set(rec.id, rec)
      await check(store, w.model)
      await new Promise(resolve => setImmediate(resolve))
    }
    await flushing
    expect(sawFrozen).toBe(true)
    await check(store, w.model)

    // Compaction in flight, likewise.
    await store.flush()
    await w.write(store, 100, 0.4)
    done = false
    const compacting = store.compact().then(() => { done = true })
    while (!done) {
      await check(store, w.model)
      await w.write(store, 5, 0.3)
      await new Promise(resolve => setImmediate(resolve))
    }
    await compacting
    await check(store, w.model)

    // A snapshot stays a snapshot even when iterated across a flush (rows of the moment of the call).
    const before = fromModel(w.model, COLS)
    const snap = store.batches(COLS)
    await w.write(store, 100, 0.5)
    await store.flush()
    await store.compact()
    expect(sorted(await fromBatches(snap, COLS))).toEqual(sorted(before))
    await check(store, w.model)
    await store.close()
  })
})

describe('storage: snapshots share the segments\' live bits (copy on write)', () => {
  const space = makeSpace()
  /** The `n` of every row a batches() call gives, by id. */
  async function rows (store: LocalPartitionStore, iterate?: (at: number) => Promise<void>): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    let at = 0
    for await (const stored of store.batches(['id', 'n'], {})) {
      const b = widenBatch(stored)
      const ids = b.columns.get('id')!
      const n = b.columns.get('n')!
      for (let i = 0; i < b.length; i++) {
        const id = valueAt(ids, i) as string
        expect(out.has(id), `${id} twice`).toBe(false)
        out.set(id, valueAt(n, i) as number)
      }
      await iterate?.(at++)
    }
    return out
  }

  it('a snapshot keeps the rows of its moment while writes change the bits; the next one sees them, each id once, whatever a batch was known to hold', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply(Array.from({ length: 3000 }, (_, i) => put(space, `k${i}`, T0, { n: i })))
    await store.flush()
    // Two reads of the settled segment: every batch known to be wholly live.
    expect((await rows(store)).size).toBe(3000)
    expect((await rows(store)).get('k7')).toBe(7)
    // Overwrites and deletes during a read: that read keeps its rows.
    const during = await rows(store, async at => {
      if (at === 0) await store.apply([put(space, 'k7', T0 + 1, { n: -7 }), del('k8', T0 + 1), put(space, 'k2999', T0 + 1, { n: -1 })])
    })
    expect(during.size).toBe(3000)
    expect([during.get('k7'), during.get('k8'), during.get('k2999')]).toEqual([7, 8, 2999])
    // The next read sees them: the segment's batch is no longer wholly live.
    const after = await rows(store)
    expect(after.size).toBe(2999)
    expect([after.get('k7'), after.has('k8'), after.get('k2999')]).toEqual([-7, false, -1])
    await store.close()
  })
})

describe('storage: the segment column cache', () => {
  it('decodes a column once: later calls return the same vector objects', async () => {
    const space = makeSpace(ALL_TYPES, 'all@1')
    const store = await openStore(await dirs.make(), space, MANUAL)
    const w = new Workload(space, 1000, 4)
    await w.write(store, 200, 0)
    await store.flush()
    // As the cache holds them (compact columns not widened).
    const [a] = await stored(store.batches(COLS))
    const [b] = await stored(store.batches(COLS))
    expect(a!.length).toBe(w.model.size)
    for (const c of COLS) expect(b!.columns.get(c)).toBe(a!.columns.get(c))
    // Some rows superseded: a gathered copy now, from the same cached vectors.
    const [first] = w.model.keys()
    await store.apply([del(first!, T0 + 1e6)])
    w.model.set(first!, del(first!, T0 + 1e6))
    const [c1] = await stored(store.batches(['d']))
    expect(c1!.length).toBe(w.model.size - 1)
    expect(c1!.columns.get('d')).not.toBe(a!.columns.get('d'))
    await check(store, w.model)
    await store.close()
  })

  it('decodes every type with NULLs straight from the Arrow buffers', () => {
    const space = makeSpace(ALL_TYPES, 'all@1')
    const r = rng(5)
    const records: VersionedRecord[] = []
    for (let i = 0; i < 3000; i++) {
      const id = `k${i}`
      if (i % 17 === 0) { records.push(del(id, T0 + i)); continue }
      const fields = randomFields(r)
      // Many distinct strings (the dictionary's hash table grows), and int64 beyond 2^53.
      if (i % 3 === 0) fields.s = `s${i % 1500}·${'é'.repeat(i % 4)}`
      if (i % 50 === 0) fields.l = i % 100 === 0 ? 2n ** 62n + 12345n : -(2n ** 60n) - 7n
      if (i % 7 === 0) for (const k of Object.keys(fields)) fields[k] = null
      records.push({ id, version: makeHlc(T0 + i, 0), deleted: false, row: row(space, { id, ...fields }) })
    }
    const bytes = encodeSegment(space.schema, records)
    const seg = Segment.decode({ id: 1, file: 'x', rows: records.length, bytes: bytes.length, crc32: 0 }, 'x', bytes)
    for (const c of space.schema) {
      const v = seg.column(c.name, c.type)
      expect(seg.column(c.name, c.type)).toBe(v)
      expect(vectorLength(v)).toBe(records.length)
      for (let i = 0; i < records.length; i++) {
        const rec = records[i]!
        const want = c.name === 'id' ? rec.id : rec.deleted ? null : normalize(rec.row![c.name])
        expect(valueAt(v, i), `${c.name} row ${i}`).toEqual(want)
      }
    }
    const s = seg.column('s', 'utf8')
    if (s.tag !== 'str') throw new Error('utf8 is not a StrVector')
    expect(new Set(s.dict).size).toBe(s.dict.length)
    // A column this file lacks.
    const missing = seg.column('later', 'vector<3>' as ColumnType)
    expect(missing.tag).toBe('vec')
    for (let i = 0; i < records.length; i++) expect(valueAt(missing, i)).toBeNull()
  })
})

describe('MemoryPartitionStore.batches (the simulator)', () => {
  it('serves the live rows', async () => {
    const space = makeSpace()
    const s = new MemoryPartitionStore(space, 0)
    await s.apply([put(space, 'a', T0, { n: 1, s: 'x' }), put(space, 'b', T0, { n: 2 }), put(space, 'c', T0, { n: 3 })])
    await s.apply([del('b', T0 + 1), put(space, 'a', T0 + 1, { n: 5 })])
    const got = await fromBatches(s.batches(['id', 'n', 's']), ['id', 'n', 's'])
    expect(sorted(got)).toEqual([['a', { id: 'a', n: 5, s: null }], ['c', { id: 'c', n: 3, s: null }]])
  })
})

describe('storage: batches() timing (printed, not asserted)', () => {
  it('rows (100,000 by default; SHOAL_BATCHES_ROWS for more) of (utf8 with 100 distinct values, float64, int64): batches() warm vs scan()', async () => {
    const N = Number(process.env.SHOAL_BATCHES_ROWS ?? 100_000)
    const space = makeSpace('id:utf8,s:utf8,f:float64,n:int64', 'bench@1')
    const store = await openStore(await dirs.make(), space, { memtableMaxRows: 250_000, compactionMaxSegments: 1000, compactionDeadRatio: 1 })
    const t0 = performance.now()
    const STEP = 25_000
    for (let i = 0; i < N; i += STEP) {
      const recs: VersionedRecord[] = []
      for (let j = i; j < Math.min(N, i + STEP); j++) {
        const id = `k${j}`
        recs.push({ id, version: makeHlc(T0, 0), deleted: false, row: row(space, { id, s: `v${j % 100}`, f: j * 0.5, n: j * 3 }) })
      }
      await store.apply(recs)
    }
    // A flush already running when asked is shared: ask until the memtable is empty.
    while (store.stats().memtableRows > 0) await store.flush()
    const load = performance.now() - t0
    const cols = ['s', 'f', 'n']
    const time = async (fn: () => Promise<number>): Promise<{ ms: number, n: number }> => { const a = performance.now(); const n = await fn(); return { ms: performance.now() - a, n } }
    const consume = async (): Promise<number> => {
      let rows = 0
      let sum = 0
      for await (const b of store.batches(cols)) {
        rows += b.length
        const f = b.columns.get('f')!
        if (f.tag === 'num') sum += f.values[0]!
      }
      return rows + (sum > Infinity ? 1 : 0)
    }
    const cold = await time(consume)
    const warm = await time(consume)
    const warm2 = await time(consume)
    const a = performance.now()
    let scanned = 0
    for await (const batch of store.scan({ batchRecords: 10_000, includeTombstones: false })) scanned += batch.length
    const scanMs = performance.now() - a
    expect(cold.n).toBe(N)
    expect(warm.n).toBe(N)
    expect(scanned).toBe(N)
    console.log(`batches() over ${N} rows in ${store.stats().segments} segments (load ${load.toFixed(0)} ms): ` +
      `cold ${cold.ms.toFixed(1)} ms, warm ${warm.ms.toFixed(2)} / ${warm2.ms.toFixed(2)} ms; scan() ${scanMs.toFixed(0)} ms`)
    // Partly superseded: the live rows are gathered from the cached columns on every call.
    const recs: VersionedRecord[] = []
    for (let j = 0; j < N; j += 10) recs.push(del(`k${j}`, T0 + 1))
    await store.apply(recs)
    const gathered = await time(consume)
    console.log(`batches() with 10% deleted (gather): ${gathered.ms.toFixed(1)} ms for ${gathered.n} rows`)
    // The memtable path: rows as objects through vectorFromValues on every call.
    const mem: VersionedRecord[] = []
    for (let j = 0; j < Math.min(N, 200_000); j++) mem.push({ id: `k${j}`, version: makeHlc(T0 + 2, 0), deleted: false, row: row(space, { id: `k${j}`, s: `w${j % 100}`, f: j, n: j }) })
    for (let j = 0; j < mem.length; j += STEP) await store.apply(mem.slice(j, j + STEP))
    const withMem = await time(consume)
    console.log(`batches() with ${store.stats().memtableRows} rows in the memtable: ${withMem.ms.toFixed(1)} ms for ${withMem.n} rows`)
    await store.close()
  }, 300_000)
})
