/**
 * A query's answer as an Arrow IPC stream (for `Accept: application/vnd.apache.arrow.stream`):
 * one record batch per 64k rows, built and handed on one at a time (arrowChunks), so a reader can
 * start on the first batch while the rest is made, and the answer never exists twice in Arrow
 * form. Column types are the output's Arrow types: int64 as Int64, timestamps in ms, dates in days.
 */
import { AsyncByteQueue, Field, Null, RecordBatch, RecordBatchStreamWriter, Schema, Struct, makeData, vectorFromArray, type Data, type DataType } from 'apache-arrow'
import { valueAt, type ColumnBatch, type ColumnVector } from '../../columnar/index.js'
import { arrowType, type ColumnType } from '../../schema/index.js'
import type { OutputColumn } from './final.js'

export const ARROW_STREAM_TYPE = 'application/vnd.apache.arrow.stream'
export const ROWS_PER_RECORD_BATCH = 65_536

function typeOf (t: OutputColumn['type']): DataType {
  return t === 'null' ? new Null() : arrowType(t as ColumnType)
}

function validity (n: number, isNull: (i: number) => boolean): { nullBitmap: Uint8Array | undefined, nullCount: number } {
  let nulls = 0
  const bits = new Uint8Array((n + 7) >> 3)
  for (let i = 0; i < n; i++) {
    if (isNull(i)) nulls++
    else bits[i >> 3]! |= 1 << (i & 7)
  }
  return { nullBitmap: nulls === 0 ? undefined : bits, nullCount: nulls }
}

function columnData (col: OutputColumn, v: ColumnVector | undefined, start: number, end: number): Data {
  const n = end - start
  const type = typeOf(col.type)
  if (v !== undefined && v.tag === 'num' && col.type !== 'bool' && col.type !== 'null') {
    const src = v.values.subarray(start, end)
    const { nullBitmap, nullCount } = validity(n, i => src[i] !== src[i])
    let data: ArrayBufferView
    switch (col.type) {
      case 'int32': case 'date': data = Int32Array.from(src, x => x !== x ? 0 : x); break
      case 'int64': case 'timestamp': data = BigInt64Array.from(src, x => x !== x ? 0n : BigInt(Math.trunc(x))); break
      case 'float32': data = Float32Array.from(src, x => x !== x ? 0 : x); break
      default: data = Float64Array.from(src, x => x !== x ? 0 : x)
    }
    return makeData({ type, length: n, nullCount, nullBitmap, data } as never)
  }
  const values = new Array<unknown>(n)
  for (let i = 0; i < n; i++) values[i] = v === undefined ? null : valueAt(v, start + i)
  return vectorFromArray(values, type).data[0]!
}

/**
 * The writer's sink: keeps what the writer wrote since it was last taken. (The writer's own queue
 * only hands bytes out asynchronously, or all of them at the end.)
 */
class Pieces extends AsyncByteQueue {
  private pieces: Uint8Array[] = []
  private bytes = 0
  override write (value: ArrayBufferView | ArrayBuffer): void {
    const piece = ArrayBuffer.isView(value) ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : new Uint8Array(value)
    if (piece.byteLength === 0) return
    this.pieces.push(piece)
    this.bytes += piece.byteLength
  }

  /** What was written since the last take, as one chunk (one socket write rather than one per column buffer). */
  take (): Uint8Array {
    const out = Buffer.concat(this.pieces, this.bytes)
    this.pieces = []
    this.bytes = 0
    return out
  }
}

/**
 * The rows of `batch` under `columns` as one Arrow IPC stream, a chunk per record batch: the
 * schema and the first batch, each next batch, then the end-of-stream marker. A record batch is
 * made only when the previous chunk was taken, so a slow reader holds back the work.
 */
export function * arrowChunks (batch: ColumnBatch, columns: readonly OutputColumn[]): Generator<Uint8Array> {
  const schema = new Schema(columns.map(c => new Field(c.name, typeOf(c.type), true)))
  const sink = new Pieces()
  const writer = new RecordBatchStreamWriter()
  writer.reset(sink, schema)
  // An empty answer is still one (empty) record batch, as readers expect a batch to learn nothing from.
  for (let start = 0; start < batch.length || start === 0; start += ROWS_PER_RECORD_BATCH) {
    const end = Math.min(batch.length, start + ROWS_PER_RECORD_BATCH)
    const children = columns.map(c => columnData(c, batch.columns.get(c.name), start, end))
    writer.write(new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: end - start, nullCount: 0, children })))
    yield sink.take()
    if (batch.length === 0) break
  }
  writer.finish()
  yield sink.take()
}

/** The whole stream's bytes at once (for callers that want them whole, such as tests). */
export function arrowStream (batch: ColumnBatch, columns: readonly OutputColumn[]): Uint8Array {
  return Buffer.concat([...arrowChunks(batch, columns)])
}
