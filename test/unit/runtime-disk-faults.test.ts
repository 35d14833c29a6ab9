/**
 * FaultInjectingFileSystem (src/runtime/disk-faults.ts): the real storage engine over node:fs
 * with rules in front, as a peer started with --enable-fault-injection runs it. A failed WAL
 * fsync fails the write and the partition (nothing undurable served); with the rule gone the
 * partition reopens from what is durable.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { DiskFaultRules, FaultInjectingFileSystem, nodeFileSystem } from '../../src/runtime/index.js'
import { StorageEngine } from '../../src/storage/index.js'
import { T0, TempDirs, makeSpace, manualClock, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

describe('FaultInjectingFileSystem', () => {
  it('fails the operations its rules name, as node would, and only those', async () => {
    const dir = await dirs.make()
    const rules = new DiskFaultRules()
    const fs = new FaultInjectingFileSystem(nodeFileSystem, rules)
    rules.add({ op: 'sync', code: 'EIO', path: /\.log$/, times: 1 })
    const fh = await fs.open(`${dir}/a.log`, 'w')
    await fh.write(new Uint8Array([1, 2, 3]), 0, 3, 0)
    await expect(fh.datasync()).rejects.toMatchObject({ code: 'EIO', syscall: 'sync' })
    await fh.datasync() // used up
    await fh.close()
    const other = await fs.open(`${dir}/b.dat`, 'w')
    await other.sync()
    await other.close()
    expect(rules.injected).toBe(1)
    expect(rules.list()).toEqual([])
    rules.add({ op: 'write', code: 'ENOSPC' })
    expect(rules.list()).toEqual([{ op: 'write', code: 'ENOSPC' }])
    const full = await fs.open(`${dir}/c.dat`, 'w')
    await expect(full.write(new Uint8Array(1), 0, 1, 0)).rejects.toMatchObject({ code: 'ENOSPC' })
    await full.close()
    expect(() => { rules.add({ op: 'fsync' as 'sync', code: 'EIO' }) }).toThrow(/op must be one of/)
  })

  it('a WAL fsync failing on a real disk fails the write and the partition; once healed it reopens with every acknowledged row', async () => {
    const dataDir = await dirs.make()
    const rules = new DiskFaultRules()
    const clock = manualClock()
    const engine = new StorageEngine({ clock, log: recordingLogger(), fs: new FaultInjectingFileSystem(nodeFileSystem, rules) }, { dataDir, compactionCheckIntervalMs: 0 })
    const space = makeSpace()
    const store = await engine.openPartition(space, 0)
    await store.apply([put(space, 'a', T0, { n: 1 })])
    rules.add({ op: 'sync', code: 'EIO', path: /wal-/ })
    await expect(store.apply([put(space, 'b', T0 + 1, { n: 2 })])).rejects.toThrow(/EIO/)
    expect(store.failure()).toMatchObject({ code: 'EIO', kind: 'io' })
    expect(engine.failures().map(f => f.partition)).toEqual([0])
    rules.clear()
    const reopened = await engine.reopenPartition(space, 0)
    expect((await reopened.get('a'))?.row).toMatchObject({ n: 1 })
    // 'b' failed: its frame was cut before the reopen, so it is not there (never acknowledged).
    expect(await reopened.get('b')).toBeUndefined()
    await engine.close()
  })
})
