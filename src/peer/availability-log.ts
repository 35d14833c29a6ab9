/**
 * Partitions losing and regaining their replicas, in the peer's log (issue 14, item 2): a space
 * whose partitions have fewer live replicas than it asked for (under-replicated: still answering,
 * one more loss from trouble) and partitions with no quorum of live replicas (unavailable: reads
 * and writes at QUORUM fail) are logged at warn when they start, at info when they end. Fed the
 * same availability GET /health reports, each time the peer looks (on a timer and on membership
 * changes); a state that holds is not logged again.
 */
import type { Logger } from '../runtime/index.js'

/** One space's availability as the peer computes it for health. */
export interface SpaceAvailability {
  name: string
  replicas: number
  partitions: number
  /** Partitions with a quorum but fewer live replicas than asked for. */
  quorumOnly: number
  /** The fewest live replicas any partition has. */
  fewestLive: number
  /** Partitions without a quorum of live replicas. */
  unavailable: number[]
}

/** At most this many partition numbers in one line (the count says the rest). */
const LISTED = 32

export class AvailabilityLog {
  /** Per space: its unavailable partitions and whether it was short of replicas, as last logged. */
  private readonly last = new Map<string, { unavailable: Set<number>, short: boolean }>()

  constructor (private readonly log: Logger) {}

  observe (spaces: readonly SpaceAvailability[]): void {
    const seen = new Set<string>()
    for (const s of spaces) {
      seen.add(s.name)
      const prev = this.last.get(s.name) ?? { unavailable: new Set<number>(), short: false }
      const now = new Set(s.unavailable)
      const lost = s.unavailable.filter(p => !prev.unavailable.has(p))
      const back = [...prev.unavailable].filter(p => !now.has(p)).sort((a, b) => a - b)
      if (lost.length > 0) {
        this.log.warn({ space: s.name, partitions: lost.slice(0, LISTED), count: lost.length, unavailableNow: now.size, of: s.partitions }, 'partitions unavailable: fewer live replicas than a quorum')
      }
      if (back.length > 0) {
        this.log.info({ space: s.name, partitions: back.slice(0, LISTED), count: back.length, unavailableNow: now.size, of: s.partitions }, 'partitions available again')
      }
      // Short: some partition has a quorum but not every replica asked for (unavailable ones are logged above).
      const short = s.quorumOnly > 0
      if (short && !prev.short) {
        this.log.warn({ space: s.name, replicas: s.replicas, fewestLiveReplicas: s.fewestLive, partitionsShort: s.quorumOnly, of: s.partitions }, 'space under-replicated: partitions with fewer live replicas than asked for')
      } else if (!short && prev.short) {
        this.log.info({ space: s.name, replicas: s.replicas, of: s.partitions }, 'space no longer under-replicated')
      }
      this.last.set(s.name, { unavailable: now, short })
    }
    // A space dropped: nothing to say about it any more.
    for (const name of [...this.last.keys()]) if (!seen.has(name)) this.last.delete(name)
  }
}
