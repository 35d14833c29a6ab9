/**
 * Disk-resident segment files (src/storage/segment-file.ts): written and read back on real files,
 * compared with today's in-heap Segment on the same records, checked as standard Arrow, and
 * corrupted byte by byte.
 */
import { readFile, readdir, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tableFromIPC, tableToIPC } from 'apache-arrow'
import { afterEach, describe, expect, it } from 'vitest'
import { BatchLease, valueAt, vectorLength, widenVector, type NumVector, type StoredVector, type StrVector } from '../../src/columnar/index.js'
import { makeHlc } from '../../src/hlc/index.js'
import { newRow, parseSchemaSpec, type ColumnType, type SpaceSchema } from '../../src/schema/index.js'
import { BlockCache } from '../../src/storage/block-cache.js'
import { FilePool } from '../../src/storage/files.js'
import { compareKeys, compareUtf16Order, keyBloomHash, keyHash, keyHashesUtf8 } from '../../src/storage/key-index.js'
import { DELETED_COLUMN, Segment, SegmentCorruptError, VERSION_COLUMN, encodeSegment } from '../../src/storage/segment.js'
import { SegmentFile, SegmentFileWriter, writeSegmentFiles, type SegmentFileMeta, type SourceColumn } from '../../src/storage/segment-file.js'
import { crc32 } from '../../src/storage/crc32.js'
import { HEADER_BYTES, decodeNumberCodes, decodeUtf8Codes, encodeNumberCodes, encodeUtf8Codes, numberDictionary } from '../../src/storage/segment-file-format.js'
import type { VersionedRecord } from '../../src/storage/types.js'
import { T0, TempDirs, flipByte } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

const SPEC = 'id:utf8,b:bool,i:int32,n:int64,f:float32,x:float64,s:utf8,t:timestamp,d:date,li:list<int64>,ls:list<utf8>,v:vector<3>'
const SCHEMA = parseSchemaSpec(SPEC)

/** Deterministic PRNG (mulberry32): the same records every run. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const STRINGS = ['', 'a', 'b', 'zebra', 'héllo', '日本語', '🐟 shoal', 'x'.repeat(100), 'A', 'émoji 🎉', '\uffff', '\ue000 private']

/** Random records over every type: NULLs, empty strings, unicode, int64 beyond 2^53, tombstones. */
function randomRecords (n: number, seed = 1, schema: SpaceSchema = SCHEMA): VersionedRecord[] {
  const r = rng(seed)
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!
  const value = (type: ColumnType): unknown => {
    if (r() < 0.15) return null
    switch (type) {
      case 'bool': return r() < 0.5
      case 'int32': return Math.floor(r() * 2 ** 32) - 2 ** 31
      case 'int64': return r() < 0.2 ? (r() < 0.5 ? 2n ** 60n + BigInt(Math.floor(r() * 1000)) : -(2n ** 62n)) : Math.floor((r() - 0.5) * 2 ** 40)
      case 'float32': return Math.fround((r() - 0.5) * 1000)
      case 'float64': return (r() - 0.5) * 1e6
      case 'utf8': return pick(STRINGS)
      case 'timestamp': return T0 + Math.floor(r() * 1e9)
      case 'date': return 19000 + Math.floor(r() * 1000)
      case 'list<int64>': return Array.from({ length: Math.floor(r() * 4) }, () => r() < 0.2 ? 2n ** 55n + 3n : Math.floor(r() * 100))
      case 'list<utf8>': return Array.from({ length: Math.floor(r() * 3) }, () => pick(STRINGS))
      case 'vector<3>': return [Math.fround(r()), Math.fround(-r()), 0]
    }
    throw new Error(`no generator for ${type}`)
  }
  const out: VersionedRecord[] = []
  for (let i = 0; i < n; i++) {
    const id = `id-${i}-${pick(['', 'é', '🐟'])}`
    const version = makeHlc(T0 + i, i % 3)
    if (r() < 0.1) { out.push({ id, version, deleted: true, row: null }); continue }
    const row = newRow()
    for (const c of schema) row[c.name] = c.name === 'id' ? id : value(c.type)
    out.push({ id, version, deleted: false, row })
  }
  return out
}

function deps (cacheBytes = 64 << 20, maxOpen = 16): { files: FilePool, cache: BlockCache } {
  return { files: new FilePool(maxOpen), cache: new BlockCache(cacheBytes) }
}

/** Values of a vector as plain JS (valueAt), for comparison. */
/** A column's values as the executor reads them (a compact column widened). */
function values (stored: StoredVector): unknown[] {
  const v = widenVector(stored)
  const out: unknown[] = []
  for (let i = 0; i < vectorLength(v); i++) out.push(valueAt(v, i))
  return out
}

/** Codes as the executor reads them: -1 for NULL. */
function wideCodes (v: StoredVector): number[] { return [...(widenVector(v) as StrVector).codes] }

/** Numbers as the executor reads them: NaN for NULL. */
function wideValues (v: StoredVector): number[] { return [...(widenVector(v) as NumVector).values] }

async function whole (seg: SegmentFile, name: string, type: ColumnType): Promise<unknown[]> {
  const out: unknown[] = []
  for (let b = 0; b < seg.batches; b++) {
    const v = await seg.column(b, name, type)
    expect(vectorLength(widenVector(v))).toBe(seg.batchRows(b))
    out.push(...values(v))
  }
  return out
}

async function written (records: VersionedRecord[], batchRows?: number, schema: SpaceSchema = SCHEMA, codes = true): Promise<{ dir: string, meta: SegmentFileMeta }> {
  const dir = await dirs.make()
  const meta = await writeSegmentFiles(dir, 7, schema, records, { batchRows, codes })
  return { dir, meta }
}

async function expectCorrupt (p: Promise<unknown>, ...parts: string[]): Promise<SegmentCorruptError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(SegmentCorruptError)
  for (const s of parts) expect((err as Error).message).toContain(s)
  return err as SegmentCorruptError
}

describe('segment files', () => {
  it('round-trips every type exactly as today\'s Segment does, over several batches', async () => {
    const records = randomRecords(300)
    const { dir, meta } = await written(records, 64)
    expect(meta).toMatchObject({ id: 7, file: 'seg-00000007.arrow', index: 'seg-00000007.idx', rows: 300, batches: 5 })
    const seg = await SegmentFile.open(dir, meta, deps())
    expect(seg.batches).toBe(5)
    expect([0, 1, 2, 3, 4].map(b => seg.batchRows(b))).toEqual([64, 64, 64, 64, 44])

    const sorted = [...records].sort((a, b) => compareKeys(a.id, b.id))
    const bytes = encodeSegment(SCHEMA, sorted)
    const old = Segment.decode({ id: 1, file: 'x', rows: sorted.length, bytes: bytes.length, crc32: 0 }, 'x', bytes)
    for (const c of SCHEMA) {
      expect(await whole(seg, c.name, c.type), c.name).toEqual(values(old.column(c.name, c.type)))
    }
    // What the number vectors say of themselves, which the executor's loops rely on
    // (NumVector.nulls: its NULLs; int32: every value a 32-bit integer).
    for (let b = 0; b < seg.batches; b++) {
      for (const [name, type, int32] of [['i', 'int32', true], ['d', 'date', true], ['b', 'bool', true], ['n', 'int64', false], ['x', 'float64', false], ['f', 'float32', false], ['t', 'timestamp', false]] as const) {
        const v = await seg.column(b, name, type)
        if (v.tag !== 'num') throw new Error(`${name}: not a number vector`)
        expect(v.nulls, `${name} batch ${b}`).toBe(v.values.filter(x => x !== x).length)
        expect(v.int32 === true, `${name} batch ${b}`).toBe(int32)
      }
    }
    const ids: string[] = []
    const versions: number[] = []
    const deleted: number[] = []
    for (let b = 0; b < seg.batches; b++) {
      ids.push(...await seg.ids(b))
      versions.push(...await seg.versions(b))
      deleted.push(...await seg.deleted(b))
    }
    expect(ids).toEqual(sorted.map(r => r.id))
    expect(ids).toEqual(old.ids)
    expect(versions).toEqual(Array.from(old.versions))
    expect(deleted).toEqual(Array.from(old.deleted))
    // Spot checks the comparison above relies on: int64 beyond 2^53 as float64, unicode, empty strings.
    const n = await whole(seg, 'n', 'int64')
    expect(n.some(x => typeof x === 'number' && Math.abs(x) > 2 ** 53)).toBe(true)
    const s = await whole(seg, 's', 'utf8')
    expect(s).toContain('')
    expect(s).toContain('🐟 shoal')
    expect(s).toContain(null)
    await seg.close()
  })

  it('round-trips ASCII-only strings (the writer\'s single-encode path) and all-NULL batches', async () => {
    const schema = parseSchemaSpec('id:utf8,s:utf8,x:float64,t:timestamp')
    const records: VersionedRecord[] = []
    for (let i = 0; i < 90; i++) {
      const row = newRow()
      row.id = `k${i}`
      row.s = i % 4 === 0 ? null : i % 4 === 1 ? '' : `v${i % 7}`
      row.x = i < 45 ? null : i / 3
      row.t = i < 45 ? null : T0 + i
      records.push({ id: `k${i}`, version: makeHlc(T0 + i, 0), deleted: false, row })
    }
    const { dir, meta } = await written(records, 16, schema)
    const seg = await SegmentFile.open(dir, meta, deps())
    const sorted = [...records].sort((a, b) => compareKeys(a.id, b.id))
    const bytes = encodeSegment(schema, sorted)
    const old = Segment.decode({ id: 1, file: 'x', rows: sorted.length, bytes: bytes.length, crc32: 0 }, 'x', bytes)
    for (const c of schema) expect(await whole(seg, c.name, c.type), c.name).toEqual(values(old.column(c.name, c.type)))
    await seg.close()
  })

  it('decodes columns into shared memory and caches them: a second read does not touch the file', async () => {
    const { dir, meta } = await written(randomRecords(100), 32)
    const seg = await SegmentFile.open(dir, meta, deps())
    const a = await seg.column(1, 'x', 'float64')
    expect(a.tag === 'num' && a.values.buffer instanceof SharedArrayBuffer).toBe(true)
    const reads = seg.arrowReads.reads
    expect(await seg.column(1, 'x', 'float64')).toBe(a)
    expect(seg.arrowReads.reads).toBe(reads)
    await seg.close()
  })

  it('reads one row\'s values from the pages holding them, as records() gives them, for every type', async () => {
    const records = randomRecords(300, 4)
    const { dir, meta } = await written(records, 64)
    const seg = await SegmentFile.open(dir, meta, deps())
    const columns = SCHEMA.filter(c => c.name !== 'id')
    let checked = 0
    for (let b = 0; b < seg.batches; b++) {
      const whole = await seg.records(b, undefined, SCHEMA)
      for (let i = 0; i < whole.length; i++) {
        if (whole[i]!.deleted) continue
        const got = await seg.rowValues(b, i, columns)
        expect(got, `batch ${b} row ${i}`).toEqual(columns.map(c => whole[i]!.row![c.name]))
        checked++
      }
    }
    expect(checked).toBeGreaterThan(200)
    // Big int64s stay bigints, as records() keeps them; a column the file lacks reads as NULL.
    expect(records.some(r => typeof r.row?.n === 'bigint')).toBe(true)
    expect(await seg.rowValues(0, 0, [{ name: 'later', type: 'int32' }])).toEqual([null])
    await seg.close()

  })

  it('reads a row\'s scalar values from a page or two each, not the batch\'s column blocks', async () => {
    const records = randomRecords(40000, 8)
    const { dir, meta } = await written(records, 20000)
    const seg = await SegmentFile.open(dir, meta, deps())
    const scalars = SCHEMA.filter(c => c.name !== 'id' && !c.type.startsWith('list') && !c.type.startsWith('vector'))
    const blocks = scalars.reduce((n, c) => n + seg.columnRange(1, c.name)!.length, 0)
    const whole = await seg.records(1, undefined, SCHEMA)
    for (const i of [0, 7000, 19999]) {
      if (whole[i]!.deleted) continue
      const r = seg.arrowReads
      expect(await seg.rowValues(1, i, scalars)).toEqual(scalars.map(c => whole[i]!.row![c.name]))
      // A validity bit and a value per column, a utf8's offsets and bytes: at most two pages a read.
      expect(seg.arrowReads.reads - r.reads).toBeLessThanOrEqual(2 * scalars.length + 1)
      expect(seg.arrowReads.bytes - r.bytes).toBeLessThanOrEqual(8192 * (seg.arrowReads.reads - r.reads))
      expect(seg.arrowReads.bytes - r.bytes).toBeLessThan(blocks / 8)
    }
    await seg.close()
  })

  it('reads a format-1 .idx (no page table) as before: rows from whole column blocks', async () => {
    const records = randomRecords(200, 5)
    const { dir, meta } = await written(records, 50, SCHEMA, false)
    const idx = join(dir, meta.index)
    const v2 = await readFile(idx)
    expect(v2.readUInt32LE(8)).toBe(2) // no utf8 codes: format 2
    const pages = Math.ceil(meta.bytes / 4096)
    const v1 = Buffer.from(v2.subarray(0, v2.length - 4 * pages))
    v1.writeUInt32LE(1, 8)
    v1.writeUInt32LE(0, 68)
    v1.writeUInt32LE(0, 72)
    v1.writeUInt32LE(crc32(v1.subarray(0, HEADER_BYTES - 4)), HEADER_BYTES - 4)
    await writeFile(idx, v1)
    const seg = await SegmentFile.open(dir, { ...meta, indexBytes: v1.length }, deps())
    const columns = SCHEMA.filter(c => c.name !== 'id')
    const whole = await seg.records(1, undefined, SCHEMA)
    const i = whole.findIndex(r => !r.deleted)
    expect(await seg.rowValues(1, i, columns)).toEqual(columns.map(c => whole[i]!.row![c.name]))
    await seg.close()
  })

  it('reads exactly the asked column\'s bytes of the asked batch, in one read', async () => {
    const { dir, meta } = await written(randomRecords(400), 100)
    const seg = await SegmentFile.open(dir, meta, deps())
    expect(seg.arrowReads.reads).toBe(0) // open reads the .idx only
    // s (12 values in batches of 100) is read from its utf8 codes in the .idx instead.
    expect(seg.codesRange(2, 's')).toBeDefined()
    const idxBefore = seg.idxReads
    await seg.column(2, 's', 'utf8')
    expect(seg.idxReads.reads - idxBefore.reads).toBe(1)
    expect(seg.idxReads.bytes - idxBefore.bytes).toBe(seg.codesRange(2, 's')!.length)
    expect(seg.arrowReads.reads).toBe(0)
    for (const name of ['x', 'ls', 'v']) {
      const before = seg.arrowReads
      await seg.column(2, name, SCHEMA.find(c => c.name === name)!.type)
      const after = seg.arrowReads
      expect(after.reads - before.reads).toBe(1)
      expect(after.bytes - before.bytes).toBe(seg.columnRange(2, name)!.length)
    }
    // A float64 column of 100 rows: its 800 bytes of data and a validity bitmap (padded to 8).
    expect(seg.columnRange(2, 'x')!.length).toBeLessThanOrEqual(100 * 8 + 16 + 8)
    expect(seg.arrowReads.bytes).toBeLessThan(meta.bytes / 4)
    await seg.close()
  })

  it('writes a standard Arrow IPC file: apache-arrow reads the same rows, in key order', async () => {
    const records = randomRecords(150)
    const { dir, meta } = await written(records, 40)
    const table = tableFromIPC(await readFile(join(dir, meta.file)))
    expect(table.numRows).toBe(150)
    expect(table.batches.length).toBe(4)
    const sorted = [...records].sort((a, b) => compareKeys(a.id, b.id))
    expect(table.getChild('id')!.toArray()).toEqual(sorted.map(r => r.id))
    expect(Array.from(table.getChild(VERSION_COLUMN)!.toArray() as Float64Array)).toEqual(sorted.map(r => r.version))
    expect(Array.from(table.getChild(DELETED_COLUMN)!, x => x as boolean)).toEqual(sorted.map(r => r.deleted))
    expect(Array.from(table.getChild('s')!, x => x ?? null)).toEqual(sorted.map(r => r.row?.s ?? null))
    expect(Array.from(table.getChild('x')!, x => x ?? null)).toEqual(sorted.map(r => r.row?.x ?? null))
  })

  it('keeps zone maps: min and max of numbers, dates, timestamps and strings, NULL counts', async () => {
    const records = randomRecords(200, 5)
    const { dir, meta } = await written(records, 50)
    const seg = await SegmentFile.open(dir, meta, deps())
    const sorted = [...records].sort((a, b) => compareKeys(a.id, b.id))
    for (let b = 0; b < seg.batches; b++) {
      const rows = sorted.slice(b * 50, (b + 1) * 50)
      for (const name of ['i', 'n', 'x', 't', 'd', 's', 'ls']) {
        const vals = rows.map(r => r.row?.[name] ?? null)
        const present = vals.filter(v => v !== null)
        const z = seg.zone(b, name)!
        expect(z.nulls, `${b}/${name}`).toBe(vals.length - present.length)
        if (name === 'ls') { expect(z.min).toBeUndefined(); continue }
        if (name === 's') {
          const strs = present as string[]
          expect(z.min).toBe(strs.reduce((m, s) => s < m ? s : m))
          const max = strs.reduce((m, s) => s > m ? s : m)
          // A max longer than the kept bound (64 code units) is not kept: a prefix is no upper bound.
          expect(z.max).toBe(max.length > 64 ? undefined : max)
          continue
        }
        const nums = present.map(v => Number(v as number | bigint))
        expect(z.min, `${b}/${name}`).toBe(Math.min(...nums))
        expect(z.max, `${b}/${name}`).toBe(Math.max(...nums))
      }
      const v = seg.zone(b, VERSION_COLUMN)!
      expect(v.min).toBe(Math.min(...rows.map(r => r.version)))
    }
    expect(seg.zone(0, 'nope')).toBeUndefined()
    await seg.close()
  })

  it('keeps a prefix of a long utf8 min and no max', async () => {
    const long = 'm'.repeat(70)
    const schema = parseSchemaSpec('id:utf8,s:utf8')
    const mk = (id: string, s: string): VersionedRecord => { const row = newRow(); row.id = id; row.s = s; return { id, version: makeHlc(T0, 0), deleted: false, row } }
    const { dir, meta } = await written([mk('a', long), mk('b', long + 'z')], undefined, schema)
    const seg = await SegmentFile.open(dir, meta, deps())
    expect(seg.zone(0, 's')).toEqual({ nulls: 0, min: 'm'.repeat(64) })
    await seg.close()
  })

  it('reads a column the file lacks as all NULL, and an empty segment has no batches', async () => {
    const { dir, meta } = await written(randomRecords(20), 8)
    const seg = await SegmentFile.open(dir, meta, deps())
    expect(values(await seg.column(2, 'added', 'utf8'))).toEqual([null, null, null, null])
    expect(values(await seg.column(0, 'added', 'int64'))).toEqual(new Array(8).fill(null))
    await seg.close()
    const empty = await written([])
    const e = await SegmentFile.open(empty.dir, empty.meta, deps())
    expect(e.batches).toBe(0)
    expect(e.rows).toBe(0)
    expect(tableFromIPC(await readFile(join(empty.dir, empty.meta.file))).numRows).toBe(0)
    await e.close()
  })

  it('rejects duplicate ids', async () => {
    const recs = randomRecords(5)
    recs.push({ ...recs[2]!, version: recs[2]!.version + 1 })
    await expect(written(recs)).rejects.toThrow(/appears twice/)
  })

  it('gives right answers through a cache of a few KiB and a pool of one descriptor', async () => {
    const records = randomRecords(300, 9)
    const a = await written(records, 50)
    const b = await written(randomRecords(300, 10), 50)
    const small = deps(4096, 1)
    const big = deps()
    const s1 = await SegmentFile.open(a.dir, a.meta, small)
    const s2 = await SegmentFile.open(b.dir, b.meta, small)
    const r1 = await SegmentFile.open(a.dir, a.meta, big)
    const r2 = await SegmentFile.open(b.dir, b.meta, big)
    for (let round = 0; round < 2; round++) {
      for (const c of SCHEMA) {
        expect(await whole(s1, c.name, c.type)).toEqual(await whole(r1, c.name, c.type))
        expect(await whole(s2, c.name, c.type)).toEqual(await whole(r2, c.name, c.type))
      }
    }
    expect(small.cache.stats().bytes).toBeLessThanOrEqual(4096)
    // Far more went through the cache than it holds: pushed out, or turned away (admission).
    const { evictions, rejected } = small.cache.stats()
    expect(evictions + rejected).toBeGreaterThan(20)
    expect(small.files.peak).toBe(1)
    expect(s1.arrowReads.opens).toBeGreaterThan(1) // the pool closed it for the other segment and it reopened
    for (const s of [s1, s2, r1, r2]) await s.close()
    expect(small.files.open).toBe(0)
  })

  it('serves point lookups through the embedded key index', async () => {
    const records = randomRecords(200)
    const { dir, meta } = await written(records, 64)
    const seg = await SegmentFile.open(dir, meta, deps())
    const sorted = [...records].sort((a, b) => compareKeys(a.id, b.id))
    const hit = await seg.keys.lookup(sorted[77]!.id)
    expect(hit).toMatchObject({ row: 77, version: sorted[77]!.version, deleted: sorted[77]!.deleted })
    expect(seg.residentBytes).toBeGreaterThan(0)
    await seg.close()
  })
})

/** A segment file open as a writer's sources: each batch's columns as Arrow data, its versions and flags. */
interface SourceSegment {
  seg: SegmentFile
  batches: Array<{ rows: number, columns: Map<string, SourceColumn>, ids: string[], versions: Float64Array, deleted: Uint8Array }>
}

/** Opens `meta` and reads every batch's columns for `schema` (those the file has), as compaction's merge does. */
async function sourceOf (dir: string, meta: SegmentFileMeta, schema: SpaceSchema): Promise<SourceSegment> {
  const seg = await SegmentFile.open(dir, meta, deps())
  const batches: SourceSegment['batches'] = []
  for (let b = 0; b < seg.batches; b++) {
    const columns = new Map<string, SourceColumn>()
    for (const c of schema) {
      const vec = await seg.arrowColumn(b, c.name)
      if (vec !== undefined) columns.set(c.name, { type: seg.columnType(c.name)!, data: vec.data[0]! })
    }
    batches.push({ rows: seg.batchRows(b), columns, ids: await seg.ids(b), versions: await seg.versions(b), deleted: await seg.deleted(b) })
  }
  return { seg, batches }
}

/**
 * Writes the rows of `sources` (segment files) through a SegmentFileWriter merged into key order
 * (as compaction's merge does: the next row is the least key among the sources' heads), a batch
 * whenever one fills.
 */
async function streamedFrom (sources: SourceSegment[], batchRows: number, schema: SpaceSchema = SCHEMA): Promise<{ dir: string, meta: SegmentFileMeta, oldestTombstone: number }> {
  const dir = await dirs.make()
  const w = await SegmentFileWriter.create(dir, 7, schema, { batchRows })
  const heads = sources.map(() => ({ b: 0, i: 0, slot: -1, epoch: -1 }))
  for (;;) {
    let k = -1
    for (let s = 0; s < sources.length; s++) {
      const h = heads[s]!
      const id = sources[s]!.batches[h.b]?.ids[h.i]
      if (id === undefined) continue
      if (k < 0 || compareKeys(id, sources[k]!.batches[heads[k]!.b]!.ids[heads[k]!.i]!) < 0) k = s
    }
    if (k < 0) break
    const h = heads[k]!
    const batch = sources[k]!.batches[h.b]!
    if (h.epoch !== w.batchesWritten) { h.slot = w.source(batch.rows, batch.columns); h.epoch = w.batchesWritten }
    if (w.addFrom(h.slot, h.i, batch.versions[h.i]!, batch.deleted[h.i] === 1)) await w.writeBatch()
    if (++h.i === batch.rows) { h.b++; h.i = 0; h.epoch = -1 }
  }
  const meta = await w.finish()
  return { dir, meta, oldestTombstone: w.oldestTombstone }
}

/** Writes `records` through a SegmentFileWriter: from segment files of them in `parts` random parts (source batches of `sourceRows`). */
async function streamed (records: readonly VersionedRecord[], batchRows: number, schema: SpaceSchema = SCHEMA, parts = 3, sourceRows = 37): Promise<{ dir: string, meta: SegmentFileMeta, oldestTombstone: number }> {
  const r = rng(records.length + parts)
  const groups: VersionedRecord[][] = Array.from({ length: parts }, () => [])
  for (const rec of records) groups[Math.floor(r() * parts)]!.push(rec)
  const sources: SourceSegment[] = []
  for (const g of groups.filter(x => x.length > 0)) {
    const { dir, meta } = await written(g, sourceRows, schema)
    sources.push(await sourceOf(dir, meta, schema))
  }
  try {
    return await streamedFrom(sources, batchRows, schema)
  } finally {
    for (const s of sources) await s.seg.close()
  }
}

describe('streaming segment writer', () => {
  it('SegmentFileWriter writes the files writeSegmentFiles writes, byte for byte, and they read back the same, over several batches and every type', async () => {
    const records = randomRecords(300, 11)
    const a = await written(records, 64)
    const b = await streamed(records, 64)
    expect(b.meta).toEqual(a.meta)
    for (const f of [a.meta.file, a.meta.index]) expect(Buffer.compare(await readFile(join(b.dir, f)), await readFile(join(a.dir, f))), f).toBe(0)
    expect(b.oldestTombstone).toBe(Math.min(...records.filter(r => r.deleted).map(r => r.version)))

    const sa = await SegmentFile.open(a.dir, a.meta, deps())
    const sb = await SegmentFile.open(b.dir, b.meta, deps())
    expect(sb.batches).toBe(5)
    for (const c of SCHEMA) expect(await whole(sb, c.name, c.type), c.name).toEqual(await whole(sa, c.name, c.type))
    for (let k = 0; k < sb.batches; k++) {
      expect(await sb.records(k, undefined, SCHEMA)).toEqual(await sa.records(k, undefined, SCHEMA))
      for (const c of SCHEMA) expect(sb.zone(k, c.name)).toEqual(sa.zone(k, c.name))
    }
    const sorted = [...records].sort((x, y) => compareKeys(x.id, y.id))
    expect(await sb.keys.lookup(sorted[200]!.id)).toMatchObject({ row: 200, version: sorted[200]!.version })
    for (const s of [sa, sb]) await s.close()
  })

  it('copies rows from many sources of every type byte for byte as the record path writes them, for random inputs, batch sizes and splits', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const r = rng(seed * 7919)
      const records = randomRecords(1 + Math.floor(r() * 400), 100 + seed)
      const batchRows = 1 + Math.floor(r() * 90)
      const a = await written(records, batchRows)
      const b = await streamed(records, batchRows, SCHEMA, 1 + Math.floor(r() * 6), 1 + Math.floor(r() * 70))
      expect(b.meta, `seed ${seed}`).toEqual(a.meta)
      for (const f of [a.meta.file, a.meta.index]) expect(Buffer.compare(await readFile(join(b.dir, f)), await readFile(join(a.dir, f))), `seed ${seed}: ${f}`).toBe(0)
    }
  })

  it('reads a column a source file lacks (written before the column was added) as NULL, as the record path does', async () => {
    const older = parseSchemaSpec(SPEC.replace(',s:utf8', '').replace(',v:vector<3>', ''))
    const before = randomRecords(120, 21, older)
    const after = randomRecords(150, 22).map(rec => ({ ...rec, id: `new-${rec.id}`, row: rec.row === null ? null : { ...rec.row, id: `new-${rec.id}` } }))
    const src1 = await written(before, 32, older)
    const src2 = await written(after, 45)
    const sources = [await sourceOf(src1.dir, src1.meta, SCHEMA), await sourceOf(src2.dir, src2.meta, SCHEMA)]
    const b = await streamedFrom(sources, 50)
    for (const s of sources) await s.seg.close()
    // The record path: the old rows read with the new schema (NULL in the columns they lack).
    const widened = before.map(rec => rec.row === null ? rec : { ...rec, row: { ...rec.row, s: null, v: null } })
    const a = await written([...widened, ...after], 50)
    expect(b.meta).toEqual(a.meta)
    for (const f of [a.meta.file, a.meta.index]) expect(Buffer.compare(await readFile(join(b.dir, f)), await readFile(join(a.dir, f))), f).toBe(0)
  })

  it('hashes and orders ids from their UTF-8 as keyHash, the Bloom hash and JS string order do from the strings', () => {
    const r = rng(5)
    const chars = ['a', 'Z', '0', 'é', 'ß', '日', '\ue000', '\uffff', '🐟', '𝄞', '\u{10ffff}']
    const ids = [''].concat(Array.from({ length: 2000 }, () => Array.from({ length: Math.floor(r() * 9) }, () => chars[Math.floor(r() * chars.length)]).join('')))
    const out = new Uint32Array(2)
    for (const id of ids) {
      const b = Buffer.from(id)
      keyHashesUtf8(b, 0, b.length, out)
      expect([out[0], out[1]], JSON.stringify(id)).toEqual([keyHash(id), keyBloomHash(id)])
    }
    for (let i = 1; i < ids.length; i++) {
      const a = Buffer.from(ids[i - 1]!)
      const b = Buffer.from(ids[i]!)
      expect(Math.sign(compareUtf16Order(a, 0, a.length, b, 0, b.length)), `${JSON.stringify(ids[i - 1])} vs ${JSON.stringify(ids[i])}`).toBe(ids[i - 1]! < ids[i]! ? -1 : ids[i - 1]! > ids[i]! ? 1 : 0)
    }
  })

  it('writes a standard Arrow IPC file: what apache-arrow writes for the same batches, byte for byte', async () => {
    const { dir, meta } = await streamed(randomRecords(150, 12), 40)
    const bytes = await readFile(join(dir, meta.file))
    const table = tableFromIPC(bytes)
    expect(table.batches.map(x => x.numRows)).toEqual([40, 40, 40, 30])
    expect(Buffer.compare(Buffer.from(tableToIPC(table, 'file')), bytes)).toBe(0)
  })

  it('writes a segment of one partial batch, and of a batch exactly full', async () => {
    for (const n of [1, 7, 16]) {
      const records = randomRecords(n, 13)
      const a = await written(records, 16)
      const b = await streamed(records, 16)
      expect(b.meta).toEqual(a.meta)
      const sb = await SegmentFile.open(b.dir, b.meta, deps())
      expect(sb.rows).toBe(n)
      expect(await sb.records(0, undefined, SCHEMA)).toEqual([...records].sort((x, y) => compareKeys(x.id, y.id)))
      await sb.close()
    }
  })

  it('throws on a row out of key order, a duplicate id, a row added to a full batch and a source row out of range; abort() leaves no file', async () => {
    const src = await written(randomRecords(10, 14), 100)
    const source = await sourceOf(src.dir, src.meta, SCHEMA)
    const batch = source.batches[0]!
    const dir = await dirs.make()
    const w = await SegmentFileWriter.create(dir, 3, SCHEMA, { batchRows: 4 })
    const slot = w.source(batch.rows, batch.columns)
    const add = (i: number): boolean => w.addFrom(slot, i, batch.versions[i]!, batch.deleted[i] === 1)
    expect(add(1)).toBe(false)
    expect(() => add(0)).toThrow(/does not follow/)
    expect(() => add(1)).toThrow(/duplicate id/)
    expect(() => w.addFrom(slot, 10, 1, false)).toThrow(/row 10 of a source of 10/)
    expect(() => w.addFrom(slot + 1, 2, 1, false)).toThrow(/source 1 of the 1/)
    add(2)
    add(3)
    expect(add(4)).toBe(true)
    expect(() => add(5)).toThrow(/waits for writeBatch/)
    await w.writeBatch()
    // The batch written, its sources are forgotten.
    expect(() => add(5)).toThrow(/source 0 of the 0/)
    const again = w.source(batch.rows, batch.columns)
    expect(w.addFrom(again, 5, batch.versions[5]!, false)).toBe(false)
    expect(w.rows).toBe(5)
    expect(() => w.source(batch.rows, new Map([...batch.columns].filter(([name]) => name !== 'id')))).toThrow(/utf8 id column/)
    expect(await readdir(dir)).toEqual(['seg-00000003.arrow'])
    await w.abort()
    expect(await readdir(dir)).toEqual([])
    await source.seg.close()
  })
})

describe('segment file corruption', () => {

  it('a flipped byte in a column\'s bytes is an error naming the file, batch and column; other columns still read', async () => {
    const { dir, meta } = await written(randomRecords(200), 50)
    const probe = await SegmentFile.open(dir, meta, deps())
    const targets = ['x', 's', 'ls', 'v', 'id', DELETED_COLUMN].map(name => ({ name, range: probe.columnRange(2, name)! }))
    await probe.close()
    for (const { name, range } of targets) {
      const at = range.offset + Math.floor(range.length / 2)
      await flipByte(join(dir, meta.file), at)
      const seg = await SegmentFile.open(dir, meta, deps())
      const type = SCHEMA.find(c => c.name === name)?.type ?? 'bool'
      const read = name === 'id' ? seg.ids(2) : seg.column(2, name, type)
      const err = await expectCorrupt(read, meta.file, 'batch 2', `column "${name}"`, 'CRC')
      expect(err).toMatchObject({ batch: 2, column: name })
      expect(values(await seg.column(1, name === 'id' ? 'x' : name, name === 'id' ? 'float64' : type)).length).toBe(50)
      await seg.close()
      await flipByte(join(dir, meta.file), at) // restore
    }
  })

  it('a flipped byte under a row\'s value fails that row\'s read naming the file, batch and column; rows on other pages still read', async () => {
    const { dir, meta } = await written(randomRecords(2000, 6), 1000)
    const probe = await SegmentFile.open(dir, meta, deps())
    const range = probe.columnRange(1, 'x')!
    await probe.close()
    // Row 10 of batch 1's float64 column 'x': 8 bytes a row after the validity bitmap (if any).
    const at = range.offset + range.length - 8 * (1000 - 10)
    await flipByte(join(dir, meta.file), at)
    const seg = await SegmentFile.open(dir, meta, deps())
    const err = await expectCorrupt(seg.rowValues(1, 10, [{ name: 'x', type: 'float64' }]), meta.file, 'batch 1', 'column "x"', 'CRC')
    expect(err).toMatchObject({ batch: 1, column: 'x' })
    // Other pages are read and checked on their own: the same column in another batch, another column.
    expect(await seg.rowValues(0, 10, [{ name: 'x', type: 'float64' }])).toHaveLength(1)
    expect(await seg.rowValues(1, 10, [{ name: 'i', type: 'int32' }])).toHaveLength(1)
    await seg.close()
  })

  it('a damaged page shared with another column fails only the damaged column\'s reads: the others are right (their blocks check out)', async () => {
    const { dir, meta } = await written(randomRecords(2000, 9), 1000)
    const probe = await SegmentFile.open(dir, meta, deps())
    const scalars = SCHEMA.filter(c => c.name !== 'id' && !c.type.startsWith('list') && !c.type.startsWith('vector'))
    const whole = await probe.records(1, undefined, SCHEMA)
    // The last byte of x's block in batch 1: its page holds the start of the next column too.
    const range = probe.columnRange(1, 'x')!
    await probe.close()
    await flipByte(join(dir, meta.file), range.offset + range.length - 1)
    const seg = await SegmentFile.open(dir, meta, deps())
    const others = scalars.filter(c => c.name !== 'x')
    for (let i = 0; i < 1000; i += 37) {
      if (whole[i]!.deleted) continue
      expect(await seg.rowValues(1, i, others), `row ${i}`).toEqual(others.map(c => whole[i]!.row![c.name]))
    }
    // x's rows on that page: a NULL reads as NULL (its validity bit is on another, sound page),
    // a value fails naming x; nothing wrong is returned.
    let failed = 0
    for (let i = 990; i < 1000; i++) {
      if (whole[i]!.deleted) continue
      const got = await seg.rowValues(1, i, [{ name: 'x', type: 'float64' }]).catch((e: unknown) => e)
      if (got instanceof SegmentCorruptError) {
        expect(got.message).toContain('column "x"')
        failed++
      } else {
        expect(got).toEqual([null])
        expect(whole[i]!.row!.x).toBeNull()
      }
    }
    expect(failed).toBeGreaterThan(0)
    await seg.close()
  })

  it('a flipped byte in the page table fails the open naming the .idx', async () => {
    const { dir, meta } = await written(randomRecords(200, 7), 50)
    const idx = join(dir, meta.index)
    const good = await readFile(idx)
    const bad = Buffer.from(good)
    bad[bad.length - 2]! ^= 0x10
    await writeFile(idx, bad)
    await expectCorrupt(SegmentFile.open(dir, meta, deps()), meta.index, 'page table')
  })

  it('a truncated .arrow file fails at open, or at the read of a batch past the end', async () => {
    const { dir, meta } = await written(randomRecords(200), 50)
    const seg = await SegmentFile.open(dir, meta, deps())
    const range = seg.columnRange(3, 'x')!
    await truncate(join(dir, meta.file), range.offset + 3)
    await expectCorrupt(seg.column(3, 'x', 'float64'), meta.file, 'batch 3', 'column "x"', 'truncated')
    await seg.close()
    await expectCorrupt(SegmentFile.open(dir, meta, deps()), meta.file, 'bytes')
  })

  it('a bad .idx header or directory fails the open', async () => {
    const { dir, meta } = await written(randomRecords(100), 30)
    const idx = join(dir, meta.index)
    const good = await readFile(idx)
    const cases: Array<[number, string]> = [[0, 'magic'], [9, 'header'], [20, 'header'], [HEADER_BYTES + 5, 'directory'], [HEADER_BYTES + 200, 'directory']]
    for (const [at, what] of cases) {
      const bad = Buffer.from(good)
      bad[at]! ^= 0x10
      await writeFile(idx, bad)
      await expectCorrupt(SegmentFile.open(dir, meta, deps()), meta.index, what)
    }
    // The key-index section: its header's magic, then a byte of its Bloom filter.
    const keyIndexAt = good.readDoubleLE(48)
    for (const at of [keyIndexAt + 1, keyIndexAt + 90]) {
      const bad = Buffer.from(good)
      bad[at]! ^= 0x10
      await writeFile(idx, bad)
      await expectCorrupt(SegmentFile.open(dir, meta, deps()), meta.index, 'key index')
    }
    await writeFile(idx, good.subarray(0, HEADER_BYTES + 10))
    await expectCorrupt(SegmentFile.open(dir, { ...meta, indexBytes: HEADER_BYTES + 10 }, deps()), meta.index)
    await writeFile(idx, good)
    const seg = await SegmentFile.open(dir, meta, deps())
    await seg.close()
  })
})

/** The compaction writer (SegmentFileWriter, fed batch by batch from a segment) writes the same .idx as the record path did. */
async function expectCompactionWritesSameIndex (records: VersionedRecord[], schema: SpaceSchema): Promise<void> {
  const src = await written(records, 1000, schema)
  const seg = await SegmentFile.open(src.dir, src.meta, deps())
  const dir = await dirs.make()
  const w = await SegmentFileWriter.create(dir, 7, schema, { batchRows: 1000 })
  for (let b = 0; b < seg.batches; b++) {
    const columns = new Map<string, SourceColumn>()
    for (const c of schema) columns.set(c.name, { type: c.type, data: (await seg.arrowColumn(b, c.name))!.data[0]! })
    const source = w.source(seg.batchRows(b), columns)
    const versions = await seg.versions(b)
    const deleted = await seg.deleted(b)
    for (let i = 0; i < seg.batchRows(b); i++) if (w.addFrom(source, i, versions[i]!, deleted[i] === 1)) await w.writeBatch()
  }
  const meta = await w.finish()
  expect(await readFile(join(dir, meta.index))).toEqual(await readFile(join(src.dir, src.meta.index)))
  await seg.close()
}

/**
 * A byte flipped in the codes block of `flipped` in batch 1: its scan there fails naming the
 * .idx, batch, column and `what`; batch 0 and the `other` coded column still read, and so does a
 * row's value from the .arrow pages.
 */
async function expectFlippedCodes (records: VersionedRecord[], schema: SpaceSchema, flipped: { name: string, type: ColumnType }, other: { name: string, type: ColumnType }, what: string): Promise<void> {
  const { dir, meta } = await written(records, 1000, schema)
  let seg = await SegmentFile.open(dir, meta, deps())
  const range = seg.codesRange(1, flipped.name)!
  const rows = await seg.records(1, undefined, schema)
  await seg.close()
  await flipByte(join(dir, meta.index), range.offset + 10)
  seg = await SegmentFile.open(dir, meta, deps())
  await expectCorrupt(seg.column(1, flipped.name, flipped.type), meta.index, 'batch 1', `column "${flipped.name}"`, what, 'CRC')
  expect(vectorLength(widenVector(await seg.column(0, flipped.name, flipped.type)))).toBe(1000)
  expect(vectorLength(widenVector(await seg.column(1, other.name, other.type)))).toBe(1000)
  const i = rows.findIndex(r => !r.deleted)
  expect(await seg.rowValues(1, i, [flipped])).toEqual([rows[i]!.row![flipped.name]])
  await seg.close()
}

describe('utf8 codes (format 3)', () => {
  const CODED = parseSchemaSpec('id:utf8,s:utf8,w:utf8,h:utf8,x:float64')

  /** s: 12 values and NULLs (1-byte codes); w: 300 values (2-byte codes in batches of 1,200 rows or more); h: every value distinct (no codes). */
  function codedRecords (n: number): VersionedRecord[] {
    const r = rng(11)
    const out: VersionedRecord[] = []
    for (let i = 0; i < n; i++) {
      const id = `k${i}`
      const version = makeHlc(T0 + i, 0)
      if (r() < 0.1) { out.push({ id, version, deleted: true, row: null }); continue }
      const row = newRow()
      row.id = id
      row.s = r() < 0.15 ? null : STRINGS[Math.floor(r() * STRINGS.length)]!
      row.w = `w${Math.floor(r() * 300)}`
      row.h = `h-${i}-${Math.floor(r() * 1e9)}`
      row.x = r()
      out.push({ id, version, deleted: false, row })
    }
    return out
  }

  it('a scan reads a column of few distinct values from its codes: the same values as its Arrow bytes, NULLs and tombstones included', async () => {
    const records = codedRecords(6000)
    const coded = await written(records, 2000, CODED)
    const plain = await written(records, 2000, CODED, false)
    expect((await readFile(join(coded.dir, coded.meta.index))).readUInt32LE(8)).toBe(3)
    expect((await readFile(join(plain.dir, plain.meta.index))).readUInt32LE(8)).toBe(2)
    const a = await SegmentFile.open(coded.dir, coded.meta, deps())
    const b = await SegmentFile.open(plain.dir, plain.meta, deps())
    const opened = a.idxReads.reads
    for (let batch = 0; batch < a.batches; batch++) {
      expect(a.codesRange(batch, 's')).toBeDefined()
      expect(a.codesRange(batch, 'w')!.length).toBeGreaterThanOrEqual(2 * a.batchRows(batch))
      expect(a.codesRange(batch, 'h')).toBeUndefined()
      expect(a.codesRange(batch, 'id')).toBeUndefined()
      expect(b.codesRange(batch, 's')).toBeUndefined()
    }
    for (const name of ['s', 'w']) expect(await whole(a, name, 'utf8'), name).toEqual(await whole(b, name, 'utf8'))
    // Only the codes were read: nothing of the .arrow file.
    expect(a.arrowReads.reads).toBe(0)
    expect(a.idxReads.reads - opened).toBe(2 * a.batches)
    for (const name of ['h', 'x', 'id']) {
      const type = CODED.find(c => c.name === name)!.type
      expect(await whole(a, name, type), name).toEqual(await whole(b, name, type))
    }
    // A tombstone's values read as NULL from the codes too.
    const s = await whole(a, 's', 'utf8')
    const ids = await whole(a, 'id', 'utf8')
    const byId = new Map(records.map(r => [r.id, r]))
    ids.forEach((id, i) => { const r = byId.get(id as string)!; expect(s[i]).toEqual(r.deleted ? null : r.row!.s) })
    await a.close()
    await b.close()
  })

  it('the compaction writer stores the same codes as the record path', async () => {
    await expectCompactionWritesSameIndex(codedRecords(1500), CODED)
  })

  it('a flipped byte in a codes block fails that column\'s scan naming the .idx, batch and column; its rows still read from the .arrow pages', async () => {
    await expectFlippedCodes(codedRecords(2000), CODED, { name: 's', type: 'utf8' }, { name: 'w', type: 'utf8' }, 'utf8 codes')
  })

  it('a codes block that does not decode is an error, never wrong values', () => {
    const fail = (reason: string): Error => new Error(reason)
    const codes = Int32Array.from([0, 1, -1, 2, 1])
    const { block, width } = encodeUtf8Codes(codes, ['a', 'bé', ''])
    expect(width).toBe(1)
    const back = decodeUtf8Codes(block, 5, 3, width, fail)
    expect(wideCodes(back)).toEqual([0, 1, -1, 2, 1])
    expect(back.dict).toEqual(['a', 'bé', ''])
    // A code past the values.
    const past = Uint8Array.from(block)
    past[3] = 7
    expect(() => decodeUtf8Codes(past, 5, 3, width, fail)).toThrow(/codes past/)
    // Offsets out of order.
    const order = Uint8Array.from(block)
    order[8 + 4] = 9
    expect(() => decodeUtf8Codes(order, 5, 3, width, fail)).toThrow(/offset/)
    // Two bytes a code from 255 values on.
    const many = Array.from({ length: 300 }, (_, j) => `v${j}`)
    const wide = encodeUtf8Codes(Int32Array.from([299, -1, 0]), many)
    expect(wide.width).toBe(2)
    expect(wideCodes(decodeUtf8Codes(wide.block, 3, 300, 2, fail))).toEqual([299, -1, 0])
  })

  it('widens codes 4 bytes at a time when it can, with the same result as code by code: NULLs, bad codes in any lane and the tail, every dictionary size', () => {
    const fail = (reason: string): Error => new Error(reason)
    const r = rng(21)
    for (const count of [1, 2, 127, 128, 129, 254, 255, 300, 32_767, 32_768, 32_769, 65_534]) {
      const dict = Array.from({ length: count }, (_, j) => `v${j}`)
      for (const rows of [1, 3, 4, 7, 64, 1001]) {
        for (const nulls of [false, true]) {
          const codes = Int32Array.from({ length: rows }, () => nulls && r() < 0.1 ? -1 : Math.floor(r() * count))
          const { block, width } = encodeUtf8Codes(codes, dict)
          expect(wideCodes(decodeUtf8Codes(block, rows, count, width, fail)), `${count} values, ${rows} rows`).toEqual([...codes])
          // One code past the values, at each place in turn (a lane of a word, or the tail).
          for (const at of new Set([0, 1, 2, 3, rows - 1].filter(i => i < rows))) {
            const bad = Uint8Array.from(block)
            // count itself: never NULL's code (255 or 65,535: count is below it at each width).
            if (width === 1) bad[at] = count
            else new DataView(bad.buffer).setUint16(2 * at, count, true)
            expect(() => decodeUtf8Codes(bad, rows, count, width, fail), `${count} values, ${rows} rows, bad at ${at}`).toThrow(/codes past/)
          }
        }
      }
    }
  })
})

describe('number codes (format 4)', () => {
  const NUMS = parseSchemaSpec('id:utf8,i:int32,n:int64,f:float32,x:float64,d:date,t:timestamp,z:float64,u:float64')
  const BIG = [2 ** 53 + 2, -(2 ** 60), 7, 0]

  /** i, n, f, d, t: a few values and NULLs (1-byte codes); x: 400 values (2-byte codes); z: holds a -0 (no codes); u: every value distinct (no codes). */
  function numberRecords (n: number): VersionedRecord[] {
    const r = rng(17)
    const out: VersionedRecord[] = []
    for (let k = 0; k < n; k++) {
      const id = `k${k}`
      const version = makeHlc(T0 + k, 0)
      if (r() < 0.08) { out.push({ id, version, deleted: true, row: null }); continue }
      const row = newRow()
      row.id = id
      const maybe = <T>(v: T): T | null => r() < 0.1 ? null : v
      row.i = maybe(Math.floor(r() * 13) - 3)
      row.n = maybe(BigInt(BIG[Math.floor(r() * BIG.length)]!))
      row.f = maybe(Math.fround([0.5, 1.25, -3][Math.floor(r() * 3)]!))
      row.x = Math.floor(r() * 400) / 8
      row.d = maybe(19_000 + Math.floor(r() * 5))
      row.t = maybe(T0 + Math.floor(r() * 3) * 1000)
      row.z = k % 7 === 0 ? -0 : 1.5
      row.u = r() * 1e6
      out.push({ id, version, deleted: false, row })
    }
    return out
  }

  it('a scan reads a number column of few distinct values from its codes: the same values as its Arrow bytes (NULLs, tombstones, int64 past 2^53), what the vector says of itself true', async () => {
    const records = numberRecords(6000)
    const coded = await written(records, 2000, NUMS)
    const plain = await written(records, 2000, NUMS, false)
    expect((await readFile(join(coded.dir, coded.meta.index))).readUInt32LE(8)).toBe(4)
    const a = await SegmentFile.open(coded.dir, coded.meta, deps())
    const b = await SegmentFile.open(plain.dir, plain.meta, deps())
    for (let batch = 0; batch < a.batches; batch++) {
      for (const name of ['i', 'n', 'f', 'd', 't']) expect(a.codesRange(batch, name)!.length, name).toBeLessThan(a.batchRows(batch) + 8 * 16)
      expect(a.codesRange(batch, 'x')!.length).toBeGreaterThanOrEqual(2 * a.batchRows(batch))
      for (const name of ['z', 'u', 'id']) expect(a.codesRange(batch, name), name).toBeUndefined()
    }
    const coldArrow = a.arrowReads.reads
    for (const c of NUMS.filter(c => ['i', 'n', 'f', 'x', 'd', 't'].includes(c.name))) {
      expect(await whole(a, c.name, c.type), c.name).toEqual(await whole(b, c.name, c.type))
    }
    // Only the codes were read: nothing of the .arrow file.
    expect(a.arrowReads.reads).toBe(coldArrow)
    for (const c of NUMS.filter(c => ['z', 'u', 'id'].includes(c.name))) expect(await whole(a, c.name, c.type), c.name).toEqual(await whole(b, c.name, c.type))
    // -0 stays -0 (the column kept no codes for it).
    expect((await whole(a, 'z', 'float64')).some(v => Object.is(v, -0))).toBe(true)
    expect((await whole(a, 'n', 'int64')).some(v => typeof v === 'number' && Math.abs(v) > 2 ** 53)).toBe(true)
    for (let batch = 0; batch < a.batches; batch++) {
      for (const [name, type, int32] of [['i', 'int32', true], ['d', 'date', true], ['n', 'int64', false], ['x', 'float64', false]] as const) {
        const v = widenVector(await a.column(batch, name, type))
        if (v.tag !== 'num') throw new Error(`${name}: not a number vector`)
        expect(v.nulls, `${name} batch ${batch}`).toBe(v.values.filter(x => x !== x).length)
        expect(v.int32 === true, name).toBe(int32)
        // Held compact: the codes and their values, not a float64 a row.
        expect(v.coded, name).toBeDefined()
        expect(v.coded!.codes.length).toBe(a.batchRows(batch))
      }
    }
    await a.close()
    await b.close()
  })

  it('a column\'s codes blocks take whole pages, so the cache recycles one batch\'s memory for the next though their lengths differ', async () => {
    const { dir, meta } = await written(numberRecords(8000), 2000, NUMS)
    const d = deps(24 << 10)
    const seg = await SegmentFile.open(dir, meta, d)
    const lengths = new Set<number>()
    for (let b = 0; b < seg.batches; b++) {
      lengths.add(seg.codesRange(b, 'x')!.length)
      const lease = new BatchLease()
      expect(values(await seg.column(b, 'x', 'float64', lease))).toHaveLength(seg.batchRows(b))
      lease.release()
    }
    expect(lengths.size).toBeGreaterThan(1)
    expect(d.cache.stats().reused).toBeGreaterThan(0)
    await seg.close()
  })

  it('the compaction writer stores the same number codes as the record path', async () => {
    await expectCompactionWritesSameIndex(numberRecords(1500), NUMS)
  })

  it('a flipped byte in a number codes block fails that column\'s scan naming the .idx, batch and column; its rows still read from the .arrow pages', async () => {
    await expectFlippedCodes(numberRecords(2000), NUMS, { name: 'i', type: 'int32' }, { name: 'x', type: 'float64' }, 'number codes')
  })

  it('a number codes block that does not decode is an error, never wrong values', () => {
    const fail = (reason: string): Error => new Error(reason)
    const found = numberDictionary(Float64Array.from([2.5, NaN, -7, 2.5, 2 ** 60]), 10)!
    expect(found.dict).toEqual([2.5, -7, 2 ** 60])
    expect([...found.codes]).toEqual([0, -1, 1, 0, 2])
    expect(numberDictionary(Float64Array.from([1, -0]), 10)).toBeUndefined()
    expect(numberDictionary(Float64Array.from([1, 2, 3]), 2)).toBeUndefined()
    const { block, width } = encodeNumberCodes(found.codes, found.dict)
    expect(width).toBe(1)
    const back = decodeNumberCodes(block, 5, 3, width, 'float64', fail)
    expect(wideValues(back)).toEqual([2.5, NaN, -7, 2.5, 2 ** 60])
    expect(back.nulls).toBe(1)
    // A code past the values, at either width.
    const past = Uint8Array.from(block)
    past[3] = 3
    expect(() => decodeNumberCodes(past, 5, 3, width, 'float64', fail)).toThrow(/codes past/)
    const many = Array.from({ length: 300 }, (_, j) => j / 4)
    const wide = encodeNumberCodes(Int32Array.from([299, -1, 0]), many)
    expect(wide.width).toBe(2)
    const wideBack = decodeNumberCodes(wide.block, 3, 300, 2, 'float64', fail)
    expect(wideValues(wideBack)).toEqual([299 / 4, NaN, 0])
    expect(wideBack.nulls).toBe(1)
    const widePast = Uint8Array.from(wide.block)
    new DataView(widePast.buffer).setUint16(2, 300, true)
    expect(() => decodeNumberCodes(widePast, 3, 300, 2, 'float64', fail)).toThrow(/codes past/)
    // A NaN among the values (a NULL the vector would not count).
    const nan = Uint8Array.from(block)
    new DataView(nan.buffer).setFloat64(8, NaN, true)
    expect(() => decodeNumberCodes(nan, 5, 3, width, 'float64', fail)).toThrow(/NaN/)
  })
})
