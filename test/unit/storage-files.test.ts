import { readdir, readlink } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { FilePool, StorageEngine } from '../../src/storage/index.js'
import { T0, TempDirs, makeSpace, manualClock, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

/** Descriptors of this process open on files under `dir`, as the kernel sees them. */
async function fdsUnder (dir: string): Promise<number> {
  let n = 0
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
    if (target.startsWith(dir + '/')) n++
  }
  return n
}

describe('storage: a bound on open files', () => {
  it.runIf(process.platform === 'linux')('60 partitions written under maxOpenFiles 4 never hold more than 4 files open, and every write is durable', async () => {
    const dataDir = await dirs.make()
    const space = { ...makeSpace(), partitions: 60 }
    const engine = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, maxOpenFiles: 4, compactionCheckIntervalMs: 0 })
    const stores = await Promise.all(Array.from({ length: space.partitions }, async (_, p) => await engine.openPartition(space, p)))
    let maxSeen = 0
    for (let round = 0; round < 3; round++) {
      await Promise.all(stores.map(async (s, p) => {
        await s.apply([put(space, `p${p}-r${round}`, T0 + round, { n: p })])
        maxSeen = Math.max(maxSeen, await fdsUnder(dataDir))
      }))
      maxSeen = Math.max(maxSeen, await fdsUnder(dataDir))
    }
    expect(maxSeen).toBeGreaterThan(0)
    expect(maxSeen).toBeLessThanOrEqual(4)
    expect(engine.files.peak).toBeLessThanOrEqual(4)
    expect(engine.openFiles()).toBeLessThanOrEqual(4)
    expect(engine.files.evictions).toBeGreaterThan(0)
    await engine.close()
    expect(await fdsUnder(dataDir)).toBe(0)
    expect(engine.openFiles()).toBe(0)

    // Reopened (recovery reads every WAL under the same bound), every write is there.
    const again = new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir, maxOpenFiles: 2, compactionCheckIntervalMs: 0 })
    const reopened = await Promise.all(Array.from({ length: space.partitions }, async (_, p) => await again.openPartition(space, p)))
    for (const [p, s] of reopened.entries()) {
      for (let round = 0; round < 3; round++) expect((await s.get(`p${p}-r${round}`))?.row?.n, `p${p}-r${round}`).toBe(p)
    }
    expect(again.files.peak).toBeLessThanOrEqual(2)
    await again.close()
  })

  it('a slot is waited for while every open file is busy, and given as soon as one is released', async () => {
    const pool = new FilePool(2)
    await pool.acquire()
    await pool.acquire()
    let third = false
    const p = pool.acquire().then(() => { third = true })
    await Promise.resolve()
    expect(third).toBe(false)
    pool.release()
    await p
    expect(third).toBe(true)
    expect(pool.open).toBe(2)
    expect(pool.peak).toBe(2)
  })

  it('refuses a bound below 1', () => {
    expect(() => new FilePool(0)).toThrow(/maxOpenFiles/)
    expect(() => new StorageEngine({ clock: manualClock(), log: recordingLogger() }, { dataDir: '/nonexistent', maxOpenFiles: 1.5 })).toThrow(/maxOpenFiles/)
  })
})
