/**
 * The repair record of a partition replica: what anti-entropy has established about this copy
 * against the other replicas of its partition, kept in the file `REPAIR` of the partition's
 * directory (JSON, replaced atomically) because two safety rules depend on it across restarts
 * (issue 13, tombstone resurrection; docs/consistency.md, "Deletes and tombstones"):
 *
 * - **Purging.** A full compaction drops a tombstone only below `purgeHorizon`: older than
 *   `tombstoneGraceMs` AND older than `repairedTo`, the start of the last repair this replica
 *   completed with every other replica of the partition (ScyllaDB's repair-mode tombstone GC).
 *   Every replica then holds the tombstone or something newer, so no copy can bring the row
 *   back. Before any such repair (`repairedTo` 0) nothing is purged.
 * - **Staleness.** A replica that holds rows and has not synced with another replica, nor
 *   completed a repair, since before that replica's purge horizon may hold rows whose tombstones
 *   were purged there: replication compares `since`, `repairedTo` and `synced` with the other
 *   replica's horizon and rebuilds such a copy instead of pushing its old rows (src/replication/
 *   repair.ts).
 *
 * Storage keeps the record and purges by it; replication decides what goes in it.
 */
import { join } from 'node:path'
import { makeHlc, type Hlc } from '../hlc/index.js'
import type { Clock, FileSystem, Logger } from '../runtime/index.js'
import type { FilePool } from './files.js'
import { readTextFile, writeFileAtomic } from './fsutil.js'

export const REPAIR_FILE = 'REPAIR'

/**
 * Peers remembered in `synced`. Count, default 64: a partition has R replicas plus the few that
 * held it during ownership moves; the oldest entries go first.
 */
export const MAX_SYNCED_PEERS = 64

export interface RepairRecord {
  /**
   * Since when this replica's syncs are recorded (HLC): when its directory was created, or 0 for
   * a replica that held rows before it kept this record (nothing is known of it: as stale as can be).
   */
  since: Hlc
  /** Start (HLC) of the last anti-entropy repair completed with every other replica; 0: none yet. */
  repairedTo: Hlc
  /** Per peer id: start (HLC) of the last complete two-way sync this replica ran with it. */
  synced: Readonly<Record<string, Hlc>>
}

export interface RepairUpdate {
  /** A complete two-way sync with `peer`, started at `syncedAt`. */
  peer?: string
  syncedAt?: Hlc
  /** A repair with every other replica, started at `repairedTo`. */
  repairedTo?: Hlc
}

/**
 * Below which version a tombstone may be dropped now: older than the grace period (its HLC
 * against the wall clock) and than the last repair completed with every replica.
 */
export function purgeHorizon (wallNowMs: number, tombstoneGraceMs: number, repairedTo: Hlc): Hlc {
  return Math.min(graceHorizon(wallNowMs, tombstoneGraceMs), repairedTo)
}

/** hlc(now - grace): no tombstone at or above it is purged anywhere with the same grace. */
export function graceHorizon (wallNowMs: number, tombstoneGraceMs: number): Hlc {
  return wallHlc(wallNowMs - tombstoneGraceMs)
}

/** A wall-clock time as an HLC (whole ms, logical 0; a simulated clock may read fractions). */
export function wallHlc (wallMs: number): Hlc {
  return makeHlc(Math.max(0, Math.floor(wallMs)), 0)
}

/** The record's fields as written; anything else in the file is a damaged record. */
interface RepairFile extends RepairRecord { format: 1 }

export class RepairLog {
  private current: RepairRecord = { since: 0, repairedTo: 0, synced: {} }
  private writing: Promise<void> = Promise.resolve()

  constructor (private readonly fs: FileSystem, private readonly dir: string, private readonly files: FilePool, private readonly clock: Clock, private readonly log: Logger) {}

  get record (): RepairRecord { return this.current }

  /**
   * Reads the record, or starts one: `since` now for a replica holding nothing (what it gets from
   * now on is recorded), 0 for one that holds rows from before the record was kept. A record that
   * does not parse is replaced by one that knows nothing (since 0, no repair): nothing is purged
   * until the next repair, and the replica counts as stale against any other that purged.
   */
  async load (holdsRows: boolean): Promise<void> {
    const path = join(this.dir, REPAIR_FILE)
    let text: string | undefined
    try {
      text = await this.files.run(async () => await readTextFile(this.fs, path))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (text !== undefined) {
      const parsed = parseRepairFile(text)
      if (parsed !== undefined) { this.current = parsed; return }
      this.log.warn({ file: path }, 'repair record unreadable: replaced by an empty one (no tombstone is purged until the next repair with every replica)')
    }
    this.current = { since: text === undefined && !holdsRows ? wallHlc(this.clock.wallNow()) : 0, repairedTo: 0, synced: {} }
    await this.save()
  }

  /**
   * Takes in a completed sync or repair, never moving a horizon back, and resolves once the record
   * is durable. Updates are written one after the other.
   */
  async update (u: RepairUpdate): Promise<void> {
    const synced: Record<string, Hlc> = { ...this.current.synced }
    let changed = false
    if (u.peer !== undefined && u.syncedAt !== undefined && !((synced[u.peer] ?? -1) >= u.syncedAt)) {
      synced[u.peer] = u.syncedAt
      changed = true
      const peers = Object.keys(synced)
      if (peers.length > MAX_SYNCED_PEERS) {
        for (const p of peers.sort((a, b) => synced[a]! - synced[b]!).slice(0, peers.length - MAX_SYNCED_PEERS)) delete synced[p]
      }
    }
    let repairedTo = this.current.repairedTo
    if (u.repairedTo !== undefined && u.repairedTo > repairedTo) {
      repairedTo = u.repairedTo
      changed = true
    }
    if (!changed) return
    this.current = { since: this.current.since, repairedTo, synced }
    await this.save()
  }

  /** Resolves when no write of the record is queued or running. */
  async settled (): Promise<void> { await this.writing }

  private async save (): Promise<void> {
    const run = this.writing.then(async () => {
      const file: RepairFile = { format: 1, ...this.current }
      await this.files.run(async () => { await writeFileAtomic(this.fs, join(this.dir, REPAIR_FILE), Buffer.from(JSON.stringify(file))) })
    })
    this.writing = run.catch(() => {})
    await run
  }
}

function isHorizon (v: unknown): v is Hlc {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** The record in `text`, or undefined when it is not one. */
export function parseRepairFile (text: string): RepairRecord | undefined {
  let v: unknown
  try { v = JSON.parse(text) } catch { return undefined }
  if (v === null || typeof v !== 'object') return undefined
  const f = v as Partial<RepairFile>
  if (f.format !== 1 || !isHorizon(f.since) || !isHorizon(f.repairedTo) || f.synced === null || typeof f.synced !== 'object' || Array.isArray(f.synced)) return undefined
  const synced: Record<string, Hlc> = {}
  for (const [peer, at] of Object.entries(f.synced)) {
    if (!isHorizon(at)) return undefined
    synced[peer] = at
  }
  return { since: f.since, repairedTo: f.repairedTo, synced }
}
