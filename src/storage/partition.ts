/**
 * One partition replica on disk: WAL + memtable + Arrow segments + manifest, behind the
 * PartitionStore contract (types.ts).
 *
 * State in memory: `index` maps every id held to its newest version, either a record object (in
 * the active or the frozen memtable) or a segment locator (segment id × 2^32 + row). Every change
 * to `index` goes through put/relocate/remove, which keep the segments' live bitmaps, the
 * live/tombstone counters and the incremental digests in step.
 *
 * Durability: apply() updates memory synchronously and queues one WAL frame in the same tick, then
 * resolves when that frame is fsynced (group commit, wal.ts). A flush switches to a new WAL file
 * and a new memtable in one tick, writes the frozen records as a segment (fsynced, directory
 * fsynced), swaps the manifest atomically (its `walFrom` moves past the old WAL), and only then
 * deletes the old WAL. Recovery replays the WAL files at or after `walFrom`.
 *
 * Damage: a WAL file with a bad frame that is not a torn tail (good frames after it) is copied
 * to `<file>.corrupt` first, every good frame is replayed, the records are flushed to a segment at
 * once (the damaged file then goes), and the damage is kept in `<file>.corrupt.json` and answered
 * by damage(): replication keeps the partition out of service until the other replicas have
 * repaired it (markRepaired), and health reports it. Files opened here take slots of the peer's
 * FilePool (files.ts), so thousands of partitions do not mean thousands of descriptors.
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { gather, shareBatch, vectorFromValues, type ColumnBatch, type ColumnVector, type ValueType } from '../columnar/index.js'
import { isHlc, makeHlc } from '../hlc/index.js'
import type { Clock, Logger, Timer } from '../runtime/index.js'
import { newRow, type Row, type SpaceDef } from '../schema/index.js'
import { crc32 } from './crc32.js'
import { FilePool } from './files.js'
import { fsyncDir, removeFiles, writeFileAtomic, writeFileDurable } from './fsutil.js'
import { hashString32, hex32, recordHash, stableHash } from './hash.js'
import { resolvePartitionOptions, type PartitionStoreOptions, type ResolvedPartitionOptions } from './options.js'
import { Segment, SegmentCorruptError, encodeSegment, segmentFileName, type SegmentMeta } from './segment.js'
import { compareVersions, type ApplyResult, type PartitionDigest, type PartitionStats, type PartitionStore, type VersionedRecord } from './types.js'
import { FRAME_HEADER_BYTES, WalFile, encodeFrame, encodePackedFrame, logWalTorn, parseWalFileName, readWalFile, walFileName } from './wal.js'
import type { PackedRecords, WalBadRegion } from './wal.js'

export const MANIFEST_FILE = 'MANIFEST'
const LOC = 4294967296
/** Rows in one batch of memtable rows (batches()). */
const MEM_BATCH_ROWS = 65_536
/** Column sets whose memtable batches are cached at once. */
const MEM_CACHE_COLUMN_SETS = 4

/** The store was closed; nothing was written. */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError'
}

/** The store's disk failed earlier; it refuses writes until reopened (recovery decides what is durable). */
export class StoreFailedError extends Error {
  override name = 'StoreFailedError'
}

interface Manifest {
  format: 1
  /** WAL files with a lower sequence number are fully contained in the segments. */
  walFrom: number
  nextSegment: number
  segments: SegmentMeta[]
  /** Set in memory only when no manifest file was found. */
  missing?: true
}

export interface RecoveryStats {
  segments: number
  segmentRows: number
  walFiles: number
  /** Records read back from the WAL (applied or found stale). */
  walRecords: number
  walBytes: number
  /** Bytes cut off WAL files as torn tails. */
  bytesTruncated: number
  /** Bad regions (one or more bad frames each) found in WAL files, not torn tails: damage. */
  corruptFrames: number
  /** Bytes of those bad regions (their records are lost on this replica). */
  corruptBytes: number
  /** Segment files found on disk but not in the manifest (a flush cut short), deleted. */
  orphanSegments: number
  ms: number
}

export interface StoreCounters {
  applyCalls: number
  applied: number
  stale: number
  walFrames: number
  walFsyncs: number
  flushes: number
  compactions: number
  /** Rows written again by compactions (write amplification: compare with `applied`). */
  rowsRewritten: number
  tombstonesPurged: number
}

export interface CompactionResult {
  segmentsIn: number
  segmentsOut: number
  rowsKept: number
  /** Dead rows (superseded versions) dropped. */
  deadDropped: number
  /** Live tombstones past the grace period dropped. */
  tombstonesPurged: number
}

type Entry = VersionedRecord | number

export interface PartitionDeps {
  clock: Clock
  log: Logger
  /** The peer's bound on open files; a store opened without one gets a pool of its own. */
  files?: FilePool
}

/** Suffix of the copy of a damaged WAL file, kept next to it (never deleted automatically). */
export const CORRUPT_COPY_SUFFIX = '.corrupt'
/** Suffix of the damage report kept beside that copy; deleting it clears the report. */
export const DAMAGE_REPORT_SUFFIX = '.corrupt.json'

/**
 * A WAL file of this partition found damaged at recovery: bad regions with good frames after them.
 * What the regions held is lost on this replica unless other replicas repair it.
 */
export interface DamageReport {
  /** The WAL file as it was (it is gone once its good records are in a segment). */
  file: string
  /** The original bytes of that file, kept for inspection. */
  copy: string
  /** This report on disk; delete it to clear the report. */
  report: string
  /** Wall-clock ms when recovery found it. */
  detectedAt: number
  format: 1 | 2
  fileBytes: number
  regions: WalBadRegion[]
  /** Good frames and their records read from the file, before and after the bad regions. */
  framesRecovered: number
  recordsRecovered: number
  /** Whether the partition has since synced with every other replica (see markRepaired). */
  repaired: boolean
  repairedAt?: number
}

/** The engine's hooks into a store (memtable budget). */
export interface StoreHooks {
  onMemtableGrowth?: () => void
}

function checkRecord (r: VersionedRecord, i: number): void {
  if (r === null || typeof r !== 'object') throw new TypeError(`records[${i}] is not a record`)
  if (typeof r.id !== 'string' || r.id.length === 0) throw new TypeError(`records[${i}].id must be a non-empty string`)
  if (!isHlc(r.version)) throw new TypeError(`records[${i}].version must be an HLC timestamp`)
  if (typeof r.deleted !== 'boolean') throw new TypeError(`records[${i}].deleted must be a boolean`)
  if (r.deleted ? r.row !== null : (r.row === null || typeof r.row !== 'object')) {
    throw new TypeError(`records[${i}].row must be ${r.deleted ? 'null for a tombstone' : 'an object'}`)
  }
}

export class LocalPartitionStore implements PartitionStore {
  private spaceDef: SpaceDef
  readonly partition: number
  readonly dir: string
  private readonly clock: Clock
  private readonly log: Logger
  private readonly opts: ResolvedPartitionOptions
  private readonly hooks: StoreHooks

  private readonly index = new Map<string, Entry>()
  /**
   * The memtable: records in the order they were applied, superseded ones included (the index
   * says which is current: `index.get(r.id) === r`). An array, not a map by id: the index already
   * finds a record by id, and a second hash map cost as much again per write.
   */
  private mem: VersionedRecord[] = []
  private memBytes = 0
  private frozen: VersionedRecord[] | undefined
  private frozenBytes = 0
  private readonly segments = new Map<number, Segment>()
  private manifest: Manifest
  private nextSegmentId: number
  private wal!: WalFile
  /** WAL files being drained after a rotation. */
  private draining: WalFile[] = []
  /** Sequence numbers of WAL files on disk (replayed, draining, active). */
  private walSeqs: number[] = []
  private liveRows = 0
  private tombstones = 0
  private readonly digests = new Map<number, Uint32Array>()
  /** Bumped by every change of the index: the memtable batch cache is valid for one generation. */
  private memGeneration = 0
  private memCacheGeneration = -1
  private readonly memCache = new Map<string, ColumnBatch[]>()
  private readonly scratch = new Uint32Array(2)

  private closed = false
  private closing: Promise<void> | undefined
  private failed: Error | undefined
  private flushing: Promise<void> | undefined
  private compacting: Promise<CompactionResult> | undefined
  /** Whether the running compaction takes every segment (and so may drop tombstones). */
  private compactingAll = false
  private manifestLock: Promise<void> = Promise.resolve()
  private timer: Timer | undefined
  private readonly files: FilePool
  private damaged: DamageReport[] = []

  readonly counters: StoreCounters = { applyCalls: 0, applied: 0, stale: 0, walFrames: 0, walFsyncs: 0, flushes: 0, compactions: 0, rowsRewritten: 0, tombstonesPurged: 0 }
  recovery!: RecoveryStats

  private constructor (deps: PartitionDeps, space: SpaceDef, partition: number, dir: string, opts: ResolvedPartitionOptions, hooks: StoreHooks, manifest: Manifest) {
    this.spaceDef = space
    this.partition = partition
    this.dir = dir
    this.clock = deps.clock
    this.log = deps.log.child({ space: space.name, uid: space.uid, partition })
    this.opts = opts
    this.hooks = hooks
    this.manifest = manifest
    this.nextSegmentId = manifest.nextSegment
    this.files = deps.files ?? new FilePool()
  }

  get space (): SpaceDef { return this.spaceDef }

  /** Opens (creating or recovering) the partition stored in `dir`. */
  static async open (deps: PartitionDeps, space: SpaceDef, partition: number, dir: string, options: PartitionStoreOptions = {}, hooks: StoreHooks = {}): Promise<LocalPartitionStore> {
    const opts = resolvePartitionOptions(options)
    const t0 = deps.clock.now()
    await mkdir(dir, { recursive: true })
    const files = deps.files ?? new FilePool()
    deps = { ...deps, files }
    const manifest = await files.run(async () => await readManifest(join(dir, MANIFEST_FILE)))
    const store = new LocalPartitionStore(deps, space, partition, dir, opts, hooks, manifest)
    await store.recover(t0)
    if (opts.compactionCheckIntervalMs > 0) store.scheduleCheck()
    return store
  }

  // ---------------------------------------------------------------------------------------------
  // Recovery

  private async recover (t0: number): Promise<void> {
    const stats: RecoveryStats = { segments: 0, segmentRows: 0, walFiles: 0, walRecords: 0, walBytes: 0, bytesTruncated: 0, corruptFrames: 0, corruptBytes: 0, orphanSegments: 0, ms: 0 }
    const names = await readdir(this.dir)
    const listed = new Set(this.manifest.segments.map(s => s.file))
    const stray: string[] = []
    let maxSegmentOnDisk = 0
    const walSeqs: number[] = []
    for (const name of names) {
      const seg = /^seg-(\d+)\.arrow$/.exec(name)
      if (seg !== null) {
        maxSegmentOnDisk = Math.max(maxSegmentOnDisk, Number(seg[1]))
        if (!listed.has(name)) { stray.push(join(this.dir, name)); stats.orphanSegments++ }
        continue
      }
      if (name === MANIFEST_FILE + '.tmp') { stray.push(join(this.dir, name)); continue }
      if (name.endsWith(DAMAGE_REPORT_SUFFIX)) { await this.loadDamageReport(join(this.dir, name)); continue }
      const seq = parseWalFileName(name)
      if (seq === undefined) continue
      if (seq < this.manifest.walFrom) stray.push(join(this.dir, name))
      else walSeqs.push(seq)
    }
    if (this.manifest.missing === true && stray.some(p => p.endsWith('.arrow') && !p.endsWith(segmentFileName(1)))) {
      // Only the very first flush can leave a segment without a manifest; more means a lost manifest.
      throw new Error(`partition directory ${this.dir} holds segment files but no ${MANIFEST_FILE}; refusing to open (it would discard them)`)
    }
    delete this.manifest.missing
    if (stats.orphanSegments > 0) this.log.info({ files: stray.filter(p => p.endsWith('.arrow')) }, 'deleting segment files not in the manifest (a flush or compaction cut short)')
    await this.files.run(async () => { await removeFiles(this.dir, stray) })
    this.nextSegmentId = Math.max(this.nextSegmentId, maxSegmentOnDisk + 1)

    for (const meta of this.manifest.segments) {
      const path = join(this.dir, meta.file)
      let bytes: Buffer
      try {
        bytes = await this.files.run(async () => await readFile(path))
      } catch (err) {
        throw new SegmentCorruptError(path, `listed in the manifest but unreadable: ${(err as Error).message}`, { cause: err })
      }
      if (bytes.length !== meta.bytes) throw new SegmentCorruptError(path, `is ${bytes.length} bytes, the manifest says ${meta.bytes}`)
      const crc = crc32(bytes)
      if (crc !== meta.crc32) throw new SegmentCorruptError(path, `CRC-32 ${crc.toString(16)} differs from the manifest's ${meta.crc32.toString(16)}`)
      const seg = Segment.decode(meta, path, bytes)
      this.segments.set(seg.id, seg)
      for (let row = 0; row < seg.rows; row++) {
        const id = seg.ids[row]!
        const cur = this.index.get(id)
        if (cur === undefined || this.winsRaw(seg.versions[row]!, seg.deleted[row] === 1, () => seg.record(row, this.spaceDef.schema), cur)) {
          this.put(id, seg.id * LOC + row, seg.versions[row]!, seg.deleted[row] === 1)
        }
      }
      stats.segments++
      stats.segmentRows += seg.rows
    }

    walSeqs.sort((a, b) => a - b)
    let newDamage = false
    for (const seq of walSeqs) {
      const path = join(this.dir, walFileName(seq))
      const r = await this.files.run(async () => await readWalFile(path, { chunkBytes: this.opts.walReadChunkBytes, maxFrameBytes: this.opts.maxFrameBytes }))
      stats.walFiles++
      stats.walRecords += r.records.length
      stats.walBytes += r.goodBytes
      if (r.corrupt.length > 0) {
        // Before anything changes the file: its original bytes, for whoever investigates.
        const copy = path + CORRUPT_COPY_SUFFIX
        await this.files.run(async () => {
          await copyFile(path, copy)
          const fh = await open(copy, 'r+')
          try { await fh.sync() } finally { await fh.close() }
        })
        const corruptBytes = r.corrupt.reduce((n, c) => n + c.bytes, 0)
        stats.corruptFrames += r.corrupt.length
        stats.corruptBytes += corruptBytes
        const report: DamageReport = {
          file: path,
          copy,
          report: path + DAMAGE_REPORT_SUFFIX,
          detectedAt: this.clock.wallNow(),
          format: r.format,
          fileBytes: r.fileBytes,
          regions: r.corrupt,
          framesRecovered: r.frames,
          recordsRecovered: r.records.length,
          repaired: false
        }
        this.damaged = [...this.damaged.filter(d => d.file !== path), report]
        newDamage = true
        this.log.error({ path, copy, regions: r.corrupt, corruptBytes, framesRecovered: r.frames, recordsRecovered: r.records.length, format: r.format },
          r.format === 1
            ? 'WRITE-AHEAD LOG CORRUPT: a bad frame in an old-format file; the frames before it are recovered, what it and the rest of the file held is lost on this replica (a copy of the file is kept)'
            : 'WRITE-AHEAD LOG CORRUPT: bad frames in the middle of the file; every good frame after them is recovered, what the bad bytes held is lost on this replica (a copy of the file is kept)')
      }
      if (r.torn !== undefined) {
        logWalTorn(this.log, path, r)
        stats.bytesTruncated += r.fileBytes - r.goodBytes
        await this.files.run(async () => {
          const fh = await open(path, 'r+')
          try {
            await fh.truncate(r.goodBytes)
            await fh.sync()
          } finally {
            await fh.close()
          }
        })
      }
      for (const rec of r.records) {
        const cur = this.index.get(rec.id)
        if (cur === undefined || this.wins(rec, cur)) {
          this.mem.push(rec)
          this.put(rec.id, rec, rec.version, rec.deleted)
        }
      }
      this.memBytes += r.goodBytes
    }
    const seq = Math.max(this.manifest.walFrom, (walSeqs[walSeqs.length - 1] ?? 0) + 1)
    this.wal = await this.openWal(seq)
    this.walSeqs = [...walSeqs, seq]
    await this.files.run(async () => { await fsyncDir(this.dir) })
    if (newDamage) {
      // The recovered records go to a segment now, and the damaged files away: read again, they
      // would be reported again (and a later write must not land behind a bad frame).
      for (const d of this.damaged) await this.saveDamageReport(d)
      await this.rotate()
    }
    stats.ms = this.clock.now() - t0
    this.recovery = stats
    if (stats.walRecords > 0 || stats.segments > 0) this.log.info({ ...stats }, 'partition recovered')
  }

  private async openWal (seq: number): Promise<WalFile> {
    return await WalFile.create(this.dir, seq, this.files, () => { this.counters.walFsyncs++ })
  }

  private async loadDamageReport (path: string): Promise<void> {
    try {
      const d = JSON.parse(await this.files.run(async () => await readFile(path, 'utf8'))) as DamageReport
      if (typeof d?.file !== 'string' || !Array.isArray(d.regions) || typeof d.repaired !== 'boolean') throw new Error('not a damage report')
      this.damaged.push({ ...d, report: path })
    } catch (err) {
      // Unreadable, it still says this partition was damaged once: keep saying so.
      this.log.error({ path, err }, 'damage report unreadable; reporting the partition damaged and unrepaired')
      const file = path.slice(0, -DAMAGE_REPORT_SUFFIX.length)
      this.damaged.push({ file, copy: file + CORRUPT_COPY_SUFFIX, report: path, detectedAt: 0, format: 2, fileBytes: 0, regions: [], framesRecovered: 0, recordsRecovered: 0, repaired: false })
    }
  }

  private async saveDamageReport (d: DamageReport): Promise<void> {
    await this.files.run(async () => { await writeFileAtomic(d.report, Buffer.from(JSON.stringify(d, null, 2) + '\n')) })
  }

  /**
   * The WAL damage this replica has had, while its report file is there (an operator clears one by
   * deleting it); each says whether other replicas have repaired it since.
   */
  damage (): DamageReport[] {
    this.damaged = this.damaged.filter(d => existsSync(d.report))
    return this.damaged.map(d => ({ ...d, regions: d.regions.map(r => ({ ...r })) }))
  }

  /** Whether this replica holds damage that no sync with the other replicas has repaired yet. */
  needsRepair (): boolean {
    return this.damage().some(d => !d.repaired)
  }

  /**
   * Records that this replica has synced with every other replica since its damage was found (so
   * it holds again whatever they held); the reports stay, marked repaired.
   */
  async markRepaired (): Promise<void> {
    const now = this.clock.wallNow()
    for (const d of this.damaged) {
      if (d.repaired) continue
      d.repaired = true
      d.repairedAt = now
      await this.saveDamageReport(d)
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Index bookkeeping

  private seg (loc: number): Segment { return this.segments.get(Math.floor(loc / LOC))! }

  private toggleDigest (id: string, version: number, deleted: boolean): void {
    if (this.digests.size === 0) return
    recordHash(id, version, deleted, this.scratch)
    const h = stableHash(id)
    for (const [n, acc] of this.digests) {
      const b = (h % n) * 2
      acc[b]! ^= this.scratch[0]!
      acc[b + 1]! ^= this.scratch[1]!
    }
  }

  private entryMeta (e: Entry): { version: number, deleted: boolean } {
    if (typeof e !== 'number') return e
    const s = this.seg(e)
    const row = e % LOC
    return { version: s.versions[row]!, deleted: s.deleted[row] === 1 }
  }

  private detach (id: string, prev: Entry): void {
    const m = this.entryMeta(prev)
    if (m.deleted) this.tombstones--
    else this.liveRows--
    this.toggleDigest(id, m.version, m.deleted)
    if (typeof prev === 'number') this.seg(prev).clearLive(prev % LOC)
  }

  /** Makes `e` the newest version of `id`. */
  private put (id: string, e: Entry, version: number, deleted: boolean): void {
    this.putOver(id, e, version, deleted, this.index.get(id))
  }

  /** put() when the caller has just looked up what the index holds for `id` (`prev`). */
  private putOver (id: string, e: Entry, version: number, deleted: boolean, prev: Entry | undefined): void {
    this.memGeneration++
    if (prev !== undefined) this.detach(id, prev)
    this.index.set(id, e)
    if (deleted) this.tombstones++
    else this.liveRows++
    this.toggleDigest(id, version, deleted)
    if (typeof e === 'number') this.seg(e).setLive(e % LOC)
  }

  /** Moves `id`'s newest version to another place holding the same (version, deleted, row). */
  private relocate (id: string, to: number): void {
    this.memGeneration++
    const prev = this.index.get(id)!
    if (typeof prev === 'number') this.seg(prev).clearLive(prev % LOC)
    this.index.set(id, to)
    this.seg(to).setLive(to % LOC)
  }

  private remove (id: string): void {
    this.memGeneration++
    const prev = this.index.get(id)
    if (prev === undefined) return
    this.detach(id, prev)
    this.index.delete(id)
  }

  /** Does a candidate (version, deleted, lazily its record) beat the held entry `cur`? */
  private winsRaw (version: number, deleted: boolean, candidate: () => VersionedRecord, cur: Entry): boolean {
    const m = this.entryMeta(cur)
    if (version !== m.version) return version > m.version
    if (deleted !== m.deleted) return deleted
    if (deleted) return false
    return compareVersions(candidate(), this.materialize(cur)) > 0
  }

  private wins (r: VersionedRecord, cur: Entry): boolean {
    if (typeof cur !== 'number') return compareVersions(r, cur) > 0
    return this.winsRaw(r.version, r.deleted, () => r, cur)
  }

  private materialize (e: Entry): VersionedRecord {
    if (typeof e === 'number') return this.seg(e).record(e % LOC, this.spaceDef.schema)
    const row = e.row
    if (row === null) return e
    // A row written before a column was added lacks it: answer it as null, like old segments.
    for (const c of this.spaceDef.schema) {
      if (row[c.name] === undefined) {
        const filled: Row = newRow()
        for (const c2 of this.spaceDef.schema) filled[c2.name] = row[c2.name] ?? null
        return { ...e, row: filled }
      }
    }
    return e
  }

  // ---------------------------------------------------------------------------------------------
  // Writes

  async apply (records: readonly VersionedRecord[], packed?: PackedRecords): Promise<ApplyResult> {
    if (this.closed) throw new StoreClosedError(`partition ${this.spaceDef.name}/${this.partition} is closed`)
    if (this.failed !== undefined) throw new StoreFailedError(`partition ${this.spaceDef.name}/${this.partition} refuses writes after a disk failure: ${this.failed.message}`, { cause: this.failed })
    for (let i = 0; i < records.length; i++) checkRecord(records[i]!, i)
    // Back-pressure: a writer outrunning the flusher waits for it rather than growing memory.
    if (this.flushing !== undefined && this.overBound(2)) await this.flushing.catch(() => {})
    if (this.closed) throw new StoreClosedError(`partition ${this.spaceDef.name}/${this.partition} is closed`)
    this.counters.applyCalls++
    // The batch's winners, in first-seen order, with what the index held for each before it
    // (looked up once here, reused by put): a record repeated in the batch replaces its earlier
    // copy in place.
    const slot = new Map<string, number>()
    const winners: VersionedRecord[] = []
    const held: Array<Entry | undefined> = []
    let applied = 0
    let stale = 0
    for (const r of records) {
      const at = slot.get(r.id)
      const cur = at !== undefined ? winners[at]! : this.index.get(r.id)
      if (cur !== undefined && !this.wins(r, cur)) { stale++; continue }
      if (at !== undefined) {
        winners[at] = r
      } else {
        slot.set(r.id, winners.length)
        winners.push(r)
        held.push(cur)
      }
      applied++
    }
    this.counters.applied += applied
    this.counters.stale += stale
    if (winners.length === 0) {
      // Nothing new, but "already held" must also mean "already durable".
      await this.barrier()
      return { applied, stale }
    }
    // Every record new and distinct: the coordinator's bytes are the frame. Otherwise (some stale
    // or repeated) only the winners are logged, encoded here; that throws before anything changed
    // if a value is unencodable.
    const frame = packed !== undefined && winners.length === records.length ? encodePackedFrame(packed) : encodeFrame(winners)
    if (frame.length - FRAME_HEADER_BYTES > this.opts.maxFrameBytes) {
      throw new RangeError(`batch encodes to ${frame.length - FRAME_HEADER_BYTES} bytes, over maxFrameBytes (${this.opts.maxFrameBytes}); split it`)
    }
    const done = this.wal.append(frame)
    this.counters.walFrames++
    for (let i = 0; i < winners.length; i++) {
      const w = winners[i]!
      this.mem.push(w)
      this.putOver(w.id, w, w.version, w.deleted, held[i])
    }
    this.memBytes += frame.length
    this.maybeFlush()
    this.hooks.onMemtableGrowth?.()
    try {
      await done
    } catch (err) {
      this.failed ??= err as Error
      this.log.error({ err }, 'write-ahead log write failed; the partition refuses writes until reopened')
      throw err
    }
    return { applied, stale }
  }

  /** Resolves when everything applied so far is durable. */
  private async barrier (): Promise<void> {
    for (const w of [...this.draining, this.wal]) await w.drain()
  }

  private overBound (factor: number): boolean {
    return this.mem.length >= this.opts.memtableMaxRows * factor || this.memBytes >= this.opts.memtableMaxBytes * factor
  }

  private maybeFlush (): void {
    if (this.flushing !== undefined || this.closed || this.failed !== undefined) return
    if (this.mem.length > 0 && this.overBound(1)) this.flush().catch(() => {})
  }

  /** Bytes of WAL behind the memtable (active and being flushed). */
  memtableBytes (): number { return this.memBytes + this.frozenBytes }
  /** Bytes of WAL behind the active memtable only (not the one being flushed). */
  activeMemtableBytes (): number { return this.memBytes }
  isFlushing (): boolean { return this.flushing !== undefined }

  /**
   * Writes the memtable to a segment now (if not empty). Resolves when the segment is durable,
   * in the manifest, and the old WAL deleted. Concurrent calls share one flush.
   */
  flush (): Promise<void> {
    this.flushing ??= this.doFlush().then(() => {
      this.flushing = undefined
      this.maybeFlush()
      this.maybeCompact()
      if (!this.closed) this.hooks.onMemtableGrowth?.()
    }, (err: unknown) => {
      this.flushing = undefined
      this.log.error({ err }, 'flush failed; the memtable and its WAL are kept')
      throw err
    })
    return this.flushing
  }

  /** Flushes, and retires every WAL file before the new one even when the memtable is empty. */
  private async rotate (): Promise<void> {
    while (this.flushing !== undefined) await this.flushing.catch(() => {})
    this.flushing = this.doFlush(true).finally(() => { this.flushing = undefined })
    await this.flushing
  }

  private async doFlush (always = false): Promise<void> {
    if ((this.mem.length === 0 && !always) || this.failed !== undefined) return
    const seq = this.walSeqs[this.walSeqs.length - 1]! + 1
    const newWal = await this.openWal(seq)
    await this.files.run(async () => { await fsyncDir(this.dir) })
    // One tick: from here on, writes go to the new WAL and the new memtable together.
    const frozen = this.mem
    const oldWal = this.wal
    this.frozen = frozen
    this.frozenBytes = this.memBytes
    this.mem = []
    this.memBytes = 0
    this.wal = newWal
    this.walSeqs.push(seq)
    this.draining.push(oldWal)
    try {
      await oldWal.drain()
      const records: VersionedRecord[] = []
      for (const r of frozen) if (this.index.get(r.id) === r) records.push(r)
      const seg = records.length > 0 ? await this.writeSegment(records) : undefined
      await this.updateManifest(m => ({ ...m, walFrom: seq, nextSegment: this.nextSegmentId, segments: seg === undefined ? m.segments : [...m.segments, seg.meta] }))
      if (seg !== undefined) {
        this.segments.set(seg.id, seg)
        // Row i of the segment is records[i]; moved unless a newer write replaced it meanwhile.
        for (let row = 0; row < seg.rows; row++) {
          const r = records[row]!
          if (this.index.get(r.id) === r) this.relocate(r.id, seg.id * LOC + row)
        }
      }
    } catch (err) {
      // Keep the frozen records in the memtable: their WAL (not yet deleted) still covers them.
      this.mem = [...frozen.filter(r => this.index.get(r.id) === r), ...this.mem]
      this.memBytes += this.frozenBytes
      this.frozen = undefined
      this.frozenBytes = 0
      throw err
    }
    this.frozen = undefined
    this.frozenBytes = 0
    this.counters.flushes++
    this.draining = this.draining.filter(w => w !== oldWal)
    await oldWal.close()
    const old = this.walSeqs.filter(s => s < seq)
    this.walSeqs = this.walSeqs.filter(s => s >= seq)
    await this.files.run(async () => { await removeFiles(this.dir, old.map(s => join(this.dir, walFileName(s)))) })
  }

  private async writeSegment (records: readonly VersionedRecord[]): Promise<Segment> {
    const id = this.nextSegmentId++
    const bytes = encodeSegment(this.spaceDef.schema, records)
    const file = segmentFileName(id)
    const path = join(this.dir, file)
    await this.files.run(async () => { await writeFileDurable(path, bytes) })
    return Segment.decode({ id, file, rows: records.length, bytes: bytes.length, crc32: crc32(bytes) }, path, bytes)
  }

  private updateManifest (change: (m: Manifest) => Manifest): Promise<void> {
    const run = this.manifestLock.then(async () => {
      const next = change(this.manifest)
      await this.files.run(async () => { await writeFileAtomic(join(this.dir, MANIFEST_FILE), Buffer.from(JSON.stringify(next))) })
      this.manifest = next
    })
    this.manifestLock = run.catch(() => {})
    return run
  }

  // ---------------------------------------------------------------------------------------------
  // Compaction

  private tombstoneHorizon (): number {
    return makeHlc(Math.max(0, this.clock.wallNow() - this.opts.tombstoneGraceMs), 0)
  }

  /** Whether the compaction policy asks for a run now (of either kind, see compactionPlan). */
  compactionDue (): boolean {
    return this.compactionPlan() !== undefined
  }

  /**
   * What the policy asks for: a full compaction when tombstones have expired or too much of the
   * segments is dead (only a run over every segment may drop a tombstone: an older version of its
   * id in a segment left out would come back at the next recovery); else, past
   * compactionMaxSegments, a merge of one size tier (size-tiered compaction, as Cassandra's
   * default): segments of similar size merge into one about four times larger, so a row is
   * rewritten about once per tier (log4 of the partition over the flush size) rather than at every
   * merge, as it would be if each merge took every segment.
   */
  private compactionPlan (): Segment[] | undefined {
    if (this.segments.size === 0) return undefined
    if (this.fullCompactionDue()) return [...this.segments.values()]
    if (this.segments.size <= this.opts.compactionMaxSegments) return undefined
    return sizeTier([...this.segments.values()])
  }

  private fullCompactionDue (): boolean {
    let rows = 0
    let live = 0
    const horizon = this.tombstoneHorizon()
    for (const s of this.segments.values()) {
      rows += s.rows
      live += s.liveCount
      if (s.liveTombstones > 0 && s.oldestTombstone < horizon) return true
    }
    return rows > 0 && (rows - live) / rows > this.opts.compactionDeadRatio
  }

  private maybeCompact (): void {
    if (this.compacting !== undefined || this.closed || this.failed !== undefined) return
    const plan = this.compactionPlan()
    if (plan !== undefined) this.runCompaction(plan).catch(() => {})
  }

  private scheduleCheck (): void {
    this.timer = this.clock.setTimer(this.opts.compactionCheckIntervalMs, () => {
      if (this.closed) return
      this.maybeCompact()
      this.scheduleCheck()
    })
  }

  /**
   * Merges every segment into one, dropping dead rows and tombstones older than the grace period
   * (by their HLC's physical time against clock.wallNow()). Safe under concurrent apply():
   * writes landing meanwhile win over the rows being copied, decided again at the swap.
   */
  async compact (): Promise<CompactionResult> {
    // A background merge of one tier may be running: this call asks for every segment.
    while (this.compacting !== undefined && !this.compactingAll) await this.compacting.catch(() => {})
    return await this.runCompaction(undefined)
  }

  /** Runs one compaction of `inputs` (every segment when undefined); a call while one runs shares it. */
  private runCompaction (inputs: Segment[] | undefined): Promise<CompactionResult> {
    if (this.compacting !== undefined) return this.compacting
    const segments = inputs ?? [...this.segments.values()]
    this.compactingAll = segments.length === this.segments.size
    this.compacting = this.doCompact(segments).then(r => {
      this.compacting = undefined
      return r
    }, (err: unknown) => {
      this.compacting = undefined
      this.log.error({ err }, 'compaction failed; the old segments are kept')
      throw err
    })
    return this.compacting
  }

  private async doCompact (inputs: Segment[]): Promise<CompactionResult> {
    const result: CompactionResult = { segmentsIn: inputs.length, segmentsOut: 0, rowsKept: 0, deadDropped: 0, tombstonesPurged: 0 }
    if (inputs.length === 0) return result
    // Tombstones may go only when every segment is merged (see compactionPlan).
    const horizon = inputs.length === this.segments.size ? this.tombstoneHorizon() : -1
    const keep: number[] = []
    const purge: number[] = []
    for (const s of inputs) {
      result.deadDropped += s.rows - s.liveCount
      for (let row = 0; row < s.rows; row++) {
        if (!s.isLive(row)) continue
        const loc = s.id * LOC + row
        if (s.deleted[row] === 1 && s.versions[row]! < horizon) purge.push(loc)
        else keep.push(loc)
      }
    }
    if (inputs.length === 1 && purge.length === 0 && keep.length === inputs[0]!.rows) {
      return { ...result, segmentsOut: 1, rowsKept: keep.length }
    }
    const records = keep.map(loc => this.seg(loc).record(loc % LOC, this.spaceDef.schema))
    const merged = records.length > 0 ? await this.writeSegment(records) : undefined
    this.counters.rowsRewritten += records.length
    const dropped = new Set(inputs.map(s => s.id))
    await this.updateManifest(m => ({
      ...m,
      nextSegment: this.nextSegmentId,
      segments: [...m.segments.filter(x => !dropped.has(x.id)), ...(merged === undefined ? [] : [merged.meta])]
    }))
    // The swap, in one tick: rows still newest move to the merged segment; the rest stay dropped.
    if (merged !== undefined) {
      this.segments.set(merged.id, merged)
      for (let j = 0; j < keep.length; j++) {
        if (this.index.get(merged.ids[j]!) === keep[j]) this.relocate(merged.ids[j]!, merged.id * LOC + j)
      }
    }
    for (const loc of purge) {
      const id = this.seg(loc).ids[loc % LOC]!
      if (this.index.get(id) === loc) {
        this.remove(id)
        result.tombstonesPurged++
      }
    }
    for (const s of inputs) this.segments.delete(s.id)
    result.segmentsOut = merged === undefined ? 0 : 1
    result.rowsKept = merged === undefined ? 0 : merged.liveCount
    this.counters.compactions++
    this.counters.tombstonesPurged += result.tombstonesPurged
    await this.files.run(async () => { await removeFiles(this.dir, inputs.map(s => s.path)) })
    this.log.debug({ ...result }, 'compacted')
    return result
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  async get (id: string): Promise<VersionedRecord | undefined> {
    const e = this.index.get(id)
    return e === undefined ? undefined : this.materialize(e)
  }

  async * scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    const size = Math.max(1, opts.batchRecords ?? 1000)
    const tombstones = opts.includeTombstones ?? true
    let batch: VersionedRecord[] = []
    // Map iterators survive concurrent changes; each entry is read as it is now (newest version).
    for (const [id] of this.index) {
      const e = this.index.get(id)
      if (e === undefined) continue
      const r = this.materialize(e)
      if (r.deleted && !tombstones) continue
      batch.push(r)
      if (batch.length >= size) {
        yield batch
        batch = []
      }
    }
    if (batch.length > 0) yield batch
  }

  /**
   * The live rows as column batches (PartitionStore.batches): one batch per segment holding live
   * rows (the segment's cached columns themselves when every row of it is live, else the live
   * rows gathered from them), then the memtable's in batches of at most 64k rows.
   *
   * The snapshot is taken here, in one synchronous step: which rows of which segments are live
   * (live bit set, not a tombstone; the bits follow `index`, so each id is live in exactly one
   * place) and which memtable records (active or being flushed) are still the newest of their
   * id. The vectors are built as the result is iterated; segments are immutable and memtable
   * records never change, so even a caller that awaits between batches (a flush, a compaction or
   * writes running meanwhile) gets the rows of the moment of the call, each id once.
   */
  batches (columns: readonly string[]): AsyncIterable<ColumnBatch> {
    const snapshot = this.batchesNow(columns)
    return (async function * () { yield * snapshot })()
  }

  /** The snapshot of batches(), taken synchronously (see there). */
  private batchesNow (columns: readonly string[]): Iterable<ColumnBatch> {
    const schema = this.spaceDef.schema
    const cols: Array<{ name: string, type: ValueType }> = []
    for (const name of new Set(columns)) cols.push({ name, type: schema.find(c => c.name === name)?.type ?? 'null' })
    const parts: Array<{ seg: Segment, rows: Uint32Array | undefined }> = []
    for (const s of this.segments.values()) {
      const n = s.liveCount - s.liveTombstones
      if (n === 0) continue
      parts.push({ seg: s, rows: n === s.rows ? undefined : s.liveRowNumbers(n) })
    }
    return columnBatches(parts, this.memtableBatches(cols), cols)
  }

  /**
   * The memtable's live rows as column batches, cached until the index changes (a write, a
   * flush, a purge): converting row objects to columns costs about a microsecond a row, and a
   * query that runs again on an unchanged memtable should not pay it again. A few column sets are
   * kept, most recently used last.
   */
  private memtableBatches (cols: ReadonlyArray<{ name: string, type: ValueType }>): ColumnBatch[] {
    const key = cols.map(c => `${c.name}:${c.type}`).join(',')
    if (this.memCacheGeneration !== this.memGeneration) {
      this.memCache.clear()
      this.memCacheGeneration = this.memGeneration
    }
    let cached = this.memCache.get(key)
    if (cached !== undefined) {
      this.memCache.delete(key)
      this.memCache.set(key, cached)
      return cached
    }
    const memRows: Row[] = []
    for (const m of [this.frozen, this.mem]) {
      if (m === undefined) continue
      for (const r of m) if (!r.deleted && this.index.get(r.id) === r) memRows.push(r.row!)
    }
    cached = []
    for (let i = 0; i < memRows.length; i += MEM_BATCH_ROWS) cached.push(shareBatch(rowsBatch(memRows.slice(i, i + MEM_BATCH_ROWS), cols)))
    this.memCache.set(key, cached)
    while (this.memCache.size > MEM_CACHE_COLUMN_SETS) this.memCache.delete(this.memCache.keys().next().value!)
    return cached
  }

  private digestAccumulator (buckets: number): Uint32Array {
    let acc = this.digests.get(buckets)
    if (acc !== undefined) {
      // Most recently used last.
      this.digests.delete(buckets)
      this.digests.set(buckets, acc)
      return acc
    }
    acc = new Uint32Array(buckets * 2)
    for (const [id, e] of this.index) {
      const m = this.entryMeta(e)
      recordHash(id, m.version, m.deleted, this.scratch)
      const b = (stableHash(id) % buckets) * 2
      acc[b]! ^= this.scratch[0]!
      acc[b + 1]! ^= this.scratch[1]!
    }
    this.digests.set(buckets, acc)
    while (this.digests.size > Math.max(1, this.opts.digestCacheSize)) this.digests.delete(this.digests.keys().next().value!)
    return acc
  }

  digest (buckets = 64): PartitionDigest {
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > 1 << 20) throw new RangeError(`buckets must be an integer from 1 to ${1 << 20}, got ${buckets}`)
    const acc = this.digestAccumulator(buckets)
    const hashes = new Array<string>(buckets)
    for (let b = 0; b < buckets; b++) hashes[b] = hex32(acc[b * 2]!) + hex32(acc[b * 2 + 1]!)
    const all = hashes.join('')
    const root = hex32(hashString32(all, 0x3c6ef372)) + hex32(hashString32(all, 0xa54ff53a))
    return { buckets, hashes, root, records: this.index.size }
  }

  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a positive integer, got ${buckets}`)
    if (!Number.isInteger(index) || index < 0 || index >= buckets) throw new RangeError(`bucket ${index} is not in 0..${buckets - 1}`)
    const out: VersionedRecord[] = []
    for (const [id, e] of this.index) if (stableHash(id) % buckets === index) out.push(this.materialize(e))
    return out
  }

  stats (): PartitionStats {
    let diskBytes = 0
    for (const s of this.segments.values()) diskBytes += s.meta.bytes
    let walBytes = this.wal.size
    for (const w of this.draining) walBytes += w.size
    // Replayed WAL files not yet rotated away are counted in memBytes' share.
    walBytes = Math.max(walBytes, this.memBytes + this.frozenBytes)
    return {
      liveRows: this.liveRows,
      tombstones: this.tombstones,
      memtableRows: this.mem.length + (this.frozen?.length ?? 0),
      segments: this.segments.size,
      walBytes,
      diskBytes: diskBytes + walBytes
    }
  }

  /**
   * Takes a new definition of the same space. Only appending nullable columns is allowed (the one
   * schema change a live space accepts): old segments and memtable rows read them as null.
   */
  updateSchema (space: SpaceDef): void {
    if (space.uid !== this.spaceDef.uid) throw new Error(`space uid ${space.uid} is not this store's (${this.spaceDef.uid})`)
    const old = this.spaceDef.schema
    const next = space.schema
    if (next.length < old.length) throw new Error(`schema of ${space.name} lost columns (${old.length} → ${next.length})`)
    for (let i = 0; i < old.length; i++) {
      const a = old[i]!
      const b = next[i]!
      if (a.name !== b.name || a.type !== b.type) throw new Error(`schema of ${space.name} changed column ${i} (${a.name}:${a.type} → ${b.name}:${b.type}); only adding nullable columns is allowed`)
    }
    for (let i = old.length; i < next.length; i++) {
      if (!next[i]!.nullable) throw new Error(`column ${next[i]!.name} added to ${space.name} must be nullable`)
    }
    this.spaceDef = space
  }

  /** Waits for in-flight writes, flushes and compactions, then closes the files. Idempotent. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true
      this.timer?.cancel()
      await this.flushing?.catch(() => {})
      await this.compacting?.catch(() => {})
      await this.manifestLock
      for (const w of [...this.draining, this.wal]) await w.close()
    })()
    return this.closing
  }

  isClosed (): boolean { return this.closed }
}

function * columnBatches (parts: ReadonlyArray<{ seg: Segment, rows: Uint32Array | undefined }>, memBatches: readonly ColumnBatch[], cols: ReadonlyArray<{ name: string, type: ValueType }>): Generator<ColumnBatch> {
  for (const { seg, rows } of parts) {
    const columns = new Map<string, ColumnVector>()
    for (const c of cols) {
      const v = seg.column(c.name, c.type)
      columns.set(c.name, rows === undefined ? v : gather(v, rows))
    }
    yield { length: rows === undefined ? seg.rows : rows.length, columns }
  }
  yield * memBatches
}

/**
 * batchFromRows (columnar) for memtable rows: a row written before a column was added lacks it
 * (NULL), and a column named like an Object.prototype member is read as an own key only.
 */
function rowsBatch (rows: readonly Row[], cols: ReadonlyArray<{ name: string, type: ValueType }>): ColumnBatch {
  const columns = new Map<string, ColumnVector>()
  const vals = new Array<unknown>(rows.length)
  for (const c of cols) {
    const name = c.name
    if (name in Object.prototype) {
      for (let i = 0; i < rows.length; i++) vals[i] = Object.hasOwn(rows[i]!, name) ? rows[i]![name] : null
    } else {
      for (let i = 0; i < rows.length; i++) vals[i] = rows[i]![name]
    }
    columns.set(name, vectorFromValues(c.type, vals))
  }
  return { length: rows.length, columns }
}

async function readManifest (path: string): Promise<Manifest> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { format: 1, walFrom: 0, nextSegment: 1, segments: [], missing: true }
    throw err
  }
  let m: Manifest
  try {
    m = JSON.parse(text) as Manifest
  } catch (err) {
    throw new Error(`manifest ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (m === null || typeof m !== 'object' || m.format !== 1 || !Array.isArray(m.segments) || typeof m.walFrom !== 'number') {
    throw new Error(`manifest ${path} is not a shoal manifest (format 1)`)
  }
  return m
}

/** Removes a partition directory entirely (dropSpace). */
export async function removeDir (dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

export async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const name of await readdir(dir)) total += (await stat(join(dir, name))).size
  return total
}

/** Segments this many times larger than the smallest of a tier still belong to it. */
const TIER_FACTOR = 4
/** Segments a tier needs before it is merged. */
const TIER_MIN_SEGMENTS = 4

/**
 * The segments to merge next: the smallest tier (a run of segments, by rows ascending, each at
 * most TIER_FACTOR times the tier's smallest) with at least TIER_MIN_SEGMENTS members; failing
 * that, the TIER_MIN_SEGMENTS smallest segments (a bounded amount of work that still lowers the
 * count).
 */
export function sizeTier<T extends { rows: number }> (segments: readonly T[]): T[] {
  const sorted = [...segments].sort((a, b) => a.rows - b.rows)
  for (let i = 0; i < sorted.length; i++) {
    const limit = Math.max(1, sorted[i]!.rows) * TIER_FACTOR
    let j = i
    while (j < sorted.length && sorted[j]!.rows <= limit) j++
    if (j - i >= TIER_MIN_SEGMENTS) return sorted.slice(i, j)
  }
  return sorted.slice(0, Math.min(TIER_MIN_SEGMENTS, sorted.length))
}
