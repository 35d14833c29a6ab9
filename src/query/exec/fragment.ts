/**
 * The part of a query that runs where the data is: one partition replica's rows, filtered, then
 * either grouped into partial aggregate states, aggregated by a JSON query's aggregations, cut to
 * the top N under ORDER BY ... LIMIT, searched for the top K vectors or the K rows nearest a
 * partial record, or shipped as they are.
 *
 * A fragment is a small plan (src/query/plan builds it): `Aggregate`, `TopK`, `Complete`,
 * `Limit(Sort(...))`, `Limit(...)`, `Sort(...)` or nothing over `[Filter] Scan`. It arrives off
 * the network and is checked for that shape before it runs.
 */
import { WidenScratch, vectorFromValues, widenBatch, type BatchOptions, type BatchSource, type ColumnBatch, type ColumnVector, type ValueType } from '../../columnar/index.js'
import { zoneTest } from './zones.js'
import type { AggregateNode, CompleteNode, Expr, PlanNode, ScanNode, SortKey, TopKNode } from '../model/index.js'
import { createAccumulator } from './accumulators.js'
import { evalExpr, exprType } from './eval.js'
import { MemoryBudget, QueryExecError } from './errors.js'
import { GroupTable, type EncodedGroups } from './group.js'
import { AggregationSet } from '../aggregate/index.js'
import { AdaptedBatch, toAggsSpec } from './json-aggs.js'
import { TopNBuffer } from './rows.js'
import { rowTests, selectRows } from './select.js'
import { topKSearch } from './topk.js'
import { completeSearch } from './complete-score.js'
import { encodeBatch, type WireBatch } from './wire.js'
import { gatherBatch } from '../../columnar/index.js'

/** What a fragment computed, ready to ship: partial states or rows. */
export type FragmentOutput =
  | { kind: 'groups', groups: EncodedGroups }
  | { kind: 'aggs', states: unknown }
  | { kind: 'rows', batch: WireBatch }

export interface FragmentStats {
  rowsScanned: number
  rowsMatched: number
  ms: number
}

export interface FragmentResult {
  output: FragmentOutput
  stats: FragmentStats
}

export interface FragmentContext {
  source: BatchSource
  columnType: (name: string) => ValueType | undefined
  budget?: MemoryBudget
  signal?: AbortSignal
  now?: () => number
}

/** The shape of a fragment plan, taken apart. */
export interface FragmentShape {
  scan: ScanNode
  filter: Expr | null
  top: { kind: 'aggregate', node: AggregateNode } | { kind: 'topk', node: TopKNode } | { kind: 'complete', node: CompleteNode } | { kind: 'rows', order: readonly SortKey[], limit: number | null }
}

/** Takes a fragment plan apart, or throws BAD_FRAGMENT when it is not one of the shapes above. */
export function fragmentShape (plan: PlanNode): FragmentShape {
  const bad = (): never => { throw new QueryExecError('BAD_FRAGMENT', `not a fragment plan: ${plan.kind}`) }
  const base = (n: PlanNode): { scan: ScanNode, filter: Expr | null } => {
    if (n.kind === 'Scan') return { scan: n, filter: null }
    if (n.kind === 'Filter' && n.input.kind === 'Scan') return { scan: n.input, filter: n.predicate }
    return bad()
  }
  switch (plan.kind) {
    case 'Aggregate': return { ...base(plan.input), top: { kind: 'aggregate', node: plan } }
    case 'TopK': return { ...base(plan.input), top: { kind: 'topk', node: plan } }
    case 'Complete': return { ...base(plan.input), top: { kind: 'complete', node: plan } }
    case 'Limit':
      if (plan.offset !== 0) return bad()
      if (plan.input.kind === 'Sort') return { ...base(plan.input.input), top: { kind: 'rows', order: plan.input.keys, limit: plan.limit } }
      return { ...base(plan.input), top: { kind: 'rows', order: [], limit: plan.limit } }
    case 'Sort': return { ...base(plan.input), top: { kind: 'rows', order: plan.keys, limit: null } }
    default: return { ...base(plan), top: { kind: 'rows', order: [], limit: null } }
  }
}

/** What a source is asked with the fragment's columns: the zone test of its WHERE, when it has one. */
export function batchOptions (shape: FragmentShape, columnType: (name: string) => ValueType | undefined): BatchOptions | undefined {
  const zones = shape.filter === null ? undefined : zoneTest(shape.filter, columnType)
  return zones === undefined ? undefined : { zones }
}

/** Yields to the event loop so that a long scan does not starve requests and can be cancelled. */
const breathe = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

/** Runs a fragment over one source. */
export async function runFragment (plan: PlanNode, ctx: FragmentContext): Promise<FragmentResult> {
  const now = ctx.now ?? (() => performance.now())
  const t0 = now()
  const shape = fragmentShape(plan)
  const budget = ctx.budget ?? new MemoryBudget(Infinity)
  const columns = shape.scan.columns ?? []
  const stats: FragmentStats = { rowsScanned: 0, rowsMatched: 0, ms: 0 }
  const sink = makeSink(shape, ctx, budget)
  // Compact columns (columnar/compact.ts) are widened batch by batch: into memory reused for the
  // next batch (and the next fragment) when the sink is done with a batch once it returns, else
  // into new memory.
  const scratch = sink.keepsNothing === true ? (idleScratch.pop() ?? new WidenScratch()) : undefined
  try {
    await scan(ctx, shape, columns, sink, stats, scratch, now)
  } finally {
    if (scratch !== undefined && idleScratch.length < MAX_IDLE_SCRATCH) idleScratch.push(scratch)
  }
  const output = sink.finish()
  stats.ms = now() - t0
  return { output, stats }
}

/**
 * Widening memory not in use: fresh memory costs a page fault a page (on the VMs measured, a
 * fragment's first batches widened into new memory took as long as the rest of it), so it is kept
 * for the fragments after. One a fragment under way on this thread (they interleave at awaits).
 */
const idleScratch: WidenScratch[] = []
const MAX_IDLE_SCRATCH = 4

/** The scan of runFragment: every batch of the source, filtered, into the sink (until it is done). */
async function scan (ctx: FragmentContext, shape: FragmentShape, columns: readonly string[], sink: Sink, stats: FragmentStats, scratch: WidenScratch | undefined, now: () => number): Promise<void> {
  let last = now()
  for await (const stored of ctx.source.batches(columns, batchOptions(shape, ctx.columnType))) {
    const raw = widenBatch(stored, scratch)
    stats.rowsScanned += raw.length
    if (shape.filter === null) {
      stats.rowsMatched += raw.length
      if (raw.length > 0) sink.push(raw)
    } else if (sink.pushWhere !== undefined) {
      stats.rowsMatched += sink.pushWhere(raw, shape.filter)
    } else {
      const sel = selectRows(shape.filter, raw)
      stats.rowsMatched += sel.length
      // Aggregation reads the matching rows through the selection; the others get them copied.
      if (sel.length > 0) {
        if (sink.selects === true) sink.push(raw, sel)
        else sink.push(gatherBatch(raw, sel))
      }
    }
    if (sink.done()) break
    if (now() - last > 10) {
      await breathe()
      last = now()
      if (ctx.signal?.aborted === true) throw new QueryExecError('CANCELLED', 'the query was cancelled')
    }
  }
}

interface Sink {
  /** With `selects`, push may get a selection: only rows sel[...] of the batch are in. */
  push (batch: ColumnBatch, sel?: Uint32Array): void
  readonly selects?: boolean
  /** Pushes the rows of the batch where `filter` holds, selecting them itself; returns how many. */
  pushWhere?: (batch: ColumnBatch, filter: Expr) => number
  /** Keeps no view of a pushed batch's memory once push returns (aggregations fold rows into states). */
  readonly keepsNothing?: boolean
  done (): boolean
  finish (): FragmentOutput
}

function makeSink (shape: FragmentShape, ctx: FragmentContext, budget: MemoryBudget): Sink {
  const top = shape.top
  const typeOf = (e: Expr): ValueType => exprType(e, ctx.columnType)
  switch (top.kind) {
    case 'aggregate': {
      const node = top.node
      if (node.aggs.length > 0) {
        const set = new AggregationSet(toAggsSpec(node.aggs))
        const states = set.init()
        return {
          selects: true,
          keepsNothing: true,
          push: (b, sel) => { set.collect(states, new AdaptedBatch(b), sel) },
          done: () => false,
          finish: () => ({ kind: 'aggs', states: set.encode(states) })
        }
      }
      const table = newGroupTable(node, typeOf, budget)
      // Keys and arguments are evaluated over the whole batch (a column is just its vector, no
      // copy) and read through the selection.
      const keysOf = (b: ColumnBatch): ColumnVector[] => node.groupBy.map(g => evalExpr(g.expr, b))
      const argsOf = (b: ColumnBatch): Array<ColumnVector | null> => node.aggregates.map(a => a.args.length === 0 ? null : evalExpr(a.args[0]!, b))
      return {
        selects: true,
        keepsNothing: true,
        push: (b, sel) => { table.addRows(keysOf(b), argsOf(b), b.length, sel) },
        pushWhere: (b, filter) => {
          // A WHERE of simple terms is tested in the grouping loop itself, row by row; any
          // other goes through a selection vector first.
          const tests = rowTests(filter, b)
          const keys = keysOf(b)
          const args = argsOf(b)
          if (tests !== undefined) {
            const matched = table.addRowsWhere(keys, args, b.length, tests)
            if (matched >= 0) return matched
          }
          const sel = selectRows(filter, b)
          if (sel.length > 0) table.addRows(keys, args, b.length, sel)
          return sel.length
        },
        done: () => false,
        finish: () => { const groups = table.encode(); table.release(); return { kind: 'groups', groups } }
      }
    }
    case 'topk': {
      const node = top.node
      const search = topKSearch(node, budget)
      return { push: b => { search.push(b) }, done: () => false, finish: () => ({ kind: 'rows', batch: encodeBatch(search.result()) }) }
    }
    case 'complete': {
      const search = completeSearch(top.node, ctx.columnType, budget)
      return { push: b => { search.push(b) }, done: () => false, finish: () => ({ kind: 'rows', batch: encodeBatch(search.result()) }) }
    }
    case 'rows': {
      const buffer = new TopNBuffer(top.order, top.limit, budget)
      const names = shape.scan.columns ?? []
      return {
        push: b => { buffer.push(b) },
        done: () => buffer.full,
        finish: () => {
          const out = buffer.result()
          return { kind: 'rows', batch: encodeBatch(out.length === 0 && out.columns.size === 0 ? emptyBatch(names, ctx.columnType) : out, names) }
        }
      }
    }
  }
}

/** The group table of an Aggregate node (the same on a data peer and on the coordinator). */
export function newGroupTable (node: AggregateNode, typeOf: (e: Expr) => ValueType, budget: MemoryBudget | undefined): GroupTable {
  const accs = node.aggregates.map(a => {
    const t = a.args.length === 0 ? 'null' : typeOf(a.args[0]!)
    return createAccumulator(a, t === 'utf8', t === 'int32' || t === 'int64')
  })
  return new GroupTable(node.groupBy.map(g => typeOf(g.expr)), accs, budget)
}

/** A batch of no rows with the given columns. */
export function emptyBatch (names: readonly string[], columnType: (name: string) => ValueType | undefined): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  for (const n of names) columns.set(n, vectorFromValues(columnType(n) ?? 'null', []))
  return { length: 0, columns }
}

