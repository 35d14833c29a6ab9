import { pack, unpack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { batchFromRows, valueAt, type ColumnBatch, type ValueType } from '../../src/columnar/index.js'
import { chunkOutput, decodeBatch, encodeBatch, type FragmentOutput } from '../../src/query/exec/index.js'
import { fragmentErrorCode } from '../../src/query/service/fragments.js'

/**
 * A data peer's answer is cut into pieces by rows and by bytes, each piece small enough for one
 * RPC frame as msgpack writes it, and the pieces together are the answer, row for row.
 */
describe('fragment answers in pieces', () => {
  const columns = [{ name: 'id', type: 'utf8' }, { name: 's', type: 'utf8' }, { name: 'x', type: 'float64' }, { name: 'tags', type: 'list<utf8>' }] as Array<{ name: string, type: ValueType }>
  const names = columns.map(c => c.name)
  const rowsOf = (b: ColumnBatch): unknown[][] => Array.from({ length: b.length }, (_, i) => names.map(n => valueAt(b.columns.get(n)!, i)))
  /** Through msgpack as the RPC sends it; the size is the frame's body. */
  const wire = (out: FragmentOutput): { size: number, back: FragmentOutput } => { const bytes = pack(out); return { size: bytes.length, back: unpack(bytes) } }

  it('cuts rows of long strings by bytes, each piece within the budget, the rows all there in order', () => {
    const rows = Array.from({ length: 300 }, (_, i) => ({ id: `r${i}`, s: i % 50 === 7 ? null : `${i}:`.padEnd(1000 + (i % 13) * 700, 'é-abc'), x: i % 9 === 0 ? null : i / 3, tags: i % 4 === 0 ? null : [`t${i}`, 'ü'] }))
    const batch = batchFromRows(rows, columns)
    const out: FragmentOutput = { kind: 'rows', batch: encodeBatch(batch, names) }
    const maxBytes = 64 * 1024
    const pieces = [...chunkOutput(out, { maxRows: 32_768, maxBytes })]
    expect(pieces.length).toBeGreaterThan(10)
    const got: unknown[][] = []
    for (const p of pieces) {
      const { size, back } = wire(p)
      expect(size).toBeLessThanOrEqual(maxBytes)
      got.push(...rowsOf(decodeBatch((back as Extract<FragmentOutput, { kind: 'rows' }>).batch)))
    }
    expect(got).toEqual(rowsOf(batch))
  })

  it('counts a repeated string once per piece, cuts by rows too, and sends a row over the budget alone', () => {
    const long = 'x'.repeat(50_000)
    const same = batchFromRows(Array.from({ length: 1000 }, (_, i) => ({ id: `r${i}`, s: long, x: i, tags: null })), columns)
    // Every row names the same 50 KB string: one dictionary entry per piece, so no cut by bytes (1,000 rows of 50 KB would be 50 MB).
    expect([...chunkOutput({ kind: 'rows', batch: encodeBatch(same, names) }, { maxRows: 32_768, maxBytes: 128 * 1024 })]).toHaveLength(1)
    const byRows = [...chunkOutput({ kind: 'rows', batch: encodeBatch(same, names) }, { maxRows: 300, maxBytes: 128 * 1024 })]
    expect(byRows.map(p => (p as Extract<FragmentOutput, { kind: 'rows' }>).batch.length)).toEqual([300, 300, 300, 100])
    const huge = batchFromRows([{ id: 'a', s: 'small', x: 1, tags: null }, { id: 'b', s: 'y'.repeat(100_000), x: 2, tags: null }, { id: 'c', s: 'small', x: 3, tags: null }], columns)
    const alone = [...chunkOutput({ kind: 'rows', batch: encodeBatch(huge, names) }, { maxRows: 32_768, maxBytes: 64 * 1024 })]
    expect(alone.map(p => (p as Extract<FragmentOutput, { kind: 'rows' }>).batch.length)).toEqual([1, 1, 1])
  })

  it('leaves a small answer whole (the same object) and cuts partial groups by their states', () => {
    const small: FragmentOutput = { kind: 'rows', batch: encodeBatch(batchFromRows([{ id: 'a', s: 'b', x: 1, tags: null }], columns), names) }
    expect([...chunkOutput(small, { maxRows: 32_768, maxBytes: 4 << 20 })]).toEqual([small])
    const n = 500
    const groups: FragmentOutput = { kind: 'groups', groups: { groups: n, keys: [Array.from({ length: n }, (_, i) => `k${i}`)], states: [Array.from({ length: n }, (_, i) => [`${i}`.padEnd(2000, 'z')]), Array.from({ length: n }, (_, i) => i)] } }
    const maxBytes = 32 * 1024
    const pieces = [...chunkOutput(groups, { maxRows: 32_768, maxBytes })]
    expect(pieces.length).toBeGreaterThan(20)
    const keys: unknown[] = []
    const counts: unknown[] = []
    for (const p of pieces) {
      const { size, back } = wire(p)
      expect(size).toBeLessThanOrEqual(maxBytes)
      const g = (back as Extract<FragmentOutput, { kind: 'groups' }>).groups
      expect(g.keys[0]).toHaveLength(g.groups)
      keys.push(...g.keys[0]!)
      counts.push(...g.states[1]!)
    }
    expect(keys).toEqual(groups.groups.keys[0])
    expect(counts).toEqual(groups.groups.states[1])
    const states: FragmentOutput = { kind: 'aggs', states: { a: 'x'.repeat(100_000) } }
    expect([...chunkOutput(states, { maxRows: 10, maxBytes: 10 })]).toEqual([states])
  })

  it('tells errors every replica would meet from a replica\'s own trouble', () => {
    const named = (name: string, message = 'm'): Error => Object.assign(new Error(message), { name })
    expect(fragmentErrorCode(new TypeError('x is undefined'))).toBe('EXEC_ERROR')
    expect(fragmentErrorCode(new RangeError('Invalid string length'))).toBe('EXEC_ERROR')
    expect(fragmentErrorCode(named('QueryExecError'))).toBe('EXEC_ERROR')
    expect(fragmentErrorCode(named('AggregationLimitError'))).toBe('LIMIT')
    expect(fragmentErrorCode(new RangeError('Array buffer allocation failed'))).toBe('EXEC_FAILED')
    expect(fragmentErrorCode(new Error('query worker exited'))).toBe('EXEC_FAILED')
    expect(fragmentErrorCode(named('StorageError', 'EIO'))).toBe('EXEC_FAILED')
  })
})
