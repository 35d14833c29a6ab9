/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial) of WAL frames and segment files. Node's native
 * zlib.crc32 (Node >= 20.15 / 22.2) when present, else a table-driven fallback giving the same
 * values, so files written by either read back under the other.
 */
import * as zlib from 'node:zlib'

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32

let table: Uint32Array | undefined
function makeTable (): Uint32Array {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
}

/** Table-driven CRC-32; exported so tests can check it against the native one. */
export function crc32Js (data: Uint8Array, value = 0): number {
  table ??= makeTable()
  let c = (value ^ 0xffffffff) >>> 0
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** CRC-32 of `data`, continuing from `value` (the CRC of the bytes before it). */
export function crc32 (data: Uint8Array, value = 0): number {
  return native !== undefined ? native(data, value) >>> 0 : crc32Js(data, value)
}
