/**
 * Replication clusters in the simulator: real Swim, PartitionDetector, HybridClock and
 * Replicator per peer, the fake placement of replication-placement.ts, and MemoryStores that
 * survive restarts. Peers are named p0..; everyone joins p0 (or the first up peer).
 */
import { HybridClock } from '../../src/hlc/index.js'
import { Swim } from '../../src/membership/index.js'
import type { SwimOptions } from '../../src/membership/index.js'
import { PartitionDetector } from '../../src/partition/index.js'
import { HintLog, Replicator } from '../../src/replication/index.js'
import type { HintLogLoad, ReplicatorOptions, StoreProvider } from '../../src/replication/index.js'
import { StorageEngine, type PartitionStoreOptions } from '../../src/storage/index.js'
import { silentLogger, type Clock } from '../../src/runtime/index.js'
import { checkSchema } from '../../src/schema/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { SimWorld, simAddress } from './index.js'
import type { SimPeer } from './index.js'
import { MemoryFileSystem } from './memory-fs.js'
import { MemoryStores } from './memory-store.js'
import type { MemoryPartitionStore } from './memory-store.js'
import { FakePlacement, ReadyDirectory } from './replication-placement.js'
import { storeProviderOf } from '../../src/peer/stack.js'

export interface ReplNode {
  id: string
  peer: SimPeer
  swim: Swim
  detector: PartitionDetector
  hlc: HybridClock
  placement: FakePlacement
  replicator: Replicator
  /** The peer's replicas: MemoryStores, or a StoreProvider over `engine` (addOnDisk). */
  stores: MemoryStores | StoreProvider
  /** The real storage engine on the peer's simulated disk (addOnDisk), if it runs one. */
  engine?: StorageEngine
}

export function makeSpace (name = 'things', partitions = 4, replicas = 3): SpaceDef {
  return { name, uid: `${name}@1`, schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int32' }, { name: 'note', type: 'utf8' }]), partitions, replicas }
}

export class ReplCluster {
  readonly nodes = new Map<string, ReplNode>()
  readonly storesById = new Map<string, MemoryStores>()
  /** The disks of peers started with hint files (addWithHintFiles), kept across restarts. */
  readonly disks = new Map<string, MemoryFileSystem>()
  readonly directory = new ReadyDirectory()
  readonly spaces: SpaceDef[] = []

  constructor (
    readonly world: SimWorld,
    readonly replOptions: ReplicatorOptions = {},
    readonly swimOptions: SwimOptions = {},
    readonly stableWindowMs = 1000
  ) {}

  /**
   * Starts `id` as add() does, with hint files on its own simulated disk (`/data/hints`), read
   * back first as a real peer reads them at start-up. crash() then power-cut the disk if asked.
   */
  async addWithHintFiles (id: string, bootstrap?: string, fileBytes?: number): Promise<ReplNode> {
    let disk = this.disks.get(id)
    if (disk === undefined) { disk = new MemoryFileSystem(); this.disks.set(id, disk) }
    const hintFiles = await HintLog.open({ fs: disk, log: silentLogger }, { dir: '/data/hints', ...(fileBytes !== undefined ? { fileBytes } : {}) })
    return this.add(id, bootstrap, hintFiles)
  }

  /**
   * Starts `id` as a peer does on its own simulated disk (kept across restarts in `disks`): the
   * real StorageEngine under `/data` (small memtables, so that rows reach segments) and hint
   * files under `/data/hints`, both read back first as a real peer reads them at start-up.
   * crash(id, { powerLoss: true }) then cuts the power of that disk.
   */
  async addOnDisk (id: string, bootstrap?: string, storage: PartitionStoreOptions = {}): Promise<ReplNode> {
    let disk = this.disks.get(id)
    if (disk === undefined) { disk = new MemoryFileSystem(); this.disks.set(id, disk) }
    const fs = disk.process()
    const hintFiles = await HintLog.open({ fs, log: silentLogger }, { dir: '/data/hints' })
    const node = this.add(id, bootstrap, hintFiles, (peerClock) => {
      const engine = new StorageEngine({ clock: peerClock, log: silentLogger, fs }, {
        dataDir: '/data', cacheMiB: 1, maxOpenFiles: 32, memtableMaxRows: 64, compactionMaxSegments: 3, ...storage
      })
      return { stores: storeProviderOf(engine), engine }
    })
    return node
  }

  add (id: string, bootstrap?: string, hintFiles?: { log: HintLog, load: HintLogLoad }, storage?: (clock: Clock) => { stores: StoreProvider, engine: StorageEngine }): ReplNode {
    const exists = this.world.peers().some(p => p.id === id)
    if (exists) this.directory.clear(id)
    const peer = exists ? this.world.restart(id) : this.world.addPeer(id)
    const boot = bootstrap ?? [...this.nodes.values()].find(n => n.peer.up && n.id !== id)?.id
    const swim = new Swim({ transport: peer.transport, clock: peer.clock, random: peer.random, log: silentLogger },
      { ...this.swimOptions, meta: { name: id }, bootstrap: boot === undefined ? [] : [simAddress(boot)] })
    const detector = new PartitionDetector({ membership: swim, clock: peer.clock, log: silentLogger }, { stableWindowMs: this.stableWindowMs })
    const hlc = new HybridClock({ clock: peer.clock })
    const solo = boot === undefined
    const placement = new FakePlacement(id, detector, this.directory, () => this.spaces, peer.clock,
      () => solo || detector.stableCluster().some(m => m !== id))
    const onDisk = storage?.(peer.clock)
    let stores: MemoryStores | StoreProvider | undefined = onDisk?.stores ?? this.storesById.get(id)
    if (stores === undefined) { const memory = new MemoryStores(); this.storesById.set(id, memory); stores = memory }
    const replicator = new Replicator({
      transport: peer.transport, clock: peer.clock, random: peer.random, hlc, log: silentLogger,
      placement, stores, detector, membership: swim, ...(hintFiles !== undefined ? { hintFiles } : {})
    }, this.replOptions)
    void swim.start()
    detector.start()
    placement.start()
    replicator.start()
    const node: ReplNode = { id, peer, swim, detector, hlc, placement, replicator, stores, ...(onDisk !== undefined ? { engine: onDisk.engine } : {}) }
    this.nodes.set(id, node)
    return node
  }

  get (id: string): ReplNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  /** Crashes `id`; with `powerLoss`, its disk keeps only what was synced (hint files). */
  crash (id: string, opts: { powerLoss?: boolean } = {}): void {
    const n = this.get(id)
    this.world.crash(id)
    // Power loss: the disk keeps what was synced. A crash of the process alone (kill -9) keeps
    // everything written, as the OS page cache does; either way the dead process's files refuse it.
    if (opts.powerLoss === true) this.disks.get(id)?.crash()
    else this.disks.get(id)?.kill()
    n.replicator.stop()
    n.placement.stop()
    n.detector.stop()
    void n.swim.stop()
    // The dead process's storage: what it had not written is gone (its disk refuses it from now on).
    if (n.engine !== undefined) void n.engine.close().catch(() => {})
  }

  up (): ReplNode[] { return [...this.nodes.values()].filter(n => n.peer.up) }

  store (id: string, space: SpaceDef, partition: number): MemoryPartitionStore | undefined {
    return this.storesById.get(id)?.get(space, partition)
  }

  /** Every up peer's stable cluster is exactly `ids`, all of them reachable, and every owned partition is ready everywhere. */
  settled (ids: string[]): boolean {
    const want = [...ids].sort().join(',')
    for (const n of this.up()) {
      if (n.placement.members().join(',') !== want) return false
      for (const id of ids) if (!n.detector.isReachable(id)) return false
      for (const o of n.placement.ownedPartitions()) if (!n.replicator.isReady(o.space, o.partition)) return false
    }
    return true
  }

  async settle (ids: string[], maxMs = 60_000): Promise<void> {
    const ok = await this.world.runUntil(() => this.settled(ids), { maxMs, checkEveryMs: 100 })
    if (!ok) throw new Error(`cluster did not settle on ${ids.join(',')} within ${maxMs} ms`)
  }

  /** n peers p0..p<n-1> with one space, settled. */
  static async form (world: SimWorld, n: number, space: SpaceDef, replOptions: ReplicatorOptions = {}): Promise<ReplCluster> {
    const c = new ReplCluster(world, replOptions)
    c.spaces.push(space)
    c.add('p0')
    for (let i = 1; i < n; i++) c.add(`p${i}`, 'p0')
    await c.settle([...Array(n).keys()].map(i => `p${i}`))
    return c
  }
}

/** Awaits a promise while the world runs (virtual time), failing if it does not settle within maxMs. */
export async function drive<T> (world: SimWorld, promise: Promise<T>, maxMs = 30_000): Promise<T> {
  let settled = false
  const p = promise.finally(() => { settled = true })
  p.catch(() => {})
  await world.runUntil(() => settled, { maxMs, checkEveryMs: 1 })
  if (!settled) throw new Error(`operation did not settle within ${maxMs} virtual ms`)
  return await p
}
