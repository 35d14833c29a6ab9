/** Shared fixtures of the storage tests: temp dirs, a space, records, a recording logger. */
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeHlc } from '../../src/hlc/index.js'
import type { Logger } from '../../src/runtime/index.js'
import { parseSchemaSpec, validateRow, type Row, type SpaceDef } from '../../src/schema/index.js'
import { BlockCache, FilePool, LocalPartitionStore, type PartitionStoreOptions, type VersionedRecord } from '../../src/storage/index.js'
import { ManualClock } from '../sim/manual-clock.js'

export const T0 = 1_700_000_000_000

export class TempDirs {
  private dirs: string[] = []
  async make (): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'shoal-storage-'))
    this.dirs.push(d)
    return d
  }

  async cleanup (): Promise<void> {
    for (const d of this.dirs) await rm(d, { recursive: true, force: true })
    this.dirs = []
  }
}

export function makeSpace (spec = 'id:utf8,n:int64,s:utf8', uid = 'things@1'): SpaceDef {
  return { name: uid.split('@')[0]!, uid, schema: parseSchemaSpec(spec), partitions: 16, replicas: 3 }
}

export function row (space: SpaceDef, input: Record<string, unknown>): Row {
  const r = validateRow(space.schema, input, 0)
  if ('error' in r) throw new Error(`${r.error.field}: ${r.error.message}`)
  return r.row
}

export function put (space: SpaceDef, id: string, ms: number, fields: Record<string, unknown> = {}, logical = 0): VersionedRecord {
  return { id, version: makeHlc(ms, logical), deleted: false, row: row(space, { id, ...fields }) }
}

export function del (id: string, ms: number, logical = 0): VersionedRecord {
  return { id, version: makeHlc(ms, logical), deleted: true, row: null }
}

export interface LogEntry { level: string, obj: object, msg: string | undefined }
export function recordingLogger (): Logger & { entries: LogEntry[] } {
  const entries: LogEntry[] = []
  const make = (): Logger => ({
    debug: (obj, msg) => { entries.push({ level: 'debug', obj, msg }) },
    info: (obj, msg) => { entries.push({ level: 'info', obj, msg }) },
    warn: (obj, msg) => { entries.push({ level: 'warn', obj, msg }) },
    error: (obj, msg) => { entries.push({ level: 'error', obj, msg }) },
    child: () => make()
  })
  return Object.assign(make(), { entries })
}

export function manualClock (): ManualClock {
  const c = new ManualClock()
  c.t = T0
  return c
}

export async function openStore (dir: string, space: SpaceDef, opts: PartitionStoreOptions = {}, deps: { clock?: ManualClock, log?: Logger, cache?: BlockCache, files?: FilePool } = {}): Promise<LocalPartitionStore> {
  return await LocalPartitionStore.open({ clock: deps.clock ?? manualClock(), log: deps.log ?? recordingLogger(), cache: deps.cache, files: deps.files }, space, 0, dir, { compactionCheckIntervalMs: 0, ...opts })
}

/** Collects a scan into a map id → record. */
export async function scanAll (store: LocalPartitionStore, includeTombstones = true): Promise<Map<string, VersionedRecord>> {
  const out = new Map<string, VersionedRecord>()
  for await (const batch of store.scan({ batchRecords: 7, includeTombstones })) {
    for (const r of batch) {
      if (out.has(r.id)) throw new Error(`scan returned ${r.id} twice`)
      out.set(r.id, r)
    }
  }
  return out
}

/** Flips bits of the byte at `at` of `path` in place: the damage a corruption test plants. */
export async function flipByte (path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, at)
    b[0] = b[0]! ^ 0x40
    await fh.write(b, 0, 1, at)
  } finally {
    await fh.close()
  }
}
