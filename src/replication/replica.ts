/**
 * The replica side: the RPC handlers a peer serves for its replicas (repl.write, repl.read,
 * repl.digest, repl.bucket and the stream repl.scan; shapes in wire.ts). Every body is untrusted:
 * it is validated first and refused with BAD_REQUEST (counted). A write observes the sender's
 * clock before applying (refusing skew, so one bad clock cannot stamp the future on every
 * replica); a read-only request never creates a replica (NOT_HELD), so a coordinator with a
 * stale view asks another instead of getting an empty answer.
 */
import { ClockSkewError } from '../hlc/index.js'
import type { RequestContext } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { isSegmentCorruption, type PartitionStore } from '../storage/index.js'
import { keyOf, lostIds } from './context.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'
import { ReplicaRequestError } from './errors.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { isStaleAgainst, repairInfo, staleError } from './repair.js'
import {
  chunkRecords, maxVersion, METHOD_BUCKET, METHOD_DIGEST, METHOD_READ, METHOD_SCAN, METHOD_WRITE, parseBucketRequest,
  parseDigestRequest, parseReadRequest, parseScanRequest, parseWriteRequest
} from './wire.js'

export type ReplicaContext = Pick<ReplicationContext, 'self' | 'transport' | 'hlc' | 'log' | 'placement' | 'replicas' | 'life' | 'spaceGone'> & {
  opts: Pick<ResolvedReplicatorOptions, 'maxBatchRecords' | 'maxBatchBytes'>
  counters: Pick<ReplicationCounters, 'replica'>
}

export class ReplicaHandlers {
  private registered = false

  constructor (private readonly ctx: ReplicaContext) {}

  /** Registers the handlers with the transport, once (they refuse with STOPPED while replication is stopped). */
  register (): void {
    if (this.registered) return
    this.registered = true
    const { transport } = this.ctx
    // After a decommission's leave, refused (LocalReplicas.closeWrites): the coordinator does not count this peer.
    transport.handle(METHOD_WRITE, async (body, ctx) => await this.guard(ctx, async () => await this.ctx.replicas.applyWrite(async () => await this.onWrite(body),
      () => new ReplicaRequestError('STOPPED', 'this peer has left the cluster (decommissioned): it takes no more writes'))))
    transport.handle(METHOD_READ, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseReadRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      return { records: await readOrFail(req.space, req.partition, async () => await Promise.all(req.ids.map(async id => (await store.get(id)) ?? null))) }
    }))
    transport.handle(METHOD_DIGEST, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseDigestRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      // The requester's purge horizon against this copy: stale, it answers nothing (repair.ts).
      if (req.repair !== undefined && isStaleAgainst(store, ctx.from, req.repair)) {
        this.ctx.replicas.markStale(keyOf(req.space, req.partition), req.repair.purgeHorizon)
        throw staleError(req.space, req.partition)
      }
      const digest = await readOrFail(req.space, req.partition, async () => await store.digest(req.buckets))
      const repair = repairInfo(store, ctx.from)
      return repair === undefined ? { digest } : { digest, repair }
    }))
    transport.handle(METHOD_BUCKET, async (body, ctx) => await this.guard(ctx, async () => {
      const req = parseBucketRequest(body)
      const store = await this.storeForRead(req.space, req.partition)
      return { records: await readOrFail(req.space, req.partition, async () => await store.bucket(req.index, req.buckets)) }
    }))
    transport.handleStream(METHOD_SCAN, (body, ctx) => this.onScan(body, ctx))
  }

  /**
   * Read-only requests do not create replicas: a peer that neither holds nor owns the partition
   * (a coordinator's view is stale) refuses with NOT_HELD, and the coordinator asks another.
   * Queries open their local replicas through this too.
   */
  async storeForRead (space: SpaceDef, partition: number): Promise<PartitionStore> {
    const key = keyOf(space, partition)
    // A peer whose catalog is behind (or that held the partition before the drop) asks for a
    // space this peer knows is gone: opening it would create a replica of a dropped space.
    if (this.ctx.spaceGone(space)) throw new ReplicaRequestError('SPACE_GONE', `space '${space.name}' (${space.uid}) was dropped or re-created; this peer serves nothing of it`)
    if (!this.ctx.replicas.holds(key) && !this.ctx.placement.locate(space, partition).owners.includes(this.ctx.self)) {
      throw new ReplicaRequestError('NOT_HELD', `this peer holds no replica of partition ${partition} of '${space.name}'`)
    }
    // Stale (away longer than the tombstone grace while another replica purged, repair.ts): it
    // may hold rows whose deletes are gone elsewhere, and is being rebuilt.
    if (this.ctx.replicas.isStale(key)) throw staleError(space, partition)
    const store = await this.storeOrFail(space, partition)
    // A damaged replica out of service (being rebuilt, or syncing after WAL damage) may lack rows
    // or fail on them: a coordinator whose view still lists it (the withdrawal travels by gossip)
    // asks the next replica instead of taking an answer with holes.
    if (store.needsRepair?.() === true && !this.ctx.replicas.isReady(key)) {
      throw new ReplicaRequestError('STORE_FAILED', `this peer's replica of partition ${partition} of '${space.name}' is damaged and out of service until it is repaired from the other replicas`)
    }
    // Failed on a disk error and out of service: it may lack writes the others took meanwhile.
    const failed = store.failure?.()
    if (failed !== undefined && !this.ctx.replicas.isReady(key)) {
      throw new ReplicaRequestError('STORE_FAILED', `this peer's replica of partition ${partition} of '${space.name}' failed on a disk error (${failed.code}${failed.path !== undefined ? ` at ${failed.path}` : ''}) and is out of service until it heals`)
    }
    return store
  }

  private async guard<T> (ctx: RequestContext, fn: () => Promise<T>): Promise<T> {
    if (this.ctx.life.stopped) throw new ReplicaRequestError('STOPPED', 'replication is stopped on this peer')
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ReplicaRequestError && err.code === 'BAD_REQUEST') {
        this.ctx.counters.replica.badRequests++
        this.ctx.log.debug({ from: ctx.from, err: err.message }, 'bad replication request')
      }
      throw err
    }
  }

  private async storeOrFail (space: SpaceDef, partition: number): Promise<PartitionStore> {
    try {
      return await this.ctx.replicas.open(space, partition)
    } catch (err) {
      throw new ReplicaRequestError('STORE_FAILED', `cannot open partition ${partition} of '${space.name}': ${(err as Error).message}`)
    }
  }

  private async onWrite (body: unknown): Promise<{ applied: number, stale: number, staleIds: string[] }> {
    const tally = this.ctx.counters.replica
    const req = parseWriteRequest(body)
    // A write (a hint kept while the space was dropped, a copy from a peer whose catalog is
    // behind) for a space this peer knows is gone would re-create its data here: refused for good.
    if (this.ctx.spaceGone(req.space)) throw new ReplicaRequestError('SPACE_GONE', `space '${req.space.name}' (${req.space.uid}) was dropped or re-created; this peer takes no writes for it`)
    try {
      this.ctx.hlc.observe(Math.max(req.hlc, maxVersion(req.records)))
    } catch (err) {
      if (err instanceof ClockSkewError) {
        tally.clockSkewRefusals++
        throw new ReplicaRequestError('CLOCK_SKEW', err.message, err.remote)
      }
      throw err
    }
    const store = await this.storeOrFail(req.space, req.partition)
    let res
    try {
      res = await store.apply(req.records, req.packed)
    } catch (err) {
      throw new ReplicaRequestError('STORE_FAILED', `partition ${req.partition} of '${req.space.name}' did not apply the write: ${(err as Error).message}`)
    }
    tally.writes++
    tally.recordsApplied += res.applied
    tally.recordsStale += res.stale
    return { applied: res.applied, stale: res.stale, staleIds: await lostIds(store, req.records, res.stale) }
  }

  private async * onScan (body: unknown, ctx: RequestContext): AsyncIterable<unknown> {
    const { life, opts } = this.ctx
    if (life.stopped) throw new ReplicaRequestError('STOPPED', 'replication is stopped on this peer')
    let req
    try {
      req = parseScanRequest(body)
    } catch (err) {
      this.ctx.counters.replica.badRequests++
      throw err
    }
    const store = await this.storeForRead(req.space, req.partition)
    const batch = Math.min(req.batchRecords, opts.maxBatchRecords)
    try {
      for await (const records of store.scan({ batchRecords: batch, includeTombstones: true })) {
        if (ctx.signal.aborted || life.stopped) return
        for (const chunk of chunkRecords(records, batch, opts.maxBatchBytes)) yield { records: chunk }
      }
    } catch (err) {
      throw damageError(req.space, req.partition, err)
    }
  }
}

/**
 * A read of this replica that met a damaged segment block answers STORE_FAILED with the storage
 * error's words (they name the file, batch and column), so the coordinator, which asks another
 * replica, can say why; other failures pass unchanged.
 */
async function readOrFail<T> (space: SpaceDef, partition: number, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (err) {
    throw damageError(space, partition, err)
  }
}

function damageError (space: SpaceDef, partition: number, err: unknown): unknown {
  if (!isSegmentCorruption(err)) return err
  return new ReplicaRequestError('STORE_FAILED', `partition ${partition} of '${space.name}' cannot be read on this replica: ${(err as Error).message}`)
}
