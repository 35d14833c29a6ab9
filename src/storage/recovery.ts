/**
 * Opening a partition from what is on disk: the segments the manifest lists (each checked
 * against its size and CRC: a mismatch is an error naming the file, never a silent drop), then
 * the WAL files at or after the manifest's `walFrom`, replayed on top (last writer wins, so a
 * record already in a segment is harmless). Files a crash left behind (segments not in the
 * manifest, a manifest's tmp, WAL files before `walFrom`) are deleted; a torn WAL tail is cut;
 * a damaged WAL file is reported (damage.ts) and its good records flushed to a segment at once.
 */
import { join } from 'node:path'
import { crc32 } from './crc32.js'
import type { PartitionContext } from './context.js'
import { DAMAGE_REPORT_SUFFIX, type DamageLog } from './damage.js'
import { removeFiles } from './fsutil.js'
import { decodeLiveState, parseLiveStateFileName } from './live-state.js'
import { MANIFEST_FILE, isSegmentFile } from './manifest.js'
import { Segment, SegmentCorruptError, segmentFileName, type SegmentMeta } from './segment.js'
import { writeSegmentFiles, type SegmentFileMeta } from './segment-file.js'
import { compareVersions, type VersionedRecord } from './types.js'
import { logWalTorn, parseWalFileName, readWalFile, walFileName } from './wal.js'

export interface RecoveryStats {
  segments: number
  segmentRows: number
  walFiles: number
  /** Records read back from the WAL (applied or found stale). */
  walRecords: number
  walBytes: number
  /** Bytes cut off WAL files as torn tails. */
  bytesTruncated: number
  /** Bad regions (one or more bad frames each) found in WAL files, not torn tails: damage. */
  corruptFrames: number
  /** Bytes of those bad regions (their records are lost on this replica). */
  corruptBytes: number
  /** Segment files found on disk but not in the manifest (a flush cut short), deleted. */
  orphanSegments: number
  /** Segments of the first format (decoded whole at open) rewritten in the disk-resident one. */
  segmentsMigrated: number
  /** Whether the live bits were rebuilt from the segments' keys (no usable saved state). */
  liveRebuilt: boolean
  ms: number
}

export type RecoveryContext = Pick<PartitionContext, 'dir' | 'space' | 'clock' | 'log' | 'fs' | 'files' | 'opts' | 'index' | 'memtable' | 'wal' | 'manifest'> & {
  damage: DamageLog
  /** Flushes and retires every WAL file before a new one (the flusher's rotate). */
  rotate: () => Promise<void>
}

/** Recovers the partition into the context's (empty) index, memtable and WAL files; `t0` is when opening began. */
export async function recover (ctx: RecoveryContext, t0: number): Promise<RecoveryStats> {
  const stats: RecoveryStats = { segments: 0, segmentRows: 0, walFiles: 0, walRecords: 0, walBytes: 0, bytesTruncated: 0, corruptFrames: 0, corruptBytes: 0, orphanSegments: 0, segmentsMigrated: 0, liveRebuilt: false, ms: 0 }
  const walSeqs = await sweepDirectory(ctx, stats)
  await migrateSegments(ctx, stats)
  await loadSegments(ctx, stats)
  walSeqs.sort((a, b) => a - b)
  const newDamage = await replayWal(ctx, walSeqs, stats)
  const seq = Math.max(ctx.manifest.walFrom, (walSeqs[walSeqs.length - 1] ?? 0) + 1)
  await ctx.wal.start(seq, walSeqs)
  await ctx.files.run(async () => { await ctx.fs.syncDir(ctx.dir) })
  if (newDamage) {
    // The recovered records go to a segment now, and the damaged files away: read again, they
    // would be reported again (and a later write must not land behind a bad frame).
    await ctx.damage.saveAll()
    await ctx.rotate()
  }
  stats.ms = ctx.clock.now() - t0
  if (stats.walRecords > 0 || stats.segments > 0) ctx.log.info({ ...stats }, 'partition recovered')
  return stats
}

/**
 * Reads the directory: takes up damage reports, deletes what a crash left behind, moves the
 * segment counter past every segment file found; returns the WAL files to replay.
 */
async function sweepDirectory (ctx: RecoveryContext, stats: RecoveryStats): Promise<number[]> {
  const { dir, manifest } = ctx
  const names = await ctx.fs.readdir(dir)
  const listed = new Set(manifest.segments.flatMap(s => isSegmentFile(s) ? [s.file, s.index] : [s.file]))
  const stray: string[] = []
  let maxSegmentOnDisk = 0
  const walSeqs: number[] = []
  for (const name of names) {
    const seg = /^seg-(\d+)\.(arrow|idx)$/.exec(name)
    if (seg !== null) {
      maxSegmentOnDisk = Math.max(maxSegmentOnDisk, Number(seg[1]))
      if (!listed.has(name)) { stray.push(join(dir, name)); if (seg[2] === 'arrow') stats.orphanSegments++ }
      continue
    }
    if (name === MANIFEST_FILE + '.tmp') { stray.push(join(dir, name)); continue }
    const live = parseLiveStateFileName(name)
    if (live !== undefined) {
      manifest.nextLiveId = Math.max(manifest.nextLiveId, live + 1)
      if (name !== manifest.live) stray.push(join(dir, name))
      continue
    }
    if (name.endsWith(DAMAGE_REPORT_SUFFIX)) { await ctx.damage.load(join(dir, name)); continue }
    const seq = parseWalFileName(name)
    if (seq === undefined) continue
    if (seq < manifest.walFrom) stray.push(join(dir, name))
    else walSeqs.push(seq)
  }
  if (manifest.missing && stray.some(p => p.endsWith('.arrow') && !p.endsWith(segmentFileName(1)))) {
    // Only the very first flush can leave a segment without a manifest; more means a lost manifest.
    throw new Error(`partition directory ${dir} holds segment files but no ${MANIFEST_FILE}; refusing to open (it would discard them)`)
  }
  if (stats.orphanSegments > 0) ctx.log.info({ files: stray.filter(p => p.endsWith('.arrow')) }, 'deleting segment files not in the manifest (a flush or compaction cut short)')
  await ctx.files.run(async () => { await removeFiles(ctx.fs, dir, stray) })
  manifest.nextSegmentId = Math.max(manifest.nextSegmentId, maxSegmentOnDisk + 1)
  return walSeqs
}

/**
 * Rewrites each segment of the first format (one Arrow batch, decoded whole into memory; written
 * before issue 12) as a disk-resident one, one at a time, and lists the new ones in the manifest
 * in a single swap; the old files go after it. A crash midway leaves new files the manifest does
 * not list, deleted at the next open, which starts over.
 */
async function migrateSegments (ctx: RecoveryContext, stats: RecoveryStats): Promise<void> {
  const { manifest } = ctx
  const old = manifest.segments.filter(m => !isSegmentFile(m))
  if (old.length === 0) return
  const replaced = new Map<number, SegmentFileMeta>()
  for (const meta of old) {
    const seg = await readFirstFormat(ctx, meta)
    const schema = ctx.space().schema
    const records: VersionedRecord[] = []
    for (let row = 0; row < seg.rows; row++) records.push(seg.record(row, schema))
    replaced.set(meta.id, await writeSegmentFiles(ctx.dir, manifest.nextSegmentId++, schema, records, { fs: ctx.fs, files: ctx.files }))
    stats.segmentsMigrated++
  }
  // No saved state with it: the segments are not loaded yet (loadSegments rebuilds and saves it).
  await manifest.update(m => ({ ...m, nextSegment: manifest.nextSegmentId, segments: m.segments.map(x => replaced.get(x.id) ?? x) }), false)
  await ctx.files.run(async () => { await removeFiles(ctx.fs, ctx.dir, old.map(m => join(ctx.dir, m.file))) })
  ctx.log.info({ segments: old.length }, 'segments of the first format rewritten in the disk-resident format')
}

/** A first-format segment, read whole and checked against the manifest's size and CRC. */
async function readFirstFormat (ctx: RecoveryContext, meta: SegmentMeta): Promise<Segment> {
  const path = join(ctx.dir, meta.file)
  let bytes: Buffer
  try {
    const read = await ctx.files.run(async () => await ctx.fs.readFile(path))
    if (read === undefined) throw new Error('the file is missing')
    bytes = Buffer.from(read.buffer, read.byteOffset, read.byteLength)
  } catch (err) {
    throw new SegmentCorruptError(path, `listed in the manifest but unreadable: ${(err as Error).message}`, { cause: err })
  }
  if (bytes.length !== meta.bytes) throw new SegmentCorruptError(path, `is ${bytes.length} bytes, the manifest says ${meta.bytes}`)
  const crc = crc32(bytes)
  if (crc !== meta.crc32) throw new SegmentCorruptError(path, `CRC-32 ${crc.toString(16)} differs from the manifest's ${meta.crc32.toString(16)}`)
  return Segment.decode(meta, path, bytes)
}

/**
 * Opens every listed segment (its index file, checked against the manifest; the rows stay on
 * disk), then takes the id index's saved state: each segment's live bits, the counts and the
 * digest (live-state.ts). Without a usable one (a partition from before it was saved, or a bad
 * file) the state is rebuilt from every segment's keys, once, and saved.
 */
async function loadSegments (ctx: RecoveryContext, stats: RecoveryStats): Promise<void> {
  const { index, manifest } = ctx
  for (const meta of manifest.segments) {
    if (!isSegmentFile(meta)) throw new Error(`segment ${meta.file} of the first format is still listed after migration`)
    let seg
    try {
      seg = await manifest.openSegment(meta)
    } catch (err) {
      if (err instanceof SegmentCorruptError) throw err
      throw new SegmentCorruptError(join(ctx.dir, meta.file), `listed in the manifest but unreadable: ${(err as Error).message}`, { cause: err })
    }
    index.addSegment(seg)
    stats.segments++
    stats.segmentRows += seg.rows
  }
  if (index.segments.size === 0) return
  const saved = manifest.live
  if (saved !== undefined) {
    const path = join(ctx.dir, saved)
    try {
      const bytes = await ctx.files.run(async () => await ctx.fs.readFile(path))
      if (bytes === undefined) throw new Error('the file is missing')
      const state = decodeLiveState(bytes, path)
      if (index.restore(state)) return
      ctx.log.warn({ file: path }, 'the saved live state does not describe the manifest\'s segments; rebuilding it from their keys')
    } catch (err) {
      ctx.log.warn({ err, file: path }, 'the saved live state is unreadable; rebuilding it from the segments\' keys')
    }
  }
  await rebuildLive(ctx)
  stats.liveRebuilt = true
  await manifest.update(m => m)
}

/**
 * The live bits, counts and digest from the segments' keys (newest version wins; each segment's
 * rows checked against those of the segments before it): what a partition without a saved state
 * needs once. Reads every key; ids are not kept.
 */
async function rebuildLive (ctx: RecoveryContext): Promise<void> {
  const { index } = ctx
  for (const seg of index.segments.values()) {
    // Nothing else runs during recovery: what a lookup answers holds until the put.
    await seg.readKeys(async (id, row, version, deleted) => {
      const cur = await index.currentEntry(id)
      let wins = cur === undefined ? true : index.winsByVersion(version, deleted, cur)
      // Same version, both live: the contents decide (rare: two writes given one HLC).
      if (wins === undefined) wins = compareVersions(await seg.record(row, ctx.space().schema), await index.materialize(cur!)) > 0
      if (wins) index.putRow(id, seg, row, version, deleted, cur)
    })
  }
}

/** WAL records replayed between two yields to the event loop (about 5 ms of work). */
const REPLAY_STEP = 1024

/** Replays the WAL files `walSeqs` (sorted) into the memtable; returns whether any was damaged. */
async function replayWal (ctx: RecoveryContext, walSeqs: readonly number[], stats: RecoveryStats): Promise<boolean> {
  // Ids the Bloom filters cannot rule out (about 1 % a segment) are looked up in blocks that the
  // replay will not come back to: read, not cached.
  ctx.index.transientKeyReads = true
  try {
    return await replayWalFiles(ctx, walSeqs, stats)
  } finally {
    ctx.index.transientKeyReads = false
  }
}

async function replayWalFiles (ctx: RecoveryContext, walSeqs: readonly number[], stats: RecoveryStats): Promise<boolean> {
  const { index, memtable } = ctx
  let newDamage = false
  for (const seq of walSeqs) {
    const path = join(ctx.dir, walFileName(seq))
    const r = await ctx.files.run(async () => await readWalFile(ctx.fs, path, { chunkBytes: ctx.opts.walReadChunkBytes, maxFrameBytes: ctx.opts.maxFrameBytes }))
    stats.walFiles++
    stats.walRecords += r.records.length
    stats.walBytes += r.goodBytes
    if (r.corrupt.length > 0) {
      stats.corruptBytes += await ctx.damage.found(path, r)
      stats.corruptFrames += r.corrupt.length
      newDamage = true
    }
    if (r.torn !== undefined) {
      logWalTorn(ctx.log, path, r)
      stats.bytesTruncated += r.fileBytes - r.goodBytes
      await ctx.files.run(async () => {
        const fh = await ctx.fs.open(path, 'r+')
        try {
          await fh.truncate(r.goodBytes)
          await fh.sync()
        } finally {
          await fh.close()
        }
      })
    }
    let sinceYield = 0
    for (const rec of r.records) {
      const p = index.putIfNewer(rec, () => { memtable.records.push(rec) })
      if (typeof p !== 'boolean') await p
      // A restart replays up to memtableMaxRows records a partition, all partitions at once, at a
      // few µs each: in one go they held the event loop 300-550 ms (membership probes unanswered).
      if (++sinceYield === REPLAY_STEP) { sinceYield = 0; await new Promise(resolve => setImmediate(resolve)) }
    }
    memtable.bytes += r.goodBytes
  }
  return newDamage
}
