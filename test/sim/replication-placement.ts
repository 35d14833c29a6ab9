/**
 * A small, faithful fake of the Placement contract for the replication simulator tests (the real
 * src/placement is built separately). Placement members are the partition detector's last stable
 * cluster (dead members stay until reaped, newcomers count once the view is stable), owners are
 * the top R members by rendezvous hashing, and readiness lives in a shared ReadyDirectory (what
 * the real placement gossips in membership metadata), cleared when a peer restarts.
 */
import type { Placement, PartitionPlacement } from '../../src/placement/types.js'
import type { Clock, PeerAddress, PeerId, Timer } from '../../src/runtime/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { simAddress } from './index.js'

function hash32 (s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 15
  h = Math.imul(h, 0x2c1b3c6d)
  h ^= h >>> 12
  return h >>> 0
}

const keyOf = (space: SpaceDef, p: number): string => `${space.uid}/${p}`

/** Which peer has which partition ready: the cluster-wide truth the real placement gossips. */
export class ReadyDirectory {
  private readonly ready = new Map<PeerId, Set<string>>()
  private readonly listeners = new Set<() => void>()
  readonly history: Array<{ peer: PeerId, key: string, event: 'ready' | 'released' | 'cleared' }> = []

  isReady (peer: PeerId, space: SpaceDef, p: number): boolean { return this.ready.get(peer)?.has(keyOf(space, p)) ?? false }

  set (peer: PeerId, space: SpaceDef, p: number, ready: boolean): void {
    let s = this.ready.get(peer)
    if (s === undefined) { s = new Set(); this.ready.set(peer, s) }
    const key = keyOf(space, p)
    if (ready === s.has(key)) return
    if (ready) s.add(key)
    else s.delete(key)
    this.history.push({ peer, key, event: ready ? 'ready' : 'released' })
    this.emit()
  }

  /** A restarted peer announces no ready partitions until it has caught up again. */
  clear (peer: PeerId): void {
    this.ready.delete(peer)
    this.history.push({ peer, key: '*', event: 'cleared' })
    this.emit()
  }

  onChange (l: () => void): () => void {
    this.listeners.add(l)
    return () => { this.listeners.delete(l) }
  }

  private emit (): void { for (const l of [...this.listeners]) l() }
}

export interface StableClusterView { stableCluster(): PeerId[] }

export class FakePlacement implements Placement {
  private readonly listeners = new Set<() => void>()
  private lastSignature = ''
  private timer: Timer | undefined
  private unsub: (() => void) | undefined

  constructor (
    private readonly self: PeerId,
    private readonly view: StableClusterView,
    private readonly directory: ReadyDirectory,
    private readonly spaces: () => SpaceDef[],
    private readonly clock: Clock,
    /** False until this peer has joined a cluster: a lone fresh peer owns nothing. */
    private readonly joined: () => boolean = () => true
  ) {}

  start (): void {
    this.unsub = this.directory.onChange(() => { this.emit() })
    const poll = (): void => {
      const sig = this.members().join(',')
      if (sig !== this.lastSignature) { this.lastSignature = sig; this.emit() }
      this.timer = this.clock.setTimer(100, poll)
    }
    poll()
  }

  stop (): void {
    this.timer?.cancel()
    this.unsub?.()
    this.listeners.clear()
  }

  members (): PeerId[] {
    if (!this.joined()) return []
    return [...new Set([...this.view.stableCluster(), this.self])].sort()
  }

  partitionOf (space: SpaceDef, id: string): number { return hash32(`p:${id}`) % space.partitions }

  locate (space: SpaceDef, partition: number): PartitionPlacement {
    const members = this.members()
    const r = Math.min(space.replicas, members.length)
    const owners = members
      .map(m => ({ m, score: hash32(`${m}|${space.uid}|${partition}`) }))
      .sort((a, b) => b.score - a.score || (a.m < b.m ? -1 : 1))
      .slice(0, r)
      .map(x => x.m)
    const ready = (p: PeerId): boolean => this.directory.isReady(p, space, partition)
    const allReady = owners.every(ready)
    const formerHolders = allReady ? [] : members.filter(m => !owners.includes(m) && ready(m))
    const writeReplicas = [...owners, ...formerHolders]
    const readReplicas = [...owners.filter(ready), ...formerHolders]
    return { space, partition, owners, writeReplicas, readReplicas, quorum: Math.floor(readReplicas.length / 2) + 1, fresh: false, returning: [] }
  }

  addressOf (peerId: PeerId): PeerAddress | undefined { return simAddress(peerId) }

  ownedPartitions (): Array<{ space: SpaceDef, partition: number }> {
    if (!this.joined()) return []
    const out: Array<{ space: SpaceDef, partition: number }> = []
    for (const space of this.spaces()) {
      for (let p = 0; p < space.partitions; p++) if (this.locate(space, p).owners.includes(this.self)) out.push({ space, partition: p })
    }
    return out
  }

  markReady (space: SpaceDef, partition: number): void { this.directory.set(this.self, space, partition, true) }
  markReleased (space: SpaceDef, partition: number): void { this.directory.set(this.self, space, partition, false) }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private emit (): void { for (const l of [...this.listeners]) l() }
}
