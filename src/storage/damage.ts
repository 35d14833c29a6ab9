/**
 * WAL damage of a partition: a bad frame that is not a torn tail (good frames after it), where
 * acknowledged writes were. Recovery keeps the file's original bytes as `<file>.corrupt` and a
 * report beside it as `<file>.corrupt.json`; while that report is there, damage() answers it, so
 * replication keeps the replica out of service until the other replicas have repaired it
 * (markRepaired) and health reports the loss. The report outlives restarts because the damaged
 * file itself is gone once its good records are in a segment.
 */
import { existsSync } from 'node:fs'
import { copyFile, open, readFile } from 'node:fs/promises'
import type { Clock, Logger } from '../runtime/index.js'
import type { FilePool } from './files.js'
import { writeFileAtomic } from './fsutil.js'
import type { WalBadRegion, WalReadResult } from './wal.js'

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

export class DamageLog {
  private damaged: DamageReport[] = []

  constructor (private readonly files: FilePool, private readonly clock: Clock, private readonly log: Logger) {}

  /** Takes up a report found on disk at recovery (an unreadable one still says "damaged"). */
  async load (path: string): Promise<void> {
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

  /**
   * Records the damage recovery found reading the WAL file at `path` (`r.corrupt` not empty):
   * copies the file as it is first (before anything changes it, for whoever investigates), then
   * holds the report (written by saveAll, once recovery has finished reading). Returns the bytes
   * of the bad regions.
   */
  async found (path: string, r: WalReadResult): Promise<number> {
    const copy = path + CORRUPT_COPY_SUFFIX
    await this.files.run(async () => {
      await copyFile(path, copy)
      const fh = await open(copy, 'r+')
      try { await fh.sync() } finally { await fh.close() }
    })
    const corruptBytes = r.corrupt.reduce((n, c) => n + c.bytes, 0)
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
    this.log.error({ path, copy, regions: r.corrupt, corruptBytes, framesRecovered: r.frames, recordsRecovered: r.records.length, format: r.format },
      r.format === 1
        ? 'WRITE-AHEAD LOG CORRUPT: a bad frame in an old-format file; the frames before it are recovered, what it and the rest of the file held is lost on this replica (a copy of the file is kept)'
        : 'WRITE-AHEAD LOG CORRUPT: bad frames in the middle of the file; every good frame after them is recovered, what the bad bytes held is lost on this replica (a copy of the file is kept)')
    return corruptBytes
  }

  /** Writes every report held to its file. */
  async saveAll (): Promise<void> {
    for (const d of this.damaged) await this.save(d)
  }

  private async save (d: DamageReport): Promise<void> {
    await this.files.run(async () => { await writeFileAtomic(d.report, Buffer.from(JSON.stringify(d, null, 2) + '\n')) })
  }

  /** The reports whose file is still there (an operator clears one by deleting it), as copies. */
  list (): DamageReport[] {
    this.damaged = this.damaged.filter(d => existsSync(d.report))
    return this.damaged.map(d => ({ ...d, regions: d.regions.map(r => ({ ...r })) }))
  }

  /** Marks every report repaired (the partition has synced with every other replica since). */
  async markRepaired (): Promise<void> {
    const now = this.clock.wallNow()
    for (const d of this.damaged) {
      if (d.repaired) continue
      d.repaired = true
      d.repairedAt = now
      await this.save(d)
    }
  }
}
