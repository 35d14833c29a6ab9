import type { Timer } from '../../src/runtime/index.js'
import type { SimPeer } from './world.js'

// Event kinds are small integers, not strings or closures, so a million queued events cost a
// million small objects and nothing more.
export const K_DEAD = 0
export const K_TIMER = 1
export const K_WORLD = 2
export const K_MSG = 3
export const K_REQ = 4
export const K_RESP = 5
/** A failure the network synthesizes for the caller (unreachable, crashed server). */
export const K_CALL_FAIL = 6
export const K_CALL_TIMEOUT = 7
export const K_CANCEL = 8
export const K_STALL_END = 9
export const K_STREAM_OPEN = 10
export const K_STREAM_ITEM = 11
export const K_STREAM_END = 12
export const K_STREAM_CANCEL = 13
export const K_STREAM_CREDIT = 14
export const K_STREAM_TIMEOUT = 15

/**
 * One scheduled thing. The payload slots a/b/c mean different things per kind (see world.ts); a
 * generic shape keeps every event the same hidden class, which keeps the heap fast. A timer event
 * is handed to protocol code as its Timer, so cancelling costs no extra allocation.
 */
export class SimEvent implements Timer {
  constructor (
    public timeMs: number,
    public readonly seq: number,
    public kind: number,
    /** The peer incarnation that must be up (and not stalled) to run it; null for world events. */
    public readonly target: SimPeer | null,
    public a: unknown,
    public b: unknown,
    public c: unknown
  ) {}

  /**
   * Dead events stay in the heap until their time (lazy deletion): drop what they hold, or a
   * cancelled request timeout keeps its call, and through the call's resolve the settled answer,
   * until the timeout would have fired (at 10,000 peers, every join's pages for 10 s).
   */
  cancel (): void {
    this.kind = K_DEAD
    this.a = null
    this.b = null
    this.c = null
  }
}

/** Binary min-heap on (timeMs, seq): equal times run in scheduling order, which makes runs repeatable. */
export class EventHeap {
  private readonly items: SimEvent[] = []

  get size (): number { return this.items.length }

  peek (): SimEvent | undefined { return this.items[0] }

  push (ev: SimEvent): void {
    const items = this.items
    let i = items.length
    items.push(ev)
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]!
      if (p.timeMs < ev.timeMs || (p.timeMs === ev.timeMs && p.seq < ev.seq)) break
      items[i] = p
      i = parent
    }
    items[i] = ev
  }

  pop (): SimEvent | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (top === undefined || last === undefined || items.length === 0) return top
    const n = items.length
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      let c = l
      let ce = items[l]!
      if (r < n) {
        const re = items[r]!
        if (re.timeMs < ce.timeMs || (re.timeMs === ce.timeMs && re.seq < ce.seq)) { c = r; ce = re }
      }
      if (last.timeMs < ce.timeMs || (last.timeMs === ce.timeMs && last.seq < ce.seq)) break
      items[i] = ce
      i = c
    }
    items[i] = last
    return top
  }
}
