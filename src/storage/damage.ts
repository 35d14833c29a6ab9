/**
 * Damage of a partition replica, reported until an operator deletes the report:
 *
 * - WAL damage: a bad frame that is not a torn tail (good frames after it), where acknowledged
 *   writes were. Recovery keeps the file's original bytes as `<file>.corrupt` and a report beside
 *   it as `<file>.corrupt.json`.
 * - Segment damage: a segment file (`seg-N.arrow` or `seg-N.idx`) that fails its checks, at open
 *   (a bad or truncated file) or when a read meets a bad block (a column buffer, a key-index
 *   block: CRC-checked, segment-file.ts and key-index.ts). The read fails naming the file; the
 *   report is `<file>.corrupt.json` beside it, one per file however many reads fail. Rows there
 *   cannot be read, and digests (ids and versions only) would not show it, so replication
 *   rebuilds such a replica from the other replicas rather than syncing it: the partition's
 *   directory is moved aside whole (`movedAside`) and a fresh one opened, carrying the report.
 *
 * While an unrepaired report is there, needsRepair() holds: replication keeps the replica out of
 * service until it has synced with every other replica (markRepaired), and health reports the
 * loss. Reports outlive restarts (the damaged WAL file itself is gone once its good records are
 * in a segment; a rebuilt replica's files are elsewhere).
 */
import { basename, dirname, join } from 'node:path'
import type { Clock, FileSystem, Logger } from '../runtime/index.js'
import type { FilePool } from './files.js'
import { readTextFile, writeFileAtomic } from './fsutil.js'
import { KeyIndexCorruptError } from './key-index.js'
import { SegmentCorruptError } from './segment.js'
import type { WalBadRegion, WalReadResult } from './wal.js'

/** Suffix of the copy of a damaged WAL file, kept next to it (never deleted automatically). */
export const CORRUPT_COPY_SUFFIX = '.corrupt'
/** Suffix of a damage report (beside the damaged file, or carried into a rebuilt replica); deleting it clears the report. */
export const DAMAGE_REPORT_SUFFIX = '.corrupt.json'

/**
 * A WAL file of this partition found damaged at recovery: bad regions with good frames after them.
 * What the regions held is lost on this replica unless other replicas repair it.
 */
export interface WalDamageReport {
  kind: 'wal'
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
  /** Where the partition's directory was moved when the replica was rebuilt (the copy is there now). */
  movedTo?: string
  /** Whether the partition has since synced with every other replica (see markRepaired). */
  repaired: boolean
  repairedAt?: number
}

/**
 * A segment file of this partition that failed its checks: at open (a bad or truncated file,
 * its index unreadable) or at a read (a column buffer or key-index block whose CRC or structure
 * is wrong). What it holds cannot be read on this replica.
 */
export interface SegmentDamageReport {
  kind: 'segment'
  /** The damaged file (`seg-N.arrow` or `seg-N.idx`), where it was found. */
  file: string
  /** The record batch and column whose block failed, when a column block did. */
  batch?: number
  column?: string
  /** Byte offset in the file of the part that failed, when known (a key-index block). */
  offset?: number
  /** What is wrong, as the failed read said it. */
  reason: string
  /** This report on disk; delete it to clear the report. */
  report: string
  /** Wall-clock ms of the first read (or open) that found it. */
  detectedAt: number
  /**
   * Where the partition's directory, the damaged file with it, was moved when the replica was
   * rebuilt from the other replicas (kept for inspection; nothing there is deleted
   * automatically). Absent while the damaged file is still in service (no other replica).
   */
  movedTo?: string
  /** Whether the rebuilt replica has since synced with every other replica (see markRepaired). */
  repaired: boolean
  repairedAt?: number
}

export type DamageReport = WalDamageReport | SegmentDamageReport

/** A segment read or open that failed its checks, as a report names it. */
export interface SegmentCorruption {
  file: string
  batch?: number
  column?: string
  offset?: number
  reason: string
  /** The error itself. */
  error: Error
}

/**
 * The segment corruption behind `err` (a SegmentCorruptError, of a whole file or of one column
 * block, or a KeyIndexCorruptError), possibly wrapped as a `cause`; undefined for any other
 * failure (a closed store, a full disk: not damage). Matched by class or name, never by message.
 */
export function segmentCorruption (err: unknown): SegmentCorruption | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof KeyIndexCorruptError || e.name === 'KeyIndexCorruptError') {
      const k = e as KeyIndexCorruptError
      return { file: k.path, offset: k.offset, reason: k.reason, error: e }
    }
    if (e instanceof SegmentCorruptError || e.name === 'SegmentCorruptError') {
      const s = e as SegmentCorruptError & { batch?: unknown, column?: unknown }
      return {
        file: s.path,
        ...(typeof s.batch === 'number' ? { batch: s.batch } : {}),
        ...(typeof s.column === 'string' ? { column: s.column } : {}),
        reason: s.message,
        error: e
      }
    }
  }
  return undefined
}

/** Whether `err` is (or wraps) a segment file or block that failed its checks. */
export function isSegmentCorruption (err: unknown): boolean { return segmentCorruption(err) !== undefined }

/** A report file's content, checked; undefined when it is not one. */
function parseReport (text: string, path: string): DamageReport | undefined {
  const d = JSON.parse(text) as Partial<DamageReport> & { kind?: string }
  if (typeof d?.file !== 'string' || typeof d.repaired !== 'boolean') return undefined
  if (d.kind === 'segment') {
    const s = d as SegmentDamageReport
    if (typeof s.reason !== 'string') return undefined
    return { ...s, report: path }
  }
  // Reports written before segment damage was reported carry no kind: WAL ones.
  const w = d as WalDamageReport
  if (d.kind !== undefined && d.kind !== 'wal') return undefined
  if (!Array.isArray(w.regions)) return undefined
  return { ...w, kind: 'wal', report: path }
}

export class DamageLog {
  private damaged: DamageReport[] = []
  /** Reports not yet written to their file (list() keeps them although no file is there yet). */
  private readonly unsaved = new Set<DamageReport>()
  /** The writes of new segment reports, one after another. */
  private saving: Promise<void> = Promise.resolve()

  constructor (private readonly fs: FileSystem, private readonly files: FilePool, private readonly clock: Clock, private readonly log: Logger) {}

  /** Takes up a report found on disk at recovery (an unreadable one still says "damaged"). */
  async load (path: string): Promise<void> {
    let d: DamageReport | undefined
    try {
      d = parseReport(await this.files.run(async () => await readTextFile(this.fs, path)), path)
      if (d === undefined) throw new Error('not a damage report')
    } catch (err) {
      // Unreadable, it still says this partition was damaged once: keep saying so.
      this.log.error({ path, err }, 'damage report unreadable; reporting the partition damaged and unrepaired')
      const file = path.slice(0, -DAMAGE_REPORT_SUFFIX.length)
      d = /^wal-/.test(basename(file))
        ? { kind: 'wal', file, copy: file + CORRUPT_COPY_SUFFIX, report: path, detectedAt: 0, format: 2, fileBytes: 0, regions: [], framesRecovered: 0, recordsRecovered: 0, repaired: false }
        : { kind: 'segment', file, reason: 'the damage report is unreadable', report: path, detectedAt: 0, repaired: false }
    }
    this.damaged.push(d)
  }

  /**
   * Records the damage recovery found reading the WAL file at `path` (`r.corrupt` not empty):
   * copies the file as it is first (before anything changes it, for whoever investigates), then
   * holds the report (written by saveAll, once recovery has finished reading). Returns the bytes
   * of the bad regions.
   */
  async found (path: string, r: WalReadResult): Promise<number> {
    const copy = path + CORRUPT_COPY_SUFFIX
    await this.files.run(async () => {
      await this.fs.copyFile(path, copy)
      const fh = await this.fs.open(copy, 'r+')
      try { await fh.sync() } finally { await fh.close() }
    })
    const corruptBytes = r.corrupt.reduce((n, c) => n + c.bytes, 0)
    const report: WalDamageReport = {
      kind: 'wal',
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
    this.log.error({ path, copy, regions: r.corrupt, corruptBytes, framesRecovered: r.frames, recordsRecovered: r.records.length, format: r.format },
      r.format === 1
        ? 'WRITE-AHEAD LOG CORRUPT: a bad frame in an old-format file; the frames before it are recovered, what it and the rest of the file held is lost on this replica (a copy of the file is kept)'
        : 'WRITE-AHEAD LOG CORRUPT: bad frames in the middle of the file; every good frame after them is recovered, what the bad bytes held is lost on this replica (a copy of the file is kept)')
    return corruptBytes
  }

  /**
   * Records a segment file found damaged (`c`), once per file: true when this is the first
   * report of that file (the caller then takes the replica out of service), false when one is
   * held already (the failed read is the same damage met again). The report is held at once (so
   * needsRepair() holds from this tick) and written to its file in the background (settled()).
   */
  segmentFound (c: SegmentCorruption): boolean {
    if (this.damaged.some(d => d.file === c.file)) return false
    const report: SegmentDamageReport = {
      kind: 'segment',
      file: c.file,
      ...(c.batch !== undefined ? { batch: c.batch } : {}),
      ...(c.column !== undefined ? { column: c.column } : {}),
      ...(c.offset !== undefined ? { offset: c.offset } : {}),
      reason: c.reason,
      report: c.file + DAMAGE_REPORT_SUFFIX,
      detectedAt: this.clock.wallNow(),
      repaired: false
    }
    this.damaged.push(report)
    this.unsaved.add(report)
    this.log.error({ file: c.file, batch: c.batch, column: c.column, offset: c.offset, reason: c.reason, report: report.report },
      'SEGMENT FILE CORRUPT: a block of this partition\'s segment failed its check; reads that meet it fail naming the file, and the replica is repaired from the other replicas (or, with none, serves the rows it can still read)')
    this.saving = this.saving.then(async () => { await this.save(report) }).catch((err: unknown) => {
      this.log.error({ err, report: report.report }, 'writing a segment damage report failed; the damage is reported until this peer restarts')
    }).finally(() => { this.unsaved.delete(report) })
    return true
  }

  /** Resolves when every report held is written (or its write failed, logged). */
  async settled (): Promise<void> { await this.saving }

  /** Writes every report held to its file. */
  async saveAll (): Promise<void> {
    for (const d of this.damaged) await this.save(d)
  }

  private async save (d: DamageReport): Promise<void> {
    await this.files.run(async () => { await writeFileAtomic(this.fs, d.report, Buffer.from(JSON.stringify(d, null, 2) + '\n')) })
  }

  /** The reports whose file is still there (an operator clears one by deleting it), as copies. */
  list (): DamageReport[] {
    this.damaged = this.damaged.filter(d => this.unsaved.has(d) || this.fs.existsSync(d.report))
    return this.damaged.map(d => d.kind === 'wal' ? { ...d, regions: d.regions.map(r => ({ ...r })) } : { ...d })
  }

  /**
   * The segment files found damaged that are still this replica's (not moved aside by a
   * rebuild): compaction leaves them out, reads that meet their bad blocks keep failing.
   */
  unreadableFiles (): Set<string> {
    const out = new Set<string>()
    for (const d of this.damaged) if (d.kind === 'segment' && d.movedTo === undefined) out.add(d.file)
    return out
  }

  /** Marks every report repaired (the partition has synced with every other replica since). */
  async markRepaired (): Promise<void> {
    await this.settled()
    const now = this.clock.wallNow()
    for (const d of this.damaged) {
      if (d.repaired) continue
      d.repaired = true
      d.repairedAt = now
      await this.save(d)
    }
  }
}

/** The damage reports in a partition directory (those unreadable as reports are left out, logged). */
export async function readDamageReports (fs: FileSystem, dir: string, log: Logger): Promise<DamageReport[]> {
  const out: DamageReport[] = []
  for (const name of (await fs.readdir(dir)).sort()) {
    if (!name.endsWith(DAMAGE_REPORT_SUFFIX)) continue
    const path = join(dir, name)
    try {
      const d = parseReport(await readTextFile(fs, path), path)
      if (d !== undefined) out.push(d)
    } catch (err) {
      log.warn({ path, err }, 'damage report unreadable')
    }
  }
  return out
}

/**
 * Moves a damaged partition's directory `dir` aside to `aside` (kept whole for inspection:
 * nothing is deleted) and starts a fresh, empty `dir` carrying its unrepaired reports, so that
 * the replica opened there still needs repair (and syncs with every other replica before it
 * serves). A carried report names the files where they are now, says where the directory went
 * (`movedTo`), and is named after it in the fresh directory (`<aside name>-<report name>`, which
 * no segment or WAL file of the fresh replica can be named). Returns the reports carried.
 */
export async function moveAside (fs: FileSystem, dir: string, aside: string, log: Logger): Promise<DamageReport[]> {
  const reports = (await readDamageReports(fs, dir, log)).filter(d => !d.repaired)
  await fs.rename(dir, aside)
  await fs.syncDir(dirname(dir))
  await fs.mkdir(dir)
  const here = (p: string): string => dirname(p) === dir ? join(aside, basename(p)) : p
  const carried: DamageReport[] = []
  for (const d of reports) {
    // A report carried before keeps its name and what it says (the first move is where its files are).
    const name = d.movedTo !== undefined ? basename(d.report) : `${basename(aside)}-${basename(d.report)}`
    const moved: DamageReport = d.movedTo !== undefined
      ? { ...d, report: join(dir, name) }
      : d.kind === 'wal'
        ? { ...d, file: here(d.file), copy: here(d.copy), movedTo: aside, report: join(dir, name) }
        : { ...d, file: here(d.file), movedTo: aside, report: join(dir, name) }
    await writeFileAtomic(fs, moved.report, Buffer.from(JSON.stringify(moved, null, 2) + '\n'))
    carried.push(moved)
  }
  await fs.syncDir(dir)
  // The fresh directory's own entry in its parent (a power cut must not lose it with what it carries).
  await fs.syncDir(dirname(dir))
  return carried
}
