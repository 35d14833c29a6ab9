/**
 * Compact vectors (src/columnar/compact.ts): widened, they read as the vectors they stand for;
 * the widening happens only when something reads the wide form, once, into reused memory when
 * asked; a gather keeps them compact and counts their NULLs again.
 */
import { describe, expect, it } from 'vitest'
import { WidenScratch, gatherCompact, isCompact, valueAt, widenBatch, widenVector, type CodedNumVector, type NarrowStrVector, type NumVector, type StrVector } from '../../src/columnar/index.js'

const coded = (codes: number[], dict: number[], nulls: number, wide = false): CodedNumVector => ({
  tag: 'coded',
  type: 'int32',
  codes: wide ? Uint16Array.from(codes) : Uint8Array.from(codes),
  dict: Float64Array.from(dict),
  nulls,
  int32: true
})

const narrow = (codes: number[], dict: string[], nulls: number, wide = false): NarrowStrVector => ({
  tag: 'narrow',
  type: 'utf8',
  codes: wide ? Uint16Array.from(codes) : Uint8Array.from(codes),
  dict,
  nulls
})

describe('compact vectors', () => {
  it('a coded number column widens to its values, NULL as NaN, and keeps what it says of itself', () => {
    for (const wide of [false, true]) {
      const v = widenVector(coded([1, 0, 2, 1, 2], [7, -3, NaN], 2, wide)) as NumVector
      expect(v.tag).toBe('num')
      expect([...v.values]).toEqual([-3, 7, NaN, -3, NaN])
      expect(v.nulls).toBe(2)
      expect(v.int32).toBe(true)
      // The loops read the codes themselves: the same arrays, no copy.
      expect(v.coded!.codes.length).toBe(5)
      expect([0, 1, 2, 3, 4].map(i => valueAt(v, i))).toEqual([-3, 7, null, -3, null])
    }
  })

  it('a narrow string column widens to -1 for NULL, natively when it has none', () => {
    for (const wide of [false, true]) {
      const nul = wide ? 0xffff : 0xff
      const v = widenVector(narrow([0, nul, 1, 0], ['a', 'b'], 1, wide)) as StrVector
      expect([...v.codes]).toEqual([0, -1, 1, 0])
      expect(v.narrow).toBeDefined()
      const dense = widenVector(narrow([1, 0, 1], ['a', 'b'], 0, wide)) as StrVector
      expect([...dense.codes]).toEqual([1, 0, 1])
    }
  })

  it('widens only when the wide form is read, once, into the scratch memory it is given', () => {
    const scratch = new WidenScratch()
    const v = widenVector(coded([0, 1], [5, 6], 0), scratch, 3) as NumVector
    const first = v.values
    expect(v.values).toBe(first)
    // The next batch's column of the same slot reuses that memory.
    const next = widenVector(coded([1, 1], [8, 9], 0), scratch, 3) as NumVector
    expect(next.values.buffer).toBe(first.buffer)
    expect([...next.values]).toEqual([9, 9])
  })

  it('a batch without compact columns is itself; with some, each widened and the rest as they were', () => {
    const plain = { length: 2, columns: new Map([['x', { tag: 'num' as const, type: 'float64' as const, values: Float64Array.from([1, 2]) }]]) }
    expect(widenBatch(plain)).toBe(plain)
    const mixed = widenBatch({ length: 2, columns: new Map<string, never>([['x', plain.columns.get('x')! as never], ['c', coded([1, 0], [4, 5], 0) as never]]) })
    expect(mixed.columns.get('x')).toBe(plain.columns.get('x'))
    expect([...(mixed.columns.get('c') as NumVector).values]).toEqual([5, 4])
  })

  it('a gather stays compact and counts the NULLs of the rows it keeps', () => {
    const v = coded([0, 2, 1, 2], [1, 2, NaN], 2)
    const g = gatherCompact(v, Uint32Array.from([0, 2]))
    expect(isCompact(g)).toBe(true)
    expect(g.nulls).toBe(0)
    expect(g.codes.length).toBe(2)
    expect([...(widenVector(g) as NumVector).values]).toEqual([1, 2])
    const s = gatherCompact(narrow([0, 0xff, 1], ['a', 'b'], 1), Uint32Array.from([1, 1, 2]))
    expect(s.nulls).toBe(2)
    expect([...(widenVector(s) as StrVector).codes]).toEqual([-1, -1, 1])
  })
})
