/**
 * What happened to the cluster, in the peer's log: every membership change of another member,
 * with its name and id (suspect and dead at warn; joined, rejoined, alive again and left at
 * info, with its incarnation); the partition detector logs this peer losing and regaining the
 * majority (warn). An operator reading any survivor's log learns that a peer died, and when it
 * came back.
 */
import type { MemberEvent, MemberInfo } from '../membership/index.js'
import type { Logger } from '../runtime/index.js'

export class MembershipLog {
  /** Members once seen dead or left: their next join is a rejoin. */
  private readonly gone = new Set<string>()

  constructor (private readonly log: Logger, private readonly self: string) {}

  member (ev: MemberEvent): void {
    const m = ev.member
    if (m.id === this.self) return
    const who = describe(m)
    switch (ev.type) {
      case 'join':
        if (this.gone.delete(m.id)) this.log.info(who, 'member rejoined')
        else this.log.info(who, 'member joined')
        return
      case 'alive': this.log.info(who, 'member alive again (its suspicion was refuted)'); return
      case 'suspect': this.log.warn(who, 'member suspect (missed its probes)'); return
      case 'dead':
        this.gone.add(m.id)
        this.log.warn(who, 'member dead')
        return
      case 'left':
        this.gone.add(m.id)
        this.log.info({ ...who, ...(m.removed === true ? { removed: true } : {}) }, m.removed === true ? 'member removed by an operator' : 'member left')
        return
      case 'update': this.log.debug(who, 'member updated its addresses or meta'); return
      case 'reaped': this.log.debug(who, 'member forgotten (dead or left long enough)')
    }
  }
}

function describe (m: MemberInfo): Record<string, unknown> {
  return { member: typeof m.meta.name === 'string' ? m.meta.name : null, peerId: m.id, incarnation: m.incarnation, state: m.state }
}
