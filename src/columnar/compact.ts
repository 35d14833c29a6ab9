/**
 * Compact vectors: columns as storage's cache holds them when they fit in fewer bytes than the
 * vectors the executor works on. A number column of few distinct values in a batch is 1-2-byte
 * codes into a table of its values (8 bytes a row as float64); a utf8 column's dictionary codes
 * are 1-2 bytes (4 as an Int32Array). The cache then holds two to eight times the rows in the
 * same memory, so a scan past it reads fewer of them again from the files.
 *
 * They travel as they are (shared memory, no copy) to whoever runs the fragment. There the
 * generated loops (query/exec/kernel.ts) read the codes themselves: a row's number is one more
 * load from a table that stays in the processor's cache, and a scan reads a quarter to an eighth
 * of the bytes from memory. Any other operator reads the widened vector, made when first asked
 * for (widenBatch), batch by batch into memory reused for the next: widening a column costs
 * about 2.3 ns a row, where the loops pay about 0.6 ns a row a column for reading codes.
 *
 * A batch from a source (StoredBatch) may hold compact vectors; every operator of the executor
 * works on ColumnBatch, whose vectors carry the compact form only beside the wide one
 * (NumVector.coded, StrVector.narrow).
 */
import type { ColumnBatch, ColumnVector, NumVector, StrVector, ValueType } from './vector.js'

/**
 * Numbers as 1-2-byte codes into `dict`: row i is dict[codes[i]]. NULL rows' code indexes a NaN
 * (the last entry of dict; none when `nulls` is 0). `nulls` and `int32` as NumVector says.
 */
export interface CodedNumVector {
  readonly tag: 'coded'
  readonly type: ValueType
  readonly codes: Uint8Array | Uint16Array
  readonly dict: Float64Array
  readonly nulls: number
  readonly int32?: true
}

/** utf8 with 1-2-byte dictionary codes: `nullCode` (0xff or 0xffff, past the dictionary) is NULL; `nulls` of them. */
export interface NarrowStrVector {
  readonly tag: 'narrow'
  readonly type: 'utf8'
  readonly codes: Uint8Array | Uint16Array
  readonly dict: readonly string[]
  readonly nulls: number
}

export type CompactVector = CodedNumVector | NarrowStrVector

/** A column as a source hands it out: a vector, or a compact one to widen before use. */
export type StoredVector = ColumnVector | CompactVector

/** A batch as a source hands it out (BatchSource): equally long columns, some maybe compact. */
export interface StoredBatch {
  readonly length: number
  readonly columns: ReadonlyMap<string, StoredVector>
}

/** The NULL code of narrow codes `width` bytes wide (as storage's codes blocks write them). */
export function narrowNullCode (codes: Uint8Array | Uint16Array): number {
  return codes instanceof Uint8Array ? 0xff : 0xffff
}

export function isCompact (v: StoredVector): v is CompactVector {
  return v.tag === 'coded' || v.tag === 'narrow'
}

/**
 * Memory a widen reuses: one array per column (by position in the batch), grown as needed. Only
 * for a reader that is done with a widened batch before it widens the next.
 */
export class WidenScratch {
  private readonly f64: Float64Array[] = []
  private readonly i32: Int32Array[] = []

  float64 (slot: number, n: number): Float64Array {
    let a = this.f64[slot]
    if (a === undefined || a.length < n) a = this.f64[slot] = new Float64Array(Math.max(n, 1024))
    return a.subarray(0, n)
  }

  int32 (slot: number, n: number): Int32Array {
    let a = this.i32[slot]
    if (a === undefined || a.length < n) a = this.i32[slot] = new Int32Array(Math.max(n, 1024))
    return a.subarray(0, n)
  }
}

/**
 * The vector of a stored one: itself when not compact, else a vector that keeps the compact form
 * for the loops that read it (NumVector.coded, StrVector.narrow) and widens it only when
 * something reads `values` or `codes` (into `scratch`'s `slot` when given, else new memory).
 */
export function widenVector (v: StoredVector, scratch?: WidenScratch, slot = 0): ColumnVector {
  switch (v.tag) {
    case 'coded': return new WideningNum(v, scratch, slot)
    case 'narrow': return new WideningStr(v, scratch, slot)
    default: return v
  }
}

/** A coded column as a NumVector: `values` made on first read. */
class WideningNum implements NumVector {
  readonly tag = 'num'
  readonly type: ValueType
  readonly nulls: number
  readonly int32?: true
  readonly coded: { readonly codes: Uint8Array | Uint16Array, readonly dict: Float64Array }
  private wide: Float64Array | undefined

  constructor (src: CodedNumVector, private readonly scratch: WidenScratch | undefined, private readonly slot: number) {
    this.type = src.type
    this.nulls = src.nulls
    if (src.int32 === true) this.int32 = true
    this.coded = { codes: src.codes, dict: src.dict }
  }

  get values (): Float64Array {
    if (this.wide !== undefined) return this.wide
    const { codes, dict } = this.coded
    const n = codes.length
    const out = this.scratch !== undefined ? this.scratch.float64(this.slot, n) : new Float64Array(n)
    // One loop a width: one loop over either array type ran slower (storage's decode measured the same).
    if (codes instanceof Uint8Array) lookup8(codes, dict, out, n)
    else lookup16(codes, dict, out, n)
    return (this.wide = out)
  }
}

/** A narrow utf8 column as a StrVector: `codes` made on first read. */
class WideningStr implements StrVector {
  readonly tag = 'str'
  readonly type = 'utf8'
  readonly dict: readonly string[]
  readonly narrow: Uint8Array | Uint16Array
  private readonly nulls: number
  private wide: Int32Array | undefined

  constructor (src: NarrowStrVector, private readonly scratch: WidenScratch | undefined, private readonly slot: number) {
    this.dict = src.dict
    this.narrow = src.codes
    this.nulls = src.nulls
  }

  get codes (): Int32Array {
    if (this.wide !== undefined) return this.wide
    const src = this.narrow
    const n = src.length
    const out = this.scratch !== undefined ? this.scratch.int32(this.slot, n) : new Int32Array(n)
    if (this.nulls === 0) {
      // Natively, about 0.3 ns a row.
      out.set(src)
    } else {
      const nul = narrowNullCode(src)
      for (let i = 0; i < n; i++) { const c = src[i]!; out[i] = c === nul ? -1 : c }
    }
    return (this.wide = out)
  }
}

function lookup8 (src: Uint8Array, dict: Float64Array, out: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = dict[src[i]!]!
}

function lookup16 (src: Uint16Array, dict: Float64Array, out: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = dict[src[i]!]!
}

/** The batch with its compact columns widened (see widenVector); itself when it has none. */
export function widenBatch (batch: StoredBatch, scratch?: WidenScratch): ColumnBatch {
  let compact = false
  for (const v of batch.columns.values()) if (isCompact(v)) { compact = true; break }
  if (!compact) return batch as ColumnBatch
  const columns = new Map<string, ColumnVector>()
  let slot = 0
  for (const [name, v] of batch.columns) columns.set(name, widenVector(v, scratch, slot++))
  return { length: batch.length, columns }
}

/** Keeps the rows at `rows` of a compact vector, still compact (a new vector, the input untouched). */
export function gatherCompact (v: CompactVector, rows: Uint32Array): CompactVector {
  const n = rows.length
  const src = v.codes
  const out = src instanceof Uint8Array ? new Uint8Array(n) : new Uint16Array(n)
  for (let i = 0; i < n; i++) out[i] = src[rows[i]!]!
  // Some of the rows: how many are NULL is counted again only when there were any.
  let nulls = 0
  if (v.nulls > 0) {
    const nul = v.tag === 'narrow' ? narrowNullCode(src) : v.dict.length - 1
    for (let i = 0; i < n; i++) if (out[i] === nul) nulls++
  }
  return { ...v, codes: out, nulls }
}
