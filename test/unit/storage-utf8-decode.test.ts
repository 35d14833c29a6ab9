/**
 * decodeColumn's utf8 path (segment.ts, decodeUtf8): every row's code names its value in the
 * dictionary, NULLs are -1, each distinct value is in the dictionary once, across chunks and
 * past the table's growth, for short values (compared as packed ints) and long ones (hashed and
 * compared byte by byte), multi-byte UTF-8 included.
 */
import { describe, expect, it } from 'vitest'
import { Utf8, makeData, makeVector, vectorFromArray, type Data } from 'apache-arrow'
import { decodeColumn } from '../../src/storage/segment.js'

function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32 }
}

const ALPHABET = ['a', 'b', 'z', '0', '9', ' ', 'é', 'ß', '漢', '😀', '\u0000']

function value (r: () => number, distinct: number): string | null {
  if (r() < 0.05) return null
  const k = Math.floor(r() * distinct)
  // Lengths 0..12 characters, decided by k, so each k is one value; k's digits keep them distinct.
  const len = k % 13
  let s = ''
  for (let i = 0; i < len; i++) s += ALPHABET[(k * 7 + i * 3) % ALPHABET.length]
  return s + (len > 2 ? String(k) : '')
}

function check (values: Array<string | null>, chunks: number): void {
  const per = Math.ceil(values.length / chunks)
  const parts = Array.from({ length: chunks }, (_, c) => vectorFromArray(values.slice(c * per, (c + 1) * per), new Utf8()))
  const vec = makeVector(parts.flatMap(p => p.data) as Array<Data<Utf8>>)
  const out = decodeColumn('utf8', vec, values.length, 'test')
  if (out.tag !== 'str') throw new Error(`decoded as ${out.tag}`)
  expect(new Set(out.dict).size).toBe(out.dict.length)
  const wrong: string[] = []
  values.forEach((v, i) => {
    const got = out.codes[i] === -1 ? null : out.dict[out.codes[i]!]
    if (got !== v && wrong.length < 5) wrong.push(`row ${i}: ${JSON.stringify(got)} for ${JSON.stringify(v)}`)
  })
  expect(wrong).toEqual([])
  expect(out.dict.length).toBe(new Set(values.filter(v => v !== null)).size)
}

describe('decodeColumn utf8', () => {
  it('few distinct short values, NULLs among them, over several chunks', () => {
    const r = rng(1)
    check(Array.from({ length: 20_000 }, () => value(r, 60)), 3)
  })

  it('many distinct values of every length: the table grows past its first size', () => {
    const r = rng(2)
    check(Array.from({ length: 50_000 }, () => value(r, 9_000)), 2)
  })

  it('many distinct values in one chunk (a segment batch): each once in the dictionary', () => {
    const r = rng(3)
    check(Array.from({ length: 30_000 }, () => value(r, 25_000)), 1)
  })

  it('malformed byte strings that decode alike share a code, in one chunk and across chunks', () => {
    // Each decodes to U+FFFD in its place: three byte strings, one string; beside them the
    // character U+FFFD itself, well formed, which decodes to the same.
    const forms = [[0x78, 0xff], [0x78, 0xc0, 0x80], [0x78, 0xed, 0xa0, 0x80], [0x78, 0xef, 0xbf, 0xbd], [0x79]]
    const rows = Array.from({ length: 40 }, (_, i) => forms[(i * 3) % forms.length]!)
    for (const chunks of [1, 2]) {
      const per = Math.ceil(rows.length / chunks)
      const datas: Data[] = []
      for (let c = 0; c < chunks; c++) {
        const part = rows.slice(c * per, (c + 1) * per)
        const offsets = new Int32Array(part.length + 1)
        part.forEach((b, i) => { offsets[i + 1] = offsets[i]! + b.length })
        datas.push(makeData({ type: new Utf8(), length: part.length, nullCount: 0, valueOffsets: offsets, data: Uint8Array.from(part.flat()) }))
      }
      const out = decodeColumn('utf8', makeVector(datas as Array<Data<Utf8>>), rows.length, 'test')
      if (out.tag !== 'str') throw new Error(`decoded as ${out.tag}`)
      expect([...out.dict].sort()).toEqual(['x\uFFFD', 'x\uFFFD\uFFFD', 'x\uFFFD\uFFFD\uFFFD', 'y'].sort())
      rows.forEach((b, i) => expect(out.dict[out.codes[i]!]).toBe(Buffer.from(b).toString('utf8')))
    }
  })

  it('values that differ only in their last byte, or only in length (short and long)', () => {
    const vals = ['', 'a', 'a\u0000', 'ab', 'abc', 'abcd', 'abce', 'abcde', 'abcdf', 'abcdefghijklmnop', 'abcdefghijklmnoq', 'bcdefghijklmnopa', null]
    check(Array.from({ length: 1_000 }, (_, i) => vals[(i * 7) % vals.length]!), 1)
  })
})
