import { cp, open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Float64, Utf8, tableFromIPC, tableToIPC, vectorFromArray } from 'apache-arrow'
import { pack } from 'msgpackr'
import { afterEach, describe, expect, it } from 'vitest'
import { addColumn } from '../../src/schema/index.js'
import { BlockCache, FilePool, MANIFEST_FILE, SegmentCorruptError, packRecords, walFileName, type LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { SegmentFile, type SegmentFileMeta } from '../../src/storage/segment-file.js'
import { Segment, VERSION_COLUMN, encodeSegment } from '../../src/storage/segment.js'
import { T0, TempDirs, del, makeSpace, openStore, put, recordingLogger, scanAll } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })
const space = makeSpace()

async function walFiles (dir: string): Promise<string[]> {
  return (await readdir(dir)).filter(f => f.startsWith('wal-')).sort()
}

/** Applies each record as its own apply(), so each is its own frame. */
async function applyOneByOne (store: LocalPartitionStore, records: VersionedRecord[]): Promise<void> {
  for (const r of records) await store.apply([r])
}

async function expectHolds (store: LocalPartitionStore, records: VersionedRecord[]): Promise<void> {
  for (const r of records) expect((await store.get(r.id)), r.id).toEqual(r)
}

describe('storage recovery', () => {
  it('every acknowledged record is present after close and reopen', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 25 })
    const records = Array.from({ length: 100 }, (_, i) => i % 10 === 3 ? del(`k${i}`, T0 + i) : put(space, `k${i}`, T0 + i, { n: i, s: `v${i}` }))
    await applyOneByOne(store, records)
    await store.close()
    const again = await openStore(dir, space)
    await expectHolds(again, records)
    expect(again.stats().liveRows + again.stats().tombstones).toBe(100)
    await again.close()
  })

  it('a WAL replay resolves ids held by segments through their key index without caching its blocks', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 100_000 })
    const base = Array.from({ length: 400 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await store.apply(base)
    await store.flush()
    // Newer versions of ids the segment holds, older ones it must keep, a delete: in the WAL only.
    const newer = Array.from({ length: 40 }, (_, i) => put(space, `k${i * 10}`, T0 + 10_000 + i, { n: -i - 1 }))
    const older = [put(space, 'k5', T0 - 1, { n: 999 })]
    const gone = [del('k7', T0 + 20_000)]
    await store.apply([...newer, ...older, ...gone])
    const crashed = await dirs.make()
    await cp(dir, crashed, { recursive: true })
    const cache = new BlockCache(64 << 20)
    const again = await openStore(crashed, space, {}, { cache })
    expect(again.recovery.walRecords).toBeGreaterThanOrEqual(41)
    // The key index blocks read to place those ids were not kept.
    expect(cache.stats().entries).toBe(0)
    const expected = new Map(base.map(r => [r.id, r]))
    for (const r of [...newer, ...gone]) expected.set(r.id, r)
    const got = await scanAll(again)
    expect(got).toEqual(expected)
    expect(again.stats().liveRows).toBe(399)
    // A lookup after the replay caches as usual.
    expect(await again.get('k11')).toEqual(base[11])
    expect(cache.stats().entries).toBeGreaterThan(0)
    await again.close()
    await store.close()
  })

  it('after kill -9 (the directory copied while the store is open) every acknowledged record is present', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 30 })
    const records = Array.from({ length: 95 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await Promise.all(records.map(r => store.apply([r])))
    await store.flush()
    const extra = [put(space, 'late', T0, { n: 1 }), del('k0', T0 + 1000)]
    await store.apply(extra)
    const crashed = await dirs.make()
    await cp(dir, crashed, { recursive: true })
    const log = recordingLogger()
    const again = await openStore(crashed, space, {}, { log })
    await expectHolds(again, [...records.slice(1), ...extra])
    expect(again.recovery.walRecords).toBeGreaterThanOrEqual(2)
    expect(again.recovery.segments).toBeGreaterThan(0)
    expect(again.recovery.bytesTruncated).toBe(0)
    await again.close()
    await store.close()
  })

  it('a torn tail at every offset of the last frame is truncated and the rest recovered', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const first = Array.from({ length: 5 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i, s: 'x'.repeat(i) }))
    await applyOneByOne(store, first)
    const wal = join(dir, (await walFiles(dir))[0]!)
    const goodEnd = (await stat(wal)).size
    const last = put(space, 'last', T0, { n: 99, s: 'the last frame' })
    await store.apply([last])
    await store.close()
    const full = await readFile(wal)
    expect(full.length).toBeGreaterThan(goodEnd)
    for (let cut = goodEnd + 1; cut < full.length; cut++) {
      const d = await dirs.make()
      await writeFile(join(d, walFileName(0)), full.subarray(0, cut))
      const log = recordingLogger()
      const s = await openStore(d, space, {}, { log })
      await expectHolds(s, first)
      expect((await s.get('last'))).toBeUndefined()
      expect(s.recovery.bytesTruncated).toBe(cut - goodEnd)
      expect(s.recovery.corruptFrames).toBe(0)
      expect((await stat(join(d, walFileName(0)))).size).toBe(goodEnd)
      expect(log.entries.some(e => e.level === 'warn' && /torn tail/.test(e.msg ?? ''))).toBe(true)
      await s.close()
      // Writes after recovery land after the cut, and survive another reopen.
      const s2 = await openStore(d, space)
      await s2.apply([put(space, 'after', T0, { n: 1 })])
      await s2.close()
      const s3 = await openStore(d, space)
      await expectHolds(s3, first)
      expect((await s3.get('after'))?.row?.n).toBe(1)
      await s3.close()
      await dirs.cleanup()
    }
  })

  it('a WAL truncated at random offsets keeps exactly the records of the complete frames', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = Array.from({ length: 40 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    const ends: number[] = []
    const walName = (await walFiles(dir))[0]!
    const wal = (): string => join(dir, walName)
    for (const r of records) {
      await store.apply([r])
      ends.push((await stat(wal())).size)
    }
    await store.close()
    const full = await readFile(wal())
    const random = new SeededRandom(7)
    for (let trial = 0; trial < 25; trial++) {
      const cut = random.int(full.length + 1)
      const d = await dirs.make()
      await writeFile(join(d, walFileName(0)), full.subarray(0, cut))
      const s = await openStore(d, space)
      const complete = ends.filter(e => e <= cut).length
      await expectHolds(s, records.slice(0, complete))
      for (const r of records.slice(complete)) expect((await s.get(r.id))).toBeUndefined()
      await s.close()
    }
  })

  it('a corrupted CRC in the middle skips that frame only, logs an error and recovers every frame after it', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = Array.from({ length: 10 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    const ends: number[] = []
    const walPath = join(dir, (await walFiles(dir))[0]!)
    for (const r of records) {
      await store.apply([r])
      ends.push((await stat(walPath)).size)
    }
    await store.close()
    // Flip one payload byte of frame 4 (bytes ends[3] .. ends[4]; its header is 12 bytes).
    const fh = await open(walPath, 'r+')
    const at = ends[3]! + 12 + 3
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, at)
    b[0] = b[0]! ^ 0xff
    await fh.write(b, 0, 1, at)
    await fh.close()
    const log = recordingLogger()
    const s = await openStore(dir, space, {}, { log })
    await expectHolds(s, [...records.slice(0, 4), ...records.slice(5)])
    expect((await s.get('k4'))).toBeUndefined()
    expect(s.recovery.corruptFrames).toBe(1)
    expect(s.recovery.corruptBytes).toBe(ends[4]! - ends[3]!)
    expect(s.recovery.bytesTruncated).toBe(0)
    const err = log.entries.find(e => e.level === 'error')
    expect(err?.msg).toMatch(/CORRUPT/)
    expect(err?.obj).toMatchObject({ path: walPath, regions: [{ offset: ends[3], reason: expect.stringMatching(/CRC/) }] })
    expect((await scanAll(s)).size).toBe(9)
    await s.close()
  })

  it('a crash after the segment and manifest but before the old WAL was deleted recovers exactly', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = Array.from({ length: 20 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await store.apply(records)
    const oldWal = (await walFiles(dir))[0]!
    const walBytes = await readFile(join(dir, oldWal))
    await store.flush()
    const newer = put(space, 'k3', T0 + 500, { n: -3 })
    await store.apply([newer, del('k4', T0 + 500)])
    await store.close()
    // Put the old WAL back as if the unlink never happened.
    await writeFile(join(dir, oldWal), walBytes)
    const s = await openStore(dir, space)
    expect((await s.get('k3'))).toEqual(newer)
    expect((await s.get('k4'))?.deleted).toBe(true)
    await expectHolds(s, records.filter(r => r.id !== 'k3' && r.id !== 'k4'))
    expect(await walFiles(dir)).not.toContain(oldWal) // covered by the manifest: deleted, not replayed
    await s.close()
  })

  it('replaying WAL records that are already in a segment is harmless', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = Array.from({ length: 20 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await store.apply(records)
    const oldWal = (await walFiles(dir))[0]!
    const walBytes = await readFile(join(dir, oldWal))
    await store.flush()
    const newer = put(space, 'k3', T0 + 500, { n: -3 })
    await store.apply([newer])
    await store.close()
    // Manifest pointing back before the old WAL: both the segment and the WAL hold the records.
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { walFrom: number }
    manifest.walFrom = 0
    await writeFile(join(dir, MANIFEST_FILE), JSON.stringify(manifest))
    await writeFile(join(dir, oldWal), walBytes)
    const s = await openStore(dir, space)
    expect(s.recovery.walRecords).toBe(21)
    expect((await s.get('k3'))).toEqual(newer)
    await expectHolds(s, records.filter(r => r.id !== 'k3'))
    expect(s.stats().liveRows).toBe(20)
    const d = s.digest()
    await s.flush()
    expect(s.digest()).toEqual(d)
    await s.close()
  })

  it('a crash after the segment was written but before the manifest named it recovers from the WAL', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = Array.from({ length: 20 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i }))
    await store.apply(records)
    await store.flush() // first segment: seg-00000001
    await store.apply([put(space, 'k1', T0 + 100, { n: 100 })])
    const before = await dirs.make()
    await cp(dir, before, { recursive: true }) // the state before the second flush
    await store.flush()
    const seg2 = (await readdir(dir)).filter(f => f.endsWith('.arrow')).sort().pop()!
    await store.close()
    // Crash image: the new segment file exists, the manifest and WAL are still the old ones.
    await cp(join(dir, seg2), join(before, seg2))
    const s = await openStore(before, space)
    expect(s.recovery.orphanSegments).toBe(1)
    expect(await readdir(before)).not.toContain(seg2)
    expect((await s.get('k1'))?.row?.n).toBe(100)
    await expectHolds(s, records.filter(r => r.id !== 'k1'))
    expect(s.stats()).toMatchObject({ segments: 1, liveRows: 20 })
    await s.close()
  })

  it('a segment listed in the manifest but corrupt or missing is an error naming the file', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply([put(space, 'a', T0, { n: 1 })])
    await store.flush()
    await store.close()
    const seg = (await readdir(dir)).find(f => f.endsWith('.arrow'))!
    const idx = seg.replace(/\.arrow$/, '.idx')
    const bytes = await readFile(join(dir, seg))
    // The rows stay on disk at open: a flipped byte in them is found (CRC per column block) by
    // the read that meets it, which fails naming the file, the batch and the column.
    const meta = (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: SegmentFileMeta[] }).segments[0]!
    const file = await SegmentFile.open(dir, meta, { files: new FilePool(), cache: new BlockCache(1 << 20) })
    const nRange = file.columnRange(0, 'n')!
    await file.close()
    const flipped = Buffer.from(bytes)
    flipped[nRange.offset + nRange.length - 1] ^= 0x01
    await writeFile(join(dir, seg), flipped)
    const opened = await openStore(dir, space)
    const err = await opened.get('a').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SegmentCorruptError)
    expect((err as Error).message).toContain(join(dir, seg))
    await opened.close()
    // The index file is read at open: a flipped byte there fails the open.
    const idxBytes = await readFile(join(dir, idx))
    const idxFlipped = Buffer.from(idxBytes)
    idxFlipped[Math.floor(idxBytes.length / 2)] ^= 0x01
    await writeFile(join(dir, idx), idxFlipped)
    await writeFile(join(dir, seg), bytes)
    await expect(openStore(dir, space)).rejects.toThrow(SegmentCorruptError)
    await writeFile(join(dir, idx), idxBytes)
    await truncate(join(dir, seg), 100)
    await expect(openStore(dir, space)).rejects.toThrow(seg)
    // The files are still there: nothing was dropped.
    expect(await readdir(dir)).toEqual(expect.arrayContaining([seg, idx]))
  })

  it('a segment whose id or $version column holds a NULL is corrupt, not read with a hole', () => {
    const t = tableFromIPC(encodeSegment(space.schema, [put(space, 'a', T0, { n: 1 }), put(space, 'b', T0 + 1, { n: 2 })]))
    const meta = { id: 1, file: 'seg-x.arrow', rows: 2, bytes: 0, crc32: 0 }
    const nullId = tableToIPC(t.setChild('id', vectorFromArray(['a', null], new Utf8())), 'file')
    expect(() => Segment.decode(meta, 'seg-x.arrow', nullId)).toThrow(/a row has no id/)
    const nullVersion = tableToIPC(t.setChild(VERSION_COLUMN, vectorFromArray([T0, null], new Float64())), 'file')
    expect(() => Segment.decode(meta, 'seg-x.arrow', nullVersion)).toThrow(/row 1 has no version/)
  })

  it('a directory with segments but no manifest refuses to open rather than discard them', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { memtableMaxRows: 1 })
    await store.apply([put(space, 'a', T0)])
    await store.flush()
    await store.apply([put(space, 'b', T0)])
    await store.flush()
    await store.close()
    await writeFile(join(dir, MANIFEST_FILE), '') // not JSON
    await expect(openStore(dir, space)).rejects.toThrow(/manifest .* not valid JSON/)
    const { rm } = await import('node:fs/promises')
    await rm(join(dir, MANIFEST_FILE))
    await expect(openStore(dir, space)).rejects.toThrow(/no MANIFEST/)
  })
})

describe('storage: packed frames (a coordinator\'s bytes logged as they came)', () => {
  const names = space.schema.map(c => c.name)
  const batch = (): VersionedRecord[] => [put(space, 'a', T0, { n: 1, s: 'x' }), del('b', T0 + 1), put(space, 'c', T0 + 2, { n: 3 })]

  it('records applied with their packed bytes are logged unchanged and recover exactly', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = batch()
    const packed = packRecords(names, records)
    expect(await store.apply(records, packed)).toEqual({ applied: 3, stale: 0 })
    await store.close()
    const wal = await readFile(join(dir, (await walFiles(dir))[0]!))
    expect(wal.indexOf(Buffer.from(packed.bytes))).toBeGreaterThan(0)
    const again = await openStore(dir, space)
    await expectHolds(again, records)
    expect(again.recovery.walRecords).toBe(3)
    await again.close()
  })

  it('a packed batch holding a stale record logs only the winners, encoded anew', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const newer = put(space, 'a', T0 + 50, { n: 50 })
    await store.apply([newer])
    const records = batch()
    const packed = packRecords(names, records)
    expect(await store.apply(records, packed)).toEqual({ applied: 2, stale: 1 })
    await store.close()
    const wal = await readFile(join(dir, (await walFiles(dir))[0]!))
    expect(wal.indexOf(Buffer.from(packed.bytes))).toBe(-1)
    const again = await openStore(dir, space)
    await expectHolds(again, [newer, records[1]!, records[2]!])
    await again.close()
  })

  it('a packed frame from before a column was added recovers with that column null', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply(batch(), packRecords(names, batch()))
    await store.close()
    const wider = { ...space, schema: addColumn(space.schema, { name: 'note', type: 'utf8', nullable: true }) }
    const again = await openStore(dir, wider)
    expect((await again.get('a'))?.row).toEqual({ id: 'a', n: 1, s: 'x', note: null })
    await again.close()
  })

  it('a torn packed frame is truncated and the frames before it recovered', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const first = put(space, 'first', T0, { n: 0 })
    await store.apply([first])
    const wal = join(dir, (await walFiles(dir))[0]!)
    const goodEnd = (await stat(wal)).size
    await store.apply(batch(), packRecords(names, batch()))
    await store.close()
    const full = await readFile(wal)
    for (const cut of [goodEnd + 1, goodEnd + 9, goodEnd + 12, full.length - 1]) {
      const d = await dirs.make()
      await writeFile(join(d, walFileName(0)), full.subarray(0, cut))
      const s = await openStore(d, space)
      await expectHolds(s, [first])
      expect((await s.get('a'))).toBeUndefined()
      expect(s.recovery.bytesTruncated).toBe(cut - goodEnd)
      await s.close()
    }
  })

  it('a packed frame whose inner bytes are not records is corrupt (not a torn tail, its CRC is good): reported as damage', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const first = put(space, 'first', T0, { n: 0 })
    await store.apply([first])
    await store.apply(batch(), { names, bytes: Uint8Array.from(pack(['a', 1, false])) })
    await store.close()
    const log = recordingLogger()
    const again = await openStore(dir, space, {}, { log })
    await expectHolds(again, [first])
    expect((await again.get('a'))).toBeUndefined()
    expect(again.recovery.corruptFrames).toBe(1)
    expect(again.damage()).toMatchObject([{ repaired: false, regions: [{ reason: expect.stringMatching(/undecodable/) }] }])
    await again.close()
  })
})
