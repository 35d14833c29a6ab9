import { readFileSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { totalmem } from 'node:os'
import { dirname, resolve } from 'node:path'
import { getHeapStatistics } from 'node:v8'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Logger as PinoLogger } from 'pino'
import type { PeerConfig } from '../config/index.js'
import { FileHlcStore, HybridClock, hlcPhysicalMs } from '../hlc/index.js'
import { HttpError, HttpServer, TokenFileError, parseTokenFile, type TokenEntry, registerApi, registerBackupApi, registerDataApi, registerOpsApi, registerQueryApi, type ApiPeer, type FaultControl, type HealthReport, type MemberView, type RemovePeerAnswer } from '../http/index.js'
import { DEFAULT_SWIM_OPTIONS, Swim, URGENT_METHODS, type MemberInfo } from '../membership/index.js'
import { PeerMetrics, type Sample } from '../metrics/index.js'
import { createHost, GossipsubBroadcaster, loadOrCreatePeerKey, parseSwarmKey, RpcTransport, type Host } from '../net/index.js'
import { PartitionDetector } from '../partition/index.js'
import { DEFAULT_PLACEMENT_OPTIONS, LEAVING_META_KEY } from '../placement/index.js'
import { DEFAULT_REPLICATOR_OPTIONS, HintLog, hintFileBytesFor, Replicator } from '../replication/index.js'
import { DiskFaultRules, FaultInjectingFileSystem, fsyncDir, nodeFileSystem, SystemClock, SystemRandom, VERSION, type FileSystem, type Logger, type PeerAddress } from '../runtime/index.js'
import { DEFAULT_MEMTABLE_BUDGET_BYTES, DEFAULT_PARTITION_OPTIONS, defaultCacheMiB, StorageEngine } from '../storage/index.js'
import { FanoutBroadcaster, MemberBroadcaster } from './broadcast.js'
import { ConnectionCapWatch } from './connection-cap.js'
import { boundHeapGrowth, planHeap } from './heap.js'
import { AvailabilityLog } from './availability-log.js'
import { MembershipLog } from './membership-log.js'
import { adoptReplicasOnDisk, assembleStack, StackSettingsError, startStack, storeProviderOf, type ProtocolStack } from './stack.js'
import { openFileLimit, planFileBudget, type FileBudget } from './file-budget.js'
import { KnownPeers } from './known-peers.js'
import { FileIncarnationStore, IncarnationFileError } from './incarnation-file.js'
import { DataService } from './data.js'
import { registerOperationalMetrics } from './metrics.js'
import { createBackupService } from '../backup/index.js'
import { MemberDirectory } from './members.js'
import { ClusterStatusService, collectLocalStatus } from './cluster-status.js'
import { DecommissionRunner, EventLines } from './decommission.js'
import { QueryService, DEFAULT_QUERY_OPTIONS, FragmentPool, defaultPoolSize } from '../query/index.js'

const FANOUT_LABELS = ['1', '2', '4', '8', '16', '32', '64']
/** How often the peer looks for partitions losing or regaining replicas (AvailabilityLog). */
const AVAILABILITY_CHECK_MS = 1000

/** Start-up failed for a reason the operator can fix (bad key, port in use, ...). */
export class PeerStartError extends Error {
  override name = 'PeerStartError'
}

/** How often a decommission's NDJSON answer gets an empty line while nothing else was sent (EventLines.keepAlive). */
const DECOMMISSION_KEEPALIVE_MS = 30_000

/** How often the event-loop lag is sampled and fed to the Local Health Multiplier. */
const LAG_SAMPLE_INTERVAL_MS = 1000
/** The lag monitor's resolution (monitorEventLoopDelay), and the metrics' lag gauges' too (metricsAndLagMonitor). */
const LAG_RESOLUTION_MS = 20

/** The layers of one peer, built together by Peer.create: the protocol stack (stack.ts) and what the real peer adds around it. */
interface Layers extends ProtocolStack {
  /** The filesystem storage, hints and the catalog file use: node:fs, behind disk fault rules with --enable-fault-injection. */
  disk: { fs: FileSystem, faults: DiskFaultRules | undefined }
  host: Host
  transport: RpcTransport
  hlc: HybridClock
  engine: StorageEngine
  broadcaster: GossipsubBroadcaster
  knownPeers: KnownPeers
  hintLog: HintLog
  queries: QueryService
  pool: FragmentPool
  http: HttpServer
}

/** A peer not ready by then bounds its heap's growth anyway (boundHeapGrowth). */
const HEAP_GROWTH_AFTER_MS = 30_000
/** How often a starting peer checks whether every partition it owns is ready (announceReady). */
const READY_CHECK_MS = 250

/**
 * The composition root: builds every layer in one place, starts them in dependency order and
 * stops them in reverse. Nothing else constructs a layer, so tests and the CLI see one shape.
 *
 * Start: peer key → libp2p host → RPC → the protocol stack (stack.ts, as the simulator runs it:
 *        saved catalog → SWIM → join, in the background → detector → placement → replication)
 *        → queries → HTTP.
 * Stop:  decommission (hand-off bounded by decommissionTimeoutMs, leave and last push bounded by
 *        drainTimeoutMs) → HTTP → replication → placement → detector → SWIM → catalog → storage
 *        (flushes) → RPC → host.
 */
export class Peer implements ApiPeer {
  readonly faults: FaultControl | undefined
  private readonly startedAt = Date.now()
  /** Whether announceReady has seen every partition this peer owns ready (see it). */
  private ready = false
  private heapGrowthBounded = false
  private lagMonitor: IntervalHistogram | undefined
  private lagTimer: NodeJS.Timeout | undefined
  private stopped = false
  private stopping: Promise<void> | undefined
  httpUrl = ''
  /** The data operations without HTTP in front (benchmarks of the internal path use it). */
  data!: DataService

  private readonly host: Host
  private readonly transport: RpcTransport
  private readonly swim: Swim
  private readonly detector: PartitionDetector
  private readonly http: HttpServer

  /** This peer's own lines (component 'peer'); `root` makes the other components' loggers. */
  private readonly log: Logger
  private availabilityTimer: ReturnType<typeof setInterval> | undefined
  /** Bounds the heap's growth HEAP_GROWTH_AFTER_MS after the start if the peer is not ready by then. */
  private heapGrowthTimer: ReturnType<typeof setTimeout> | undefined
  private readonly decommissioner: DecommissionRunner
  private readonly stopListeners: Array<(why: 'decommissioned' | 'stopped') => void> = []

  private constructor (
    readonly config: PeerConfig,
    private readonly root: Logger,
    private readonly layers: Layers,
    private readonly metricsRegistry: PeerMetrics
  ) {
    this.log = root.child({ component: 'peer' })
    const host = layers.host
    this.host = host
    this.transport = layers.transport
    this.swim = layers.swim
    this.detector = layers.detector
    this.http = layers.http
    this.decommissioner = new DecommissionRunner({
      replicator: layers.replicator,
      leave: async timeoutMs => { await layers.swim.leave(timeoutMs) },
      log: root.child({ component: 'peer' }),
      nameOf: id => this.nameOf(id),
      isCurrent: space => layers.catalog.get(space.name)?.uid === space.uid,
      self: { peerId: layers.transport.localPeerId, name: config.name },
      drainTimeoutMs: config.drainTimeoutMs,
      now: () => Date.now()
    })
    this.faults = config.enableFaultInjection
      ? {
          setDenied: async (peerIds) => {
            this.log.warn({ deny: peerIds }, 'fault injection: deny list changed')
            await host.denyList.setDenied(peerIds)
          },
          setClockSkew: (offsetMs, driftPpm) => {
            this.log.warn({ offsetMs, driftPpm }, 'fault injection: clock skew changed')
            layers.hlc.setSkew(offsetMs, driftPpm)
          },
          setQueryDelay: (ms) => {
            this.log.warn({ queryDelayMs: ms }, 'fault injection: query fragments delayed')
            layers.queries.setFragmentDelay(ms)
          },
          setDiskFaults: (rules) => {
            const faults = layers.disk.faults!
            this.log.warn({ disk: rules }, 'fault injection: disk fault rules changed')
            faults.clear()
            for (const r of rules) faults.add(r)
          },
          state: () => ({
            deny: host.denyList.denied(),
            ...layers.hlc.skewSettings(),
            queryDelayMs: layers.queries.fragmentDelay(),
            disk: layers.disk.faults!.list(),
            diskFaultsInjected: layers.disk.faults!.injected
          })
        }
      : undefined
  }

  static async create (config: PeerConfig, pinoLog: PinoLogger): Promise<Peer> {
    const log = pinoLog as unknown as Logger
    await mkdir(config.dataDir, { recursive: true }).catch((err: Error) => {
      throw new PeerStartError(`cannot create data dir ${config.dataDir}: ${err.message}`)
    })
    // The data directory's own entry, durable before anything is written in it (storage syncs
    // the directories below it: src/storage/fsutil.ts DurableDirs).
    await fsyncDir(dirname(resolve(config.dataDir))).catch(() => {})
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

    let files: FileBudget
    let storageOptions: Record<string, number>
    try {
      storageOptions = checkOptions('storage', config.storage, { ...DEFAULT_PARTITION_OPTIONS, memtableBudgetBytes: 0, maxOpenFiles: 0, cacheMiB: 0, maxConcurrentCompactions: 0 })
      files = planFileBudget(await openFileLimit(), {
        ...(config.maxPeerConnections !== undefined ? { libp2pConnections: config.maxPeerConnections } : {}),
        ...(config.maxHttpConnections !== undefined ? { httpConnections: config.maxHttpConnections } : {}),
        ...(storageOptions.maxOpenFiles !== undefined ? { storageFiles: storageOptions.maxOpenFiles } : {})
      })
    } catch (err) {
      throw new PeerStartError((err as Error).message)
    }
    log.info({ component: 'peer', ...files }, 'open-file budget')

    const clock = new SystemClock()
    const random = new SystemRandom()
    let host: Host
    try {
      host = await createHost({ privateKey, listen: config.listen, ...(swarmKey !== undefined ? { swarmKey } : {}), gossipsub: true, log, maxConnections: files.libp2pConnections })
    } catch (err) {
      throw new PeerStartError((err as Error).message)
    }
    // Membership's probes and gossip on streams of their own: never behind a catch-up's megabytes.
    const transport = new RpcTransport({ libp2p: host.libp2p, clock, log: log.child({ component: 'rpc' }), controlMethods: URGENT_METHODS })
    const guard = readHttpGuard(config)
    const http = new HttpServer({ host: config.http.host, port: config.http.port, maxConnections: files.httpConnections, ...guard }, log.child({ component: 'http' }))
    const httpAddress = `${guard.tls !== undefined ? 'https' : 'http'}://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}`
    if (guard.tokens !== undefined || guard.tls !== undefined || config.httpInsecure) {
      log.info({ tls: guard.tls !== undefined, tokens: guard.tokens?.length ?? 0, readOnlyTokens: guard.tokens?.filter(t => t.role === 'read-only').length ?? 0, insecure: config.httpInsecure && guard.tokens === undefined },
        guard.tokens === undefined && config.httpInsecure ? 'HTTP API without tokens beyond loopback (--http-insecure)' : 'HTTP API guarded')
    }
    let hlc: HybridClock
    try {
      // A full disk must not stop the clock (every write this peer coordinates needs it): it goes
      // on issuing and says so, once each way.
      const hlcLog = log.child({ component: 'clock' })
      hlc = new HybridClock({ clock }, {
        store: new FileHlcStore(config.dataDir),
        onPersistError: err => {
          if (err !== undefined) {
            hlcLog.error({ path: `${config.dataDir}/hlc`, code: (err as NodeJS.ErrnoException).code, err: err.message },
              'the clock\'s ceiling cannot be saved (is the disk full?): versions are still issued, but a crash now followed by a restart with the wall clock set back could issue some again; retried every second')
          } else {
            hlcLog.info({ path: `${config.dataDir}/hlc` }, 'the clock\'s ceiling is saved again')
          }
        }
      })
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError(`cannot read the clock state in ${config.dataDir}: ${(err as Error).message}`)
    }
    // Disk fault rules exist only behind the flag: without it the peer's files are node:fs as is.
    const diskFaults = config.enableFaultInjection ? new DiskFaultRules() : undefined
    const fs: FileSystem = diskFaults !== undefined ? new FaultInjectingFileSystem(nodeFileSystem, diskFaults) : nodeFileSystem
    let engine: StorageEngine
    try {
      engine = new StorageEngine({ clock, log, fs }, { ...storageOptions, dataDir: config.dataDir, maxOpenFiles: files.storageFiles, cacheMiB: storageOptions.cacheMiB ?? defaultCacheMiB(totalmem()) })
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError(`storage settings: ${(err as Error).message}`)
    }
    const broadcaster = new GossipsubBroadcaster({ libp2p: host.libp2p, log })
    // Swim is built after the catalog (it carries the catalog in push-pull), so the direct
    // broadcaster reads the member list through a late-bound reference.
    let swimRef: Swim | undefined
    const direct = new MemberBroadcaster(transport, () => (swimRef?.members() ?? [])
      .filter(m => m.state === 'alive' && m.id !== transport.localPeerId)
      .map(m => ({ id: m.id, addrs: m.addrs })), log.child({ component: 'net.broadcast' }))
    let settings: { membership: Record<string, number>, placement: Record<string, number>, replication: Record<string, number> }
    try {
      settings = {
        membership: checkOptions('membership', config.membership, DEFAULT_SWIM_OPTIONS),
        placement: checkOptions('placement', config.placement, DEFAULT_PLACEMENT_OPTIONS),
        replication: checkOptions('replication', config.replication, DEFAULT_REPLICATOR_OPTIONS)
      }
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError((err as Error).message)
    }
    // Hints survive a restart: read back before replication starts, replayed as the targets return.
    let hintFiles: Awaited<ReturnType<typeof HintLog.open>>
    try {
      hintFiles = await HintLog.open({ fs, log: log.child({ component: 'hints' }) },
        { dir: `${config.dataDir}/hints`, fileBytes: hintFileBytesFor(settings.replication.hintMaxBytes ?? DEFAULT_REPLICATOR_OPTIONS.hintMaxBytes) })
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError(`cannot read the hint files in ${config.dataDir}/hints: ${(err as Error).message}`)
    }
    let stack: ProtocolStack
    try {
      // A restart must start above every incarnation used before, or its new meta (this HTTP
      // address) is ignored (issue 13): the saved ceiling guarantees it, and the HLC's
      // milliseconds (never backwards while its own file lives, else the wall clock) cover a
      // lost incarnation file. See IncarnationStore in src/membership/swim.ts.
      stack = assembleStack({
        transport,
        clock,
        random,
        log,
        hlc,
        broadcaster: new FanoutBroadcaster([broadcaster, direct]),
        fs,
        dataDir: config.dataDir,
        incarnations: new FileIncarnationStore(config.dataDir, log.child({ component: 'swim' })),
        startIncarnation: hlcPhysicalMs(hlc.now()),
        stores: storeProviderOf(engine),
        hintFiles
      }, { meta: { name: config.name, http: httpAddress, version: VERSION }, ...settings })
    } catch (err) {
      await host.stop().catch(() => {})
      const cause = err instanceof StackSettingsError ? err.cause : err
      throw new PeerStartError(cause instanceof IncarnationFileError ? `membership state in ${config.dataDir}: ${cause.message}` : (err as Error).message)
    }
    const { catalog, catalogFile, swim, detector, placement, replicator } = stack
    swimRef = swim
    let queryOptions: Record<string, number>
    try {
      queryOptions = checkOptions('query', config.query, DEFAULT_QUERY_OPTIONS)
    } catch (err) {
      await host.stop().catch(() => {})
      throw new PeerStartError(`query settings: ${(err as Error).message}`)
    }
    const heap = planHeap({
      limitBytes: getHeapStatistics().heap_size_limit,
      ...(config.heapMiB !== undefined ? { askedMiB: config.heapMiB } : {}),
      memtableBudgetBytes: storageOptions.memtableBudgetBytes ?? DEFAULT_MEMTABLE_BUDGET_BYTES,
      queryBudgetMiB: queryOptions.memoryBudgetMb ?? DEFAULT_QUERY_OPTIONS.memoryBudgetMb
    })
    log.info({ component: 'peer', heapLimitMiB: heap.limitMiB, heapNeededMiB: heap.neededMiB, heapGrowthPercent: config.heapGrowthPercent }, 'heap')
    for (const w of heap.warnings) log.warn({ component: 'peer', heapLimitMiB: heap.limitMiB, heapNeededMiB: heap.neededMiB }, w)
    const members = new MemberDirectory(swim)
    const threads = queryOptions.workerThreads ?? DEFAULT_QUERY_OPTIONS.workerThreads
    if (!Number.isInteger(threads) || threads < -1 || threads > 256) {
      await host.stop().catch(() => {})
      throw new PeerStartError('query settings: workerThreads must be an integer from -1 (one fewer than the cores) to 256 (0: no worker threads)')
    }
    const pool = new FragmentPool(threads < 0 ? defaultPoolSize() : threads)
    const queries = new QueryService({
      pool,
      transport,
      clock,
      log: log.child({ component: 'query' }),
      self: transport.localPeerId,
      space: name => catalog.get(name),
      partitionOf: (space, id) => placement.partitionOf(space, id),
      readReplicas: (space, partition) => placement.locate(space, partition).readReplicas,
      addressOf: peerId => placement.addressOf(peerId),
      isReachable: peerId => detector.isReachable(peerId),
      isSuspect: peerId => members.isSuspect(peerId),
      isSynced: () => swim.hasSynced(),
      openForQuery: async (space, partition) => await replicator.openForQuery(space, partition),
      localRows: (space, partition) => replicator.localRows(space, partition),
      peerName: peerId => members.nameOf(peerId)
    }, queryOptions)
    const { metrics, lagMonitor } = metricsAndLagMonitor()
    const knownPeers = new KnownPeers(config.dataDir, log.child({ component: 'swim' }))
    const layers: Layers = { disk: { fs, faults: diskFaults }, host, transport, hlc, engine, broadcaster, catalog, catalogFile, knownPeers, swim, detector, placement, replicator, hintLog: hintFiles.log, queries, pool, http }
    const peer = new Peer(config, log, layers, metrics)
    peer.lagMonitor = lagMonitor
    const capWatch = new ConnectionCapWatch(files.libp2pConnections, log.child({ component: 'net.host' }))
    swim.onChange(() => { capWatch.observe(swim.liveMembers() - 1) })
    peer.httpUrl = httpAddress
    registerApi(http, peer)
    const data = new DataService(catalog, placement, replicator, hlc, () => placement.members().length, clock)
    peer.data = data
    registerDataApi(http, data)
    registerQueryApi(http, queries)
    // Backup and restore (src/backup): partitions read from a majority of their replicas; restores written with their versions.
    registerBackupApi(http, createBackupService({
      transport, placement, detector, catalog, hlc, isSynced: () => swim.hasSynced(), nameOf: id => members.nameOf(id), log: log.child({ component: 'backup' }),
      openLocal: async (space, partition) => await replicator.openForQuery(space, partition),
      write: async (space, records, opts) => await replicator.writeRecords(space, records, opts, true)
    }))
    // shoal status and shoal repair (cluster-status.ts): every live peer's figures and repairs over RPC.
    const ops = new ClusterStatusService({
      transport,
      clock,
      log: log.child({ component: 'ops' }),
      local: async () => await collectLocalStatus({
        peerId: transport.localPeerId,
        name: config.name,
        version: VERSION,
        uptimeMs: () => Date.now() - peer.startedAt,
        ready: () => peer.ready,
        stores: () => engine.partitions(),
        isReady: (space, partition) => replicator.isReady(space, partition),
        replication: () => replicator.stats()
      }),
      members: () => peer.members(),
      health: () => peer.health(),
      spaces: () => catalog.list(),
      space: name => catalog.get(name),
      locate: (space, partition) => placement.locate(space, partition),
      isReachable: id => detector.isReachable(id),
      addressOf: id => placement.addressOf(id),
      repair: async req => await replicator.repairNow(req)
    })
    ops.register()
    registerOpsApi(http, ops)
    peer.registerMetrics()
    return peer
  }

  get peerId (): string { return this.transport.localPeerId }

  addrs (): string[] { return this.transport.localAddrs() }

  async start (): Promise<void> {
    const { engine, knownPeers } = this.layers
    let joining: ReturnType<Swim['join']> | undefined
    try {
      await this.transport.start()
      // Configured addresses first, then the peers this peer knew before it stopped.
      const remembered = (await knownPeers.load()).filter(p => p.id !== this.peerId)
      const bootstrap: PeerAddress[] = [...this.config.bootstrap.map(addr => ({ addrs: [addr], ...peerIdOf(addr) })), ...remembered]
      // The join never throws for unreachable addresses and keeps retrying them in the
      // background, so a peer started before its bootstrap still joins.
      joining = (await startStack(this.layers, {
        bootstrap,
        onDisk: async () => await engine.listOnDisk(),
        dropSpaceData: async uid => { await engine.dropSpace(uid) },
        log: this.log
      })).joining
      this.layers.queries.start()
      await this.http.start()
    } catch (err) {
      await this.stop({ leave: false }).catch(() => {})
      throw new PeerStartError((err as Error).message, { cause: err })
    }
    this.startLagMonitor()
    const membershipLog = new MembershipLog(this.root.child({ component: 'membership' }), this.peerId)
    this.swim.onChange(ev => { membershipLog.member(ev) })
    // Partitions losing and regaining replicas (warn / info), looked at as health does.
    const availabilityLog = new AvailabilityLog(this.root.child({ component: 'placement' }))
    const lookAtAvailability = (): void => {
      try {
        availabilityLog.observe(this.partitionAvailability())
      } catch (err) {
        this.log.error({ err }, 'could not check partition availability')
      }
    }
    this.availabilityTimer = setInterval(lookAtAvailability, AVAILABILITY_CHECK_MS)
    this.availabilityTimer.unref()
    this.swim.onChange(() => {
      knownPeers.update(this.swim.members().filter(m => m.state === 'alive' && m.id !== this.peerId).map(m => ({ id: m.id, addrs: m.addrs })))
    })
    this.heapGrowthTimer = setTimeout(() => { if (!this.stopped) this.boundHeapGrowth() }, HEAP_GROWTH_AFTER_MS).unref()
    void this.adoptReplicasOnDisk().then(async () => { await this.announceReady() }).catch((err: unknown) => { this.log.error({ err }, 'checking start-up readiness failed') })
    if (joining !== undefined) {
      const result = await joining
      if (result.joined === 0) {
        this.log.warn({ bootstrap: this.config.bootstrap, errors: result.errors.map(e => String((e.error as Error)?.message ?? e.error)) }, 'no bootstrap peer reachable yet; retrying in the background')
      } else {
        this.log.info({ joined: result.joined }, 'joined the cluster')
      }
    }
  }

  /**
   * Once this peer has synced with its cluster (and so has its catalog), goes through the replicas
   * left on disk by its previous run: those of live spaces are handed to replication (caught up if
   * still owned, released if not); those of spaces dropped or re-created meanwhile are deleted.
   * Replicas of spaces it has not heard of are left alone: the catalog may still be arriving.
   */
  private async adoptReplicasOnDisk (): Promise<void> {
    while (!this.stopped && !this.swim.hasSynced()) await new Promise(resolve => setTimeout(resolve, 500).unref())
    if (this.stopped) return
    try {
      await adoptReplicasOnDisk(this.layers, this.layers.engine, this.log)
    } catch (err) {
      this.log.error({ err }, 'could not go through the replicas on disk')
    }
  }

  /**
   * Logs "ready" once this peer has synced with its cluster, gone through the replicas on its disk
   * and caught every partition it owns up (recovery done): until then a restarted peer answers
   * health checks but not yet for all it holds. /health says the same in `ready`.
   */
  private async announceReady (): Promise<void> {
    const { placement, replicator } = this.layers
    while (!this.stopped) {
      const owned = placement.ownedPartitions()
      if (owned.every(o => replicator.isReady(o.space, o.partition))) {
        this.ready = true
        this.log.info({ partitions: owned.length, sinceStartMs: Date.now() - this.startedAt }, 'ready: every partition this peer owns is recovered and caught up')
        this.boundHeapGrowth()
        return
      }
      await new Promise(resolve => setTimeout(resolve, READY_CHECK_MS).unref())
    }
  }

  /**
   * From now on V8 grows the heap by at most heapGrowthPercent of what is live (src/peer/heap.ts):
   * once the peer is ready, or HEAP_GROWTH_AFTER_MS after its start if it is not by then (a peer
   * waiting for others to catch up from must not grow unbounded meanwhile).
   */
  private boundHeapGrowth (): void {
    if (this.heapGrowthBounded || this.config.heapGrowthPercent === 0) return
    this.heapGrowthBounded = true
    boundHeapGrowth(this.config.heapGrowthPercent)
    this.log.info({ heapGrowthPercent: this.config.heapGrowthPercent, sinceStartMs: Date.now() - this.startedAt }, 'heap growth bounded')
  }

  /**
   * Stops the peer. With `leave` (SIGTERM) it decommissions first: hands every partition it holds
   * to its next owners (at most decommissionTimeoutMs; 0 skips it), then leaves, whatever was
   * handed off, and stops. A decommission already under way (POST /admin/decommission) is waited for.
   */
  async stop (opts: { leave: boolean }): Promise<void> {
    // A second caller (SIGTERM while a decommission stops the peer) waits for the same stop.
    this.stopping ??= this.stopOnce(opts)
    await this.stopping
  }

  private async stopOnce (opts: { leave: boolean }): Promise<void> {
    this.stopped = true
    if (this.lagTimer !== undefined) clearInterval(this.lagTimer)
    if (this.availabilityTimer !== undefined) clearInterval(this.availabilityTimer)
    if (this.heapGrowthTimer !== undefined) clearTimeout(this.heapGrowthTimer)
    this.lagMonitor?.disable()
    if (opts.leave) await this.leaveGracefully()
    const { catalog, catalogFile, placement, replicator, engine, broadcaster } = this.layers
    await this.http.stop().catch(() => {})
    await this.layers.pool.close().catch(() => {})
    await Promise.resolve(replicator.stop()).catch(() => {})
    await this.layers.hintLog.close().catch(() => {})
    placement.stop()
    this.detector.stop()
    await this.swim.stop().catch(() => {})
    catalog.stop()
    broadcaster.stop()
    await catalogFile.flush()
    await this.layers.knownPeers.flush()
    await engine.close().catch((err: unknown) => { this.log.error({ err }, 'storage did not close cleanly') })
    await this.transport.stop().catch(() => {})
    await this.host.stop().catch(() => {})
  }

  /** The leave of stop(): a decommission (SIGTERM's), or the one under way, or a bare leave. */
  private async leaveGracefully (): Promise<void> {
    const running = this.decommissioner.current
    if (running !== undefined) {
      // Bounded as SIGTERM's own would be: an operator's decommission may have asked for hours.
      const capMs = this.config.decommissionTimeoutMs + this.config.drainTimeoutMs
      this.log.info({ waitAtMostMs: capMs }, 'stopping: waiting for the decommission under way')
      let timer: NodeJS.Timeout | undefined
      const outcome = await Promise.race([
        running.catch(() => undefined),
        new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, capMs) })
      ]).finally(() => { clearTimeout(timer) })
      if (outcome?.left === true) return
      if (outcome === undefined) this.log.warn({ waitedMs: capMs }, 'stopping: the decommission under way did not finish in time; leaving without it (what it did not hand off is still on its other replicas, or on this disk)')
    } else if (this.config.decommissionTimeoutMs > 0 && this.swim.hasSynced()) {
      try {
        const outcome = await this.decommissioner.run({ timeoutMs: this.config.decommissionTimeoutMs, leaveOnTimeout: true })
        this.log.info({ handedOff: outcome.handedOff, total: outcome.total, tookMs: outcome.tookMs }, outcome.message)
        if (outcome.left) return
      } catch (err) {
        this.log.error({ err }, 'decommission failed; leaving without handing off')
      }
    }
    await this.swim.leave(this.config.drainTimeoutMs).catch((err: unknown) => { this.log.warn({ err }, 'graceful leave failed') })
  }

  /**
   * POST /admin/decommission: starts this peer's decommission and answers its progress as NDJSON
   * lines (DecommissionEvent), the last one the summary. Complete, the peer has left and stops
   * (the listeners of onStop hear 'decommissioned'); timed out, it stays a member. Throws
   * HttpError when it cannot start (already under way or stopping: 409; not synced: 503).
   */
  decommission (opts: { timeoutMs?: number }): AsyncIterable<string> {
    if (this.stopped) throw new HttpError(409, 'STOPPING', 'this peer is stopping already')
    if (this.decommissioner.current !== undefined) throw new HttpError(409, 'DECOMMISSIONING', 'a decommission of this peer is already under way')
    if (!this.swim.hasSynced()) throw new HttpError(503, 'NOT_SYNCED', 'this peer has not synced with its cluster yet: it cannot tell who takes its partitions; try again in a moment')
    const lines = new EventLines()
    const run = this.decommissioner.run({ timeoutMs: opts.timeoutMs ?? this.config.decommissionTimeoutMs, leaveOnTimeout: false, onEvent: ev => { lines.push(ev) } })
    const keepAlive = setInterval(() => { lines.keepAlive() }, DECOMMISSION_KEEPALIVE_MS)
    void run.finally(() => { clearInterval(keepAlive) }).catch(() => {})
    run.then(summary => {
      lines.push(summary)
      lines.end()
      this.log.info({ handedOff: summary.handedOff, total: summary.total, tookMs: summary.tookMs }, summary.message)
      if (summary.left) {
        // The stop closes the HTTP server, which waits for this answer (its summary is out,
        // its connection set to close) before the rest of the stop goes on.
        void this.stop({ leave: false }).then(() => { this.notifyStopped('decommissioned') }, (err: unknown) => { this.log.error({ err }, 'error while stopping after the decommission') })
      }
    }, (err: unknown) => {
      this.log.error({ err }, 'decommission failed')
      lines.push({ event: 'error', message: (err as Error).message })
      lines.end()
    })
    return lines
  }

  /** Calls `listener` once the peer has stopped by itself (after a decommission). */
  onStop (listener: (why: 'decommissioned' | 'stopped') => void): void {
    this.stopListeners.push(listener)
  }

  private notifyStopped (why: 'decommissioned' | 'stopped'): void {
    for (const l of this.stopListeners) {
      try { l(why) } catch (err) { this.log.error({ err }, 'stop listener failed') }
    }
  }

  /** A member's name, its id while none is known. */
  private nameOf (peerId: string): string {
    if (peerId === this.peerId) return this.config.name
    const name = this.swim.member(peerId)?.meta.name
    return typeof name === 'string' ? name : peerId
  }

  health (): HealthReport {
    const status = this.detector.status()
    const members = this.swim.members()
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0 }
    for (const m of members) counts[m.state]++
    // DESIGN.md section 3: green when every partition has all its replicas, yellow when every
    // partition has a quorum, red when some partition has none (or this peer is in the minority).
    const spaces = this.partitionAvailability()
    const noQuorum = spaces.some(s => s.unavailable.length > 0)
    const notAll = spaces.some(s => s.quorumOnly > 0)
    // A damaged replica (a WAL file, a segment file) is missing data until repaired (or for good, R = 1).
    const damaged = this.storageDamage()
    // A replica whose disk failed (full, or an I/O error) takes no writes until it heals.
    const failed = this.storageFailures()
    const degraded = notAll || status.unreachable.length > 0 || status.suspect.length > 0 || damaged.some(d => !d.repaired) || failed.length > 0
    return {
      status: !status.majority || noQuorum ? 'red' : degraded ? 'yellow' : 'green',
      peer: this.peerId,
      name: this.config.name,
      version: VERSION,
      addrs: this.addrs(),
      http: this.httpUrl,
      majority: status.majority,
      members: counts,
      localHealthScore: this.swim.localHealthScore(),
      uptimeMs: Date.now() - this.startedAt,
      ready: this.ready,
      // The spaces short of what they asked for, and by how much: what makes health yellow or red.
      spaces: spaces.filter(s => s.allReplicas < s.partitions).map(s => ({
        name: s.name,
        replicas: s.replicas,
        fewestLiveReplicas: s.fewestLive,
        partitionsShort: s.quorumOnly,
        unavailable: s.unavailable
      })),
      damaged,
      failed
    }
  }

  /**
   * This peer's replicas whose disk failed (issue 13): which partition, which error on which file
   * since when, whether it still serves (only with no other replica), how it heals, in plain
   * words. A full disk heals by itself once space is freed (its disk is probed with backoff); an
   * I/O error is rebuilt from the other replicas.
   */
  private storageFailures (): Array<Record<string, unknown> & { kind: 'no-space' | 'io' }> {
    const { engine, replicator } = this.layers
    const waiting = new Map(replicator.diskWaiting().map(w => [`${w.space.uid}\u0000${w.partition}`, w]))
    const givenUp = new Map(replicator.ioRebuildsGivenUp().map(g => [`${g.space.uid}\u0000${g.partition}`, g.rebuilds]))
    return engine.failures().map(f => {
      const inService = f.open && replicator.isReady(f.space, f.partition)
      const wait = waiting.get(`${f.space.uid}\u0000${f.partition}`)
      const rebuilds = givenUp.get(`${f.space.uid}\u0000${f.partition}`)
      const what = `${f.kind === 'no-space' ? 'the disk is full' : 'disk I/O error'} (${f.code}${f.open ? ` in its ${f.operation}` : ' while opening'}${f.path !== undefined ? ` at ${f.path}` : ''})`
      const message = f.kind === 'no-space'
        ? `${inService ? 'serving the rows it holds (no other replica) but taking no writes' : 'out of service (reads go to the other replicas; writes to it fail)'}: ${what}; it heals by itself once space is freed on that disk: a write is tried there with backoff${wait !== undefined ? ` (next in ${Math.round(wait.nextProbeInMs / 1000)} s)` : ''}, then it is reopened and caught up from the other replicas`
        : inService
          ? `serving the rows it holds but taking no writes: ${what}, and no other replica to rebuild it from; check the disk, then restart the peer`
          : rebuilds !== undefined
            ? `out of service (reads go to the other replicas; writes to it fail): ${what}; rebuilt ${rebuilds} times from the other replicas, failing again each time: left out of service, its disk probed with backoff (it comes back by itself once the device takes writes); check the device`
            : `out of service (reads go to the other replicas; writes to it fail): ${what}; it is rebuilt from the other replicas (its directory moved aside) once they are reachable`
      return {
        space: f.space.name,
        partition: f.partition,
        kind: f.kind,
        code: f.code,
        operation: f.operation,
        ...(f.path !== undefined ? { path: f.path } : {}),
        since: new Date(f.at).toISOString(),
        open: f.open,
        inService,
        ...(wait !== undefined ? { probes: wait.probes, nextProbeInMs: wait.nextProbeInMs } : {}),
        ...(rebuilds !== undefined ? { rebuildsGivenUpAfter: rebuilds } : {}),
        error: f.message,
        message
      }
    })
  }

  /**
   * The damage of this peer's replicas (storage keeps each report until an operator deletes it):
   * damaged WAL files (where, how many bytes) and damaged segment files (which file, batch and
   * column, why; where the replica's files went if it was rebuilt), whether repaired, whether the
   * replica serves, and in plain words what it means.
   */
  private storageDamage (): Array<Record<string, unknown> & { repaired: boolean, kind: 'wal' | 'segment' }> {
    const { engine, replicator } = this.layers
    const out: Array<Record<string, unknown> & { repaired: boolean, kind: 'wal' | 'segment' }> = []
    for (const d of engine.damage()) {
      const inService = d.open && replicator.isReady(d.space, d.partition)
      const common = {
        space: d.space.name,
        partition: d.partition,
        kind: d.kind,
        file: d.file,
        report: d.report,
        ...(d.movedTo !== undefined ? { movedTo: d.movedTo } : {}),
        detectedAt: new Date(d.detectedAt).toISOString(),
        repaired: d.repaired,
        ...(d.repairedAt !== undefined ? { repairedAt: new Date(d.repairedAt).toISOString() } : {}),
        inService,
        lost: !d.repaired && inService
      }
      if (d.kind === 'wal') {
        const bytes = d.regions.reduce((n, r) => n + r.bytes, 0)
        const where = `${bytes} bytes at offset${d.regions.length === 1 ? '' : 's'} ${d.regions.map(r => r.offset).join(', ')} of ${d.file}`
        const message = d.repaired
          ? `repaired: ${where} were damaged; this replica has since synced with every other replica`
          : inService
            ? `LOST on this peer: ${where} were unreadable and no other replica could repair them; the original file is kept at ${d.copy}; delete ${d.report} to clear this report`
            : `out of service until repaired: ${where} are unreadable; this replica serves no reads until it has synced with every other replica`
        out.push({ ...common, copy: d.copy, regions: d.regions, bytes, framesRecovered: d.framesRecovered, recordsRecovered: d.recordsRecovered, message })
        continue
      }
      const block = d.batch !== undefined ? ` (batch ${d.batch}${d.column !== undefined ? `, column "${d.column}"` : ''})` : d.offset !== undefined ? ` (at byte ${d.offset})` : ''
      const where = `segment file ${d.file}${block}`
      const aside = d.movedTo !== undefined ? `; the damaged replica's files are kept in ${d.movedTo}` : ''
      const message = d.repaired
        ? `repaired: ${where} was damaged; this replica was rebuilt from the other replicas${aside}`
        : !d.open
          ? `out of service: ${where} is damaged and the partition cannot be opened (${d.error ?? 'see the log'}); it is rebuilt from the other replicas once they are reachable, and with none its files are left as they are`
          : inService
            ? `LOST on this peer: ${where} is unreadable and no other replica can repair it; the rows it can still read are served, reads that meet the damaged block fail; delete ${d.report} to clear this report`
            : `out of service until repaired: ${where} is unreadable; this replica serves no reads until it has been rebuilt from the other replicas${aside}`
      out.push({
        ...common,
        ...(d.batch !== undefined ? { batch: d.batch } : {}),
        ...(d.column !== undefined ? { column: d.column } : {}),
        ...(d.offset !== undefined ? { offset: d.offset } : {}),
        reason: d.reason,
        open: d.open,
        message
      })
    }
    return out
  }

  members (): MemberView[] {
    return this.swim.members().map(toMemberView)
  }

  /**
   * POST /cluster/remove (shoal remove-peer): the operator's way out for partitions whose data is
   * only on a peer that is gone for good (issue 13). Without confirm it changes nothing and lists
   * what would be given up; with it, membership marks the peer left+removed on its behalf, and
   * placement then takes those partitions as fresh (empty) on their new owners.
   */
  removePeer (peerId: string, confirm: boolean): RemovePeerAnswer {
    const m = this.swim.member(peerId)
    if (m === undefined) throw new HttpError(404, 'UNKNOWN_PEER', `peer ${peerId} is not a member this peer knows (see GET /cluster/members); ask a peer that has seen it`)
    const name = typeof m.meta.name === 'string' ? m.meta.name : null
    if (peerId === this.peerId) throw new HttpError(409, 'PEER_NOT_DEAD', 'a peer cannot remove itself; ask another peer to remove this one once it is stopped')
    if (m.state === 'alive' || m.state === 'suspect') {
      throw new HttpError(409, 'PEER_NOT_DEAD', `peer ${name ?? peerId} is ${m.state}: only a dead (or left) peer can be removed; stop it first and wait until the cluster marks it dead`)
    }
    if (m.removed === true) {
      return { peerId, name, state: m.state, removed: true, givesUp: [], message: `peer ${name ?? peerId} was already removed; nothing more is given up` }
    }
    // The minority side of a split may be the one that cannot see a live peer.
    if (!this.detector.status().majority) throw new HttpError(503, 'NOT_MAJORITY', 'this peer is not on the majority side of the cluster; ask a peer that is')
    const givesUp = this.layers.placement.partitionsOnlyOn(peerId).map(x => ({ space: x.space.name, partition: x.partition }))
    const what = givesUp.length === 0
      ? 'no partition has its only ready copy on it'
      : `${givesUp.length} partition(s) have their only ready copies on it; their data is given up and they start over empty`
    if (!confirm) {
      return { peerId, name, state: m.state, removed: false, givesUp, message: `not removed: ${what}; send confirm: true to remove it` }
    }
    const after = this.swim.forceRemove(peerId)
    this.log.warn({ removed: peerId, name, givesUp }, 'peer removed by an operator')
    return { peerId, name, state: after.state, removed: true, givesUp, message: `removed: ${what}` }
  }

  clusterHealth (): unknown {
    const detector = this.detector.status()
    // Peers by name as well as id: an operator knows them by the names they were started with.
    const named = (ids: readonly string[]): Array<{ peerId: string, name: string | null }> =>
      ids.map(peerId => ({ peerId, name: typeof this.swim.member(peerId)?.meta.name === 'string' ? this.swim.member(peerId)!.meta.name as string : null }))
    return {
      peer: this.peerId,
      name: this.config.name,
      partitionDetector: { ...detector, unreachablePeers: named(detector.unreachable), suspectPeers: named(detector.suspect) },
      spaces: this.partitionAvailability(),
      replication: this.layers.replicator.stats(),
      storage: { openFiles: this.layers.engine.openFiles(), maxOpenFiles: this.layers.engine.files.maxOpen, damaged: this.storageDamage(), failed: this.storageFailures() },
      queries: { ...this.layers.queries.stats(), peerLatency: this.layers.queries.health.snapshot(), workerThreads: this.layers.pool.workers, fragmentsRun: { ...this.layers.pool.counters } }
    }
  }

  /** Per space: partitions with every replica reachable, with only a quorum, and with neither. */
  /**
   * Per space, its partitions by how many of the replicas it asked for are live: all of them
   * (ready and reachable), a quorum but fewer than asked (too few peers, one away, one catching
   * up), or fewer than a quorum. A space on fewer peers than its replicas is never "all".
   */
  private partitionAvailability (): Array<{ name: string, replicas: number, partitions: number, allReplicas: number, quorumOnly: number, fewestLive: number, unavailable: number[] }> {
    const { catalog, placement } = this.layers
    return catalog.list().map(space => {
      let full = 0
      let quorum = 0
      let fewestLive = space.replicas
      const unavailable: number[] = []
      for (let p = 0; p < space.partitions; p++) {
        const loc = placement.locate(space, p)
        const reachable = loc.readReplicas.filter(id => this.detector.isReachable(id)).length
        fewestLive = Math.min(fewestLive, reachable)
        if (loc.quorum === 0 || reachable < loc.quorum) unavailable.push(p)
        else if (reachable === loc.readReplicas.length && reachable >= space.replicas) full++
        else quorum++
      }
      return { name: space.name, replicas: space.replicas, partitions: space.partitions, allReplicas: full, quorumOnly: quorum, fewestLive, unavailable }
    })
  }

  async localPartitions (): Promise<unknown> {
    const { engine, replicator } = this.layers
    const rows = await Promise.all(engine.partitions().map(async store => {
      const digest = await store.digest()
      const stats = store.stats()
      return {
        space: store.space.name,
        uid: store.space.uid,
        partition: store.partition,
        ready: replicator.isReady(store.space, store.partition),
        digest: digest.root,
        records: digest.records,
        liveRows: stats.liveRows,
        tombstones: stats.tombstones
      }
    }))
    return rows.sort((a, b) => a.space.localeCompare(b.space) || a.partition - b.partition)
  }

  async metrics (): Promise<{ contentType: string, text: string }> {
    return await this.metricsRegistry.text()
  }

  private registerMetrics (): void {
    const m = this.metricsRegistry
    const queries = this.layers.queries
    m.counterFrom('shoal_query_events_total', 'Queries coordinated by this peer and what happened to them: queries, failed, partial answers, missing partitions, hedges fired and won, partition retries, local-only queries', ['event'], () => {
      const q = queries.stats()
      return [
        [{ event: 'query' }, q.queries], [{ event: 'failed' }, q.failed], [{ event: 'partial_answer' }, q.partialAnswers],
        [{ event: 'missing_partition' }, q.missingPartitions], [{ event: 'hedge_fired' }, q.hedgesFired], [{ event: 'hedge_won' }, q.hedgesWon],
        [{ event: 'retry' }, q.retries], [{ event: 'local_only' }, q.localOnly]
      ]
    })
    m.counterFrom('shoal_query_fragments_total', 'Query fragments this peer ran for coordinators (served, and cancelled before they finished)', ['outcome'], () => {
      const q = queries.stats()
      return [[{ outcome: 'served' }, q.fragmentsServed], [{ outcome: 'cancelled' }, q.fragmentsCancelled]]
    })
    m.counterFrom('shoal_query_fragment_threads_total', 'Query fragments by the thread that ran them: a worker thread, this peer\'s main thread, or taken back from a worker\'s queue by an idle main thread', ['thread'], () => {
      const c = this.layers.pool.counters
      return [[{ thread: 'worker' }, c.onWorkers - c.stolen], [{ thread: 'main' }, c.inline], [{ thread: 'taken_back' }, c.stolen]]
    })
    m.counterFrom('shoal_query_fanout_total', 'Queries by the number of peers they asked (upper bound of the bucket)', ['peers'], () => {
      const f = queries.stats().fanout
      return f.map((n, i) => [{ peers: i < FANOUT_LABELS.length ? FANOUT_LABELS[i]! : 'more' }, n])
    })
    m.gaugeFrom('shoal_query_peer_latency_seconds', 'Fragment latency per peer as this coordinator measured it (EWMA)', ['peer', 'peer_id'], () => queries.health.snapshot().map(h => [this.peerLabels(h.peer), h.ewmaMs / 1000]))
    m.gaugeFrom('shoal_members', 'Members of the cluster by SWIM state, as this peer sees them', ['state'], () => {
      const counts: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 }
      for (const member of this.swim.members()) counts[member.state] = (counts[member.state] ?? 0) + 1
      return Object.entries(counts).map(([state, n]) => [{ state }, n])
    })
    m.gaugeFrom('shoal_majority', '1 when this peer is in the majority of the last stable cluster', [], () => [[{}, this.detector.status().majority ? 1 : 0]])
    m.gaugeFrom('shoal_local_health_score', 'Lifeguard local health multiplier score (0 = healthy)', [], () => [[{}, this.swim.localHealthScore()]])
    m.counterFrom('shoal_swim_events_total', 'SWIM protocol events: probes, probe failures, indirect probes, suspicions raised and refuted, deaths declared, messages dropped, reconnect knocks on dead members, dead members told of their death, push-pulls after a refutation', ['event'], () => {
      const s = this.swim.stats()
      return [
        [{ event: 'probe' }, s.probes],
        [{ event: 'probe_failure' }, s.probeFailures],
        [{ event: 'indirect_probe' }, s.indirectProbes],
        [{ event: 'suspicion_raised' }, s.suspicionsRaised],
        [{ event: 'suspicion_refuted' }, s.suspicionsRefuted],
        [{ event: 'death_declared' }, s.deathsDeclared],
        [{ event: 'message_dropped' }, s.messagesDropped],
        [{ event: 'update_too_large' }, s.updatesTooLarge],
        [{ event: 'incarnation_jump_refused' }, s.incarnationJumpsRefused],
        [{ event: 'reconnect' }, s.reconnects],
        [{ event: 'dead_notice' }, s.deadNotices],
        [{ event: 'refute_pull' }, s.refutePulls]
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
    const repl = (): ReturnType<Replicator['stats']> => this.layers.replicator.stats()
    m.counterFrom('shoal_hints_total', 'Hinted handoff: hints written for unreachable replicas, delivered, dropped (expired, store full, or hint file not written)', ['event'], () => {
      const h = repl().hints
      return [[{ event: 'written' }, h.written], [{ event: 'delivered' }, h.delivered], [{ event: 'dropped' }, h.dropped]]
    })
    m.gaugeFrom('shoal_hints_pending', 'Hints held for replicas that have not taken them yet', [], () => [[{}, repl().hints.pending]])
    m.gaugeFrom('shoal_hints_disk_bytes', 'Bytes of the hint files (bounded by replication.hintMaxBytes)', [], () => [[{}, repl().hints.diskBytes]])
    m.counterFrom('shoal_read_repair_records_total', 'Records repaired on stale replicas by QUORUM/ALL reads', [], () => [[{}, repl().readRepair.recordsRepaired]])
    m.counterFrom('shoal_anti_entropy_total', 'Anti-entropy: rounds, digest buckets found differing (the differences found) and repaired, records pulled and pushed, syncs failed', ['event'], () => {
      const a = repl().antiEntropy
      return [[{ event: 'round' }, a.rounds], [{ event: 'bucket_differing' }, a.bucketsDiffering], [{ event: 'bucket_repaired' }, a.bucketsRepaired], [{ event: 'record_pulled' }, a.recordsPulled], [{ event: 'record_pushed' }, a.recordsPushed], [{ event: 'failure' }, a.failures]]
    })
    m.counterFrom('shoal_tombstone_repair_total', 'Tombstone safety: repairs completed with every other replica (each lets older tombstones be purged), replicas found stale (away past the tombstone grace) and rebuilt, old rows a stale replica held back', ['event'], () => {
      const r = repl().repair
      return [[{ event: 'full_repair' }, r.repairs], [{ event: 'stale_replica' }, r.staleReplicas], [{ event: 'stale_rebuilt' }, r.staleRebuilt], [{ event: 'record_withheld' }, r.recordsWithheld]]
    })
    m.gaugeFrom('shoal_partitions', 'Partition replicas on this peer: ready (serving reads) and held', ['kind'], () => {
      const r = repl()
      return [[{ kind: 'ready' }, r.readyPartitions], [{ kind: 'held' }, r.heldPartitions]]
    })
    m.gaugeFrom('shoal_storage_memtable_bytes', 'Bytes in memtables not yet written to segments', [], () => [[{}, this.layers.engine.memtableBytes()]])
    m.gaugeFrom('shoal_storage_memtable_heap_bytes', 'Estimated heap of the active memtables (WAL bytes + 170 a record): what storage.memtableBudgetBytes bounds', [], () => [[{}, this.layers.engine.memtableHeapBytes()]])
    m.gaugeFrom('shoal_storage_open_files', 'Files storage holds open now (WAL handles and files open for a moment), at most storage maxOpenFiles', [], () => [[{}, this.layers.engine.openFiles()]])
    m.gaugeFrom('shoal_storage_damaged_wal_files', 'Damaged WAL files of this peer\'s replicas still reported, repaired from other replicas or not', ['state'], () => {
      const d = this.storageDamage().filter(x => x.kind === 'wal')
      return [[{ state: 'unrepaired' }, d.filter(x => !x.repaired).length], [{ state: 'repaired' }, d.filter(x => x.repaired).length]]
    })
    m.gaugeFrom('shoal_storage_damaged_segment_files', 'Damaged segment files of this peer\'s replicas still reported, repaired (the replica rebuilt from other replicas) or not', ['state'], () => {
      const d = this.storageDamage().filter(x => x.kind === 'segment')
      return [[{ state: 'unrepaired' }, d.filter(x => !x.repaired).length], [{ state: 'repaired' }, d.filter(x => x.repaired).length]]
    })
    m.gaugeFrom('shoal_storage_failed_partitions', 'This peer\'s partition replicas stopped by a disk failure: no_space (a full disk; heals by itself once space is freed) or io_error (rebuilt from the other replicas)', ['reason'], () => {
      const f = this.layers.engine.failures()
      return [[{ reason: 'no_space' }, f.filter(x => x.kind === 'no-space').length], [{ reason: 'io_error' }, f.filter(x => x.kind === 'io').length]]
    })
    m.counterFrom('shoal_clock_skew_refusals_total', 'Remote HLC timestamps refused for being too far ahead of this clock', [], () => [[{}, this.layers.hlc.skew.count]])
    m.gaugeFrom('shoal_rpc_open_streams', 'Long-lived RPC streams open (about one per connected peer)', [], () => [[{}, this.transport.openStreams()]])
    m.counterFrom('shoal_storage_cache_events_total', 'Block cache lookups that hit and missed, blocks evicted to stay within storage.cacheMiB, loads not kept because the blocks they would push out were asked for as often (admission), and loads decoded into the recycled memory of evicted blocks', ['event'], () => {
      const c = this.layers.engine.cache.stats()
      return [[{ event: 'hit' }, c.hits], [{ event: 'miss' }, c.misses], [{ event: 'eviction' }, c.evictions], [{ event: 'rejected' }, c.rejected], [{ event: 'recycled' }, c.reused]]
    })
    m.counterFrom('shoal_storage_cache_loaded_bytes_total', 'Bytes of blocks loaded from segment files on cache misses (read, CRC-checked, decoded), kept in the cache or not', [], () => [[{}, this.layers.engine.cache.stats().loadedBytes]])
    m.counterFrom('shoal_storage_page_read_bytes_total', 'Bytes of 4 KiB segment pages point gets read past the block cache (through the OS page cache)', [], () => [[{}, this.layers.engine.cache.stats().pageBytes]])
    m.gaugeFrom('shoal_build_info', 'This peer\'s build: always 1, with its version and Node.js version as labels', ['version', 'node'], () => [[{ version: VERSION, node: process.version }, 1]])
    m.gaugeFrom('shoal_storage_compactions', 'Compactions running and waiting for a slot (at most storage.maxConcurrentCompactions run at once)', ['state'], () => {
      const c = this.layers.engine.compactions
      return [[{ state: 'running' }, c.active], [{ state: 'waiting' }, c.waiting]]
    })
    m.gaugeFrom('shoal_storage_cache_bytes', 'Bytes the block cache holds, its limit (storage.cacheMiB), and the freed column memory it keeps for the next loads (at most half the limit, on top)', ['kind'], () => {
      const c = this.layers.engine.cache.stats()
      return [[{ kind: 'held' }, c.bytes], [{ kind: 'limit' }, c.maxBytes], [{ kind: 'free' }, c.freeBytes]]
    })
    m.gaugeFrom('shoal_http_connections', 'HTTP connections open (capped by maxHttpConnections)', [], () => [[{}, this.http.openConnections]])
    m.counterFrom('shoal_http_connections_closed_at_cap_total', 'HTTP connections closed at the cap: idle ones shed to make room, new ones refused while every open one was busy', ['reason'], () => [
      [{ reason: 'shed' }, this.http.connectionCounters.shed], [{ reason: 'refused' }, this.http.connectionCounters.refused]
    ])
    // Latency histograms, per-space storage, hints per target (src/peer/metrics.ts).
    registerOperationalMetrics(m, {
      http: this.http,
      data: this.data,
      queries,
      storage: this.layers.engine,
      hints: this.layers.replicator.hints,
      peerLabels: id => this.peerLabels(id)
    })
  }

  /** A peer as metric labels: its name (its id while none is known) and its id. */
  private peerLabels (peerId: string): { peer: string, peer_id: string } {
    const name = peerId === this.peerId ? this.config.name : this.swim.member(peerId)?.meta.name
    return { peer: typeof name === 'string' ? name : peerId, peer_id: peerId }
  }

  private startLagMonitor (): void {
    // Lifeguard: a peer that is itself slow must stretch its own timeouts rather than accuse
    // others; event-loop lag is the most direct signal of that in Node.
    const monitor = this.lagMonitor
    if (monitor === undefined) return
    // Enabled since Peer.create (metricsAndLagMonitor): what start-up took is not lag.
    monitor.reset()
    this.lagTimer = setInterval(() => {
      const lagMs = monitor.max / 1e6
      monitor.reset()
      this.swim.noteEventLoopLag(lagMs)
    }, LAG_SAMPLE_INTERVAL_MS)
    this.lagTimer.unref()
  }
}

/**
 * The metrics registry and the lag monitor's histogram, made together. Each samples the event
 * loop with a libuv timer of its own (prom-client's for shoal_nodejs_eventloop_lag_*, reset at
 * every scrape; the lag monitor's for the Local Health Multiplier, reset every second). Started
 * in one synchronous block with one resolution, the two timers fall due in the same turn of the
 * loop and stay so (libuv re-arms a repeating timer from the loop's time, the same for both), so
 * an idle peer wakes 50 times a second for both. prom-client's default resolution, 10 ms, beside
 * ours woke it 135 times a second: about 0.4 % of a core of an idle peer's 3 %
 * (scripts/bench/idle-cpu.ts).
 */
function metricsAndLagMonitor (): { metrics: PeerMetrics, lagMonitor: IntervalHistogram } {
  const metrics = new PeerMetrics({ eventLoopResolutionMs: LAG_RESOLUTION_MS })
  const lagMonitor = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS })
  lagMonitor.enable()
  return { metrics, lagMonitor }
}

function toMemberView (m: MemberInfo): MemberView {
  return {
    peerId: m.id,
    name: typeof m.meta.name === 'string' ? m.meta.name : null,
    addrs: [...m.addrs],
    http: typeof m.meta.http === 'string' ? m.meta.http : null,
    version: typeof m.meta.version === 'string' ? m.meta.version : null,
    state: m.state,
    incarnation: m.incarnation,
    ...(m.removed === true ? { removed: true as const } : {}),
    ...(m.meta[LEAVING_META_KEY] === true && m.state !== 'left' && m.state !== 'dead' ? { leaving: true as const } : {})
  }
}

/** The config file may tune any numeric option of a layer; a misspelt one must not pass silently. */
function checkOptions (section: string, overrides: Record<string, number>, defaults: object): Record<string, number> {
  const tunable = Object.keys(defaults).filter(k => typeof (defaults as Record<string, unknown>)[k] === 'number')
  for (const key of Object.keys(overrides)) {
    if (!tunable.includes(key)) throw new Error(`unknown option ${section}.${key}; known: ${tunable.join(', ')}`)
  }
  return overrides
}

function peerIdOf (addr: string): { id?: string } {
  const m = /\/p2p\/([^/]+)$/.exec(addr)
  return m !== null ? { id: m[1]! } : {}
}

/**
 * The HTTP API's TLS material and bearer tokens, read once at start from the files the config
 * names (--http-tls-cert/--http-tls-key, --http-token-file). An unreadable file or a bad token
 * line stops the start with an error naming the file, rather than a peer left open or unreachable.
 */
function readHttpGuard (config: PeerConfig): { tls?: { cert: Buffer, key: Buffer }, tokens?: TokenEntry[] } {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path)
    } catch (err) {
      throw new Error(`${what} ${path} cannot be read: ${(err as Error).message}`)
    }
  }
  const out: { tls?: { cert: Buffer, key: Buffer }, tokens?: TokenEntry[] } = {}
  if (config.httpTls !== undefined) out.tls = { cert: read(config.httpTls.certFile, 'httpTlsCert'), key: read(config.httpTls.keyFile, 'httpTlsKey') }
  if (config.httpTokenFile !== undefined) {
    try {
      out.tokens = parseTokenFile(read(config.httpTokenFile, 'httpTokenFile').toString('utf8'))
    } catch (err) {
      if (err instanceof TokenFileError) throw new Error(`httpTokenFile ${config.httpTokenFile}: ${err.message}`)
      throw err
    }
  }
  return out
}
