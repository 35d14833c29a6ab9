/**
 * The protocol stack of a peer (catalog and its file, membership, partition detector, placement,
 * replication over the storage engine), assembled from the peer's environment: its transport,
 * clock, random, filesystem, broadcaster and log. Peer.create passes libp2p, node:fs and the
 * system clock; the simulator (test/sim/placement-replication-cluster.ts) passes its network, its
 * simulated disks and virtual time, so the same wiring and the same start-up order run in both
 * (FoundationDB's rule: the code that runs in production is the code that runs in simulation).
 *
 * HTTP, the query service, metrics and the operator services are the real peer's own (peer.ts):
 * they sit on top of this stack and add nothing to its protocols.
 */
import type { HybridClock } from '../hlc/index.js'
import { Swim } from '../membership/index.js'
import type { IncarnationStore, JoinResult, MemberMeta, SwimOptions } from '../membership/index.js'
import { PartitionDetector } from '../partition/index.js'
import type { PartitionDetectorOptions } from '../partition/index.js'
import { Catalog, PlacementService, RETURNING_META_KEY } from '../placement/index.js'
import type { PlacementOptions } from '../placement/index.js'
import { Replicator } from '../replication/index.js'
import type { ReplicatorDeps, ReplicatorOptions, StoreProvider } from '../replication/index.js'
import type { Broadcaster } from '../net/index.js'
import type { Clock, FileSystem, Logger, PeerAddress, Random, Transport } from '../runtime/index.js'
import type { StorageEngine } from '../storage/index.js'
import { CatalogFile } from './catalog-file.js'

export interface PeerEnvironment {
  transport: Transport
  clock: Clock
  random: Random
  log: Logger
  hlc: HybridClock
  /** Where catalog changes go to the other peers (the peer: gossipsub plus direct sends). */
  broadcaster: Broadcaster
  /** The peer's files (the catalog file lives in dataDir). */
  fs: FileSystem
  dataDir: string
  /** Where this peer's incarnation ceiling survives restarts (see IncarnationStore). */
  incarnations: IncarnationStore
  /** The least incarnation to start at (a real peer: its HLC's milliseconds). */
  startIncarnation?: number
  /** Replication's replicas: the storage engine's partitions (storeProviderOf) or the simulator's stores. */
  stores: StoreProvider
  /** The hint files, opened and read back by HintLog.open; without them hints live in memory. */
  hintFiles?: ReplicatorDeps['hintFiles']
}

export interface StackSettings {
  /** This peer's membership meta (name, HTTP address, version). */
  meta: MemberMeta
  membership?: SwimOptions
  detector?: PartitionDetectorOptions
  placement?: PlacementOptions
  replication?: ReplicatorOptions
}

export interface ProtocolStack {
  catalog: Catalog
  catalogFile: CatalogFile
  swim: Swim
  detector: PartitionDetector
  placement: PlacementService
  replicator: Replicator
}

/** A setting the stack refused (`section` names the config section): the peer says which and why. */
export class StackSettingsError extends Error {
  constructor (readonly section: 'membership' | 'placement' | 'replication' | 'detector', override readonly cause: unknown) {
    super(`${section} settings: ${(cause as Error).message}`)
    this.name = 'StackSettingsError'
  }
}

function built<T> (section: StackSettingsError['section'], make: () => T): T {
  try {
    return make()
  } catch (err) {
    throw new StackSettingsError(section, err)
  }
}

/** Builds the stack; nothing runs until startStack. Throws StackSettingsError for a refused setting. */
export function assembleStack (env: PeerEnvironment, settings: StackSettings): ProtocolStack {
  const { transport, clock, random, log, hlc } = env
  const catalog = new Catalog({ hlc, clock, log, broadcaster: env.broadcaster })
  const catalogFile = new CatalogFile(env.dataDir, catalog, log.child({ component: 'catalog' }), env.fs)
  const swim = built('membership', () => new Swim({
    transport,
    clock,
    random,
    log,
    // Swim carries the catalog on every push-pull exchange: a joining peer learns every space at once.
    delegate: catalog.swimDelegate(),
    incarnations: env.incarnations,
    ...(env.startIncarnation !== undefined ? { startIncarnation: env.startIncarnation } : {})
  }, { ...settings.membership, meta: settings.meta }))
  const detector = built('detector', () => new PartitionDetector({ membership: swim, clock, log: log.child({ component: 'partition' }) }, settings.detector))
  const placement = built('placement', () => new PlacementService({
    // Nothing counts as fresh until the join has reached every known peer (or given up on it):
    // a peer of a cluster restarting at once may otherwise take an island for the cluster.
    membership: swim, catalog, clock, log, isMajority: () => detector.status().majority, isSynced: () => swim.hasSynced() && swim.joinSettled()
  }, settings.placement))
  const replicator = built('replication', () => new Replicator({
    transport,
    clock,
    random,
    hlc,
    log: log.child({ component: 'replication' }),
    placement,
    stores: env.stores,
    detector,
    membership: swim,
    ...(env.hintFiles !== undefined ? { hintFiles: env.hintFiles } : {}),
    spaceGone: space => catalog.isGone(space)
  }, settings.replication))
  return { catalog, catalogFile, swim, detector, placement, replicator }
}

export interface StackStartOptions {
  bootstrap: PeerAddress[]
  /**
   * The replicas on this peer's disk from before it started (StorageEngine.listOnDisk): claimed
   * as returning in its first meta (PlacementService.claimReturning), so that the peers of a
   * cluster that restarted together never take one another's partitions for fresh while their
   * stores are still opening. Each claim is confirmed or withdrawn once its store has opened.
   */
  onDisk?: () => Promise<Array<{ uid: string, partition: number }>>
  /** Deletes a dropped space's data from this peer (the storage engine's dropSpace). */
  dropSpaceData?: (uid: string) => Promise<void>
  log: Logger
}

/**
 * Starts the stack in the order a peer needs: the catalog read back from its file (a cluster whose
 * every peer restarted still knows its spaces), the replicas on disk claimed as returning,
 * membership, then the join (in the background:
 * `joining` settles when the first exchange does or every address failed), then detector,
 * placement and replication. join() registers the addresses at once, so Swim.hasSynced() is false
 * from then on until an exchange succeeds: placement and replication, started after it, never
 * see a peer with nobody to join, even for a moment.
 */
export async function startStack (stack: ProtocolStack, opts: StackStartOptions): Promise<{ joining?: Promise<JoinResult> }> {
  const { catalog, catalogFile, swim, detector, placement, replicator } = stack
  await catalogFile.load()
  catalog.onChange(ev => {
    catalogFile.save()
    // A dropped space's data goes with it, on every peer that held some.
    if (ev.type === 'dropped' && opts.dropSpaceData !== undefined) {
      opts.dropSpaceData(ev.space.uid).catch((err: unknown) => { opts.log.error({ err, space: ev.space.name }, 'could not delete a dropped space') })
    }
  })
  catalog.start()
  const claims = opts.onDisk !== undefined ? await opts.onDisk() : []
  if (claims.length > 0) {
    placement.claimReturning(claims)
    swim.updateMeta({ ...swim.localMember().meta, [RETURNING_META_KEY]: placement.returningMeta() })
  }
  await swim.start()
  const joining = opts.bootstrap.length > 0 ? swim.join(opts.bootstrap) : undefined
  detector.start()
  placement.start()
  replicator.start()
  return joining !== undefined ? { joining } : {}
}

/** The StoreProvider replication gets over a storage engine. */
export function storeProviderOf (engine: StorageEngine): StoreProvider {
  return {
    open: async (space, partition) => await engine.openPartition(space, partition),
    drop: async (space, partition) => { await engine.dropPartition(space.uid, partition) },
    rebuild: async (space, partition, reason) => await engine.rebuildPartition(space, partition, reason),
    reopen: async (space, partition) => await engine.reopenPartition(space, partition)
  }
}

/**
 * Goes through the replicas left on disk by the previous run, once membership has synced (and so
 * the catalog has arrived): those of live spaces are handed to replication (caught up if still
 * owned, released if not); those of spaces dropped or re-created meanwhile are deleted. Replicas of
 * spaces it has not heard of are left alone: the catalog may still be arriving.
 */
export async function adoptReplicasOnDisk (stack: Pick<ProtocolStack, 'catalog' | 'replicator' | 'placement'>, engine: StorageEngine, log: Logger): Promise<void> {
  const { catalog, replicator } = stack
  const onDisk = await engine.listOnDisk()
  const byName = new Map(catalog.entries().map(e => [e.def.name, e]))
  const byUid = new Map(catalog.entries().map(e => [e.def.uid, e]))
  for (const { uid, partition } of onDisk) {
    const entry = byUid.get(uid)
    const name = uid.replace(/-\d+$/, '')
    const current = byName.get(name)
    if (entry !== undefined && !entry.dropped) {
      await replicator.adopt(entry.def, partition)
    } else if (entry?.dropped === true || (current !== undefined && current.def.uid !== uid)) {
      log.info({ uid }, 'deleting the data of a space dropped while this peer was away')
      // Its start-up claim goes with it.
      stack.placement.withdrawReturning({ ...(entry?.def ?? current!.def), uid }, partition)
      await engine.dropSpace(uid)
    }
  }
}
