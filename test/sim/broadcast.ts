/**
 * An in-simulator Broadcaster: publish sends the message to every other up peer with
 * transport.send, so it is lossy, delayed and cut by partitions like every other message. One
 * per SimPeer incarnation (a restarted peer needs a new one).
 */
import type { Broadcaster, BroadcastHandler } from '../../src/net/broadcast.js'
import type { SimPeer, SimWorld } from './world.js'

export const SIM_BROADCAST_METHOD = 'sim.broadcast'

export class SimBroadcaster implements Broadcaster {
  private readonly handlers = new Map<string, BroadcastHandler[]>()
  /** When true, publish() sends nothing (a test forcing the anti-entropy path). */
  muted = false
  published = 0

  constructor (private readonly world: SimWorld, private readonly peer: SimPeer) {
    peer.transport.onMessage(SIM_BROADCAST_METHOD, (body, from) => {
      const b = body as { t?: unknown, d?: unknown } | null
      if (b === null || typeof b !== 'object' || typeof b.t !== 'string' || !(b.d instanceof Uint8Array)) return
      for (const h of this.handlers.get(b.t) ?? []) h(b.d, from)
    })
  }

  publish (topic: string, data: Uint8Array): void {
    this.published++
    if (this.muted) return
    for (const p of this.world.peers()) {
      if (p.id === this.peer.id || !p.up) continue
      this.peer.transport.send({ id: p.id, addrs: [] }, SIM_BROADCAST_METHOD, { t: topic, d: data })
    }
  }

  subscribe (topic: string, handler: BroadcastHandler): void {
    const list = this.handlers.get(topic)
    if (list === undefined) this.handlers.set(topic, [handler])
    else list.push(handler)
  }
}
