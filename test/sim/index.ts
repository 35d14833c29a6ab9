/**
 * sim: a deterministic discrete-event network simulator. Every peer gets a virtual Clock, a
 * forked seeded Random and an in-memory Transport with the semantics of the real libp2p RPC layer
 * (latency, loss, timeouts, remote errors, cancellation, streams with flow control), so protocol
 * code runs unchanged with hundreds to thousands of peers in seconds of real time, and the same
 * seed always gives the same run (compare world.traceHash()). Faults are scripted: partitions,
 * blocked links, crashes and restarts, stalls (GC pauses), clock skew.
 *
 * ```ts
 * import { SimWorld } from '../sim/index.js'
 * const world = new SimWorld({ seed: 42, lossRate: 0.01 })
 * const a = world.addPeer('a')
 * const b = world.addPeer('b')
 * b.transport.handle('echo', body => body)
 * const answer = a.transport.request({ id: 'b', addrs: [] }, 'echo', { hi: 1 })
 * world.schedule(1000, () => { world.partition(['a'], ['b']) })
 * await world.run(2000)           // virtual milliseconds; returns when they have passed
 * expect(await answer).toEqual({ hi: 1 })
 * ```
 *
 * Promise continuations run at the virtual time of the event that resolved them: the run loop
 * drains the microtask queue (with one real setImmediate) after every event that created or
 * settled a promise. Protocol code must take time, chance and the network only from its Clock,
 * Random and Transport; real timers or I/O inside it would make runs unrepeatable.
 */
export { SimWorld, SimPeer, SimClock } from './world.js'
export type { SimOptions, SimStats, LatencySpec } from './world.js'
export { SimTransport, simTargetId } from './transport.js'
export { UnserializableBodyError } from './codec.js'
export { ManualClock } from './manual-clock.js'

/** The address a peer with this id is reached at in the simulator. */
export function simAddress (id: string): { id: string, addrs: string[] } {
  return { id, addrs: [`/sim/${id}`] }
}
