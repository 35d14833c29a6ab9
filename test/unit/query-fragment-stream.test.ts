/**
 * query.fragment's handler stream (serveRemoteFragments): a remote request's items, its last one
 * marked LastItem so the transport sends the stream's end in the same write (test/unit/
 * net-frames.test.ts counts the frames), and the local path's items unmarked. And a fragment that
 * pins ids (a spread hop) looks up, in each partition, only the ids of that partition.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { QueryMerger, splitPlan } from '../../src/query/exec/index.js'
import { serveFragments, serveRemoteFragments, type FragmentItem } from '../../src/query/service/fragments.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import { LastItem } from '../../src/runtime/index.js'
import { T0, TempDirs, makeSpace, openStore, put } from './storage-helpers.js'

const space = { ...makeSpace('id:utf8,g:utf8', 'frag@1'), partitions: 3 }
const dirs = new TempDirs()
afterAll(async () => { await dirs.cleanup() })

describe('the fragment stream', () => {
  it('marks only the last item of a remote request, and none on the local path', async () => {
    const store = await openStore(await dirs.make(), space)
    await store.apply(Array.from({ length: 30 }, (_, i) => put(space, `r${i}`, T0 + i, { g: `g${i % 4}` })))
    const v = validatePlan(parseSql('SELECT g, count(*) FROM frag GROUP BY g').plan, space)
    if (!v.ok) throw new Error(v.errors[0]!.message)
    const fragment = splitPlan(v.plan, space.schema.map(c => c.name)).fragment
    // Every partition reads the same store here: the stream's shape is what is under test.
    const deps = { space: () => space, openForQuery: async () => store, isSynced: () => true }
    const req = { space: space.name, uid: space.uid, partitions: [0, 1, 2], plan: fragment, budgetBytes: 1 << 26, analyze: false }
    const remote: unknown[] = []
    for await (const item of serveRemoteFragments(deps, req, new AbortController().signal)) remote.push(item)
    expect(remote).toHaveLength(3)
    expect(remote.slice(0, 2).some(i => i instanceof LastItem)).toBe(false)
    const last = remote[2]
    expect(last).toBeInstanceOf(LastItem)
    const items = [...remote.slice(0, 2), (last as LastItem).value] as FragmentItem[]
    expect(items.map(i => i.p).sort()).toEqual([0, 1, 2])
    expect(items.every(i => 'out' in i && i.last)).toBe(true)
    const local: unknown[] = []
    for await (const item of serveFragments(deps, req, new AbortController().signal, true)) local.push(item)
    expect(local).toHaveLength(3)
    expect(local.some(i => i instanceof LastItem)).toBe(false)
  })

  it('looks up, in each partition, only the pinned ids that belong to it', async () => {
    const store = await openStore(await dirs.make(), space)
    await store.apply(Array.from({ length: 30 }, (_, i) => put(space, `r${i}`, T0 + i, { g: `g${i % 4}` })))
    const v = validatePlan(parseSql("SELECT id, g FROM frag WHERE id IN ('r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r40')").plan, space)
    if (!v.ok) throw new Error(v.errors[0]!.message)
    const split = splitPlan(v.plan, space.schema.map(c => c.name))
    const fragment = split.fragment
    const merger = new QueryMerger(split, name => space.schema.find(c => c.name === name)?.type)
    const partitionOf = (_: unknown, id: string): number => Number(id.slice(1)) % 3
    const asked = new Map<number, string[]>()
    // One store stands for all three partitions: it answers any id, so only the filtering keeps
    // an id from coming back from a partition it does not belong to.
    const openForQuery = async (_: unknown, p: number): Promise<typeof store> => Object.assign(Object.create(store) as typeof store, {
      get: async (id: string) => { asked.set(p, [...(asked.get(p) ?? []), id]); return await store.get(id) }
    })
    const deps = { space: () => space, openForQuery, isSynced: () => true, partitionOf }
    const req = { space: space.name, uid: space.uid, partitions: [0, 1, 2], plan: fragment, budgetBytes: 1 << 26, analyze: false }
    for await (const item of serveFragments(deps, req, new AbortController().signal, true)) {
      if ('error' in item) throw new Error(item.error.message)
      merger.add(item.out)
    }
    const ids = merger.finish(v.columns).rows.map(r => r.id as string)
    expect([...asked.get(0)!].sort()).toEqual(['r3', 'r6'])
    expect([...asked.get(1)!].sort()).toEqual(['r1', 'r4', 'r40'])
    expect([...asked.get(2)!].sort()).toEqual(['r2', 'r5'])
    // Each row once, from its own partition (r40 was never written).
    expect(ids.sort()).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6'])
  })
})
