/**
 * The write-ahead log of one partition: a sequence of files `wal-<seq>.log`, each a sequence of
 * frames `[uint32 LE payload length][uint32 LE CRC-32 of payload][payload]`. A payload is one of:
 *
 * - a record frame: a msgpackr array of records `[id, version, deleted (0|1), row | null]`, each
 *   row a flat array `[name, value, name, value, ...]` (a map key `__proto__` would not survive
 *   msgpackr's decoder, and a column may be named that);
 * - a packed frame: the msgpackr array `[2, names, bin]`, `bin` the PackedRecords bytes a
 *   coordinator encoded once for every replica (see PackedRecords): a replica writes them as they
 *   came instead of decoding and encoding every value again. The leading 2 tells them apart (a
 *   record frame's first element is an array).
 *
 * Group commit: appends that arrive while a write + fdatasync is in flight queue up and go out
 * together, in one write and one fdatasync; each append resolves only once its bytes are synced.
 */
import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import type { Logger } from '../runtime/index.js'
import { newRow, type Row } from '../schema/index.js'
import { crc32 } from './crc32.js'
import type { VersionedRecord } from './types.js'

export const FRAME_HEADER_BYTES = 8
/** The first element of a packed frame's payload (a record frame's is an array). */
const PACKED_FRAME = 2

// Plain maps, no shared record structures: every frame decodes on its own, in any process.
const packr = new Packr({ useRecords: false, moreTypes: false })

export function walFileName (seq: number): string { return `wal-${String(seq).padStart(8, '0')}.log` }
export function parseWalFileName (name: string): number | undefined {
  const m = /^wal-(\d{8,})\.log$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

/** Encodes a batch of records as one complete frame (header included). */
export function encodeFrame (records: readonly VersionedRecord[]): Buffer {
  const payload = packr.pack(records.map(r => [r.id, r.version, r.deleted ? 1 : 0, r.row === null ? null : flatten(r.row)]))
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length)
  payload.copy(frame, FRAME_HEADER_BYTES)
  return sealFrame(frame)
}

/** Writes the header (length, CRC) of a frame whose payload is already in place after it. */
function sealFrame (frame: Buffer): Buffer {
  const payload = frame.subarray(FRAME_HEADER_BYTES)
  frame.writeUInt32LE(payload.length, 0)
  frame.writeUInt32LE(crc32(payload), 4)
  return frame
}

/**
 * Records msgpack-encoded once: `bytes` is the flat array `[id, version, deleted, values | null,
 * ...]` (4 entries per record, `deleted` a boolean), `values[i]` the value of column `names[i]`.
 * A coordinator encodes a batch this way once and sends the same bytes to every replica, which
 * decodes them to apply the records and writes the bytes to its WAL unchanged (a packed frame).
 */
export interface PackedRecords {
  readonly names: readonly string[]
  readonly bytes: Uint8Array
}

/** Packs records whose rows are keyed by `names` (a missing column packs as null). */
export function packRecords (names: readonly string[], records: readonly VersionedRecord[]): PackedRecords {
  const n = names.length
  const flat = new Array<unknown>(records.length * 4)
  let k = 0
  for (const r of records) {
    flat[k++] = r.id
    flat[k++] = r.version
    flat[k++] = r.deleted
    const row = r.row
    if (row === null) {
      flat[k++] = null
    } else {
      const values = new Array<unknown>(n)
      for (let i = 0; i < n; i++) values[i] = row[names[i]!] ?? null
      flat[k++] = values
    }
  }
  // pack() may answer a view of a buffer msgpackr goes on writing into: keep a copy of our own.
  return { names, bytes: Uint8Array.prototype.slice.call(packr.pack(flat)) }
}

/** The flat array of a PackedRecords' bytes (unchecked: the caller validates its entries). */
export function unpackFlat (bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

/** The encoded names of a column list, kept per list (a space's schema changes rarely). */
const encodedNames = new WeakMap<readonly string[], Buffer>()

/** Encodes packed records as one complete packed frame (header included): copies, no re-encoding. */
export function encodePackedFrame (packed: PackedRecords): Buffer {
  let names = encodedNames.get(packed.names)
  if (names === undefined) {
    names = Buffer.from(packr.pack(packed.names))
    encodedNames.set(packed.names, names)
  }
  const n = packed.bytes.length
  // [fixarray 3][positive fixint 2][names][bin 32: 0xc6, u32 BE length][bytes]
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + 2 + names.length + 5 + n)
  let at = FRAME_HEADER_BYTES
  frame[at++] = 0x93
  frame[at++] = PACKED_FRAME
  at += names.copy(frame, at)
  frame[at++] = 0xc6
  frame.writeUInt32BE(n, at)
  at += 4
  frame.set(packed.bytes, at)
  return sealFrame(frame)
}

function flatten (row: Row): unknown[] {
  const out: unknown[] = []
  for (const k of Object.keys(row)) out.push(k, row[k])
  return out
}

function unflatten (flat: unknown): Row {
  if (!Array.isArray(flat) || flat.length % 2 !== 0) throw new Error('frame holds a malformed row')
  const row: Row = newRow()
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i]
    if (typeof k !== 'string') throw new Error('frame holds a malformed row')
    row[k] = flat[i + 1]
  }
  return row
}

function decodePayload (payload: Uint8Array): VersionedRecord[] {
  const raw = packr.unpack(payload) as unknown
  if (!Array.isArray(raw)) throw new Error('frame payload is not an array')
  if (raw[0] === PACKED_FRAME) return decodePacked(raw)
  return raw.map((e: unknown) => {
    if (!Array.isArray(e) || e.length !== 4 || typeof e[0] !== 'string' || typeof e[1] !== 'number') throw new Error('frame holds a malformed record')
    const deleted = e[2] === 1
    return { id: e[0], version: e[1], deleted, row: deleted ? null : unflatten(e[3]) }
  })
}

function decodePacked (raw: unknown[]): VersionedRecord[] {
  const [, names, bytes] = raw
  if (raw.length !== 3 || !Array.isArray(names) || !names.every(n => typeof n === 'string') || !(bytes instanceof Uint8Array)) {
    throw new Error('malformed packed frame')
  }
  const flat = unpackFlat(bytes)
  if (!Array.isArray(flat) || flat.length % 4 !== 0) throw new Error('packed frame holds a malformed record list')
  const out = new Array<VersionedRecord>(flat.length / 4)
  for (let k = 0, i = 0; k < flat.length; k += 4, i++) {
    const id = flat[k]
    const version = flat[k + 1]
    const deleted = flat[k + 2]
    const values = flat[k + 3]
    if (typeof id !== 'string' || typeof version !== 'number' || typeof deleted !== 'boolean') throw new Error('packed frame holds a malformed record')
    if (deleted) {
      out[i] = { id, version, deleted, row: null }
      continue
    }
    if (!Array.isArray(values) || values.length !== names.length) throw new Error('packed frame holds a malformed row')
    const row = newRow()
    for (let c = 0; c < names.length; c++) row[names[c] as string] = values[c]
    out[i] = { id, version, deleted, row }
  }
  return out
}

export class WalFailedError extends Error {
  override name = 'WalFailedError'
}

interface Waiter { resolve: () => void, reject: (err: Error) => void }

/** One open WAL file being appended to, with group commit. */
export class WalFile {
  private queue: Buffer[] = []
  private waiters: Waiter[] = []
  private running: Promise<void> | undefined
  private failed: Error | undefined
  /** Bytes durably written so far (the file's logical end). */
  size: number
  fsyncs = 0
  frames = 0

  private constructor (readonly seq: number, readonly path: string, private readonly fh: FileHandle, size: number, private readonly onFsync: () => void) {
    this.size = size
  }

  /** Opens (creating if needed) `wal-<seq>.log` in `dir` for appending at `size`. */
  static async open (dir: string, seq: number, size: number, onFsync: () => void = () => {}): Promise<WalFile> {
    const path = join(dir, walFileName(seq))
    const fh = await open(path, size === 0 ? 'w' : 'r+', 0o600)
    return new WalFile(seq, path, fh, size, onFsync)
  }

  /** Bytes queued but not yet synced. */
  get pendingBytes (): number { return this.queue.reduce((n, b) => n + b.length, 0) }

  /** Appends one encoded frame; resolves when it is synced to disk. */
  append (frame: Buffer): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    return new Promise<void>((resolve, reject) => {
      this.queue.push(frame)
      this.waiters.push({ resolve, reject })
      this.frames++
      this.running ??= this.loop()
    })
  }

  /** Resolves once everything appended so far is synced (at once if nothing is pending). */
  async drain (): Promise<void> {
    while (this.running !== undefined) await this.running
    if (this.failed !== undefined) throw this.failed
  }

  private async loop (): Promise<void> {
    while (this.queue.length > 0) {
      const bufs = this.queue
      const waiters = this.waiters
      this.queue = []
      this.waiters = []
      try {
        const data = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs)
        let off = 0
        while (off < data.length) {
          const { bytesWritten } = await this.fh.write(data, off, data.length - off, this.size + off)
          off += bytesWritten
        }
        await this.fh.datasync()
        this.size += data.length
        this.fsyncs++
        this.onFsync()
        for (const w of waiters) w.resolve()
      } catch (err) {
        // After a failed write or sync the file's state is unknown: refuse everything from now on.
        this.failed = new WalFailedError(`write-ahead log ${this.path} failed: ${(err as Error).message}`, { cause: err })
        for (const w of [...waiters, ...this.waiters]) w.reject(this.failed)
        this.queue = []
        this.waiters = []
      }
    }
    this.running = undefined
  }

  async close (): Promise<void> {
    await this.drain().catch(() => {})
    await this.fh.close()
  }
}

export interface WalReadResult {
  /** Records of the good frames, in order. */
  records: VersionedRecord[]
  frames: number
  /** End of the last good frame: the file is truncated here. */
  goodBytes: number
  fileBytes: number
  /** Why reading stopped before the end of the file, if it did. */
  stop?: { kind: 'torn' | 'corrupt', at: number, reason: string }
}

/**
 * Reads a WAL file frame by frame, in chunks of `chunkBytes`. Stops at the first incomplete frame
 * (a torn tail) or at the first frame whose CRC or payload is bad; never returns a record from a
 * bad frame or from anything after it.
 */
export async function readWalFile (path: string, opts: { chunkBytes?: number, maxFrameBytes: number }): Promise<WalReadResult> {
  const chunkBytes = opts.chunkBytes ?? 8 << 20
  const fh = await open(path, 'r')
  try {
    const fileBytes = (await fh.stat()).size
    const records: VersionedRecord[] = []
    let frames = 0
    let pos = 0 // file offset of buf[0]
    let buf: Buffer = Buffer.alloc(0)
    let readPos = 0
    const fill = async (need: number): Promise<boolean> => {
      while (buf.length < need && readPos < fileBytes) {
        const want = Math.max(chunkBytes, need - buf.length)
        const chunk = Buffer.allocUnsafe(Math.min(want, fileBytes - readPos))
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, readPos)
        if (bytesRead === 0) break
        readPos += bytesRead
        buf = buf.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buf, chunk.subarray(0, bytesRead)])
      }
      return buf.length >= need
    }
    for (;;) {
      if (!(await fill(FRAME_HEADER_BYTES))) {
        if (buf.length === 0) return { records, frames, goodBytes: pos, fileBytes }
        return { records, frames, goodBytes: pos, fileBytes, stop: { kind: 'torn', at: pos, reason: `incomplete frame header (${buf.length} of 8 bytes)` } }
      }
      const len = buf.readUInt32LE(0)
      const crc = buf.readUInt32LE(4)
      if (len > opts.maxFrameBytes) {
        // A length this large is garbage (a torn or corrupt header), not a frame to wait for.
        const kind = pos + FRAME_HEADER_BYTES + len > fileBytes ? 'torn' : 'corrupt'
        return { records, frames, goodBytes: pos, fileBytes, stop: { kind, at: pos, reason: `frame length ${len} exceeds the limit of ${opts.maxFrameBytes}` } }
      }
      if (!(await fill(FRAME_HEADER_BYTES + len))) {
        return { records, frames, goodBytes: pos, fileBytes, stop: { kind: 'torn', at: pos, reason: `incomplete frame (${buf.length - FRAME_HEADER_BYTES} of ${len} payload bytes)` } }
      }
      const payload = buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + len)
      const actual = crc32(payload)
      if (actual !== crc) {
        return { records, frames, goodBytes: pos, fileBytes, stop: { kind: 'corrupt', at: pos, reason: `CRC mismatch (stored ${crc.toString(16)}, computed ${actual.toString(16)})` } }
      }
      let decoded: VersionedRecord[]
      try {
        decoded = decodePayload(payload)
      } catch (err) {
        return { records, frames, goodBytes: pos, fileBytes, stop: { kind: 'corrupt', at: pos, reason: `undecodable payload: ${(err as Error).message}` } }
      }
      for (const r of decoded) records.push(r)
      frames++
      pos += FRAME_HEADER_BYTES + len
      buf = buf.subarray(FRAME_HEADER_BYTES + len)
    }
  } finally {
    await fh.close()
  }
}

/** Logs a WAL read that stopped early: loudly, since acknowledged writes may be behind it. */
export function logWalStop (log: Logger, path: string, r: WalReadResult): void {
  if (r.stop === undefined) return
  const fields = { path, at: r.stop.at, reason: r.stop.reason, bytesTruncated: r.fileBytes - r.goodBytes, framesRecovered: r.frames }
  if (r.stop.kind === 'torn') {
    log.warn(fields, 'write-ahead log has a torn tail (a write cut short by a crash); truncating it')
  } else {
    log.error(fields, 'WRITE-AHEAD LOG CORRUPT: replay stopped at a bad frame; everything after it is discarded and the file truncated')
  }
}
