/**
 * The coordinator's half of a query: merges the partitions' answers (partial group states,
 * aggregation states, rows or top-K rows) as they arrive, then finalizes and runs the steps above
 * the merge (HAVING, ORDER BY, LIMIT/OFFSET, the select list) and renders the rows.
 */
import { gatherBatch, valueAt, type ColumnBatch, type ColumnVector, type StrVector, type ValueType } from '../../columnar/index.js'
import type { Expr } from '../model/index.js'
import { evalExpr, evalPredicate, exprType } from './eval.js'
import { MemoryBudget, QueryExecError } from './errors.js'
import { SCORE_COLUMN } from '../model/index.js'
import { emptyBatch, fragmentShape, newGroupTable, type FragmentOutput } from './fragment.js'
import type { GroupTable } from './group.js'
import { AggregationSet } from '../aggregate/index.js'
import { decodeState, toAggsSpec } from './json-aggs.js'
import { batchBytes, concatBatches, sortAndSlice, vectorBytes } from './rows.js'
import type { SplitPlan } from './split.js'
import { sortByScore } from './topk.js'
import { COMPLETE_ORDER } from './complete-score.js'
import { completion, type Completion } from './complete-fill.js'
import { decodeBatch } from './wire.js'

export interface OutputColumn { name: string, type: ValueType }

export interface FinalResult {
  columns: OutputColumn[]
  rows: Array<Record<string, unknown>>
  /** A JSON query's aggregations (instead of rows). */
  aggregations?: Record<string, unknown>
  /** The final batch, for Arrow output. */
  batch: ColumnBatch
  /** A completion's filled record (the rows are its neighbours). */
  completion?: Completion
  /** The rows a chunk at a time (to stream an answer without rendering every row at once); default: `rows` in slices. */
  rowChunks?: (chunkRows: number) => Iterable<Array<Record<string, unknown>>>
}

/** Merges partition answers for one query. */
export class QueryMerger {
  private readonly table: GroupTable | undefined
  private readonly aggSet: AggregationSet | undefined
  private aggStates: unknown[] | undefined
  private readonly parts: ColumnBatch[] = []
  private partRows = 0
  /** batchBytes of `parts`, kept as they come. */
  private partBytes = 0
  private readonly budget: MemoryBudget

  constructor (readonly split: SplitPlan, private readonly columnType: (name: string) => ValueType | undefined, budget?: MemoryBudget) {
    this.budget = budget ?? new MemoryBudget(Infinity)
    if (split.merge === 'groups') this.table = newGroupTable(split.aggregate!, e => exprType(e, columnType), this.budget)
    if (split.merge === 'aggs') {
      this.aggSet = new AggregationSet(toAggsSpec(split.aggregate!.aggs))
      this.aggStates = this.aggSet.init()
    }
  }

  /** Merges one partition's answer (untrusted: it came from another peer). */
  add (output: FragmentOutput): void {
    switch (this.split.merge) {
      case 'groups':
        if (output.kind !== 'groups') throw new QueryExecError('BAD_PARTIAL', `expected groups, got ${output.kind}`)
        this.table!.mergeEncoded(output.groups)
        return
      case 'aggs':
        if (output.kind !== 'aggs') throw new QueryExecError('BAD_PARTIAL', `expected aggregation states, got ${output.kind}`)
        this.aggStates = this.aggSet!.merge(this.aggStates!, decodeState(() => this.aggSet!.decode(output.states)))
        return
      case 'rows':
      case 'topk':
      case 'complete': {
        if (output.kind !== 'rows') throw new QueryExecError('BAD_PARTIAL', `expected rows, got ${output.kind}`)
        const batch = decodeBatch(output.batch)
        this.parts.push(batch)
        this.partRows += batch.length
        this.partBytes += batchBytes(batch)
        this.budget.set(this.parts, this.partBytes)
        // Bound what a pushed-down LIMIT needs: keep the best n + m rows so far.
        if (this.split.perPartitionLimit !== null && this.partRows > 4 * this.split.perPartitionLimit + 4096) this.compact()
      }
    }
  }

  private compact (): void {
    const all = this.mergedRows()
    this.parts.length = 0
    this.parts.push(all)
    this.partRows = all.length
    this.partBytes = batchBytes(all)
    this.budget.set(this.parts, this.partBytes)
  }

  private mergedRows (): ColumnBatch {
    const nonEmpty = this.parts.filter(b => b.length > 0)
    const all = concatBatches(nonEmpty.length > 0 ? nonEmpty : this.parts.slice(0, 1))
    if (this.split.merge === 'topk') return sortByScore(all, this.split.topk!.metric, this.split.topk!.k)
    if (this.split.merge === 'complete') return sortAndSlice(all, COMPLETE_ORDER, this.split.complete!.k)
    const limit = this.split.perPartitionLimit
    if (limit === null) return all
    return sortAndSlice(all, this.split.perPartitionOrder, limit)
  }

  /** An empty batch with the fragment's columns (and `_score` for top-K). */
  private noRows (): ColumnBatch {
    const names = [...(fragmentShape(this.split.fragment).scan.columns ?? [])]
    if (this.split.merge === 'topk' || this.split.merge === 'complete') names.push(SCORE_COLUMN)
    return emptyBatch(names, n => n === SCORE_COLUMN ? 'float64' : this.columnType(n))
  }

  /** Finalizes: `columns` are the query's output columns (from validation). */
  finish (columns: readonly OutputColumn[]): FinalResult {
    if (this.split.merge === 'aggs') {
      const aggregations = this.aggSet!.finalize(this.aggStates!)
      return { columns: [], rows: [], aggregations, batch: { length: 0, columns: new Map() } }
    }
    let batch: ColumnBatch
    if (this.split.merge === 'groups') {
      const node = this.split.aggregate!
      const typeOf = (e: Expr): ValueType => exprType(e, this.columnType)
      batch = this.table!.finalize(node.groupBy.map(g => g.alias), node.aggregates.map(a => a.alias), node.aggregates.map(a => aggregateType(a.fn, a.args.length === 0 ? 'null' : typeOf(a.args[0]!))))
      this.table!.release()
    } else {
      batch = this.parts.length === 0 ? this.noRows() : this.mergedRows()
      // No partition had a row (or none answered): a fragment with nothing to send may ship a
      // batch without columns, and the steps above still need the columns to exist.
      if (batch.length === 0 && batch.columns.size === 0) batch = this.noRows()
    }
    // From the k neighbours as merged, before any step above could drop a column the fill reads.
    const filled = this.split.merge === 'complete' ? this.completion(batch) : undefined
    // The answer as it is built counts too, beside the gathered rows it comes from.
    const answer = {}
    for (const step of this.split.post) {
      switch (step.kind) {
        case 'Filter': batch = gatherBatch(batch, evalPredicate(step.predicate, batch)); break
        case 'Sort': batch = sortAndSlice(batch, step.keys, null); break
        case 'Limit': batch = sortAndSlice(batch, [], step.limit, step.offset); break
        case 'Project': batch = projectWithin(step.items, batch, this.budget, answer); break
      }
      this.budget.set(answer, batchBytes(batch))
    }
    this.budget.release(this.parts)
    const result = finalResult(columns, batch)
    if (filled !== undefined) result.completion = filled
    return result
  }

  private completion (batch: ColumnBatch): Completion {
    const node = this.split.complete!
    const cols = [...batch.columns.keys()].map(name => ({ name, type: name === SCORE_COLUMN ? 'float64' as const : this.columnType(name) ?? 'null' }))
    return completion(node, renderRows(batch, cols), cols)
  }
}

/** Rows a computed select list is evaluated over at a time, its size counted after each. */
const PROJECT_CHUNK_ROWS = 16_384

/**
 * The select list over a batch. Columns are taken as they are; computed items are evaluated
 * PROJECT_CHUNK_ROWS rows at a time, and what they built so far is set against the budget after
 * each chunk, so that strings growing past the budget (`v || v || ...`) stop the query while they
 * are still a chunk over it, not once all of them exist.
 */
function projectWithin (items: ReadonlyArray<{ expr: Expr, alias: string }>, batch: ColumnBatch, budget: MemoryBudget, owner: object): ColumnBatch {
  const out = new Map<string, ColumnVector>()
  const computed = items.filter(i => i.expr.kind !== 'Column')
  if (computed.length === 0 || batch.length <= PROJECT_CHUNK_ROWS) {
    for (const item of items) out.set(item.alias, evalExpr(item.expr, batch))
    return { length: batch.length, columns: out }
  }
  const base = batchBytes(batch)
  const parts = computed.map(() => [] as ColumnBatch[])
  let bytes = 0
  for (let start = 0; start < batch.length; start += PROJECT_CHUNK_ROWS) {
    const chunk = sliceRows(batch, start, Math.min(batch.length, start + PROJECT_CHUNK_ROWS))
    computed.forEach((item, i) => {
      const v = evalExpr(item.expr, chunk)
      bytes += vectorBytes(v)
      parts[i]!.push({ length: chunk.length, columns: new Map([['v', v]]) })
    })
    budget.set(owner, base + bytes)
  }
  const whole = new Map(computed.map((item, i) => [item, concatBatches(parts[i]!).columns.get('v')!]))
  for (const item of items) out.set(item.alias, whole.get(item) ?? evalExpr(item.expr, batch))
  return { length: batch.length, columns: out }
}

/**
 * Rows [start, end) of a batch, each string column with only the strings those rows use (a
 * gathered column keeps its source's whole dictionary, and string functions run over the
 * dictionary: a chunk must not compute every row's strings again).
 */
function sliceRows (batch: ColumnBatch, start: number, end: number): ColumnBatch {
  const rows = new Uint32Array(end - start)
  for (let i = 0; i < rows.length; i++) rows[i] = start + i
  const columns = new Map<string, ColumnVector>()
  for (const [name, v] of gatherBatch(batch, rows).columns) columns.set(name, v.tag === 'str' && v.dict.length > v.codes.length ? compactStrings(v) : v)
  return { length: rows.length, columns }
}

function compactStrings (v: StrVector): StrVector {
  const remap = new Map<number, number>()
  const dict: string[] = []
  const codes = new Int32Array(v.codes.length)
  for (let i = 0; i < codes.length; i++) {
    const c = v.codes[i]!
    if (c < 0) { codes[i] = -1; continue }
    let r = remap.get(c)
    if (r === undefined) { r = dict.length; dict.push(v.dict[c]!); remap.set(c, r) }
    codes[i] = r
  }
  return { tag: 'str', type: 'utf8', codes, dict }
}

/**
 * The result of a query over `batch`: its JSON rows are rendered when first read (once), and
 * `rowChunks` renders them a chunk at a time for an answer streamed to its client, which then
 * never holds them all.
 */
export function finalResult (columns: readonly OutputColumn[], batch: ColumnBatch): FinalResult {
  const cols = [...columns]
  let rows: Array<Record<string, unknown>> | undefined
  const result = {
    columns: cols,
    batch,
    rowChunks: function * (chunkRows: number): Generator<Array<Record<string, unknown>>> {
      if (rows !== undefined) { for (let s = 0; s < rows.length; s += chunkRows) yield rows.slice(s, s + chunkRows); return }
      for (let s = 0; s < batch.length; s += chunkRows) yield renderRows(batch, cols, s, Math.min(batch.length, s + chunkRows))
    }
  } as unknown as FinalResult
  Object.defineProperty(result, 'rows', { enumerable: true, get: () => (rows ??= renderRows(batch, cols)) })
  return result
}

/** The result type of an SQL aggregate (as validation types it). */
export function aggregateType (fn: string, arg: ValueType): ValueType {
  switch (fn) {
    case 'count': case 'approx_count_distinct': return 'int64'
    case 'sum': return arg === 'int32' || arg === 'int64' ? 'int64' : 'float64'
    case 'avg': case 'stddev_pop': case 'var_pop': return 'float64'
    default: return arg
  }
}

const INT_TYPES = new Set(['int32', 'int64'])

/** JSON rows, keys in select order. int64 beyond ±2^53 cannot occur (computed as float64) but is sent as a string if it does. */
export function renderRows (batch: ColumnBatch, columns: readonly OutputColumn[], start = 0, end = batch.length): Array<Record<string, unknown>> {
  const rows = new Array<Record<string, unknown>>(end - start)
  const vecs = columns.map(c => batch.columns.get(c.name))
  for (let i = start; i < end; i++) {
    const row: Record<string, unknown> = {}
    for (let c = 0; c < columns.length; c++) {
      const v = vecs[c]
      let x = v === undefined ? null : valueAt(v, i)
      if (typeof x === 'number' && INT_TYPES.has(columns[c]!.type) && !Number.isSafeInteger(x) && Number.isInteger(x)) x = BigInt(x).toString()
      if (typeof x === 'number' && columns[c]!.type === 'bool') x = x !== 0
      row[columns[c]!.name] = x
    }
    rows[i - start] = row
  }
  return rows
}
