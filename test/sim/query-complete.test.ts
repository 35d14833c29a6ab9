/**
 * Pattern completion (`complete`) through the query service on simulated peers, against a brute
 * force written here from the specification: random spaces (every column type), random rows
 * with NULLs, random partial records, weights, scales, fills, k and filters, asked of a random
 * coordinator of five peers over eight partitions with two replicas each. The K neighbours (ids
 * in order, scores to 1e-9) and the filled record (values, confidences, supports) must equal a
 * scan of every row in the test. A second test loses partitions and checks the answer is exact
 * over those that answered and says which did not.
 */
import { describe, expect, it } from 'vitest'
import { partitionOfId } from '../../src/placement/hash.js'
import type { QueryAnswer } from '../../src/query/service/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { checkSchema, type ColumnType, type SpaceDef } from '../../src/schema/index.js'
import { QueryCluster, type Row as SalesRow } from './query-cluster.js'

type Row = Record<string, unknown>
type Col = { name: string, type: ColumnType }

const DAY = 86_400_000
const T0 = Date.UTC(2024, 0, 1)
const TYPES: ColumnType[] = ['utf8', 'int32', 'int64', 'float64', 'float32', 'bool', 'timestamp', 'date', 'vector<3>', 'list<utf8>']
const WORDS = ['Paris', 'Rome', 'Oslo', 'Lima']

class Gen {
  private readonly r: SeededRandom
  constructor (seed: number) { this.r = new SeededRandom(seed) }
  next (): number { return this.r.next() }
  int (lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)) }
  pick<T> (xs: readonly T[]): T { return xs[Math.floor(this.next() * xs.length)]! }
  chance (p: number): boolean { return this.next() < p }
  subset<T> (xs: readonly T[], n: number): T[] {
    const pool = [...xs]
    const out: T[] = []
    while (out.length < n && pool.length > 0) out.push(pool.splice(Math.floor(this.next() * pool.length), 1)[0]!)
    return out
  }
}

/** A value as the column stores it; few distinct values, so that equal scores (ties) happen. */
function storedValue (g: Gen, type: ColumnType): unknown {
  switch (type) {
    case 'utf8': return g.pick(WORDS)
    case 'int32': return g.int(-3, 12)
    case 'int64': return g.int(0, 5) * 1_000_000_007
    case 'float64': return g.chance(0.2) ? g.pick([0, 1.5, 100]) : Math.round((g.next() - 0.3) * 4000) / 16
    case 'float32': return Math.fround(g.next() * 50 - 10)
    case 'bool': return g.chance(0.5)
    case 'timestamp': return T0 + g.int(0, 5) * DAY
    case 'date': return 19_700 + g.int(0, 4)
    case 'vector<3>': return g.chance(0.05) ? [0, 0, 0] : [0, 1, 2].map(() => Math.fround(g.int(-2, 2) / 2 + (g.chance(0.5) ? 0 : g.next())))
    case 'list<utf8>': return g.subset(WORDS, g.int(0, 2))
  }
  throw new Error(type)
}

function randomSpace (g: Gen, name: string): { def: SpaceDef, cols: Col[], rows: Row[] } {
  const cols: Col[] = g.subset(TYPES, g.int(4, 8)).map((type, i) => ({ name: `c${i}`, type }))
  const def: SpaceDef = { name, uid: `${name}@1`, partitions: 8, replicas: 2, schema: checkSchema([{ name: 'id', type: 'utf8' }, ...cols]) }
  const nulls = g.next() * 0.3
  const rows: Row[] = Array.from({ length: g.int(30, 220) }, (_, n) => {
    const row: Row = { id: `k${String(n).padStart(3, '0')}` }
    for (const c of cols) row[c.name] = g.chance(nulls) ? null : storedValue(g, c.type)
    return row
  })
  return { def, cols, rows }
}

interface Term { column: string, type: ColumnType, written: unknown, value: unknown, weight: number, scale: number | null }

/** A partial record: 1 to 3 columns, values mostly from a stored row (sometimes written as text: ISO times, dates). */
function randomQuery (g: Gen, cols: Col[], rows: Row[]): { body: Record<string, unknown>, terms: Term[], fill: Col[], k: number, filter: { query: unknown, test: (r: Row) => boolean } | null } {
  const source = g.pick(rows)
  const given = g.subset(cols, g.int(1, 3))
  const terms: Term[] = given.map(c => {
    let value = source[c.name] ?? storedValue(g, c.type)
    if ((c.type === 'float64' || c.type === 'int32') && g.chance(0.3)) value = (value as number) + g.int(-3, 3)
    if (c.type === 'vector<3>' && g.chance(0.3)) value = [g.next() - 0.5, g.next(), g.next() - 0.5]
    let written: unknown = value
    if (c.type === 'timestamp' && g.chance(0.5)) written = new Date(value as number).toISOString()
    if (c.type === 'date' && g.chance(0.5)) written = new Date((value as number) * DAY).toISOString().slice(0, 10)
    if (c.type === 'float32') value = Math.fround(value as number)
    if (c.type === 'vector<3>') value = (value as number[]).map(Math.fround)
    const numeric = ['int32', 'int64', 'float64', 'float32'].includes(c.type)
    return { column: c.name, type: c.type, written, value, weight: g.pick([1, 1, 0.5, 2, 3, 0]), scale: numeric && g.chance(0.5) ? g.pick([0.5, 3, 1000]) : null }
  })
  if (terms.every(t => t.weight === 0)) terms[0]!.weight = 1
  const rest = cols.filter(c => !given.includes(c) && c.type !== 'vector<3>')
  const named = g.chance(0.4) ? g.subset(rest, g.int(0, rest.length)) : null
  const k = g.chance(0.15) ? rows.length + 3 : g.int(1, 15)
  const body: Record<string, unknown> = { record: Object.fromEntries(terms.map(t => [t.column, t.written])) }
  if (g.chance(0.8) || k !== 5) body.k = k
  if (named !== null) body.fill = named.map(c => c.name)
  if (terms.some(t => t.weight !== 1)) body.weights = Object.fromEntries(terms.map(t => [t.column, t.weight]))
  if (terms.some(t => t.scale !== null)) body.scales = Object.fromEntries(terms.filter(t => t.scale !== null).map(t => [t.column, t.scale]))
  let filter: { query: unknown, test: (r: Row) => boolean } | null = null
  const text = cols.find(c => c.type === 'utf8')
  if (text !== undefined && g.chance(0.3)) {
    const word = g.pick(WORDS)
    // NOT (c = word), as SQL reads it: a NULL c matches neither.
    filter = { query: { bool: { must_not: { term: { [text.name]: word } } } }, test: r => r[text.name] !== null && r[text.name] !== word }
  }
  return { body, terms, fill: named ?? rest, k: body.k === undefined ? 5 : k, filter }
}

// ------------------------------------------------------------------ the brute force, from the spec

function similarity (t: Term, stored: unknown): number {
  if (stored === null || stored === undefined) return 0
  switch (t.type) {
    case 'vector<3>': {
      // As recall computes cosine: float32 values, float64 sums.
      const q = t.value as number[]; const x = stored as number[]
      let qn = 0; let dot = 0; let xn = 0
      for (let j = 0; j < 3; j++) qn += q[j]! * q[j]!
      for (let j = 0; j < 3; j++) { dot += x[j]! * q[j]!; xn += x[j]! * x[j]! }
      if (xn === 0 || qn === 0) return 0
      return Math.min(1, Math.max(0, (1 + dot / (Math.sqrt(xn) * Math.sqrt(qn))) / 2))
    }
    case 'int32': case 'int64': case 'float64': case 'float32': {
      const a = t.value as number
      return Math.exp(-Math.abs(a - (stored as number)) / (t.scale ?? Math.max(Math.abs(a) / 10, 1e-9)))
    }
    case 'list<utf8>': return JSON.stringify(stored) === JSON.stringify(t.value) ? 1 : 0
    default: return stored === t.value ? 1 : 0
  }
}

function score (terms: readonly Term[], row: Row): number {
  let sum = 0; let total = 0
  for (const t of terms) { total += t.weight; if (t.weight > 0) sum += t.weight * similarity(t, row[t.column]) }
  return sum / total
}

interface Fill { value: unknown, confidence: number, support: number }

function fill (col: Col, best: ReadonlyArray<{ row: Row, score: number }>): Fill {
  const have = best.filter(b => b.row[col.name] !== null && b.row[col.name] !== undefined)
  const total = have.reduce((s, b) => s + b.score, 0)
  if (!(total > 0)) return { value: null, confidence: 0, support: 0 }
  if (col.type === 'float64' || col.type === 'float32') {
    const mean = have.reduce((s, b) => s + b.score * (b.row[col.name] as number), 0) / total
    const near = have.filter(b => Math.abs((b.row[col.name] as number) - mean) <= Math.max(Math.abs(mean) / 10, 1e-9))
    return { value: mean, confidence: near.reduce((s, b) => s + b.score, 0) / total, support: near.length }
  }
  const tally = new Map<string, { value: unknown, weight: number, n: number }>()
  for (const b of have) {
    const key = JSON.stringify(b.row[col.name])
    const e = tally.get(key) ?? { value: b.row[col.name], weight: 0, n: 0 }
    e.weight += b.score; e.n++
    tally.set(key, e)
  }
  const smaller = (a: unknown, b: unknown): boolean => typeof a === 'number' ? a < (b as number) : typeof a === 'boolean' ? !a && b === true : typeof a === 'string' ? a < (b as string) : JSON.stringify(a) < JSON.stringify(b)
  const win = [...tally.values()].reduce((w, e) => e.weight > w.weight || (e.weight === w.weight && smaller(e.value, w.value)) ? e : w)
  return { value: win.value, confidence: win.weight / total, support: win.n }
}

function bruteForce (rows: readonly Row[], q: ReturnType<typeof randomQuery>): { best: Array<{ row: Row, score: number }>, completion: { record: Row, confidence: Record<string, number>, support: Record<string, number> } } {
  const best = rows
    .filter(r => q.filter === null || q.filter.test(r))
    .map(row => ({ row, score: score(q.terms, row) }))
    .sort((a, b) => b.score - a.score || (a.row.id as string < (b.row.id as string) ? -1 : 1))
    .slice(0, q.k)
  const record: Row = Object.fromEntries(q.terms.map(t => [t.column, t.written]))
  const confidence: Record<string, number> = {}
  const support: Record<string, number> = {}
  for (const c of q.fill) {
    const f = fill(c, best)
    record[c.name] = f.value
    confidence[c.name] = f.confidence
    support[c.name] = f.support
  }
  return { best, completion: { record, confidence, support } }
}

// ------------------------------------------------------------------ comparing

const close = (a: unknown, b: unknown): boolean => typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)) : JSON.stringify(a) === JSON.stringify(b)

function expectSameAnswer (a: QueryAnswer, want: ReturnType<typeof bruteForce>, what: string): void {
  expect(a.rows.map(r => r.id), `${what}: ids`).toEqual(want.best.map(b => b.row.id))
  a.rows.forEach((r, i) => { expect(close(r._score, want.best[i]!.score), `${what}: score of ${String(r.id)}: ${String(r._score)} vs ${want.best[i]!.score}`).toBe(true) })
  const got = a.completion!
  expect(Object.keys(got.record), `${what}: record keys`).toEqual(Object.keys(want.completion.record))
  for (const [c, v] of Object.entries(want.completion.record)) expect(close(got.record[c], v), `${what}: ${c} = ${JSON.stringify(got.record[c])} vs ${JSON.stringify(v)}`).toBe(true)
  for (const [c, v] of Object.entries(want.completion.confidence)) expect(close(got.confidence[c], v), `${what}: confidence of ${c}: ${got.confidence[c]} vs ${v}`).toBe(true)
  expect({ ...got.support }, `${what}: support`).toEqual(want.completion.support)
}

async function clusterWith (seed: number, def: SpaceDef, rows: Row[]): Promise<QueryCluster> {
  const c = new QueryCluster({ seed, peers: 5 })
  // The harness's rows are typed for its sales space; the memory stores hold any columns.
  await c.addSpace(def, rows as unknown as SalesRow[])
  return c
}

describe('complete in the simulator equals a brute-force scan', () => {
  it('random spaces, records, weights, scales, fills, k and filters, from any coordinator', async () => {
    let ties = 0
    for (let seed = 1; seed <= 16; seed++) {
      const g = new Gen(seed * 7919)
      const { def, cols, rows } = randomSpace(g, `s${seed}`)
      const c = await clusterWith(seed, def, rows)
      for (let n = 0; n < 5; n++) {
        const q = randomQuery(g, cols, rows)
        const query = { space: def.name, complete: q.body, ...(q.filter !== null ? { filter: q.filter.query } : {}) }
        const coordinator = g.pick(c.ids)
        const a = await c.run(coordinator, { query })
        const what = `seed ${seed} query ${n} ${JSON.stringify(query)}`
        const want = bruteForce(rows, q)
        expectSameAnswer(a, want, what)
        expect(a.coverage, what).toEqual({ total: 8, answered: 8, missing: [] })
        expect(a.confidence).toBe(1)
        expect(a.columns.map(x => x.name)).toEqual([...def.schema.map(x => x.name), '_score'])
        // A neighbour's row is the stored row, whole.
        for (const r of a.rows) expect(close(JSON.stringify({ ...r, _score: 0 }), JSON.stringify({ ...rows.find(x => x.id === r.id), _score: 0 })), what).toBe(true)
        for (let i = 1; i < want.best.length; i++) if (want.best[i]!.score === want.best[i - 1]!.score) ties++
      }
    }
    // Equal scores are common here (few distinct values): the id order was put to the test.
    expect(ties).toBeGreaterThan(20)
  })

  it('with partitions lost, the answer is exact over those that answered and says which did not', async () => {
    const g = new Gen(4242)
    const { def, cols, rows } = randomSpace(g, 'lossy')
    const c = await clusterWith(77, def, rows)
    const down = c.replicasOf(def.name, 0)
    const lost = [...Array(def.partitions).keys()].filter(p => c.replicasOf(def.name, p).every(r => down.includes(r)))
    for (const id of down) c.unreachable.add(id)
    const coordinator = c.ids.find(id => !down.includes(id))!
    const kept = rows.filter(r => !lost.includes(partitionOfId(r.id as string, def.partitions)))
    expect(kept.length).toBeLessThan(rows.length)
    for (let n = 0; n < 4; n++) {
      const q = randomQuery(g, cols, rows)
      const a = await c.run(coordinator, { query: { space: def.name, complete: q.body, ...(q.filter !== null ? { filter: q.filter.query } : {}) } })
      expect(a.coverage.missing.map(m => m.partition)).toEqual(lost)
      expect(a.coverage.answered).toBe(def.partitions - lost.length)
      expect(a.confidence).toBeCloseTo((def.partitions - lost.length) / def.partitions, 12)
      expectSameAnswer(a, bruteForce(kept, q), `lossy query ${n}`)
    }
  })
})
