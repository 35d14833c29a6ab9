/**
 * The transmit-limited queue of membership updates (memberlist's TransmitLimitedQueue): each
 * update is sent up to `limit` times (λ·log N), least-sent first and, among equally sent, newest
 * first; a newer update about the same member replaces the queued one.
 *
 * Items sit in buckets by transmit count, so taking a batch costs O(batch), not a sort of the
 * whole queue: with 1,000 simulated peers each holding hundreds of updates after a join storm, a
 * sort per gossip message was the simulator's hot spot. Within a bucket the order is LIFO, which
 * approximates newest-first.
 */
import type { WireUpdate } from './wire.js'

interface Item {
  update: WireUpdate
  sizeBytes: number
  transmits: number
  live: boolean
  /** Called with the transmit count each time the item is sent (graceful leave waits on it). */
  onSent?: (transmits: number) => void
}

export class BroadcastQueue {
  private readonly buckets: Item[][] = []
  private readonly byMember = new Map<string, Item>()
  private liveCount = 0

  constructor (private readonly maxItems: number) {}

  get length (): number { return this.liveCount }

  /** Queues `update`, replacing any queued update about the same member. */
  push (update: WireUpdate, sizeBytes: number, onSent?: (transmits: number) => void): void {
    const old = this.byMember.get(update.id)
    if (old !== undefined) { old.live = false; this.liveCount-- }
    const item: Item = { update, sizeBytes, transmits: 0, live: true, onSent }
    this.byMember.set(update.id, item)
    const b0 = this.bucket(0)
    b0.push(item)
    this.liveCount++
    // Replaced items leave dead slots behind; sweep them when they outnumber the live ones.
    if (b0.length > 2 * this.maxItems + 16) {
      let w = 0
      for (let r = 0; r < b0.length; r++) if (b0[r]!.live) b0[w++] = b0[r]!
      b0.length = w
    }
    if (this.liveCount > this.maxItems) this.prune()
  }

  /**
   * Takes up to `maxCount` updates totalling at most `maxBytes`, counts one transmission for each,
   * and drops those that reached `limit` transmissions.
   */
  take (maxBytes: number, maxCount: number, limit: number): WireUpdate[] {
    const out: WireUpdate[] = []
    if (this.liveCount === 0) return out
    const moved: Item[] = []
    let remaining = maxBytes
    // Items too big for what is left are skipped, but not forever: a full scan of a long bucket
    // for every message would cost O(queue) again.
    let skips = 0
    for (let t = 0; t < this.buckets.length && out.length < maxCount && remaining > 32; t++) {
      const b = this.buckets[t]!
      if (b.length === 0) continue
      let removedCount = 0
      let minRemoved = b.length
      for (let j = b.length - 1; j >= 0 && out.length < maxCount && remaining > 32; j--) {
        const item = b[j]!
        if (item.live && item.sizeBytes > remaining) {
          if (++skips > 16) break
          continue
        }
        if (item.live) {
          remaining -= item.sizeBytes
          out.push(item.update)
          item.transmits++
          item.onSent?.(item.transmits)
          if (item.transmits >= limit) this.drop(item)
          else moved.push(item)
        }
        b[j] = null as unknown as Item
        removedCount++
        minRemoved = j
      }
      if (removedCount === 0) continue
      if (minRemoved === b.length - removedCount) {
        // The common case: everything taken came off the tail.
        b.length = minRemoved
      } else {
        let w = 0
        for (let r = 0; r < b.length; r++) if (b[r] !== null) b[w++] = b[r]!
        b.length = w
      }
    }
    for (const item of moved) this.bucket(item.transmits).push(item)
    return out
  }

  /** Drops everything (used by stop()). */
  clear (): void {
    this.buckets.length = 0
    this.byMember.clear()
    this.liveCount = 0
  }

  private bucket (t: number): Item[] {
    while (this.buckets.length <= t) this.buckets.push([])
    return this.buckets[t]!
  }

  private drop (item: Item): void {
    if (!item.live) return
    item.live = false
    this.liveCount--
    if (this.byMember.get(item.update.id) === item) this.byMember.delete(item.update.id)
  }

  /** Over the bound: drop the most-transmitted (oldest within a bucket) first. */
  private prune (): void {
    for (let t = this.buckets.length - 1; t >= 0 && this.liveCount > this.maxItems; t--) {
      const b = this.buckets[t]!
      let j = 0
      for (; j < b.length && this.liveCount > this.maxItems; j++) this.drop(b[j]!)
      b.splice(0, j)
    }
  }
}
