/**
 * Builds SWIM clusters in the simulator, for the membership simulator tests and
 * scripts/bench/swim.ts. Peers are named p0..p<n-1>; everyone joins p0.
 */
import { silentLogger } from '../../src/runtime/index.js'
import { MemberRecords, Swim } from '../../src/membership/index.js'
import type { IncarnationStore, MemberEvent, MemberMeta, SwimOptions } from '../../src/membership/index.js'
import { SimWorld, simAddress } from './index.js'
import type { SimPeer } from './index.js'

export interface SimMember {
  id: string
  peer: SimPeer
  swim: Swim
}

/**
 * A peer's incarnation ceiling kept in memory across its simulated restarts: what
 * src/peer/incarnation-file.ts keeps in the data dir of a real peer. `lost()` forgets it, as a
 * deleted (or restored-from-backup) file would.
 */
export class MemoryIncarnationStore implements IncarnationStore {
  ceiling: number | undefined
  saves = 0
  load (): number | undefined { return this.ceiling }
  save (ceiling: number): void { this.ceiling = ceiling; this.saves++ }
  lost (): void { this.ceiling = undefined }
}

export interface RecordedEvent { atMs: number, observer: string, type: MemberEvent['type'], member: string, incarnation: number }

export class SwimCluster {
  readonly members = new Map<string, SimMember>()
  readonly events: RecordedEvent[] = []
  recordEvents = false
  /** When set, each peer gets an incarnation store that outlives its restarts (its data dir). */
  persistIncarnations = false
  readonly incarnationStores = new Map<string, MemoryIncarnationStore>()
  /** One pool of member records for every view: what lets 10,000 full views fit one process (member.ts). */
  readonly records = new MemberRecords()

  constructor (readonly world: SimWorld, readonly options: SwimOptions = {}) {}

  /**
   * Adds and starts a peer (or restarts it, when it existed); `bootstrap` ids are joined in the
   * background by start().
   */
  add (id: string, bootstrap: string[] = [], meta: MemberMeta = { name: id }): SimMember {
    const peer = this.world.peers().some(p => p.id === id) ? this.world.restart(id) : this.world.addPeer(id)
    let incarnations: MemoryIncarnationStore | undefined
    if (this.persistIncarnations) {
      incarnations = this.incarnationStores.get(id) ?? new MemoryIncarnationStore()
      this.incarnationStores.set(id, incarnations)
    }
    const swim = new Swim({ transport: peer.transport, clock: peer.clock, random: peer.random, log: silentLogger, records: this.records, ...(incarnations !== undefined ? { incarnations } : {}) },
      { ...this.options, meta, bootstrap: bootstrap.map(simAddress) })
    swim.onChange(ev => {
      if (this.recordEvents) this.events.push({ atMs: this.world.now(), observer: id, type: ev.type, member: ev.member.id, incarnation: ev.member.incarnation })
    })
    void swim.start()
    const m = { id, peer, swim }
    this.members.set(id, m)
    return m
  }

  get (id: string): SimMember {
    const m = this.members.get(id)
    if (m === undefined) throw new Error(`no member ${id}`)
    return m
  }

  crash (id: string): void {
    this.world.crash(id)
    void this.get(id).swim.stop()
    this.members.delete(id)
  }

  /** Members that are up. */
  up (): SimMember[] { return [...this.members.values()].filter(m => m.peer.up) }

  /** True when every up member sees exactly the up members as alive. */
  converged (): boolean {
    const up = this.up()
    const ids = new Set(up.map(m => m.id))
    for (const m of up) {
      let alive = 0
      for (const x of m.swim.members()) {
        if (x.state === 'alive') { if (!ids.has(x.id)) return false; alive++ }
      }
      if (alive !== ids.size) return false
    }
    return true
  }

  /** Cheaper convergence check for large clusters: live-member counts only. */
  countsConverged (): boolean {
    const n = this.up().length
    for (const m of this.up()) if (m.swim.liveMembers() !== n) return false
    return true
  }
}

/** How formCluster names its peers and what they announce: the simulator's short form by default. */
export interface ClusterShape {
  /** The id of peer i (default `p${i}`). */
  name?: (i: number) => string
  /** The meta of peer i (default { name: id }). */
  meta?: (i: number, id: string) => MemberMeta
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/**
 * Peers shaped as real ones are on the wire, for measuring bytes: ids as long as libp2p's
 * ('12D3KooW' and 44 base58 characters), meta as a peer announces it (name, HTTP address,
 * version). The simulator's addresses ('/sim/<id>', 57 characters) stay a little shorter than a
 * real multiaddr ('/ip4/10.0.0.7/tcp/4001/p2p/<id>', about 80).
 */
export const REAL_SHAPE: Required<ClusterShape> = {
  name: i => {
    let tail = ''
    for (let x = i * 2654435761 + 97, k = 0; k < 44; k++) { tail += BASE58[x % 58]; x = Math.floor(x / 58) + k * 7919 + i }
    return `12D3KooW${tail}`
  },
  meta: i => ({ name: `peer-${i}`, http: `10.${(i >> 8) & 255}.${i & 255}.1:8080`, version: '0.1.0' })
}

/**
 * n peers p0..p<n-1> (or as `shape` names them), formed the cheap way: everyone starts, joins the
 * first within the first joinSpreadMs, then push-pulls it once more, so every view is full by
 * state exchange rather than by N gossip epidemics (which cost O(N² log N) messages and dominate
 * the wall time at 1,000 peers). The measured scenarios start after formation, so this changes
 * none of their figures. `ids` lists the peers in order.
 */
export async function formCluster (world: SimWorld, n: number, options: SwimOptions = {}, joinSpreadMs = 200, maxMs = 300_000,
  shape: ClusterShape = {}): Promise<{ cluster: SwimCluster, formedInMs: number, ids: string[] }> {
  const cluster = new SwimCluster(world, options)
  const t0 = world.now()
  const ids = Array.from({ length: n }, (_, i) => shape.name?.(i) ?? `p${i}`)
  for (let i = 0; i < n; i++) cluster.add(ids[i]!, [], shape.meta?.(i, ids[i]!) ?? { name: ids[i]! })
  const first = [simAddress(ids[0]!)]
  for (let i = 1; i < n; i++) {
    const m = cluster.get(ids[i]!)
    world.schedule(Math.floor((i / n) * joinSpreadMs), () => { void m.swim.join(first) })
    world.schedule(joinSpreadMs + 50 + Math.floor((i / n) * joinSpreadMs), () => { void m.swim.join(first) })
  }
  await world.run(2 * joinSpreadMs + 100)
  const ok = await world.runUntil(() => cluster.countsConverged(), { maxMs, checkEveryMs: 100 })
  if (!ok) throw new Error(`cluster of ${n} did not converge within ${maxMs} ms`)
  return { cluster, formedInMs: world.now() - t0, ids }
}
