/**
 * Disk-resident segment files (src/storage/segment-file.ts) against today's in-heap Segment, on
 * one segment of `rows` rows of (id utf8, n int64, amount float64, name utf8):
 *
 * - write: writeSegmentFiles (key sort, Arrow batches, directory, key index, two fsyncs) against
 *   encodeSegment plus one durable write;
 * - open: SegmentFile.open (the .idx header, directory, Bloom filter and sparse index) at 1/10 and
 *   all of the rows, against reading the file and Segment.decode;
 * - one numeric column of every batch: cold (empty block cache, page cache warm: the file was just
 *   written) and warm (the cache holds it), against Segment.column on a decoded segment;
 * - what one positional read costs with the descriptor kept open against open + read + close.
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/segment-file.js [rows]
 *
 * Not part of `npm run bench`. Each figure is the best of a few runs (see timeIt).
 */
import '../../src/polyfill/index.js'
import { nodeFileSystem } from '../../src/runtime/index.js'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { makeHlc } from '../../src/hlc/index.js'
import { newRow, parseSchemaSpec } from '../../src/schema/index.js'
import { BlockCache } from '../../src/storage/block-cache.js'
import { FilePool } from '../../src/storage/files.js'
import { writeFileDurable } from '../../src/storage/fsutil.js'
import { encodeKeyIndex, keyOrder } from '../../src/storage/key-index.js'
import { Segment, encodeSegment } from '../../src/storage/segment.js'
import { SegmentFile, writeSegmentFiles, type SegmentFileMeta } from '../../src/storage/segment-file.js'
import type { VersionedRecord } from '../../src/storage/types.js'

const schema = parseSchemaSpec('id:utf8,n:int64,amount:float64,name:utf8')
const NAMES = Array.from({ length: 1000 }, (_, i) => `customer-${i}`)

function records (n: number): VersionedRecord[] {
  const out = new Array<VersionedRecord>(n)
  for (let i = 0; i < n; i++) {
    const id = `user-${i.toString(36).padStart(8, '0')}`
    const row = newRow()
    row.id = id
    row.n = i * 7
    row.amount = (i % 10_000) / 100
    row.name = NAMES[i % NAMES.length]!
    out[i] = { id, version: makeHlc(1_700_000_000_000 + i, 0), deleted: false, row }
  }
  return out
}


/**
 * Best of `runs` (wall ms): on a shared machine the other processes only ever add time, so the
 * minimum is the figure least disturbed by them.
 */
async function timeIt<T> (runs: number, fn: () => Promise<T>): Promise<{ ms: number, last: T }> {
  const times: number[] = []
  let last: T | undefined
  for (let i = 0; i < runs; i++) {
    const t = performance.now()
    last = await fn()
    times.push(performance.now() - t)
  }
  return { ms: Math.min(...times), last: last! }
}

async function main (): Promise<void> {
  const rows = Number(process.argv[2] ?? 1_000_000)
  const dir = await mkdtemp(join(tmpdir(), 'shoal-segbench-'))
  const files = new FilePool(64)
  try {
    const recs = records(rows)
    const fmt = (x: number): string => x.toFixed(1)

    // Write
    let id = 0
    // CPU time beside wall time: the fsyncs (85 MB here) wait on a disk other processes share.
    const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
    const cpuOf = async <T>(runs: number, fn: () => Promise<T>): Promise<{ ms: number, cpu: number, last: T }> => {
      let cpu = Infinity
      const r = await timeIt(runs, async () => { const c = cpuMs(); const out = await fn(); cpu = Math.min(cpu, cpuMs() - c); return out })
      return { ...r, cpu }
    }
    const write = await cpuOf(4, async () => await writeSegmentFiles(dir, ++id, schema, recs))
    const meta: SegmentFileMeta = write.last
    const oldPath = join(dir, 'old.arrow')
    const oldWrite = await cpuOf(4, async () => { const b = encodeSegment(schema, recs); await writeFileDurable(nodeFileSystem, oldPath, b); return b.length })
    console.log(`rows ${rows}: .arrow ${(meta.bytes / 2 ** 20).toFixed(1)} MiB in ${meta.batches} batches, .idx ${(meta.indexBytes / 2 ** 10).toFixed(1)} KiB; old file ${(oldWrite.last / 2 ** 20).toFixed(1)} MiB`)
    // The parts of the write that are the key index's (key-index.ts), timed alone on the same ids.
    const ids = recs.map(r => r.id)
    const order = await cpuOf(3, async () => keyOrder(ids))
    const entries = Array.from(order.last, o => ({ id: recs[o]!.id, version: recs[o]!.version, deleted: recs[o]!.deleted }))
    const kix = await cpuOf(3, async () => encodeKeyIndex(entries))
    console.log(`write (wall / CPU ms): segment files ${fmt(write.ms)} / ${fmt(write.cpu)} (of which key order ${fmt(order.ms)} / ${fmt(order.cpu)}, key-index section ${fmt(kix.ms)} / ${fmt(kix.cpu)}); old encodeSegment + durable write ${fmt(oldWrite.ms)} / ${fmt(oldWrite.cpu)}`)

    // Open
    const small = await writeSegmentFiles(dir, 1000, schema, recs.slice(0, Math.max(1, Math.floor(rows / 10))))
    const openOf = async (m: SegmentFileMeta): Promise<{ ms: number, resident: number, keys: number }> => {
      let resident = 0
      let keys = 0
      const r = await timeIt(7, async () => { const s = await SegmentFile.open(dir, m, { files, cache: new BlockCache(1 << 30) }); resident = s.residentBytes; keys = s.keys.residentBytes; await s.close() })
      return { ms: r.ms, resident, keys }
    }
    const o1 = await openOf(small)
    const o2 = await openOf(meta)
    const oldOpen = await timeIt(3, async () => { const b = await readFile(oldPath); return Segment.decode({ id: 0, file: 'old.arrow', rows, bytes: b.length, crc32: 0 }, oldPath, b) })
    const kib = (x: number): string => (x / 1024).toFixed(1)
    console.log(`open: ${small.rows} rows ${fmt(o1.ms)} ms (resident ${kib(o1.resident)} KiB: directory ${kib(o1.resident - o1.keys)}, key index ${kib(o1.keys)}); ` +
      `${rows} rows ${fmt(o2.ms)} ms (resident ${kib(o2.resident)} KiB, ${(o2.resident / rows).toFixed(2)} B/row: directory ${kib(o2.resident - o2.keys)}, key index ${kib(o2.keys)}); old read + Segment.decode ${fmt(oldOpen.ms)} ms`)

    // One numeric column of every batch
    for (const [col, type] of [['amount', 'float64'], ['n', 'int64'], ['name', 'utf8']] as const) {
      const coldRuns: number[] = []
      for (let run = 0; run < 5; run++) {
        const seg = await SegmentFile.open(dir, meta, { files, cache: new BlockCache(1 << 30) })
        const t = performance.now()
        for (let b = 0; b < seg.batches; b++) await seg.column(b, col, type)
        coldRuns.push(performance.now() - t)
        await seg.close()
      }
      const cache = new BlockCache(1 << 30)
      const seg = await SegmentFile.open(dir, meta, { files, cache })
      for (let b = 0; b < seg.batches; b++) await seg.column(b, col, type)
      const warm = await timeIt(9, async () => { for (let b = 0; b < seg.batches; b++) await seg.column(b, col, type) })
      await seg.close()
      const oldRuns: number[] = []
      for (let run = 0; run < 3; run++) {
        const fresh = Segment.decode(oldOpen.last.meta, oldPath, await readFile(oldPath))
        const t = performance.now()
        fresh.column(col, type)
        oldRuns.push(performance.now() - t)
      }
      console.log(`${col} (${type}) of every batch: cold ${fmt(Math.min(...coldRuns))} ms, warm ${(warm.ms * 1000).toFixed(0)} µs; old Segment.column (already decoded table) ${fmt(Math.min(...oldRuns))} ms`)
    }

    // Descriptor kept open against open per read (one 512 KiB column chunk, page cache warm)
    const seg = await SegmentFile.open(dir, meta, { files, cache: new BlockCache(1 << 30) })
    const r = seg.columnRange(0, 'amount')!
    await seg.close()
    const fh = await open(join(dir, meta.file), 'r')
    const buf = new Uint8Array(r.length)
    // Interleaved, so both see the same machine; the median of each.
    const keptT: number[] = []
    const perReadT: number[] = []
    for (let i = 0; i < 300; i++) {
      let t = performance.now()
      await fh.read(buf, 0, r.length, r.offset)
      keptT.push(performance.now() - t)
      t = performance.now()
      const f = await open(join(dir, meta.file), 'r')
      await f.read(buf, 0, r.length, r.offset)
      await f.close()
      perReadT.push(performance.now() - t)
    }
    await fh.close()
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
    const kept = med(keptT)
    const perRead = med(perReadT)
    console.log(`one ${(r.length / 1024).toFixed(0)} KiB column read: descriptor kept ${(kept * 1000).toFixed(0)} µs, open + read + close ${(perRead * 1000).toFixed(0)} µs`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
