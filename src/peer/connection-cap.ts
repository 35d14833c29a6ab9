/**
 * Watches the cluster's size against this peer's libp2p connection cap (maxPeerConnections, or
 * its share of the open-file limit: file-budget.ts). Membership probes every member in turn and
 * keeps a connection to each; past the cap libp2p prunes connections, the next probe of a pruned
 * member dials again, and a dial can outlast the probe's timeout: healthy members get suspected.
 * The cap is fixed at start (it reserves file descriptors), so what the peer can do is say so,
 * once each time the cluster crosses the line, with what to change.
 */
import type { Logger } from '../runtime/index.js'

/** Connections kept free beside one per member: dials in flight, reconnects, a bootstrap address. */
export const CONNECTION_MARGIN = 16

export class ConnectionCapWatch {
  private over = false

  constructor (readonly cap: number, private readonly log: Logger) {
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError(`connection cap ${cap} is not a positive integer`)
  }

  /** The most other members the cap serves with its margin. */
  get members (): number { return Math.max(0, this.cap - CONNECTION_MARGIN) }

  /** `others`: the live members other than this peer. True while they are more than the cap serves. */
  observe (others: number): boolean {
    const over = others > this.members
    if (over && !this.over) {
      this.log.warn({ members: others, maxPeerConnections: this.cap, margin: CONNECTION_MARGIN },
        `the cluster has ${others} other live members, more than this peer's libp2p connection cap of ${this.cap} serves (one connection a member, ${CONNECTION_MARGIN} spare): ` +
        'connections over the cap are pruned and dialled again at the next probe, which can make healthy members look dead. ' +
        'Raise maxPeerConnections (--max-peer-connections, SHOAL_MAX_PEER_CONNECTIONS) or the open-file limit (ulimit -n) it comes from, and restart the peer')
    } else if (!over && this.over) {
      this.log.info({ members: others, maxPeerConnections: this.cap }, 'the cluster fits this peer\'s libp2p connection cap again')
    }
    this.over = over
    return over
  }
}
