/**
 * The saved state of a partition's id index (issue 12): for each segment its live bits, live and
 * tombstone counts and oldest tombstone, the partition's live row and tombstone counts, and the
 * finest anti-entropy digest accumulator. Written as `live-<n>.bin` beside every manifest swap
 * and named by that manifest, so a restart reads these and the segments' index files, never a
 * key or a row.
 *
 * What it describes is the segments alone, at the moment of the swap: the memtable's records are
 * in the WAL files the manifest still lists, and recovery replays them on top. A segment row that
 * a memtable record superseded is saved not live (its bit was cleared when the record came), and
 * the replayed record comes back as new: the counts and the digest are saved the same way (the
 * memtable's records taken out), so replaying them adds each exactly once.
 *
 * Layout (little endian): "SHOALLIV", u32 format, u32 segments, f64 live rows, f64 tombstones,
 * then per segment f64 id, f64 rows, f64 live count, f64 live tombstones, f64 oldest tombstone
 * (Infinity as is), the bits (ceil(rows / 8) bytes); u32 digest buckets, 2 u32 per bucket; last a
 * u32 CRC-32 of everything before it.
 */
import { crc32 } from './crc32.js'

export const LIVE_STATE_MAGIC = 'SHOALLIV'
const FORMAT = 1

export interface SegmentLiveState {
  id: number
  rows: number
  liveCount: number
  liveTombstones: number
  oldestTombstone: number
  live: Uint8Array
}

export interface LiveState {
  liveRows: number
  tombstones: number
  segments: SegmentLiveState[]
  digest: Uint32Array
}

export function liveStateFileName (n: number): string { return `live-${String(n).padStart(8, '0')}.bin` }

/** The sequence number of a `live-<n>.bin` name, undefined for other names. */
export function parseLiveStateFileName (name: string): number | undefined {
  const m = /^live-(\d+)\.bin$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

export function encodeLiveState (s: LiveState): Uint8Array {
  let bytes = 8 + 4 + 4 + 16 + 4 + s.digest.byteLength + 4
  for (const g of s.segments) bytes += 40 + g.live.length
  const out = Buffer.alloc(bytes)
  let o = out.write(LIVE_STATE_MAGIC, 0, 'latin1')
  o = out.writeUInt32LE(FORMAT, o)
  o = out.writeUInt32LE(s.segments.length, o)
  o = out.writeDoubleLE(s.liveRows, o)
  o = out.writeDoubleLE(s.tombstones, o)
  for (const g of s.segments) {
    if (g.live.length !== (g.rows + 7) >> 3) throw new Error(`live state: segment ${g.id} has ${g.live.length} bytes of bits for ${g.rows} rows`)
    o = out.writeDoubleLE(g.id, o)
    o = out.writeDoubleLE(g.rows, o)
    o = out.writeDoubleLE(g.liveCount, o)
    o = out.writeDoubleLE(g.liveTombstones, o)
    o = out.writeDoubleLE(g.oldestTombstone, o)
    out.set(g.live, o)
    o += g.live.length
  }
  o = out.writeUInt32LE(s.digest.length / 2, o)
  for (let i = 0; i < s.digest.length; i++) o = out.writeUInt32LE(s.digest[i]!, o)
  out.writeUInt32LE(crc32(out.subarray(0, o)), o)
  return out
}

/** Decodes and checks a saved state; any fault is an Error naming `path` (the caller rebuilds from the keys). */
export function decodeLiveState (bytes: Uint8Array, path: string): LiveState {
  const bad = (reason: string): Error => new Error(`live state ${path} is unreadable: ${reason}`)
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (b.length < 40) throw bad(`${b.length} bytes`)
  if (b.toString('latin1', 0, 8) !== LIVE_STATE_MAGIC) throw bad('bad magic')
  if (crc32(b.subarray(0, b.length - 4)) !== b.readUInt32LE(b.length - 4)) throw bad('CRC mismatch')
  if (b.readUInt32LE(8) !== FORMAT) throw bad(`format ${b.readUInt32LE(8)}`)
  const count = b.readUInt32LE(12)
  let o = 16
  const need = (n: number): void => { if (o + n > b.length - 4) throw bad(`ends early at byte ${o}`) }
  need(16)
  const liveRows = b.readDoubleLE(o); o += 8
  const tombstones = b.readDoubleLE(o); o += 8
  const segments: SegmentLiveState[] = []
  for (let i = 0; i < count; i++) {
    need(40)
    const id = b.readDoubleLE(o)
    const rows = b.readDoubleLE(o + 8)
    const liveCount = b.readDoubleLE(o + 16)
    const liveTombstones = b.readDoubleLE(o + 24)
    const oldestTombstone = b.readDoubleLE(o + 32)
    o += 40
    if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(liveCount) || liveCount < 0 || liveCount > rows || liveTombstones < 0 || liveTombstones > liveCount) throw bad(`segment ${id}: bad counts`)
    const n = (rows + 7) >> 3
    need(n)
    segments.push({ id, rows, liveCount, liveTombstones, oldestTombstone, live: new Uint8Array(b.subarray(o, o + n)) })
    o += n
  }
  need(4)
  const buckets = b.readUInt32LE(o); o += 4
  need(buckets * 8)
  const digest = new Uint32Array(buckets * 2)
  for (let i = 0; i < digest.length; i++) { digest[i] = b.readUInt32LE(o); o += 4 }
  if (o !== b.length - 4) throw bad(`${b.length - 4 - o} bytes left over`)
  return { liveRows, tombstones, segments, digest }
}
