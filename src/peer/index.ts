/**
 * peer: the composition root. One Peer builds the libp2p host, the RPC transport, SWIM, the
 * partition detector and the HTTP API, starts them in order and drains them on stop.
 *
 * ```ts
 * const peer = await Peer.create(resolveConfig({ flags: {}, env: process.env }), pino())
 * await peer.start()
 * await peer.stop({ leave: true })
 * ```
 */
export { Peer, PeerStartError } from './peer.js'
