import type { Swim } from '../membership/index.js'

/**
 * Names and SWIM states of members, for the query planner (which avoids suspect peers) and for
 * EXPLAIN (which names peers): rebuilt when membership changes, not on every lookup.
 */
export class MemberDirectory {
  private names = new Map<string, string>()
  private suspects = new Set<string>()

  constructor (private readonly swim: Swim) {
    this.refresh()
    swim.onChange(() => { this.refresh() })
  }

  private refresh (): void {
    const names = new Map<string, string>()
    const suspects = new Set<string>()
    for (const m of this.swim.members()) {
      const name = (m.meta as { name?: unknown } | undefined)?.name
      if (typeof name === 'string') names.set(m.id, name)
      if (m.state === 'suspect') suspects.add(m.id)
    }
    this.names = names
    this.suspects = suspects
  }

  isSuspect (peerId: string): boolean { return this.suspects.has(peerId) }
  nameOf (peerId: string): string { return this.names.get(peerId) ?? peerId }
}
