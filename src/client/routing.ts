import { partitionOfId } from '../placement/hash.js'

/**
 * Owner routing: a client given several peers sends a request first to a peer that serves it
 * without a hop, where it knows one. Any peer can coordinate anything, so routing never changes an
 * answer, only where it is computed: a query over one partition, sent to a peer holding a replica
 * of it, reads that replica in process instead of asking another peer over the network (a
 * count(*) over a one-partition space on 3 peers: 0.85-0.91 ms routed, 1.5-1.6 ms through a peer
 * without it, docs/benchmarks.md). A stale or wrong route costs the hop it tried to save.
 *
 * What it knows, and from where (never from an address the caller did not give):
 * - Which configured URL is which peer: GET /health's `peer`, asked once per URL in the background
 *   when a route names a peer not matched yet (again after PROBE_RETRY_MS when it failed).
 * - Queries: the peers a query's answer names in its `x-shoal-route` header (those holding a
 *   readable replica of every partition it read; none when no peer holds them all), kept by the
 *   query's text, so the next run of the same text goes there. Every answer refreshes its entry.
 *   At most MAX_QUERY_ROUTES texts.
 * - Records by id: each space's placement (GET /spaces/:name), fetched in the background on the
 *   space's first use and again when older than PLACEMENT_TTL_MS (a fetch that failed, too: the
 *   space is then unrouted until the next); the id's partition is computed as every peer computes
 *   it (placement/hash.ts). At most MAX_SPACES spaces.
 * Nothing here waits: a route not known yet sends the request as an unrouted client would.
 */

/** The header of a query answer naming the peers that would read all its partitions locally (src/http/query.ts ROUTE_HEADER). */
export const ROUTE_HEADER = 'x-shoal-route'
/** Query texts whose route is kept; the oldest is dropped past it. */
export const MAX_QUERY_ROUTES = 1024
/** Query texts longer than this are not kept (a key is held as it is). */
export const MAX_ROUTED_QUERY_CHARS = 4096
/** Spaces whose placement is kept. */
export const MAX_SPACES = 256
/** A space's placement is fetched again when older than this: ms. */
export const PLACEMENT_TTL_MS = 10_000
/** A URL whose peer id could not be learned is asked again after this: ms. */
export const PROBE_RETRY_MS = 30_000
/** Peers a route header may name (replicas of one partition). */
const MAX_ROUTE_PEERS = 16
/** What a peer id looks like on the wire (libp2p's base58btc or a multibase string), bounded: anything else is ignored. */
const PEER_ID = /^[A-Za-z0-9]{1,128}$/

/** One space's placement as the client keeps it: per partition, peer ids best first. */
interface SpaceRoutes {
  /** 0: the fetch failed (an unknown space, no answer); nothing is routed until the next. */
  partitions: number
  read: string[][]
  write: string[][]
  at: number
}

export interface RoutesDeps {
  /** The peer id of configured URL `index` (its GET /health). */
  peerIdOf: (index: number) => Promise<string>
  /** A space's description with its placement (GET /spaces/:name). */
  placementOf: (space: string) => Promise<unknown>
  now?: () => number
}

export class Routes {
  private readonly ids: Array<string | undefined>
  private readonly probedAt: number[]
  private readonly probing = new Set<number>()
  private readonly queries = new Map<string, readonly string[]>()
  private readonly spaces = new Map<string, SpaceRoutes>()
  private readonly fetching = new Set<string>()
  private readonly now: () => number

  constructor (private readonly urls: number, private readonly deps: RoutesDeps) {
    if (!(urls >= 2)) throw new Error(`Routes needs at least two peer URLs, got ${urls}`)
    this.ids = new Array<string | undefined>(urls).fill(undefined)
    this.probedAt = new Array<number>(urls).fill(-Infinity)
    this.now = deps.now ?? Date.now
  }

  /** The configured URLs to try first for the query `key` (its request body), best first; empty when unknown. */
  forQuery (key: string): number[] {
    const peers = this.queries.get(key)
    return peers === undefined ? [] : this.indicesOf(peers)
  }

  /** Takes the route a query's answer gave (its x-shoal-route header): kept, replaced or dropped for `key`. */
  learnQuery (key: string, header: string | string[] | undefined): void {
    if (key.length > MAX_ROUTED_QUERY_CHARS) return
    const peers = parseRoute(header)
    this.queries.delete(key)
    if (peers.length === 0) return
    this.queries.set(key, peers)
    if (this.queries.size > MAX_QUERY_ROUTES) this.queries.delete(this.queries.keys().next().value!)
    this.probeUnknown(peers)
  }

  /**
   * The configured URLs to try first for record `id` of `space`: its partition's write replicas
   * (`write`) or readable replicas, best first; empty while the space's placement is not known.
   */
  forRecord (space: string, id: string, write: boolean): number[] {
    return this.forRecords(space, 1, () => id, write)
  }

  /**
   * The configured URLs to try first for `count` records of `space` (record i's id is idAt(i)) when
   * they all belong to one partition; else empty (a batch over several partitions has no owner).
   */
  forRecords (space: string, count: number, idAt: (i: number) => unknown, write: boolean): number[] {
    const s = this.placement(space)
    if (s === undefined || s.partitions === 0 || count === 0) return []
    // One partition: no id to hash (a batch of thousands would hash each).
    let p = s.partitions === 1 ? 0 : -1
    for (let i = 0; i < count && s.partitions > 1; i++) {
      const id = idAt(i)
      if (typeof id !== 'string' || id === '') return []
      const q = partitionOfId(id, s.partitions)
      if (p >= 0 && q !== p) return []
      p = q
    }
    const peers = (write ? s.write : s.read)[p]
    return peers === undefined ? [] : this.indicesOf(peers)
  }

  /** Forgets a space's placement (the caller drops it, or makes it again). */
  forgetSpace (space: string): void {
    this.spaces.delete(space)
  }

  /** A space's placement when known; fetches it in the background when missing or old. */
  private placement (space: string): SpaceRoutes | undefined {
    const s = this.spaces.get(space)
    if (s === undefined || this.now() - s.at > PLACEMENT_TTL_MS) this.fetch(space)
    return s
  }

  private fetch (space: string): void {
    if (this.fetching.has(space)) return
    this.fetching.add(space)
    const keep = (routes: SpaceRoutes): void => {
      this.spaces.delete(space)
      this.spaces.set(space, routes)
      if (this.spaces.size > MAX_SPACES) this.spaces.delete(this.spaces.keys().next().value!)
    }
    // Unknown, malformed, or no peer answered: unrouted, and not asked again before the TTL (a
    // workload on a missing space would otherwise send a fetch beside each of its requests).
    const failed = (): void => { keep({ partitions: 0, read: [], write: [], at: this.now() }) }
    this.deps.placementOf(space).then(view => {
      const routes = parsePlacement(view, this.now())
      if (routes === undefined) { failed(); return }
      keep(routes)
      this.probeUnknown(routes.read.flat())
    }, failed).finally(() => { this.fetching.delete(space) })
  }

  private indicesOf (peers: readonly string[]): number[] {
    const out: number[] = []
    for (const peer of peers) {
      const i = this.ids.indexOf(peer)
      if (i >= 0 && !out.includes(i)) out.push(i)
    }
    return out
  }

  /** Asks the URLs not matched to a peer yet who they are, when `peers` names one not matched. */
  private probeUnknown (peers: readonly string[]): void {
    if (peers.every(p => this.ids.includes(p))) return
    const now = this.now()
    for (let i = 0; i < this.urls; i++) {
      if (this.ids[i] !== undefined || this.probing.has(i) || now - this.probedAt[i]! < PROBE_RETRY_MS) continue
      this.probing.add(i)
      this.probedAt[i] = now
      this.deps.peerIdOf(i).then(id => {
        if (!PEER_ID.test(id)) return
        // One peer behind two URLs (an alias): the first keeps it.
        if (!this.ids.includes(id)) this.ids[i] = id
      }, () => { /* asked again after PROBE_RETRY_MS */ }).finally(() => { this.probing.delete(i) })
    }
  }
}

/** Peer ids of an x-shoal-route header; nothing when absent or malformed. */
export function parseRoute (header: string | string[] | undefined): string[] {
  if (typeof header !== 'string' || header.length === 0) return []
  const peers = header.split(',').map(p => p.trim())
  if (peers.length > MAX_ROUTE_PEERS || !peers.every(p => PEER_ID.test(p))) return []
  return peers
}

/** A space description's placement (GET /spaces/:name), or undefined when it has none usable. */
function parsePlacement (view: unknown, at: number): SpaceRoutes | undefined {
  if (typeof view !== 'object' || view === null) return undefined
  const v = view as { partitions?: unknown, placement?: unknown }
  const partitions = v.partitions
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1 || !Array.isArray(v.placement) || v.placement.length !== partitions) return undefined
  const read: string[][] = []
  const write: string[][] = []
  for (let p = 0; p < partitions; p++) {
    const entry = v.placement[p] as { partition?: unknown, readReplicas?: unknown, writeReplicas?: unknown } | null
    if (entry === null || typeof entry !== 'object' || entry.partition !== p) return undefined
    read.push(peerList(entry.readReplicas))
    write.push(peerList(entry.writeReplicas))
  }
  return { partitions, read, write, at }
}

function peerList (value: unknown): string[] {
  if (!Array.isArray(value)) return []
  return value.filter((p): p is string => typeof p === 'string' && PEER_ID.test(p)).slice(0, MAX_ROUTE_PEERS)
}
