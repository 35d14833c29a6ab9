/**
 * The placement contract: what replication, the HTTP API and (later) the query planner ask of
 * placement. Placement reads membership; it knows nothing of storage or RPC handlers.
 */
import type { Hlc } from '../hlc/index.js'
import type { PeerAddress, PeerId } from '../runtime/index.js'
import type { ColumnDef, SpaceDef } from '../schema/index.js'

export interface CreateSpaceInput {
  name: string
  schema: ColumnDef[]
  partitions?: number
  replicas?: number
}

/** The replicated catalog of spaces (an HLC-stamped last-writer-wins map). */
export interface SpaceCatalog {
  create(input: CreateSpaceInput): SpaceDef
  drop(name: string): void
  addColumn(name: string, column: unknown): SpaceDef
  get(name: string): SpaceDef | undefined
  list(): SpaceDef[]
  /** Fires on every local or remote change (create, drop, alter). */
  onChange(listener: (ev: { type: 'created' | 'dropped' | 'altered', space: SpaceDef, version: Hlc }) => void): () => void
}

/** Where one partition lives right now. */
export interface PartitionPlacement {
  space: SpaceDef
  partition: number
  /** The R peers rendezvous hashing picks over the placement members, best first. */
  owners: PeerId[]
  /**
   * Peers to send writes to: the owners, plus former owners that still hold the partition while a
   * new owner is catching up (they leave this list once every owner is ready).
   */
  writeReplicas: PeerId[]
  /** Peers to read from: holders that are ready (not catching up), owners first. */
  readReplicas: PeerId[]
  /** Acks needed for QUORUM among readReplicas (a majority of them). */
  quorum: number
  /**
   * No member (alive, suspect, dead or left, unless removed by an operator) has announced this
   * partition ready or returning (a space just created): its owners count as ready and have
   * nothing to catch up from. A partition whose holders are all gone is not fresh: its
   * readReplicas are those unreachable holders, so it is unavailable until one returns. Nor is
   * one whose holders all restarted (see `returning`).
   */
  fresh: boolean
  /**
   * Filled only when no member has the partition ready (readReplicas is empty and it is not
   * fresh): the members, this peer included, that restarted holding data of it (meta `back`).
   * Their copies together are the partition, none alone is: an owner becomes its first ready
   * holder only after taking in every one of them and every other owner (see Ownership.catchUp).
   */
  returning: PeerId[]
}

/**
 * A returning holder may count its own copy as one of the catch-up sources (see
 * PlacementService.selfAsSource) provided it also takes in, completely, what each of `alsoFrom`
 * holds: other returning holders, whose copies may carry writes this one missed.
 */
export interface SelfSource {
  alsoFrom: PeerId[]
}

export interface Placement {
  partitionOf(space: SpaceDef, id: string): number
  locate(space: SpaceDef, partition: number): PartitionPlacement
  addressOf(peerId: PeerId): PeerAddress | undefined
  /** Partitions this peer owns (should hold) now, for every space. */
  ownedPartitions(): Array<{ space: SpaceDef, partition: number }>
  /** Whether ownedPartitions() holds this one, without listing them all (a placement may leave it out: callers then scan). */
  owns?(space: SpaceDef, partition: number): boolean
  /** Called by replication once this peer has caught up an owned partition. */
  markReady(space: SpaceDef, partition: number): void
  /** Called by replication when this peer no longer holds a partition (dropped after handoff). */
  markReleased(space: SpaceDef, partition: number): void
  /** Fires when owners or readiness change. */
  onChange(listener: () => void): () => void
  /**
   * Called by replication for a partition it holds data of from before this process started
   * (undamaged): announced as returning (meta `back`) until it is ready or released.
   */
  markReturning?(space: SpaceDef, partition: number): void
  /** A replica claimed as returning at start-up turned out empty or damaged: no longer announced. */
  withdrawReturning?(space: SpaceDef, partition: number): void
  /** Whether this peer's own (returning) copy may count as a catch-up source, and on what terms. */
  selfAsSource?(space: SpaceDef, partition: number): SelfSource | undefined
  /**
   * Starts (true) or cancels (false) this peer's decommission: it owns nothing from then on, while
   * what it holds ready still counts, so its partitions' next owners catch up from it.
   */
  setLeaving?(leaving: boolean): void
}
