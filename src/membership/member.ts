/**
 * One peer's view of one member, kept light: at 10,000 members a view is 10,000 of these, and the
 * simulator holds 10,000 views in one process (10^8 members). What the member announced at an
 * incarnation (id, addresses, meta) is the same in every view that heard it, so it lives in an
 * immutable MemberRecord that views may share (MemberRecords); a view adds only what is its own:
 * the state it holds the member in, since when, and where it sits in the view's lists.
 */
import type { PeerId } from '../runtime/index.js'
import type { Suspicion } from './suspicion.js'
import type { MemberMeta, MemberState } from './types.js'

/** What a member announced at one incarnation. Never changed: a new announcement is a new record. */
export interface MemberRecord {
  readonly id: PeerId
  readonly incarnation: number
  readonly addrs: string[]
  readonly meta: MemberMeta
  /** Estimated encoded size of `meta`, cached for sizing updates. */
  readonly metaBytes: number
}

function sameStrings (a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Interns records so that views in one process share them: the simulator passes one MemberRecords
 * to all its peers (SwimDeps.records). A real peer has one view and needs none. Only the latest
 * record of each member is kept here; older ones live as long as a view holds them.
 */
export class MemberRecords {
  private readonly latest = new Map<PeerId, MemberRecord>()
  /** A dense number per id ever interned, never reused: views index their tables by it (KeyedMemberTable). */
  private readonly keys = new Map<PeerId, number>()

  /** The id's number, or undefined if it was never interned. */
  keyOf (id: PeerId): number | undefined { return this.keys.get(id) }

  /** The id's number, given one if it has none. */
  keyFor (id: PeerId): number {
    let k = this.keys.get(id)
    if (k === undefined) { k = this.keys.size; this.keys.set(id, k) }
    return k
  }

  /** The record for this announcement: the latest one if it says the same, else a new latest. */
  intern (id: PeerId, incarnation: number, addrs: string[], meta: MemberMeta, metaBytes: number): MemberRecord {
    const cur = this.latest.get(id)
    if (cur !== undefined && cur.incarnation === incarnation && sameStrings(cur.addrs, addrs) &&
        (cur.meta === meta || JSON.stringify(cur.meta) === JSON.stringify(meta))) return cur
    const rec: MemberRecord = { id, incarnation, addrs, meta, metaBytes }
    this.latest.set(id, rec)
    return rec
  }

  /** A view forgot the member (reaped): stop pinning its latest record. */
  forget (id: PeerId): void { this.latest.delete(id) }

  get size (): number { return this.latest.size }
}

/** Rarely set, so kept out of line: one field instead of two in every member of every view. */
interface MemberExtra {
  suspicion?: Suspicion
  removed?: true
}

/** One member in one view: a shared record plus this view's state of it. */
export class Member {
  private extra: MemberExtra | undefined = undefined

  constructor (
    public rec: MemberRecord,
    public state: MemberState,
    /** clock.now() (whole ms) when `state` last changed in this view. */
    public stateChangedAt: number,
    /** Position in the view's list of other members (-1 for self and for members not in it). */
    public slot = -1
  ) {}

  get id (): PeerId { return this.rec.id }
  get incarnation (): number { return this.rec.incarnation }
  get addrs (): string[] { return this.rec.addrs }
  get meta (): MemberMeta { return this.rec.meta }
  get metaBytes (): number { return this.rec.metaBytes }

  /** The running suspicion while state is 'suspect' (Lifeguard's timer and confirmations). */
  get suspicion (): Suspicion | undefined { return this.extra?.suspicion }
  set suspicion (s: Suspicion | undefined) {
    if (s !== undefined) (this.extra ??= {}).suspicion = s
    else if (this.extra !== undefined) { delete this.extra.suspicion; this.trim() }
  }

  /** Left by an operator's forceRemove, not by itself (see MemberInfo.removed). */
  get removed (): boolean { return this.extra?.removed === true }
  set removed (r: boolean) {
    if (r) (this.extra ??= {}).removed = true
    else if (this.extra !== undefined) { delete this.extra.removed; this.trim() }
  }

  private trim (): void {
    if (this.extra !== undefined && this.extra.suspicion === undefined && this.extra.removed === undefined) this.extra = undefined
  }
}

/** One view's members by id. */
export interface MemberTable {
  get(id: PeerId): Member | undefined
  has(id: PeerId): boolean
  set(m: Member): void
  delete(id: PeerId): void
  values(): Iterable<Member>
}

/** A real peer's table: a Map, which forgets ids with their members. */
export class MapMemberTable implements MemberTable {
  private readonly map = new Map<PeerId, Member>()
  get (id: PeerId): Member | undefined { return this.map.get(id) }
  has (id: PeerId): boolean { return this.map.has(id) }
  set (m: Member): void { this.map.set(m.id, m) }
  delete (id: PeerId): void { this.map.delete(id) }
  values (): Iterable<Member> { return this.map.values() }
}

/**
 * A table of views that share a MemberRecords: an array indexed by the pool's number for each id,
 * 8 bytes a member where a Map takes about 34 (the simulator's 10,000 views of 10,000 members).
 * Numbers are never reused, so the array grows with every id the process has seen: for a
 * simulation, not for a peer that runs for months.
 */
export class KeyedMemberTable implements MemberTable {
  private readonly byKey: Array<Member | undefined> = []
  constructor (private readonly records: MemberRecords) {}

  get (id: PeerId): Member | undefined {
    const k = this.records.keyOf(id)
    return k === undefined ? undefined : this.byKey[k]
  }

  has (id: PeerId): boolean { return this.get(id) !== undefined }

  set (m: Member): void {
    const k = this.records.keyFor(m.id)
    // Grown by pushes, never by a write past the end: an array with holes may fall back to a
    // dictionary, ten times the size.
    while (this.byKey.length <= k) this.byKey.push(undefined)
    this.byKey[k] = m
  }

  delete (id: PeerId): void {
    const k = this.records.keyOf(id)
    if (k !== undefined && k < this.byKey.length) this.byKey[k] = undefined
  }

  * values (): Iterable<Member> {
    for (const m of this.byKey) if (m !== undefined) yield m
  }
}
