import { Packr } from 'msgpackr'
import { FrameTooLargeError } from '../../src/runtime/index.js'

// copyBuffers: a decoded Uint8Array must not alias the packer's reusable output buffer.
const packr = new Packr({ useRecords: false, copyBuffers: true })

const MAX_DEPTH = 64

/**
 * Why a body would not survive the real wire, or null. msgpackr alone is too forgiving for a
 * test: it turns functions into undefined and Maps into objects with string keys, and drops class
 * prototypes, so a bug would pass in the simulator and surface only in production.
 */
function whyNotPlain (value: unknown, path: string, depth: number): string | null {
  switch (typeof value) {
    case 'string': case 'number': case 'boolean': case 'undefined': case 'bigint':
      return null
    case 'object': {
      if (value === null || value instanceof Uint8Array) return null
      if (depth >= MAX_DEPTH) return `${path} is nested deeper than ${MAX_DEPTH} levels (a cycle?)`
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const why = whyNotPlain(value[i], `${path}[${i}]`, depth + 1)
          if (why !== null) return why
        }
        return null
      }
      const proto = Object.getPrototypeOf(value)
      // Rows (schema's newRow) have a prototype that itself has none: plain too.
      if (proto !== Object.prototype && proto !== null && Object.getPrototypeOf(proto) !== null) {
        const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'non-plain'
        return `${path} is a ${name}, not a plain object`
      }
      for (const key in value) {
        const why = whyNotPlain((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1)
        if (why !== null) return why
      }
      return null
    }
    default:
      return `${path} is a ${typeof value}`
  }
}

/** Thrown (or rejected with) when a body holds something the wire cannot carry. A bug, not a network fault. */
export class UnserializableBodyError extends TypeError {
  override name = 'UnserializableBodyError'
}

/**
 * Encodes `value` as the real transport encodes a body (net/rpc.ts's Packr makes the same bytes:
 * its other options only change decoding), after checking that it is plain data. Oversized
 * frames fail here as they would on the wire. The result is msgpackr's reusable buffer: decode it
 * (wireDecode) before encoding anything else.
 */
export function wireEncode (value: unknown, maxBytes: number, peer: string | undefined): Uint8Array {
  const why = whyNotPlain(value, 'body', 0)
  if (why !== null) throw new UnserializableBodyError(`cannot send: ${why}; only plain objects, arrays, strings, numbers, booleans, null and Uint8Array cross the wire`)
  let bytes: Uint8Array
  try {
    bytes = packr.pack(value)
  } catch (err) {
    throw new UnserializableBodyError(`cannot send: msgpackr failed: ${(err as Error).message}`)
  }
  if (bytes.length > maxBytes) throw new FrameTooLargeError(bytes.length, maxBytes, peer)
  return bytes
}

/** What the receiver gets of wireEncode's bytes: a copy it cannot share with the sender. */
export function wireDecode (bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

/**
 * The encoded size of `value` on the real wire, without wireEncode's checks: for counting bytes
 * in a world that does not serialize. Throws UnserializableBodyError if msgpackr cannot encode it.
 */
export function wireSize (value: unknown): number {
  try {
    return packr.pack(value).length
  } catch (err) {
    throw new UnserializableBodyError(`cannot send: msgpackr failed: ${(err as Error).message}`)
  }
}
