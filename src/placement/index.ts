/**
 * placement: which peers hold which partition of which space. The catalog of spaces (`Catalog`)
 * is a last-writer-wins map keyed by space name with HLC versions: a local create, drop or
 * addColumn is stamped with HybridClock.now(), published on the gossipsub topic
 * `shoal/catalog/1` (best effort) and carried in full on every membership push-pull exchange
 * (the Swim delegate), so every peer converges even when broadcasts are lost; a drop is a
 * tombstone kept for a grace period, and a create after it wins by version with a new `uid`.
 * A record id maps to a partition by MurmurHash3 (`partitionOf`), and a partition to R peers by
 * rendezvous hashing over the placement members, alive and suspect ones (`locate(...).owners`):
 * the same answer on every peer, and a join or departure moves only the partitions it gains or
 * loses. While ownership moves, each peer announces the partitions it holds ready in its
 * membership meta (`meta.ready = { [uid]: hex bitmap }`); reads go to ready holders, owners
 * first, and writes to the owners plus those holders. A partition nobody has announced ready or
 * returning (restarted holding data of it, meta `back`) is fresh, and its owners count as ready;
 * one whose holders are all gone (dead past deadOwnerTimeoutMs, or left) is not: it is
 * unavailable until a holder returns or an operator removes the holders (Swim.forceRemove;
 * `partitionsOnlyOn` says what that gives up). Nor is one whose holders all restarted: it is
 * unavailable until an owner has taken in every returning copy (`locate(...).returning`).
 *
 * ```ts
 * import { Catalog, PlacementService, CATALOG_TOPIC } from '../placement/index.js'
 * const catalog = new Catalog({ hlc, clock, log, broadcaster })      // broadcaster: net/GossipsubBroadcaster
 * const swim = new Swim({ transport, clock, random, log, delegate: catalog.swimDelegate() }, swimOpts)
 * const placement = new PlacementService({ membership: swim, catalog, clock, log })
 * catalog.start(); placement.start(); await swim.start()
 *
 * const space = catalog.create({ name: 'orders', schema: [{ name: 'amount', type: 'float64', nullable: true }] })
 * const p = placement.partitionOf(space, 'order-17')
 * const { owners, writeReplicas, readReplicas, quorum } = placement.locate(space, p)
 * placement.onChange(() => { for (const o of placement.ownedPartitions()) ... })  // catch up, then:
 * placement.markReady(space, p)
 * ```
 */
export type { CreateSpaceInput, SpaceCatalog, PartitionPlacement, Placement, SelfSource } from './types.js'
export {
  Catalog, CatalogError, CATALOG_TOPIC, DEFAULT_PARTITIONS, DEFAULT_REPLICAS, MAX_PARTITIONS, MAX_REPLICAS,
  compareEntries, decodeEntry
} from './catalog.js'
export type { CatalogEntry, CatalogErrorCode, CatalogEvent, CatalogOptions, CatalogDeps } from './catalog.js'
export { PlacementService, DEFAULT_PLACEMENT_OPTIONS } from './placement.js'
export type { PlacementMembership, PlacementOptions, PlacementDeps } from './placement.js'
export { murmur3, murmur3String, partitionOfId, hrwScore, rendezvous, partitionKey } from './hash.js'
export { READY_META_KEY, RETURNING_META_KEY, LEAVING_META_KEY, encodeBitmap, decodeBitmap, encodeReady, decodeReady } from './ready.js'
export type { Broadcaster, BroadcastHandler } from '../net/broadcast.js'
