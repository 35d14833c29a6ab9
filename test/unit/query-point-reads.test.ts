/**
 * A fragment whose filter pins a few ids reads them by id (src/query/service/point-reads.ts)
 * instead of scanning its partition. Its answers must be what a scan answers whatever the pinned
 * ids hold: rows in segments and in the memtable, updated rows (the newest version only), deleted
 * ones (not a row), ids of other partitions or never written, repeats, and pins inside an AND or
 * beside other conditions. Each query is run twice over the same replica: through serveFragments
 * (which takes the point reads) and with the filter wrapped so pinnedIds cannot see it (a scan).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { QueryMerger, splitPlan, type SplitPlan } from '../../src/query/exec/index.js'
import { binary, literal, type Expr, type PlanNode } from '../../src/query/model/index.js'
import { serveFragments } from '../../src/query/service/fragments.js'
import { MAX_POINT_READS, pointReadIds } from '../../src/query/service/point-reads.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan, type OutputColumn } from '../../src/query/validate/index.js'
import type { LocalPartitionStore } from '../../src/storage/index.js'
import { T0, TempDirs, del, makeSpace, openStore, put } from './storage-helpers.js'

const space = { ...makeSpace('id:utf8,g:utf8,x:float64,tags:list<utf8>', 'points@1'), partitions: 1 }
const dirs = new TempDirs()
afterAll(async () => { await dirs.cleanup() })

/** The validated plan and split of `sql`; with `scan`, its fragment's filter hidden from pinnedIds. */
function prepare (sql: string, scan: boolean): { split: SplitPlan, columns: OutputColumn[] } {
  const { plan } = parseSql(sql)
  const v = validatePlan(plan, space)
  if (!v.ok) throw new Error(v.errors[0]!.message)
  const split = splitPlan(v.plan, space.schema.map(c => c.name))
  if (!scan) return { split, columns: v.columns }
  // An OR with a false comparison matches the same rows but pins nothing: the fragment scans.
  const hide = (n: PlanNode): PlanNode => n.kind === 'Filter'
    ? { ...n, predicate: binary('OR', n.predicate, binary('=', literal(1), literal(2))) } as PlanNode
    : 'input' in n ? { ...n, input: hide((n as { input: PlanNode }).input) } as PlanNode : n
  return { split: { ...split, fragment: hide(split.fragment) }, columns: v.columns }
}

/** The answer's rows (sorted: without ORDER BY they come in no set order), through serveFragments and the merge. */
let lastScanned = 0

async function run (store: LocalPartitionStore, sql: string, scan: boolean): Promise<string[]> {
  lastScanned = 0
  const { split, columns } = prepare(sql, scan)
  const merger = new QueryMerger(split, name => space.schema.find(c => c.name === name)?.type)
  const deps = { space: () => space, openForQuery: async () => store, isSynced: () => true }
  for await (const item of serveFragments(deps, { space: space.name, uid: space.uid, partitions: [0], plan: split.fragment, budgetBytes: 1 << 26, analyze: true }, new AbortController().signal, true)) {
    if ('error' in item) throw new Error(item.error.message)
    merger.add(item.out)
    lastScanned += item.stats?.rowsScanned ?? 0
  }
  const rows = merger.finish(columns).rows.map(r => JSON.stringify(r))
  return /ORDER BY/.test(sql) ? rows : rows.sort()
}

/** The fragment's filter, as pointReadIds sees it. */
function filterOf (sql: string): Expr | null {
  const find = (n: PlanNode): Expr | null => n.kind === 'Filter' ? n.predicate : 'input' in n ? find((n as { input: PlanNode }).input) : null
  return find(prepare(sql, false).split.fragment)
}

describe('point reads for pinned ids', () => {
  it('answer what a scan answers: segments, memtable, updates, deletes, absent ids, repeats', async () => {
    const store = await openStore(await dirs.make(), space)
    // Two segments' worth flushed, then changes in the memtable on top.
    await store.apply(Array.from({ length: 200 }, (_, i) => put(space, `r${i}`, T0 + i, { g: `g${i % 7}`, x: i / 4, tags: [`t${i % 3}`] })))
    await store.flush()
    await store.apply(Array.from({ length: 100 }, (_, i) => put(space, `r${200 + i}`, T0 + 1000 + i, { g: `g${i % 5}`, x: -i, tags: [] })))
    await store.flush()
    await store.apply([
      put(space, 'r5', T0 + 5000, { g: 'updated', x: 99, tags: ['new'] }),
      del('r6', T0 + 5001),
      put(space, 'r250', T0 + 5002, { g: 'updated', x: 98, tags: null }),
      del('r251', T0 + 5003),
      put(space, 'fresh', T0 + 5004, { g: 'g1', x: 1, tags: ['a', 'b'] })
    ])
    const queries = [
      "SELECT id, g, x, tags FROM points WHERE id IN ('r1', 'r5', 'r6', 'r250', 'r251', 'fresh', 'nope', 'r1', 'r299')",
      "SELECT id, tags FROM points WHERE id = 'r5'",
      "SELECT id, tags FROM points WHERE id = 'r6'",
      "SELECT g, count(*), sum(x) FROM points WHERE id IN ('r1', 'r2', 'r3', 'r5', 'r250', 'fresh') GROUP BY g",
      "SELECT id, x FROM points WHERE id IN ('r10', 'r11', 'r12', 'r13') AND x > 2.8",
      "SELECT id FROM points WHERE x < 50 AND id IN ('r1', 'r300', 'r201') ORDER BY id LIMIT 2"
    ]
    for (const sql of queries) {
      expect(pointReadIds(filterOf(sql)), sql).not.toBeNull()
      expect(await run(store, sql, false), sql).toEqual(await run(store, sql, true))
    }
    // The first: r1 (asked twice), r5 and r250 as updated, fresh from the memtable, r299; not the
    // deleted r6 and r251, nor nope.
    expect((await run(store, queries[0]!, false)).map(r => JSON.parse(r).id).sort()).toEqual(['fresh', 'r1', 'r250', 'r299', 'r5'])
    // Read by id: the executor saw those five rows, where a scan reads every live row.
    expect(lastScanned).toBe(5)
    await run(store, queries[0]!, true)
    expect(lastScanned).toBe(299)
    await store.close()
  })

  it('reads by id only up to MAX_POINT_READS ids; more is a scan', () => {
    const ids = (n: number): string => Array.from({ length: n }, (_, i) => `'r${i}'`).join(', ')
    expect(pointReadIds(filterOf(`SELECT id FROM points WHERE id IN (${ids(MAX_POINT_READS)})`))).toHaveLength(MAX_POINT_READS)
    expect(pointReadIds(filterOf(`SELECT id FROM points WHERE id IN (${ids(MAX_POINT_READS + 1)})`))).toBeNull()
    expect(pointReadIds(filterOf("SELECT id FROM points WHERE id IN ('a', 'a', 'b')"))).toEqual(['a', 'b'])
    expect(pointReadIds(filterOf("SELECT id FROM points WHERE g = 'x'"))).toBeNull()
  })
})
