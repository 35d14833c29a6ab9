/**
 * The libp2p node a Shoal peer runs: TCP + Noise + Yamux, optional private-network protection
 * (pnet), identify, gossipsub, and the deny-list gater. No discovery services: membership decides
 * whom to talk to. Dead connections are aborted by ConnectionMonitor (connection-monitor.ts) in
 * place of libp2p's own.
 */
import { gossipsub, type GossipsubEvents } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import type { PrivateKey, PubSub } from '@libp2p/interface'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { Logger } from '../runtime/log.js'
import { silentLogger } from '../runtime/log.js'
import { ConnectionMonitor } from './connection-monitor.js'
import { DenyListGater, type DenyList } from './gater.js'
import { handshakeGuard, SWARM_KEY_MISMATCH } from './handshake-guard.js'
import { installHalfWindowUpdates } from './yamux-window.js'

export interface ShoalServices extends Record<string, unknown> {
  identify: Identify
  /** Present unless the host was created with `gossipsub: false`. */
  pubsub: PubSub<GossipsubEvents>
}

export type ShoalLibp2p = Libp2p<ShoalServices>

export interface HostOptions {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/7946 (tcp/0 picks a free port). */
  listen: string[]
  /** Multiaddrs to announce instead of the listen addresses (e.g. behind NAT). */
  announce?: string[]
  /** Bytes from parseSwarmKey; when set, only hosts with the same key can connect. */
  swarmKey?: Uint8Array
  /** Default true. */
  gossipsub?: boolean
  log?: Logger
  /** libp2p's dial timeout. Default 5000. */
  dialTimeoutMs?: number
  /**
   * Inbound connections accepted per second from one IP. libp2p's default (5) is hit by local
   * clusters and tests, where every peer dials from 127.0.0.1. Default 100.
   */
  inboundConnectionsPerHostPerSecond?: number
  /** Most libp2p connections open at once (each holds a file descriptor). Default 300, libp2p's MAX_CONNECTIONS. */
  maxConnections?: number
  /**
   * Most bytes one stream may have in flight (yamux's stream window; yamux's own default is 16
   * MiB). A connection's streams share one queue to the socket, so a frame of another stream (a
   * membership probe on its control stream) waits behind up to this much of a bulk stream's data.
   * Default DEFAULT_STREAM_WINDOW_BYTES.
   */
  streamWindowBytes?: number
}

/**
 * Default of HostOptions.streamWindowBytes: 1 MiB, a probe's wait behind bulk data 80 ms at 100
 * Mbit/s (16 MiB was over a second, past the probe's timeout), and a stream's throughput capped
 * at 1 MiB per round trip (more than 100 MB/s under 10 ms).
 */
export const DEFAULT_STREAM_WINDOW_BYTES = 1024 * 1024

/** Default of HostOptions.maxConnections: libp2p's own (connection-manager/constants.js). */
export const DEFAULT_MAX_LIBP2P_CONNECTIONS = 300

export interface Host {
  readonly libp2p: ShoalLibp2p
  readonly peerId: string
  readonly denyList: DenyList
  /** Listening addresses, each ending in /p2p/<peerId>. */
  multiaddrs(): string[]
  stop(): Promise<void>
}

/** The node could not listen on one of the requested addresses (port in use, bad address...). */
export class HostListenError extends Error {
  override name = 'HostListenError'
  readonly addrs: string[]
  constructor (addrs: string[], reason: string, cause?: unknown) {
    super(`cannot listen on ${addrs.join(', ')}: ${reason}`, { cause })
    this.addrs = addrs
  }
}

/** Creates and starts the node. Throws HostListenError if an address cannot be bound. */
export async function createHost (opts: HostOptions): Promise<Host> {
  const log = (opts.log ?? silentLogger).child({ component: 'net.host' })
  const swarmKey = opts.swarmKey
  let mismatches = 0
  for (const addr of opts.listen) {
    try {
      multiaddr(addr)
    } catch (err) {
      throw new HostListenError([addr], 'not a valid multiaddr', err)
    }
  }
  installHalfWindowUpdates()
  const gater = new DenyListGater(log)
  const services: Record<string, (components: any) => unknown> = {
    identify: identify()
  }
  if (opts.gossipsub !== false) {
    services.pubsub = gossipsub({
      // Membership may publish before any subscriber is known (a lone first peer); that is not an error.
      allowPublishToZeroTopicPeers: true,
      emitSelf: false
    })
  }
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen, announce: opts.announce ?? [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // No yamux keep-alive (a ping every 30 s each way on every connection): ConnectionMonitor
    // sends the same ping frame every 10 s, and acts on a missing answer, which yamux does not.
    streamMuxers: [yamux({ enableKeepAlive: false, maxStreamWindowSize: Math.max(256 * 1024, opts.streamWindowBytes ?? DEFAULT_STREAM_WINDOW_BYTES) })],
    connectionProtector: (components: Parameters<ReturnType<typeof preSharedKey>>[0]) => handshakeGuard({
      ...(swarmKey !== undefined ? { inner: preSharedKey({ psk: swarmKey })(components) } : {}),
      onMismatch: (remote, keyed) => {
        // A scanner can knock many times: the first few, then one in a thousand.
        if (++mismatches > 10 && mismatches % 1000 !== 0) return
        log.warn({ remote, keyed, refused: mismatches }, `connection with ${remote} failed: ${SWARM_KEY_MISMATCH} (${keyed ? 'its bytes do not decrypt under this cluster\'s swarm key' : 'this peer has no swarm key; the other side may have one'})`)
      }
    }),
    connectionGater: gater,
    connectionManager: {
      dialTimeout: opts.dialTimeoutMs ?? 5000,
      inboundConnectionThreshold: opts.inboundConnectionsPerHostPerSecond ?? 100,
      maxIncomingPendingConnections: 64,
      maxConnections: opts.maxConnections ?? DEFAULT_MAX_LIBP2P_CONNECTIONS
    },
    services,
    // Dead connections are found by our ConnectionMonitor (connection-monitor.ts), with the
    // muxer's ping frame; libp2p's opened a stream per connection every 10 s to do the same.
    connectionMonitor: { enabled: false },
    start: false
  }) as unknown as ShoalLibp2p
  gater.attach(node)
  try {
    await node.start()
  } catch (err) {
    await Promise.resolve(node.stop()).catch(() => {})
    const msg = err instanceof Error ? err.message : String(err)
    const code = (err as { code?: string }).code
    const reason = code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(msg) ? `address in use (${msg})` : msg
    throw new HostListenError(opts.listen, reason, err)
  }
  const monitor = new ConnectionMonitor(node, log)
  monitor.start()
  const peerId = node.peerId.toString()
  log.info({ peerId, addrs: node.getMultiaddrs().map(String) }, 'host started')
  return {
    libp2p: node,
    peerId,
    denyList: gater,
    multiaddrs: () => node.getMultiaddrs().map(String),
    stop: async () => { monitor.stop(); await node.stop() }
  }
}
