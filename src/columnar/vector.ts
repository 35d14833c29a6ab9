/**
 * The columnar form storage hands to queries and every operator of the local executor works on. A batch is a set of equally
 * long column vectors; each vector keeps its values in typed arrays so that filters, expressions
 * and grouping run as tight loops over numbers, with no object per row.
 *
 * - Numbers, timestamps (ms), dates (days) and booleans (1/0) are float64 with NaN for NULL.
 *   int64 is computed as float64: exact to ±2^53 (values beyond lose low digits; docs/query.md).
 * - Strings are dictionary-encoded: `codes[i]` indexes `dict`, -1 is NULL. A predicate or a
 *   function over strings runs once per distinct string, not once per row, and grouping by a
 *   string groups by its code.
 * - vector<N> columns are one flat Float32Array of N floats per row, with a byte per row saying
 *   whether the row has a value.
 * - list<T> columns (rare in queries) keep one JS array per row.
 */
import type { ColumnType } from '../schema/index.js'
import type { StoredBatch } from './compact.js'

/** A column type, or `null` for an untyped NULL (a literal NULL, a NULL-only expression). */
export type ValueType = ColumnType | 'null'

/** int32, int64, float32, float64, timestamp, date, bool, or an untyped NULL: float64, NaN = NULL. */
export interface NumVector {
  readonly tag: 'num'
  readonly type: ValueType
  readonly values: Float64Array
  /**
   * What the producer knows of `values` (storage, for columns as stored; absent: unknown).
   * `nulls`: how many are NULL; 0 lets a loop skip its NaN tests. `int32`: every value is an
   * integer within int32's range, so a plain sum of up to 2^21 of them is exact. A vector made
   * from another keeps them only where they still hold.
   */
  readonly nulls?: number
  readonly int32?: true
  /**
   * The same values as 1-2-byte codes into a table (a compact column read from storage,
   * compact.ts): row i is dict[codes[i]]. A loop may read these instead of `values`, which are
   * then made only if something asks for them.
   */
  readonly coded?: { readonly codes: Uint8Array | Uint16Array, readonly dict: Float64Array }
}

/** utf8, dictionary-encoded: `codes[i]` indexes `dict`; -1 is NULL. `dict` may hold unused entries. */
export interface StrVector {
  readonly tag: 'str'
  readonly type: 'utf8'
  readonly codes: Int32Array
  readonly dict: readonly string[]
  /**
   * The same codes 1-2 bytes wide, NULL as 0xff or 0xffff (a compact column read from storage,
   * compact.ts). A loop may read these instead of `codes`, which are then made only if asked for.
   */
  readonly narrow?: Uint8Array | Uint16Array
}

/** vector<N>: row i is `values[i*dim .. (i+1)*dim)` when `valid[i]` is 1; NULL when 0. */
export interface FloatListVector {
  readonly tag: 'vec'
  readonly type: ValueType
  readonly dim: number
  readonly values: Float32Array
  readonly valid: Uint8Array
}

/** list<T>: one JS array (or null) per row. */
export interface AnyVector {
  readonly tag: 'any'
  readonly type: ValueType
  readonly values: readonly unknown[]
}

export type ColumnVector = NumVector | StrVector | FloatListVector | AnyVector

/** Equally long columns by name. */
export interface ColumnBatch {
  readonly length: number
  readonly columns: ReadonlyMap<string, ColumnVector>
}

/**
 * Where a fragment reads its rows: the live (not deleted) rows of one partition replica, as
 * batches holding at least the named columns. Batches may be shared with a cache (segments are
 * immutable): operators never write into a vector they did not create. Some columns may be
 * compact (compact.ts): a reader widens them. Asynchronous where the batches come from disk (a
 * partition store); a plain array or generator serves in tests.
 */
export interface BatchSource {
  batches(columns: readonly string[], opts?: BatchOptions): Iterable<StoredBatch> | AsyncIterable<StoredBatch>
}

/** What a stored batch's zone map says of one column: its NULLs, and bounds of the rest when known. */
export interface ColumnZone {
  readonly nulls: number
  readonly min?: number | string
  readonly max?: number | string
}

/**
 * A test of a stored batch by its zone maps, before its columns are read: false when no row of it
 * can match (the batch is skipped), true when some may. `zone` answers undefined for a column
 * without a map; `rows` is the batch's row count (dead rows included).
 */
export type ZoneTest = (zone: (column: string) => ColumnZone | undefined, rows: number) => boolean

export interface BatchOptions {
  /** Stored batches this rules out are skipped (a source without zone maps ignores it). */
  zones?: ZoneTest
  /**
   * Held by the reader until it is done with every batch (and nothing it made still views their
   * memory): the source may then reuse the memory of the columns it handed out. Without one, the
   * columns' memory is never reused.
   */
  lease?: BatchLease
}

/**
 * What a reader of batches holds until it is done with them (BatchOptions.lease): a source adds
 * a release for each thing it must not reuse before then (storage: each cached column handed
 * out). release() runs them once; a lease released, held again, runs the new one at once.
 */
export class BatchLease {
  private releases: Array<() => void> = []
  private released = false

  hold (release: () => void): void {
    if (this.released) { release(); return }
    this.releases.push(release)
  }

  release (): void {
    if (this.released) return
    this.released = true
    const all = this.releases
    this.releases = []
    for (const r of all) r()
  }
}

/** A vector's length in rows. */
export function vectorLength (v: ColumnVector): number {
  switch (v.tag) {
    case 'num': return v.values.length
    case 'str': return v.codes.length
    case 'vec': return v.valid.length
    case 'any': return v.values.length
  }
}

/** The JS value of row i: number (NaN → null), string, boolean for bool, number[] for vectors. */
export function valueAt (v: ColumnVector, i: number): unknown {
  switch (v.tag) {
    case 'num': {
      const x = v.values[i]!
      if (x !== x) return null
      return v.type === 'bool' ? x !== 0 : x
    }
    case 'str': {
      const c = v.codes[i]!
      return c < 0 ? null : v.dict[c]!
    }
    case 'vec': return v.valid[i] === 1 ? Array.from(v.values.subarray(i * v.dim, (i + 1) * v.dim)) : null
    case 'any': return v.values[i] ?? null
  }
}

/** Keeps the rows at `rows` (in that order): a new vector, the input untouched. Strings keep their dictionary. */
export function gather (v: ColumnVector, rows: Uint32Array): ColumnVector {
  const n = rows.length
  switch (v.tag) {
    case 'num': {
      const out = new Float64Array(n)
      const src = v.values
      for (let i = 0; i < n; i++) out[i] = src[rows[i]!]!
      // Some of the rows: no NULL among none, still integers; a count of NULLs no longer known.
      return { tag: 'num', type: v.type, values: out, ...(v.nulls === 0 ? { nulls: 0 } : {}), ...(v.int32 === true ? { int32: true } : {}) }
    }
    case 'str': {
      const out = new Int32Array(n)
      const src = v.codes
      for (let i = 0; i < n; i++) out[i] = src[rows[i]!]!
      return { tag: 'str', type: 'utf8', codes: out, dict: v.dict }
    }
    case 'vec': {
      const d = v.dim
      const out = new Float32Array(n * d)
      const valid = new Uint8Array(n)
      for (let i = 0; i < n; i++) {
        const r = rows[i]!
        valid[i] = v.valid[r]!
        if (valid[i] === 1) out.set(v.values.subarray(r * d, (r + 1) * d), i * d)
      }
      return { tag: 'vec', type: v.type, dim: d, values: out, valid }
    }
    case 'any': {
      const out = new Array<unknown>(n)
      for (let i = 0; i < n; i++) out[i] = v.values[rows[i]!]
      return { tag: 'any', type: v.type, values: out }
    }
  }
}

/** The batch restricted to `rows` (in that order); the batch itself when every row is kept in order. */
export function gatherBatch (batch: ColumnBatch, rows: Uint32Array): ColumnBatch {
  if (rows.length === batch.length && isIdentity(rows)) return batch
  const columns = new Map<string, ColumnVector>()
  for (const [name, v] of batch.columns) columns.set(name, gather(v, rows))
  return { length: rows.length, columns }
}

function isIdentity (rows: Uint32Array): boolean {
  for (let i = 0; i < rows.length; i++) if (rows[i] !== i) return false
  return true
}

/**
 * A vector from JS values of a column type (rows from the memtable, results from peers):
 * numbers/bigints/booleans to float64, strings through a dictionary built here.
 */
export function vectorFromValues (type: ValueType, values: ArrayLike<unknown>): ColumnVector {
  const n = values.length
  if (type === 'utf8') {
    const codes = new Int32Array(n)
    const dict: string[] = []
    const index = new Map<string, number>()
    for (let i = 0; i < n; i++) {
      const s = values[i]
      if (typeof s !== 'string') { codes[i] = -1; continue }
      let c = index.get(s)
      if (c === undefined) { c = dict.length; dict.push(s); index.set(s, c) }
      codes[i] = c
    }
    return { tag: 'str', type: 'utf8', codes, dict }
  }
  const dim = /^vector<(\d+)>$/.exec(type)
  if (dim !== null) {
    const d = Number(dim[1])
    const out = new Float32Array(n * d)
    const valid = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      const v = values[i] as ArrayLike<number> | null | undefined
      if (v === null || v === undefined) continue
      valid[i] = 1
      for (let j = 0; j < d; j++) out[i * d + j] = v[j]!
    }
    return { tag: 'vec', type, dim: d, values: out, valid }
  }
  if (type.startsWith('list<')) {
    const out = new Array<unknown>(n)
    for (let i = 0; i < n; i++) out[i] = values[i] ?? null
    return { tag: 'any', type, values: out }
  }
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const v = values[i]
    out[i] = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? (v ? 1 : 0) : NaN
  }
  return { tag: 'num', type, values: out }
}

/** A batch from row objects (the memtable, tests): the named columns of the given types. */
export function batchFromRows (rows: ReadonlyArray<Readonly<Record<string, unknown>>>, columns: ReadonlyArray<{ name: string, type: ValueType }>): ColumnBatch {
  const out = new Map<string, ColumnVector>()
  const vals = new Array<unknown>(rows.length)
  for (const c of columns) {
    for (let i = 0; i < rows.length; i++) vals[i] = rows[i]![c.name]
    out.set(c.name, vectorFromValues(c.type, vals))
  }
  return { length: rows.length, columns: out }
}
