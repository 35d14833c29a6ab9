/**
 * A disk that fills up or fails under a partition (issue 13, "disk faults leave zombie replicas"):
 * storage's part. The failing writes and syncs are injected under node:fs/promises
 * (disk-faults.ts); storage knows nothing of it.
 */
import { readdir } from 'node:fs/promises'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { isNoSpace, StorageEngine, StoreFailedError, type LocalPartitionStore, type StoreFailure } from '../../src/storage/index.js'
import { diskFaults } from './disk-faults.js'
import { T0, TempDirs, makeSpace, manualClock, openStore, put, recordingLogger, scanAll } from './storage-helpers.js'

vi.mock('node:fs/promises', async (importOriginal) => (await import('./disk-faults.js')).faultyFs(await importOriginal()))

const dirs = new TempDirs()
afterEach(async () => {
  diskFaults.clear()
  await dirs.cleanup()
})
const space = makeSpace()

/** The error lines a store logged that announce a disk failure. */
function failureLines (log: ReturnType<typeof recordingLogger>): Array<{ obj: Record<string, unknown>, msg: string | undefined }> {
  return log.entries.filter(e => e.level === 'error' && /disk/.test(e.msg ?? '')).map(e => ({ obj: e.obj as Record<string, unknown>, msg: e.msg }))
}

async function ids (store: LocalPartitionStore): Promise<string[]> {
  return [...(await scanAll(store)).keys()].sort()
}

describe('storage: a disk fault fails the partition, visibly', () => {
  it('a WAL write that meets a full disk fails the store once: ENOSPC with the WAL file, one error line, later writes refused, durable rows still read', async () => {
    const dir = await dirs.make()
    const log = recordingLogger()
    const store = await openStore(dir, space, {}, { log })
    const heard: StoreFailure[] = []
    store.onFailure(f => { heard.push(f) })
    await store.apply([put(space, 'a', T0, { n: 1 })])
    expect(store.failure()).toBeUndefined()

    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dir })
    const [e1, e2] = await Promise.all([
      store.apply([put(space, 'b', T0 + 1, { n: 2 })]).catch((e: unknown) => e),
      store.apply([put(space, 'c', T0 + 1, { n: 3 })]).catch((e: unknown) => e)
    ])
    expect(e1).toBeInstanceOf(Error)
    expect(e2).toBeInstanceOf(Error)
    const f = store.failure()
    expect(f).toMatchObject({ kind: 'no-space', code: 'ENOSPC', operation: 'write-ahead log' })
    expect(f?.path).toMatch(/wal-\d+\.log$/)
    expect(heard).toEqual([f])
    // Once per transition, naming the partition, the code and the file.
    const lines = failureLines(log)
    expect(lines).toHaveLength(1)
    expect(lines[0]!.obj).toMatchObject({ code: 'ENOSPC', path: f?.path })
    expect(lines[0]!.msg).toMatch(/no space/)

    diskFaults.clear()
    // Failed stays failed until reopened: the file's state after a failed write is unknown.
    const e3 = await store.apply([put(space, 'd', T0 + 2, { n: 4 })]).catch((e: unknown) => e)
    expect(e3).toBeInstanceOf(StoreFailedError)
    expect(failureLines(log)).toHaveLength(1)
    expect(heard).toHaveLength(1)
    expect(await ids(store)).toEqual(['a'])
    expect(store.needsRebuild()).toBe(false)
    await store.close()
  })

  it('an fsync that fails with EIO fails the store as an I/O error, which needs a rebuild from the other replicas', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply([put(space, 'a', T0, { n: 1 })])
    diskFaults.fail({ op: 'sync', code: 'EIO', under: dir, name: /^wal-/ })
    await expect(store.apply([put(space, 'b', T0 + 1)])).rejects.toThrow(/EIO/)
    expect(store.failure()).toMatchObject({ kind: 'io', code: 'EIO', operation: 'write-ahead log' })
    expect(store.needsRebuild()).toBe(true)
    expect(await ids(store)).toEqual(['a'])
    await store.close()
  })

  it('a flush whose segment write meets a full disk fails the store; the memtable and its WAL are kept, and a reopen holds every acknowledged row', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply(Array.from({ length: 20 }, (_, i) => put(space, `k${i}`, T0, { n: i })))
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dir, name: /^seg-/ })
    await expect(store.flush()).rejects.toThrow(/ENOSPC/)
    expect(store.failure()).toMatchObject({ kind: 'no-space', code: 'ENOSPC', operation: 'flush' })
    expect(store.failure()?.path).toMatch(/seg-\d+\.(arrow|idx)$/)
    // Nothing half-written: the rows still read from the memtable, no segment is listed.
    expect(store.stats()).toMatchObject({ segments: 0, liveRows: 20 })
    await expect(store.apply([put(space, 'late', T0 + 1)])).rejects.toBeInstanceOf(StoreFailedError)
    await store.close()
    diskFaults.clear()
    const again = await openStore(dir, space)
    expect(again.failure()).toBeUndefined()
    expect(await ids(again)).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`).sort())
    await again.close()
  })

  it('a manifest that cannot be written fails the store, and a reopen recovers from the WAL', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space)
    await store.apply(Array.from({ length: 5 }, (_, i) => put(space, `m${i}`, T0, { n: i })))
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dir, name: /^(MANIFEST|live-)/ })
    await expect(store.flush()).rejects.toThrow(/ENOSPC/)
    expect(store.failure()).toMatchObject({ kind: 'no-space', code: 'ENOSPC', operation: 'flush' })
    await store.close()
    diskFaults.clear()
    const again = await openStore(dir, space)
    expect(await ids(again)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
    await again.close()
  })

  it('a compaction whose output meets a full disk keeps the old segments and the store working (its partial output deleted); one that meets EIO fails it', async () => {
    const dir = await dirs.make()
    const store = await openStore(dir, space, { compactionMaxSegments: 100, compactionDeadRatio: 1 })
    for (let round = 0; round < 3; round++) {
      await store.apply(Array.from({ length: 10 }, (_, i) => put(space, `k${i}`, T0 + round, { n: round })))
      await store.flush()
    }
    const before = (await readdir(dir)).filter(f => f.startsWith('seg-')).sort()
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dir, name: /^seg-/ })
    await expect(store.compact()).rejects.toThrow(/ENOSPC/)
    expect(store.failure()).toBeUndefined()
    // Nothing of the failed merge is left, not even the file its very first write failed in.
    expect((await readdir(dir)).filter(f => f.startsWith('seg-') && !before.includes(f))).toEqual([])
    expect(store.stats().segments).toBe(3)
    diskFaults.clear()
    await store.apply([put(space, 'after', T0 + 5)])

    diskFaults.fail({ op: 'sync', code: 'EIO', under: dir, name: /^seg-/ })
    await expect(store.compact()).rejects.toThrow(/EIO/)
    expect(store.failure()).toMatchObject({ kind: 'io', code: 'EIO', operation: 'compaction' })
    await store.close()
  })
})

describe('storage engine: failed partitions, their reopening and their listing', () => {
  it('reopenPartition probes the disk first: while it is full the failed store stays; once space is free a new store opens from what is durable', async () => {
    const dataDir = await dirs.make()
    const log = recordingLogger()
    const engine = new StorageEngine({ clock: manualClock(), log }, { dataDir, compactionCheckIntervalMs: 0 })
    const store = await engine.openPartition(space, 3)
    await store.apply([put(space, 'acked', T0, { n: 1 })])
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dataDir })
    await expect(store.apply([put(space, 'refused', T0 + 1)])).rejects.toThrow(/ENOSPC/)
    expect(engine.failures()).toEqual([expect.objectContaining({ space, partition: 3, open: true, kind: 'no-space', code: 'ENOSPC' })])

    await expect(engine.reopenPartition(space, 3)).rejects.toThrow(/ENOSPC/)
    expect(engine.getPartition(space.uid, 3)).toBe(store)
    expect(store.failure()?.code).toBe('ENOSPC')

    diskFaults.clear()
    const reopened = await engine.reopenPartition(space, 3)
    expect(reopened).not.toBe(store)
    expect(store.isClosed()).toBe(true)
    expect(reopened.failure()).toBeUndefined()
    expect(await engine.openPartition(space, 3)).toBe(reopened)
    expect(await ids(reopened)).toEqual(['acked'])
    await reopened.apply([put(space, 'later', T0 + 2)])
    expect(engine.failures()).toEqual([])
    // A healthy store is left as it is.
    expect(await engine.reopenPartition(space, 3)).toBe(reopened)
    expect((await readdir(reopened.dir)).filter(f => /probe/.test(f))).toEqual([])
    await engine.close()
  })

  it('the memtable budget leaves a failed partition out: it cannot flush, so the healthy ones are flushed instead', async () => {
    const dataDir = await dirs.make()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0, memtableBudgetBytes: 100 << 10 })
    const [a, b] = await Promise.all([engine.openPartition(space, 0), engine.openPartition(space, 1)])
    await a.apply(Array.from({ length: 1000 }, (_, i) => put(space, `a${i}`, T0, { n: i, s: 'v'.repeat(40) })))
    expect(a.stats().segments).toBe(0)
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: a.dir })
    await expect(a.apply([put(space, 'late', T0 + 1)])).rejects.toThrow(/ENOSPC/)
    // Before, the budget kept picking the failed partition (the largest) and its flush, resolving
    // at once, asked again: a microtask loop that never let this test go on.
    for (let k = 0; k < 20; k++) await b.apply(Array.from({ length: 50 }, (_, i) => put(space, `b${k}-${i}`, T0, { n: i, s: 'v'.repeat(40) })))
    while (b.isFlushing()) await new Promise(resolve => setImmediate(resolve))
    expect(b.stats().segments).toBeGreaterThan(0)
    expect(a.stats().segments).toBe(0)
    await engine.close()
  })

  it('a partition a full disk keeps from opening is listed as failed (open: false), and only a reopen, which probes first, tries it again', async () => {
    const dataDir = await dirs.make()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dataDir })
    await expect(engine.openPartition(space, 1)).rejects.toThrow(/ENOSPC/)
    expect(engine.failures()).toEqual([expect.objectContaining({ space, partition: 1, open: false, kind: 'no-space', code: 'ENOSPC' })])
    // Writes arriving meanwhile do not try it again (each would leave an empty WAL file behind).
    const dir = engine.partitionDir(space.uid, 1)
    const files = await readdir(dir)
    const again = await engine.openPartition(space, 1).catch((e: unknown) => e)
    expect(again).toBeInstanceOf(StoreFailedError)
    expect(isNoSpace(again)).toBe(true)
    expect(await readdir(dir)).toEqual(files)
    await expect(engine.reopenPartition(space, 1)).rejects.toThrow(/ENOSPC/)
    diskFaults.clear()
    const s = await engine.reopenPartition(space, 1)
    await s.apply([put(space, 'x', T0)])
    expect(engine.failures()).toEqual([])
    await engine.close()
  })
})
