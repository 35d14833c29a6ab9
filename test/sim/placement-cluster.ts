/**
 * Simulated peers running Swim + Catalog + PlacementService, wired as src/peer does: the catalog
 * rides on push-pull (Swim delegate) and on a broadcaster (SimBroadcaster here).
 */
import { HybridClock } from '../../src/hlc/index.js'
import { Swim } from '../../src/membership/index.js'
import type { SwimOptions } from '../../src/membership/index.js'
import { Catalog, PlacementService } from '../../src/placement/index.js'
import type { PartitionPlacement, PlacementOptions } from '../../src/placement/index.js'
import { PartitionDetector } from '../../src/partition/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimBroadcaster } from './broadcast.js'
import { simAddress } from './index.js'
import type { SimPeer, SimWorld } from './index.js'

export interface PlacementNode {
  id: string
  peer: SimPeer
  swim: Swim
  catalog: Catalog
  placement: PlacementService
  detector: PartitionDetector
  broadcaster: SimBroadcaster
}

export class PlacementCluster {
  readonly nodes = new Map<string, PlacementNode>()
  constructor (readonly world: SimWorld, readonly swimOptions: SwimOptions = {}, readonly placementOptions: PlacementOptions = {}) {}

  add (id: string, bootstrap: string[] = []): PlacementNode {
    const peer = this.world.addPeer(id)
    const log = silentLogger
    const hlc = new HybridClock({ clock: peer.clock })
    const broadcaster = new SimBroadcaster(this.world, peer)
    const catalog = new Catalog({ hlc, clock: peer.clock, log, broadcaster })
    const swim = new Swim({ transport: peer.transport, clock: peer.clock, random: peer.random, log, delegate: catalog.swimDelegate() },
      { ...this.swimOptions, meta: { name: id }, bootstrap: bootstrap.map(simAddress) })
    const detector = new PartitionDetector({ membership: swim, clock: peer.clock, log }, { stableWindowMs: 2000 })
    const placement = new PlacementService({ membership: swim, catalog, clock: peer.clock, log, isMajority: () => detector.status().majority }, this.placementOptions)
    catalog.start()
    detector.start()
    placement.start()
    void swim.start()
    const node = { id, peer, swim, catalog, placement, detector, broadcaster }
    this.nodes.set(id, node)
    return node
  }

  get (id: string): PlacementNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  crash (id: string): void {
    const n = this.get(id)
    this.world.crash(id)
    void n.swim.stop()
    n.catalog.stop()
    n.detector.stop()
    n.placement.stop()
    this.nodes.delete(id)
  }

  up (): PlacementNode[] { return [...this.nodes.values()].filter(n => n.peer.up) }

  /** Every up node sees exactly the up nodes alive. */
  converged (): boolean {
    const ids = this.up().map(n => n.id).sort().join(',')
    return this.up().every(n => n.swim.members().filter(m => m.state === 'alive').map(m => m.id).sort().join(',') === ids)
  }

  /** Every node's view of `space`'s partitions (owners, read and write replicas). */
  views (space: SpaceDef): Map<string, PartitionPlacement[]> {
    const out = new Map<string, PartitionPlacement[]>()
    for (const n of this.up()) {
      const def = n.catalog.get(space.name)
      if (def === undefined) continue
      out.set(n.id, Array.from({ length: def.partitions }, (_, p) => n.placement.locate(def, p)))
    }
    return out
  }
}

/** n nodes p0..p<n-1>, all joining p0, run until every view is complete. */
export async function formPlacementCluster (world: SimWorld, n: number, swimOptions: SwimOptions = {}, placementOptions: PlacementOptions = {}): Promise<PlacementCluster> {
  const c = new PlacementCluster(world, swimOptions, placementOptions)
  c.add('p0')
  for (let i = 1; i < n; i++) c.add(`p${i}`, ['p0'])
  const ok = await world.runUntil(() => c.converged(), { maxMs: 60_000, checkEveryMs: 100 })
  if (!ok) throw new Error(`placement cluster of ${n} did not converge`)
  return c
}
