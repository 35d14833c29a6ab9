/**
 * Hash grouping for GROUP BY (and SELECT DISTINCT): maps each row's key values to a dense group
 * id, then feeds the per-group accumulators. Keys are grouped by dictionary: a string key is
 * looked up once per distinct string of a batch (its dictionary), not once per row; a small
 * non-negative integer key by array index, any other number through one Map<number>. Two keys
 * find their group in a dense table of id pairs, more (or too many pairs) in a hash table of
 * ids combined arithmetically into one number: no per-row string or array is built. With at most
 * two keys and aggregates that fuse, the lookup runs inside the generated loop (kernel.ts),
 * together with the WHERE tests and the aggregates; otherwise group ids are assigned first.
 */
import { gather, narrowNullCode, vectorFromValues, type ColumnBatch, type ColumnVector, type NumVector, type ValueType } from '../../columnar/index.js'
import type { MemoryBudget } from './errors.js'
import { QueryExecError } from './errors.js'
import { MAX_FOLDED_ROWS, foldSteps, type FusedStep, type GroupAccumulator } from './accumulators.js'
import { CompositeTable, KeyDict } from './group-keys.js'
import { runKernel, type GroupProbe, type KeyProbe } from './kernel.js'
import { selectByTests, type RowTest } from './select.js'

/** Most groups one table may hold; the memory budget usually stops a query first. */
export const MAX_GROUPS = 10_000_000

/** Largest dense table for two keys: 2^22 cells (16 MiB). */
const DENSE_MAX_BITS = 22

/** The dense table of a probe that has none (one key). */
const NO_TABLE = new Int32Array(0)

/** Groups and their aggregate states. */
export class GroupTable {
  private readonly dicts: KeyDict[]
  /** Per group, the id of its value in each key's dict. */
  private readonly keyIds: number[][]
  /** Several keys past the dense table: made on first use (most tables never need one). */
  private compositeTable: CompositeTable | undefined
  private get composites (): CompositeTable { return (this.compositeTable ??= new CompositeTable()) }
  /** Two keys: the dense table (null once too big for one, then `composites` serves). */
  private dense: Int32Array | null = new Int32Array(0)
  private denseBitsA = 0
  private denseBitsB = 0
  private readonly radixBits: number
  private groups = 0
  private gidScratch: Int32Array = new Int32Array(0)
  /** The generated loops' batch counts (kernel.ts), one per group, zero between loops. */
  private counts: Float64Array = new Float64Array(0)
  private idScratch: Int32Array[] = []

  constructor (readonly keyTypes: readonly ValueType[], readonly accs: readonly GroupAccumulator[], private readonly budget: MemoryBudget | undefined, private readonly maxGroups = MAX_GROUPS) {
    this.dicts = keyTypes.map(() => new KeyDict())
    this.keyIds = keyTypes.map(() => [])
    // Ids of k keys pack into one double: 52 bits shared between them.
    this.radixBits = keyTypes.length <= 1 ? 52 : Math.floor(52 / keyTypes.length)
    // With no keys there is exactly one group, and it exists even when no row arrives (SQL:
    // SELECT count(*) FROM empty answers one row, 0).
    if (keyTypes.length === 0) this.newGroup([])
  }

  get size (): number { return this.groups }

  private newGroup (ids: readonly number[]): number {
    const g = this.groups++
    if (g >= this.maxGroups) throw new QueryExecError('LIMIT', `more than ${this.maxGroups} groups`)
    for (let k = 0; k < ids.length; k++) this.keyIds[k]!.push(ids[k]!)
    for (const a of this.accs) a.grow(this.groups)
    if (this.counts.length < this.groups) {
      const next = new Float64Array(Math.max(16, 2 * this.counts.length, this.groups))
      next.set(this.counts)
      this.counts = next
    }
    return g
  }

  /** Group ids of rows 0..n-1 (rows sel[0..n-1] with a selection) given the key vectors (one per key, in key order). */
  assign (keys: readonly ColumnVector[], n: number, sel?: Uint32Array): Int32Array {
    if (this.gidScratch.length < n) this.gidScratch = new Int32Array(Math.max(n, 1024))
    const gids = this.gidScratch
    if (keys.length === 0) { gids.fill(0, 0, n); return gids }
    if (keys.length === 1) {
      // One key: its dictionary hands out ids 0, 1, 2, ... in order of first sight, which is the
      // order groups are created in, so the key's id is the group id; no lookup per row.
      this.dicts[0]!.ids(keys[0]!, n, gids, sel)
      const distinct = this.dicts[0]!.values.length
      while (this.groups < distinct) this.newGroup([this.groups])
      return gids
    }
    for (let k = 0; k < keys.length; k++) {
      if ((this.idScratch[k]?.length ?? 0) < n) this.idScratch[k] = new Int32Array(Math.max(n, 1024))
      this.dicts[k]!.ids(keys[k]!, n, this.idScratch[k]!, sel)
    }
    if (keys.length === 2 && this.dense !== null && this.assignDense(n, gids)) return gids
    const limit = 2 ** this.radixBits
    const ids = this.idScratch
    const nk = keys.length
    const tuple = new Array<number>(nk)
    const table = this.composites
    for (let i = 0; i < n; i++) {
      let composite = 0
      for (let k = nk - 1; k >= 0; k--) {
        const id = ids[k]![i]!
        if (id >= limit) throw new QueryExecError('LIMIT', `GROUP BY key ${k + 1} has more than ${limit} distinct values`)
        composite = composite * limit + id
      }
      let g = table.get(composite)
      if (g < 0) {
        for (let k = 0; k < nk; k++) tuple[k] = ids[k]![i]!
        g = this.newGroup(tuple)
        table.set(composite, g)
      }
      gids[i] = g
    }
    return gids
  }

  /**
   * Two keys whose distinct values fit a table of 2^DENSE_MAX_BITS cells: the group of (a, b) is
   * `dense[a | b << bitsA]`, one array read per row. The table doubles a side when a key's ids
   * outgrow it (re-placing the groups so far); past the size limit, grouping moves to the hash
   * table for good. Returns false when it cannot serve this batch.
   */
  private assignDense (n: number, gids: Int32Array): boolean {
    if (!this.fitDense()) return false
    const table = this.dense!
    const bitsA = this.denseBitsA
    const a = this.idScratch[0]!
    const b = this.idScratch[1]!
    const pair = [0, 0]
    for (let i = 0; i < n; i++) {
      const cell = a[i]! | (b[i]! << bitsA)
      let g = table[cell]!
      if (g < 0) {
        pair[0] = a[i]!
        pair[1] = b[i]!
        g = table[cell] = this.newGroup(pair)
      }
      gids[i] = g
    }
    return true
  }

  /**
   * Sizes the two-key dense table for every key id handed out so far. False when that many
   * combinations are too many for a table: the groups so far move to the hash table, for good.
   */
  private fitDense (): boolean {
    if (this.dense === null) return false
    const needA = this.dicts[0]!.values.length
    const needB = this.dicts[1]!.values.length
    let bitsA = this.denseBitsA
    let bitsB = this.denseBitsB
    while ((1 << bitsA) < needA) bitsA++
    while ((1 << bitsB) < needB) bitsB++
    if (bitsA + bitsB > DENSE_MAX_BITS) {
      const limit = 2 ** this.radixBits
      for (let g = 0; g < this.groups; g++) this.composites.set(this.keyIds[1]![g]! * limit + this.keyIds[0]![g]!, g)
      this.dense = null
      return false
    }
    if (bitsA !== this.denseBitsA || bitsB !== this.denseBitsB || this.dense.length === 0) {
      const table = new Int32Array(1 << (bitsA + bitsB)).fill(-1)
      for (let g = 0; g < this.groups; g++) table[this.keyIds[0]![g]! | (this.keyIds[1]![g]! << bitsA)] = g
      this.dense = table
      this.denseBitsA = bitsA
      this.denseBitsB = bitsB
    }
    return true
  }

  /** The fused step of every accumulator, or undefined when one of them cannot fuse over its argument. */
  private fusedSteps (args: ReadonlyArray<ColumnVector | null>): FusedStep[] | undefined {
    const steps: FusedStep[] = []
    for (let a = 0; a < this.accs.length; a++) {
      const step = this.accs[a]!.fuse?.(args[a]!)
      if (step === undefined) return undefined
      steps.push(step)
    }
    return steps
  }

  /**
   * Adds the rows of a batch of n rows that pass every test (the WHERE clause as row tests), in
   * one generated loop with the grouping and the aggregates. Returns how many rows passed, or -1
   * when this table cannot run that loop (an aggregate that does not fuse, keys of another kind
   * or more than two): then the caller selects the rows first and calls addRows.
   */
  addRowsWhere (keys: readonly ColumnVector[], args: ReadonlyArray<ColumnVector | null>, n: number, tests: readonly RowTest[]): number {
    return n === 0 ? 0 : this.addInline(keys, args, n, undefined, tests)
  }

  /** Adds n rows: their key vectors and, per accumulator, its argument vector (null for count(*)). */
  addRows (keys: readonly ColumnVector[], args: ReadonlyArray<ColumnVector | null>, n: number, sel?: Uint32Array): void {
    if (sel !== undefined) n = sel.length
    if (n === 0) return
    if (this.addInline(keys, args, n, sel, []) < 0) this.addAssigned(keys, args, n, sel)
  }

  /** The generated loop (kernel.ts) for one batch: group lookup inline. -1 when it cannot serve. */
  private addInline (keys: readonly ColumnVector[], args: ReadonlyArray<ColumnVector | null>, n: number, sel: Uint32Array | undefined, tests: readonly RowTest[]): number {
    if (keys.length > 2) return -1
    for (const k of keys) if (k.tag !== 'num' && k.tag !== 'str') return -1
    if (keys.length === 2 && !this.fitDense()) return -1
    const steps = this.fusedSteps(args)
    if (steps === undefined) return -1
    const counts = this.batchCounts(this.groups, n, steps)
    if (keys.length === 0) {
      const res = runKernel(tests, { kind: 'none' }, steps, n, sel, counts)
      if (counts !== undefined) foldSteps(steps, this.counts, this.groups)
      return res.matched
    }
    const probes: KeyProbe[] = keys.map((v, k) => {
      const dict = this.dicts[k]!
      dict.prepare(v)
      // Compact columns (NumVector.coded, StrVector.narrow) are read as they are.
      if (v.tag === 'str') return v.narrow !== undefined ? { kind: 'str', col: v.narrow, nullCode: narrowNullCode(v.narrow), dict } : { kind: 'str', col: v.codes, dict }
      const num = v as NumVector
      return num.coded !== undefined ? { kind: 'num', col: num.coded.dict, codes: num.coded.codes, dict } : { kind: 'num', col: num.values, dict }
    })
    const probe: GroupProbe = { miss: r => this.placeRow(keys, args, probe, r), dense: this.dense ?? NO_TABLE, bitsA: this.denseBitsA, steps, counts: this.counts }
    const res = runKernel(tests, { kind: 'keys', keys: probes, probe }, steps, n, sel, counts)
    // The steps as the loop left them (rebuilt when groups grew), the counts of every group.
    if (counts !== undefined) foldSteps(probe.steps, this.counts, this.groups)
    let matched = res.matched
    if (res.stop < n) {
      // The dense table outgrew its limit in this batch: the rest of it goes the general way.
      const rest = sel !== undefined ? sel.subarray(res.stop) : Uint32Array.from({ length: n - res.stop }, (_, i) => res.stop + i)
      const rows = tests.length > 0 ? selectByTests(tests, n, rest) : rest
      if (rows.length > 0) this.addAssigned(keys, args, rows.length, rows)
      matched += rows.length
    }
    this.account()
    return matched
  }

  /**
   * A row the generated loop could not place from its arrays: gives its keys ids and the pair a
   * group (created if new), and rebuilds the probe's steps when groups grew. -1: the dense table
   * would grow past its limit (the loop stops; the table has moved to hashing).
   */
  private placeRow (keys: readonly ColumnVector[], args: ReadonlyArray<ColumnVector | null>, probe: GroupProbe, r: number): number {
    const before = this.groups
    const a = this.dicts[0]!.idAt(keys[0]!, r)
    let g: number
    if (keys.length === 1) {
      // One key: its ids are its group ids (see assign).
      while (this.groups <= a) this.newGroup([this.groups])
      g = a
    } else {
      const b = this.dicts[1]!.idAt(keys[1]!, r)
      if (!this.fitDense()) return -1
      const table = this.dense!
      const cell = a | (b << this.denseBitsA)
      g = table[cell]!
      if (g < 0) g = table[cell] = this.newGroup([a, b])
      probe.dense = table
      probe.bitsA = this.denseBitsA
    }
    if (this.groups !== before) {
      probe.steps = this.fusedSteps(args)!
      probe.counts = this.counts
    }
    return g
  }

  /** Adds rows by group ids assigned beforehand: any keys, any accumulators. */
  private addAssigned (keys: readonly ColumnVector[], args: ReadonlyArray<ColumnVector | null>, n: number, sel: Uint32Array | undefined): void {
    const before = this.groups
    const gids = this.assign(keys, n, sel)
    // Accumulators over typed arrays (count, sum, avg, min, max) run in one fused loop; the
    // others (sketches, DISTINCT, strings) each take their own pass.
    let steps: FusedStep[] | undefined
    for (let a = 0; a < this.accs.length; a++) {
      const acc = this.accs[a]!
      const arg = args[a]!
      const step = acc.fuse?.(arg)
      if (step !== undefined) (steps ??= []).push(step)
      else if (sel === undefined || acc.selects === true) acc.add(gids, arg, n, sel)
      else acc.add(gids, arg === null ? null : gather(arg, sel), n)
    }
    if (steps !== undefined) {
      const counts = this.batchCounts(before, n, steps)
      runKernel([], { kind: 'gids', gids }, steps, n, sel, counts)
      if (counts !== undefined) foldSteps(steps, counts, this.groups)
    }
    this.account()
  }

  /**
   * The batch counts (kernel.ts) for a loop over n rows when they spare it work a row (the
   * increment they cost, then more: foldSaves) and folding them afterwards costs little beside
   * it: the groups there were before it at most a quarter of its rows (the fold reads every
   * group, old and new). Undefined: the loop keeps each step's own counts.
   */
  private batchCounts (groupsBefore: number, n: number, steps: readonly FusedStep[]): Float64Array | undefined {
    return groupsBefore <= n >> 2 && n <= MAX_FOLDED_ROWS && foldSaves(steps) >= 2 ? this.counts : undefined
  }

  private account (): void {
    if (this.budget === undefined) return
    let bytes = this.groups * (48 + 16 * this.keyTypes.length)
    for (const a of this.accs) bytes += a.bytes()
    this.budget.set(this, bytes)
  }

  /** Key values of group g, in key order. */
  keyValues (g: number): unknown[] {
    return this.dicts.map((d, k) => d.values[this.keyIds[k]![g]!])
  }

  /** The partial state of every group, for shipping: `keys[k][g]`, `states[a][g]`. */
  encode (): EncodedGroups {
    const keys = this.dicts.map((d, k) => this.keyIds[k]!.map(id => d.values[id]))
    const states = this.accs.map(a => { const out = new Array<unknown>(this.groups); for (let g = 0; g < this.groups; g++) out[g] = a.encode(g); return out })
    return { groups: this.groups, keys, states }
  }

  /** Merges partial states encoded by another table of the same shape (checked: it comes off the network). */
  mergeEncoded (e: unknown): void {
    const p = parseEncodedGroups(e, this.keyTypes, this.accs.length)
    if (p.groups === 0) return
    const keys = p.keys.map((vals, k) => vectorFromValues(this.keyTypes[k]!, vals))
    const gids = this.assign(keys, p.groups).slice(0, p.groups)
    for (let a = 0; a < this.accs.length; a++) {
      const acc = this.accs[a]!
      const st = p.states[a]!
      for (let i = 0; i < p.groups; i++) acc.mergeEncoded(gids[i]!, st[i])
    }
    this.account()
  }

  /** Final values: key columns then one column per accumulator, as a batch. */
  finalize (keyNames: readonly string[], accNames: readonly string[], accTypes: readonly ValueType[]): ColumnBatch {
    const columns = new Map<string, ColumnVector>()
    for (let k = 0; k < this.dicts.length; k++) {
      const d = this.dicts[k]!
      columns.set(keyNames[k]!, vectorFromValues(this.keyTypes[k]!, this.keyIds[k]!.map(id => d.values[id])))
    }
    for (let a = 0; a < this.accs.length; a++) {
      const acc = this.accs[a]!
      const vals = new Array<unknown>(this.groups)
      for (let g = 0; g < this.groups; g++) vals[g] = acc.finalize(g)
      columns.set(accNames[a]!, vectorFromValues(accTypes[a]!, vals))
    }
    return { length: this.groups, columns }
  }

  release (): void { this.budget?.release(this) }
}

/**
 * What batch counts spare a loop a row, in array updates: the count(*), a dense column's count
 * (of a count or a sum) and an int32 sum's compensation (a plain addition instead of TwoSum's
 * two updates and four operations, counted as two). They cost one update a row themselves.
 */
function foldSaves (steps: readonly FusedStep[]): number {
  let saved = 0
  for (const s of steps) {
    if (s.kind === 'countAll' || (s.kind === 'countNum' && s.dense)) saved++
    else if (s.kind === 'sum') saved += (s.dense ? 1 : 0) + (s.exact ? 2 : 0)
  }
  return saved
}

export interface EncodedGroups {
  groups: number
  keys: unknown[][]
  states: unknown[][]
}

function parseEncodedGroups (e: unknown, keyTypes: readonly ValueType[], nAccs: number): EncodedGroups {
  const nKeys = keyTypes.length
  const bad = (why: string): never => { throw new QueryExecError('BAD_PARTIAL', `partial groups: ${why}`) }
  if (e === null || typeof e !== 'object') return bad('not an object')
  const { groups, keys, states } = e as Record<string, unknown>
  if (typeof groups !== 'number' || !Number.isSafeInteger(groups) || groups < 0 || groups > MAX_GROUPS) return bad('bad group count')
  if (!Array.isArray(keys) || keys.length !== nKeys || keys.some(k => !Array.isArray(k) || k.length !== groups)) return bad(`expected ${nKeys} key columns of ${groups} values`)
  if (!Array.isArray(states) || states.length !== nAccs || states.some(s => !Array.isArray(s) || s.length !== groups)) return bad(`expected ${nAccs} state columns of ${groups} values`)
  // A key of the wrong kind would silently become NULL in vectorFromValues: refuse it instead.
  for (let k = 0; k < nKeys; k++) {
    const want = keyTypes[k] === 'utf8' ? 'string' : 'number'
    for (const v of (keys as unknown[][])[k]!) if (v !== null && typeof v !== want) return bad(`key ${k + 1} has a value that is neither null nor a ${want}`)
  }
  return { groups, keys: keys as unknown[][], states: states as unknown[][] }
}
