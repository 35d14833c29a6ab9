import { mkdir, readFile } from 'node:fs/promises'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Logger as PinoLogger } from 'pino'
import type { PeerConfig } from '../config/index.js'
import { HttpServer, registerApi, type ApiPeer, type FaultControl, type HealthReport, type MemberView } from '../http/index.js'
import { DEFAULT_SWIM_OPTIONS, Swim, type MemberInfo } from '../membership/index.js'
import { PeerMetrics, type Sample } from '../metrics/index.js'
import { createHost, loadOrCreatePeerKey, parseSwarmKey, RpcTransport, type Host } from '../net/index.js'
import { PartitionDetector } from '../partition/index.js'
import { SystemClock, SystemRandom, type Logger, type PeerAddress } from '../runtime/index.js'

/** Start-up failed for a reason the operator can fix (bad key, port in use, ...). */
export class PeerStartError extends Error {
  override name = 'PeerStartError'
}

/** How often the event-loop lag is sampled and fed to the Local Health Multiplier. */
const LAG_SAMPLE_INTERVAL_MS = 1000

/**
 * The composition root: builds every layer in one place, starts them in dependency order and
 * stops them in reverse. Nothing else constructs a layer, so tests and the CLI see one shape.
 *
 * Start: peer key → libp2p host → RPC transport → SWIM → partition detector → HTTP → join.
 * Stop:  leave (bounded by drainTimeoutMs) → HTTP → detector → SWIM → RPC → host.
 */
export class Peer implements ApiPeer {
  readonly faults: FaultControl | undefined
  private readonly startedAt = Date.now()
  private lagMonitor: IntervalHistogram | undefined
  private lagTimer: NodeJS.Timeout | undefined
  private stopped = false
  httpUrl = ''

  private constructor (
    readonly config: PeerConfig,
    private readonly log: Logger,
    private readonly host: Host,
    private readonly transport: RpcTransport,
    private readonly swim: Swim,
    private readonly detector: PartitionDetector,
    private readonly http: HttpServer,
    private readonly metricsRegistry: PeerMetrics
  ) {
    this.faults = config.enableFaultInjection
      ? {
          setDenied: async (peerIds) => {
            this.log.warn({ deny: peerIds }, 'fault injection: deny list changed')
            await host.denyList.setDenied(peerIds)
          },
          state: () => ({ deny: host.denyList.denied() })
        }
      : undefined
  }

  static async create (config: PeerConfig, pinoLog: PinoLogger): Promise<Peer> {
    const log = pinoLog as unknown as Logger
    await mkdir(config.dataDir, { recursive: true }).catch((err: Error) => {
      throw new PeerStartError(`cannot create data dir ${config.dataDir}: ${err.message}`)
    })
    let swarmKey: Uint8Array | undefined
    if (config.swarmKeyFile !== undefined) {
      let text: string
      try {
        text = await readFile(config.swarmKeyFile, 'utf8')
      } catch (err) {
        throw new PeerStartError(`cannot read swarm key file ${config.swarmKeyFile}: ${(err as Error).message}`)
      }
      try {
        swarmKey = parseSwarmKey(text)
      } catch (err) {
        throw new PeerStartError(`swarm key file ${config.swarmKeyFile} is not a valid swarm key: ${(err as Error).message}`)
      }
    }
    const privateKey = await loadOrCreatePeerKey(config.dataDir).catch((err: Error) => {
      throw new PeerStartError(`cannot load the peer key in ${config.dataDir}: ${err.message}`)
    })

    const clock = new SystemClock()
    const random = new SystemRandom()
    let host: Host
    try {
      host = await createHost({ privateKey, listen: config.listen, ...(swarmKey !== undefined ? { swarmKey } : {}), gossipsub: true, log })
    } catch (err) {
      throw new PeerStartError((err as Error).message)
    }
    const transport = new RpcTransport({ libp2p: host.libp2p, clock, log: log.child({ component: 'rpc' }) })
    const http = new HttpServer({ host: config.http.host, port: config.http.port }, log.child({ component: 'http' }))
    const httpAddress = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}`
    let swim: Swim
    try {
      swim = new Swim({ transport, clock, random, log }, {
        ...checkMembershipOptions(config.membership),
        meta: { name: config.name, http: httpAddress }
      })
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError(`membership settings: ${(err as Error).message}`)
    }
    const detector = new PartitionDetector({ membership: swim, clock, log: log.child({ component: 'partition' }) }, {})
    const metrics = new PeerMetrics()
    const peer = new Peer(config, log, host, transport, swim, detector, http, metrics)
    peer.httpUrl = httpAddress
    registerApi(http, peer)
    peer.registerMetrics()
    return peer
  }

  get peerId (): string { return this.transport.localPeerId }

  addrs (): string[] { return this.transport.localAddrs() }

  async start (): Promise<void> {
    try {
      await this.transport.start()
      await this.swim.start()
      this.detector.start()
      await this.http.start()
    } catch (err) {
      await this.stop({ leave: false }).catch(() => {})
      throw new PeerStartError((err as Error).message, { cause: err })
    }
    this.startLagMonitor()
    const bootstrap: PeerAddress[] = this.config.bootstrap.map(addr => ({ addrs: [addr], ...peerIdOf(addr) }))
    if (bootstrap.length > 0) {
      // join() never throws for unreachable addresses; Swim keeps retrying them in the background
      // until it knows another live member, so a peer started before its bootstrap still joins.
      const result = await this.swim.join(bootstrap)
      if (result.joined === 0) {
        this.log.warn({ bootstrap: this.config.bootstrap, errors: result.errors.map(e => String((e.error as Error)?.message ?? e.error)) }, 'no bootstrap peer reachable yet; retrying in the background')
      } else {
        this.log.info({ joined: result.joined }, 'joined the cluster')
      }
    }
  }

  async stop (opts: { leave: boolean }): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.lagTimer !== undefined) clearInterval(this.lagTimer)
    this.lagMonitor?.disable()
    if (opts.leave) {
      await this.swim.leave(this.config.drainTimeoutMs).catch((err: unknown) => { this.log.warn({ err }, 'graceful leave failed') })
    }
    await this.http.stop().catch(() => {})
    this.detector.stop()
    await this.swim.stop().catch(() => {})
    await this.transport.stop().catch(() => {})
    await this.host.stop().catch(() => {})
  }

  health (): HealthReport {
    const status = this.detector.status()
    const members = this.swim.members()
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0 }
    for (const m of members) counts[m.state]++
    const degraded = status.unreachable.length > 0 || status.suspect.length > 0
    return {
      status: !status.majority ? 'red' : degraded ? 'yellow' : 'green',
      peer: this.peerId,
      name: this.config.name,
      addrs: this.addrs(),
      http: this.httpUrl,
      majority: status.majority,
      members: counts,
      localHealthScore: this.swim.localHealthScore(),
      uptimeMs: Date.now() - this.startedAt
    }
  }

  members (): MemberView[] {
    return this.swim.members().map(toMemberView)
  }

  clusterHealth (): unknown {
    return {
      peer: this.peerId,
      partitionDetector: this.detector.status(),
      spaces: []
    }
  }

  async metrics (): Promise<{ contentType: string, text: string }> {
    return await this.metricsRegistry.text()
  }

  private registerMetrics (): void {
    const m = this.metricsRegistry
    m.gaugeFrom('shoal_members', 'Members of the cluster by SWIM state, as this peer sees them', ['state'], () => {
      const counts: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 }
      for (const member of this.swim.members()) counts[member.state] = (counts[member.state] ?? 0) + 1
      return Object.entries(counts).map(([state, n]) => [{ state }, n])
    })
    m.gaugeFrom('shoal_majority', '1 when this peer is in the majority of the last stable cluster', [], () => [[{}, this.detector.status().majority ? 1 : 0]])
    m.gaugeFrom('shoal_local_health_score', 'Lifeguard local health multiplier score (0 = healthy)', [], () => [[{}, this.swim.localHealthScore()]])
    m.counterFrom('shoal_swim_events_total', 'SWIM protocol events: probes, probe failures, indirect probes, suspicions raised and refuted, deaths declared, messages dropped', ['event'], () => {
      const s = this.swim.stats()
      return [
        [{ event: 'probe' }, s.probes],
        [{ event: 'probe_failure' }, s.probeFailures],
        [{ event: 'indirect_probe' }, s.indirectProbes],
        [{ event: 'suspicion_raised' }, s.suspicionsRaised],
        [{ event: 'suspicion_refuted' }, s.suspicionsRefuted],
        [{ event: 'death_declared' }, s.deathsDeclared],
        [{ event: 'message_dropped' }, s.messagesDropped]
      ]
    })
    m.counterFrom('shoal_swim_messages_total', 'SWIM messages by kind and direction', ['kind', 'direction'], () => {
      const s = this.swim.stats()
      return [
        ...Object.entries(s.messagesSent).map(([kind, n]): Sample => [{ kind, direction: 'sent' }, n]),
        ...Object.entries(s.messagesReceived).map(([kind, n]): Sample => [{ kind, direction: 'received' }, n])
      ]
    })
    m.gaugeFrom('shoal_swim_gossip_queue', 'Membership updates waiting to be gossiped', [], () => [[{}, this.swim.stats().gossipQueueLength]])

    const rpc = this.transport.counters
    m.counterFrom('shoal_rpc_calls_total', 'RPC calls this peer started, by outcome', ['outcome'], () => [
      [{ outcome: 'ok' }, rpc.callsSucceeded],
      ...Object.entries(rpc.callsFailed).map(([code, n]): Sample => [{ outcome: code.toLowerCase() }, n])
    ])
    m.counterFrom('shoal_rpc_served_total', 'RPC calls served for other peers', [], () => [[{}, rpc.callsServed]])
    m.counterFrom('shoal_rpc_protocol_violations_total', 'Malformed or oversized frames received (the stream is closed)', [], () => [[{}, rpc.protocolViolations]])
    m.gaugeFrom('shoal_rpc_open_streams', 'Long-lived RPC streams open (about one per connected peer)', [], () => [[{}, this.transport.openStreams()]])
  }

  private startLagMonitor (): void {
    // Lifeguard: a peer that is itself slow must stretch its own timeouts rather than accuse
    // others; event-loop lag is the most direct signal of that in Node.
    const monitor = monitorEventLoopDelay({ resolution: 20 })
    monitor.enable()
    this.lagMonitor = monitor
    this.lagTimer = setInterval(() => {
      const lagMs = monitor.max / 1e6
      monitor.reset()
      this.swim.noteEventLoopLag(lagMs)
    }, LAG_SAMPLE_INTERVAL_MS)
    this.lagTimer.unref()
  }
}

function toMemberView (m: MemberInfo): MemberView {
  return {
    peerId: m.id,
    name: typeof m.meta.name === 'string' ? m.meta.name : null,
    addrs: [...m.addrs],
    http: typeof m.meta.http === 'string' ? m.meta.http : null,
    state: m.state,
    incarnation: m.incarnation
  }
}

/** The config file may tune any numeric SWIM option; a misspelt one must not pass silently. */
function checkMembershipOptions (overrides: Record<string, number>): Record<string, number> {
  const tunable = Object.keys(DEFAULT_SWIM_OPTIONS).filter(k => typeof (DEFAULT_SWIM_OPTIONS as unknown as Record<string, unknown>)[k] === 'number')
  for (const key of Object.keys(overrides)) {
    if (!tunable.includes(key)) throw new Error(`unknown option membership.${key}; known: ${tunable.join(', ')}`)
  }
  return overrides
}

function peerIdOf (addr: string): { id?: string } {
  const m = /\/p2p\/([^/]+)$/.exec(addr)
  return m !== null ? { id: m[1]! } : {}
}
