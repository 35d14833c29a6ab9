/**
 * Column vectors in shared memory: typed arrays over a SharedArrayBuffer travel to a worker
 * thread without a copy (structured clone shares them). Storage keeps its cached columns this way
 * so that a peer's query fragments can run on worker threads over the very same memory.
 */
import type { ColumnBatch, ColumnVector } from './vector.js'

type Typed = Float64Array | Float32Array | Int32Array | Uint8Array

function shared<T extends Typed> (a: T, make: (buf: SharedArrayBuffer) => T): T {
  if (a.buffer instanceof SharedArrayBuffer) return a
  const out = make(new SharedArrayBuffer(a.byteLength))
  out.set(a as never)
  return out
}

/** The vector with its typed arrays in shared memory (itself when they already are). */
export function shareVector (v: ColumnVector): ColumnVector {
  switch (v.tag) {
    case 'num': return { ...v, values: shared(v.values, b => new Float64Array(b)) }
    case 'str': return { ...v, codes: shared(v.codes, b => new Int32Array(b)) }
    case 'vec': return { ...v, values: shared(v.values, b => new Float32Array(b)), valid: shared(v.valid, b => new Uint8Array(b)) }
    case 'any': return v
  }
}

export function shareBatch (batch: ColumnBatch): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  for (const [name, v] of batch.columns) columns.set(name, shareVector(v))
  return { length: batch.length, columns }
}
