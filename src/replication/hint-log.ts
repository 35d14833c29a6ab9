/**
 * The hint files: what makes hinted handoff survive a coordinator restart or power loss. One
 * directory per target peer under the peer's data directory, each an append-only sequence of
 * files (`<data-dir>/hints/<target>/hints-<seq>.log`); a hint is appended to its target's current
 * file, and a file is deleted once every hint in it was delivered, dropped or expired. At start-up
 * every file is read back (open()), its hints handed to the HintStore, and the files are only read
 * from then on: new hints go to new files.
 *
 * Format: a 16-byte file header `[u32 LE FILE_MAGIC][u32 LE version 1][u32 LE 0][u32 LE CRC-32 of
 * the 12 bytes before]`, then frames `[u32 LE FRAME_MAGIC][u32 LE CRC-32 of the length and the
 * payload][u32 LE payload length][payload]`, as the WAL frames records (src/storage/wal.ts). The
 * payload is the msgpack array `[1, target, createdAtWallMs, space, partition, packed]`: `space`
 * the array `[name, uid, partitions, replicas, [[column, type, nullable], ...]]`, `packed` the
 * records as repl.write carries them (wire.ts packRecords). Arrays, no maps: nothing decoded is a
 * key an attacker could make `__proto__`; and everything decoded goes through the validation of a
 * repl.write body (space, schema, every record and value), with a size limit per frame.
 *
 * Reading stops at the first frame that is cut short or fails its CRC (a torn tail: appended but
 * not synced when the power went); what follows in that file is ignored and counted.
 *
 * Durability: appends are group-committed per file, one write and one fdatasync for whatever
 * queued while the previous one ran; a new file is fsynced with its directory before any of its
 * hints counts as durable. append() answers when its hint is.
 */
import { posix } from 'node:path'
import { Packr } from 'msgpackr'
import type { AppendFile, FileSystem, Logger, PeerId } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { crc32 } from '../storage/index.js'
import type { VersionedRecord } from '../storage/index.js'
// The frame header is the WAL's: the same three u32 fields (magic, CRC, length).
import { FRAME_HEADER_BYTES } from '../storage/wal.js'
import { packRecords, parseWriteRequest } from './wire.js'

const FILE_MAGIC = 0x544e4853 // 'SHNT' little-endian
const FILE_VERSION = 1
const FILE_HEADER_BYTES = 16
const FRAME_MAGIC = 0x68a1f00d
const PAYLOAD_VERSION = 1
/**
 * The largest frame payload read back. A hint holds at most one repl.write batch (maxBatchBytes,
 * 2 MiB by default, of estimated size; below the 8 MiB RPC frame): 32 MiB leaves room for any
 * setting and refuses a garbage length before allocating for it.
 */
export const MAX_HINT_FRAME_BYTES = 32 * 1024 * 1024
/** A target's file is closed and a new one started past this size. 4 MiB, a sixteenth of the default hintMaxBytes. */
export const DEFAULT_HINT_FILE_BYTES = 4 * 1024 * 1024

const packr = new Packr({ useRecords: false, moreTypes: false })

/**
 * The file size for a hint byte bound: a sixteenth of it (a file held by one undelivered hint
 * wastes at most that), between 64 KiB and DEFAULT_HINT_FILE_BYTES.
 */
export function hintFileBytesFor (maxBytes: number): number {
  return Math.max(64 * 1024, Math.min(DEFAULT_HINT_FILE_BYTES, Math.floor(maxBytes / 16)))
}

/** One hint file; `live` counts its hints not yet delivered, dropped or expired. */
export interface HintFile {
  readonly target: PeerId
  readonly path: string
  /** Bytes written to it (header included), or read from it at start-up. */
  bytes: number
  live: number
}

/** A hint as written to and read back from a file. */
export interface StoredHint {
  target: PeerId
  space: SpaceDef
  partition: number
  records: VersionedRecord[]
  /** Wall-clock ms when the hint was written: its age survives a restart. */
  createdAtWallMs: number
}

/** A hint read back at start-up, with its file and its frame's size. */
export interface LoadedHint extends StoredHint { file: HintFile, bytes: number }

export interface HintLogDeps { fs: FileSystem, log: Logger }

export interface HintLogOptions {
  /** The directory of the hint files: `<data-dir>/hints`. */
  dir: string
  /** A target's current file is closed and a new one started past this size. bytes, default 4 MiB. */
  fileBytes?: number
}

/** What open() found on disk. */
export interface HintLogLoad {
  hints: LoadedHint[]
  files: number
  /** Bytes after a frame cut short or failing its CRC, ignored. */
  tornBytes: number
  /** Frames whose CRC held but whose content did not validate, skipped. */
  badFrames: number
}

/** Encodes a hint as one frame (header included). Throws when its records cannot be packed. */
export function encodeHintFrame (h: StoredHint): Uint8Array {
  const space = [h.space.name, h.space.uid, h.space.partitions, h.space.replicas, h.space.schema.map(c => [c.name, c.type, c.nullable])]
  const payload = packr.pack([PAYLOAD_VERSION, h.target, h.createdAtWallMs, space, h.partition, packRecords(h.space, h.records).bytes])
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
  frame.set(payload, FRAME_HEADER_BYTES)
  const view = new DataView(frame.buffer)
  view.setUint32(0, FRAME_MAGIC, true)
  view.setUint32(8, payload.length, true)
  view.setUint32(4, crc32(frame.subarray(8)), true)
  return frame
}

function fileHeader (): Uint8Array {
  const h = new Uint8Array(FILE_HEADER_BYTES)
  const view = new DataView(h.buffer)
  view.setUint32(0, FILE_MAGIC, true)
  view.setUint32(4, FILE_VERSION, true)
  view.setUint32(12, crc32(h.subarray(0, 12)), true)
  return h
}

/**
 * The frames of one file's bytes, in order, up to the first one cut short or failing its CRC:
 * `payloads` and where reading stopped (`end` < data.length: a torn or damaged tail). A header
 * that does not check answers no frames.
 */
export function readHintFrames (data: Uint8Array): { payloads: Uint8Array[], end: number } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  if (data.length < FILE_HEADER_BYTES || view.getUint32(0, true) !== FILE_MAGIC || view.getUint32(4, true) !== FILE_VERSION ||
    view.getUint32(12, true) !== crc32(data.subarray(0, 12))) {
    return { payloads: [], end: 0 }
  }
  const payloads: Uint8Array[] = []
  let at = FILE_HEADER_BYTES
  while (at + FRAME_HEADER_BYTES <= data.length) {
    if (view.getUint32(at, true) !== FRAME_MAGIC) break
    const len = view.getUint32(at + 8, true)
    if (len > MAX_HINT_FRAME_BYTES || at + FRAME_HEADER_BYTES + len > data.length) break
    if (crc32(data.subarray(at + 8, at + FRAME_HEADER_BYTES + len)) !== view.getUint32(at + 4, true)) break
    payloads.push(data.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len))
    at += FRAME_HEADER_BYTES + len
  }
  return { payloads, end: at }
}

/** Decodes and validates one payload written for `target`; throws saying what is wrong. */
export function decodeHintPayload (payload: Uint8Array, target: PeerId): StoredHint {
  const v = packr.unpack(payload) as unknown
  if (!Array.isArray(v) || v.length !== 6 || v[0] !== PAYLOAD_VERSION) throw new Error('not a hint of format 1')
  const [, t, createdAtWallMs, s, partition, packed] = v as unknown[]
  if (t !== target) throw new Error('hint for another target')
  if (typeof createdAtWallMs !== 'number' || !Number.isFinite(createdAtWallMs)) throw new Error('bad createdAtWallMs')
  if (!Array.isArray(s) || s.length !== 5 || !Array.isArray(s[4])) throw new Error('bad space')
  const schema = (s[4] as unknown[]).map(c => {
    if (!Array.isArray(c) || c.length !== 3) throw new Error('bad space schema')
    return { name: c[0], type: c[1], nullable: c[2] }
  })
  // parseWriteRequest checks everything a replica checks of a repl.write: space and schema,
  // partition in range, record count, every record's id, version and values.
  const req = parseWriteRequest({ space: { name: s[0], uid: s[1], partitions: s[2], replicas: s[3], schema }, partition, packed, hlc: 0 })
  return { target, space: req.space, partition: req.partition, records: req.records, createdAtWallMs }
}

/** A target's directory name: the peer id when it is plainly safe, else `_` and its UTF-8 in hex. */
export function targetDirName (target: PeerId): string {
  return /^[A-Za-z0-9-]{1,200}$/.test(target) ? target : '_' + Buffer.from(target, 'utf8').toString('hex')
}

function targetOfDir (name: string): PeerId | undefined {
  if (/^[A-Za-z0-9-]{1,200}$/.test(name)) return name
  if (/^_(?:[0-9a-f]{2}){1,400}$/.test(name)) return Buffer.from(name.slice(1), 'hex').toString('utf8')
  return undefined
}

function fileName (seq: number): string { return `hints-${String(seq).padStart(8, '0')}.log` }
function seqOf (name: string): number | undefined {
  const m = /^hints-(\d{8,15})\.log$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

const { join, dirname } = posix

function isCurrent (f: HintFile): f is Current { return 'queue' in f }

interface Pending { frame: Uint8Array, resolve: () => void, reject: (err: unknown) => void }

/** A file being appended to: its handle, its queue, whether a write is under way. */
interface Current extends HintFile {
  handle?: AppendFile
  queue: Pending[]
  writing: boolean
  /** Closed to appends (full, failed, or idle and empty): deleted once no hint in it is live. */
  sealed: boolean
  created: boolean
}

export class HintLog {
  private readonly current = new Map<PeerId, Current>()
  private readonly nextSeq = new Map<PeerId, number>()
  private readonly knownDirs = new Set<PeerId>()
  /** File operations under way (group commits, deletions): close() waits for them. */
  private readonly inFlight = new Set<Promise<void>>()
  private readonly removed = new WeakSet<HintFile>()
  private totalBytes = 0
  private closed = false
  private readonly fileBytes: number

  private constructor (private readonly deps: HintLogDeps, private readonly dir: string, opts: HintLogOptions) {
    this.fileBytes = opts.fileBytes ?? DEFAULT_HINT_FILE_BYTES
    if (!(this.fileBytes >= 1)) throw new RangeError('hint fileBytes must be >= 1')
  }

  /**
   * Opens the hint directory (creating it durably) and reads back every hint file: the hints,
   * oldest first per target, for the HintStore to take. Files holding no hint are deleted.
   */
  static async open (deps: HintLogDeps, opts: HintLogOptions): Promise<{ log: HintLog, load: HintLogLoad }> {
    const log = new HintLog(deps, opts.dir, opts)
    const load = await log.load()
    return { log, load }
  }

  /** Bytes of every hint file on disk (what hintMaxBytes bounds). */
  get diskBytes (): number { return this.totalBytes }

  /**
   * Appends a hint (already encoded by encodeHintFrame) to its target's current file: `file` is
   * where it went, `durable` resolves once it is synced (with the file's directory entry when the
   * file is new) and rejects when the write or the sync failed: the hint is then not durable, and
   * the file takes no more appends.
   */
  append (target: PeerId, frame: Uint8Array): { file: HintFile, durable: Promise<void> } {
    if (this.closed) return { file: { target, path: '', bytes: 0, live: 1 }, durable: Promise.reject(new Error('hint log closed')) }
    let cur = this.current.get(target)
    if (cur === undefined || cur.sealed || (cur.bytes > FILE_HEADER_BYTES && cur.bytes + frame.length > this.fileBytes)) {
      if (cur !== undefined) this.seal(cur)
      cur = this.newFile(target)
    }
    cur.bytes += frame.length
    this.totalBytes += frame.length
    cur.live++
    const file = cur
    const durable = new Promise<void>((resolve, reject) => { file.queue.push({ frame, resolve, reject }) })
    this.pump(cur)
    return { file, durable }
  }

  /** A hint of `file` was delivered, dropped or expired: the file goes once none of its hints is live. */
  done (file: HintFile): void {
    if (!(file.live > 0)) throw new Error(`hint file ${file.path}: more hints done than written`)
    file.live--
    if (file.live > 0) return
    if (isCurrent(file)) {
      // Writes under way finish first (pump then removes it); idle and empty, it is closed now
      // and the next hint starts a new file.
      if (file.writing || file.queue.length > 0) return
      this.seal(file)
    }
    this.remove(file)
  }

  /** Waits for the appends and deletions under way and closes the files; appends after this fail. */
  async close (): Promise<void> {
    this.closed = true
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
    for (const cur of this.current.values()) await cur.handle?.close().catch(() => {})
    this.current.clear()
  }

  // ------------------------------------------------------------------------------ internals

  private newFile (target: PeerId): Current {
    const seq = this.nextSeq.get(target) ?? 1
    this.nextSeq.set(target, seq + 1)
    const cur: Current = {
      target, path: join(this.dir, targetDirName(target), fileName(seq)), bytes: FILE_HEADER_BYTES, live: 0,
      queue: [], writing: false, sealed: false, created: false
    }
    this.totalBytes += FILE_HEADER_BYTES
    this.current.set(target, cur)
    return cur
  }

  private seal (cur: Current): void {
    if (cur.sealed) return
    cur.sealed = true
    if (this.current.get(cur.target) === cur) this.current.delete(cur.target)
    if (!cur.writing && cur.queue.length === 0) {
      void cur.handle?.close().catch(() => {})
      cur.handle = undefined
    }
  }

  private remove (file: HintFile): void {
    if (this.removed.has(file)) return
    this.removed.add(file)
    this.totalBytes -= file.bytes
    // Losing this unlink to a crash only brings delivered hints back, delivered again (harmless:
    // last writer wins) or expired: no directory sync.
    if (file.path === '') return
    const op = this.deps.fs.unlink(file.path).catch((err: unknown) => {
      this.deps.log.warn({ file: file.path, err: (err as Error).message }, 'could not delete a delivered hint file')
    }).finally(() => { this.inFlight.delete(op) })
    this.inFlight.add(op)
  }

  /** Group commit: one write and one sync for everything queued on the file meanwhile. */
  private pump (cur: Current): void {
    if (cur.writing || cur.queue.length === 0) return
    cur.writing = true
    const run = this.writeQueued(cur).finally(() => {
      this.inFlight.delete(run)
      cur.writing = false
      if (cur.sealed && cur.queue.length === 0) {
        void cur.handle?.close().catch(() => {})
        cur.handle = undefined
        if (cur.live === 0) this.remove(cur)
      } else if (cur.live === 0 && cur.queue.length === 0) {
        this.seal(cur)
        this.remove(cur)
      } else {
        this.pump(cur)
      }
    })
    this.inFlight.add(run)
  }

  private async writeQueued (cur: Current): Promise<void> {
    const batch = cur.queue.splice(0)
    const { fs } = this.deps
    try {
      let bytes = 0
      for (const p of batch) bytes += p.frame.length
      const header = cur.created ? undefined : fileHeader()
      const buf = new Uint8Array(bytes + (header?.length ?? 0))
      let at = 0
      if (header !== undefined) { buf.set(header, 0); at = header.length }
      for (const p of batch) { buf.set(p.frame, at); at += p.frame.length }
      if (cur.handle === undefined) {
        const dir = join(this.dir, targetDirName(cur.target))
        if (!this.knownDirs.has(cur.target)) {
          await fs.mkdir(dir)
          await fs.syncDir(this.dir)
          this.knownDirs.add(cur.target)
        }
        cur.handle = await fs.openAppend(cur.path)
      }
      await cur.handle.append(buf)
      await cur.handle.sync()
      if (!cur.created) {
        // A new file's entry must survive too, or its synced hints vanish with it.
        await fs.syncDir(join(this.dir, targetDirName(cur.target)))
        cur.created = true
      }
      for (const p of batch) p.resolve()
    } catch (err) {
      // The file's end is unknown now: no more appends to it (the next hint starts a new file);
      // the hints synced before stay in it, read back up to where it tore.
      this.seal(cur)
      for (const p of [...batch, ...cur.queue.splice(0)]) p.reject(err)
    }
  }

  private async load (): Promise<HintLogLoad> {
    const { fs, log } = this.deps
    await fs.mkdir(this.dir)
    await fs.syncDir(dirname(this.dir))
    const out: HintLogLoad = { hints: [], files: 0, tornBytes: 0, badFrames: 0 }
    for (const name of await fs.readdir(this.dir)) {
      const target = targetOfDir(name)
      if (target === undefined) continue
      this.knownDirs.add(target)
      const files = (await fs.readdir(join(this.dir, name)))
        .map(f => ({ f, seq: seqOf(f) })).filter((x): x is { f: string, seq: number } => x.seq !== undefined)
        .sort((a, b) => a.seq - b.seq)
      for (const { f, seq } of files) {
        this.nextSeq.set(target, Math.max(this.nextSeq.get(target) ?? 1, seq + 1))
        const path = join(this.dir, name, f)
        const data = await fs.readFile(path)
        if (data === undefined) continue
        const file: HintFile = { target, path, bytes: data.length, live: 0 }
        this.totalBytes += data.length
        const { payloads, end } = readHintFrames(data)
        if (end < data.length) {
          out.tornBytes += data.length - end
          log.warn({ file: path, bytes: data.length - end }, 'hint file ends in a torn or damaged frame: the rest of it is ignored')
        }
        for (const payload of payloads) {
          try {
            const h = decodeHintPayload(payload, target)
            out.hints.push({ ...h, file, bytes: payload.length + FRAME_HEADER_BYTES })
            file.live++
          } catch (err) {
            out.badFrames++
            log.warn({ file: path, err: (err as Error).message }, 'a hint in a hint file does not validate: skipped')
          }
        }
        out.files++
        if (file.live === 0) this.remove(file)
      }
    }
    log.info({ dir: this.dir, hints: out.hints.length, files: out.files, bytes: this.totalBytes }, 'hint files read')
    return out
  }
}
