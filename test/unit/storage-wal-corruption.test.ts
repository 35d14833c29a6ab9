import { access, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import { afterEach, describe, expect, it } from 'vitest'
import { crc32 } from '../../src/storage/crc32.js'
import { walFileName, type LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'
import { T0, TempDirs, makeSpace, openStore, put, recordingLogger, scanAll } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })
const space = makeSpace()

async function walFiles (dir: string): Promise<string[]> {
  return (await readdir(dir)).filter(f => /^wal-\d+\.log$/.test(f)).sort()
}

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

async function flipByte (path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+')
  const b = Buffer.alloc(1)
  await fh.read(b, 0, 1, at)
  b[0] = b[0]! ^ 0x5a
  await fh.write(b, 0, 1, at)
  await fh.close()
}

/** Applies each record as its own frame; answers each frame's end offset in the WAL file. */
async function writeFrames (store: LocalPartitionStore, dir: string, records: VersionedRecord[]): Promise<{ wal: string, ends: number[] }> {
  const wal = join(dir, (await walFiles(dir))[0]!)
  const ends: number[] = []
  for (const r of records) {
    await store.apply([r])
    ends.push((await stat(wal)).size)
  }
  return { wal, ends }
}

function many (n: number, prefix = 'k'): VersionedRecord[] {
  return Array.from({ length: n }, (_, i) => put(space, `${prefix}${i}`, T0 + i, { n: i, s: `value ${i} `.repeat(1 + (i % 5)) }))
}

/** The index of the frame holding byte `at`, given each frame's end. */
function frameAt (ends: number[], at: number): number {
  return ends.findIndex(e => e > at)
}

// Format 1, as peers wrote it before frame markers: [u32 LE length][u32 LE CRC-32 of payload][payload].
const packrV1 = new Packr({ useRecords: false, moreTypes: false })
function v1Frame (records: VersionedRecord[]): Buffer {
  const payload = packrV1.pack(records.map(r => [r.id, r.version, r.deleted ? 1 : 0, r.row === null ? null : Object.entries(r.row).flat()]))
  const h = Buffer.alloc(8)
  h.writeUInt32LE(payload.length, 0)
  h.writeUInt32LE(crc32(payload), 4)
  return Buffer.concat([h, payload])
}

describe('storage: a damaged write-ahead log', () => {
  it('a flipped byte at 30% of the WAL loses only the bad frame: every later frame is recovered, a copy is kept, the error names file and offset', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = many(400)
    const { wal, ends } = await writeFrames(store, dir, records)
    await store.close()
    const at = Math.floor(ends[ends.length - 1]! * 0.3)
    await flipByte(wal, at)
    const damaged = await readFile(wal)
    const bad = frameAt(ends, at)
    expect(bad).toBeGreaterThan(0)
    const frameStart = ends[bad - 1]!

    const log = recordingLogger()
    const s = await openStore(dir, space, {}, { log })
    const kept = records.filter((_, i) => i !== bad)
    for (const r of kept) expect((await s.get(r.id)), r.id).toEqual(r)
    expect((await s.get(records[bad]!.id))).toBeUndefined()
    expect((await scanAll(s)).size).toBe(399)
    expect(s.recovery.corruptFrames).toBe(1)
    expect(s.recovery.corruptBytes).toBe(ends[bad]! - frameStart)
    expect(s.recovery.bytesTruncated).toBe(0)

    // The original bytes are kept beside it, byte for byte.
    const copy = wal + '.corrupt'
    expect(await readFile(copy)).toEqual(damaged)
    const err = log.entries.find(e => e.level === 'error')
    expect(err?.msg).toMatch(/CORRUPT/)
    expect(err?.obj).toMatchObject({ path: wal, copy, regions: [{ offset: frameStart, bytes: ends[bad]! - frameStart, reason: expect.stringMatching(/CRC/) }] })
    const damage = s.damage()
    expect(damage).toHaveLength(1)
    expect(damage[0]).toMatchObject({ file: wal, copy, repaired: false, framesRecovered: 399, recordsRecovered: 399, regions: [{ offset: frameStart, bytes: ends[bad]! - frameStart }] })
    expect(s.needsRepair()).toBe(true)
    // The damaged file is gone (its records are in a segment): a later write is not behind a bad frame.
    expect(await exists(wal)).toBe(false)
    await s.apply([put(space, 'after', T0 + 5000, { n: 1 })])
    await s.close()

    // Durable: reopened, everything recovered is there, no damage found anew, the report stays.
    const log2 = recordingLogger()
    const again = await openStore(dir, space, {}, { log: log2 })
    for (const r of kept) expect((await again.get(r.id)), r.id).toEqual(r)
    expect((await again.get('after'))?.row?.n).toBe(1)
    expect(again.recovery.corruptFrames).toBe(0)
    expect(log2.entries.some(e => e.level === 'error')).toBe(false)
    expect(again.needsRepair()).toBe(true)
    await again.markRepaired()
    expect(again.needsRepair()).toBe(false)
    await again.close()
    const third = await openStore(dir, space)
    expect(third.damage()).toMatchObject([{ file: wal, repaired: true, repairedAt: expect.any(Number) }])
    // Deleting the report clears it; the copy is never deleted by the store.
    await rm(wal + '.corrupt.json')
    expect(third.damage()).toEqual([])
    expect(await exists(copy)).toBe(true)
    await third.close()
  })

  it('several bad frames in one file: each is its own region, everything between and after them recovered', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = many(120)
    const { wal, ends } = await writeFrames(store, dir, records)
    await store.close()
    // A length byte of frame 20 (the CRC covers it), a marker byte of frame 70.
    await flipByte(wal, ends[19]! + 8)
    await flipByte(wal, ends[69]! + 1)
    const s = await openStore(dir, space)
    for (const [i, r] of records.entries()) {
      if (i === 20 || i === 70) expect((await s.get(r.id))).toBeUndefined()
      else expect((await s.get(r.id)), r.id).toEqual(r)
    }
    const [report] = s.damage()
    expect(report?.kind).toBe('wal')
    expect(report?.kind === 'wal' ? report.regions.map(r => r.offset) : undefined).toEqual([ends[19], ends[69]])
    await s.close()
  })

  it('a damaged last frame with nothing after it is a torn tail: cut with a warning, no damage reported', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = many(10)
    const { wal, ends } = await writeFrames(store, dir, records)
    await store.close()
    await flipByte(wal, ends[9]! - 3)
    const log = recordingLogger()
    const s = await openStore(dir, space, {}, { log })
    for (const r of records.slice(0, 9)) expect((await s.get(r.id))).toEqual(r)
    expect((await s.get(records[9]!.id))).toBeUndefined()
    expect(s.recovery.corruptFrames).toBe(0)
    expect(s.recovery.bytesTruncated).toBe(ends[9]! - ends[8]!)
    expect((await stat(wal)).size).toBe(ends[8])
    expect(log.entries.some(e => e.level === 'warn' && /torn tail/.test(e.msg ?? ''))).toBe(true)
    expect(log.entries.some(e => e.level === 'error')).toBe(false)
    expect(s.damage()).toEqual([])
    expect(await exists(wal + '.corrupt')).toBe(false)
    await s.close()
  })

  it('a value holding bytes that look like a frame is not replayed as one when its own frame is damaged', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    // A whole frame in the new layout with an unsalted CRC, carrying a record nobody wrote.
    const payload = packrV1.pack([['forged', T0 * 1024, 0, ['id', 'forged', 'n', 666, 's', 'x']]])
    const forged = Buffer.alloc(12 + payload.length)
    forged.writeUInt32LE(0xc7a1f00d, 0)
    forged.writeUInt32LE(payload.length, 8)
    payload.copy(forged, 12)
    forged.writeUInt32LE(crc32(forged.subarray(8)), 4)
    const before = many(5)
    const carrier = put(space, 'carrier', T0 + 100, { n: 1, s: forged.toString('latin1') })
    const after = many(5, 'z')
    const { wal, ends } = await writeFrames(store, dir, [...before, carrier, ...after])
    await store.close()
    await flipByte(wal, ends[4]! + 8) // the carrier frame's length
    const s = await openStore(dir, space)
    expect((await s.get('forged'))).toBeUndefined()
    expect((await s.get('carrier'))).toBeUndefined()
    for (const r of [...before, ...after]) expect((await s.get(r.id))).toEqual(r)
    await s.close()
  })

  it('one damaged copy of the file header costs nothing: the other copy has the salt', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    const records = many(20)
    const { wal } = await writeFrames(store, dir, records)
    await store.close()
    await flipByte(wal, 9)
    const s = await openStore(dir, space)
    for (const r of records) expect((await s.get(r.id))).toEqual(r)
    expect(s.damage()).toEqual([])
    await s.close()
  })

  it('a WAL file in the old format (no header, no markers) is still read, and new writes go to a file in the new format', async () => {
    const dir = await dirs.make()
    const records = many(30)
    await writeFile(join(dir, walFileName(0)), Buffer.concat(records.map(r => v1Frame([r]))))
    const s = await openStore(dir, space)
    for (const r of records) expect((await s.get(r.id))).toEqual(r)
    expect(s.recovery.walRecords).toBe(30)
    const later = put(space, 'later', T0 + 9999, { n: 7 })
    await s.apply([later])
    await s.close()
    const newest = (await walFiles(dir)).at(-1)!
    expect(newest).not.toBe(walFileName(0))
    expect((await readFile(join(dir, newest))).subarray(0, 4).toString('latin1')).toBe('SWAL')
    const again = await openStore(dir, space)
    for (const r of [...records, later]) expect((await again.get(r.id))).toEqual(r)
    await again.close()
  })

  it('a bad frame in an old-format file keeps a copy and reports as lost everything from it to the end', async () => {
    const dir = await dirs.make()
    const records = many(30)
    const frames = records.map(r => v1Frame([r]))
    const file = Buffer.concat(frames)
    const start = frames.slice(0, 10).reduce((n, f) => n + f.length, 0)
    file[start + 10] ^= 0xff
    const wal = join(dir, walFileName(0))
    await writeFile(wal, file)
    const log = recordingLogger()
    const s = await openStore(dir, space, {}, { log })
    for (const r of records.slice(0, 10)) expect((await s.get(r.id))).toEqual(r)
    expect((await s.get(records[10]!.id))).toBeUndefined()
    expect(s.damage()).toMatchObject([{ file: wal, format: 1, repaired: false, regions: [{ offset: start, bytes: file.length - start }] }])
    expect(await readFile(wal + '.corrupt')).toEqual(file)
    expect(log.entries.find(e => e.level === 'error')?.obj).toMatchObject({ path: wal, regions: [{ offset: start }] })
    await s.close()
  })
})
