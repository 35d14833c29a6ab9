/**
 * A fragment whose filter pins a few ids (`id = 'x'`, `id IN (...)` at the top of its AND chain:
 * planner.ts pinnedIds) reads those records by id from the replica instead of scanning it. The
 * planner already sends such a query only to the partitions holding the ids; this makes each
 * partition's work a few key-index lookups rather than a pass over every row, which is what one
 * hop of spreading activation is (`id IN frontier`, reading the links column).
 *
 * The records read become one batch that the fragment then runs over exactly as over a scan: its
 * filter still applies (so the batch only has to hold every row the filter can match: the pinned
 * ids' live versions), as do its projection, aggregation or ordering.
 */
import { vectorFromValues, type ColumnBatch, type ColumnVector, type ValueType } from '../../columnar/index.js'
import type { Expr } from '../model/index.js'
import type { PartitionStore } from '../../storage/index.js'
import { pinnedIds } from './planner.js'

/**
 * Most ids a partition reads one by one; above it, a scan. A lookup costs microseconds (a Bloom
 * filter answers an absent id), a scan of a partition of a few thousand rows a millisecond or
 * more, so the crossover is far above this: the bound keeps one request's point reads cheap
 * whatever the partition's size.
 */
export const MAX_POINT_READS = 1024

/** The ids `filter` pins, when few enough to read one by one; otherwise null (scan). */
export function pointReadIds (filter: Expr | null): string[] | null {
  const ids = pinnedIds(filter)
  if (ids === null || ids.length > MAX_POINT_READS) return null
  return [...new Set(ids)]
}

/**
 * The live records of `ids` that this replica holds (a tombstone, or an id of another partition,
 * is not a row), as one batch of `columns`.
 */
export async function pointBatch (store: Pick<PartitionStore, 'get'>, ids: readonly string[], columns: readonly string[], columnType: (name: string) => ValueType | undefined): Promise<ColumnBatch> {
  const rows: Array<Record<string, unknown>> = []
  for (const id of ids) {
    const r = await store.get(id)
    if (r !== undefined && !r.deleted && r.row !== null) rows.push(r.row as Record<string, unknown>)
  }
  const out = new Map<string, ColumnVector>()
  const vals = new Array<unknown>(rows.length)
  for (const name of columns) {
    // A row written before a column was added lacks it (NULL); a column named like an
    // Object.prototype member is read as an own key only.
    for (let i = 0; i < rows.length; i++) vals[i] = Object.hasOwn(rows[i]!, name) ? rows[i]![name] : null
    out.set(name, vectorFromValues(columnType(name) ?? 'null', vals))
  }
  return { length: rows.length, columns: out }
}
