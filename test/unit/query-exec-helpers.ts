/**
 * Helpers for the query executor tests: a seeded random table, a split of its rows over
 * partitions and batches, and an in-test pipeline (parse → validate → split → fragment per
 * partition → msgpack round trip → merge → finish) that mirrors src/query/service without a
 * network.
 */
import { pack, unpack } from 'msgpackr'
import { batchFromRows, narrowNullCode, type BatchSource, type ColumnBatch, type ColumnVector, type StoredBatch, type StoredVector, type ValueType } from '../../src/columnar/index.js'
import { MemoryBudget, QueryMerger, runFragment, splitPlan, type FinalResult, type FragmentOutput, type SplitPlan } from '../../src/query/exec/index.js'
import { parseJsonQuery } from '../../src/query/json/index.js'
import type { PlanNode } from '../../src/query/model/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan, type OutputColumn } from '../../src/query/validate/index.js'
import { SeededRandom } from '../../src/runtime/index.js'
import { parseSchemaSpec, type SpaceDef } from '../../src/schema/index.js'

export const SPEC = 's:utf8,s2:utf8,i:int32,x:float64,b:bool,big:int64,ts:timestamp,d:date,v:vector<4>'
export const space: SpaceDef = { name: 't', uid: 't-1', partitions: 8, replicas: 1, schema: parseSchemaSpec(SPEC) }
export const COLUMNS = space.schema.map(c => ({ name: c.name, type: c.type as ValueType }))
export const columnType = (name: string): ValueType | undefined => COLUMNS.find(c => c.name === name)?.type

export type Row = Record<string, unknown>

/** A seeded PRNG in [0, 1): the project's SeededRandom as a function. */
export function rng (seed: number): () => number {
  const r = new SeededRandom(seed)
  return () => r.next()
}

export const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
export const intIn = (r: () => number, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1))

export const T0 = Date.UTC(2024, 0, 1)
const DAY = 86_400_000

/** `n` random rows: few distinct strings with NULLs, small ints, floats with negatives and NULLs, bools, vectors. */
export function randomRows (r: () => number, n: number): Row[] {
  const rows: Row[] = []
  const nullRate = r() * 0.3
  const sVals = ['a', 'b', 'c', 'dd', 'E', ''].slice(0, intIn(r, 1, 6))
  for (let k = 0; k < n; k++) {
    const maybe = <T>(v: T): T | null => r() < nullRate ? null : v
    rows.push({
      id: `r${String(k).padStart(5, '0')}`,
      s: maybe(pick(r, sVals)),
      s2: maybe(pick(r, ['x', 'y', 'z'])),
      i: maybe(intIn(r, -5, 20)),
      x: maybe(r() < 0.05 ? pick(r, [0, -0]) : Math.round((r() - 0.4) * 2000) / 8),
      b: maybe(r() < 0.5),
      big: maybe(intIn(r, -1e6, 1e6) * 1000),
      ts: maybe(T0 + Math.floor(r() * 90 * DAY)),
      d: maybe(19_700 + intIn(r, 0, 60)),
      v: r() < 0.1 ? null : [r() * 2 - 1, r() * 2 - 1, r() * 2 - 1, r() * 2 - 1]
    })
  }
  return rows
}

/** A batch whose string dictionaries also hold entries no row uses (storage may hand such batches out). */
function withUnusedDictEntries (b: ColumnBatch): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  for (const [name, v] of b.columns) {
    if (v.tag !== 'str') { columns.set(name, v); continue }
    const extra = ['~unused', '!unused', 'zz-unused']
    columns.set(name, { tag: 'str', type: 'utf8', codes: v.codes.map(c => c < 0 ? c : c + extra.length), dict: [...extra, ...v.dict] })
  }
  return { length: b.length, columns }
}

export const batchOf = (rows: readonly Row[]): ColumnBatch => batchFromRows(rows, COLUMNS)

/**
 * A batch whose number vectors say what storage's do (NumVector.nulls, int32), so the executor's
 * loops take the paths that rely on them.
 */
export function withKnown (b: ColumnBatch): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  for (const [name, v] of b.columns) {
    if (v.tag !== 'num') { columns.set(name, v); continue }
    let nulls = 0
    let int32 = v.type === 'int32' || v.type === 'date' || v.type === 'bool'
    for (const x of v.values) {
      if (x !== x) nulls++
      else if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) int32 = false
    }
    columns.set(name, int32 ? { ...v, nulls, int32 } : { ...v, nulls })
  }
  return { length: b.length, columns }
}

/**
 * A batch as storage's cache holds it (columnar/compact.ts): each number column of at most
 * 65,534 distinct values as codes into them, each string column as narrow codes; the rest as
 * withKnown makes it. `wide`: 2-byte codes even where 1 would do.
 */
export function asStored (b: ColumnBatch, wide = false): StoredBatch {
  const columns = new Map<string, StoredVector>()
  for (const [name, v] of withKnown(b).columns) {
    if (v.tag === 'num') {
      const dict: number[] = []
      const index = new Map<number, number>()
      let nulls = 0
      for (const x of v.values) {
        if (x !== x) { nulls++; continue }
        if (!index.has(x)) { index.set(x, dict.length); dict.push(x) }
      }
      // Map keys are SameValueZero: -0 would read back as 0 (storage's writer keeps such a column wide too).
      if (v.values.some(x => Object.is(x, -0)) || dict.length > 65_534) { columns.set(name, v); continue }
      const nullCode = dict.length
      const table = Float64Array.from(nulls > 0 ? [...dict, NaN] : dict)
      const codes = dict.length < 255 && !wide ? new Uint8Array(v.values.length) : new Uint16Array(v.values.length)
      for (let i = 0; i < codes.length; i++) { const x = v.values[i]!; codes[i] = x !== x ? nullCode : index.get(x)! }
      columns.set(name, { tag: 'coded', type: v.type, codes, dict: table, nulls, ...(v.int32 === true ? { int32: true as const } : {}) })
    } else if (v.tag === 'str' && v.dict.length < 65_535) {
      const codes = v.dict.length < 255 && !wide ? new Uint8Array(v.codes.length) : new Uint16Array(v.codes.length)
      const nul = narrowNullCode(codes)
      let nulls = 0
      for (let i = 0; i < codes.length; i++) { const c = v.codes[i]!; if (c < 0) nulls++; codes[i] = c < 0 ? nul : c }
      columns.set(name, { tag: 'narrow', type: 'utf8', codes, dict: v.dict, nulls })
    } else {
      columns.set(name, v)
    }
  }
  return { length: b.length, columns }
}

/** Rows cut into batches of random sizes (empty batches included now and then). */
export function randomBatches (r: () => number, rows: readonly Row[]): StoredBatch[] {
  const out: StoredBatch[] = []
  let at = 0
  while (at < rows.length) {
    const size = r() < 0.1 ? 0 : intIn(r, 1, Math.max(1, Math.ceil(rows.length / 3)))
    // Every other batch as storage hands them out (no random draw: the streams stay as they
    // were): in turn with what its vectors say of themselves, compact, compact 2 bytes a code.
    const plain = (r() < 0.3 ? withUnusedDictEntries : (x: ColumnBatch) => x)(batchOf(rows.slice(at, at + size)))
    const k = out.length
    out.push(k % 2 === 0 ? plain : k % 6 === 1 ? withKnown(plain) : asStored(plain, k % 6 === 5))
    at += size
  }
  return out
}

/** Rows dealt at random over 1–8 partitions (some possibly empty), each cut into random batches. */
export function randomPartitions (r: () => number, rows: readonly Row[], parts = intIn(r, 1, 8)): StoredBatch[][] {
  const per: Row[][] = Array.from({ length: parts }, () => [])
  for (const row of rows) per[Math.floor(r() * parts)]!.push(row)
  return per.map(p => randomBatches(r, p))
}

export interface Prepared { plan: PlanNode, columns: OutputColumn[], split: SplitPlan }

/** Parses (SQL string or JSON query object), validates against the test space and splits. */
export function prepare (query: string | object): Prepared {
  const parsed = typeof query === 'string' ? parseSql(query) : parseJsonQuery(query)
  const v = validatePlan(parsed.plan, space, { origins: parsed.origins })
  if (!v.ok) throw new Error(`invalid test query ${JSON.stringify(query)}: ${v.errors.map(e => e.message).join('; ')}`)
  return { plan: v.plan, columns: v.columns, split: splitPlan(v.plan, space.schema.map(c => c.name)) }
}

/** As the network would carry it. */
export const overWire = (out: FragmentOutput): FragmentOutput => unpack(pack(out)) as FragmentOutput

export interface RunOptions {
  /** Budget per fragment (a fresh one each partition, as a data peer does). */
  fragmentBudget?: () => MemoryBudget
  /** The coordinator's budget. */
  budget?: MemoryBudget
}

/** A partition as storage serves it: exactly the columns asked for (projection pushdown). */
export function sourceOf (batches: readonly StoredBatch[]): BatchSource {
  return {
    batches: (columns: readonly string[]) => batches.map(b => {
      const out = new Map<string, StoredVector>()
      for (const c of columns) {
        const v = b.columns.get(c)
        if (v === undefined) throw new Error(`the fragment asked for an unknown column ${c}`)
        out.set(c, v)
      }
      return { length: b.length, columns: out }
    })
  }
}

/** The whole pipeline over `partitions` (each a list of batches). */
export async function runLocal (query: string | object, partitions: readonly StoredBatch[][], opts: RunOptions = {}): Promise<FinalResult> {
  const p = prepare(query)
  const merger = new QueryMerger(p.split, columnType, opts.budget)
  for (const batches of partitions) {
    const res = await runFragment(p.split.fragment, { source: sourceOf(batches), columnType, ...(opts.fragmentBudget !== undefined ? { budget: opts.fragmentBudget() } : {}) })
    merger.add(overWire(res.output))
  }
  return merger.finish(p.columns)
}

/** The same query over one partition holding every row in one batch. */
export async function runSingle (query: string | object, rows: readonly Row[]): Promise<FinalResult> {
  return await runLocal(query, [[batchOf(rows)]])
}

// ---------------------------------------------------------------- comparison

/** Relative (or, near zero, absolute) closeness. */
export function close (a: number, b: number, rel: number): boolean {
  if (a === b) return true
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false
  return Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-9)
}

/** Compares two values: numbers within `rel`, everything else strictly. Returns a message or null. */
export function diffValue (a: unknown, b: unknown, rel: number, at: string): string | null {
  if (typeof a === 'number' && typeof b === 'number') return close(a, b, rel) ? null : `${at}: ${a} vs ${b}`
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${at}: length ${a.length} vs ${b.length}`
    for (let i = 0; i < a.length; i++) { const d = diffValue(a[i], b[i], rel, `${at}[${i}]`); if (d !== null) return d }
    return null
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort(); const kb = Object.keys(b).sort()
    if (ka.join('\u0000') !== kb.join('\u0000')) return `${at}: keys ${ka.join(',')} vs ${kb.join(',')}`
    for (const k of ka) { const d = diffValue((a as Row)[k], (b as Row)[k], rel, `${at}.${k}`); if (d !== null) return d }
    return null
  }
  return Object.is(a, b) || a === b ? null : `${at}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`
}

/** Rows in a canonical order (by their JSON), for results whose order is unspecified. */
export const canonical = (rows: readonly Row[], keys: readonly string[]): Row[] =>
  [...rows].sort((p, q) => {
    for (const k of keys) {
      const a = JSON.stringify(p[k] ?? null); const b = JSON.stringify(q[k] ?? null)
      if (a !== b) return a < b ? -1 : 1
    }
    return 0
  })

/** SQL-ish comparison of two JS values for ORDER BY (NULL handled by the caller). */
export const cmp = (a: unknown, b: unknown): number => {
  if (typeof a === 'boolean') a = a ? 1 : 0
  if (typeof b === 'boolean') b = b ? 1 : 0
  return (a as number | string) < (b as number | string) ? -1 : (a as number | string) > (b as number | string) ? 1 : 0
}

/** JS ORDER BY: keys as [column, 'asc'|'desc', 'first'|'last']. */
export function jsSort (rows: readonly Row[], keys: ReadonlyArray<readonly [string, 'asc' | 'desc', 'first' | 'last']>): Row[] {
  return [...rows].sort((p, q) => {
    for (const [c, dir, nulls] of keys) {
      const a = p[c] ?? null; const b = q[c] ?? null
      if (a === null && b === null) continue
      if (a === null) return nulls === 'first' ? -1 : 1
      if (b === null) return nulls === 'first' ? 1 : -1
      const d = cmp(a, b)
      if (d !== 0) return dir === 'asc' ? d : -d
    }
    return 0
  })
}

/** Values of a JS column without NULLs. */
export const nonNull = (rows: readonly Row[], c: string): unknown[] => rows.map(r => r[c] ?? null).filter(v => v !== null)

/**
 * GROUP BY `keys` in JS: per group, its key values (-0 as 0, absent as null) and what `compute`
 * makes of the group's rows. Without keys there is one group even over no rows, as in SQL.
 */
export function jsGroups (rows: readonly Row[], keys: readonly string[], compute: (group: readonly Row[]) => Row): Row[] {
  const groups = new Map<string, Row[]>()
  for (const row of rows) {
    // JSON writes -0 as 0: one group, as SQL has it.
    const k = JSON.stringify(keys.map(c => row[c] ?? null))
    let g = groups.get(k)
    if (g === undefined) groups.set(k, g = [])
    g.push(row)
  }
  if (keys.length === 0 && groups.size === 0) groups.set('[]', [])
  return [...groups.values()].map(g => {
    const out: Row = {}
    for (const c of keys) out[c] = g[0]![c] === -0 ? 0 : g[0]![c] ?? null
    return { ...out, ...compute(g) }
  })
}
