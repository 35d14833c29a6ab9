/**
 * Who must answer a write or a read of one partition at each consistency level: the groups of
 * replicas of which a number must acknowledge (a write) or answer (a read).
 *
 * QUORUM asks two majorities on both sides: of the owners (ready or catching up) and of the ready
 * replicas. Every QUORUM write meets both as its coordinator sees the partition, and every QUORUM
 * read meets both as its own coordinator sees it, so the two meet in at least one replica as long
 * as the two coordinators agree on either group. Which replicas are ready travels by gossip and
 * can differ between peers for a moment (just after a space is created each owner announces its
 * own copy at once, and a peer that has heard only its own takes the other owners for catching
 * up); the owners, from membership, close that gap, and the ready replicas close the one of an
 * ownership move (new owners catching up while the former holders serve).
 */
import type { PartitionPlacement } from '../placement/index.js'
import type { PeerId } from '../runtime/index.js'
import type { Consistency } from './errors.js'

/** Of `members`, at least `needed` must acknowledge (a write) or answer (a read). */
export interface AckGroup { members: readonly PeerId[], needed: number }

/**
 * Who a partition's write goes to (`targets`), and the groups that must each acknowledge it;
 * `needed` is the fewest acknowledgements that can meet every group (what the answer reports).
 */
export interface WriteLevel { targets: PeerId[], groups: AckGroup[], needed: number }

const majority = (n: number): number => Math.floor(n / 2) + 1

/**
 * The acknowledgements a write of one partition needs at a consistency level. Every write goes to
 * the owners (ready or still catching up) and to the other ready holders.
 *
 * QUORUM needs two majorities at once: of the owners, the min(R, peers) replicas placement picks,
 * ready or pending (an owner still catching up applies the write durably like any replica), and of
 * the replicas ready now, which QUORUM reads ask. The first keeps a move from shrinking durability:
 * counted over the ready replicas alone, a partition whose other owners were all catching up took
 * one copy for a quorum. The second keeps QUORUM reads during the move seeing the write. Cassandra
 * gets both by counting (blockFor = quorum + pending owners, any replica's ack counting); counting
 * who acknowledged gets them with no more acknowledgements than needed, and stays possible when
 * the pending owners outnumber the leaving holders (replicas 3 on one peer that two peers join).
 */
export function writeLevel (pp: PartitionPlacement, consistency: Consistency): WriteLevel {
  const targets = [...new Set([...pp.owners, ...pp.writeReplicas, ...pp.readReplicas])]
  if (consistency === 'one') return { targets, groups: [{ members: targets, needed: 1 }], needed: 1 }
  if (consistency === 'all') {
    const needed = Math.max(1, targets.length)
    return { targets, groups: [{ members: targets, needed }], needed }
  }
  const groups: AckGroup[] = []
  if (pp.owners.length > 0) groups.push({ members: pp.owners, needed: majority(pp.owners.length) })
  const ready = [...new Set(pp.readReplicas)]
  if (ready.length > 0) groups.push({ members: ready, needed: Math.max(1, Math.min(pp.quorum, ready.length)) })
  // No owners, nobody ready (a placement with no view yet): a majority of whoever gets the write.
  if (groups.length === 0) groups.push({ members: targets, needed: majority(targets.length) })
  return { targets, groups, needed: fewestAcks(groups) }
}

/** Every peer whose acknowledgement counts towards some group. */
export function countedOf (lvl: WriteLevel): PeerId[] {
  return [...new Set(lvl.groups.flatMap(g => g.members))]
}

/** The fewest acknowledgements meeting one group or two (those in both count twice: taken first). */
export function fewestAcks (groups: readonly AckGroup[]): number {
  if (groups.length === 1) return groups[0]!.needed
  const [a, b] = groups as [AckGroup, AckGroup]
  const inB = new Set(b.members)
  const shared = a.members.filter(p => inB.has(p)).length
  const both = Math.min(shared, Math.max(a.needed, b.needed))
  return both + Math.max(0, a.needed - both) + Math.max(0, b.needed - both)
}

/** Who a read of one partition asks (`targets`), and the groups that must answer it. */
export interface ReadLevel { targets: PeerId[], groups: AckGroup[] }

/**
 * The answers a read of one partition needs at a consistency level; undefined when no replica is
 * ready (the partition is unavailable for reading). ONE asks one ready replica, ALL every ready
 * replica; QUORUM a majority of the ready replicas and a majority of the owners (see the top of
 * this file): an owner still catching up answers with what it holds, which can only add to the
 * ready copies' answers (the newest version wins), and it holds every write it acknowledged.
 */
export function readLevel (pp: { owners: readonly PeerId[], readReplicas: readonly PeerId[], quorum: number }, consistency: Consistency): ReadLevel | undefined {
  const ready = [...new Set(pp.readReplicas)]
  if (ready.length === 0) return undefined
  if (consistency === 'one') return { targets: ready, groups: [{ members: ready, needed: 1 }] }
  if (consistency === 'all') return { targets: ready, groups: [{ members: ready, needed: ready.length }] }
  const groups: AckGroup[] = [{ members: ready, needed: Math.max(1, Math.min(pp.quorum, ready.length)) }]
  const owners = [...new Set(pp.owners)]
  if (owners.length > 0) groups.push({ members: owners, needed: majority(owners.length) })
  return { targets: [...new Set([...ready, ...owners])], groups }
}

/**
 * The first group that `answered` (acknowledged, for a write) does not meet, with its index and
 * how many of its members are among them; undefined when every group is met.
 */
export function shortGroup (groups: readonly AckGroup[], answered: ReadonlySet<PeerId> | readonly PeerId[]): { group: AckGroup, index: number, answered: number } | undefined {
  const has = (p: PeerId): boolean => Array.isArray(answered) ? answered.includes(p) : (answered as ReadonlySet<PeerId>).has(p)
  for (let index = 0; index < groups.length; index++) {
    const group = groups[index]!
    const n = group.members.filter(has).length
    if (n < group.needed) return { group, index, answered: n }
  }
  return undefined
}
