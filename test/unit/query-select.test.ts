import { describe, expect, it } from 'vitest'
import { batchFromRows } from '../../src/columnar/index.js'
import { evalPredicate } from '../../src/query/exec/eval.js'
import { selectRows } from '../../src/query/exec/select.js'
import { parseSql } from '../../src/query/sql/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import type { Expr, PlanNode } from '../../src/query/model/index.js'

/** The WHERE predicate of a SQL query, as the plan holds it. */
function where (sql: string): Expr {
  let n: PlanNode = parseSql(`SELECT * FROM t WHERE ${sql}`).plan
  while (n.kind !== 'Filter') n = (n as { input: PlanNode }).input
  return n.predicate
}

/** A seeded PRNG in [0, 1): the project's SeededRandom as a function. */
function rng (seed: number): () => number {
  const r = new SeededRandom(seed)
  return () => r.next()
}

const COLUMNS = [
  { name: 'x', type: 'float64' as const }, { name: 'n', type: 'int64' as const }, { name: 's', type: 'utf8' as const },
  { name: 'ts', type: 'timestamp' as const }, { name: 'd', type: 'date' as const }, { name: 'b', type: 'bool' as const }
]

/** The fast selection paths must select exactly the rows the general evaluator does. */
describe('selectRows: fast filter paths agree with the evaluator', () => {
  const predicates = [
    'x > 0.5', 'x >= 0.5', 'x < 0.25', 'x <= 0.25', 'x = 0.5', 'x <> 0.5', '0.5 < x', '3 = n', 'n <> 3', 'n > 2 AND x < 0.5',
    "s = 'b'", "s <> 'b'", "s < 'c'", "s >= 'é'", "'b' = s", "s IN ('a', 'c', 'zz')", 'n IN (1, 3, 5)', 'x BETWEEN 0.2 AND 0.7', 'n BETWEEN 2 AND 4',
    "ts >= '2024-01-02'", "ts < '2024-01-03 12:00:00'", "d = '2024-01-02'", "d > '2024-01-01'", 'ts > 1704153600000',
    "x > 0.3 AND s = 'a' AND n < 4", "x > 0.3 AND (s = 'a' OR n < 4)", 'NOT x > 0.5', 'x > n', "s LIKE 'a%' AND x > 0.1",
    'b', 'b AND x > 0.5', 'x IS NULL', "n NOT IN (1, 2)", 'x NOT BETWEEN 0.2 AND 0.7', "s IN ('a', NULL)"
  ]
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}`, () => {
      const r = rng(seed)
      const maybe = <T>(v: T): T | null => r() < 0.15 ? null : v
      const rows = Array.from({ length: 500 }, () => ({
        x: maybe(Math.round(r() * 8) / 8), n: maybe(Math.floor(r() * 6)), s: maybe(['a', 'b', 'c', 'é', 'zz', '😀'][Math.floor(r() * 6)]!),
        ts: maybe(Date.UTC(2024, 0, 1) + Math.floor(r() * 4 * 86_400_000)), d: maybe(19723 + Math.floor(r() * 4)), b: maybe(r() < 0.5)
      }))
      const batch = batchFromRows(rows, COLUMNS)
      for (const p of predicates) {
        const e = where(p)
        expect(Array.from(selectRows(e, batch)), p).toEqual(Array.from(evalPredicate(e, batch)))
      }
    })
  }
})
