/**
 * Cold scans decode columns into shared memory the block cache recycles (BlockCache.allocShared,
 * BatchLease): a buffer goes to another column only once its value is out of the cache and the
 * fragment that read it is done. Queries run over worker threads and a cache far smaller than the
 * data, many at once, must answer exactly what they answer with every column cached, and the
 * cache must have recycled memory on the way (this fails without the recycling).
 */
import { afterAll, describe, expect, it } from 'vitest'
import { FragmentPool, splitPlan } from '../../src/query/exec/index.js'
import { serveFragments, type FragmentItem } from '../../src/query/service/fragments.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import { BlockCache, type LocalPartitionStore } from '../../src/storage/index.js'
import { T0, TempDirs, makeSpace, openStore, put } from './storage-helpers.js'

// The worker runs compiled code: npm test compiles before it runs the tests.
const WORKER = new URL('../../dist/src/query/exec/worker.js', import.meta.url)
const space = { ...makeSpace('id:utf8,g:utf8,x:float64,n:int64,k:int32', 'cold@1'), partitions: 4 }
const dirs = new TempDirs()
const pool = new FragmentPool(1, WORKER, 1000)
afterAll(async () => { await pool.close(); await dirs.cleanup() })

const QUERIES = [
  'SELECT g, count(*), sum(x), min(n), max(k) FROM cold GROUP BY g',
  'SELECT sum(n), avg(x) FROM cold WHERE k > 100',
  'SELECT id, x, n FROM cold WHERE k < 40',
  'SELECT id, g, x FROM cold ORDER BY x DESC LIMIT 7',
  'SELECT * FROM cold WHERE n % 97 = 3'
]

/** Each partition: 16 segments of 1,500 rows (one record batch each), nothing in the memtable. */
async function stores (cache: BlockCache, dirsOf: string[]): Promise<LocalPartitionStore[]> {
  return await Promise.all(dirsOf.map(async d => await openStore(d, space, { compactionMaxSegments: 1000 }, { cache })))
}

async function answer (sql: string, byPartition: LocalPartitionStore[]): Promise<unknown[]> {
  const { plan } = parseSql(sql)
  const v = validatePlan(plan, space)
  if (!v.ok) throw new Error(v.errors[0]!.message)
  const fragment = splitPlan(v.plan, space.schema.map(c => c.name)).fragment
  const items: FragmentItem[] = []
  const deps = { space: () => space, openForQuery: async (_: unknown, p: number) => byPartition[p]!, isSynced: () => true, pool }
  for await (const item of serveFragments(deps, { space: 'cold', uid: space.uid, partitions: [0, 1, 2, 3], plan: fragment, budgetBytes: 1 << 28, analyze: false }, new AbortController().signal, true)) items.push(item)
  // Partitions finish in any order; each one's items are in order.
  return items.map(i => { if ('error' in i) throw new Error(i.error.message); return { p: i.p, out: i.out } }).sort((a, b) => a.p - b.p)
}

describe('cold scans on recycled shared memory', () => {
  it('answer as with every column cached, many at once, over a cache a quarter of the data', async () => {
    const paths: string[] = []
    for (let p = 0; p < 4; p++) {
      const dir = await dirs.make()
      paths.push(dir)
      const s = await openStore(dir, space, { compactionMaxSegments: 1000 })
      for (let seg = 0; seg < 16; seg++) {
        const rows = Array.from({ length: 1500 }, (_, i) => {
          const k = (p * 16 + seg) * 1500 + i
          return put(space, `r${k}`, T0 + k, { g: `g${k % 13}`, x: (k * 7919) % 10007 / 7, n: k * 3, k: k % 1000 })
        })
        await s.apply(rows)
        await s.flush()
      }
      await s.close()
    }
    // Decoded columns: 96,000 rows × 5 columns × ~8 bytes, about 3.7 MB; the small cache holds 1 MiB.
    const warmCache = new BlockCache(256 << 20)
    const warm = await stores(warmCache, paths)
    const expected = new Map<string, unknown[]>()
    for (const sql of QUERIES) expected.set(sql, await answer(sql, warm))
    for (const s of warm) await s.close()

    const cache = new BlockCache(1 << 20)
    const cold = await stores(cache, paths)
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all([...QUERIES, ...QUERIES].map(async sql => ({ sql, out: await answer(sql, cold) })))
      for (const { sql, out } of got) expect(out, `${sql} (round ${round})`).toEqual(expected.get(sql))
    }
    const stats = cache.stats()
    // Blocks went through the cache by the hundred: pushed out, or turned away (admission).
    expect(stats.evictions + stats.rejected).toBeGreaterThan(100)
    expect(stats.reused).toBeGreaterThan(50)
    for (const s of cold) await s.close()
  })
})
