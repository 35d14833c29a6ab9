/**
 * The coordinator's half of a query: merges the partitions' answers (partial group states,
 * aggregation states, rows or top-K rows) as they arrive, then finalizes and runs the steps above
 * the merge (HAVING, ORDER BY, LIMIT/OFFSET, the select list) and renders the rows.
 */
import { gatherBatch, valueAt, type ColumnBatch, type ColumnVector, type ValueType } from '../../columnar/index.js'
import type { Expr } from '../model/index.js'
import { evalExpr, evalPredicate, exprType } from './eval.js'
import { MemoryBudget, QueryExecError } from './errors.js'
import { SCORE_COLUMN } from '../model/index.js'
import { emptyBatch, fragmentShape, newGroupTable, type FragmentOutput } from './fragment.js'
import type { GroupTable } from './group.js'
import { AggregationSet } from '../aggregate/index.js'
import { decodeState, toAggsSpec } from './json-aggs.js'
import { batchBytes, concatBatches, sortAndSlice } from './rows.js'
import type { SplitPlan } from './split.js'
import { sortByScore } from './topk.js'
import { decodeBatch } from './wire.js'

export interface OutputColumn { name: string, type: ValueType }

export interface FinalResult {
  columns: OutputColumn[]
  rows: Array<Record<string, unknown>>
  /** A JSON query's aggregations (instead of rows). */
  aggregations?: Record<string, unknown>
  /** The final batch, for Arrow output. */
  batch: ColumnBatch
}

/** Merges partition answers for one query. */
export class QueryMerger {
  private readonly table: GroupTable | undefined
  private readonly aggSet: AggregationSet | undefined
  private aggStates: unknown[] | undefined
  private readonly parts: ColumnBatch[] = []
  private partRows = 0
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
      case 'topk': {
        if (output.kind !== 'rows') throw new QueryExecError('BAD_PARTIAL', `expected rows, got ${output.kind}`)
        const batch = decodeBatch(output.batch)
        this.parts.push(batch)
        this.partRows += batch.length
        this.budget.set(this.parts, this.parts.reduce((n, b) => n + batchBytes(b), 0))
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
  }

  private mergedRows (): ColumnBatch {
    const nonEmpty = this.parts.filter(b => b.length > 0)
    const all = concatBatches(nonEmpty.length > 0 ? nonEmpty : this.parts.slice(0, 1))
    if (this.split.merge === 'topk') return sortByScore(all, this.split.topk!.metric, this.split.topk!.k)
    const limit = this.split.perPartitionLimit
    if (limit === null) return all
    return sortAndSlice(all, this.split.perPartitionOrder, limit)
  }

  /** An empty batch with the fragment's columns (and `_score` for top-K). */
  private noRows (): ColumnBatch {
    const names = [...(fragmentShape(this.split.fragment).scan.columns ?? [])]
    if (this.split.merge === 'topk') names.push(SCORE_COLUMN)
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
    for (const step of this.split.post) {
      switch (step.kind) {
        case 'Filter': batch = gatherBatch(batch, evalPredicate(step.predicate, batch)); break
        case 'Sort': batch = sortAndSlice(batch, step.keys, null); break
        case 'Limit': batch = sortAndSlice(batch, [], step.limit, step.offset); break
        case 'Project': {
          const out = new Map<string, ColumnVector>()
          for (const item of step.items) out.set(item.alias, evalExpr(item.expr, batch))
          batch = { length: batch.length, columns: out }
        }
      }
    }
    this.budget.release(this.parts)
    return { columns: [...columns], rows: renderRows(batch, columns), batch }
  }
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
export function renderRows (batch: ColumnBatch, columns: readonly OutputColumn[]): Array<Record<string, unknown>> {
  const rows = new Array<Record<string, unknown>>(batch.length)
  const vecs = columns.map(c => batch.columns.get(c.name))
  for (let i = 0; i < batch.length; i++) {
    const row: Record<string, unknown> = {}
    for (let c = 0; c < columns.length; c++) {
      const v = vecs[c]
      let x = v === undefined ? null : valueAt(v, i)
      if (typeof x === 'number' && INT_TYPES.has(columns[c]!.type) && !Number.isSafeInteger(x) && Number.isInteger(x)) x = BigInt(x).toString()
      if (typeof x === 'number' && columns[c]!.type === 'bool') x = x !== 0
      row[columns[c]!.name] = x
    }
    rows[i] = row
  }
  return rows
}
