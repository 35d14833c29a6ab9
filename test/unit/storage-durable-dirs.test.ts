import { describe, expect, it } from 'vitest'
import type { FileSystem } from '../../src/runtime/index.js'
import { DurableDirs } from '../../src/storage/fsutil.js'
import { MemoryFileSystem } from '../sim/memory-fs.js'

const ROOT = '/data'
const partitionDir = (p: number): string => `${ROOT}/spaces/u1/${p}`

/** A file written and synced into `dir`, its entry synced: what a partition's first write leaves. */
async function writeDurably (fs: FileSystem, dir: string): Promise<void> {
  const fh = await fs.open(`${dir}/MANIFEST`, 'w')
  await fh.write(new Uint8Array([1, 2, 3]), 0, 3, 0)
  await fh.sync()
  await fh.close()
  await fs.syncDir(dir)
}

/**
 * `fs` with directory fsyncs that finish only when the test lets a round of them finish (a slow
 * disk): roundsUntil(work) counts the rounds `work` waited for, fsyncs one after another.
 */
function slowDirSyncs (fs: FileSystem): { fs: FileSystem, roundsUntil: (work: Promise<unknown>) => Promise<number>, round: () => number } {
  let waiting: Array<() => void> = []
  let released = 0
  const slow: FileSystem = {
    ...fs,
    syncDir: async (path: string) => {
      await new Promise<void>(resolve => { waiting.push(resolve) })
      await fs.syncDir(path)
    }
  }
  const settle = async (): Promise<void> => { for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve)) }
  return {
    fs: slow,
    round: () => released,
    roundsUntil: async (work: Promise<unknown>) => {
      let done = false
      void work.then(() => { done = true })
      let rounds = 0
      await settle()
      while (!done) {
        if (waiting.length === 0) throw new Error('the work waits for something other than a directory fsync')
        const round = waiting
        waiting = []
        rounds++
        released++
        for (const release of round) release()
        await settle()
      }
      await work
      return rounds
    }
  }
}

/** A disk whose data directory exists durably (it was there before the peer ran). */
async function disk (): Promise<MemoryFileSystem> {
  const d = new MemoryFileSystem()
  await d.mkdir(ROOT)
  await d.syncDir('/')
  return d
}

describe('DurableDirs', () => {
  it('makes the entries of directories it creates durable, deepest first', async () => {
    const d = await disk()
    const fs = d.process()
    const dirs = new DurableDirs(fs, ROOT)
    await Promise.all([0, 1, 2].map(async p => { await dirs.ensure(partitionDir(p)); await writeDurably(fs, partitionDir(p)) }))
    d.crash()
    for (const p of [0, 1, 2]) expect(d.existsSync(`${partitionDir(p)}/MANIFEST`)).toBe(true)
  })

  it('syncs, once per process, directories an earlier process made and died before syncing', async () => {
    // The earlier process made the directories and was killed before any fsync of them: the OS
    // keeps the entries (no power was lost), but nothing made them durable.
    const d = await disk()
    for (let p = 0; p < 16; p++) await d.process().mkdir(partitionDir(p))
    d.kill()
    const fs = d.process()
    const slow = slowDirSyncs(fs)
    const dirs = new DurableDirs(slow.fs, ROOT)
    const ensured = Promise.all(Array.from({ length: 16 }, async (_, p) => { await dirs.ensure(partitionDir(p)) }))
    // The three levels (the space's directory, spaces/, the data directory) are synced for all 16
    // at once: one directory fsync's wait, not one a level, one after another (three before).
    expect(await slow.roundsUntil(ensured)).toBe(1)
    for (let p = 0; p < 16; p++) await writeDurably(fs, partitionDir(p))
    // Then the power goes: every partition's acknowledged file is still there.
    d.crash()
    for (let p = 0; p < 16; p++) expect(d.existsSync(`${partitionDir(p)}/MANIFEST`), `partition ${p}`).toBe(true)
  })

  it('a directory made by this process waits for an fsync begun after it was made', async () => {
    const d = await disk()
    const fs = d.process()
    const dirs = new DurableDirs(fs, ROOT)
    await dirs.ensure(partitionDir(0))
    // Dropped and made again by this process: its new entry is synced again, in order.
    dirs.forget(`${ROOT}/spaces/u1`)
    await fs.removeTree(`${ROOT}/spaces/u1`)
    await fs.syncDir(`${ROOT}/spaces`)
    await dirs.ensure(partitionDir(1))
    await writeDurably(fs, partitionDir(1))
    d.crash()
    expect(d.existsSync(`${partitionDir(1)}/MANIFEST`)).toBe(true)
  })

  it('a directory another call of this process is making is not taken for one that was there before', async () => {
    const d = await disk()
    const fs = d.process()
    await fs.mkdir(`${ROOT}/spaces/u1`)
    for (const dir of [`${ROOT}/spaces/u1`, `${ROOT}/spaces`, ROOT]) await fs.syncDir(dir)
    // The second stat of partition 0's directory (the second caller's first look) answers only
    // once the first caller has made it.
    let stats = 0
    let releaseStat: () => void = () => {}
    const held = new Promise<void>(resolve => { releaseStat = resolve })
    const gated: FileSystem = {
      ...fs,
      stat: async (path: string) => {
        if (path === partitionDir(0) && ++stats === 2) await held
        return await fs.stat(path)
      }
    }
    const slow = slowDirSyncs(gated)
    const dirs = new DurableDirs(slow.fs, ROOT)
    // A fsync of the space's directory begins before partition 0's directory exists.
    const first = dirs.ensure(partitionDir(1))
    await new Promise(resolve => setImmediate(resolve))
    const a = dirs.ensure(partitionDir(0))
    const b = dirs.ensure(partitionDir(0))
    for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
    expect(d.existsSync(partitionDir(0))).toBe(true)
    releaseStat()
    // b must wait for the fsyncs that began after the directory was made, as a (which made it)
    // does, not join those in flight.
    const doneAt: Record<string, number> = {}
    void a.then(() => { doneAt.a = slow.round() })
    void b.then(() => { doneAt.b = slow.round() })
    await slow.roundsUntil(Promise.all([first, a, b]))
    expect(doneAt.b).toBeGreaterThanOrEqual(doneAt.a!)
  })
})
