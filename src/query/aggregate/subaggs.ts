/**
 * Named sub-aggregations of a bucket: one state per child, in the order of the names. Used by
 * every bucket kind, recursively (a child can itself be a bucket kind).
 */
import type { Aggregator, Batch, Selection } from './types.js'
import { AggregationError, darray, fail } from './types.js'

/** Keys a bucket result already uses; sub-aggregations may not take these names. */
export const RESERVED_BUCKET_KEYS = new Set(['key', 'key_as_string', 'doc_count', 'doc_count_error_upper_bound', 'from', 'to', '__proto__', 'constructor', 'prototype'])

export class SubAggregations {
  readonly size: number
  constructor (readonly names: readonly string[], readonly aggs: ReadonlyArray<Aggregator<any, any>>) {
    this.size = aggs.length
    for (const n of names) {
      if (typeof n !== 'string' || n.length === 0 || n.length > 256 || RESERVED_BUCKET_KEYS.has(n)) {
        throw new AggregationError(`invalid sub-aggregation name ${JSON.stringify(n)}`)
      }
    }
  }

  init (): unknown[] {
    const out = new Array<unknown>(this.size)
    for (let i = 0; i < this.size; i++) out[i] = this.aggs[i]!.init()
    return out
  }

  collect (states: unknown[], batch: Batch, selection?: Selection | null): void {
    for (let i = 0; i < this.size; i++) this.aggs[i]!.collect(states[i], batch, selection)
  }

  merge (a: unknown[], b: unknown[]): unknown[] {
    for (let i = 0; i < this.size; i++) a[i] = this.aggs[i]!.merge(a[i], b[i])
    return a
  }

  /** Writes each child's result into `into` under its name. */
  finalizeInto (states: unknown[], into: Record<string, unknown>): void {
    for (let i = 0; i < this.size; i++) into[this.names[i]!] = this.aggs[i]!.finalize(states[i])
  }

  encode (states: unknown[]): unknown[] {
    const out = new Array<unknown>(this.size)
    for (let i = 0; i < this.size; i++) out[i] = this.aggs[i]!.encode(states[i])
    return out
  }

  decode (v: unknown, kind: string): unknown[] {
    const arr = darray(kind, v, 'sub-aggregations', this.size)
    if (arr.length !== this.size) fail(kind, `expected ${this.size} sub-aggregation states`)
    const out = new Array<unknown>(this.size)
    for (let i = 0; i < this.size; i++) out[i] = this.aggs[i]!.decode(arr[i])
    return out
  }
}

/** Groups the selected rows of a batch by a key function; rows with an undefined key are skipped. */
export function groupRows<K> (n: number, selection: Selection | null | undefined, keyOf: (row: number) => K | undefined): Map<K, number[]> {
  const groups = new Map<K, number[]>()
  for (let i = 0; i < n; i++) {
    const row = selection == null ? i : selection[i]!
    const k = keyOf(row)
    if (k === undefined) continue
    const g = groups.get(k)
    if (g === undefined) groups.set(k, [row])
    else g.push(row)
  }
  return groups
}
