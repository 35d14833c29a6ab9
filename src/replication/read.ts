/**
 * The read coordinator and read repair. A read at ONE asks one replica (this peer's first); at
 * QUORUM or ALL it asks just the replicas the level's groups need (quorum.ts, readLevel: at
 * QUORUM a majority of the ready replicas and a majority of the owners, usually the same two
 * peers), fastest first (recent latency per peer), more only when one fails or they are slow,
 * takes the newest version (last writer wins) and brings stale replicas up to date before it
 * answers, so a second read at the same
 * level cannot see an older value. An answer versioned past the skew bound is refused like a
 * failed one: it is neither returned nor repaired onto the others.
 */
import type { Hlc } from '../hlc/index.js'
import type { PeerId, Timer } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import { compareVersions } from '../storage/index.js'
import type { VersionedRecord } from '../storage/index.js'
import { admitCopied, errText, keyOf, requireSynced } from './context.js'
import type { ReplicationContext, ReplicationCounters } from './context.js'
import { PartitionUnavailableError, ReadIncompleteError } from './errors.js'
import type { Consistency } from './errors.js'
import type { ResolvedReplicatorOptions } from './options.js'
import { staleError } from './repair.js'
import { METHOD_READ, parseReadAnswer } from './wire.js'
import { readLevel, shortGroup, type AckGroup, type ReadLevel } from './quorum.js'
import { pushRecords } from './write.js'

export interface ReadOptions {
  consistency?: Consistency
  timeoutMs?: number
}

export interface ReadResult {
  /** The newest live version; undefined when the newest is a tombstone or nothing is held. */
  record: VersionedRecord | undefined
  /** Version of the newest record seen (tombstone included). */
  version: Hlc | undefined
  /** Replicas brought up to date by read repair before answering. */
  repaired: number
}

export type ReadContext = Pick<ReplicationContext, 'self' | 'transport' | 'clock' | 'hlc' | 'log' | 'placement' | 'detector' | 'membership' | 'replicas' | 'addr'> & {
  opts: Pick<ResolvedReplicatorOptions, 'requestTimeoutMs' | 'readSpeculativeMs'>
  counters: Pick<ReplicationCounters, 'readRepair'>
}

export class ReadCoordinator {
  /** Recent read latency per remote peer (ms, EWMA), to ask the fastest replicas first. */
  private readonly latency = new Map<PeerId, number>()

  constructor (private readonly ctx: ReadContext) {}

  async read (space: SpaceDef, id: string, opts: ReadOptions = {}): Promise<ReadResult> {
    requireSynced(this.ctx.membership, space, 'read')
    const consistency = opts.consistency ?? 'quorum'
    const timeoutMs = opts.timeoutMs ?? this.ctx.opts.requestTimeoutMs
    const partition = this.ctx.placement.partitionOf(space, id)
    const lvl = readLevel(this.ctx.placement.locate(space, partition), consistency)
    if (lvl === undefined) throw new PartitionUnavailableError(space.name, partition, 1, 0, consistency, 'read')
    const reachable = lvl.targets.filter(p => this.ctx.detector.isReachable(p))
    const short = shortGroup(lvl.groups, reachable)
    if (short !== undefined) throw new PartitionUnavailableError(space.name, partition, short.group.needed, short.answered, consistency, 'read')
    if (consistency === 'one') return await this.readOne(space, partition, id, reachable, timeoutMs)
    return await this.readQuorum(space, partition, id, reachable, lvl, consistency, timeoutMs)
  }

  private async readFrom (peer: PeerId, space: SpaceDef, partition: number, id: string, timeoutMs: number): Promise<VersionedRecord | undefined> {
    if (peer === this.ctx.self) {
      if (this.ctx.replicas.isStale(keyOf(space, partition))) throw staleError(space, partition)
      return await (await this.ctx.replicas.open(space, partition)).get(id)
    }
    const answer = await this.ctx.transport.request(this.ctx.addr(peer), METHOD_READ, { space, partition, ids: [id] }, { timeoutMs })
    return parseReadAnswer(answer, space, [id])[0]
  }

  /**
   * Replicas in the order a read asks them: those that count towards more of the level's groups
   * first (a ready owner meets both majorities of QUORUM at once), then this peer, then remotes
   * by recent latency.
   */
  private readOrder (reachable: PeerId[], groups: readonly AckGroup[]): PeerId[] {
    const self = this.ctx.self
    const weight = (p: PeerId): number => groups.filter(g => g.members.includes(p)).length
    const rank = (p: PeerId): number => p === self ? -1 : (this.latency.get(p) ?? 0)
    return [...reachable].sort((a, b) => weight(b) - weight(a) || rank(a) - rank(b))
  }

  /** Exponentially weighted read latency per peer (a failure counts as a full timeout). */
  private observeLatency (peer: PeerId, ms: number): void {
    const prev = this.latency.get(peer)
    this.latency.set(peer, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
  }

  private async readOne (space: SpaceDef, partition: number, id: string, reachable: PeerId[], timeoutMs: number): Promise<ReadResult> {
    const { clock, self } = this.ctx
    const deadline = clock.now() + timeoutMs
    const order = reachable.includes(self) ? [self, ...reachable.filter(p => p !== self)] : reachable
    const errors: string[] = []
    for (const peer of order) {
      const left = deadline - clock.now()
      if (left <= 0) break
      try {
        const rec = await this.readFrom(peer, space, partition, id, left)
        return { record: rec === undefined || rec.deleted ? undefined : rec, version: rec?.version, repaired: 0 }
      } catch (err) {
        errors.push(`${peer}: ${errText(err)}`)
      }
    }
    throw new ReadIncompleteError(space.name, partition, 'one', 1, 0, errors.join('; ') || 'deadline passed')
  }

  private async readQuorum (space: SpaceDef, partition: number, id: string, reachable: PeerId[], lvl: ReadLevel,
    consistency: Consistency, timeoutMs: number): Promise<ReadResult> {
    const { clock, self, opts } = this.ctx
    const tally = this.ctx.counters.readRepair
    const deadline = clock.now() + timeoutMs
    tally.reads++
    type Answer = { peer: PeerId, rec: VersionedRecord | undefined }
    const answers: Answer[] = []
    const errors: string[] = []
    let newest: VersionedRecord | undefined
    let decided = false
    const repairIfStale = async (a: Answer, target: VersionedRecord, left: number): Promise<boolean> => {
      if (a.rec !== undefined && compareVersions(target, a.rec) <= 0) return true
      try {
        if (a.peer === self) await (await this.ctx.replicas.open(space, partition)).apply([target])
        else await pushRecords(this.ctx, a.peer, space, partition, [target], Math.max(1, left))
        tally.replicasRepaired++
        tally.recordsRepaired++
        return true
      } catch (err) {
        this.ctx.log.debug({ peer: a.peer, err: errText(err) }, 'read repair failed')
        return false
      }
    }
    // Ask just the replicas that can meet the level's groups, in readOrder: those in both groups,
    // this peer among them first (no network), then the remotes that answered fastest lately. Another one is asked when one fails, or all the
    // rest when the answers are slow (readSpeculativeMs): a healthy read costs one remote request,
    // not one per replica.
    const { groups } = lvl
    const order = this.readOrder(reachable, groups)
    const met = (peers: readonly PeerId[]): boolean => shortGroup(groups, peers) === undefined
    await new Promise<void>(resolve => {
      let done = 0
      let launched = 0
      let timer: Timer | undefined
      const check = (): void => {
        if (decided) return
        if (met(answers.map(a => a.peer)) || done === order.length) {
          decided = true
          timer?.cancel()
          resolve()
        }
      }
      const launch = (): void => {
        const peer = order[launched++]!
        const t0 = clock.now()
        const failed = (error: string): void => {
          errors.push(`${peer}: ${error}`)
          if (!decided && launched < order.length) launch()
          check()
        }
        void this.readFrom(peer, space, partition, id, Math.max(1, deadline - clock.now())).then(rec => {
          done++
          if (peer !== self) this.observeLatency(peer, clock.now() - t0)
          // A version from too far in the future would be repaired onto every replica asked
          // and then win every later write: such an answer counts as a failed one (another
          // replica is asked), as a replica refuses such a write.
          if (rec !== undefined && peer !== self && admitCopied(this.ctx, [rec], { peer, path: 'read repair', space, partition }).length === 0) {
            if (!decided) failed('CLOCK_SKEW (its version is too far ahead of this clock)')
            return
          }
          const a = { peer, rec }
          if (decided) {
            // A late answer: repair it in the background if it is behind what we returned.
            if (newest !== undefined) void repairIfStale(a, newest, opts.requestTimeoutMs)
            return
          }
          answers.push(a)
          check()
        }, err => {
          done++
          if (peer !== self) this.observeLatency(peer, opts.requestTimeoutMs)
          failed(errText(err))
        })
      }
      while (launched < order.length && !met(order.slice(0, launched))) launch()
      if (launched < order.length) {
        timer = clock.setTimer(opts.readSpeculativeMs, () => {
          timer = undefined
          if (!decided) while (launched < order.length) launch()
        })
      }
    })
    const unmet = shortGroup(groups, answers.map(a => a.peer))
    if (unmet !== undefined) {
      throw new ReadIncompleteError(space.name, partition, consistency, unmet.group.needed, unmet.answered, errors.join('; ') || 'too few replicas answered')
    }
    for (const a of answers) if (a.rec !== undefined && (newest === undefined || compareVersions(a.rec, newest) > 0)) newest = a.rec
    let repaired = 0
    if (newest !== undefined) {
      const target = newest
      const stale = answers.filter(a => a.rec === undefined || compareVersions(target, a.rec) > 0)
      const upToDate = answers.filter(a => !stale.includes(a)).map(a => a.peer)
      if (stale.length > 0) {
        // Blocking read repair: answer once the replicas holding the newest version meet the
        // level's groups again, so a second read at the level cannot see an older value.
        await new Promise<void>(resolve => {
          let left = stale.length
          let resolved = false
          const finish = (): void => { if (!resolved && (met(upToDate) || left === 0)) { resolved = true; resolve() } }
          for (const a of stale) {
            void repairIfStale(a, target, deadline - clock.now()).then(ok => {
              left--
              if (ok) { upToDate.push(a.peer); repaired++ }
              finish()
            })
          }
          finish()
        })
      }
      const unrepaired = shortGroup(groups, upToDate)
      if (unrepaired !== undefined) {
        throw new ReadIncompleteError(space.name, partition, consistency, unrepaired.group.needed, unrepaired.answered, 'read repair did not reach enough replicas')
      }
    }
    return { record: newest === undefined || newest.deleted ? undefined : newest, version: newest?.version, repaired }
  }
}
