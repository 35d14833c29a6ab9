/**
 * Whole peers in the simulator: the protocol stack of src/peer/peer.ts, assembled and started by
 * the same code (src/peer/stack.ts: Catalog and its file, Swim carrying the catalog in push-pull,
 * PartitionDetector, PlacementService, Replicator), on the simulator's network, virtual time and
 * a simulated disk per peer (MemoryFileSystem, kept across restarts). Replicas live in the real
 * StorageEngine on that disk with `disks`, else in MemoryStores. Not simulated: libp2p, HTTP,
 * queries, and hint files (hints stay in memory here). The replication harness
 * (replication-cluster.ts) fakes placement and the placement harness runs no replication; the
 * defects of their seam (who counts as a holder, when a partition is fresh) need both real.
 * Peers are named p0..; everyone joins p0 (or the first up peer).
 */
import { HybridClock } from '../../src/hlc/index.js'
import type { Swim, SwimOptions } from '../../src/membership/index.js'
import type { PartitionDetector } from '../../src/partition/index.js'
import { adoptReplicasOnDisk, assembleStack, startStack, storeProviderOf } from '../../src/peer/stack.js'
import type { Catalog, PlacementOptions, PlacementService } from '../../src/placement/index.js'
import type { Replicator, ReplicatorOptions } from '../../src/replication/index.js'
import { silentLogger, type FileSystem } from '../../src/runtime/index.js'
import { StorageEngine, type PartitionStoreOptions } from '../../src/storage/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimBroadcaster } from './broadcast.js'
import { simAddress } from './index.js'
import type { SimPeer, SimWorld } from './index.js'
import { MemoryIncarnationStore } from './membership-cluster.js'
import { MemoryFileSystem } from './memory-fs.js'
import { MemoryStores } from './memory-store.js'

export interface WholeNode {
  id: string
  peer: SimPeer
  swim: Swim
  catalog: Catalog
  detector: PartitionDetector
  placement: PlacementService
  replicator: Replicator
  /** The peer's hybrid clock: a client's session (the newest version it saw) is observed here before a write, as DataService does with `after`. */
  hlc: HybridClock
  stores: MemoryStores
  /** The real storage engine on the peer's simulated disk (peers started with `disks`), instead of `stores`. */
  engine?: StorageEngine
  /** Its stack has started (startStack resolved): its catalog file is read and catalog changes are saved. */
  started: boolean
}

export interface WholeClusterOptions {
  swim?: SwimOptions
  placement?: PlacementOptions
  replication?: ReplicatorOptions
  stableWindowMs?: number
  /**
   * Each peer runs the real StorageEngine on its own simulated disk (`WholeCluster.disks`, kept
   * across restarts) with these partition options, as a peer does on its data directory; crash()
   * can then cut the power. Without it, MemoryStores.
   */
  disks?: PartitionStoreOptions
}

export class WholeCluster {
  readonly nodes = new Map<string, WholeNode>()
  readonly storesById = new Map<string, MemoryStores>()
  readonly incarnationsById = new Map<string, MemoryIncarnationStore>()
  /** Each peer's disk (with `opts.disks`), kept across its restarts. */
  readonly disks = new Map<string, MemoryFileSystem>()

  constructor (readonly world: SimWorld, readonly opts: WholeClusterOptions = {}) {}

  /** Starts `id` (again, with its stores, after a crash), joining `bootstrap` or the first up peer. */
  add (id: string, bootstrap?: string): WholeNode {
    const exists = this.world.peers().some(p => p.id === id)
    const peer = exists ? this.world.restart(id) : this.world.addPeer(id)
    const boot = bootstrap ?? [...this.nodes.values()].find(n => n.peer.up && n.id !== id)?.id
    // A restarted peer also joins the peers it knew (as a real one does from its known-peers
    // file): one whose cluster restarted together is not alone and synced at once.
    const joins = [...new Set([...(boot !== undefined ? [boot] : []), ...(exists ? [...this.nodes.keys()].filter(n => n !== id) : [])])]
    const log = silentLogger
    const hlc = new HybridClock({ clock: peer.clock })
    let incarnations = this.incarnationsById.get(id)
    if (incarnations === undefined) { incarnations = new MemoryIncarnationStore(); this.incarnationsById.set(id, incarnations) }
    let stores = this.storesById.get(id)
    if (stores === undefined) { stores = new MemoryStores(); this.storesById.set(id, stores) }
    // Every peer has a disk for its data directory (the catalog file); its replicas live there
    // too, in the real storage engine, with opts.disks, else in MemoryStores.
    const fs = this.diskOf(id).process()
    const engine = this.opts.disks === undefined ? undefined : this.engineOn(peer, fs)
    // Assembled and started as src/peer/peer.ts does (src/peer/stack.ts).
    const stack = assembleStack({
      transport: peer.transport,
      clock: peer.clock,
      random: peer.random,
      log,
      hlc,
      broadcaster: new SimBroadcaster(this.world, peer),
      fs,
      dataDir: '/data',
      incarnations,
      stores: engine !== undefined ? storeProviderOf(engine) : stores
    }, {
      meta: { name: id },
      // The join address goes in the options (Swim.start joins it): the peer is not synced from
      // its first moment, though its stack starts a few steps later (a real peer's HTTP, and so
      // the simulated clients here, reach it only once it has started).
      membership: { ...this.opts.swim, bootstrap: joins.map(simAddress) },
      detector: { stableWindowMs: this.opts.stableWindowMs ?? 2000 },
      ...(this.opts.placement !== undefined ? { placement: this.opts.placement } : {}),
      ...(this.opts.replication !== undefined ? { replication: this.opts.replication } : {})
    })
    const { swim, catalog, replicator } = stack
    // Peer.create makes the data directory before anything else.
    const starting = fs.mkdir('/data').then(async () => await startStack(stack, {
      bootstrap: [],
      onDisk: async () => engine !== undefined ? await engine.listOnDisk() : [...stores.stores.values()].map(s => ({ uid: s.space.uid, partition: s.partition })),
      ...(engine !== undefined ? { dropSpaceData: async (uid: string) => { await engine.dropSpace(uid) } } : {}),
      log
    }))
    // What peer.ts does once synced (adoptReplicasOnDisk): hand the replicas kept from before the
    // restart to replication, which catches them up if owned and releases them if not.
    if (exists) {
      const adopt = (): void => {
        if (!peer.up) return
        if (!swim.hasSynced()) { peer.clock.setTimer(100, adopt); return }
        if (engine !== undefined) {
          adoptReplicasOnDisk(stack, engine, log).catch(() => {})
          return
        }
        for (const s of stores.stores.values()) {
          const def = catalog.get(s.space.name)
          if (def?.uid === s.space.uid) void replicator.adopt(def, s.partition)
        }
      }
      peer.clock.setTimer(100, adopt)
    }
    const node: WholeNode = { id, peer, ...stack, hlc, stores, ...(engine !== undefined ? { engine } : {}), started: false }
    // A crash before the start finishes fails it (the dead process's files refuse it): not an error here.
    starting.then(() => { node.started = true }, () => {})
    this.nodes.set(id, node)
    return node
  }

  /** `id`'s disk, kept across its restarts. */
  private diskOf (id: string): MemoryFileSystem {
    let disk = this.disks.get(id)
    if (disk === undefined) { disk = new MemoryFileSystem(); this.disks.set(id, disk) }
    return disk
  }

  /** A StorageEngine on a peer's disk, for one run of its process. */
  private engineOn (peer: SimPeer, fs: FileSystem): StorageEngine {
    return new StorageEngine({ clock: peer.clock, log: silentLogger, fs }, {
      dataDir: '/data', cacheMiB: 1, maxOpenFiles: 64, memtableMaxRows: 64, compactionMaxSegments: 3, ...this.opts.disks
    })
  }

  get (id: string): WholeNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  /**
   * Crashes `id` (kill -9). With `powerLoss` (peers on disks), its disk keeps only what was
   * synced; without, everything written stays (the OS page cache). Either way the dead process's
   * files refuse it from then on.
   */
  crash (id: string, opts: { powerLoss?: boolean } = {}): void {
    const n = this.get(id)
    this.world.crash(id)
    if (opts.powerLoss === true) this.disks.get(id)?.crash()
    else this.disks.get(id)?.kill()
    n.replicator.stop()
    n.placement.stop()
    n.detector.stop()
    n.catalog.stop()
    void n.swim.stop()
    if (n.engine !== undefined) void n.engine.close().catch(() => {})
  }

  up (): WholeNode[] { return [...this.nodes.values()].filter(n => n.peer.up) }

  /** Every up peer knows `space`, sees every up peer alive, and has every partition it owns ready. */
  settled (space: string): boolean {
    const ids = this.up().map(n => n.id).sort().join(',')
    for (const n of this.up()) {
      const def = n.catalog.get(space)
      if (def === undefined) return false
      if (n.swim.members().filter(m => m.state === 'alive').map(m => m.id).sort().join(',') !== ids) return false
      for (const o of n.placement.ownedPartitions()) if (!n.replicator.isReady(o.space, o.partition)) return false
    }
    return true
  }

  /**
   * Every up peer has heard every owner of each of the space's partitions announce it ready
   * (readiness travels in membership meta, a little after the owner marks it): none is fresh, and
   * the read replicas are the owners.
   */
  announced (space: SpaceDef): boolean {
    return this.up().every(n => [...Array(space.partitions).keys()].every(p => {
      const pp = n.placement.locate(space, p)
      return !pp.fresh && [...pp.readReplicas].sort().join() === [...pp.owners].sort().join()
    }))
  }

  /** n peers p0..p<n-1>, all joined and alive everywhere. */
  static async form (world: SimWorld, n: number, opts: WholeClusterOptions = {}): Promise<WholeCluster> {
    const c = new WholeCluster(world, opts)
    c.add('p0')
    for (let i = 1; i < n; i++) c.add(`p${i}`, 'p0')
    const ids = [...Array(n).keys()].map(i => `p${i}`).join(',')
    // Started too: a one-peer cluster is "formed" before its stack has started, and a space
    // created then was never saved in its catalog file (gone after a restart).
    const ok = await world.runUntil(() => c.up().every(x => x.started && x.swim.members().filter(m => m.state === 'alive').map(m => m.id).sort().join(',') === ids),
      { maxMs: 60_000, checkEveryMs: 100 })
    if (!ok) throw new Error(`cluster of ${n} did not form`)
    return c
  }
}

/** The definition of `name` as `node` knows it. */
export function spaceOn (node: WholeNode, name: string): SpaceDef {
  const def = node.catalog.get(name)
  if (def === undefined) throw new Error(`${node.id} does not know space ${name}`)
  return def
}
