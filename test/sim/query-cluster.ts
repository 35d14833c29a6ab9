/**
 * Query clusters in the simulator: one QueryService per simulated peer, MemoryStores holding the
 * rows of the partitions placed on each peer, and a placement the test chooses (rendezvous over
 * all peers by default, or any fixed table). No membership runs: reachability and suspicion are
 * what the test says (markUnreachable / markSuspect), so a crash or a partition can be one the
 * coordinator has not noticed yet (it must retry) or one it knows about (it must not ask).
 *
 * Every peer records the `query.fragment` streams it serves (who asked, the body, and when the
 * request's signal aborted), so tests can see that cancellation reached the data peers. A peer's
 * store can be made slow (openForQuery waits on a virtual timer of that peer), which keeps a
 * fragment in flight at the data peer for as long as the test wants, in virtual time.
 */
import { partitionKey, partitionOfId, rendezvous } from '../../src/placement/hash.js'
import { QueryService } from '../../src/query/service/index.js'
import type { QueryAnswer, QueryRequest, QueryServiceOptions } from '../../src/query/service/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import type { RequestContext, StreamHandler, Transport } from '../../src/runtime/index.js'
import { checkSchema } from '../../src/schema/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld, simAddress } from './index.js'
import type { LatencySpec, SimPeer } from './index.js'
import { MemoryStores } from './memory-store.js'

export type Placement = (space: SpaceDef, partition: number, peers: readonly string[]) => string[]

/** Rendezvous over every peer, `space.replicas` of them. */
export const rendezvousPlacement: Placement = (space, partition, peers) =>
  rendezvous(peers, partitionKey(space.uid, partition), space.replicas)

/** `holder` is the first replica of every partition; the others by rendezvous over the rest. */
export function holderPlacement (holder: string): Placement {
  return (space, partition, peers) =>
    [holder, ...rendezvous(peers.filter(p => p !== holder), partitionKey(space.uid, partition), space.replicas - 1)]
}

export interface Row { id: string, region: string, amount: number }

export interface ServedFragment {
  /** The coordinator that asked. */
  from: string
  body: unknown
  /** Virtual time the request reached the handler. */
  at: number
  signal: AbortSignal
  /** Virtual time the request's signal aborted, if it did. */
  abortedAt?: number
}

export interface QueryNode {
  id: string
  peer: SimPeer
  service: QueryService
  stores: MemoryStores
  /** Fragment streams this peer served, in arrival order. */
  served: ServedFragment[]
  /** A slow disk: openForQuery waits this many virtual ms (on this peer's clock). */
  storeDelayMs: number
}

export interface QueryClusterOptions {
  seed: number
  /** Peers q0..q<n-1>; default 6. */
  peers?: number
  latencyMs?: LatencySpec
  /** Options of every peer's QueryService. */
  query?: QueryServiceOptions
}

export const REGIONS = ['eu', 'us', 'ap', 'sa', 'af']

/** The space every test queries: id, region, amount. */
export function makeSalesSpace (name = 's', partitions = 16, replicas = 3): SpaceDef {
  return {
    name,
    uid: `${name}@1`,
    schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'region', type: 'utf8' }, { name: 'amount', type: 'int32' }]),
    partitions,
    replicas
  }
}

/** n rows with known regions and amounts (deterministic). */
export function makeRows (n: number, prefix = 'r'): Row[] {
  return [...Array(n).keys()].map(i => ({ id: `${prefix}${i}`, region: REGIONS[(i * 7) % REGIONS.length]!, amount: (i * 37) % 101 }))
}

/** GROUP BY region, count(*), sum(amount) of these rows, sorted by region. */
export function expectedByRegion (rows: readonly Row[]): Array<{ region: string, count: number, sum: number }> {
  const m = new Map<string, { region: string, count: number, sum: number }>()
  for (const r of rows) {
    let g = m.get(r.region)
    if (g === undefined) m.set(r.region, g = { region: r.region, count: 0, sum: 0 })
    g.count++
    g.sum += r.amount
  }
  return [...m.values()].sort((a, b) => a.region < b.region ? -1 : a.region > b.region ? 1 : 0)
}

class NotHeldError extends Error {
  readonly code = 'NOT_HELD'
}

export class QueryCluster {
  readonly world: SimWorld
  readonly nodes = new Map<string, QueryNode>()
  readonly ids: string[]
  readonly spaces = new Map<string, { def: SpaceDef, placement: Placement, rows: Row[] }>()
  /** Peers every coordinator believes unreachable (as its failure detector would say). */
  readonly unreachable = new Set<string>()
  readonly suspect = new Set<string>()
  /** Virtual time the services were made (their hedge buckets start full then). */
  readonly createdAt: number

  constructor (readonly opts: QueryClusterOptions) {
    this.world = new SimWorld({ seed: opts.seed, ...(opts.latencyMs !== undefined ? { latencyMs: opts.latencyMs } : {}) })
    const n = opts.peers ?? 6
    this.ids = [...Array(n).keys()].map(i => `q${i}`)
    for (const id of this.ids) this.addNode(id)
    this.createdAt = this.world.now()
  }

  private addNode (id: string): QueryNode {
    const peer = this.world.addPeer(id)
    const stores = new MemoryStores()
    const served: ServedFragment[] = []
    const node: QueryNode = { id, peer, service: undefined as unknown as QueryService, stores, served, storeDelayMs: 0 }
    const transport = recordingTransport(peer.transport, served, () => this.world.now())
    node.service = new QueryService({
      transport,
      clock: peer.clock,
      log: silentLogger,
      self: id,
      space: name => this.spaces.get(name)?.def,
      partitionOf: (space, rid) => partitionOfId(rid, space.partitions),
      readReplicas: (space, partition) => this.replicasOf(space.name, partition),
      addressOf: p => this.ids.includes(p) ? simAddress(p) : undefined,
      isReachable: p => !this.unreachable.has(p),
      isSuspect: p => this.suspect.has(p),
      isSynced: () => true,
      openForQuery: async (space, partition) => {
        const store = stores.get(space, partition)
        if (store === undefined) throw new NotHeldError(`${id} holds no replica of ${space.name}/${partition}`)
        if (node.storeDelayMs > 0) await new Promise<void>(resolve => { peer.clock.setTimer(node.storeDelayMs, resolve) })
        return store
      },
      localRows: (space, partition) => stores.get(space, partition)?.stats().liveRows,
      peerName: p => `peer-${p}`
    }, this.opts.query)
    node.service.start()
    this.nodes.set(id, node)
    return node
  }

  get (id: string): QueryNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  replicasOf (spaceName: string, partition: number): string[] {
    const s = this.spaces.get(spaceName)
    if (s === undefined) throw new Error(`no space ${spaceName}`)
    return s.placement(s.def, partition, this.ids)
  }

  /** Partitions whose replicas include `peer`. */
  partitionsOn (spaceName: string, peer: string): number[] {
    const def = this.spaces.get(spaceName)!.def
    return [...Array(def.partitions).keys()].filter(p => this.replicasOf(spaceName, p).includes(peer))
  }

  /** Creates the space's stores on every replica and writes `rows` to each replica of their partition. */
  async addSpace (def: SpaceDef, rows: Row[], placement: Placement = rendezvousPlacement): Promise<void> {
    this.spaces.set(def.name, { def, placement, rows })
    for (let p = 0; p < def.partitions; p++) {
      for (const id of this.replicasOf(def.name, p)) await this.get(id).stores.open(def, p)
    }
    let version = 1
    for (const r of rows) {
      const p = partitionOfId(r.id, def.partitions)
      const rec = { id: r.id, version: version++, deleted: false, row: { ...r } }
      for (const id of this.replicasOf(def.name, p)) await this.get(id).stores.get(def, p)!.apply([rec])
    }
  }

  rowsOf (spaceName: string, partitions?: readonly number[]): Row[] {
    const s = this.spaces.get(spaceName)!
    if (partitions === undefined) return s.rows
    const keep = new Set(partitions)
    return s.rows.filter(r => keep.has(partitionOfId(r.id, s.def.partitions)))
  }

  /** Starts a query at `coordinator` now (virtual time); drive the world to settle it. */
  query (coordinator: string, req: QueryRequest): Promise<QueryAnswer> {
    return this.get(coordinator).service.query(req)
  }

  /** Runs a query to completion in virtual time. */
  async run (coordinator: string, req: QueryRequest, maxMs = 60_000): Promise<QueryAnswer> {
    return await drive(this.world, this.query(coordinator, req), maxMs)
  }

  /** The sum of a counter of QueryService.stats() over every peer. */
  total (key: 'hedgesFired' | 'hedgesWon' | 'retries' | 'localOnly' | 'fragmentsServed' | 'fragmentsCancelled' | 'queries' | 'failed' | 'partialAnswers'): number {
    let n = 0
    for (const node of this.nodes.values()) n += node.service.stats()[key]
    return n
  }
}

/** The transport a peer's QueryService gets: the peer's own, recording the streams it serves. */
function recordingTransport (t: Transport, served: ServedFragment[], now: () => number): Transport {
  return {
    localPeerId: t.localPeerId,
    localAddrs: () => t.localAddrs(),
    send: (to, method, body) => { t.send(to, method, body) },
    request: async (to, method, body, opts) => await t.request(to, method, body, opts),
    stream: (to, method, body, opts) => t.stream(to, method, body, opts),
    handle: (method, handler) => { t.handle(method, handler) },
    onMessage: (method, listener) => { t.onMessage(method, listener) },
    handleStream: (method: string, handler: StreamHandler) => {
      t.handleStream(method, (body: unknown, ctx: RequestContext) => {
        const rec: ServedFragment = { from: ctx.from, body, at: now(), signal: ctx.signal }
        if (ctx.signal.aborted) rec.abortedAt = now()
        else ctx.signal.addEventListener('abort', () => { rec.abortedAt = now() }, { once: true })
        served.push(rec)
        return handler(body, ctx)
      })
    }
  }
}

/** Awaits a promise while the world runs (virtual time), failing if it does not settle within maxMs. */
export async function drive<T> (world: SimWorld, promise: Promise<T>, maxMs = 60_000): Promise<T> {
  let settled = false
  const p = promise.finally(() => { settled = true })
  p.catch(() => {})
  await world.runUntil(() => settled, { maxMs, checkEveryMs: 1 })
  if (!settled) throw new Error(`operation did not settle within ${maxMs} virtual ms`)
  return await p
}

/** Settles every promise while the world runs; fails if any is still pending after maxMs. */
export async function driveAll<T> (world: SimWorld, promises: Array<Promise<T>>, maxMs = 60_000): Promise<Array<PromiseSettledResult<T>>> {
  return await drive(world, Promise.allSettled(promises), maxMs)
}
