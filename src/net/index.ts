/**
 * net: everything that touches libp2p. createHost starts the node (TCP, Noise, Yamux, optional
 * pnet swarm key, identify, gossipsub, a deny-list gater, a ConnectionMonitor that aborts dead
 * connections); RpcTransport implements the runtime Transport over one long-lived stream per
 * peer pair; keys.ts persists the peer identity and parses swarm keys; GossipsubBroadcaster
 * offers best-effort publish/subscribe over gossipsub. Protocol layers see only the Transport
 * and Broadcaster interfaces, never libp2p.
 *
 * ```ts
 * const host = await createHost({
 *   privateKey: await loadOrCreatePeerKey(dataDir),
 *   listen: ['/ip4/0.0.0.0/tcp/7946'],
 *   swarmKey: parseSwarmKey(await readFile('swarm.key', 'utf8')),
 *   log
 * })
 * const transport = new RpcTransport({ libp2p: host.libp2p, log })
 * transport.handle('echo', (body) => body)
 * await transport.start()
 * const answer = await transport.request({ addrs: ['/ip4/10.0.0.2/tcp/7946'] }, 'echo', { hi: 1 }, { timeoutMs: 2000 })
 * await host.denyList.setDenied([somePeerId]) // cuts the link both ways
 * await transport.stop(); await host.stop()
 * ```
 */
export { generateSwarmKey, parseSwarmKey, loadOrCreatePeerKey, SwarmKeyError, PeerKeyError, PEER_KEY_FILE } from './keys.js'
export { handshakeGuard, SwarmKeyMismatchError, SWARM_KEY_MISMATCH } from './handshake-guard.js'
export { DenyListGater, type DenyList, type HangUpTarget } from './gater.js'
export { createHost, HostListenError, DEFAULT_MAX_LIBP2P_CONNECTIONS, DEFAULT_STREAM_WINDOW_BYTES, type Host, type HostOptions, type ShoalLibp2p, type ShoalServices } from './host.js'
export { ConnectionMonitor, DEFAULT_CONNECTION_PING_INTERVAL_MS, DEFAULT_CONNECTION_PING_TIMEOUT_MS, type ConnectionMonitorOptions, type PingRound } from './connection-monitor.js'
export { RpcTransport, RpcBackpressureError, RPC_PROTOCOL, type RpcTransportOptions, type RpcStats } from './rpc.js'
export { GossipsubBroadcaster, type Broadcaster, type BroadcastHandler, type GossipsubBroadcasterOptions, type PubSubHost } from './broadcast.js'
