/**
 * An in-memory PartitionStore for simulator tests, faithful to the storage contract: last writer
 * wins by compareVersions, tombstones kept, digests from incremental per-bucket hashes (XOR of a
 * 64-bit hash of each (id, version, deleted), kept per leaf bucket and folded for any power-of-two
 * bucket count up to LEAVES), bucket(), scan() in batches, batches() in columnar form. The
 * objects survive a simulated restart: keep the MemoryStores of a peer and hand it to the
 * restarted peer's Replicator. Damage can be injected (corrupt()): reads that meet the chosen ids
 * fail as a damaged segment block does, and the store reports it as LocalPartitionStore does
 * (needsRepair, needsRebuild, onDamage); MemoryStores.rebuild replaces it by an empty one.
 * With `wallNow` in its options it keeps a repair record as storage does (src/storage/repair.ts:
 * repairRecord, recordRepair, purgeHorizon, graceHorizon), and compact() drops tombstones as a
 * full compaction does: below both the grace period and the last repair with every replica.
 */
import { batchFromRows, type ColumnBatch, type ValueType } from '../../src/columnar/index.js'
import type { Hlc } from '../../src/hlc/index.js'
import { SegmentCorruptError, graceHorizon, purgeHorizon, wallHlc, type RepairRecord, type RepairUpdate } from '../../src/storage/index.js'
import { compareVersions } from '../../src/storage/types.js'
import type { ApplyResult, PartitionDigest, PartitionStats, PartitionStore, VersionedRecord } from '../../src/storage/types.js'
import type { SpaceDef } from '../../src/schema/index.js'

const LEAVES = 4096

/** FNV-1a 32 over UTF-16 code units, with a seed. */
function fnv (s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  return h >>> 0
}

export function idHash (id: string): number { return fnv(id, 0) }

function recHash (r: { id: string, version: number, deleted: boolean }): [number, number] {
  const s = `${r.id}\u0000${r.version}\u0000${r.deleted ? 1 : 0}`
  return [fnv(s, 0x2545f491), fnv(s, 0x6c8e9cf5)]
}

const hex = (x: number): string => (x >>> 0).toString(16).padStart(8, '0')

export class MemoryPartitionStore implements PartitionStore {
  private readonly records = new Map<string, VersionedRecord>()
  private readonly leaves = new Uint32Array(LEAVES * 2)
  closed = false
  /** Fault injection: when set, apply() rejects with it. */
  failWith: Error | undefined
  applyCalls = 0
  /** Fault injection (corrupt()): ids whose stored values cannot be read, and the file said to hold them. */
  private unreadable = new Set<string>()
  private unreadableFile = ''
  /** The damage reported, as a LocalPartitionStore's segment damage report says it. */
  damaged: { file: string, repaired: boolean, movedTo?: string } | undefined
  private readonly damageListeners = new Set<() => void>()

  /** Tombstones dropped by compact(). */
  tombstonesPurged = 0
  /** The repair record (kept only with opts.wallNow), as storage keeps it in the partition's REPAIR file. */
  private repair: { since: Hlc, repairedTo: Hlc, synced: Record<string, Hlc> } | undefined
  repairRecord?: () => RepairRecord
  recordRepair?: (update: RepairUpdate) => Promise<void>
  purgeHorizon?: () => Hlc
  graceHorizon?: () => Hlc

  constructor (readonly space: SpaceDef, readonly partition: number, readonly opts: MemoryStoreOptions = {}) {
    const wallNow = opts.wallNow
    if (wallNow === undefined) return
    const grace = opts.tombstoneGraceMs ?? DEFAULT_GRACE_MS
    const rec: { since: Hlc, repairedTo: Hlc, synced: Record<string, Hlc> } = { since: wallHlc(wallNow()), repairedTo: 0, synced: {} }
    this.repair = rec
    this.repairRecord = () => ({ since: rec.since, repairedTo: rec.repairedTo, synced: { ...rec.synced } })
    this.recordRepair = async u => {
      if (u.peer !== undefined && u.syncedAt !== undefined) rec.synced[u.peer] = Math.max(rec.synced[u.peer] ?? 0, u.syncedAt)
      if (u.repairedTo !== undefined) rec.repairedTo = Math.max(rec.repairedTo, u.repairedTo)
      await Promise.resolve()
    }
    this.purgeHorizon = () => purgeHorizon(wallNow(), grace, rec.repairedTo)
    this.graceHorizon = () => graceHorizon(wallNow(), grace)
  }

  /**
   * What a full compaction of a LocalPartitionStore does to tombstones: drops those below the
   * purge horizon (older than the grace period, their version against the wall clock
   * `wallNowMs`, and than the last repair with every replica; none without a repair record).
   * Returns how many went.
   */
  compact (wallNowMs: number): number {
    const horizon = purgeHorizon(wallNowMs, this.opts.tombstoneGraceMs ?? DEFAULT_GRACE_MS, this.repair?.repairedTo ?? 0)
    let purged = 0
    for (const r of [...this.records.values()]) {
      if (!r.deleted || r.version >= horizon) continue
      const leaf = (idHash(r.id) % LEAVES) * 2
      const [a, b] = recHash(r)
      this.leaves[leaf] ^= a
      this.leaves[leaf + 1] ^= b
      this.records.delete(r.id)
      purged++
    }
    this.tombstonesPurged += purged
    return purged
  }

  /** Makes the stored values of `ids` unreadable, as a damaged block of `file` would: found by the first read that meets one. */
  corrupt (ids: Iterable<string>, file = `${this.space.uid}/${this.partition}/seg-00000001.arrow`): void {
    for (const id of ids) this.unreadable.add(id)
    this.unreadableFile = file
  }

  /** A read met an unreadable id: reported once (listeners told), then the read fails naming the file. */
  private failRead (): never {
    const err = new SegmentCorruptError(this.unreadableFile, 'batch 0, column "v": CRC-32 mismatch')
    if (this.damaged === undefined) {
      this.damaged = { file: this.unreadableFile, repaired: false }
      for (const l of [...this.damageListeners]) l()
    }
    throw err
  }

  private checkReadable (ids: Iterable<string>): void {
    if (this.unreadable.size === 0) return
    for (const id of ids) if (this.unreadable.has(id) && this.records.get(id)?.deleted === false) this.failRead()
  }

  needsRepair (): boolean { return this.damaged !== undefined && !this.damaged.repaired }
  needsRebuild (): boolean { return this.needsRepair() && this.damaged?.movedTo === undefined }
  async markRepaired (): Promise<void> { if (this.damaged !== undefined) this.damaged.repaired = true }
  onDamage (listener: () => void): () => void {
    this.damageListeners.add(listener)
    return () => { this.damageListeners.delete(listener) }
  }

  async apply (records: readonly VersionedRecord[]): Promise<ApplyResult> {
    if (this.closed) throw new Error('store closed')
    if (this.failWith !== undefined) throw this.failWith
    this.applyCalls++
    let applied = 0
    let stale = 0
    for (const r of records) {
      const old = this.records.get(r.id)
      if (old !== undefined && compareVersions(r, old) <= 0) { stale++; continue }
      const copy: VersionedRecord = { id: r.id, version: r.version, deleted: r.deleted, row: r.row === null ? null : { ...r.row } }
      const leaf = (idHash(r.id) % LEAVES) * 2
      if (old !== undefined) {
        const [a, b] = recHash(old)
        this.leaves[leaf] ^= a
        this.leaves[leaf + 1] ^= b
      }
      const [a, b] = recHash(copy)
      this.leaves[leaf] ^= a
      this.leaves[leaf + 1] ^= b
      this.records.set(r.id, copy)
      applied++
    }
    // Durable "later": resolve asynchronously, as a real store's group commit does.
    await Promise.resolve()
    return { applied, stale }
  }

  async get (id: string): Promise<VersionedRecord | undefined> {
    this.checkReadable([id])
    return this.records.get(id)
  }
  /** get() without the promise, for a test's synchronous checks (a simulator condition, an expect). */
  peek (id: string): VersionedRecord | undefined { return this.records.get(id) }

  async * scan (opts: { batchRecords?: number, includeTombstones?: boolean } = {}): AsyncIterable<VersionedRecord[]> {
    const batch = Math.max(1, opts.batchRecords ?? 1000)
    const all = [...this.records.values()].filter(r => opts.includeTombstones !== false || !r.deleted)
    this.checkReadable(all.map(r => r.id))
    for (let i = 0; i < all.length; i += batch) {
      await Promise.resolve()
      yield all.slice(i, i + batch)
    }
  }

  batches (columns: readonly string[]): AsyncIterable<ColumnBatch> {
    const cols: Array<{ name: string, type: ValueType }> = [...new Set(columns)].map(name => ({ name, type: this.space.schema.find(c => c.name === name)?.type ?? 'null' }))
    // Snapshot now: the live rows (apply() replaces records, never mutates them), NULL for absent columns.
    const live = [...this.records.values()].filter(r => !r.deleted)
    const rows = live.map(r => r.row!)
    const out: ColumnBatch[] = []
    for (let i = 0; i < rows.length; i += 65_536) out.push(batchFromRows(rows.slice(i, i + 65_536), cols))
    const check = (): void => { this.checkReadable(live.map(r => r.id)) }
    return (async function * () {
      check()
      yield * out
    })()
  }

  async digest (buckets = 256): Promise<PartitionDigest> { return this.digestNow(buckets) }

  /** digest() at once: the simulator's convergence checks poll it synchronously. */
  digestNow (buckets = 256): PartitionDigest {
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError('buckets must be a positive integer')
    const hs = new Uint32Array(buckets * 2)
    if (buckets <= LEAVES && (LEAVES % buckets) === 0) {
      // idHash % buckets == (idHash % LEAVES) % buckets when buckets divides LEAVES: fold the leaves.
      for (let l = 0; l < LEAVES; l++) {
        const b = (l % buckets) * 2
        hs[b] ^= this.leaves[l * 2]!
        hs[b + 1] ^= this.leaves[l * 2 + 1]!
      }
    } else {
      for (const r of this.records.values()) {
        const b = (idHash(r.id) % buckets) * 2
        const [x, y] = recHash(r)
        hs[b] ^= x
        hs[b + 1] ^= y
      }
    }
    const hashes: string[] = []
    for (let i = 0; i < buckets; i++) hashes.push(hex(hs[i * 2]!) + hex(hs[i * 2 + 1]!))
    return { buckets, hashes, root: hex(fnv(hashes.join(''), 1)) + hex(fnv(hashes.join(''), 2)), records: this.records.size }
  }

  async bucket (index: number, buckets: number): Promise<VersionedRecord[]> {
    const out: VersionedRecord[] = []
    for (const r of this.records.values()) if (idHash(r.id) % buckets === index) out.push(r)
    this.checkReadable(out.map(r => r.id))
    return out
  }

  stats (): PartitionStats {
    let tombstones = 0
    for (const r of this.records.values()) if (r.deleted) tombstones++
    return { liveRows: this.records.size - tombstones, tombstones, memtableRows: this.records.size, segments: 0, walBytes: 0, diskBytes: 0 }
  }

  /** Every record held, for assertions. */
  all (): VersionedRecord[] { return [...this.records.values()] }
  size (): number { return this.records.size }
}

export interface MemoryStoreOptions {
  /** As storage's tombstoneGraceMs: ms, default 10 days. */
  tombstoneGraceMs?: number
  /** The peer's wall clock (ms): given, each store keeps a repair record (see MemoryPartitionStore). */
  wallNow?: () => number
}

const DEFAULT_GRACE_MS = 10 * 86_400_000

/** One peer's stores: the StoreProvider a Replicator gets; survives the peer's restarts. */
export class MemoryStores {
  readonly stores = new Map<string, MemoryPartitionStore>()
  dropped = 0
  /** Damaged stores replaced by rebuild(), the old ones kept here (as storage keeps their files aside). */
  readonly rebuilt: MemoryPartitionStore[] = []
  /** Fault injection: partitions (by key()) whose opening fails with this error, as a damaged segment file makes it fail, until rebuilt. */
  readonly openFails = new Map<string, Error>()

  constructor (readonly opts: MemoryStoreOptions = {}) {}

  /**
   * As StorageEngine.rebuildPartition: the damaged store closed and kept aside, an empty one
   * carrying its damage in its place; for a stale one (reason 'stale'), an empty one with no damage.
   */
  async rebuild (space: SpaceDef, partition: number, reason: 'damaged' | 'stale' = 'damaged'): Promise<MemoryPartitionStore> {
    const key = MemoryStores.key(space, partition)
    const old = this.stores.get(key)
    if (old !== undefined) {
      old.closed = true
      this.rebuilt.push(old)
    }
    const fresh = new MemoryPartitionStore(space, partition, this.opts)
    const failed = this.openFails.get(key) as { path?: string } | undefined
    this.openFails.delete(key)
    if (reason === 'damaged') fresh.damaged = { file: old?.damaged?.file ?? failed?.path ?? 'unknown', repaired: false, movedTo: `${key}.corrupt` }
    this.stores.set(key, fresh)
    await Promise.resolve()
    return fresh
  }

  static key (space: SpaceDef, partition: number): string { return `${space.uid}/${partition}` }

  async open (space: SpaceDef, partition: number): Promise<MemoryPartitionStore> {
    const key = MemoryStores.key(space, partition)
    const fails = this.openFails.get(key)
    if (fails !== undefined) {
      await Promise.resolve()
      throw fails
    }
    let s = this.stores.get(key)
    if (s === undefined) {
      s = new MemoryPartitionStore(space, partition, this.opts)
      this.stores.set(key, s)
    }
    await Promise.resolve()
    return s
  }

  async drop (space: SpaceDef, partition: number): Promise<void> {
    const key = MemoryStores.key(space, partition)
    const s = this.stores.get(key)
    if (s !== undefined) s.closed = true
    this.stores.delete(key)
    this.dropped++
    await Promise.resolve()
  }

  get (space: SpaceDef, partition: number): MemoryPartitionStore | undefined { return this.stores.get(MemoryStores.key(space, partition)) }
}
