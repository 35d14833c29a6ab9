/**
 * The keys side of grouping (group.ts): a key column's dictionary of distinct values with dense
 * ids (KeyDict), and the open-addressing table of packed key ids that groups by more keys than
 * the dense two-key table serves (CompositeTable).
 */
import { narrowNullCode, type ColumnVector } from '../../columnar/index.js'
import { QueryExecError } from './errors.js'

/** Integer keys below this are found by array index rather than hashing. */
const SMALL_INT_KEYS = 1 << 20

/** The distinct values of one key column, each with a small dense id (NULL has one too). */
export class KeyDict {
  readonly values: Array<number | string | null> = []
  private readonly byNumber = new Map<number, number>()
  private readonly byString = new Map<string, number>()
  /** The id of NULL, -1 until one is seen. */
  nullId = -1
  /** Ids by dictionary code of the string batch at hand (-1: not looked up yet); see `prepare`. */
  codes: Int32Array = new Int32Array(0)
  /** Ids of small non-negative integer keys, by value (-1: not seen); grows as larger ones appear. */
  small: Int32Array = new Int32Array(0)

  private growSmall (x: number): void {
    const next = new Int32Array(Math.min(SMALL_INT_KEYS, Math.max(x + 1, this.small.length * 2, 1024))).fill(-1)
    next.set(this.small)
    this.small = next
  }

  private idOfNull (): number {
    if (this.nullId < 0) { this.nullId = this.values.length; this.values.push(null) }
    return this.nullId
  }

  private idOfString (s: string): number {
    let id = this.byString.get(s)
    if (id === undefined) { id = this.values.length; this.values.push(s); this.byString.set(s, id) }
    return id
  }

  private idOfNumber (x: number): number {
    if (x !== x) return this.idOfNull()
    // Small non-negative integers (the usual codes, categories, years) index an array.
    if (x >= 0 && x < SMALL_INT_KEYS && (x | 0) === x) {
      if (x >= this.small.length) this.growSmall(x)
      let id = this.small[x]!
      if (id < 0) { id = this.values.length; this.values.push(x + 0); this.small[x] = id } // + 0: -0 is 0
      return id
    }
    const k = x + 0 // -0 and 0 are one group
    let id = this.byNumber.get(k)
    if (id === undefined) { id = this.values.length; this.values.push(k); this.byNumber.set(k, id) }
    return id
  }

  /** Readies `codes` for a new batch of `v` (a string column's codes index a dictionary of its own). */
  prepare (v: ColumnVector): void {
    // Strings and coded numbers (NumVector.coded) get their ids by code, once a batch.
    if (v.tag !== 'str' && (v.tag !== 'num' || v.coded === undefined)) return
    const size = v.tag === 'str' ? v.dict.length : v.coded!.dict.length
    if (this.codes.length < size) this.codes = new Int32Array(Math.max(size, this.codes.length * 2))
    this.codes.fill(-1, 0, size)
  }

  /** The id of row r of `v` (a prepared batch), given one if new; remembered for the rows after it. */
  idAt (v: ColumnVector, r: number): number {
    // A compact column's own codes (a loop reading them asks here for the rows it cannot place).
    if (v.tag === 'num') {
      if (v.coded === undefined) return this.idOfNumber(v.values[r]!)
      const c = v.coded.codes[r]!
      const id = this.idOfNumber(v.coded.dict[c]!)
      this.codes[c] = id
      return id
    }
    if (v.tag !== 'str') throw new QueryExecError('UNSUPPORTED', 'GROUP BY a list or vector column')
    const c = v.narrow !== undefined ? narrowCode(v.narrow, r) : v.codes[r]!
    if (c < 0) return this.idOfNull()
    const id = this.idOfString(v.dict[c]!)
    this.codes[c] = id
    return id
  }

  /** Writes the id of rows 0..n-1 of `v` (rows sel[0..n-1] with a selection) into out. */
  ids (v: ColumnVector, n: number, out: Int32Array, sel?: Uint32Array): void {
    if (v.tag === 'str') {
      // One lookup per dictionary entry actually used, then an array index per row.
      const dict = v.dict
      this.prepare(v)
      const local = this.codes
      const codes = v.codes
      for (let i = 0; i < n; i++) {
        const c = codes[sel === undefined ? i : sel[i]!]!
        if (c < 0) { out[i] = this.idOfNull(); continue }
        let id = local[c]!
        if (id < 0) { id = this.idOfString(dict[c]!); local[c] = id }
        out[i] = id
      }
      return
    }
    if (v.tag === 'num') {
      // Fast path: a small non-negative integer already seen is one array read; everything else
      // (NULL, new values, large or fractional ones) goes through idOfNumber. Two loops, with and
      // without a selection, so neither tests which it is per row.
      const vals = v.values
      if (sel === undefined) {
        for (let i = 0; i < n; i++) {
          const x = vals[i]!
          const small = this.small
          if (x >= 0 && x < small.length && (x | 0) === x) {
            const id = small[x]!
            if (id >= 0) { out[i] = id; continue }
          }
          out[i] = this.idOfNumber(x)
        }
      } else {
        for (let i = 0; i < n; i++) {
          const x = vals[sel[i]!]!
          const small = this.small
          if (x >= 0 && x < small.length && (x | 0) === x) {
            const id = small[x]!
            if (id >= 0) { out[i] = id; continue }
          }
          out[i] = this.idOfNumber(x)
        }
      }
      return
    }
    throw new QueryExecError('UNSUPPORTED', 'GROUP BY a list or vector column')
  }
}

/**
 * Composite key → group id, open addressing over typed arrays: several times faster than a Map
 * for the one lookup per row that grouping by several keys needs. Keys are non-negative integers
 * below 2^52 (packed key ids).
 */
export class CompositeTable {
  private keys: Float64Array = new Float64Array(1024).fill(-1)
  private vals: Int32Array = new Int32Array(1024)
  private size = 0
  private mask = 1023
  private shift = 32 - 10

  private slot (key: number): number {
    const lo = key >>> 0
    const hi = (key / 4294967296) >>> 0
    // Fibonacci hashing: the product's high bits depend on every input bit (its low bits only on
    // the input's low bits, which for packed keys are just the last key's id).
    return Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) >>> this.shift
  }

  get (key: number): number {
    let i = this.slot(key)
    for (;;) {
      const k = this.keys[i]!
      if (k === key) return this.vals[i]!
      if (k === -1) return -1
      i = (i + 1) & this.mask
    }
  }

  set (key: number, value: number): void {
    if ((this.size + 1) * 2 > this.keys.length) this.grow()
    let i = this.slot(key)
    while (this.keys[i] !== -1) i = (i + 1) & this.mask
    this.keys[i] = key
    this.vals[i] = value
    this.size++
  }

  private grow (): void {
    const oldKeys = this.keys
    const oldVals = this.vals
    this.keys = new Float64Array(oldKeys.length * 2).fill(-1)
    this.vals = new Int32Array(oldKeys.length * 2)
    this.mask = this.keys.length - 1
    this.shift = 32 - Math.log2(this.keys.length)
    this.size = 0
    for (let i = 0; i < oldKeys.length; i++) if (oldKeys[i] !== -1) this.set(oldKeys[i]!, oldVals[i]!)
  }
}

/** Narrow code r as a wide one: -1 for NULL. */
function narrowCode (codes: Uint8Array | Uint16Array, r: number): number {
  const c = codes[r]!
  return c === narrowNullCode(codes) ? -1 : c
}
