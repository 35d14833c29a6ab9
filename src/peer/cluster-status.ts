/**
 * The cluster's status and on-demand repair, as one peer gathers them for `shoal status` and
 * `shoal repair` (GET /cluster/status, POST /cluster/repair; docs/operations.md).
 *
 * Status: this peer's own figures are read locally; every other alive or suspect member is asked
 * over RPC (ops.status, status-wire.ts) at once, each within `timeoutMs`: one that does not answer
 * in time is listed as unreachable, never waited for longer. Per space, from placement and the
 * partition detector: replicas wanted and live, partitions short of replicas, below a quorum and
 * with none; and whether the live replicas of each partition hold the same data, by comparing the
 * roots of their anti-entropy digests (storage/digest.ts) as each peer reported them.
 *
 * Repair: every alive or suspect member (this peer included) is asked to run anti-entropy now
 * (ops.repair → Replicator.repairNow, replication/on-demand.ts) for the spaces asked for; the
 * answer lists what each did and the totals, and says which peers failed.
 *
 * ```ts
 * const ops = new ClusterStatusService({ transport, clock, log, local, members, health, spaces, space, locate, isReachable, repair })
 * ops.register()                                   // serves ops.status and ops.repair to other peers
 * await ops.status({ timeoutMs: 3000 })           // ClusterStatus
 * await ops.repair({ space: 'people', timeoutMs: 600_000 })
 * ```
 */
import { CatalogError } from '../placement/index.js'
import type { RepairReport, RepairRequest } from '../replication/index.js'
import type { Clock, Logger, PeerAddress, PeerId, RequestContext, Transport } from '../runtime/index.js'
import type { SpaceDef } from '../schema/index.js'
import {
  MAX_STATUS_REPLICAS, METHOD_REPAIR, METHOD_STATUS, parseRepairAnswer, parseRepairRequest, parseStatusAnswer, parseStatusRequest,
  type PeerStatus, type ReplicaStatus
} from './status-wire.js'

type MemberState = 'alive' | 'suspect' | 'dead' | 'left'

/** A member as this service reads it (the HTTP API's MemberView satisfies it). */
export interface StatusMember {
  peerId: PeerId
  name: string | null
  addrs: readonly string[]
  http: string | null
  version: string | null
  state: MemberState
}

/** What a partition's placement says, as far as status needs it. */
export interface StatusPlacement {
  owners: readonly PeerId[]
  readReplicas: readonly PeerId[]
  quorum: number
}

export interface ClusterStatusDeps {
  transport: Pick<Transport, 'localPeerId' | 'request' | 'handle'>
  /** For tookMs. */
  clock: Pick<Clock, 'now' | 'wallNow'>
  log: Logger
  /** This peer's own figures (collectLocalStatus). */
  local(): Promise<PeerStatus>
  /** Every member this peer knows, itself included. */
  members(): StatusMember[]
  /** This peer's health verdict (GET /health's status and majority). */
  health(): { status: string, majority: boolean }
  spaces(): SpaceDef[]
  space(name: string): SpaceDef | undefined
  locate(space: SpaceDef, partition: number): StatusPlacement
  isReachable(peerId: PeerId): boolean
  /** How to reach a member: placement's addresses when it has them. */
  addressOf(peerId: PeerId): PeerAddress | undefined
  /** This peer's part of a repair (Replicator.repairNow). */
  repair(req: RepairRequest): Promise<RepairReport>
}

/** One peer's row of the status. The figures are null when it was not asked or did not answer. */
export interface PeerRow {
  peerId: PeerId
  name: string | null
  /** Its membership state as the peer asked sees it. */
  state: MemberState
  /** Whether it answered (a dead or left peer is not asked). */
  reachable: boolean
  /** Why it did not answer. */
  error?: string
  http: string | null
  version: string | null
  uptimeMs: number | null
  ready: boolean | null
  partitions: { held: number, ready: number } | null
  rows: number | null
  tombstones: number | null
  diskBytes: number | null
  hintsPending: number | null
}

export type DigestState = 'agree' | 'differ' | 'unknown'

/** One space's row of the status. */
export interface SpaceRow {
  name: string
  partitions: number
  /** Replicas asked for, and the fewest and most live (ready and reachable) of any partition. */
  replicas: { wanted: number, fewestLive: number, mostLive: number }
  /** Partitions with fewer live replicas than the space asked for, or than their ready holders (a peer away, catching up, or too few peers). */
  partitionsShort: number
  /** Partitions with live replicas but fewer than a quorum (QUORUM reads and writes fail). */
  belowQuorum: number[]
  /** Partitions with no live replica. */
  unavailable: number[]
  /**
   * Whether the live replicas' digest roots are equal: 'differ' when some partition's differ,
   * else 'unknown' when some could not be compared (a replica did not answer, only one live),
   * else 'agree'.
   */
  digests: { state: DigestState, differing: number[], unknown: number[] }
}

export interface ClusterStatus {
  /** The peer that gathered it. */
  peer: PeerId
  name: string
  at: string
  tookMs: number
  timeoutMs: number
  health: string
  majority: boolean
  peers: PeerRow[]
  spaces: SpaceRow[]
}

export interface PeerRepair {
  peerId: PeerId
  name: string | null
  ok: boolean
  error?: string
  report?: RepairReport
}

/** Every peer's repair counts added up (their failures are in each peer's report). */
export type RepairTotals = Omit<RepairReport, 'failures' | 'cancelled'>

export interface ClusterRepair {
  peer: PeerId
  name: string
  /** The spaces repaired; null: every space. */
  spaces: string[] | null
  tookMs: number
  /** True when every peer asked ran its part and every sync completed. */
  ok: boolean
  peers: PeerRepair[]
  /** Members not asked: dead or left. */
  notAsked: Array<{ peerId: PeerId, name: string | null, state: MemberState }>
  totals: RepairTotals
}

/** A repair is already running here: one at a time per peer, whoever asked (409 REPAIR_RUNNING). */
export class RepairBusyError extends Error {
  override name = 'RepairBusyError'
  readonly code = 'BUSY'
}

export class ClusterStatusService {
  /** This peer's part of a repair is running (asked by any peer, itself included). */
  private repairing = false
  /** A repair this peer coordinates is running. */
  private coordinating = false

  constructor (private readonly deps: ClusterStatusDeps) {}

  /** Serves ops.status and ops.repair to the other peers. */
  register (): void {
    const { transport } = this.deps
    transport.handle(METHOD_STATUS, async (body) => {
      parseStatusRequest(body)
      return await this.deps.local()
    })
    transport.handle(METHOD_REPAIR, async (body, ctx: RequestContext) => {
      const req = parseRepairRequest(body)
      // A space this peer's catalog lacks (it is still arriving by gossip) is left out here.
      const spaces = req.spaces === null ? this.deps.spaces() : req.spaces.flatMap(n => this.deps.space(n) ?? [])
      this.deps.log.info({ from: ctx.from, spaces: req.spaces }, 'repair: running anti-entropy now, asked by a peer')
      return await this.repairHere({ spaces, covered: req.covered, signal: ctx.signal })
    })
  }

  async status (opts: { timeoutMs: number }): Promise<ClusterStatus> {
    const { deps } = this
    const started = deps.clock.now()
    const self = deps.transport.localPeerId
    const members = deps.members()
    const answers = new Map<PeerId, PeerStatus>()
    const errors = new Map<PeerId, string>()
    await Promise.all(members.map(async m => {
      if (m.peerId !== self && m.state !== 'alive' && m.state !== 'suspect') return
      try {
        const answer = m.peerId === self
          ? await deps.local()
          : parseStatusAnswer(await deps.transport.request(this.addr(m), METHOD_STATUS, {}, { timeoutMs: opts.timeoutMs }))
        answers.set(m.peerId, answer)
      } catch (err) {
        errors.set(m.peerId, errorText(err))
      }
    }))
    const health = deps.health()
    const peers = members.map(m => peerRow(m, answers.get(m.peerId), errors.get(m.peerId)))
    peers.sort((a, b) => (a.name ?? a.peerId).localeCompare(b.name ?? b.peerId) || a.peerId.localeCompare(b.peerId))
    const digests = digestIndex(answers)
    const spaces = deps.spaces().map(space => summarizeSpace(space, p => deps.locate(space, p), id => deps.isReachable(id), (peer, p) => digests(peer, space.uid, p)))
    const me = members.find(m => m.peerId === self)
    return {
      peer: self,
      name: me?.name ?? answers.get(self)?.name ?? self,
      at: new Date(deps.clock.wallNow()).toISOString(),
      tookMs: Math.round(deps.clock.now() - started),
      timeoutMs: opts.timeoutMs,
      health: health.status,
      majority: health.majority,
      peers,
      spaces
    }
  }

  async repair (opts: { space?: string, timeoutMs: number, signal?: AbortSignal }): Promise<ClusterRepair> {
    if (this.coordinating) throw new RepairBusyError('a repair asked through this peer is already running; wait for it to finish')
    this.coordinating = true
    try {
      return await this.coordinateRepair(opts)
    } finally {
      this.coordinating = false
    }
  }

  /** This peer's part of a repair: one at a time, so repeated requests cannot pile up syncs. */
  private async repairHere (req: RepairRequest): Promise<RepairReport> {
    if (this.repairing) throw new RepairBusyError('a repair is already running on this peer')
    this.repairing = true
    try {
      return await this.deps.repair(req)
    } finally {
      this.repairing = false
    }
  }

  private async coordinateRepair (opts: { space?: string, timeoutMs: number, signal?: AbortSignal }): Promise<ClusterRepair> {
    const { deps } = this
    const started = deps.clock.now()
    const self = deps.transport.localPeerId
    let spaces: SpaceDef[]
    if (opts.space !== undefined) {
      const space = deps.space(opts.space)
      if (space === undefined) throw new CatalogError('UNKNOWN_SPACE', 'space', `no space named '${opts.space.slice(0, 80)}'`)
      spaces = [space]
    } else {
      spaces = deps.spaces()
    }
    const members = deps.members()
    const asked = members.filter(m => m.peerId === self || m.state === 'alive' || m.state === 'suspect')
    const covered = asked.map(m => m.peerId)
    const names = opts.space !== undefined ? [opts.space] : null
    deps.log.info({ spaces: names, peers: covered.length }, 'repair: asking every live peer to run anti-entropy now')
    const peers = await Promise.all(asked.map(async (m): Promise<PeerRepair> => {
      try {
        const report = m.peerId === self
          ? await this.repairHere({ spaces, covered, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
          : parseRepairAnswer(await deps.transport.request(this.addr(m), METHOD_REPAIR, { spaces: names, covered },
            { timeoutMs: opts.timeoutMs, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) }))
        const ok = report.syncsFailed === 0 && !report.cancelled
        return { peerId: m.peerId, name: m.name, ok, report, ...(ok ? {} : { error: report.cancelled ? 'cancelled before every sync ran' : `${report.syncsFailed} sync(s) did not complete` }) }
      } catch (err) {
        return { peerId: m.peerId, name: m.name, ok: false, error: errorText(err) }
      }
    }))
    const totals = sumReports(peers.flatMap(p => p.report ?? []))
    const ok = peers.every(p => p.ok)
    deps.log.info({ spaces: names, ok, ...totals, failedPeers: peers.filter(p => !p.ok).map(p => p.name ?? p.peerId) }, 'repair: done')
    return {
      peer: self,
      name: members.find(m => m.peerId === self)?.name ?? self,
      spaces: names,
      tookMs: Math.round(deps.clock.now() - started),
      ok,
      peers: peers.sort((a, b) => (a.name ?? a.peerId).localeCompare(b.name ?? b.peerId)),
      notAsked: members.filter(m => !covered.includes(m.peerId)).map(m => ({ peerId: m.peerId, name: m.name, state: m.state })),
      totals
    }
  }

  private addr (m: StatusMember): PeerAddress {
    return this.deps.addressOf(m.peerId) ?? { id: m.peerId, addrs: m.addrs }
  }
}

/** What collectLocalStatus reads: narrow views of storage, replication and the peer. */
export interface LocalStatusSources {
  peerId: PeerId
  name: string
  version: string
  uptimeMs(): number
  ready(): boolean
  /** The replicas open in storage. */
  stores(): Array<{ space: SpaceDef, partition: number, stats(): { liveRows: number, tombstones: number, diskBytes: number }, digest(): Promise<{ root: string }> }>
  isReady(space: SpaceDef, partition: number): boolean
  replication(): { heldPartitions: number, readyPartitions: number, hints: { pending: number } }
}

/** This peer's own figures and its replicas' digest roots (the answer of ops.status). */
export async function collectLocalStatus (s: LocalStatusSources): Promise<PeerStatus> {
  // Beyond the bound (a peer holding more replicas than any we run) the rest are left out: their
  // digests then count as unknown, never as agreeing.
  const stores = s.stores().slice(0, MAX_STATUS_REPLICAS)
  let rows = 0
  let tombstones = 0
  let diskBytes = 0
  const replicas = await Promise.all(stores.map(async (store): Promise<ReplicaStatus> => {
    let live = 0
    try {
      const st = store.stats()
      live = st.liveRows
      rows += st.liveRows
      tombstones += st.tombstones
      diskBytes += st.diskBytes
    } catch {
      // A replica closing under us: its figures are left out.
    }
    const digest = await store.digest().then(d => d.root, () => null)
    return { uid: store.space.uid, space: store.space.name, partition: store.partition, ready: s.isReady(store.space, store.partition), digest, rows: live }
  }))
  const repl = s.replication()
  return {
    peerId: s.peerId,
    name: s.name,
    version: s.version,
    uptimeMs: Math.max(0, Math.round(s.uptimeMs())),
    ready: s.ready(),
    partitions: { held: repl.heldPartitions, ready: Math.min(repl.readyPartitions, repl.heldPartitions) },
    rows,
    tombstones,
    diskBytes,
    hintsPending: repl.hints.pending,
    replicas
  }
}

function peerRow (m: StatusMember, s: PeerStatus | undefined, error: string | undefined): PeerRow {
  const asked = m.state === 'alive' || m.state === 'suspect' || s !== undefined || error !== undefined
  return {
    peerId: m.peerId,
    name: m.name ?? s?.name ?? null,
    state: m.state,
    reachable: s !== undefined,
    ...(error !== undefined ? { error } : !asked ? {} : s === undefined ? { error: 'not asked' } : {}),
    http: m.http,
    version: s?.version ?? m.version,
    uptimeMs: s?.uptimeMs ?? null,
    ready: s?.ready ?? null,
    partitions: s?.partitions ?? null,
    rows: s?.rows ?? null,
    tombstones: s?.tombstones ?? null,
    diskBytes: s?.diskBytes ?? null,
    hintsPending: s?.hintsPending ?? null
  }
}

/**
 * A lookup of the digest root each peer reported for a replica: the root; null when the peer
 * answered without one for it (not held, or its digest failed); undefined when the peer did not
 * answer.
 */
function digestIndex (answers: Map<PeerId, PeerStatus>): (peer: PeerId, uid: string, partition: number) => string | null | undefined {
  const index = new Map<PeerId, Map<string, string | null>>()
  for (const [peer, s] of answers) {
    const byReplica = new Map<string, string | null>()
    // Only a ready replica's digest says what the partition serves; one catching up is expected to differ.
    for (const r of s.replicas) if (r.ready) byReplica.set(`${r.uid}\u0000${r.partition}`, r.digest)
    index.set(peer, byReplica)
  }
  return (peer, uid, partition) => {
    const byReplica = index.get(peer)
    if (byReplica === undefined) return undefined
    return byReplica.get(`${uid}\u0000${partition}`) ?? null
  }
}

/**
 * One space's row: per partition the live replicas (placement's ready holders the detector finds
 * reachable) and whether their digest roots agree. `digestOf` answers as digestIndex's lookup.
 */
export function summarizeSpace (
  space: SpaceDef,
  locate: (partition: number) => StatusPlacement,
  isReachable: (peerId: PeerId) => boolean,
  digestOf: (peerId: PeerId, partition: number) => string | null | undefined
): SpaceRow {
  let fewestLive = Number.POSITIVE_INFINITY
  let mostLive = 0
  let partitionsShort = 0
  const belowQuorum: number[] = []
  const unavailable: number[] = []
  const differing: number[] = []
  const unknown: number[] = []
  for (let p = 0; p < space.partitions; p++) {
    const loc = locate(p)
    const live = loc.readReplicas.filter(isReachable)
    fewestLive = Math.min(fewestLive, live.length)
    mostLive = Math.max(mostLive, live.length)
    // Short of the replicas asked for, or of a ready holder (a space on fewer peers than its
    // replicas is always short). Unlike GET /health's partitionsShort, partitions below a quorum
    // count too, and `unavailable` here is no live replica at all (/health's is below a quorum).
    if (live.length < space.replicas || live.length < loc.readReplicas.length) partitionsShort++
    if (live.length === 0) unavailable.push(p)
    else if (loc.quorum === 0 || live.length < loc.quorum) belowQuorum.push(p)
    const state = compareDigests(live.map(peer => digestOf(peer, p)), loc.owners.length)
    if (state === 'differ') differing.push(p)
    else if (state === 'unknown') unknown.push(p)
  }
  return {
    name: space.name,
    partitions: space.partitions,
    replicas: { wanted: space.replicas, fewestLive: Number.isFinite(fewestLive) ? fewestLive : 0, mostLive },
    partitionsShort,
    belowQuorum,
    unavailable,
    digests: { state: differing.length > 0 ? 'differ' : unknown.length > 0 ? 'unknown' : 'agree', differing, unknown }
  }
}

/**
 * The live replicas' digest roots of one partition: 'differ' when two known roots differ;
 * 'unknown' when a root is missing, or fewer than two replicas are live while the partition has
 * more owners (the others cannot be compared); else 'agree'.
 */
export function compareDigests (roots: ReadonlyArray<string | null | undefined>, owners: number): DigestState {
  const known = roots.filter((r): r is string => typeof r === 'string')
  if (new Set(known).size > 1) return 'differ'
  if (known.length < roots.length) return 'unknown'
  if (roots.length === 0 || (roots.length < 2 && owners > 1)) return 'unknown'
  return 'agree'
}

export function sumReports (reports: readonly RepairReport[]): RepairTotals {
  const t: RepairTotals = { partitions: 0, syncs: 0, syncsFailed: 0, bucketsCompared: 0, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0 }
  for (const r of reports) {
    t.partitions += r.partitions
    t.syncs += r.syncs
    t.syncsFailed += r.syncsFailed
    t.bucketsCompared += r.bucketsCompared
    t.bucketsDiffering += r.bucketsDiffering
    t.recordsPulled += r.recordsPulled
    t.recordsPushed += r.recordsPushed
  }
  return t
}

function errorText (err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message : String(err)
}
