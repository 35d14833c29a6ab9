/**
 * The write coordinator: stamps rows with HLC versions, groups them by partition, checks with the
 * partition detector that every partition's consistency level can be met (failing fast, before
 * anything is sent, so nothing is half-written), sends each partition's records to its replicas
 * in bounded repl.write batches (the local replica directly), and answers once every partition met
 * its level. Replicas that failed get a hint, durable before the answer when the failure came
 * before it (hints.ts). Also pushRecords, the plain repl.write that read
 * repair, hint replay and anti-entropy use to bring one replica up to date.
 */
import type { Hlc } from '../hlc/index.js'
import type { EncodedBody, PeerId } from '../runtime/index.js'
import { validateRows, MAX_ID_LENGTH } from '../schema/index.js'
import type { Row, SpaceDef } from '../schema/index.js'
import type { PackedRecords, VersionedRecord } from '../storage/index.js'
import { errText, isPermanent, lostIds, requireSynced } from './context.js'
import type { ReplicationContext } from './context.js'
import { InvalidRowsError, PartitionUnavailableError, WriteIncompleteError } from './errors.js'
import type { Consistency, PartitionWriteOutcome } from './errors.js'
import type { HintRecorder } from './hints.js'
import { countedOf, shortGroup, writeLevel, type WriteLevel } from './quorum.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { chunkRecords, maxVersion, METHOD_WRITE, packRecords, parseWriteAnswer } from './wire.js'

export interface WriteOptions {
  consistency?: Consistency
  timeoutMs?: number
  /**
   * The rows are already the output of validateRows against this space's schema (DataService
   * validated them to report errors): skip validating them a second time.
   */
  prevalidated?: boolean
}

/** At most this many ids in WriteResult.staleIds (the count is always whole). */
export const MAX_STALE_IDS = 1000

export interface WriteResult {
  written: number
  /**
   * Records of this write that lost on every replica that acknowledged it: each already held a
   * newer version of the id (last writer wins, e.g. a version stamped by a clock that ran ahead),
   * so the write changed nothing for them. Counted in `written`, which counts what was sent and
   * acknowledged.
   */
  stale: number
  /** The ids of the stale records, the first MAX_STALE_IDS of them. */
  staleIds: string[]
  /** The newest version stamped in this write (the version of a single-row write or delete). */
  version: Hlc
  partitions: Array<{ partition: number, rows: number, acks: number, needed: number, hinted: number }>
}

export type WriteContext = Pick<ReplicationContext, 'self' | 'transport' | 'clock' | 'hlc' | 'log' | 'placement' | 'detector' | 'membership' | 'replicas' | 'addr'> & {
  opts: Pick<ResolvedReplicatorOptions, 'requestTimeoutMs' | 'maxBatchRecords' | 'maxBatchBytes'>
  hints: HintRecorder
}

/** One repl.write request: its records, its body (encoded once when the transport can), and the records packed when they were. */
interface WriteBatch { records: VersionedRecord[], body: unknown, packed?: PackedRecords }

/** lost: ids the target already held newer (known only when ok). */
interface DeliverResult { ok: boolean, failed: VersionedRecord[], error?: string, noHint?: boolean, lost?: string[] }

/** Sends records to one replica in a single plain repl.write (the caller keeps it within the batch bounds). */
export async function pushRecords (ctx: Pick<ReplicationContext, 'transport' | 'hlc' | 'addr'>, target: PeerId, space: SpaceDef, partition: number,
  records: VersionedRecord[], timeoutMs: number): Promise<{ applied: number, stale: number }> {
  const answer = await ctx.transport.request(ctx.addr(target), METHOD_WRITE,
    { space, partition, records, hlc: Math.max(maxVersion(records), ctx.hlc.current()) }, { timeoutMs })
  return parseWriteAnswer(answer)
}

export class WriteCoordinator {
  constructor (private readonly ctx: WriteContext) {}

  /** Writes rows (validated against the space's schema, stamped with one HLC version each). */
  async write (space: SpaceDef, rows: readonly Row[], opts: WriteOptions = {}): Promise<WriteResult> {
    let valid = rows
    if (opts.prevalidated !== true) {
      const v = validateRows(space.schema, rows)
      if (v.errors.length > 0) throw new InvalidRowsError(space.name, v.errors)
      valid = v.rows
    }
    const records = new Array<VersionedRecord>(valid.length)
    for (let i = 0; i < valid.length; i++) {
      const row = valid[i]!
      records[i] = { id: row.id as string, version: this.ctx.hlc.now(), deleted: false, row }
    }
    return await this.replicate(space, records, opts, true)
  }

  /** Deletes records by id: tombstones, replicated like writes. */
  async remove (space: SpaceDef, ids: readonly string[], opts: WriteOptions = {}): Promise<WriteResult> {
    const errors: Array<{ row: number, field: string, message: string }> = []
    ids.forEach((id, i) => {
      if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) errors.push({ row: i, field: 'id', message: `must be a string of 1 to ${MAX_ID_LENGTH} characters` })
    })
    if (errors.length > 0) throw new InvalidRowsError(space.name, errors)
    const records: VersionedRecord[] = ids.map(id => ({ id, version: this.ctx.hlc.now(), deleted: true, row: null }))
    return await this.replicate(space, records, opts, true)
  }

  /**
   * Replicates already-versioned records (writes, deletes, imports) at a consistency level.
   * `normalized`: every row is validateRows output for this very space (sent packed, see wire.ts).
   */
  async writeRecords (space: SpaceDef, records: readonly VersionedRecord[], opts: WriteOptions = {}, normalized = false): Promise<WriteResult> {
    // Versions stamped elsewhere meet the bound every replica applies; the local replica would
    // otherwise take them unchecked (the remote ones refuse the whole batch).
    const limit = this.ctx.hlc.skewLimit()
    for (const r of records) if (r.version > limit) throw this.ctx.hlc.countRefusal(r.version)
    return await this.replicate(space, records, opts, normalized)
  }

  private async replicate (space: SpaceDef, records: readonly VersionedRecord[], opts: WriteOptions, normalized: boolean): Promise<WriteResult> {
    const { placement, detector } = this.ctx
    requireSynced(this.ctx.membership, space, 'write')
    const consistency = opts.consistency ?? 'quorum'
    const timeoutMs = opts.timeoutMs ?? this.ctx.opts.requestTimeoutMs
    const deadline = this.ctx.clock.now() + timeoutMs
    const byPartition = new Map<number, VersionedRecord[]>()
    for (const r of records) {
      const p = placement.partitionOf(space, r.id)
      let list = byPartition.get(p)
      if (list === undefined) { list = []; byPartition.set(p, list) }
      list.push(r)
    }
    // Plan every partition first: fail fast before anything is sent, so nothing is half-written.
    const plans = [...byPartition].sort((a, b) => a[0] - b[0]).map(([partition, recs]) => {
      const pp = placement.locate(space, partition)
      const lvl = writeLevel(pp, consistency)
      // Each group reachable on its own is enough: the reachable members of all groups together meet every group.
      // Reported: the first group that cannot be met, with its own needed and reachable counts.
      const short = lvl.groups.find(g => !detector.quorumReachable(g.members, g.needed))
      if (short !== undefined) {
        const reachable = new Set(short.members.filter(p => detector.isReachable(p))).size
        throw new PartitionUnavailableError(space.name, partition, short.needed, reachable, consistency, 'write')
      }
      return { partition, recs, lvl }
    })
    const outcomes = await Promise.all(plans.map(async plan =>
      await this.writePartition(space, plan.partition, plan.recs, plan.lvl, deadline, normalized)))
    if (outcomes.some(o => !o.met)) throw new WriteIncompleteError(space.name, consistency, outcomes)
    let stale = 0
    const staleIds: string[] = []
    for (const o of outcomes) {
      stale += o.staleIds?.length ?? 0
      for (const id of o.staleIds ?? []) if (staleIds.length < MAX_STALE_IDS) staleIds.push(id)
    }
    return {
      written: records.length,
      stale,
      staleIds,
      version: maxVersion(records),
      partitions: outcomes.map(o => ({ partition: o.partition, rows: o.rows, acks: o.acks, needed: o.needed, hinted: o.hinted }))
    }
  }

  private async writePartition (space: SpaceDef, partition: number, records: VersionedRecord[], lvl: WriteLevel,
    deadline: number, normalized: boolean): Promise<PartitionWriteOutcome> {
    const { targets, groups } = lvl
    const counted = new Set(countedOf(lvl))
    return await new Promise(resolve => {
      const o: PartitionWriteOutcome = { partition, rows: records.length, acks: 0, needed: lvl.needed, hinted: 0, met: false, errors: [] }
      const acked = new Set<PeerId>()
      let done = 0
      let settled = false
      // Ids that lost on every replica that acknowledged so far (undefined: none acknowledged yet).
      let lostEverywhere: Set<string> | undefined
      // Hints recorded before the answer: it waits until they are durable (see HintRecorder).
      const hinting: Array<Promise<void>> = []
      const check = (): void => {
        if (settled) return
        const short = shortGroup(groups, acked)
        if (short === undefined) o.met = true
        if (o.met || done === targets.length) {
          settled = true
          // Fell short: report the first group not met, its needed and acknowledged counts.
          if (short !== undefined) { o.needed = short.group.needed; o.acks = short.answered }
          void Promise.all(hinting).then(() => {
            resolve({ ...o, errors: [...o.errors], staleIds: lostEverywhere === undefined ? [] : [...lostEverywhere] })
          })
        }
      }
      // The batches (and their encoded bodies) are built once and sent to every remote target; a
      // local replica logs their packed bytes.
      let batches: WriteBatch[] | undefined
      for (const target of targets) {
        if ((target !== this.ctx.self || normalized) && batches === undefined) {
          // On failure (a record too large to send) deliver() retries and reports it per target.
          try { batches = this.writeBatches(space, partition, records, normalized) } catch { /* see above */ }
        }
        void this.deliver(target, space, partition, records, batches, deadline, normalized).then(res => {
          done++
          if (res.ok) {
            acked.add(target)
            if (counted.has(target)) o.acks++
            const lost = res.lost ?? []
            if (lostEverywhere === undefined) lostEverywhere = new Set(lost)
            else if (lostEverywhere.size > 0) {
              const here = new Set(lost)
              for (const id of lostEverywhere) if (!here.has(id)) lostEverywhere.delete(id)
            }
          } else {
            o.errors.push(`${target}: ${res.error ?? 'failed'}`)
            if (res.failed.length > 0 && res.noHint !== true) {
              hinting.push(this.ctx.hints.record(target, space, partition, res.failed).then(kept => { if (kept) o.hinted++ }))
            }
          }
          check()
        })
      }
      check()
    })
  }

  /**
   * Splits a partition's records into repl.write requests. When the transport can encode a body
   * once for every target, each batch is encoded here, and the encoded size decides the split
   * (a batch over maxBatchBytes is halved): no per-row size estimate, no per-target encoding.
   */
  private writeBatches (space: SpaceDef, partition: number, records: VersionedRecord[], normalized: boolean): WriteBatch[] {
    const { maxBatchRecords, maxBatchBytes } = this.ctx.opts
    const out: WriteBatch[] = []
    const batch = (recs: VersionedRecord[]): WriteBatch => {
      const hlc = Math.max(maxVersion(recs), this.ctx.hlc.current())
      if (!normalized) return { records: recs, body: { space, partition, records: recs, hlc } }
      const packed = packRecords(space, recs)
      return { records: recs, body: { space, partition, packed: packed.bytes, hlc }, packed }
    }
    const encode = this.ctx.transport.encodeBody?.bind(this.ctx.transport)
    if (encode === undefined) {
      for (const recs of chunkRecords(records, maxBatchRecords, maxBatchBytes)) out.push(batch(recs))
      return out
    }
    const add = (recs: VersionedRecord[]): void => {
      let b: WriteBatch | undefined
      let encoded: EncodedBody | undefined
      try {
        b = batch(recs)
        encoded = encode(b.body)
      } catch (err) {
        if (recs.length === 1 || !isPermanent(err)) throw err
      }
      if (b !== undefined && encoded !== undefined && (encoded.encodedBytes <= maxBatchBytes || recs.length === 1)) {
        out.push({ ...b, body: encoded })
        return
      }
      const half = recs.length >> 1
      add(recs.slice(0, half))
      add(recs.slice(half))
    }
    const max = maxBatchRecords
    for (let i = 0; i < records.length; i += max) add(records.length <= max ? records : records.slice(i, i + max))
    return out
  }

  /** Sends records to one replica, in bounded batches; never rejects. */
  private async deliver (target: PeerId, space: SpaceDef, partition: number, records: VersionedRecord[], batches: WriteBatch[] | undefined,
    deadline: number, normalized: boolean): Promise<DeliverResult> {
    if (target === this.ctx.self) {
      try {
        return { ok: true, failed: [], lost: await this.applyLocal(space, partition, records, batches) }
      } catch (err) {
        // A replica whose disk failed said so once (storage logs the failure); every write to it
        // until it heals would repeat it.
        if ((err as Error | null)?.name === 'StoreFailedError') this.ctx.log.debug({ space: space.name, partition, err: errText(err) }, 'local replica refused a write: its disk failed')
        else this.ctx.log.error({ err, space: space.name, partition }, 'local replica failed to apply a write')
        // A hint to ourselves would not help; anti-entropy repairs the local replica.
        return { ok: false, failed: records, error: errText(err), noHint: true }
      }
    }
    if (!this.ctx.detector.isReachable(target)) return { ok: false, failed: records, error: 'UNREACHABLE (detector)' }
    if (batches === undefined) {
      try {
        batches = this.writeBatches(space, partition, records, normalized)
      } catch (err) {
        return { ok: false, failed: records, error: errText(err), noHint: isPermanent(err) }
      }
    }
    const lost: string[] = []
    for (let i = 0; i < batches.length; i++) {
      const left = deadline - this.ctx.clock.now()
      const rest = (): VersionedRecord[] => batches.slice(i).flatMap(b => b.records)
      if (left <= 0) return { ok: false, failed: rest(), error: 'TIMEOUT' }
      try {
        const answer = parseWriteAnswer(await this.ctx.transport.request(this.ctx.addr(target), METHOD_WRITE, batches[i]!.body, { timeoutMs: left }))
        // A peer that predates staleIds reports none: the write then claims nothing stale.
        if (answer.staleIds !== undefined) lost.push(...answer.staleIds)
      } catch (err) {
        return { ok: false, failed: rest(), error: errText(err), noHint: isPermanent(err) }
      }
    }
    return { ok: true, failed: [], lost }
  }

  /**
   * Applies records to this peer's replica: batch by batch when they were packed for sending
   * (their bytes go to the log). Answers the ids that lost to a newer version held here.
   */
  private async applyLocal (space: SpaceDef, partition: number, records: VersionedRecord[], batches?: WriteBatch[]): Promise<string[]> {
    // After a decommission's leave this peer's replicas take nothing more, its own writes included
    // (their last push to the owners is done or under way): the owners' acknowledgements must count.
    return await this.ctx.replicas.applyWrite(async () => await this.applyLocalNow(space, partition, records, batches),
      () => new Error('this peer has left the cluster (decommissioned): its replicas take no more writes'))
  }

  private async applyLocalNow (space: SpaceDef, partition: number, records: VersionedRecord[], batches?: WriteBatch[]): Promise<string[]> {
    const store = await this.ctx.replicas.open(space, partition)
    if (batches === undefined || batches.some(b => b.packed === undefined)) {
      return await lostIds(store, records, (await store.apply(records)).stale)
    }
    // Last-writer-wins on versions: the order the batches land in does not matter.
    const lost = await Promise.all(batches.map(async b => await lostIds(store, b.records, (await store.apply(b.records, b.packed)).stale)))
    return lost.flat()
  }
}
