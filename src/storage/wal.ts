/**
 * The write-ahead log of one partition: a sequence of files `wal-<seq>.log`.
 *
 * Format 2 (every file written now): a 32-byte file header, two copies of
 * `[u32 LE FILE_MAGIC][u32 LE version 2][u32 LE salt][u32 LE CRC-32 of the 12 bytes before]` (one
 * flipped bit in a header must not cost the file), then frames
 * `[u32 LE FRAME_MAGIC][u32 LE CRC][u32 LE payload length][payload]`, the CRC-32 of the length and
 * the payload seeded with the file's salt. The magic marks where a frame starts, so after a bad
 * frame a reader finds the next one and recovers everything after it; the CRC covers the length,
 * so a corrupt length is caught too; the random salt means bytes a client wrote into a value
 * cannot pass for a frame of this file (it would need the salt to forge the CRC).
 *
 * Format 1 (files written before): frames `[u32 LE payload length][u32 LE CRC-32 of payload]
 * [payload]` from byte 0, no markers. Still read; after a bad frame in one, nothing can be found.
 *
 * A payload is one of:
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
 * The file handle is kept open between writes but may be closed while idle (FilePool) and is
 * reopened by the next write.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { Packr } from 'msgpackr'
import type { FileSystem, Logger, RandomAccessFile } from '../runtime/index.js'
import { newRow, type Row } from '../schema/index.js'
import { crc32 } from './crc32.js'
import type { Evictable, FilePool } from './files.js'
import { writeAllAt } from './fsutil.js'
import type { VersionedRecord } from './types.js'

/** Bytes before a frame's payload (format 2). */
export const FRAME_HEADER_BYTES = 12
/** Bytes before a frame's payload in format 1 files. */
const V1_FRAME_HEADER_BYTES = 8
/** Bytes of a format 2 file header (two copies of 16 bytes). */
export const WAL_HEADER_BYTES = 32
/** 'SWAL' little-endian: far above any frame length, so a format 1 file never starts with it. */
const FILE_MAGIC = 0x4c415753
const FILE_VERSION = 2
const FRAME_MAGIC = 0xc7a1f00d
const FRAME_MAGIC_BYTES = Buffer.from([0x0d, 0xf0, 0xa1, 0xc7])
/** The first element of a packed frame's payload (a record frame's is an array). */
const PACKED_FRAME = 2

// Plain maps, no shared record structures: every frame decodes on its own, in any process.
const packr = new Packr({ useRecords: false, moreTypes: false })

export function walFileName (seq: number): string { return `wal-${String(seq).padStart(8, '0')}.log` }
export function parseWalFileName (name: string): number | undefined {
  const m = /^wal-(\d{8,})\.log$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

/**
 * Encodes a batch of records as one frame, its header left for WalFile.append to fill in (the
 * CRC depends on the file it goes to).
 */
export function encodeFrame (records: readonly VersionedRecord[]): Buffer {
  const payload = packr.pack(records.map(r => [r.id, r.version, r.deleted ? 1 : 0, r.row === null ? null : flatten(r.row)]))
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length)
  payload.copy(frame, FRAME_HEADER_BYTES)
  return frame
}

/** Writes the header (magic, CRC, length) of a frame whose payload is already in place after it. */
function sealFrame (frame: Buffer, salt: number): void {
  frame.writeUInt32LE(FRAME_MAGIC, 0)
  frame.writeUInt32LE(frame.length - FRAME_HEADER_BYTES, 8)
  frame.writeUInt32LE(crc32(frame.subarray(8), salt), 4)
}

/** A format 2 file header with this salt. */
function fileHeader (salt: number): Buffer {
  const h = Buffer.alloc(WAL_HEADER_BYTES)
  h.writeUInt32LE(FILE_MAGIC, 0)
  h.writeUInt32LE(FILE_VERSION, 4)
  h.writeUInt32LE(salt, 8)
  h.writeUInt32LE(crc32(h.subarray(0, 12)), 12)
  h.copy(h, 16, 0, 16)
  return h
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

/** Encodes packed records as one packed frame (header left for append): copies, no re-encoding. */
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
  return frame
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

/** Told of every group commit's fdatasync and how long it took (ms, by `now`, the peer's clock). */
export interface WalSyncHook {
  now: () => number
  synced: (ms: number) => void
}

const NO_SYNC_HOOK: WalSyncHook = { now: () => 0, synced: () => {} }

/** One WAL file being appended to, with group commit; its handle comes from a FilePool. */
export class WalFile implements Evictable {
  private queue: Buffer[] = []
  private waiters: Waiter[] = []
  private running: Promise<void> | undefined
  private failed: Error | undefined
  private fh: RandomAccessFile | undefined
  private closed = false
  /** After a failure: whether the bytes past `size` were cut (cutBrokenTail), and the cut under way. */
  private tailCut = false
  private cutting: Promise<void> | undefined
  /** Bytes durably written so far (the file's logical end). */
  size: number
  fsyncs = 0
  frames = 0
  /** Times the handle was opened again after the pool closed it. */
  reopens = 0

  private constructor (private readonly fs: FileSystem, readonly seq: number, readonly path: string, private readonly salt: number, private readonly files: FilePool, fh: RandomAccessFile, size: number, private readonly sync: WalSyncHook) {
    this.fh = fh
    this.size = size
  }

  /** Creates `wal-<seq>.log` in `dir` (replacing any file of that name) with a durable header. */
  static async create (fs: FileSystem, dir: string, seq: number, files: FilePool, sync: WalSyncHook = NO_SYNC_HOOK): Promise<WalFile> {
    const path = join(dir, walFileName(seq))
    const salt = randomBytes(4).readUInt32LE(0)
    await files.acquire()
    let fh: RandomAccessFile | undefined
    try {
      fh = await fs.open(path, 'w')
      const header = fileHeader(salt)
      await writeAllAt(fh, header, 0)
      await fh.datasync()
    } catch (err) {
      await fh?.close().catch(() => {})
      files.release()
      throw err
    }
    const wal = new WalFile(fs, seq, path, salt, files, fh, WAL_HEADER_BYTES, sync)
    files.markIdle(wal)
    return wal
  }

  /** Bytes queued but not yet synced. */
  get pendingBytes (): number { return this.queue.reduce((n, b) => n + b.length, 0) }

  /** The error that broke this file (a write or sync failed: its state on disk is unknown), if one did. */
  get broken (): Error | undefined { return this.failed }

  /**
   * After a failed write or sync: truncates the file to what was durably written (`size`) and
   * syncs that, once; throws when the disk refuses (StorageEngine.reopenPartition then does not
   * reopen: recovery must not replay frames that were never durable). Nothing to do otherwise.
   */
  async cutBrokenTail (): Promise<void> {
    // One cut at a time (the loop, a reopen and close() may each ask): a second would open the
    // file again past the pool's accounting. A failed cut may be tried again.
    this.cutting ??= this.cut().finally(() => { this.cutting = undefined })
    await this.cutting
  }

  private async cut (): Promise<void> {
    if (this.failed === undefined || this.tailCut) return
    if (this.closed) throw new WalFailedError(`write-ahead log ${this.path} is closed with frames past its durable ${this.size} bytes not cut`)
    // Through the file's own handle (and its pool slot): the loop calls this holding it.
    const fh = await this.handle()
    try {
      if ((await fh.stat()).size > this.size) await fh.truncate(this.size)
      await fh.sync()
      this.tailCut = true
    } finally {
      if (this.running === undefined && this.fh !== undefined && !this.closed) this.files.markIdle(this)
    }
  }

  /** Whether the file handle is open now (the pool may have closed it while idle). */
  get isOpen (): boolean { return this.fh !== undefined }

  /**
   * Appends one frame from encodeFrame/encodePackedFrame (its header is filled in here, for this
   * file); resolves when it is synced to disk.
   */
  append (frame: Buffer): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    if (this.closed) return Promise.reject(new WalFailedError(`write-ahead log ${this.path} is closed`))
    sealFrame(frame, this.salt)
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

  async evict (): Promise<void> {
    const fh = this.fh
    this.fh = undefined
    await fh?.close().catch(() => {})
  }

  /** The open handle, reopening the file (taking a pool slot) if the pool closed it. */
  private async handle (): Promise<RandomAccessFile> {
    this.files.markBusy(this)
    if (this.fh !== undefined) return this.fh
    await this.files.acquire()
    try {
      this.fh = await this.fs.open(this.path, 'r+')
    } catch (err) {
      this.files.release()
      throw err
    }
    this.reopens++
    return this.fh
  }

  private async loop (): Promise<void> {
    while (this.queue.length > 0) {
      const bufs = this.queue
      const waiters = this.waiters
      this.queue = []
      this.waiters = []
      let fh: RandomAccessFile
      try {
        fh = await this.handle()
      } catch (err) {
        // Nothing was written: these writes fail, the file stays usable for the next ones.
        const e = new WalFailedError(`write-ahead log ${this.path} could not be reopened: ${(err as Error).message}`, { cause: err })
        for (const w of waiters) w.reject(e)
        continue
      }
      try {
        const data = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs)
        await writeAllAt(fh, data, this.size)
        const t0 = this.sync.now()
        await fh.datasync()
        this.size += data.length
        this.fsyncs++
        this.sync.synced(this.sync.now() - t0)
        for (const w of waiters) w.resolve()
      } catch (err) {
        // After a failed write or sync the file's state is unknown: refuse everything from now on.
        this.failed = new WalFailedError(`write-ahead log ${this.path} failed: ${(err as Error).message}`, { cause: err })
        for (const w of [...waiters, ...this.waiters]) w.reject(this.failed)
        this.queue = []
        this.waiters = []
        // The frames written but not synced are in the page cache, readable, yet not durable: a
        // reopen that replayed them would take records a power cut can still take away, and a
        // compaction would drop the older, acknowledged versions they seem to replace (found by
        // the simulator's storage schedules). Cut them now if the disk lets us; else the reopen does.
        await this.cutBrokenTail().catch(() => {})
      }
    }
    this.running = undefined
    if (this.fh !== undefined && !this.closed) this.files.markIdle(this)
  }

  async close (): Promise<void> {
    await this.drain().catch(() => {})
    await this.cutBrokenTail().catch(() => {})
    this.closed = true
    this.files.markBusy(this)
    const fh = this.fh
    this.fh = undefined
    if (fh !== undefined) {
      try {
        await fh.close()
      } finally {
        this.files.release()
      }
    }
  }
}

/** A stretch of a WAL file that held no readable frame, with later frames read after it. */
export interface WalBadRegion {
  /** File offset of the first bad byte. */
  offset: number
  bytes: number
  reason: string
}

export interface WalReadResult {
  /** 1: the old format without frame markers; 2: the current one. */
  format: 1 | 2
  /** Records of the good frames, in order. */
  records: VersionedRecord[]
  frames: number
  /** Where the file ends once a torn tail is cut (the file size when there is none). */
  goodBytes: number
  fileBytes: number
  /**
   * A torn tail: an incomplete or unreadable last frame with no good frame after it (a write cut
   * short by a crash, never acknowledged); cut off at `at`.
   */
  torn?: { at: number, reason: string }
  /**
   * Bad frames with good ones after them (or a bad frame that cannot be a torn write): damage,
   * where acknowledged writes were. In format 1 a region runs to the end of the file: frames after
   * a bad one cannot be found.
   */
  corrupt: WalBadRegion[]
}

/** Reads forward through a file in chunks, keeping only the bytes from the last position asked for. */
class ForwardReader {
  private buf: Buffer = Buffer.alloc(0)
  private base = 0

  constructor (private readonly fh: RandomAccessFile, readonly fileBytes: number, private readonly chunkBytes: number) {}

  /** The bytes [at, at + n), or undefined past the end of the file; `at` never goes back. */
  async bytes (at: number, n: number): Promise<Buffer | undefined> {
    if (at + n > this.fileBytes) return undefined
    if (at >= this.base + this.buf.length) {
      this.buf = Buffer.alloc(0)
      this.base = at
    } else if (at > this.base) {
      this.buf = this.buf.subarray(at - this.base)
      this.base = at
    }
    while (this.buf.length < n) {
      const readPos = this.base + this.buf.length
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(this.chunkBytes, n - this.buf.length), this.fileBytes - readPos))
      const { bytesRead } = await this.fh.read(chunk, 0, chunk.length, readPos)
      if (bytesRead === 0) return undefined
      const got = chunk.subarray(0, bytesRead)
      this.buf = this.buf.length === 0 ? got : Buffer.concat([this.buf, got])
    }
    return this.buf.subarray(0, n)
  }

  /** Offset of the first occurrence of `needle` at or after `from`, or -1. */
  async find (from: number, needle: Buffer): Promise<number> {
    for (;;) {
      const n = Math.min(this.chunkBytes, this.fileBytes - from)
      if (n < needle.length) return -1
      const window = await this.bytes(from, n)
      if (window === undefined) return -1
      const i = window.indexOf(needle)
      if (i >= 0) return from + i
      from += n - needle.length + 1
    }
  }
}

type FrameRead = { ok: true, bytes: number, records: VersionedRecord[] } | { ok: false, reason: string, checksummed: boolean }

/**
 * Reads a WAL file (either format). A torn tail ends the read; a bad frame with good frames after
 * it is skipped and reported (format 2), or ends the read and is reported (format 1). Never returns
 * a record from a bad frame.
 */
export async function readWalFile (fs: FileSystem, path: string, opts: { chunkBytes?: number, maxFrameBytes: number }): Promise<WalReadResult> {
  const fh = await fs.open(path, 'r')
  try {
    const fileBytes = (await fh.stat()).size
    const reader = new ForwardReader(fh, fileBytes, Math.max(64, opts.chunkBytes ?? 8 << 20))
    const head = (await reader.bytes(0, Math.min(WAL_HEADER_BYTES, fileBytes)))!
    const empty: WalReadResult = { format: 2, records: [], frames: 0, goodBytes: 0, fileBytes, corrupt: [] }
    if (fileBytes === 0) return empty
    const salt = headerSalt(head)
    if (salt !== undefined) return await readV2(reader, salt, opts.maxFrameBytes)
    if (fileBytes < WAL_HEADER_BYTES && isMagicPrefix(head)) {
      return { ...empty, torn: { at: 0, reason: `incomplete file header (${fileBytes} of ${WAL_HEADER_BYTES} bytes)` } }
    }
    if (head.length >= 4 && (head.readUInt32LE(0) === FILE_MAGIC || (head.length >= 20 && head.readUInt32LE(16) === FILE_MAGIC))) {
      // Both header copies damaged: without the salt no frame of this file can be checked.
      return { ...empty, corrupt: [{ offset: 0, bytes: fileBytes, reason: 'both copies of the file header are corrupt; no frame can be verified' }] }
    }
    return await readV1(reader, opts.maxFrameBytes)
  } finally {
    await fh.close()
  }
}

/** Records decoded between two yields to the event loop (a few ms of work). */
const DECODE_STEP = 2048

function headerSalt (head: Buffer): number | undefined {
  for (let at = 0; at + 16 <= head.length; at += 16) {
    if (head.readUInt32LE(at) !== FILE_MAGIC || head.readUInt32LE(at + 4) !== FILE_VERSION) continue
    if (crc32(head.subarray(at, at + 12)) === head.readUInt32LE(at + 12)) return head.readUInt32LE(at + 8)
  }
  return undefined
}

function isMagicPrefix (head: Buffer): boolean {
  const magic = fileHeader(0).subarray(0, 4)
  return magic.subarray(0, Math.min(4, head.length)).equals(head.subarray(0, Math.min(4, head.length)))
}

async function readFrameV2 (reader: ForwardReader, at: number, salt: number, maxFrameBytes: number): Promise<FrameRead> {
  const h = await reader.bytes(at, FRAME_HEADER_BYTES)
  if (h === undefined) return { ok: false, reason: `incomplete frame header (${reader.fileBytes - at} of ${FRAME_HEADER_BYTES} bytes)`, checksummed: false }
  if (h.readUInt32LE(0) !== FRAME_MAGIC) return { ok: false, reason: 'no frame marker', checksummed: false }
  const crc = h.readUInt32LE(4)
  const len = h.readUInt32LE(8)
  if (len > maxFrameBytes) return { ok: false, reason: `frame length ${len} exceeds the limit of ${maxFrameBytes}`, checksummed: false }
  const f = await reader.bytes(at, FRAME_HEADER_BYTES + len)
  if (f === undefined) return { ok: false, reason: `incomplete frame (${reader.fileBytes - at - FRAME_HEADER_BYTES} of ${len} payload bytes)`, checksummed: false }
  const actual = crc32(f.subarray(8), salt)
  if (actual !== crc) return { ok: false, reason: `CRC mismatch (stored ${crc.toString(16)}, computed ${actual.toString(16)})`, checksummed: false }
  try {
    return { ok: true, bytes: FRAME_HEADER_BYTES + len, records: decodePayload(f.subarray(FRAME_HEADER_BYTES)) }
  } catch (err) {
    return { ok: false, reason: `undecodable payload: ${(err as Error).message}`, checksummed: true }
  }
}

async function readV2 (reader: ForwardReader, salt: number, maxFrameBytes: number): Promise<WalReadResult> {
  const fileBytes = reader.fileBytes
  const out: WalReadResult = { format: 2, records: [], frames: 0, goodBytes: fileBytes, fileBytes, corrupt: [] }
  const take = (f: { bytes: number, records: VersionedRecord[] }): void => {
    for (const r of f.records) out.records.push(r)
    out.frames++
  }
  let pos = WAL_HEADER_BYTES
  let sinceYield = 0
  while (pos < fileBytes) {
    const f = await readFrameV2(reader, pos, salt, maxFrameBytes)
    if (f.ok) {
      take(f)
      pos += f.bytes
      // Frames in a chunk already read decode without a turn of the event loop: a restart's
      // 16 partitions decoding 60,000-record files held it 250-450 ms at a time.
      sinceYield += f.records.length
      if (sinceYield >= DECODE_STEP) { sinceYield = 0; await new Promise(resolve => setImmediate(resolve)) }
      continue
    }
    // A bad frame: the next frame marker whose frame checks out is where reading resumes.
    let next = -1
    let found: FrameRead | undefined
    for (let q = pos + 1; ; q++) {
      q = await reader.find(q, FRAME_MAGIC_BYTES)
      if (q < 0) break
      const c = await readFrameV2(reader, q, salt, maxFrameBytes)
      if (c.ok) { next = q; found = c; break }
    }
    if (next < 0 || found === undefined || !found.ok) {
      if (f.checksummed) {
        // Written whole and checksummed, yet unreadable: not a write cut short.
        out.corrupt.push({ offset: pos, bytes: fileBytes - pos, reason: f.reason })
      } else {
        out.torn = { at: pos, reason: f.reason }
        out.goodBytes = pos
      }
      return out
    }
    out.corrupt.push({ offset: pos, bytes: next - pos, reason: f.reason })
    take(found)
    pos = next + found.bytes
  }
  return out
}

async function readV1 (reader: ForwardReader, maxFrameBytes: number): Promise<WalReadResult> {
  const fileBytes = reader.fileBytes
  const out: WalReadResult = { format: 1, records: [], frames: 0, goodBytes: fileBytes, fileBytes, corrupt: [] }
  const H = V1_FRAME_HEADER_BYTES
  const lost = '; format 1 frames carry no marker, so the frames after it cannot be found'
  const torn = (at: number, reason: string): WalReadResult => ({ ...out, torn: { at, reason }, goodBytes: at })
  const corrupt = (at: number, reason: string): WalReadResult => ({ ...out, corrupt: [{ offset: at, bytes: fileBytes - at, reason: reason + lost }] })
  let pos = 0
  while (pos < fileBytes) {
    const h = await reader.bytes(pos, H)
    if (h === undefined) return torn(pos, `incomplete frame header (${fileBytes - pos} of ${H} bytes)`)
    const len = h.readUInt32LE(0)
    const crc = h.readUInt32LE(4)
    if (len > maxFrameBytes) {
      // A length this large is garbage (a torn or corrupt header), not a frame to wait for.
      const reason = `frame length ${len} exceeds the limit of ${maxFrameBytes}`
      return pos + H + len > fileBytes ? torn(pos, reason) : corrupt(pos, reason)
    }
    const f = await reader.bytes(pos, H + len)
    if (f === undefined) return torn(pos, `incomplete frame (${fileBytes - pos - H} of ${len} payload bytes)`)
    const payload = f.subarray(H)
    const actual = crc32(payload)
    if (actual !== crc) return corrupt(pos, `CRC mismatch (stored ${crc.toString(16)}, computed ${actual.toString(16)})`)
    let decoded: VersionedRecord[]
    try {
      decoded = decodePayload(payload)
    } catch (err) {
      return corrupt(pos, `undecodable payload: ${(err as Error).message}`)
    }
    for (const r of decoded) out.records.push(r)
    out.frames++
    pos += H + len
  }
  return out
}

/** Logs a torn tail cut off a WAL file: expected after a crash, so a warning. */
export function logWalTorn (log: Logger, path: string, r: WalReadResult): void {
  if (r.torn === undefined) return
  log.warn({ path, at: r.torn.at, reason: r.torn.reason, bytesTruncated: r.fileBytes - r.goodBytes, framesRecovered: r.frames },
    'write-ahead log has a torn tail (a write cut short by a crash); truncating it')
}
