/**
 * Compaction benchmark (issue 12): one partition of `rows` rows of (utf8 id, int64, float64,
 * utf8) in 8 flushed segments, then a full compaction, timed, with the event loop's longest
 * stall while it runs (perf_hooks.monitorEventLoopDelay: a peer whose loop stalls longer than
 * its SWIM probe timeout gets suspected) and the process's peak resident memory.
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/compaction.js [rows]
 */
import '../../src/polyfill/index.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { makeHlc } from '../../src/hlc/index.js'
import { SystemClock, silentLogger } from '../../src/runtime/index.js'
import { parseSchemaSpec, type SpaceDef } from '../../src/schema/index.js'
import { LocalPartitionStore, type VersionedRecord } from '../../src/storage/index.js'

export interface CompactionBenchResult {
  rows: number
  segmentsIn: number
  compactMs: number
  maxStallMs: number
  p99StallMs: number
  rssBeforeMiB: number
  peakRssMiB: number
}

const space: SpaceDef = { name: 'bench', uid: 'bench@1', schema: parseSchemaSpec('id:utf8,n:int64,x:float64,s:utf8'), partitions: 1, replicas: 1 }

async function rssMiB (): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '')
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status)
  return m === null ? 0 : Number(m[1]) / 1024
}

export async function benchCompaction (rows: number): Promise<CompactionBenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-bench-compaction-'))
  try {
    const perSegment = Math.ceil(rows / 8)
    const store = await LocalPartitionStore.open({ clock: new SystemClock(), log: silentLogger }, space, 0, dir, {
      compactionCheckIntervalMs: 0, memtableMaxRows: Number.MAX_SAFE_INTEGER, memtableMaxBytes: Number.MAX_SAFE_INTEGER, compactionMaxSegments: 1000
    })
    const now = Date.now()
    for (let start = 0; start < rows; start += perSegment) {
      for (let i = start; i < Math.min(rows, start + perSegment); i += 5000) {
        const batch: VersionedRecord[] = []
        for (let k = i; k < Math.min(rows, start + perSegment, i + 5000); k++) {
          const id = `r${k}`
          batch.push({ id, version: makeHlc(now, k % 60000), deleted: false, row: { id, n: k, x: k * 0.5, s: `name-${k % 1000}` } })
        }
        await store.apply(batch)
      }
      await store.flush()
    }
    const segmentsIn = store.stats().segments
    const rssBeforeMiB = await rssMiB()
    let peakRssMiB = rssBeforeMiB
    const sampler = setInterval(() => { void rssMiB().then(r => { peakRssMiB = Math.max(peakRssMiB, r) }) }, 50)
    const loop = monitorEventLoopDelay({ resolution: 5 })
    loop.enable()
    const t0 = performance.now()
    await store.compact()
    const compactMs = performance.now() - t0
    loop.disable()
    clearInterval(sampler)
    await store.close()
    return { rows, segmentsIn, compactMs, maxStallMs: loop.max / 1e6, p99StallMs: loop.percentile(99) / 1e6, rssBeforeMiB, peakRssMiB }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export function formatCompactionBench (r: CompactionBenchResult): string {
  return [
    '| rows | segments in | full compaction (ms) | longest event-loop stall (ms) | p99 stall (ms) | RSS before (MiB) | peak RSS during (MiB) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    `| ${r.rows.toLocaleString('en-US')} | ${r.segmentsIn} | ${r.compactMs.toFixed(0)} | ${r.maxStallMs.toFixed(0)} | ${r.p99StallMs.toFixed(1)} | ${r.rssBeforeMiB.toFixed(0)} | ${r.peakRssMiB.toFixed(0)} |`
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(formatCompactionBench(await benchCompaction(Number(process.argv[2] ?? 1_000_000))))
}
