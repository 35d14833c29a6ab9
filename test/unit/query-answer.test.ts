import { describe, expect, it } from 'vitest'
import { batchFromRows, type ValueType } from '../../src/columnar/index.js'
import { tableFromIPC } from 'apache-arrow'
import { ROWS_PER_RECORD_BATCH, arrowChunks, arrowStream, finalResult, renderRows, type OutputColumn } from '../../src/query/exec/index.js'
import { answerJson, answerNdjson, type QueryAnswer } from '../../src/query/service/index.js'

/**
 * The streamed JSON answer of POST /query is, byte for byte, the JSON.stringify of the whole
 * answer object it replaces: same keys in the same order, int64 past 2^53 as strings, nulls,
 * lists, any unicode; whatever the chunk size.
 */
describe('the streamed JSON answer', () => {
  const columns: OutputColumn[] = [
    { name: 'id', type: 'utf8' }, { name: 'big', type: 'int64' }, { name: 'x', type: 'float64' },
    { name: 'tags', type: 'list<utf8>' as ValueType }, { name: 'ok', type: 'bool' }, { name: 'n', type: 'int32' }
  ]
  const texts = ['plain', 'é ü ß', '漢字', '😀 emoji', 'quote " and \\ backslash', 'line\nbreak\ttab', '\u2028\u2029', '\u0000\u001f', '']
  const rows = Array.from({ length: 23 }, (_, i) => ({
    id: i % 5 === 4 ? null : texts[i % texts.length],
    big: i % 3 === 0 ? 2 ** 60 + i * 4096 : i % 3 === 1 ? -(2 ** 55) : i,
    x: i % 4 === 0 ? null : i / 7,
    tags: i % 6 === 0 ? null : [texts[(i + 1) % texts.length], `t${i}`],
    ok: i % 2 === 0,
    n: i % 7 === 0 ? null : i
  }))
  const batch = batchFromRows(rows, columns)

  /** What POST /query wrote before it streamed: one JSON.stringify of the whole answer. */
  const whole = (a: QueryAnswer): string => JSON.stringify(a.aggregations !== undefined
    ? { aggregations: a.aggregations, coverage: a.coverage, confidence: a.confidence, tookMs: Math.round(a.tookMs * 100) / 100 }
    : { columns: a.columns, rows: renderRows(a.batch, a.columns), coverage: a.coverage, confidence: a.confidence, tookMs: Math.round(a.tookMs * 100) / 100, ...(a.analyze !== undefined ? { analyze: a.analyze } : {}) })
  const answer = (extra: Partial<QueryAnswer> = {}): QueryAnswer => Object.assign(finalResult(columns, batch), {
    coverage: { total: 6, answered: 5, missing: [{ space: 't', partition: 3, reason: 'b: timeout "slow"' }] },
    confidence: 5 / 6,
    tookMs: 12.3456,
    strategy: 'Broadcast'
  }, extra)

  it('is byte-identical to JSON.stringify of the whole answer, for every chunk size', () => {
    for (const chunkRows of [1, 2, 5, 22, 23, 1024]) {
      const a = answer()
      const text = [...answerJson(a, chunkRows)].join('')
      expect(text).toBe(whole(a))
    }
    const text = [...answerJson(answer())].join('')
    const parsed = JSON.parse(text)
    expect(Object.keys(parsed)).toEqual(['columns', 'rows', 'coverage', 'confidence', 'tookMs'])
    expect(Object.keys(parsed.rows[0])).toEqual(columns.map(c => c.name))
    expect(parsed.rows[0].big).toBe((2n ** 60n).toString())
    expect(parsed.rows[1].big).toBe((-(2n ** 55n)).toString())
    expect(parsed.rows[2].big).toBe(2)
    expect(parsed.rows[4]).toMatchObject({ id: null, x: null })
    expect(parsed.rows.map((r: { id: unknown }) => r.id)).toEqual(rows.map(r => r.id))
  })

  it('is the same for rows given whole, no rows, analyze, and aggregations', () => {
    const given = answer()
    // An answer whose rows were already read (recall, spread, or a caller that looked).
    expect(given.rows).toHaveLength(23)
    expect([...answerJson(given, 4)].join('')).toBe(whole(given))
    const none = Object.assign(finalResult(columns, batchFromRows([], columns)), { coverage: { total: 1, answered: 1, missing: [] }, confidence: 1, tookMs: 0.5, strategy: 'Local' }) as QueryAnswer
    expect([...answerJson(none)].join('')).toBe(whole(none))
    expect(JSON.parse([...answerJson(none)].join('')).rows).toEqual([])
    const analyzed = answer({ analyze: { peers: [{ peer: 'p', name: 'ü', partitions: 2, rows: 10, rowsOut: 3, bytes: 99, ms: 1.5, waitMs: 0.1, readMs: 0.2, readyMs: 1.9, roundTripMs: 2.5, mergeMs: 0.3 }], tookMs: 2, hedges: 0, retries: 1, stages: { parseMs: 0.1, planMs: 0.1, scatterMs: 2.6, mergeMs: 0.3, finishMs: 0.1, gcMs: 0 } } })
    expect([...answerJson(analyzed, 3)].join('')).toBe(whole(analyzed))
    const aggs = answer({ aggregations: { by: { buckets: [{ key: 'é', doc_count: 2 }] } } })
    expect([...answerJson(aggs)].join('')).toBe(whole(aggs))
  })

  it('renders the rows a chunk at a time, never all at once, when they were not read', () => {
    const a = answer()
    let longest = 0
    const chunks = a.rowChunks!(5)
    for (const c of chunks) longest = Math.max(longest, c.length)
    expect(longest).toBe(5)
  })

  it('as NDJSON is one line per row, each the JSON answer\'s row object, for every chunk size', () => {
    for (const chunkRows of [1, 4, 23, 1024]) {
      const text = [...answerNdjson(answer(), chunkRows)].join('')
      expect(text).toBe(renderRows(batch, columns).map(r => JSON.stringify(r) + '\n').join(''))
    }
    const none = Object.assign(finalResult(columns, batchFromRows([], columns)), { coverage: { total: 1, answered: 1, missing: [] }, confidence: 1, tookMs: 0.5, strategy: 'Local' }) as QueryAnswer
    expect([...answerNdjson(none)].join('')).toBe('')
  })
})

/**
 * The Arrow answer is made and handed on a record batch at a time: each chunk is ready before the
 * next batch is built, and the chunks together are one IPC stream of every row.
 */
describe('the streamed Arrow answer', () => {
  const columns: OutputColumn[] = [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'x', type: 'float64' }]
  const n = 2 * ROWS_PER_RECORD_BATCH + 10
  const batch = batchFromRows(Array.from({ length: n }, (_, i) => ({ id: `r${i}`, n: i % 5 === 0 ? 2 ** 60 + i * 4096 : i, x: i % 3 === 0 ? null : i / 2 })), columns)

  it('yields the schema with the first batch, one chunk per record batch, then the end marker', () => {
    const chunks = [...arrowChunks(batch, columns)]
    // Three record batches, then end-of-stream (8 bytes: continuation marker and a zero length).
    expect(chunks).toHaveLength(4)
    expect(chunks[3]!.byteLength).toBe(8)
    // Every prefix of whole chunks is a readable stream of the batches so far.
    expect(tableFromIPC(Buffer.concat(chunks.slice(0, 1))).numRows).toBe(ROWS_PER_RECORD_BATCH)
    const table = tableFromIPC(Buffer.concat(chunks))
    expect(table.batches).toHaveLength(3)
    expect(table.numRows).toBe(n)
    const want = renderRows(batch, columns)
    for (const i of [0, 1, 3, 5, ROWS_PER_RECORD_BATCH, n - 1]) {
      expect(table.get(i)!.id).toBe(want[i]!.id)
      expect(String(table.get(i)!.n)).toBe(String(want[i]!.n))
      expect(table.get(i)!.x).toBe(want[i]!.x)
    }
    expect(Buffer.from(arrowStream(batch, columns)).equals(Buffer.concat(chunks))).toBe(true)
  })

  it('builds a record batch only when the previous chunk was taken', () => {
    const it = arrowChunks(batch, columns)
    const first = it.next()
    expect(first.done).toBe(false)
    // Nothing past the first batch has been written yet: it decodes to exactly one batch.
    expect(tableFromIPC(first.value as Uint8Array).batches).toHaveLength(1)
    it.return(undefined)
  })

  it('is one empty record batch for no rows', () => {
    const table = tableFromIPC(Buffer.concat([...arrowChunks(batchFromRows([], columns), columns)]))
    expect(table.numRows).toBe(0)
    expect(table.schema.fields.map(f => f.name)).toEqual(['id', 'n', 'x'])
  })
})
