/**
 * The repair record of a partition replica (src/storage/repair.ts) and the purge rule it sets
 * (issue 13, tombstone resurrection): a full compaction drops a tombstone only when it is older
 * than the grace period AND than the last repair completed with every replica; the record is
 * durable across restarts and rebuilds start a new one.
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { makeHlc } from '../../src/hlc/index.js'
import { REPAIR_FILE, StorageEngine, parseRepairFile } from '../../src/storage/index.js'
import { T0, TempDirs, del, makeSpace, manualClock, openStore, put, recordingLogger } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })
const space = makeSpace()
const DAY = 86_400_000

describe('storage repair record and tombstone purge', () => {
  it('compaction keeps a tombstone past the grace until a repair with every replica started after it, and drops it then', async () => {
    const clock = manualClock()
    const dir = await dirs.make()
    const store = await openStore(dir, space, { tombstoneGraceMs: 10 * DAY }, { clock })
    await store.apply([put(space, 'live', T0, { n: 1 }), del('a', T0 - 30 * DAY), del('b', T0 - 20 * DAY), del('c', T0 - 1 * DAY)])
    await store.flush()

    // All but c are past the grace, but no repair has completed: nothing goes, and no full
    // compaction is due for them.
    expect(store.repairRecord().repairedTo).toBe(0)
    expect(store.purgeHorizon()).toBe(0)
    expect(store.compactionDue()).toBe(false)
    expect((await store.compact()).tombstonesPurged).toBe(0)

    // A repair that started between a and b covers a only.
    await store.recordRepair({ repairedTo: makeHlc(T0 - 25 * DAY, 0) })
    expect(store.purgeHorizon()).toBe(makeHlc(T0 - 25 * DAY, 0))
    expect(store.compactionDue()).toBe(true)
    expect((await store.compact()).tombstonesPurged).toBe(1)
    expect(await store.get('a')).toBeUndefined()
    expect((await store.get('b'))?.deleted).toBe(true)

    // A repair started now covers b and c, but c is within the grace: only b goes.
    await store.recordRepair({ repairedTo: makeHlc(T0, 0) })
    expect(store.purgeHorizon()).toBe(makeHlc(T0 - 10 * DAY, 0))
    expect(store.graceHorizon()).toBe(makeHlc(T0 - 10 * DAY, 0))
    expect((await store.compact()).tombstonesPurged).toBe(1)
    expect((await store.get('c'))?.deleted).toBe(true)
    // A horizon never moves back.
    await store.recordRepair({ repairedTo: makeHlc(T0 - 40 * DAY, 0) })
    expect(store.repairRecord().repairedTo).toBe(makeHlc(T0, 0))
    await store.close()
  })

  it('the periodic check flushes a memtable holding a tombstone below the purge horizon, so an idle partition purges it too', async () => {
    const clock = manualClock()
    const dir = await dirs.make()
    const store = await openStore(dir, space, { tombstoneGraceMs: 10 * DAY, compactionCheckIntervalMs: 60_000 }, { clock })
    await store.apply([put(space, 'live', T0, { n: 1 }), del('gone', T0 - 20 * DAY), del('young', T0 - DAY)])
    expect(store.stats()).toMatchObject({ segments: 0, memtableRows: 3 })
    // No repair yet: the check leaves the memtable alone.
    clock.advance(60_000)
    expect(store.isFlushing()).toBe(false)
    await store.recordRepair({ repairedTo: makeHlc(clock.wallNow(), 0) })
    clock.advance(60_000)
    // The check started a flush (a flush call shares it); its end asks for the compaction.
    expect(store.isFlushing()).toBe(true)
    await store.flush()
    await store.compact()
    expect(await store.get('gone')).toBeUndefined()
    expect((await store.get('young'))?.deleted).toBe(true)
    expect((await store.get('live'))?.row?.n).toBe(1)
    await store.close()
  })

  it('the record is durable: syncs and repairs survive a restart; a new partition starts at its creation, one with rows and no record at 0', async () => {
    const clock = manualClock()
    const dir = await dirs.make()
    const store = await openStore(dir, space, {}, { clock })
    expect(store.repairRecord()).toEqual({ since: makeHlc(T0, 0), repairedTo: 0, synced: {} })
    await store.apply([put(space, 'x', T0, { n: 1 })])
    await store.recordRepair({ peer: 'peer-b', syncedAt: makeHlc(T0 + 5, 0) })
    await store.recordRepair({ peer: 'peer-c', syncedAt: makeHlc(T0 + 7, 0), repairedTo: makeHlc(T0 + 5, 0) })
    // An older sync with a peer changes nothing.
    await store.recordRepair({ peer: 'peer-b', syncedAt: makeHlc(T0 + 1, 0) })
    const want = { since: makeHlc(T0, 0), repairedTo: makeHlc(T0 + 5, 0), synced: { 'peer-b': makeHlc(T0 + 5, 0), 'peer-c': makeHlc(T0 + 7, 0) } }
    expect(store.repairRecord()).toEqual(want)
    await store.close()
    expect(parseRepairFile(await readFile(join(dir, REPAIR_FILE), 'utf8'))).toEqual(want)
    clock.t += DAY
    const again = await openStore(dir, space, {}, { clock })
    expect(again.repairRecord()).toEqual(want)
    await again.close()

    // A partition holding rows from before the record was kept: nothing is known of it.
    const legacy = await dirs.make()
    const old = await openStore(legacy, space, {}, { clock })
    await old.apply([put(space, 'y', T0, { n: 2 })])
    await old.flush()
    await old.close()
    await rm(join(legacy, REPAIR_FILE))
    const reopened = await openStore(legacy, space, {}, { clock })
    expect(reopened.repairRecord()).toEqual({ since: 0, repairedTo: 0, synced: {} })
    await reopened.close()
    // One whose record is damaged knows nothing either (and nothing is purged until a repair).
    await writeFile(join(legacy, REPAIR_FILE), '{"not": "a record"}')
    const log = recordingLogger()
    const damaged = await openStore(legacy, space, {}, { clock, log })
    expect(damaged.repairRecord()).toEqual({ since: 0, repairedTo: 0, synced: {} })
    expect(log.entries.some(e => e.level === 'warn' && e.msg?.includes('repair record unreadable'))).toBe(true)
    await damaged.close()
  })

  it('a replica rebuilt as stale is moved aside to <dir>.stale-<ms> and starts a new record', async () => {
    const clock = manualClock()
    const dataDir = await dirs.make()
    const engine = new StorageEngine({ clock, log: recordingLogger() }, { dataDir })
    const store = await engine.openPartition(space, 3)
    await store.apply([put(space, 'x', T0, { n: 1 })])
    await store.recordRepair({ peer: 'peer-b', syncedAt: makeHlc(T0, 0), repairedTo: makeHlc(T0, 0) })
    clock.t += 20 * DAY
    const fresh = await engine.rebuildPartition(space, 3, 'stale')
    expect(fresh.stats().liveRows).toBe(0)
    expect(fresh.needsRepair()).toBe(false)
    expect(fresh.repairRecord()).toEqual({ since: makeHlc(T0 + 20 * DAY, 0), repairedTo: 0, synced: {} })
    const aside = `${engine.partitionDir(space.uid, 3)}.stale-${T0 + 20 * DAY}`
    expect(parseRepairFile(await readFile(join(aside, REPAIR_FILE), 'utf8'))?.repairedTo).toBe(makeHlc(T0, 0))
    expect(await engine.listOnDisk()).toEqual([{ uid: space.uid, partition: 3 }])
    await engine.close()
  })
})
