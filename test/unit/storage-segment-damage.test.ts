/**
 * A damaged segment file met by a partition store (not just by the file reader): the read fails
 * naming the file, the damage is reported once per file, persisted beside it and read back at the
 * next open, the store says it needs a rebuild, compaction reports it instead of failing the
 * partition, and the engine rebuilds such a replica with its files moved aside.
 */
import { readdir, readFile, stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { BlockCache, FilePool, MANIFEST_FILE, SegmentCorruptError, StorageEngine, type LocalPartitionStore, type SegmentDamageReport, type VersionedRecord } from '../../src/storage/index.js'
import { SegmentFile, type SegmentFileMeta } from '../../src/storage/segment-file.js'
import { T0, TempDirs, flipByte, makeSpace, manualClock, openStore, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })
const space = makeSpace()


async function segmentsOf (dir: string): Promise<SegmentFileMeta[]> {
  return (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: SegmentFileMeta[] }).segments
}

/** Where column `name` of batch `b` of a segment lies in its .arrow file. */
async function columnRange (dir: string, meta: SegmentFileMeta, b: number, name: string): Promise<{ offset: number, length: number }> {
  const file = await SegmentFile.open(dir, meta, { files: new FilePool(), cache: new BlockCache(1 << 20) })
  try {
    return file.columnRange(b, name)!
  } finally {
    await file.close()
  }
}

/** A store of `n` rows in one flushed segment, closed; answers the rows. */
async function flushedStore (dir: string, n: number): Promise<VersionedRecord[]> {
  const store = await openStore(dir, space)
  const records = Array.from({ length: n }, (_, i) => put(space, `k${i}`, T0 + i, { n: i, s: `v${i}` }))
  await store.apply(records)
  await store.flush()
  await store.close()
  return records
}

async function drain (store: LocalPartitionStore, columns: string[]): Promise<number> {
  let rows = 0
  for await (const b of store.batches(columns)) rows += b.length
  return rows
}

describe('a damaged segment met by a partition store', () => {
  it('a flipped byte in a column buffer: get and batches fail naming the file; the store is damaged once, and the report survives a reopen', async () => {
    const dir = await dirs.make()
    const records = await flushedStore(dir, 200)
    const [meta] = await segmentsOf(dir)
    const arrow = join(dir, meta!.file)
    const range = await columnRange(dir, meta!, 0, 'n')
    await flipByte(arrow, range.offset + range.length - 1)

    const store = await openStore(dir, space)
    let heard = 0
    store.onDamage(() => { heard++ })
    expect(store.needsRepair()).toBe(false)
    const err = await store.get('k5').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SegmentCorruptError)
    expect((err as Error).message).toContain(arrow)
    expect((err as Error).message).toContain('column "n"')
    // Damaged from that read on: out of service until rebuilt, the report names file, batch, column.
    expect(store.needsRepair()).toBe(true)
    expect(store.needsRebuild()).toBe(true)
    expect(heard).toBe(1)
    expect(store.damage()).toMatchObject([{ kind: 'segment', file: arrow, batch: 0, column: 'n', reason: expect.stringMatching(/CRC/), repaired: false }])
    // A query meets the same block: the same error, the same single report.
    await expect(drain(store, ['id', 'n'])).rejects.toThrow(arrow)
    expect(heard).toBe(1)
    expect(store.damage()).toHaveLength(1)
    // Columns that are not damaged still read, rows written since are served.
    expect(await drain(store, ['id', 's'])).toBe(200)
    await store.apply([put(space, 'late', T0 + 1000, { n: 1 })])
    expect((await store.get('late'))?.row).toMatchObject({ n: 1 })
    await store.close()

    const report = JSON.parse(await readFile(arrow + '.corrupt.json', 'utf8')) as SegmentDamageReport
    expect(report).toMatchObject({ kind: 'segment', file: arrow, batch: 0, column: 'n', repaired: false })
    const again = await openStore(dir, space)
    expect(again.needsRebuild()).toBe(true)
    expect(again.damage()).toMatchObject([{ kind: 'segment', file: arrow, detectedAt: report.detectedAt }])
    // Nothing wrong is returned: every row reads right or fails.
    for (const r of records) {
      const got = await again.get(r.id).catch((e: unknown) => e)
      if (got instanceof SegmentCorruptError) continue
      expect(got).toEqual(r)
    }
    await again.close()
  })

  it('a flipped byte in a key-index block: the gets that need that block fail naming the .idx file and the damage is reported', async () => {
    const dir = await dirs.make()
    const records = await flushedStore(dir, 2000)
    const [meta] = await segmentsOf(dir)
    const idx = join(dir, meta!.index)
    // The key-index blocks come right before the page table (4 bytes a 4 KiB page of the .arrow
    // file, last): this is a byte of the last block (CRC-checked when read).
    await flipByte(idx, (await stat(idx)).size - 4 * Math.ceil(meta!.bytes / 4096) - 1)

    const store = await openStore(dir, space)
    let heard = 0
    store.onDamage(() => { heard++ })
    let failed = 0
    for (const r of records) {
      const got = await store.get(r.id).catch((e: unknown) => e)
      if (got instanceof Error) {
        expect(got.name).toBe('KeyIndexCorruptError')
        expect(got.message).toContain(idx)
        failed++
      } else {
        expect(got).toEqual(r)
      }
    }
    expect(failed).toBeGreaterThan(0)
    expect(failed).toBeLessThan(records.length)
    expect(heard).toBe(1)
    expect(store.needsRebuild()).toBe(true)
    expect(store.damage()).toMatchObject([{ kind: 'segment', file: idx, offset: expect.any(Number), repaired: false }])
    await store.close()
  })

  it('a flipped byte in a utf8 codes block (.idx format 3): the scan of that column fails naming the .idx, batch and column, the damage is reported; gets still read the rows from the .arrow', async () => {
    const dir = await dirs.make()
    const store0 = await openStore(dir, space)
    const records = Array.from({ length: 2000 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i, s: `v${i % 5}` }))
    await store0.apply(records)
    await store0.flush()
    await store0.close()
    const [meta] = await segmentsOf(dir)
    const idx = join(dir, meta!.index)
    const file = await SegmentFile.open(dir, meta!, { files: new FilePool(), cache: new BlockCache(1 << 20) })
    const codes = file.codesRange(0, 's')!
    await file.close()
    await flipByte(idx, codes.offset + 3)

    const store = await openStore(dir, space)
    let heard = 0
    store.onDamage(() => { heard++ })
    await expect(drain(store, ['id', 's'])).rejects.toThrow(idx)
    expect(heard).toBe(1)
    expect(store.needsRebuild()).toBe(true)
    expect(store.damage()).toMatchObject([{ kind: 'segment', file: idx, batch: 0, column: 's', reason: expect.stringMatching(/utf8 codes: CRC/), repaired: false }])
    // The other columns scan; a get reads its values from the .arrow pages, right.
    expect(await drain(store, ['id', 'n'])).toBe(2000)
    for (const r of records.slice(0, 50)) expect(await store.get(r.id)).toEqual(r)
    await store.close()
  })

  it('a truncated .arrow fails the open naming the file and leaves a report beside it', async () => {
    const dir = await dirs.make()
    await flushedStore(dir, 100)
    const [meta] = await segmentsOf(dir)
    const arrow = join(dir, meta!.file)
    await truncate(arrow, 100)
    const err = await openStore(dir, space).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SegmentCorruptError)
    expect((err as Error).message).toContain(arrow)
    expect(JSON.parse(await readFile(arrow + '.corrupt.json', 'utf8'))).toMatchObject({ kind: 'segment', file: arrow, repaired: false, reason: expect.stringMatching(/bytes/) })
    // Nothing was dropped: the files are there for a rebuild or an operator.
    expect(await readdir(dir)).toEqual(expect.arrayContaining([meta!.file, meta!.index]))
  })

  it('compaction meeting a damaged block reports it and leaves the partition taking writes; later merges leave that segment out', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { compactionMaxSegments: 3 })
    for (let s = 0; s < 3; s++) {
      await store.apply(Array.from({ length: 50 }, (_, i) => put(space, `s${s}-${i}`, T0 + s * 100 + i, { n: i })))
      await store.flush()
    }
    const [first] = await segmentsOf(dir)
    const range = await columnRange(dir, first!, 0, 'n')
    await flipByte(join(dir, first!.file), range.offset + range.length - 1)
    // The block is not cached (nothing read it): compaction reads it from disk.
    await expect(store.compact()).rejects.toThrow(SegmentCorruptError)
    expect(store.damage()).toMatchObject([{ kind: 'segment', file: join(dir, first!.file), column: 'n' }])
    expect(store.stats().segments).toBe(3)
    // Not a disk failure: writes are still taken.
    await store.apply([put(space, 'after', T0 + 5000, { n: 7 })])
    expect((await store.get('after'))?.row).toMatchObject({ n: 7 })
    // Past compactionMaxSegments the size tier merges the healthy segments only.
    for (let s = 3; s < 6; s++) {
      await store.apply(Array.from({ length: 50 }, (_, i) => put(space, `s${s}-${i}`, T0 + s * 100 + i, { n: i })))
      await store.flush()
      await (store as unknown as { compactor: { settled: () => Promise<void> } }).compactor.settled()
    }
    const left = await segmentsOf(dir)
    expect(left.map(m => m.file)).toContain(first!.file)
    expect(left.length).toBeLessThan(7)
    expect(store.damage()).toHaveLength(1)
    await store.close()
  })
})

describe('StorageEngine.rebuildPartition', () => {
  it('moves the damaged replica aside whole and opens a fresh one that carries the report until repaired', async () => {
    const data = await dirs.make()
    const clock = manualClock()
    const engine = new StorageEngine({ clock, log: recordingLogger() }, { dataDir: data, compactionCheckIntervalMs: 0 })
    const store = await engine.openPartition(space, 0)
    await store.apply(Array.from({ length: 100 }, (_, i) => put(space, `k${i}`, T0 + i, { n: i })))
    await store.flush()
    const dir = engine.partitionDir(space.uid, 0)
    const [meta] = await segmentsOf(dir)
    const arrow = join(dir, meta!.file)
    const range = await columnRange(dir, meta!, 0, 'n')
    await flipByte(arrow, range.offset + range.length - 1)
    // The flushed block may be in the cache from the write: a fresh engine reads it from disk.
    await engine.close()
    const engine2 = new StorageEngine({ clock, log: recordingLogger() }, { dataDir: data, compactionCheckIntervalMs: 0 })
    const damaged = await engine2.openPartition(space, 0)
    await expect(damaged.get('k1')).rejects.toThrow(arrow)
    expect(engine2.damage()).toMatchObject([{ kind: 'segment', file: arrow, open: true, partition: 0, repaired: false }])

    const fresh = await engine2.rebuildPartition(space, 0)
    const aside = `${dir}.corrupt-${clock.wallNow()}`
    // The old replica is kept whole where the log says, nothing deleted.
    expect(await readdir(aside)).toEqual(expect.arrayContaining([meta!.file, meta!.index, MANIFEST_FILE, `${meta!.file}.corrupt.json`]))
    expect(damaged.isClosed()).toBe(true)
    expect(await engine2.openPartition(space, 0)).toBe(fresh)
    expect(fresh.stats()).toMatchObject({ liveRows: 0, segments: 0 })
    expect(fresh.needsRepair()).toBe(true)
    expect(fresh.needsRebuild()).toBe(false)
    expect(fresh.damage()).toMatchObject([{ kind: 'segment', file: join(aside, meta!.file), movedTo: aside, repaired: false }])
    await fresh.apply([put(space, 'k1', T0 + 1, { n: 1 })])
    await fresh.markRepaired()
    expect(fresh.needsRepair()).toBe(false)
    await engine2.close()

    // The carried report, repaired, outlives a restart; the fresh replica holds what was written to it.
    const engine3 = new StorageEngine({ clock, log: recordingLogger() }, { dataDir: data, compactionCheckIntervalMs: 0 })
    const reopened = await engine3.openPartition(space, 0)
    expect(reopened.damage()).toMatchObject([{ kind: 'segment', movedTo: aside, repaired: true }])
    expect((await reopened.get('k1'))?.row).toMatchObject({ n: 1 })
    expect(await engine3.listOnDisk()).toEqual([{ uid: space.uid, partition: 0 }])
    await engine3.close()
  })

  it('rebuilds a replica that a damaged segment keeps from opening; until then the engine reports it', async () => {
    const data = await dirs.make()
    const clock = manualClock()
    const engine = new StorageEngine({ clock, log: recordingLogger() }, { dataDir: data, compactionCheckIntervalMs: 0 })
    const store = await engine.openPartition(space, 0)
    await store.apply([put(space, 'a', T0, { n: 1 })])
    await store.flush()
    await engine.close()
    const dir = engine.partitionDir(space.uid, 0)
    const [meta] = await segmentsOf(dir)
    await flipByte(join(dir, meta!.index), 3)

    const engine2 = new StorageEngine({ clock, log: recordingLogger() }, { dataDir: data, compactionCheckIntervalMs: 0 })
    await expect(engine2.openPartition(space, 0)).rejects.toThrow(join(dir, meta!.index))
    expect(engine2.damage()).toMatchObject([{ kind: 'segment', file: join(dir, meta!.index), open: false, error: expect.stringContaining(meta!.index) }])
    const fresh = await engine2.rebuildPartition(space, 0)
    expect(fresh.needsRepair()).toBe(true)
    expect(engine2.damage()).toMatchObject([{ kind: 'segment', open: true, movedTo: `${dir}.corrupt-${clock.wallNow()}` }])
    await engine2.close()
  })
})
