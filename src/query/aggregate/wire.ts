/**
 * msgpack framing of encoded states. Encoded states are built only from arrays, numbers, strings
 * and byte arrays; unpacking uses no records extension and refuses oversized input before parsing.
 */
import { Packr } from 'msgpackr'
import { AggregationDecodeError } from './types.js'

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

/** Largest packed state accepted by `unpackState`, in bytes. */
export const MAX_PACKED_BYTES = 64 * 1024 * 1024

export function packState (encoded: unknown): Uint8Array { return packr.pack(encoded) }

export function unpackState (bytes: Uint8Array, maxBytes = MAX_PACKED_BYTES): unknown {
  if (!(bytes instanceof Uint8Array)) throw new AggregationDecodeError('packed state must be bytes')
  if (bytes.length > maxBytes) throw new AggregationDecodeError(`packed state is ${bytes.length} bytes, over the limit of ${maxBytes}`)
  try {
    return packr.unpack(bytes)
  } catch (err) {
    throw new AggregationDecodeError(`packed state is not valid msgpack: ${(err as Error).message}`)
  }
}
