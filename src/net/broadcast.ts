/**
 * Best-effort publish/subscribe by topic, for small state that every peer should hear of soon
 * (the space catalog). Delivery is not guaranteed: a layer that needs every peer to converge pairs
 * it with an anti-entropy path (the catalog rides on membership push-pull).
 *
 * `GossipsubBroadcaster` runs over the host's libp2p gossipsub service; the simulator supplies an
 * in-memory one (test/sim/broadcast.ts). Protocol code only sees the `Broadcaster` interface.
 *
 * ```ts
 * const bus = new GossipsubBroadcaster({ libp2p: host.libp2p, log })
 * bus.subscribe('shoal/catalog/1', (data, from) => catalog.mergeBytes(data, from))
 * bus.publish('shoal/catalog/1', bytes)
 * bus.stop()
 * ```
 */
import type { GossipsubEvents } from '@chainsafe/libp2p-gossipsub'
import type { Message, PubSub } from '@libp2p/interface'
import type { Logger } from '../runtime/log.js'

export type BroadcastHandler = (data: Uint8Array, from?: string) => void

export interface Broadcaster {
  /** Sends `data` to every peer subscribed to `topic`, best effort. Never throws for network failures. */
  publish(topic: string, data: Uint8Array): void
  /** Registers a handler for `topic` (several handlers per topic are allowed). `from` is the sender when known. */
  subscribe(topic: string, handler: BroadcastHandler): void
}

export interface GossipsubBroadcasterOptions {
  /** Larger messages are neither published nor delivered. bytes, default 1048576 = 1 MiB (gossipsub's own default max is 1 MiB too). */
  maxMessageBytes?: number
}

/** The part of a libp2p node the broadcaster needs: its gossipsub service. */
export interface PubSubHost {
  services: { pubsub?: PubSub<GossipsubEvents> }
}

export class GossipsubBroadcaster implements Broadcaster {
  private readonly pubsub: PubSub<GossipsubEvents>
  private readonly log: Logger
  private readonly maxBytes: number
  private readonly handlers = new Map<string, BroadcastHandler[]>()
  private stopped = false
  private readonly onMessage = (ev: CustomEvent<Message>): void => { this.deliver(ev.detail) }

  constructor (deps: { libp2p: PubSubHost, log: Logger }, opts: GossipsubBroadcasterOptions = {}) {
    const pubsub = deps.libp2p.services.pubsub
    if (pubsub === undefined) throw new Error('the libp2p host has no pubsub service (created with gossipsub: false?)')
    this.pubsub = pubsub
    this.log = deps.log.child({ component: 'net.broadcast' })
    this.maxBytes = opts.maxMessageBytes ?? 1_048_576
    this.pubsub.addEventListener('message', this.onMessage)
  }

  publish (topic: string, data: Uint8Array): void {
    if (this.stopped) return
    if (data.byteLength > this.maxBytes) {
      this.log.warn({ topic, bytes: data.byteLength, limit: this.maxBytes }, 'broadcast message over the size limit; not published')
      return
    }
    try {
      this.pubsub.publish(topic, data).catch(err => { this.log.debug({ err, topic }, 'broadcast publish failed') })
    } catch (err) {
      this.log.debug({ err, topic }, 'broadcast publish failed')
    }
  }

  subscribe (topic: string, handler: BroadcastHandler): void {
    const list = this.handlers.get(topic)
    if (list !== undefined) { list.push(handler); return }
    this.handlers.set(topic, [handler])
    this.pubsub.subscribe(topic)
  }

  /** Unsubscribes from every topic and stops delivering. */
  stop (): void {
    if (this.stopped) return
    this.stopped = true
    this.pubsub.removeEventListener('message', this.onMessage)
    for (const topic of this.handlers.keys()) {
      try { this.pubsub.unsubscribe(topic) } catch (err) { this.log.debug({ err, topic }, 'unsubscribe failed') }
    }
    this.handlers.clear()
  }

  private deliver (msg: Message): void {
    if (this.stopped) return
    const list = this.handlers.get(msg.topic)
    if (list === undefined) return
    if (!(msg.data instanceof Uint8Array) || msg.data.byteLength > this.maxBytes) {
      this.log.debug({ topic: msg.topic }, 'broadcast message malformed or over the size limit; dropped')
      return
    }
    const from = msg.type === 'signed' ? msg.from.toString() : undefined
    for (const h of list) {
      try { h(msg.data, from) } catch (err) { this.log.warn({ err, topic: msg.topic, from }, 'broadcast handler failed') }
    }
  }
}
