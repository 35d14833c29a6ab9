/**
 * A fragment's answer cut into pieces that each fit one RPC frame. Rows (and partial groups) are
 * cut at a number of rows and at a number of bytes, whichever comes first: 32,768 rows of small
 * columns are a megabyte, but 32,768 rows of 100 KB strings are 3 GB, far over the 8 MiB a frame
 * may carry (src/net/rpc.ts). The bytes are measured as msgpack will write them (exactly for
 * numbers, codes and strings, closely for lists and sketch states), so a piece stays under its
 * budget and the budget can sit well under the frame limit. A single row or group larger than the
 * budget goes alone; one larger than a frame is refused by the RPC as FRAME_TOO_LARGE.
 *
 * ```ts
 * for (const piece of chunkOutput(out, { maxRows: 32_768, maxBytes: 4 << 20 })) send(piece)
 * ```
 */
import type { FragmentOutput } from './fragment.js'
import type { EncodedGroups } from './group.js'
import { sliceBatch, type WireBatch } from './wire.js'

export interface ChunkLimits {
  maxRows: number
  maxBytes: number
}

/** Bytes of one string as msgpack writes it: UTF-8 plus a header of at most 5 bytes. */
function strBytes (s: string): number {
  // Most strings are short; their length bound (3 bytes per UTF-16 unit) is cheaper than a scan.
  return (s.length < 64 ? s.length * 3 : Buffer.byteLength(s, 'utf8')) + 5
}

/**
 * About the bytes msgpack writes for a value: exact for numbers and strings, a header's worth
 * over for arrays, maps and binary. For list values and aggregate states, whose shape varies.
 */
export function wireBytes (v: unknown): number {
  switch (typeof v) {
    case 'number': return 9
    case 'string': return strBytes(v)
    case 'boolean': return 1
    case 'bigint': return 9
    case 'object': {
      if (v === null) return 1
      if (ArrayBuffer.isView(v)) return v.byteLength + 6
      if (Array.isArray(v)) {
        let n = 5
        for (let i = 0; i < v.length; i++) { const x: unknown = v[i]; n += typeof x === 'number' ? 9 : wireBytes(x) }
        return n
      }
      if (v instanceof Map) { let n = 5; for (const [k, x] of v) n += wireBytes(k) + wireBytes(x); return n }
      let n = 5
      for (const k in v) n += strBytes(k) + wireBytes((v as Record<string, unknown>)[k])
      return n
    }
    default: return 1
  }
}

/**
 * An upper bound of a batch's encoded bytes that costs one step per column and per dictionary
 * string, not per row: when it is under the budget (the usual case) nothing is measured row by row.
 */
function batchBound (b: WireBatch): number {
  let n = 64
  for (const c of b.columns) {
    n += 64 + c.name.length * 3
    if (c.data !== undefined) n += c.data.byteLength
    if (c.valid !== undefined) n += c.valid.byteLength
    if (c.dict !== undefined) for (const s of c.dict) n += s.length * 3 + 5
    if (c.values !== undefined) return Infinity
  }
  return n
}

/** The answer in pieces within `limits`; groups and rows may be cut, aggregation states are one piece. */
export function * chunkOutput (out: FragmentOutput, limits: ChunkLimits): Generator<FragmentOutput> {
  if (out.kind === 'rows') {
    if (out.batch.length <= limits.maxRows && batchBound(out.batch) <= limits.maxBytes) { yield out; return }
    for (const [start, end] of rowRanges(out.batch, limits)) yield { kind: 'rows', batch: sliceBatch(out.batch, start, end) }
    return
  }
  if (out.kind === 'groups') {
    for (const [start, end] of groupRanges(out.groups, limits)) {
      yield start === 0 && end === out.groups.groups
        ? out
        : { kind: 'groups', groups: { groups: end - start, keys: out.groups.keys.map(k => k.slice(start, end)), states: out.groups.states.map(s => s.slice(start, end)) } }
    }
    return
  }
  yield out
}

/**
 * Row ranges [start, end) of an encoded batch, each within the limits. A string counts once per
 * piece (each piece ships only the dictionary strings its rows use), so a repeated long string
 * does not shrink the pieces.
 */
function rowRanges (b: WireBatch, limits: ChunkLimits): Array<[number, number]> {
  let fixed = 0
  const strs: Array<{ codes: Int32Array, dict: string[], seen: Int32Array, bytes: Float64Array }> = []
  const anys: unknown[][] = []
  for (const c of b.columns) {
    switch (c.tag) {
      case 'num': fixed += 8; break
      case 'vec': fixed += c.dim! * 4 + 1; break
      case 'str':
        fixed += 4
        strs.push({ codes: new Int32Array(c.data!.buffer, c.data!.byteOffset, b.length), dict: c.dict!, seen: new Int32Array(c.dict!.length).fill(-1), bytes: new Float64Array(c.dict!.length).fill(-1) })
        break
      case 'any': anys.push(c.values!); break
    }
  }
  /** Bytes row i adds to the piece that starts at `start`. */
  const cost = (i: number, start: number): number => {
    let row = fixed
    for (const s of strs) {
      const code = s.codes[i]!
      // A string already in this piece's dictionary costs only its code.
      if (code < 0 || s.seen[code] === start) continue
      let sb = s.bytes[code]!
      if (sb < 0) s.bytes[code] = sb = strBytes(s.dict[code]!)
      row += sb
    }
    for (const a of anys) row += wireBytes(a[i])
    return row
  }
  const ranges: Array<[number, number]> = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < b.length; i++) {
    let row = cost(i, start)
    if (i > start && (bytes + row > limits.maxBytes || i - start >= limits.maxRows)) {
      ranges.push([start, i])
      start = i
      bytes = 0
      // The row opens the next piece, whose dictionary does not have its strings yet.
      row = cost(i, start)
    }
    for (const s of strs) { const code = s.codes[i]!; if (code >= 0) s.seen[code] = start }
    bytes += row
  }
  ranges.push([start, b.length])
  return ranges
}

/**
 * Group ranges [start, end), each within the limits (keys and states measured as they will
 * travel). Measured a column at a time, numbers and short strings without a call: a million
 * groups cost about a third of their encoding.
 */
function groupRanges (g: EncodedGroups, limits: ChunkLimits): Array<[number, number]> {
  const n = g.groups
  const cost = new Float64Array(n)
  for (const col of [...g.keys, ...g.states]) {
    for (let i = 0; i < n; i++) {
      const v = col[i]
      cost[i] += typeof v === 'number' ? 9 : typeof v === 'string' && v.length < 64 ? v.length * 3 + 5 : wireBytes(v)
    }
  }
  const ranges: Array<[number, number]> = []
  let start = 0
  let bytes = 0
  for (let i = 0; i < n; i++) {
    if (i > start && (bytes + cost[i]! > limits.maxBytes || i - start >= limits.maxRows)) {
      ranges.push([start, i])
      start = i
      bytes = 0
    }
    bytes += cost[i]!
  }
  ranges.push([start, n])
  return ranges
}
