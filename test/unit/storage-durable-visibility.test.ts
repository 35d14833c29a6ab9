import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { StorageEngine, walFileName } from '../../src/storage/index.js'
import { Memtable } from '../../src/storage/memtable.js'
import { T0, TempDirs, makeSpace, manualClock, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

/**
 * Nothing a replica has not made durable is visible (DESIGN.md section 5; issue 11's "writes that
 * answered 503 on a full disk were visible to queries until a restart"). The WAL write is made to
 * fail for real: with one open-file slot for two partitions, partition 0's idle WAL handle is
 * closed when partition 1 writes; its file is then removed, so the next write cannot reopen it.
 */
describe('storage: a write is visible only once durable', () => {
  it('a write whose WAL frame fails is seen by no get, batch, digest or bucket', async () => {
    const dataDir = await dirs.make()
    const space = { ...makeSpace(), partitions: 2 }
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, maxOpenFiles: 1, compactionCheckIntervalMs: 0 })
    const [a, b] = await Promise.all([engine.openPartition(space, 0), engine.openPartition(space, 1)])
    await a.apply([put(space, 'kept', T0, { n: 1 })])
    await b.apply([put(space, 'other', T0, { n: 2 })]) // takes the one slot: a's WAL handle is closed
    const digestBefore = a.digest(64)
    await rm(join(a.dir, walFileName(1)), { force: true })
    await rm(join(a.dir, walFileName(2)), { force: true })

    const failed = await a.apply([put(space, 'lost', T0 + 1, { n: 3 }), put(space, 'kept', T0 + 1, { n: 4 })]).catch((e: Error) => e)
    expect(failed).toBeInstanceOf(Error)
    expect(await a.get('lost')).toBeUndefined()
    expect((await a.get('kept'))?.row?.n).toBe(1)
    const ids: string[] = []
    for await (const batch of a.batches(['id'])) {
      const v = batch.columns.get('id')!
      if (v.tag === 'str') for (const c of v.codes) ids.push(v.dict[c]!)
    }
    expect(ids).toEqual(['kept'])
    expect(a.digest(64)).toEqual(digestBefore)
    const all = (await Promise.all(Array.from({ length: 64 }, async (_, i) => await a.bucket(i, 64)))).flat()
    expect(all.map(r => r.id)).toEqual(['kept'])
    expect(a.stats().liveRows).toBe(1)
    await engine.close()
  })

  it('a write still syncing when a flush freezes its memtable goes into that flush, not into memory alone', async () => {
    const dataDir = await dirs.make()
    const space = makeSpace()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    const s = await engine.openPartition(space, 0)
    await s.apply([put(space, 'before', T0, { n: 0 })])
    // Appended to the current WAL, then the flush freezes that WAL's memtable before the fsync ends.
    const pending = s.apply(Array.from({ length: 50 }, (_, i) => put(space, `w${i}`, T0 + 1, { n: i })))
    const flushed = s.flush()
    await Promise.all([pending, flushed])
    expect(s.stats()).toMatchObject({ memtableRows: 0, segments: 1, liveRows: 51 })
    await engine.close()
    const again = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    const reopened = await again.openPartition(space, 0)
    for (let i = 0; i < 50; i++) expect((await reopened.get(`w${i}`))?.row?.n).toBe(i)
    await again.close()
  })

  it('concurrent writes of one id land newest-first whatever order their fsyncs finish in', async () => {
    const dataDir = await dirs.make()
    const space = makeSpace()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    const s = await engine.openPartition(space, 0)
    const results = await Promise.all([
      s.apply([put(space, 'k', T0 + 2, { n: 2 })]),
      s.apply([put(space, 'k', T0 + 1, { n: 1 })]),
      s.apply([put(space, 'k', T0 + 3, { n: 3 })])
    ])
    expect((await s.get('k'))?.row?.n).toBe(3)
    expect(results.reduce((n, r) => n + r.applied, 0) + results.reduce((n, r) => n + r.stale, 0)).toBe(3)
    expect(s.stats().liveRows).toBe(1)
    await engine.close()
    const again = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, compactionCheckIntervalMs: 0 })
    expect((await (await again.openPartition(space, 0)).get('k'))?.row?.n).toBe(3)
    await again.close()
  })
})

describe('Memtable: applies pending between their WAL append and their insert', () => {
  it('an apply pending on a generation a flush froze inserts into the frozen records, and the flush waits for it', async () => {
    const m = new Memtable({ memtableMaxRows: 100, memtableMaxBytes: 1 << 20 })
    const g = m.beginPending()
    const frozen = m.freeze()
    expect(m.recordsOf(g)).toBe(frozen)
    let settled = false
    const wait = m.settled(g).then(() => { settled = true })
    await Promise.resolve()
    expect(settled).toBe(false)
    const r = { id: 'a', version: T0, deleted: false, row: { id: 'a' } }
    m.recordsOf(g).push(r)
    m.endPending(g)
    await wait
    expect(settled).toBe(true)
    expect(frozen).toEqual([r])
    expect(m.records).toEqual([])
    m.release()
    expect(() => m.recordsOf(g)).toThrow(/generation 0 is gone/)
    expect(() => { m.endPending(g) }).toThrow(/no apply pending/)
  })
})
