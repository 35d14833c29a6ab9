/** A membership view for placement unit tests: members set by hand, changes told to listeners. */
import type { MemberEvent, MemberInfo, MemberMeta, MemberState } from '../../src/membership/index.js'
import type { PlacementMembership } from '../../src/placement/index.js'

export class FakeMembership implements PlacementMembership {
  readonly view = new Map<string, MemberInfo>()
  private readonly listeners = new Set<(ev: MemberEvent) => void>()
  metaUpdates = 0
  constructor (readonly localPeerId: string, ids: string[]) {
    for (const id of [localPeerId, ...ids]) this.view.set(id, { id, addrs: [`/sim/${id}`], meta: {}, state: 'alive', incarnation: 0, stateChangedAt: 0 })
  }

  members (): MemberInfo[] { return [...this.view.values()] }
  member (id: string): MemberInfo | undefined { return this.view.get(id) }
  localMember (): MemberInfo { return this.view.get(this.localPeerId)! }
  onChange (l: (ev: MemberEvent) => void): () => void { this.listeners.add(l); return () => { this.listeners.delete(l) } }
  updateMeta (meta: MemberMeta): void { this.metaUpdates++; this.set(this.localPeerId, { meta }) }
  set (id: string, patch: { state?: MemberState, meta?: MemberMeta, removed?: true }): void {
    const m = this.view.get(id) ?? { id, addrs: [`/sim/${id}`], meta: {}, state: 'alive' as MemberState, incarnation: 0, stateChangedAt: 0 }
    const next = { ...m, ...patch }
    this.view.set(id, next)
    for (const l of this.listeners) l({ type: 'update', member: next })
  }
}
