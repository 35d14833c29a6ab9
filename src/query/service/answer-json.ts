/**
 * A query's answer as JSON text, written a piece at a time: `{"columns":...,"rows":[` first, then
 * the rows in chunks, then `],"coverage":...}` (`],"completion":...,"coverage":...}` for a
 * completion, whose filled record follows its neighbours). The text is the same, byte for byte, as
 * JSON.stringify of the whole answer (the contract's shape and key order: DESIGN.md section 8),
 * but neither every row object nor the whole text exists at once, so an answer of any size costs
 * about one chunk of memory on its way to the client.
 */
import type { QueryAnswer } from './service.js'

/** Rows rendered at a time (row objects are made per chunk and dropped once written). */
export const ANSWER_CHUNK_ROWS = 1024
/** Text gathered before it is handed on: fewer, larger writes to the socket. */
const PIECE_CHARS = 64 * 1024

/** The JSON body of POST /query as it is streamed: the same object JSON.stringify would write. */
export function answerBody (a: QueryAnswer): Record<string, unknown> {
  const base = { coverage: a.coverage, confidence: a.confidence, tookMs: Math.round(a.tookMs * 100) / 100 }
  if (a.aggregations !== undefined) return { aggregations: a.aggregations, ...base }
  return { columns: a.columns, rows: a.rows, ...completionOf(a), ...base, ...(a.analyze !== undefined ? { analyze: a.analyze } : {}) }
}

/** A completion's filled record goes right after its neighbours, the rows. */
function completionOf (a: QueryAnswer): { completion?: QueryAnswer['completion'] } {
  return a.completion !== undefined ? { completion: a.completion } : {}
}

/** The answer's JSON text in pieces; joined, it equals JSON.stringify(answerBody(a)). */
export function * answerJson (a: QueryAnswer, chunkRows = ANSWER_CHUNK_ROWS): Generator<string> {
  if (a.aggregations !== undefined) { yield JSON.stringify(answerBody(a)); return }
  // The tail is the object without columns and rows; its opening brace is dropped.
  const tail = JSON.stringify({ ...completionOf(a), coverage: a.coverage, confidence: a.confidence, tookMs: Math.round(a.tookMs * 100) / 100, ...(a.analyze !== undefined ? { analyze: a.analyze } : {}) })
  let piece = `{"columns":${JSON.stringify(a.columns)},"rows":[`
  let first = true
  for (const chunk of a.rowChunks?.(chunkRows) ?? slices(a.rows, chunkRows)) {
    if (chunk.length === 0) continue
    // An array's text without its brackets: rows separated by commas, as in the whole array.
    const text = JSON.stringify(chunk)
    piece += (first ? '' : ',') + text.slice(1, -1)
    first = false
    if (piece.length >= PIECE_CHARS) { yield piece; piece = '' }
  }
  yield piece + '],' + tail.slice(1)
}

/** Media type of the NDJSON answer. */
export const NDJSON_TYPE = 'application/x-ndjson'

/**
 * The answer's rows as NDJSON: one JSON object per row and line, the same objects as the JSON
 * answer's `rows` (keys in select order, int64 beyond ±2^53 as strings), rendered a chunk at a time
 * and gathered into pieces of about 64k characters. Coverage and the rest travel in headers.
 */
export function * answerNdjson (a: QueryAnswer, chunkRows = ANSWER_CHUNK_ROWS): Generator<string> {
  let piece = ''
  for (const chunk of a.rowChunks?.(chunkRows) ?? slices(a.rows, chunkRows)) {
    for (const row of chunk) piece += JSON.stringify(row) + '\n'
    if (piece.length >= PIECE_CHARS) { yield piece; piece = '' }
  }
  if (piece.length > 0) yield piece
}

function * slices<T> (all: readonly T[], n: number): Generator<T[]> {
  for (let s = 0; s < all.length; s += n) yield all.slice(s, s + n)
}
