/**
 * query.fragment's handler stream (serveRemoteFragments): a remote request's items, its last one
 * marked LastItem so the transport sends the stream's end in the same write (test/unit/
 * net-frames.test.ts counts the frames), and the local path's items unmarked.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { splitPlan } from '../../src/query/exec/index.js'
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
})
