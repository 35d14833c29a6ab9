/**
 * The key-index section (src/storage/key-index.ts) against lmdb (memory-mapped B+tree, msgpack
 * values) holding the same `id -> { row, version, deleted }`, printed as Markdown:
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/key-index.js [entries] [rounds]
 *
 * Random ids of 10-30 characters (default 1,000,000). Build: sort into key order, encode, write
 * and fsync the file, open it (the key index); one write transaction of every put, committed and
 * synced (lmdb). Point gets with a warm cache (every block decoded in the block cache; every lmdb
 * page touched once), present and absent ids, timed one call at a time; the two are measured in
 * interleaved rounds (A, B, A, B; with a third, the key index through a plain Map,
 * to show what of a get is the cache's bookkeeping) and the medians of the rounds' percentiles reported, so drift of
 * a shared machine hits both alike.
 */
import { mkdtemp, open as openFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { SeededRandom } from '../../src/runtime/index.js'
import { BlockCache } from '../../src/storage/block-cache.js'
import { encodeKeyIndex, KeyIndex, keyOrder, openFileSource, type KeyIndexEntry } from '../../src/storage/key-index.js'

export interface KeyIndexBenchSide {
  buildMs: number
  /** Bytes on disk. */
  diskBytes: number
  /** Medians over rounds of each round's percentile, µs per get. */
  present: { p50Us: number, p99Us: number }
  absent: { p50Us: number, p99Us: number }
}

export interface KeyIndexBenchResult {
  entries: number
  rounds: number
  getsPerRound: number
  keyIndex: KeyIndexBenchSide & {
    sortMs: number
    encodeMs: number
    blocks: number
    /** Held while open: Bloom filter and sparse index. */
    residentBytes: number
    /** The block cache's bytes once every block was read. */
    cacheBytes: number
  }
  /**
   * The key index through a plain Map in place of the block cache (no LRU bookkeeping, no
   * bound): not a configuration to run, only to show what of a get is the cache's.
   */
  keyIndexBareMap: { present: { p50Us: number, p99Us: number }, absent: { p50Us: number, p99Us: number } }
  /** Undefined when lmdb does not load here (its native binary). */
  lmdb?: KeyIndexBenchSide
  lmdbError?: string
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'
function randomId (rng: SeededRandom): string {
  const n = 10 + rng.int(21)
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[rng.int(ALPHABET.length)]
  return s
}

function percentile (sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

function median (xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Per-call latencies (µs) of `get` over `ids`, sorted; checks each answer with `check`. */
async function timeGets (ids: readonly string[], get: (id: string) => unknown, check: (id: string, v: unknown) => void): Promise<Float64Array> {
  const out = new Float64Array(ids.length)
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!
    const t0 = performance.now()
    let v = get(id)
    if (v instanceof Promise) v = await v
    out[i] = (performance.now() - t0) * 1000
    check(id, v)
  }
  return out.sort()
}

export async function benchKeyIndex (opts: { entries?: number, rounds?: number, getsPerRound?: number } = {}): Promise<KeyIndexBenchResult> {
  const n = opts.entries ?? 1_000_000
  const rounds = opts.rounds ?? 5
  const gets = Math.min(opts.getsPerRound ?? 50_000, n)
  const rng = new SeededRandom(12)
  const seen = new Set<string>()
  const ids: string[] = []
  while (ids.length < n) {
    const id = randomId(rng)
    if (!seen.has(id)) { seen.add(id); ids.push(id) }
  }
  const versions = Array.from({ length: n }, () => 1_700_000_000_000 * 1024 + rng.int(1 << 30))
  const deleted = Array.from({ length: n }, () => rng.int(20) === 0)
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-key-index-'))
  try {
    // ---- key index: build
    const t0 = performance.now()
    const order = keyOrder(ids)
    const t1 = performance.now()
    const entries: KeyIndexEntry[] = Array.from(order, i => ({ id: ids[i]!, version: versions[i]!, deleted: deleted[i]! }))
    const rowOf = new Map<string, number>()
    entries.forEach((e, row) => rowOf.set(e.id, row))
    const t2 = performance.now()
    const section = encodeKeyIndex(entries)
    const t3 = performance.now()
    const path = join(dir, 'seg.idx')
    const fh = await openFile(path, 'w')
    await fh.write(section, 0, section.length, 0)
    await fh.sync()
    await fh.close()
    const source = await openFileSource(path)
    const cache = new BlockCache(1 << 30)
    const index = await KeyIndex.open(source, 0, section.length, cache, path)
    const t4 = performance.now()
    const encodeMs = t3 - t2
    const keyIndexBuildMs = (t1 - t0) + (t4 - t2)
    // Warm: every block decoded into the cache.
    for await (const e of index.entries()) void e
    const bareMap = new Map<string, unknown>()
    const bare = await KeyIndex.open(source, 0, section.length, {
      getOrLoad: async <T>(key: string, load: () => Promise<{ value: T, bytes: number }>) => {
        const v = bareMap.get(key) as T | undefined
        if (v !== undefined) return v
        const { value } = await load()
        bareMap.set(key, value)
        return value
      },
      get: <T>(key: string) => bareMap.get(key) as T | undefined,
      set: (key: string, value: unknown) => { bareMap.set(key, value) },
      countLoad: () => {}
    }, path)
    for await (const e of bare.entries()) void e

    // ---- lmdb: build (one transaction of every put, committed and synced)
    let lmdb: { get: (id: string) => unknown, close: () => Promise<void>, buildMs: number, dir: string } | undefined
    let lmdbError: string | undefined
    try {
      const { open } = await import('lmdb')
      const lmdbDir = join(dir, 'lmdb')
      const t5 = performance.now()
      const db = open<{ row: number, version: number, deleted: boolean }, string>({ path: lmdbDir, sharedStructuresKey: Symbol.for('structures') })
      // Puts in the ids' random order, as a store fed by writes would see them.
      await db.transaction(() => {
        for (let i = 0; i < n; i++) void db.put(ids[i]!, { row: rowOf.get(ids[i]!)!, version: versions[i]!, deleted: deleted[i]! })
      })
      const buildMs = performance.now() - t5
      for (const id of ids) db.get(id) // warm: every page touched
      lmdb = { get: id => db.get(id), close: async () => { await db.close() }, buildMs, dir: lmdbDir }
    } catch (err) {
      lmdbError = (err as Error).message
    }

    // ---- gets, interleaved rounds
    const present = Array.from({ length: gets }, () => ids[rng.int(n)]!)
    const absent: string[] = []
    while (absent.length < gets) {
      const id = randomId(rng)
      if (!seen.has(id)) absent.push(id)
    }
    const expectPresent = (id: string, v: unknown): void => {
      const r = v as { row: number } | undefined
      if (r?.row !== rowOf.get(id)) throw new Error(`wrong answer for ${id}: ${JSON.stringify(v)}`)
    }
    const expectAbsent = (id: string, v: unknown): void => { if (v !== undefined) throw new Error(`absent ${id} found: ${JSON.stringify(v)}`) }
    const ki = { p50: [] as number[], p99: [] as number[], a50: [] as number[], a99: [] as number[] }
    const bm = { p50: [] as number[], p99: [] as number[], a50: [] as number[], a99: [] as number[] }
    const lookupBare = async (id: string): Promise<unknown> => await bare.lookup(id)
    const lm = { p50: [] as number[], p99: [] as number[], a50: [] as number[], a99: [] as number[] }
    const lookup = async (id: string): Promise<unknown> => await index.lookup(id)
    for (let r = 0; r < rounds; r++) {
      let s = await timeGets(present, lookup, expectPresent)
      ki.p50.push(percentile(s, 0.5)); ki.p99.push(percentile(s, 0.99))
      s = await timeGets(absent, lookup, expectAbsent)
      ki.a50.push(percentile(s, 0.5)); ki.a99.push(percentile(s, 0.99))
      s = await timeGets(present, lookupBare, expectPresent)
      bm.p50.push(percentile(s, 0.5)); bm.p99.push(percentile(s, 0.99))
      s = await timeGets(absent, lookupBare, expectAbsent)
      bm.a50.push(percentile(s, 0.5)); bm.a99.push(percentile(s, 0.99))
      if (lmdb !== undefined) {
        s = await timeGets(present, lmdb.get, expectPresent)
        lm.p50.push(percentile(s, 0.5)); lm.p99.push(percentile(s, 0.99))
        s = await timeGets(absent, lmdb.get, expectAbsent)
        lm.a50.push(percentile(s, 0.5)); lm.a99.push(percentile(s, 0.99))
      }
    }
    await source.close()
    let lmdbSide: KeyIndexBenchSide | undefined
    if (lmdb !== undefined) {
      await lmdb.close()
      lmdbSide = {
        buildMs: lmdb.buildMs,
        diskBytes: (await stat(join(lmdb.dir, 'data.mdb')).catch(async () => await stat(lmdb!.dir))).size,
        present: { p50Us: median(lm.p50), p99Us: median(lm.p99) },
        absent: { p50Us: median(lm.a50), p99Us: median(lm.a99) }
      }
    }
    return {
      entries: n,
      rounds,
      getsPerRound: gets,
      keyIndex: {
        buildMs: keyIndexBuildMs,
        sortMs: t1 - t0,
        encodeMs,
        diskBytes: section.length,
        blocks: index.blockCount,
        residentBytes: index.residentBytes,
        cacheBytes: cache.stats().bytes,
        present: { p50Us: median(ki.p50), p99Us: median(ki.p99) },
        absent: { p50Us: median(ki.a50), p99Us: median(ki.a99) }
      },
      keyIndexBareMap: { present: { p50Us: median(bm.p50), p99Us: median(bm.p99) }, absent: { p50Us: median(bm.a50), p99Us: median(bm.a99) } },
      lmdb: lmdbSide,
      lmdbError
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export function formatKeyIndexBench (r: KeyIndexBenchResult): string {
  const mb = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`
  const us = (x: number): string => `${x.toFixed(2)} µs`
  const k = r.keyIndex
  const l = r.lmdb
  const ratio = (a: number, b: number | undefined): string => b === undefined ? '' : ` (${(a / b).toFixed(2)}×)`
  const lines = [
    `${r.entries.toLocaleString('en-US')} random ids of 10-30 characters; ${r.rounds} interleaved rounds of ${r.getsPerRound.toLocaleString('en-US')} present and ${r.getsPerRound.toLocaleString('en-US')} absent gets each, warm; medians of the rounds' percentiles. Ratio: key index / lmdb.`,
    '',
    '| | key index (SSTable-style section) | lmdb (msgpack values) |',
    '| --- | --- | --- |',
    `| build (ms) | ${k.buildMs.toFixed(0)} (sort ${k.sortMs.toFixed(0)}, encode ${k.encodeMs.toFixed(0)}, write + fsync + open the rest)${ratio(k.buildMs, l?.buildMs)} | ${l === undefined ? 'n/a' : l.buildMs.toFixed(0)} |`,
    `| on disk | ${mb(k.diskBytes)} | ${l === undefined ? 'n/a' : mb(l.diskBytes)} |`,
    `| present get p50 / p99 | ${us(k.present.p50Us)}${ratio(k.present.p50Us, l?.present.p50Us)} / ${us(k.present.p99Us)}${ratio(k.present.p99Us, l?.present.p99Us)} | ${l === undefined ? 'n/a' : `${us(l.present.p50Us)} / ${us(l.present.p99Us)}`} |`,
    `| absent get p50 / p99 | ${us(k.absent.p50Us)}${ratio(k.absent.p50Us, l?.absent.p50Us)} / ${us(k.absent.p99Us)}${ratio(k.absent.p99Us, l?.absent.p99Us)} | ${l === undefined ? 'n/a' : `${us(l.absent.p50Us)} / ${us(l.absent.p99Us)}`} |`,
    `| memory | resident ${mb(k.residentBytes)} (Bloom + sparse index of ${k.blocks.toLocaleString('en-US')} blocks); all blocks in the cache ${mb(k.cacheBytes)} | the mapped pages touched (up to the file) count in the process's resident set |`
  ]
  const b = r.keyIndexBareMap
  lines.push('', `The key index through a plain Map instead of the block cache (no LRU bookkeeping; attribution only): present ${us(b.present.p50Us)} / ${us(b.present.p99Us)}, absent ${us(b.absent.p50Us)} / ${us(b.absent.p99Us)}.`)
  if (r.lmdbError !== undefined) lines.push('', `lmdb did not load: ${r.lmdbError}`)
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const entries = Number(process.argv[2] ?? 1_000_000)
  const rounds = Number(process.argv[3] ?? 5)
  console.log('## Key index: SSTable-style section against lmdb\n')
  console.log(formatKeyIndexBench(await benchKeyIndex({ entries, rounds })))
}
