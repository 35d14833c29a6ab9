/**
 * One seeded schedule of a peer's storage engine on a simulated disk (memory-fs.ts): concurrent
 * writers, deletes, flushes, compactions, power cuts (unsynced writes lost or torn, directory
 * entries not synced lost), a full disk, failing writes and fsyncs, restarts, and the engine's
 * own recovery (reopenPartition after a fault). After every restart and at the end, a checker
 * compares what the engine answers with what was acknowledged:
 *
 * - durability: every acknowledged write (apply resolved) is read back after any crash, unless a
 *   later write to the same id (acknowledged or not) superseded it;
 * - no invention: every record read was written by the schedule (same id, version and row);
 * - no zombie: while a partition is failed, it does not serve a record it did not make durable
 *   (a read answers the last acknowledged version, a later attempted one, or refuses);
 * - scans and gets agree.
 *
 * The same seed gives the same schedule, the same faults and the same verdict (virtual time, a
 * seeded Random; nothing reads the wall clock), so a failing seed replays with
 * `npm run sim -- storage --seeds N`.
 */
import { makeHlc } from '../../src/hlc/index.js'
import { SeededRandom, type Logger } from '../../src/runtime/index.js'
import { parseSchemaSpec, validateRow, type SpaceDef } from '../../src/schema/index.js'
import { StorageEngine, type LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'
import { ManualClock } from './manual-clock.js'
import { MemoryFileSystem } from './memory-fs.js'

/** Kinds of fault a schedule may inject (all by default). */
export const STORAGE_FAULTS = ['power', 'torn', 'full', 'eio-write', 'eio-sync', 'eio-dirsync'] as const
export type StorageFault = typeof STORAGE_FAULTS[number]

export interface StorageScheduleOptions {
  seed: number
  /** Steps of the schedule (each a batch of writes, a flush, a compaction, a fault or a restart). */
  steps?: number
  faults?: readonly StorageFault[]
}

export interface StorageScheduleResult {
  seed: number
  ok: boolean
  /** What failed, in words (empty when ok). */
  violations: string[]
  stats: { acked: number, attempted: number, failedWrites: number, crashes: number, restarts: number, faultsInjected: number, flushes: number, compactions: number }
  /** The schedule's last steps, for a failing seed. */
  trace: string[]
}

const SPACE: SpaceDef = { name: 'sim', uid: 'sim@1', schema: parseSchemaSpec('id:utf8,n:int64,s:utf8'), partitions: 2, replicas: 1 }
const DATA_DIR = '/data'
const T0 = 1_700_000_000_000

/** Logs nothing (a schedule's thousands of expected faults would drown the output); SHOAL_SIM_LOG=1 prints it. */
const quietLog: Logger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => quietLog }
const printLog = (bindings: object = {}): Logger => {
  const line = (level: string) => (obj: object, msg?: string): void => { console.log(level, msg ?? '', JSON.stringify({ ...bindings, ...obj }, (_k, v: unknown) => typeof v === 'bigint' ? String(v) : v instanceof Error ? v.message : v)) }
  return { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error'), child: (b: Record<string, unknown>) => printLog({ ...bindings, ...b }) }
}
const simLog = (): Logger => process.env.SHOAL_SIM_LOG === '1' ? printLog() : quietLog

/** What the checker knows of one id: the last acknowledged record and every one attempted since. */
interface IdModel {
  acked: VersionedRecord | undefined
  /** Written but not (yet) acknowledged, or failed: may or may not be there. Version-keyed. */
  maybe: Map<number, VersionedRecord>
}

export async function runStorageSchedule (opts: StorageScheduleOptions): Promise<StorageScheduleResult> {
  const rnd = new SeededRandom(opts.seed)
  const faults = new Set(opts.faults ?? STORAGE_FAULTS)
  const steps = opts.steps ?? 60
  const disk = new MemoryFileSystem()
  const clock = new ManualClock()
  clock.t = T0
  const model = new Map<string, IdModel>()
  const written = new Map<string, VersionedRecord>()
  const violations: string[] = []
  const trace: string[] = []
  const stats = { acked: 0, attempted: 0, failedWrites: 0, crashes: 0, restarts: 0, faultsInjected: 0, flushes: 0, compactions: 0 }
  let hlc = 0
  /**
   * Writes that failed (apply rejected) since the partitions were last opened: until a restart or
   * a reopen (recovery decides then what was durable), no read may answer one (a zombie replica
   * serving what it never made durable).
   */
  const failedSinceOpen = new Set<string>()
  /** SHOAL_SIM_WATCH=<id>: the trace follows every write of that id. */
  const watch = process.env.SHOAL_SIM_WATCH

  // Small memtables and segments so that a few hundred rows flush and compact many times.
  const openEngine = (): StorageEngine => new StorageEngine({ clock, log: simLog(), fs: disk.process() }, {
    dataDir: DATA_DIR,
    cacheMiB: 1,
    maxOpenFiles: 16,
    memtableMaxRows: 40 + rnd.int(60),
    compactionMaxSegments: 3,
    compactionCheckIntervalMs: 0
  })
  let engine = openEngine()
  const partitionOf = (id: string): number => Number(id.slice(1)) % SPACE.partitions
  const store = async (p: number): Promise<LocalPartitionStore | undefined> => {
    try {
      return await engine.openPartition(SPACE, p)
    } catch {
      return undefined
    }
  }

  const record = (id: string): VersionedRecord => {
    clock.t += 1 + rnd.int(3)
    const version = makeHlc(clock.t, hlc++ % 1000)
    if (rnd.next() < 0.15) return { id, version, deleted: true, row: null }
    const checked = validateRow(SPACE.schema, { id, n: rnd.int(1_000_000), s: `v${rnd.int(50)}` }, 0)
    if ('error' in checked) throw new Error(checked.error.message)
    return { id, version, deleted: false, row: checked.row }
  }

  /** Writes a batch to one partition; the model learns of it before and after (acked or maybe). */
  const write = async (): Promise<void> => {
    const p = rnd.int(SPACE.partitions)
    const ids = new Set<string>()
    const n = 1 + rnd.int(12)
    for (let i = 0; i < n; i++) ids.add(`k${rnd.int(60) * SPACE.partitions + p}`)
    const batch = [...ids].map(record)
    for (const r of batch) {
      written.set(`${r.id}@${r.version}`, r)
      const m = model.get(r.id) ?? { acked: undefined, maybe: new Map() }
      m.maybe.set(r.version, r)
      model.set(r.id, m)
    }
    stats.attempted += batch.length
    const watched = batch.filter(r => r.id === watch)
    const note = (what: string): void => { for (const r of watched) trace.push(`  ${describe(r)}: ${what}`) }
    note('attempted')
    const s = await store(p)
    if (s === undefined) { stats.failedWrites++; note('partition did not open'); return }
    try {
      await s.apply(batch)
    } catch (err) {
      stats.failedWrites++
      note(`failed: ${(err as Error).message}`)
      for (const r of batch) failedSinceOpen.add(`${r.id}@${r.version}`)
      return
    }
    note('acknowledged')
    for (const r of batch) {
      const m = model.get(r.id)!
      m.maybe.delete(r.version)
      // Acknowledged: older attempts of this id can no longer be what a read answers.
      if (m.acked === undefined || r.version > m.acked.version) {
        m.acked = r
        for (const v of [...m.maybe.keys()]) if (v < r.version) m.maybe.delete(v)
      }
      stats.acked++
    }
  }

  /** Reads every id of the model back and checks it (and a scan per partition). */
  const check = async (when: string, settled: boolean): Promise<void> => {
    for (let p = 0; p < SPACE.partitions; p++) {
      const s = await store(p)
      if (s === undefined) {
        if (settled) violations.push(`${when}: partition ${p} does not open with the disk healthy`)
        continue
      }
      const failed = s.failure() !== undefined
      if (settled && failed) violations.push(`${when}: partition ${p} still failed (${s.failure()!.code}) with the disk healthy`)
      const seen = new Map<string, VersionedRecord>()
      let scanned = true
      try {
        for await (const chunk of s.scan({ includeTombstones: true })) for (const r of chunk) seen.set(r.id, r)
      } catch (err) {
        scanned = false
        if (settled || !failed) violations.push(`${when}: scan of partition ${p} failed: ${(err as Error).message}`)
      }
      for (const [id, m] of model) {
        if (partitionOf(id) !== p) continue
        let got: VersionedRecord | undefined
        try {
          got = await s.get(id)
        } catch (err) {
          if (settled || !failed) violations.push(`${when}: get ${id} failed: ${(err as Error).message}`)
          continue
        }
        const verdict = judge(m, got)
        if (verdict !== undefined) violations.push(`${when}: ${id}: ${verdict}`)
        if (scanned && !sameRecord(seen.get(id), got)) violations.push(`${when}: ${id}: the scan answers ${describe(seen.get(id))}, get ${describe(got)}`)
        seen.delete(id)
      }
      for (const [id, r] of seen) if (!written.has(`${id}@${r.version}`)) violations.push(`${when}: partition ${p} holds ${describe(r)}, never written`)
    }
  }

  const judge = (m: IdModel, got: VersionedRecord | undefined): string | undefined => {
    if (got !== undefined) {
      const w = written.get(`${got.id}@${got.version}`)
      if (w === undefined || !sameRecord(w, got)) return `answers ${describe(got)}, never written`
      if (failedSinceOpen.has(`${got.id}@${got.version}`)) return `answers ${describe(got)}, a write that failed (never made durable)`
    }
    if (m.acked === undefined) return got === undefined || m.maybe.has(got.version) ? undefined : `answers ${describe(got)}, not a write of this id`
    if (got === undefined) return `acknowledged ${describe(m.acked)} is lost`
    if (got.version === m.acked.version) return undefined
    if (got.version > m.acked.version && m.maybe.has(got.version)) return undefined
    return `answers ${describe(got)}; acknowledged ${describe(m.acked)}`
  }

  /** After a crash: whatever was in flight or failed may be there or not, as the model says already. */
  const restart = async (kind: 'clean' | 'power'): Promise<void> => {
    trace.push(`  ${kind} restart (files: ${[...disk.files(DATA_DIR)].map(([f, n]) => `${f.slice(DATA_DIR.length + 1)}:${n}`).join(' ')})`)
    if (kind === 'clean') {
      await engine.close().catch(() => {})
    } else {
      const torn = faults.has('torn')
      disk.crash({ tornBytes: torn ? (_p, unsynced) => rnd.next() < 0.5 ? rnd.int(unsynced + 1) : 0 : undefined })
      stats.crashes++
      // The dead engine's promises settle against a disk that refuses them; nothing of it runs on.
      void engine.close().catch(() => {})
    }
    disk.clearFaults()
    disk.capacityBytes = Number.POSITIVE_INFINITY
    engine = openEngine()
    failedSinceOpen.clear()
    stats.restarts++
    trace.push(`  after: ${[...disk.files(DATA_DIR)].map(([f, n]) => `${f.slice(DATA_DIR.length + 1)}:${n}`).join(' ')}`)
    await check(`after ${kind} restart`, true)
  }

  for (let step = 0; step < steps && violations.length === 0; step++) {
    const roll = rnd.next()
    if (roll < 0.5) {
      // Several writers at once: group commits, a flush racing the writes.
      const n = 1 + rnd.int(4)
      trace.push(`step ${step}: ${n} concurrent writes`)
      await Promise.all(Array.from({ length: n }, write))
    } else if (roll < 0.58) {
      const p = rnd.int(SPACE.partitions)
      trace.push(`step ${step}: flush partition ${p}`)
      await (await store(p))?.flush().catch(() => {})
      stats.flushes++
    } else if (roll < 0.64) {
      const p = rnd.int(SPACE.partitions)
      trace.push(`step ${step}: compact partition ${p}`)
      await (await store(p))?.compact().catch(() => {})
      stats.compactions++
    } else if (roll < 0.72 && faults.has('power')) {
      // A power cut in the middle of writes: some acknowledged, some in flight.
      trace.push(`step ${step}: power cut during writes`)
      const inFlight = Array.from({ length: 1 + rnd.int(3) }, write)
      await settleSome(rnd.int(4))
      await restart('power')
      await Promise.allSettled(inFlight)
    } else if (roll < 0.76) {
      trace.push(`step ${step}: clean restart`)
      await restart('clean')
    } else if (roll < 0.92) {
      const kinds = (['full', 'eio-write', 'eio-sync', 'eio-dirsync'] as const).filter(k => faults.has(k))
      if (kinds.length === 0) continue
      const kind = kinds[rnd.int(kinds.length)]!
      trace.push(`step ${step}: fault ${kind}`)
      stats.faultsInjected++
      await injectFault(kind)
    } else {
      trace.push(`step ${step}: check`)
      await check(`step ${step}`, false)
    }
  }
  if (violations.length === 0) {
    trace.push('end: power cut, restart, check')
    if (faults.has('power')) await restart('power')
    else await restart('clean')
  }
  await engine.close().catch(() => {})
  return { seed: opts.seed, ok: violations.length === 0, violations, stats, trace: watch !== undefined ? trace : trace.slice(-25) }

  /** Lets the event loop run a few turns: writes in flight get part of the way. */
  async function settleSome (turns: number): Promise<void> {
    for (let i = 0; i < turns; i++) await new Promise<void>(resolve => { setImmediate(resolve) })
  }

  /**
   * A fault while writes go on, then the disk healed and the failed partitions reopened (as the
   * peer's heal loop does: StorageEngine.reopenPartition), or a power cut right after.
   */
  async function injectFault (kind: 'full' | 'eio-write' | 'eio-sync' | 'eio-dirsync'): Promise<void> {
    if (kind === 'full') disk.capacityBytes = disk.used + rnd.int(8192)
    else if (kind === 'eio-write') disk.fail({ op: 'write', code: 'EIO', path: rnd.next() < 0.5 ? /wal-/ : /seg-|MANIFEST|live-|REPAIR/, times: 1 + rnd.int(2) })
    else if (kind === 'eio-sync') disk.fail({ op: 'sync', code: 'EIO', path: rnd.next() < 0.5 ? /wal-/ : /seg-|MANIFEST|live-/, times: 1 })
    else disk.fail({ op: 'syncDir', code: 'EIO', times: 1 })
    const n = 1 + rnd.int(4)
    await Promise.all(Array.from({ length: n }, write))
    if (rnd.next() < 0.5) await (await store(rnd.int(SPACE.partitions)))?.flush().catch(() => {})
    await check(`during ${kind}`, false)
    if (rnd.next() < 0.3 && faults.has('power')) {
      await restart('power')
      return
    }
    disk.clearFaults()
    disk.capacityBytes = Number.POSITIVE_INFINITY
    for (let p = 0; p < SPACE.partitions; p++) {
      const s = engine.getPartition(SPACE.uid, p)
      if (s?.failure() !== undefined || s === undefined) await engine.reopenPartition(SPACE, p).catch(() => {})
    }
    // Reopened from what is durable: a failed write whose frames did reach the disk may be there.
    failedSinceOpen.clear()
  }
}

function sameRecord (a: VersionedRecord | undefined, b: VersionedRecord | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.id === b.id && a.version === b.version && a.deleted === b.deleted && rowText(a.row) === rowText(b.row)
}

function describe (r: VersionedRecord | undefined): string {
  if (r === undefined) return 'nothing'
  return `${r.id}@${r.version}${r.deleted ? ' (deleted)' : ` ${rowText(r.row)}`}`
}

/** A row as text (int64 values are bigints, which JSON does not take). */
function rowText (row: VersionedRecord['row']): string {
  return JSON.stringify(row, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v)
}
