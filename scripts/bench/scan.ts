/**
 * Scan benchmark (issue 12): bench/query.ts's queries over rows a peer's stores hold on disk, run
 * the way a peer runs a query whose partitions are all its own (each partition's columns read
 * with store.batches(), a fragment per partition on the worker pool, merge, finalize), side by
 * side in interleaved rounds:
 *
 * - Shoal, cold: a block cache a quarter the size of the columns the queries read, measured as
 *   the executor works on them (8 bytes a number, 4 a string's code); the cache holds coded
 *   columns compact (columnar/compact.ts), so it may hold more than a quarter of them;
 * - Shoal, past: a cache a quarter of what the warm one holds, so that every scan reads most
 *   columns again from the files (through the OS page cache), checks their CRCs and decodes them;
 * - Shoal, warm: a copy of the same files behind a cache that holds every column;
 * - DuckDB reading its own persisted database file of the same rows, with `memory_limit` set to
 *   the cold cache's size, and with its default limit.
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/scan.js [rows] [rounds]
 *
 * Defaults: 4,000,000 rows in 16 partitions, 5 rounds. Medians, and ratios as the median of each
 * round's own ratio (a burst of noise on a shared machine hits a round's contenders alike).
 */
import '../../src/polyfill/index.js'
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { BatchLease, type StoredBatch, type ValueType } from '../../src/columnar/index.js'
import { makeHlc } from '../../src/hlc/index.js'
import { FragmentPool, QueryMerger, batchOptions, defaultPoolSize, fragmentShape, splitPlan } from '../../src/query/exec/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import { SystemClock, silentLogger } from '../../src/runtime/index.js'
import { validateRow } from '../../src/schema/index.js'
import { StorageEngine, type LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'
import { dirMiB } from './restart.js'
import { DUCKDB_TABLE, QUERIES, SPACE, amount, cat, pairedRatio, qty, region, sameRows, timeInterleaved } from './query.js'

export interface ScanBench {
  rows: number
  /** Bytes of the columns the queries read, widened as the executor works on them (8 a number, 4 a string's code). */
  columnBytes: number
  /** Bytes the warm cache holds after one run of each query (the same columns, some compact). */
  cachedBytes: number
  coldCacheMiB: number
  /** A quarter of cachedBytes: a cache the compact columns too are 4x larger than. */
  pastCacheMiB: number
  diskMiB: number
  shoalThreads: number
  duckdbThreads: number
  results: Array<{
    name: string
    coldMs: number
    warmMs: number
    /** NaN when DuckDB refused the query within the limit (duckdbLimitedError says how). */
    duckdbLimitedMs: number
    duckdbLimitedError?: string
    duckdbMs: number
    /** Paired ratios: cold / warm, cold / DuckDB limited to the same memory. */
    coldOverWarm: number
    coldOverDuckdb: number
    /** Bytes of columns the cold store loaded (read, checked, decoded) during one run of the query. */
    coldReadMiB: number
    /** Of the columns the cold store loaded in that run, the share decoded into recycled memory. */
    coldRecycled: number
    /** The store whose cache is a quarter of what the warm one holds: median, paired ratio to warm, MiB loaded a run. */
    pastMs: number
    pastOverWarm: number
    pastReadMiB: number
    sameAnswer: boolean
  }>
}

const MiB = 1048576
const LOAD_BATCH = 5000

/** Loads `rows` rows (bench/query.ts's values) into the 16 partitions of an engine in `dir`, one segment each. */
export async function load (dir: string, rows: number): Promise<void> {
  const engine = new StorageEngine({ clock: new SystemClock(), log: silentLogger }, { dataDir: dir, cacheMiB: 64, compactionCheckIntervalMs: 0 })
  try {
    const stores = await Promise.all(Array.from({ length: SPACE.partitions }, async (_, p) => await engine.openPartition(SPACE, p)))
    const version = makeHlc(Date.now(), 0)
    for (let start = 0; start < rows; start += LOAD_BATCH) {
      const byPartition: VersionedRecord[][] = stores.map(() => [])
      for (let i = start; i < Math.min(rows, start + LOAD_BATCH); i++) {
        const r = validateRow(SPACE.schema, { id: `i${i}`, region: region(i), cat: cat(i), qty: qty(i), amount: amount(i) }, 0)
        if ('error' in r) throw new Error(`row ${i}: ${r.error.message}`)
        byPartition[i % SPACE.partitions]!.push({ id: `i${i}`, version, deleted: false, row: r.row })
      }
      await Promise.all(byPartition.map(async (records, p) => { if (records.length > 0) await stores[p]!.apply(records) }))
    }
    for (const s of stores) {
      await s.flush()
      await s.compact()
    }
  } finally {
    await engine.close()
  }
}

/** One query as a peer runs it over its own partitions (query/service/fragments.ts with a pool). */
export async function runStoreQuery (sql: string, stores: LocalPartitionStore[], pool: FragmentPool): Promise<Array<Record<string, unknown>>> {
  const { plan, origins } = parseSql(sql)
  const v = validatePlan(plan, SPACE, { origins })
  if (!v.ok) throw new Error(v.errors.map(e => e.message).join('; '))
  const split = splitPlan(v.plan, SPACE.schema.map(c => c.name))
  const types = new Map(SPACE.schema.map(c => [c.name, c.type]))
  const columnType = (n: string): ValueType | undefined => types.get(n)
  const shape = fragmentShape(split.fragment)
  const columns = shape.scan.columns ?? []
  const options = batchOptions(shape, columnType)
  const columnTypes = columns.map(c => [c, columnType(c) ?? 'null'] as [string, ValueType])
  const merger = new QueryMerger(split, n => types.get(n))
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < stores.length) {
      const store = stores[next++]!
      // Leased until the fragment is done, as the peer's fragment server does: the cache may
      // then decode other columns into their memory.
      const lease = new BatchLease()
      try {
        const batches: StoredBatch[] = []
        await pool.loading(async () => { for await (const b of store.batches(columns, { ...options, lease })) batches.push(b) })
        const r = await pool.run({ plan: split.fragment, batches, columnType, types: columnTypes, budgetBytes: Infinity })
        merger.add(r.output)
      } finally {
        lease.release()
      }
    }
  }
  await Promise.all(Array.from({ length: pool.parallelism }, lane))
  return merger.finish(v.columns).rows
}

/** The columns the bench's queries read, each once. */
function queryColumns (): string[] {
  const out = new Set<string>()
  for (const q of QUERIES) {
    const { plan, origins } = parseSql(q.sql)
    const v = validatePlan(plan, SPACE, { origins })
    if (!v.ok) throw new Error(v.errors.map(e => e.message).join('; '))
    for (const c of fragmentShape(splitPlan(v.plan, SPACE.schema.map(c => c.name)).fragment).scan.columns ?? []) out.add(c)
  }
  return [...out]
}

export async function openStores (engine: StorageEngine): Promise<LocalPartitionStore[]> {
  return await Promise.all(Array.from({ length: SPACE.partitions }, async (_, p) => await engine.openPartition(SPACE, p)))
}

async function duckdbFile (path: string, rows: number): Promise<void> {
  const db = await DuckDBInstance.create(path)
  const con = await db.connect()
  await con.run(DUCKDB_TABLE(rows))
  await con.run('CHECKPOINT')
  con.closeSync()
  db.closeSync()
}

export async function benchScan (rows = 4_000_000, rounds = 5): Promise<ScanBench> {
  const root = await mkdtemp(join(tmpdir(), 'shoal-scan-'))
  const engines: StorageEngine[] = []
  const cons: DuckDBConnection[] = []
  const pool = new FragmentPool(defaultPoolSize())
  try {
    const coldDir = join(root, 'cold')
    const warmDir = join(root, 'warm')
    const pastDir = join(root, 'past')
    await load(coldDir, rows)
    await cp(coldDir, warmDir, { recursive: true })
    await cp(coldDir, pastDir, { recursive: true })
    const dbFile = join(root, 'duck.db')
    await duckdbFile(dbFile, rows)

    // The warm store's cache holds everything the queries read after one run of each.
    const warm = new StorageEngine({ clock: new SystemClock(), log: silentLogger }, { dataDir: warmDir, cacheMiB: 4096, compactionCheckIntervalMs: 0 })
    engines.push(warm)
    const warmStores = await openStores(warm)
    for (const q of QUERIES) await runStoreQuery(q.sql, warmStores, pool)
    const cachedBytes = warm.cache.stats().bytes
    // The cold cache is a quarter of the data the queries read, measured as the executor works
    // on it (float64 a number, an int32 code a string), not as the cache holds it: a cache that
    // holds columns in fewer bytes then holds more of the same data.
    const columnBytes = rows * queryColumns().reduce((n, c) => n + (SPACE.schema.find(s => s.name === c)?.type === 'utf8' ? 4 : 8), 0)
    const coldCacheMiB = Math.max(1, Math.floor(columnBytes / 4 / MiB))
    const cold = new StorageEngine({ clock: new SystemClock(), log: silentLogger }, { dataDir: coldDir, cacheMiB: coldCacheMiB, compactionCheckIntervalMs: 0 })
    engines.push(cold)
    const coldStores = await openStores(cold)
    // And a cache a quarter of what the warm one holds, so that scans read past it even in the
    // compact form (the cold cache above may hold all of it when the columns compact well).
    const pastCacheMiB = Math.max(1, Math.floor(cachedBytes / 4 / MiB))
    const past = new StorageEngine({ clock: new SystemClock(), log: silentLogger }, { dataDir: pastDir, cacheMiB: pastCacheMiB, compactionCheckIntervalMs: 0 })
    engines.push(past)
    const pastStores = await openStores(past)

    const limited = await (await DuckDBInstance.create(dbFile, { memory_limit: `${coldCacheMiB}MB` })).connect()
    const free = await (await DuckDBInstance.create(dbFile)).connect()
    cons.push(limited, free)
    const duckdbThreads = Number((await free.runAndReadAll("SELECT current_setting('threads') AS t")).getRowObjectsJson()[0]!.t)

    const results: ScanBench['results'] = []
    for (const q of QUERIES) {
      const ours = await runStoreQuery(q.sql, coldStores, pool)
      const theirs = (await free.runAndReadAll(q.sql)).getRowObjectsJson()
      // DuckDB may refuse a query within the limit (it needs some memory a thread): then that
      // column says so instead of a time.
      const limitedError = await limited.runAndReadAll(q.sql).then(() => undefined, (err: unknown) => (err as Error).message.split('\n')[0])
      const before = cold.cache.stats()
      await runStoreQuery(q.sql, coldStores, pool)
      const after = cold.cache.stats()
      const coldReadMiB = (after.loadedBytes - before.loadedBytes) / MiB
      const coldRecycled = (after.reused - before.reused) / Math.max(1, after.misses - before.misses)
      await runStoreQuery(q.sql, pastStores, pool)
      const pastBefore = past.cache.stats()
      await runStoreQuery(q.sql, pastStores, pool)
      const pastReadMiB = (past.cache.stats().loadedBytes - pastBefore.loadedBytes) / MiB
      const [c, w, pc, d, dl] = await timeInterleaved(rounds, [
        async () => await runStoreQuery(q.sql, coldStores, pool),
        async () => await runStoreQuery(q.sql, warmStores, pool),
        async () => await runStoreQuery(q.sql, pastStores, pool),
        async () => await free.runAndReadAll(q.sql),
        ...(limitedError === undefined ? [async () => await limited.runAndReadAll(q.sql)] : [])
      ])
      results.push({
        name: q.name,
        coldMs: c!.median,
        warmMs: w!.median,
        duckdbLimitedMs: dl?.median ?? NaN,
        duckdbMs: d!.median,
        coldOverWarm: pairedRatio(c!.times, w!.times),
        coldOverDuckdb: dl === undefined ? NaN : pairedRatio(c!.times, dl.times),
        ...(limitedError === undefined ? {} : { duckdbLimitedError: limitedError }),
        coldReadMiB,
        coldRecycled,
        pastMs: pc!.median,
        pastOverWarm: pairedRatio(pc!.times, w!.times),
        pastReadMiB,
        sameAnswer: sameRows(ours, theirs, q.approx ?? [])
      })
    }
    const diskMiB = await dirMiB(coldDir)
    return { rows, columnBytes, cachedBytes, coldCacheMiB, pastCacheMiB, diskMiB, shoalThreads: pool.workers + 1, duckdbThreads, results }
  } finally {
    for (const c of cons) c.closeSync()
    await pool.close()
    for (const e of engines) await e.close()
    await rm(root, { recursive: true, force: true })
  }
}

export function formatScanBench (r: ScanBench): string {
  const f = (ms: number): string => ms.toFixed(0)
  const lines = [
    `${r.rows.toLocaleString('en-US')} rows in 16 partitions, ${r.diskMiB.toFixed(0)} MiB on disk; the queries read ${(r.columnBytes / MiB).toFixed(0)} MiB of columns as the executor works on them, which the warm cache holds in ${(r.cachedBytes / MiB).toFixed(0)} MiB; ` +
      `cold cache ${r.coldCacheMiB} MiB (DuckDB memory_limit the same), past cache ${r.pastCacheMiB} MiB; Shoal ${r.shoalThreads} threads, DuckDB ${r.duckdbThreads}.`,
    '',
    '| query | Shoal cold (ms) | loaded from files per run (MiB), into recycled memory | Shoal warm (ms) | cold / warm (paired) | DuckDB file, memory_limit (ms) | Shoal cold / DuckDB limited (paired) | DuckDB file, default limit (ms) | Shoal past (ms), loaded (MiB) | past / warm (paired) | same answer |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const x of r.results) {
    const limited = x.duckdbLimitedError !== undefined ? `refused: ${x.duckdbLimitedError} | |` : `${f(x.duckdbLimitedMs)} | ${x.coldOverDuckdb.toFixed(2)}× |`
    lines.push(`| ${x.name} | ${f(x.coldMs)} | ${x.coldReadMiB.toFixed(0)}, ${(100 * x.coldRecycled).toFixed(0)} % | ${f(x.warmMs)} | ${x.coldOverWarm.toFixed(2)}× | ${limited} ${f(x.duckdbMs)} | ${f(x.pastMs)}, ${x.pastReadMiB.toFixed(0)} | ${x.pastOverWarm.toFixed(2)}× | ${x.sameAnswer ? 'yes' : 'NO'} |`)
  }
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = Number(process.argv[2] ?? 4_000_000)
  const rounds = Number(process.argv[3] ?? 5)
  const t0 = performance.now()
  benchScan(rows, rounds).then(r => {
    console.log(formatScanBench(r))
    console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s)`)
    process.exit(0)
  }, (err: unknown) => { console.error(err); process.exit(1) })
}
