import { ShoalError, type RowError } from './errors.js'
import type { ImportOptions, ImportResult, ShoalRecord, WriteResult } from './types.js'

/** Defaults of ImportOptions, as `shoal import`'s (src/cli/import.ts). */
export const DEFAULT_IMPORT_BATCH_ROWS = 5000
export const DEFAULT_IMPORT_MAX_BATCH_BYTES = 8 * 1024 * 1024
export const DEFAULT_IMPORT_TIMEOUT_MS = 120_000
/** The server's limit on rows per request (src/http/data.ts MAX_ROWS_PER_REQUEST). */
const MAX_ROWS_PER_REQUEST = 200_000

/** Sends one batch of NDJSON lines; resolves once the server acknowledged it. */
export type SendBatch = (ndjson: string) => Promise<WriteResult>

/**
 * Streams records into a space in NDJSON batches, one request in flight: the source is not read
 * past the current batch until the previous one is acknowledged, so a fast producer waits for
 * the cluster (back-pressure) and memory holds one batch. A batch with invalid rows throws
 * ShoalError INVALID_ROWS with row numbers counted over the whole stream; the batches before it
 * are written, the failed one is not (the server writes nothing of a request with invalid rows).
 */
export async function importRecords (source: AsyncIterable<ShoalRecord> | Iterable<ShoalRecord>, send: SendBatch, options: ImportOptions = {}): Promise<ImportResult> {
  const batchRows = options.batchRows ?? DEFAULT_IMPORT_BATCH_ROWS
  const maxBatchBytes = options.maxBatchBytes ?? DEFAULT_IMPORT_MAX_BATCH_BYTES
  if (!Number.isInteger(batchRows) || batchRows < 1 || batchRows > MAX_ROWS_PER_REQUEST) throw new ShoalError('BAD_ARGUMENT', `batchRows must be an integer from 1 to ${MAX_ROWS_PER_REQUEST}; got ${batchRows}`)
  if (!(maxBatchBytes > 0)) throw new ShoalError('BAD_ARGUMENT', `maxBatchBytes must be positive; got ${maxBatchBytes}`)
  const result: ImportResult = { written: 0, batches: 0, stale: 0 }
  let lines: string[] = []
  let bytes = 0
  let firstRow = 0
  let seen = 0

  const flush = async (): Promise<void> => {
    if (lines.length === 0) return
    const count = lines.length
    const body = lines.join('\n')
    lines = []
    bytes = 0
    let answer: WriteResult
    try {
      answer = await send(body)
    } catch (err) {
      throw shiftRows(err, firstRow)
    }
    // The server acknowledges every row of a batch or none (invalid rows fail the request).
    if (answer.written !== count) throw new ShoalError('BAD_ANSWER', `a batch of ${count} rows was answered with written=${answer.written}`)
    result.written += count
    result.stale += answer.stale ?? 0
    result.batches++
    firstRow += count
    options.onProgress?.(result.written)
  }

  for await (const record of source) {
    if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new ShoalError('BAD_ARGUMENT', `row ${seen} of the import is not an object`)
    const line = JSON.stringify(record)
    const lineBytes = Buffer.byteLength(line) + 1
    if (lines.length > 0 && bytes + lineBytes > maxBatchBytes) await flush()
    lines.push(line)
    bytes += lineBytes
    seen++
    if (lines.length >= batchRows) await flush()
  }
  await flush()
  return result
}

/** The same error with its row numbers counted from the start of the stream, not of the batch. */
function shiftRows (err: unknown, offset: number): unknown {
  if (!(err instanceof ShoalError) || err.rowErrors.length === 0 || offset === 0) return err
  const rowErrors: RowError[] = err.rowErrors.map(e => ({ ...e, row: e.row + offset }))
  const first = rowErrors[0]!
  return new ShoalError(err.code, `${rowErrors.length} invalid record(s) in the batch from row ${offset}, that batch not written (${offset} rows before it are); first: row ${first.row}${first.field !== '' ? `, field ${first.field}` : ''}: ${first.message}`, {
    ...(err.status !== undefined ? { status: err.status } : {}),
    ...(err.peer !== undefined ? { peer: err.peer } : {}),
    rowErrors,
    details: err.details,
    cause: err
  })
}
