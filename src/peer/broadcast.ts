import type { Broadcaster, BroadcastHandler } from '../net/index.js'
import type { Logger, PeerAddress, Transport } from '../runtime/index.js'

const METHOD = 'bcast'
/** Largest message sent or accepted; the catalog's own limit is 1 MiB. */
const MAX_BYTES = 1024 * 1024

/**
 * Publishes to every live member directly, one one-way RPC message each, besides gossipsub.
 * Gossipsub needs a heartbeat or two after a peer joins before its mesh carries anything, so a
 * space created right after start-up could otherwise reach the others only with the next
 * push-pull (30 s by default). Catalog changes are rare and clusters small, so O(N) messages per
 * change cost nothing; delivery stays best effort and push-pull remains the safety net.
 */
export class MemberBroadcaster implements Broadcaster {
  private readonly handlers = new Map<string, BroadcastHandler[]>()

  constructor (private readonly transport: Transport, private readonly members: () => PeerAddress[], private readonly log: Logger) {
    transport.onMessage(METHOD, (body, from) => { this.deliver(body, from) })
  }

  publish (topic: string, data: Uint8Array): void {
    if (data.length > MAX_BYTES) return
    for (const to of this.members()) this.transport.send(to, METHOD, { topic, data })
  }

  subscribe (topic: string, handler: BroadcastHandler): void {
    const list = this.handlers.get(topic) ?? []
    list.push(handler)
    this.handlers.set(topic, list)
  }

  private deliver (body: unknown, from: string): void {
    if (body === null || typeof body !== 'object') return
    const { topic, data } = body as { topic?: unknown, data?: unknown }
    if (typeof topic !== 'string' || !(data instanceof Uint8Array) || data.length > MAX_BYTES) {
      this.log.debug({ from }, 'malformed broadcast dropped')
      return
    }
    for (const h of this.handlers.get(topic) ?? []) h(data, from)
  }
}

/** Publishes through every broadcaster given; subscribes to all of them. */
export class FanoutBroadcaster implements Broadcaster {
  constructor (private readonly parts: Broadcaster[]) {}
  publish (topic: string, data: Uint8Array): void { for (const p of this.parts) p.publish(topic, data) }
  subscribe (topic: string, handler: BroadcastHandler): void { for (const p of this.parts) p.subscribe(topic, handler) }
}
