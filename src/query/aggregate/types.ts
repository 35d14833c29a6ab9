/**
 * Shared types of the aggregation layer: the columnar input (Column, Selection, Batch), the
 * Aggregator interface every kind implements, the errors, and the small validation helpers the
 * decoders use on states that arrive from other peers.
 */

/** One column of a batch: a typed array, or an array whose missing entries are null/undefined. */
export type Column = ArrayLike<unknown>

/** Row indexes into a batch (ascending is not required). `null`/`undefined` means every row. */
export type Selection = Uint32Array | readonly number[]

/** A columnar batch of rows, as the storage layer hands it over. */
export interface Batch {
  readonly length: number
  /** The column of that name, or undefined when the batch has no such column (all missing). */
  column(field: string): Column | undefined
}

/**
 * One aggregation kind. States are mutable: `add`, `addColumn` and `collect` change the state in
 * place. `merge(a, b)` returns the merged state, reusing `a` and possibly parts of `b`: treat both
 * inputs as consumed. `merge` is associative and commutative (exactly for the integer, bucket and
 * sketch kinds, up to float rounding for sums and moments).
 */
export interface Aggregator<S = unknown, R = unknown> {
  readonly kind: string
  init(): S
  /**
   * Add one value (the field's value for one row). Missing values are skipped. For bucket kinds this
   * counts one document in the value's bucket without feeding sub-aggregations (use `collect`).
   */
  add(state: S, value: unknown): void
  /** Columnar fast path: add `column[i]` for every selected row. */
  addColumn(state: S, column: Column, selection?: Selection | null): void
  /** Add the selected rows of a batch: reads this aggregation's field and feeds any sub-aggregations. */
  collect(state: S, batch: Batch, selection?: Selection | null): void
  merge(a: S, b: S): S
  finalize(state: S): R
  /** A plain msgpack-able value (arrays, numbers, strings, Uint8Array) for shipping to another peer. */
  encode(state: S): unknown
  /** The inverse of encode; validates shape and sizes and throws AggregationDecodeError on bad input. */
  decode(value: unknown): S
}

export class AggregationError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'AggregationError'
  }
}

/** A configured limit (buckets, terms, sketch bins, ...) was exceeded. */
export class AggregationLimitError extends AggregationError {
  constructor (message: string) {
    super(message)
    this.name = 'AggregationLimitError'
  }
}

/** An encoded state from another peer was malformed or exceeded a limit. */
export class AggregationDecodeError extends AggregationError {
  constructor (message: string) {
    super(message)
    this.name = 'AggregationDecodeError'
  }
}

/** The numeric value of a cell, or NaN when it is missing or not numeric. Dates become epoch ms. */
export function toNumber (v: unknown): number {
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  if (v instanceof Date) return v.getTime()
  return NaN
}

/**
 * Calls fn for every selected row's numeric value that is a finite number. Numeric aggregations
 * treat null, undefined, non-numeric cells, NaN and ±Infinity alike: as missing.
 */
export function forEachNumber (column: Column, selection: Selection | null | undefined, fn: (x: number) => void): void {
  if (selection == null) {
    const n = column.length
    for (let i = 0; i < n; i++) {
      const x = toNumber(column[i])
      if (x - x === 0) fn(x)
    }
  } else {
    const n = selection.length
    for (let i = 0; i < n; i++) {
      const x = toNumber(column[selection[i]!])
      if (x - x === 0) fn(x)
    }
  }
}

/** The number of rows a selection covers in a batch. */
export function selectionSize (batch: Batch, selection: Selection | null | undefined): number {
  return selection == null ? batch.length : selection.length
}

// ---- decode helpers ----

export function fail (kind: string, what: string): never {
  throw new AggregationDecodeError(`${kind}: malformed state: ${what}`)
}

export function tuple (kind: string, v: unknown, len: number): unknown[] {
  if (!Array.isArray(v)) fail(kind, 'expected an array')
  if (v.length !== len) fail(kind, `expected ${len} elements, got ${v.length}`)
  return v
}

/** A finite-or-infinite number (not NaN). */
export function dnum (kind: string, v: unknown, what: string): number {
  if (typeof v !== 'number' || Number.isNaN(v)) fail(kind, `${what} must be a number`)
  return v
}

export function dfinite (kind: string, v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(kind, `${what} must be a finite number`)
  return v
}

/** A non-negative safe integer (counts). */
export function dcount (kind: string, v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(kind, `${what} must be a non-negative integer`)
  return v
}

export function dbytes (kind: string, v: unknown, what: string, maxLen: number): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(kind, `${what} must be bytes`)
  if (v.length > maxLen) fail(kind, `${what} is ${v.length} bytes, over the limit of ${maxLen}`)
  return v
}

export function darray (kind: string, v: unknown, what: string, maxLen: number): unknown[] {
  if (!Array.isArray(v)) fail(kind, `${what} must be an array`)
  if (v.length > maxLen) fail(kind, `${what} has ${v.length} entries, over the limit of ${maxLen}`)
  return v
}

// ---- varints (unsigned LEB128 up to 2^53, zig-zag for signed) ----

export class ByteWriter {
  private buf = new Uint8Array(64)
  private len = 0

  uint (v: number): void {
    this.reserve(8)
    while (v >= 128) {
      this.buf[this.len++] = (v % 128) | 128
      v = Math.floor(v / 128)
    }
    this.buf[this.len++] = v
  }

  int (v: number): void { this.uint(v < 0 ? -2 * v - 1 : 2 * v) }

  finish (): Uint8Array { return this.buf.slice(0, this.len) }

  private reserve (n: number): void {
    if (this.len + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n))
    next.set(this.buf.subarray(0, this.len))
    this.buf = next
  }
}

export class ByteReader {
  private pos = 0
  constructor (private readonly buf: Uint8Array, private readonly kind: string) {}

  get done (): boolean { return this.pos >= this.buf.length }

  uint (): number {
    let v = 0
    let mul = 1
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.buf.length) fail(this.kind, 'truncated varint')
      const b = this.buf[this.pos++]!
      v += (b & 127) * mul
      if (b < 128) {
        if (!Number.isSafeInteger(v)) fail(this.kind, 'varint out of range')
        return v
      }
      mul *= 128
    }
    return fail(this.kind, 'varint too long')
  }

  int (): number {
    const u = this.uint()
    return u % 2 === 1 ? -(u + 1) / 2 : u / 2
  }
}

/** Names that must never become object keys built from spec or wire data. */
export function checkName (name: string, what: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 256 ||
      name === '__proto__' || name === 'constructor' || name === 'prototype') {
    throw new AggregationError(`invalid ${what} name ${JSON.stringify(name)}`)
  }
}
