import { describe, expect, it } from 'vitest'
import {
  BackupPartitionUnavailableError, BackupService, bucketCount, PartitionSnapshot, type ReplicaReader, type SnapshotDeps
} from '../../src/backup/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { checkSchema, type SpaceDef } from '../../src/schema/index.js'
import type { VersionedRecord } from '../../src/storage/index.js'
import { stableHash } from '../../src/storage/hash.js'

const space: SpaceDef = { name: 's', uid: 's-1', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int32' }]), partitions: 4, replicas: 3 }
const rec = (id: string, version: number, v: number | null = 1): VersionedRecord =>
  v === null ? { id, version, deleted: true, row: null } : { id, version, deleted: false, row: { id, v } }

/** Replicas as maps of records; `down` ones fail every request, `failAfter` ones fail after that many bucket reads. */
class FakeReplicas implements ReplicaReader {
  readonly held = new Map<string, Map<string, VersionedRecord>>()
  readonly down = new Set<string>()
  readonly failAfter = new Map<string, number>()
  /** Buckets answering more records than this fail as too large for a frame. */
  maxFrameRecords = Infinity
  bucketReads = 0

  put (peer: string, ...records: VersionedRecord[]): void {
    let m = this.held.get(peer)
    if (m === undefined) { m = new Map(); this.held.set(peer, m) }
    for (const r of records) m.set(r.id, r)
  }

  async count (peer: string): Promise<number> {
    if (this.down.has(peer)) throw Object.assign(new Error('timed out'), { code: 'TIMEOUT' })
    return this.held.get(peer)?.size ?? 0
  }

  async bucket (peer: string, _space: SpaceDef, _partition: number, index: number, buckets: number): Promise<VersionedRecord[]> {
    this.bucketReads++
    if (this.down.has(peer)) throw Object.assign(new Error('timed out'), { code: 'TIMEOUT' })
    const left = this.failAfter.get(peer)
    if (left !== undefined) {
      if (left <= 0) throw Object.assign(new Error('peer went away'), { code: 'UNREACHABLE' })
      this.failAfter.set(peer, left - 1)
    }
    const out = [...(this.held.get(peer)?.values() ?? [])].filter(r => stableHash(r.id) % buckets === index)
    if (out.length > this.maxFrameRecords) throw Object.assign(new Error('frame too large'), { code: 'FRAME_TOO_LARGE' })
    return out
  }
}

/** `peers` ready (and the owners, unless `owners` says otherwise). */
function deps (replicas: FakeReplicas, peers = ['a', 'b', 'c'], reachable = (_p: string) => true, owners = peers): SnapshotDeps {
  return { locate: () => ({ owners, readReplicas: peers, quorum: Math.floor(peers.length / 2) + 1 }), isReachable: reachable, reader: replicas, nameOf: p => `peer-${p}` }
}

async function readAll (snap: PartitionSnapshot): Promise<Map<string, VersionedRecord>> {
  const out = new Map<string, VersionedRecord>()
  for await (const batch of snap.read()) for (const r of batch) {
    expect(out.has(r.id)).toBe(false)
    out.set(r.id, r)
  }
  return out
}

describe('PartitionSnapshot', () => {
  it('merges every replica newest version first: a QUORUM write missing from one replica is kept', async () => {
    const r = new FakeReplicas()
    // 'x' acknowledged by a and b (c missed it); 'y' updated on b and c only; 'z' deleted on a and c.
    r.put('a', rec('x', 10), rec('y', 5, 1), rec('z', 7, 1), rec('w', 3))
    r.put('b', rec('x', 10), rec('y', 9, 2), rec('w', 3))
    r.put('c', rec('y', 9, 2), rec('z', 8, null), rec('w', 3))
    const snap = await PartitionSnapshot.open(deps(r), space, 0, { recordsPerBucket: 1 })
    expect(snap.replicas).toEqual(['a', 'b', 'c'])
    expect(snap.buckets).toBe(4)
    const got = await readAll(snap)
    expect([...got.values()].sort((p, q) => p.id.localeCompare(q.id))).toEqual([rec('w', 3), rec('x', 10), rec('y', 9, 2), rec('z', 8, null)])
    expect(snap.records).toBe(4)
    expect(snap.tombstones).toBe(1)
  })

  it('fails naming the partition when fewer than a majority of its replicas answer', async () => {
    const r = new FakeReplicas()
    r.put('a', rec('x', 1))
    r.down.add('b')
    const err = await PartitionSnapshot.open(deps(r, ['a', 'b', 'c'], p => p !== 'c'), space, 2).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BackupPartitionUnavailableError)
    const e = err as BackupPartitionUnavailableError
    expect([e.space, e.partition, e.needed, e.answered]).toEqual(['s', 2, 2, 1])
    expect(e.message).toBe("partition 2 of space 's' cannot be backed up consistently: 1 of the 2 replicas needed (a majority) answered (peer-c: unreachable; peer-b: TIMEOUT: timed out)")
  })

  it('goes on with a majority when one replica fails part way, and stops asking it', async () => {
    const r = new FakeReplicas()
    for (let i = 0; i < 200; i++) for (const p of ['a', 'b', 'c']) r.put(p, rec(`k${i}`, i + 1))
    r.failAfter.set('c', 3)
    const snap = await PartitionSnapshot.open(deps(r), space, 0, { recordsPerBucket: 10, bucketsInFlight: 1 })
    expect(snap.buckets).toBe(32)
    expect((await readAll(snap)).size).toBe(200)
    expect(snap.merged).toEqual(['a', 'b'])
    // a and b for every bucket, c for the first 3 and the one it failed.
    expect(r.bucketReads).toBe(32 * 2 + 4)
  })

  it('fails part way when a second replica goes: the merge of one could miss a QUORUM write', async () => {
    const r = new FakeReplicas()
    for (let i = 0; i < 100; i++) for (const p of ['a', 'b', 'c']) r.put(p, rec(`k${i}`, i + 1))
    r.failAfter.set('b', 2)
    r.failAfter.set('c', 2)
    const snap = await PartitionSnapshot.open(deps(r), space, 1, { recordsPerBucket: 10, bucketsInFlight: 1 })
    await expect(readAll(snap)).rejects.toThrow(/partition 1 of space 's' cannot be backed up consistently: 1 of the 2 replicas needed/)
  })

  it('reads a majority of the owners too: a view that has heard only its own copy ready still finds a QUORUM write on the other two', async () => {
    // Just after a space is created: this peer (a) has announced its copy ready and not yet heard
    // b's and c's announcements, so its ready list is [a]; the writer saw all three ready and its
    // write was acknowledged by b and c (a's copy is waiting for a hint).
    const r = new FakeReplicas()
    r.put('a', rec('old', 1))
    r.put('b', rec('old', 1), rec('w', 5))
    r.put('c', rec('old', 1), rec('w', 5))
    const snap = await PartitionSnapshot.open(deps(r, ['a'], () => true, ['a', 'b', 'c']), space, 0)
    expect(snap.replicas).toEqual(['a', 'b', 'c'])
    expect([...(await readAll(snap)).keys()].sort()).toEqual(['old', 'w'])
  })

  it('fails naming the owners when a majority of them does not answer, though every ready replica does', async () => {
    const r = new FakeReplicas()
    r.put('a', rec('x', 1))
    r.down.add('c')
    const err = await PartitionSnapshot.open(deps(r, ['a'], p => p !== 'b', ['a', 'b', 'c']), space, 3).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(BackupPartitionUnavailableError)
    expect((err as Error).message).toBe("partition 3 of space 's' cannot be backed up consistently: 1 of the 2 owners needed (a majority) answered (peer-b: unreachable; peer-c: TIMEOUT: timed out)")
    // One owner failing part way leaves a majority of them; a second does not.
    const r2 = new FakeReplicas()
    for (let i = 0; i < 100; i++) for (const p of ['a', 'b', 'c']) r2.put(p, rec(`k${i}`, i + 1))
    r2.failAfter.set('b', 2)
    const snap = await PartitionSnapshot.open(deps(r2, ['a'], () => true, ['a', 'b', 'c']), space, 1, { recordsPerBucket: 10, bucketsInFlight: 1 })
    r2.failAfter.set('c', 3)
    await expect(readAll(snap)).rejects.toThrow(/1 of the 2 owners needed \(a majority\) answered \(peer-b: UNREACHABLE: peer went away; peer-c: UNREACHABLE: peer went away\)/)
  })

  it('asks a bucket again as its two halves when an answer is over the frame limit', async () => {
    const r = new FakeReplicas()
    for (let i = 0; i < 64; i++) for (const p of ['a', 'b']) r.put(p, rec(`k${i}`, i + 1))
    r.maxFrameRecords = 5
    const snap = await PartitionSnapshot.open(deps(r, ['a', 'b']), space, 0, { recordsPerBucket: 64 })
    expect(snap.buckets).toBe(1)
    expect((await readAll(snap)).size).toBe(64)
  })

  it('sizes buckets as a power of two from the largest replica', () => {
    expect([bucketCount(0, 1024), bucketCount(1024, 1024), bucketCount(1025, 1024), bucketCount(1e6, 1024), bucketCount(1e12, 1024)]).toEqual([1, 1, 2, 1024, 65536])
  })
})

describe('BackupService', () => {
  const written: VersionedRecord[][] = []
  const service = new BackupService({
    catalog: { get: n => n === 's' ? space : undefined, list: () => [space] },
    hlc: { now: () => 5_000_000 * 1024 },
    isSynced: () => true,
    snapshot: deps(new FakeReplicas()),
    write: async (_space, records) => { written.push(records); return { written: records.length, stale: 0, staleIds: [] } },
    log: silentLogger
  }, { maxStreams: 1 })

  it('restore() writes records with their own versions, rows checked against the schema', async () => {
    const out = await service.restore('s', [{ id: 'a', v: 77, row: { id: 'a', v: 3 } }, { id: 'b', v: 78, deleted: true }], { consistency: 'quorum' })
    expect(out).toEqual({ written: 2, stale: 0, errors: [] })
    expect(written.pop()).toEqual([rec('a', 77, 3), rec('b', 78, null)])
  })

  it('restore() writes nothing when one record is bad, naming it', async () => {
    const out = await service.restore('s', [
      { id: 'a', v: 77, row: { id: 'a', v: 3 } },
      { id: 'b', v: 78, row: { id: 'b', v: 'three' } },
      { id: 'c', v: 79, row: { id: 'd', v: 1 } }
    ], { consistency: 'quorum' })
    expect(out.written).toBe(0)
    expect(out.errors).toEqual([
      { row: 1, field: 'row.v', message: 'expected an integer between -2147483648 and 2147483647 (int32)' },
      { row: 2, field: 'row.id', message: "is 'd', the line's id is 'c'" }
    ])
    expect(written).toEqual([])
  })

  it('begin() stamps T and lists the spaces; partition() holds at most maxStreams streams', async () => {
    const b = service.begin()
    expect(b.startHlc).toBe(5_000_000 * 1024)
    expect(b.startTime).toBe(new Date(5_000_000).toISOString())
    expect(b.spaces).toEqual([{ name: 's', uid: 's-1', schema: space.schema, partitions: 4, replicas: 3 }])
    const first = await service.partition('s', 0)
    await expect(service.partition('s', 1)).rejects.toThrow(/already serves 1 backup streams/)
    const lines: string[] = []
    for await (const l of first.lines) lines.push(l)
    expect(lines).toEqual(['{"end":true,"records":0,"tombstones":0,"replicas":["peer-a","peer-b","peer-c"],"buckets":1}\n'])
    // Its slot is free again.
    for await (const _ of (await service.partition('s', 1)).lines) { /* drain */ }
    await expect(service.partition('s', 4)).rejects.toThrow(/partitions 0 to 3; got 4/)
    await expect(service.partition('t', 0)).rejects.toThrow(/no space named 't'/)
  })
})
