import { pino } from 'pino'
import { ConfigError, resolveConfig, type RawSettings } from '../config/index.js'
import { Peer, PeerStartError } from '../peer/index.js'
import { CliError } from './errors.js'
import { PROGRAM, VERSION } from '../runtime/index.js'

/**
 * `shoal start`: resolve settings, start the peer; on SIGTERM/SIGINT decommission (hand the
 * partitions off, bounded by decommissionTimeoutMs), leave and exit 0; exit 0 as well once a
 * `shoal decommission` of this peer has left and stopped it.
 */
export async function runStart (opts: Record<string, unknown>): Promise<void> {
  const flags: RawSettings = {
    dataDir: opts.dataDir,
    listen: opts.listen,
    http: opts.http,
    bootstrap: opts.bootstrap,
    swarmKey: opts.swarmKey,
    name: opts.name,
    enableFaultInjection: opts.enableFaultInjection,
    httpTlsCert: opts.httpTlsCert,
    httpTlsKey: opts.httpTlsKey,
    httpTokenFile: opts.httpTokenFile,
    httpInsecure: opts.httpInsecure,
    logLevel: opts.logLevel,
    cacheMiB: opts.cacheMib,
    heapMiB: opts.heapMib,
    heapGrowthPercent: opts.heapGrowthPercent,
    maxPeerConnections: opts.maxPeerConnections
  }
  let config
  try {
    config = resolveConfig({ flags, env: process.env, ...(typeof opts.config === 'string' ? { configFile: opts.config } : {}) })
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2)
    throw err
  }

  const root = pino({ level: config.logLevel, base: { name: config.name } })
  // Every line names the layer it comes from (docs/operations.md): these are the peer's own.
  const log = root.child({ component: 'peer' })
  let peer: Peer
  try {
    peer = await Peer.create(config, root)
    await peer.start()
  } catch (err) {
    if (err instanceof PeerStartError) throw new CliError(err.message, 1, { cause: err })
    throw err
  }
  log.info({ peer: peer.peerId, version: VERSION, program: PROGRAM, addrs: peer.addrs(), http: peer.httpUrl, dataDir: config.dataDir }, 'peer started')
  const semiSpace = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some(a => a.startsWith('--max-semi-space-size'))
  if (!semiSpace || (process.platform === 'linux' && process.env.MALLOC_MMAP_THRESHOLD_ === undefined)) {
    log.info({ semiSpace, mallocMmapThreshold: process.env.MALLOC_MMAP_THRESHOLD_ ?? null }, 'peer started without the launcher\'s settings (slower ingest, more resident memory): run it as bin/shoal start (npm start, npx shoal start); docs/operations.md')
  }

  let stopping = false
  peer.onStop(why => {
    if (why !== 'decommissioned' || stopping) return
    log.info({}, 'peer stopped: decommissioned')
    process.exit(0)
  })
  const shutdown = (signal: string): void => {
    if (stopping) {
      // A second signal means "now": the operator does not want to wait for the drain.
      log.warn({ signal }, 'second signal, exiting without draining')
      process.exit(1)
    }
    stopping = true
    log.info({ signal, decommissionTimeoutMs: config.decommissionTimeoutMs }, 'draining: handing partitions off to their next owners, then leaving the cluster')
    peer.stop({ leave: true }).then(() => {
      log.info({}, 'peer stopped')
      process.exit(0)
    }, (err: unknown) => {
      log.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
}
