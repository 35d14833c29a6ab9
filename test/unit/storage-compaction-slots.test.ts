/** The peer's bound on compactions at once (compaction-slots.ts), alone and through an engine. */
import { afterEach, describe, expect, it } from 'vitest'
import { CompactionSlots, LocalPartitionStore, StorageEngine } from '../../src/storage/index.js'
import { TempDirs, makeSpace, manualClock, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

describe('compaction slots', () => {
  it('runs at most max at once, in arrival order, and frees a slot when work fails', async () => {
    const slots = new CompactionSlots(2)
    const started: number[] = []
    const finish: Array<() => void> = []
    const fail: Array<(e: Error) => void> = []
    const runs = [0, 1, 2, 3].map(i => slots.run(async () => {
      started.push(i)
      await new Promise<void>((resolve, reject) => { finish[i] = resolve; fail[i] = reject })
      return i
    }))
    await new Promise(resolve => setImmediate(resolve))
    expect(started).toEqual([0, 1])
    expect([slots.active, slots.waiting]).toEqual([2, 2])
    fail[0]!(new Error('disk'))
    await expect(runs[0]).rejects.toThrow('disk')
    await new Promise(resolve => setImmediate(resolve))
    expect(started).toEqual([0, 1, 2])
    finish[1]!(); finish[2]!()
    await new Promise(resolve => setImmediate(resolve))
    expect(started).toEqual([0, 1, 2, 3])
    finish[3]!()
    expect(await Promise.all(runs.slice(1))).toEqual([1, 2, 3])
    expect([slots.active, slots.waiting, slots.peak]).toEqual([0, 0, 2])
    expect(() => new CompactionSlots(0)).toThrow(RangeError)
  })

  it('an engine\'s partitions compact one at a time with maxConcurrentCompactions 1, and every compaction still runs', async () => {
    const space = makeSpace()
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, {
      dataDir: await dirs.make(), maxConcurrentCompactions: 1, compactionCheckIntervalMs: 0, memtableMaxRows: 20, compactionMaxSegments: 2
    })
    try {
      const stores = await Promise.all([0, 1, 2, 3].map(async p => await engine.openPartition(space, p)))
      let ms = 1
      // Rows 0-59 rewritten in every round: each flush leaves superseded rows behind, so every
      // merge has work, and three flushes a round pass compactionMaxSegments.
      for (let round = 0; round < 4; round++) {
        await Promise.all(stores.map(async (s, p) => {
          for (let b = 0; b < 3; b++) {
            await s.apply(Array.from({ length: 20 }, (_, i) => put(space, `p${p}-${b * 20 + i}`, ms++, { n: round })))
            await s.flush()
          }
        }))
      }
      await Promise.all(stores.map(async s => { await s.compact() }))
      expect(engine.compactions.peak).toBe(1)
      for (const [p, s] of stores.entries()) {
        expect(s.counters.compactions).toBeGreaterThan(1)
        expect(s.stats().liveRows).toBe(60)
        expect((await s.get(`p${p}-59`))?.row?.n).toBe(3)
      }
    } finally {
      await engine.close()
    }
  })

  it('a writer past compactionMaxSegments + 1 segments waits for the running compaction, and goes on when it is done', async () => {
    const space = makeSpace()
    const slots = new CompactionSlots(1)
    // Hold the only slot: the store's compaction starts (in flight) but cannot merge yet.
    let free!: () => void
    const held = slots.run(async () => { await new Promise<void>(resolve => { free = resolve }) })
    const store = await LocalPartitionStore.open({ clock: manualClock(), log: recordingLogger(), compactions: slots }, space, 0, await dirs.make(), {
      compactionCheckIntervalMs: 0, memtableMaxRows: 1000, compactionMaxSegments: 2
    })
    try {
      let ms = 1
      // Each flush adds a segment; past 2 the compaction is due and waits for the slot.
      for (let s = 0; s < 4; s++) {
        await store.apply([put(space, `k${s}`, ms++, { n: s })])
        await store.flush()
      }
      expect(store.stats().segments).toBe(4)
      expect(slots.waiting).toBe(1)
      let applied = false
      const write = store.apply([put(space, 'late', ms++, { n: 9 })]).then(r => { applied = true; return r })
      for (let turn = 0; turn < 50; turn++) await new Promise(resolve => setImmediate(resolve))
      expect(applied).toBe(false)
      free()
      await held
      expect((await write).applied).toBe(1)
      expect(store.stats().segments).toBeLessThanOrEqual(2)
      expect((await store.get('late'))?.row?.n).toBe(9)
    } finally {
      await store.close()
    }
  })
})
