/**
 * Storage benchmark: apply throughput (batches of 1,000 rows of a 6-column schema; one writer,
 * then 8 concurrent writers on the same partition, group-committed), point get latency, and WAL
 * recovery time per GiB (a WAL written without flushing, then reopened).
 *
 *   npx tsx scripts/bench/storage.ts [rows] [walMiB]   # or node dist/scripts/bench/storage.js
 *
 * Real disk I/O under os.tmpdir(): figures depend on the device's fsync latency.
 */
import '../../src/polyfill/index.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { makeHlc } from '../../src/hlc/index.js'
import { SystemClock, silentLogger } from '../../src/runtime/index.js'
import { parseSchemaSpec, type SpaceDef } from '../../src/schema/index.js'
import { BlockCache, LocalPartitionStore, type PartitionStoreOptions, type VersionedRecord } from '../../src/storage/index.js'

export interface StorageBenchResult {
  rows: number
  batchRows: number
  oneWriter: { rowsPerS: number, fsyncs: number, applies: number }
  eightWriters: { rowsPerS: number, fsyncs: number, applies: number }
  get: { count: number, medianUs: number, p99Us: number }
  /** The same gets with the rows in segments only and a block cache of COLD_CACHE_BYTES: from the files, through the OS page cache. */
  coldGet: { count: number, medianUs: number, p99Us: number, loadedPerGetBytes: number }
  recovery: { walBytes: number, records: number, ms: number, msPerGiB: number }
}

const BATCH = 1000
const space: SpaceDef = {
  name: 'bench',
  uid: 'bench@1',
  schema: parseSchemaSpec('id:utf8,n:int64,amount:float64,name:utf8,ts:timestamp,flag:bool'),
  partitions: 1,
  replicas: 1
}

function batch (start: number, n: number, versionMs: number): VersionedRecord[] {
  const out: VersionedRecord[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const k = start + i
    const id = `row-${k.toString(36).padStart(8, '0')}`
    out[i] = {
      id,
      version: makeHlc(versionMs, 0),
      deleted: false,
      row: { id, n: k, amount: k * 0.25, name: `name ${k % 1000}`, ts: 1_700_000_000_000 + k, flag: (k & 1) === 0 }
    }
  }
  return out
}

async function withStore<T> (opts: PartitionStoreOptions, fn: (s: LocalPartitionStore, dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-storage-'))
  try {
    const store = await LocalPartitionStore.open({ clock: new SystemClock(), log: silentLogger }, space, 0, dir, { compactionCheckIntervalMs: 0, ...opts })
    try {
      return await fn(store, dir)
    } finally {
      await store.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A block cache smaller than one key-index block and one batch's columns. */
const COLD_CACHE_BYTES = 256 << 10

/** `count` gets of random ids among the first `written` rows: median and p99 in µs. */
async function timeGets (store: LocalPartitionStore, count: number, written: number, seed = 12345): Promise<{ count: number, medianUs: number, p99Us: number }> {
  const lat = new Float64Array(count)
  let x = seed
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const id = `row-${(x % written).toString(36).padStart(8, '0')}`
    const t0 = performance.now()
    const r = await store.get(id)
    lat[i] = performance.now() - t0
    if (r === undefined) throw new Error(`get(${id}) found nothing`)
  }
  lat.sort()
  return { count, medianUs: percentile(lat, 0.5) * 1000, p99Us: percentile(lat, 0.99) * 1000 }
}

function percentile (sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

export async function benchStorage (opts: { rows: number, walMiB?: number }): Promise<StorageBenchResult> {
  const rows = Math.max(BATCH, Math.floor(opts.rows / BATCH) * BATCH)
  const now = Date.now()

  const oneWriter = await withStore({}, async store => {
    const t = performance.now()
    for (let start = 0; start < rows; start += BATCH) await store.apply(batch(start, BATCH, now))
    await store.flush()
    const s = (performance.now() - t) / 1000
    return { rowsPerS: Math.round(rows / s), fsyncs: store.counters.walFsyncs, applies: store.counters.applyCalls }
  })

  let get = { count: 0, medianUs: 0, p99Us: 0 }
  let coldGet = { count: 0, medianUs: 0, p99Us: 0, loadedPerGetBytes: 0 }
  const eightWriters = await withStore({}, async (store, dir) => {
    const t = performance.now()
    const per = rows / BATCH / 8
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let b = 0; b < per; b++) await store.apply(batch((w * per + b) * BATCH, BATCH, now))
    }))
    const s = (performance.now() - t) / 1000
    const written = Math.floor(per) * 8 * BATCH
    const result = { rowsPerS: Math.round(written / s), fsyncs: store.counters.walFsyncs, applies: store.counters.applyCalls }
    // Point gets on this store: most rows in segments, the tail in the memtable.
    const count = Math.min(100_000, written)
    get = await timeGets(store, count, written)
    // Then from the files: every row in segments, reopened with a cache too small to keep the
    // blocks a get reads (its key-index block and its row's columns), so each get reads them
    // again through the OS page cache, checks their CRCs and decodes them.
    await store.flush()
    await store.close()
    const cache = new BlockCache(COLD_CACHE_BYTES)
    const cold = await LocalPartitionStore.open({ clock: new SystemClock(), log: silentLogger, cache }, space, 0, dir, { compactionCheckIntervalMs: 0 })
    try {
      // Warmed up first (other ids), as the in-memory gets above were by the writes: the first
      // few thousand gets of a fresh process measure the JIT, not the reads.
      await timeGets(cold, 5_000, written, 777)
      const read = (): number => cache.stats().loadedBytes + cache.stats().pageBytes
      const before = read()
      const t = await timeGets(cold, Math.min(20_000, written), written)
      coldGet = { ...t, loadedPerGetBytes: (read() - before) / t.count }
    } finally {
      await cold.close()
    }
    return result
  })

  const walTarget = (opts.walMiB ?? 64) * (1 << 20)
  const recovery = await withStore({ memtableMaxRows: Number.MAX_SAFE_INTEGER, memtableMaxBytes: Number.MAX_SAFE_INTEGER }, async (store, dir) => {
    let start = 0
    while (store.stats().walBytes < walTarget) {
      await store.apply(batch(start, BATCH, now))
      start += BATCH
    }
    await store.close()
    const again = await LocalPartitionStore.open({ clock: new SystemClock(), log: silentLogger }, space, 0, dir, { compactionCheckIntervalMs: 0, memtableMaxRows: Number.MAX_SAFE_INTEGER, memtableMaxBytes: Number.MAX_SAFE_INTEGER })
    const r = again.recovery
    await again.close()
    if (r.walRecords !== start) throw new Error(`recovered ${r.walRecords} of ${start} records`)
    return { walBytes: r.walBytes, records: r.walRecords, ms: r.ms, msPerGiB: r.ms * (1 << 30) / r.walBytes }
  })

  return { rows, batchRows: BATCH, oneWriter, eightWriters, get, coldGet, recovery }
}

export function formatStorageBench (r: StorageBenchResult): string {
  const n = (x: number): string => Math.round(x).toLocaleString('en-US')
  return [
    `## Storage (one partition, ${n(r.rows)} rows of 6 columns, batches of ${r.batchRows}, fsync per group commit)\n`,
    '| measure | value |',
    '| --- | --- |',
    `| apply, 1 writer | ${n(r.oneWriter.rowsPerS)} rows/s (${r.oneWriter.applies} applies, ${r.oneWriter.fsyncs} fsyncs) |`,
    `| apply, 8 concurrent writers | ${n(r.eightWriters.rowsPerS)} rows/s (${r.eightWriters.applies} applies, ${r.eightWriters.fsyncs} fsyncs) |`,
    `| point get (${n(r.get.count)} random ids), median / p99 | ${r.get.medianUs.toFixed(2)} µs / ${r.get.p99Us.toFixed(2)} µs |`,
    `| point get from the files through the page cache (${n(r.coldGet.count)} random ids, ${COLD_CACHE_BYTES >> 10} KiB block cache, ${n(r.coldGet.loadedPerGetBytes / 1024)} KiB read a get, after 5,000 to warm up), median / p99 | ${r.coldGet.medianUs.toFixed(2)} µs / ${r.coldGet.p99Us.toFixed(2)} µs |`,
    `| WAL recovery: ${(r.recovery.walBytes / (1 << 20)).toFixed(1)} MiB, ${n(r.recovery.records)} records | ${n(r.recovery.ms)} ms → ${(r.recovery.msPerGiB / 1000).toFixed(1)} s per GiB |`
  ].join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = Number(process.argv[2] ?? 200_000)
  const walMiB = Number(process.argv[3] ?? 64)
  benchStorage({ rows, walMiB }).then(r => {
    console.log(formatStorageBench(r))
    process.exit(0)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
