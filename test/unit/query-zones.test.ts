/**
 * Zone-map pruning (src/query/exec/zones.ts): a batch the zone test rules out must hold no row
 * the predicate selects, for random batches (NULLs, equal values, strings past U+D800) and random
 * predicates, the zone maps computed as the segment writer computes them. And pruning must happen:
 * a store skips batches of segments a WHERE rules out, with the same answer as without it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { batchFromRows, type ColumnZone, type ValueType } from '../../src/columnar/index.js'
import { evalPredicate, fragmentShape, runFragment, zoneTest } from '../../src/query/exec/index.js'
import { between, binary, column, filter, float64Literal, inList, int64Literal, isNull, literal, scan, type Expr } from '../../src/query/model/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { zonesByBatch } from '../../src/storage/segment-file-format.js'
import { T0, TempDirs, makeSpace, openStore, put } from './storage-helpers.js'

const dirs = new TempDirs()
afterEach(async () => { await dirs.cleanup() })

const TYPES: Record<string, ValueType> = { n: 'int64', x: 'float64', s: 'utf8' }
const STRINGS = ['', 'a', 'ab', 'b', 'zz', '\uE000', '\uD83D\uDE00', 'é', 'A']

function randomPredicate (rnd: SeededRandom, depth = 0): Expr {
  const r = rnd.next()
  if (depth < 2 && r < 0.2) return binary(rnd.next() < 0.5 ? 'AND' : 'OR', randomPredicate(rnd, depth + 1), randomPredicate(rnd, depth + 1))
  const col = ['n', 'x', 's'][rnd.int(3)]!
  const lit = (): Expr => col === 's' ? literal(STRINGS[rnd.int(STRINGS.length)]!) : rnd.next() < 0.5 ? int64Literal(String(rnd.int(20) - 5)) : float64Literal(rnd.int(40) / 2 - 5)
  const k = rnd.int(5)
  if (k === 0) return between(column(col), lit(), lit())
  if (k === 1) return inList(column(col), [lit(), lit(), lit()])
  if (k === 2) return isNull(column(col), rnd.next() < 0.5)
  const op = (['=', '<>', '<', '<=', '>', '>='] as const)[rnd.int(6)]!
  return rnd.next() < 0.5 ? binary(op, column(col), lit()) : binary(op, lit(), column(col))
}

describe('zone-map pruning', () => {
  it('never rules out a batch holding a matching row (random batches and predicates), and rules some out', () => {
    const rnd = new SeededRandom(7)
    let pruned = 0
    for (let trial = 0; trial < 3000; trial++) {
      const n = 1 + rnd.int(6)
      const base = rnd.int(15) - 5
      const rows = Array.from({ length: n }, () => ({
        n: rnd.next() < 0.2 ? null : base + rnd.int(3),
        x: rnd.next() < 0.2 ? null : base + rnd.int(5) / 2,
        s: rnd.next() < 0.2 ? null : STRINGS[rnd.int(STRINGS.length)]!
      }))
      const zones = new Map<string, ColumnZone>()
      for (const c of Object.keys(TYPES)) {
        const values = rows.map(r => (r as Record<string, unknown>)[c])
        zones.set(c, zonesByBatch(TYPES[c] as never, values, new Uint32Array(n).map((_, i) => i), n, 1)[0]!)
      }
      const pred = randomPredicate(rnd)
      const test = zoneTest(pred, name => TYPES[name])
      if (test === undefined || test(c => zones.get(c), n)) continue
      pruned++
      const batch = batchFromRows(rows, Object.entries(TYPES).map(([name, type]) => ({ name, type })))
      expect(evalPredicate(pred, batch).length, JSON.stringify({ rows, pred })).toBe(0)
    }
    expect(pruned).toBeGreaterThan(300)
  })

  it('skips the batches of segments a WHERE rules out, answering as without', async () => {
    const space = makeSpace('id:utf8,n:int64,s:utf8')
    const store = await openStore(await dirs.make(), space)
    // Three segments of disjoint ranges of n, and a memtable.
    for (let s = 0; s < 3; s++) {
      await store.apply(Array.from({ length: 100 }, (_, i) => put(space, `k${s}-${i}`, T0 + s, { n: s * 1000 + i, s: `v${s}` })))
      await store.flush()
    }
    await store.apply([put(space, 'mem', T0 + 9, { n: 1500, s: 'v1' })])
    const plan = filter(scan(space.name, ['n']), binary('AND', binary('>=', column('n'), int64Literal('1000')), binary('<', column('n'), int64Literal('1990'))))
    const columnType = (name: string): ValueType | undefined => space.schema.find(c => c.name === name)?.type
    const before = { ...store.counters }
    const pruned = await runFragment(plan, { source: store, columnType })
    expect(store.counters.batchesSkipped - before.batchesSkipped).toBe(2)
    expect(store.counters.batchesRead - before.batchesRead).toBe(1)
    const full = await runFragment(plan, { source: { batches: (cols: readonly string[]) => store.batches(cols) }, columnType })
    expect(pruned.output).toEqual(full.output)
    expect(pruned.stats.rowsMatched).toBe(101)
    expect(fragmentShape(plan).filter).not.toBeNull()
    await store.close()
  })
})
