/**
 * config: how a peer's settings are gathered. Three sources, the later winning: a JSON config file
 * (`--config FILE`), environment variables (`SHOAL_*`), command-line flags. Every value is
 * validated here, once, with an error that names the setting and its source, so the rest of the
 * peer can trust its PeerConfig.
 *
 * ```ts
 * const config = resolveConfig({ flags: { http: '127.0.0.1:8000' }, env: process.env })
 * ```
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { isLoopbackHost } from '../http/guard.js'

/** Fully resolved settings of one peer. */
export interface PeerConfig {
  /** Directory for the peer key and (later) data. Default `./shoal-data`. */
  dataDir: string
  /** libp2p listen multiaddrs. Default `/ip4/127.0.0.1/tcp/7946`. */
  listen: string[]
  /** Host and port of the HTTP API. Default `127.0.0.1:7947` (loopback unless told otherwise). */
  http: { host: string, port: number }
  /** Multiaddrs of peers to join through; empty for the first peer of a cluster. */
  bootstrap: string[]
  /** Path of the swarm key file (libp2p pnet format); none means an open cluster. */
  swarmKeyFile?: string
  /** Human-readable name shown in `shoal members`. Default: `shoal-<http port>`. */
  name: string
  /** HTTPS for the API (`--http-tls-cert`, `--http-tls-key`): PEM files, both or neither. */
  httpTls?: { certFile: string, keyFile: string }
  /** Bearer tokens for the API (`--http-token-file`; src/http/guard.ts for the format). */
  httpTokenFile?: string
  /**
   * `--http-insecure`: lets the API listen beyond loopback without a token file. Without it (and
   * without tokens) a non-loopback `http` address is refused at start: anyone who can reach the
   * port could read, write and drop every space.
   */
  httpInsecure: boolean
  /** Enables POST /admin/faults. Off unless asked for: it lets any local caller cut the peer off. */
  enableFaultInjection: boolean
  /** pino level. Default `info`. */
  logLevel: LogLevel
  /** Overrides of membership timing options (see docs/operations.md), e.g. `{ probeIntervalMs: 200 }`. */
  membership: Record<string, number>
  /** Overrides of replication options (hints, anti-entropy, catch-up), e.g. `{ antiEntropyIntervalMs: 10000 }`. */
  replication: Record<string, number>
  /** Overrides of query options (deadlines, memory budget, fan-out, hedging), e.g. `{ memoryBudgetMb: 1024 }`. */
  query: Record<string, number>
  /** How long SIGTERM may take to leave gracefully before the peer stops anyway. Default 5000 ms. */
  drainTimeoutMs: number
  /**
   * How long a leaving peer (SIGTERM, or `shoal decommission` without --timeout-ms) waits for the
   * next owners of its partitions to catch up before it leaves anyway (SIGTERM) or gives up the
   * decommission (the command). ms, default 60000: a partition of a few GiB streams in that time
   * on a LAN; 0 hands nothing off (the leave of earlier versions).
   */
  decommissionTimeoutMs: number
  /**
   * Most HTTP connections open at once. Default: a share of the open-file limit (see
   * src/peer/file-budget.ts), at most 1,024.
   */
  maxHttpConnections?: number
  /**
   * Most libp2p connections to other peers at once (`--max-peer-connections`,
   * SHOAL_MAX_PEER_CONNECTIONS, `maxPeerConnections`). Default: half of what the open-file limit
   * leaves (src/peer/file-budget.ts), from 64 to 16,384. Membership probes every member, so it
   * must exceed the member count: the peer warns when the cluster outgrows it.
   */
  maxPeerConnections?: number
  /**
   * The V8 heap limit asked for (`--heap-mib`, SHOAL_HEAP_MIB; flag and environment only: node
   * takes it at start-up from bin/shoal, before any file is read). The peer checks it is in force
   * and enough for its settings (src/peer/heap.ts).
   */
  heapMiB?: number
  /**
   * How much V8 may grow its heap between collections once the peer is ready: percent of what is
   * live (`--heap-growth-percent`, SHOAL_HEAP_GROWTH_PERCENT, `heapGrowthPercent` in a file;
   * default 50; 0 leaves V8 its own, up to 4x with a large limit). See src/peer/heap.ts.
   */
  heapGrowthPercent: number
  /**
   * Overrides of storage options, e.g. `{ maxOpenFiles: 128, cacheMiB: 512 }`. `cacheMiB` also
   * comes from `--cache-mib` and SHOAL_STORAGE_CACHE_MIB, which win over the file.
   */
  storage: Record<string, number>
  /**
   * Overrides of placement options, e.g. `{ deadOwnerTimeoutMs: 600000 }` (how long a dead member
   * keeps owning its partitions before they move to live peers).
   */
  placement: Record<string, number>
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']

export const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/7946'
/** Default of PeerConfig.decommissionTimeoutMs: 60 s. */
export const DEFAULT_DECOMMISSION_TIMEOUT_MS = 60_000
/** Longest decommission wait a setting or a request may ask for: a day. */
export const MAX_DECOMMISSION_TIMEOUT_MS = 86_400_000
export const DEFAULT_HTTP = '127.0.0.1:7947'
/** Default of PeerConfig.heapGrowthPercent. */
export const DEFAULT_HEAP_GROWTH_PERCENT = 50

/** A setting that cannot be used, with where it came from. */
export class ConfigError extends Error {
  override name = 'ConfigError'
  constructor (readonly setting: string, readonly source: string, message: string) {
    super(`${setting} (from ${source}): ${message}`)
  }
}

/** Raw settings as any one source gives them; every field optional. */
export interface RawSettings {
  dataDir?: unknown
  listen?: unknown
  http?: unknown
  bootstrap?: unknown
  swarmKey?: unknown
  name?: unknown
  enableFaultInjection?: unknown
  httpTlsCert?: unknown
  httpTlsKey?: unknown
  httpTokenFile?: unknown
  httpInsecure?: unknown
  logLevel?: unknown
  membership?: unknown
  replication?: unknown
  query?: unknown
  drainTimeoutMs?: unknown
  decommissionTimeoutMs?: unknown
  maxHttpConnections?: unknown
  maxPeerConnections?: unknown
  storage?: unknown
  placement?: unknown
  /** Flag and environment only; in a config file it is `storage.cacheMiB`. */
  cacheMiB?: unknown
  /** Flag and environment only (see PeerConfig.heapMiB). */
  heapMiB?: unknown
  heapGrowthPercent?: unknown
}

const KNOWN_KEYS = new Set<keyof RawSettings>(['dataDir', 'listen', 'http', 'bootstrap', 'swarmKey', 'name', 'enableFaultInjection', 'httpTlsCert', 'httpTlsKey', 'httpTokenFile', 'httpInsecure', 'logLevel', 'membership', 'replication', 'query', 'storage', 'placement', 'drainTimeoutMs', 'decommissionTimeoutMs', 'maxHttpConnections', 'maxPeerConnections', 'heapGrowthPercent'])

/** Environment variable → setting. Lists are comma-separated. */
const ENV_VARS: Record<string, keyof RawSettings> = {
  SHOAL_DATA_DIR: 'dataDir',
  SHOAL_LISTEN: 'listen',
  SHOAL_HTTP: 'http',
  SHOAL_BOOTSTRAP: 'bootstrap',
  SHOAL_SWARM_KEY: 'swarmKey',
  SHOAL_NAME: 'name',
  SHOAL_ENABLE_FAULT_INJECTION: 'enableFaultInjection',
  SHOAL_HTTP_TLS_CERT: 'httpTlsCert',
  SHOAL_HTTP_TLS_KEY: 'httpTlsKey',
  SHOAL_HTTP_TOKEN_FILE: 'httpTokenFile',
  SHOAL_HTTP_INSECURE: 'httpInsecure',
  SHOAL_LOG_LEVEL: 'logLevel',
  SHOAL_DRAIN_TIMEOUT_MS: 'drainTimeoutMs',
  SHOAL_DECOMMISSION_TIMEOUT_MS: 'decommissionTimeoutMs',
  SHOAL_MAX_HTTP_CONNECTIONS: 'maxHttpConnections',
  SHOAL_MAX_PEER_CONNECTIONS: 'maxPeerConnections',
  SHOAL_STORAGE_CACHE_MIB: 'cacheMiB',
  SHOAL_HEAP_MIB: 'heapMiB',
  SHOAL_HEAP_GROWTH_PERCENT: 'heapGrowthPercent'
}

export interface ResolveInput {
  flags: RawSettings
  env: NodeJS.ProcessEnv | Record<string, string | undefined>
  /** Path of a JSON config file; its keys are RawSettings' names. */
  configFile?: string
}

export function resolveConfig (input: ResolveInput): PeerConfig {
  const layers: Array<{ source: string, settings: RawSettings }> = []
  if (input.configFile !== undefined) layers.push({ source: `config file ${input.configFile}`, settings: readConfigFile(input.configFile) })
  layers.push({ source: 'environment', settings: fromEnv(input.env) })
  layers.push({ source: 'flags', settings: input.flags })

  // Each setting remembers the source it came from, so an error can name it.
  const pick = (key: keyof RawSettings): { value: unknown, source: string } | undefined => {
    let found: { value: unknown, source: string } | undefined
    for (const layer of layers) {
      const value = layer.settings[key]
      if (value !== undefined && !(Array.isArray(value) && value.length === 0 && layer.source === 'flags')) found = { value, source: layer.source }
    }
    return found
  }

  const dataDir = resolve(asString(pick('dataDir'), 'dataDir') ?? './shoal-data')
  const listen = asList(pick('listen'), 'listen') ?? [DEFAULT_LISTEN]
  for (const addr of listen) checkMultiaddr(addr, 'listen', pick('listen')?.source ?? 'default')
  const httpSetting = pick('http')
  const http = parseHostPort(asString(httpSetting, 'http') ?? DEFAULT_HTTP, httpSetting?.source ?? 'default')
  const bootstrap = asList(pick('bootstrap'), 'bootstrap') ?? []
  for (const addr of bootstrap) checkMultiaddr(addr, 'bootstrap', pick('bootstrap')?.source ?? 'default')
  const swarmKey = asString(pick('swarmKey'), 'swarmKey')
  const name = asString(pick('name'), 'name') ?? `shoal-${http.port}`
  if (name.length === 0 || name.length > 64) throw new ConfigError('name', pick('name')?.source ?? 'default', 'must be 1 to 64 characters')
  const enableFaultInjection = asBool(pick('enableFaultInjection'), 'enableFaultInjection') ?? false
  const certSetting = pick('httpTlsCert')
  const keySetting = pick('httpTlsKey')
  const tlsCert = asString(certSetting, 'httpTlsCert')
  const tlsKey = asString(keySetting, 'httpTlsKey')
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    const [missing, given] = tlsCert === undefined ? ['httpTlsCert', keySetting!] : ['httpTlsKey', certSetting!]
    throw new ConfigError(missing as keyof RawSettings & string, given.source, 'HTTPS needs both a certificate (--http-tls-cert) and its key (--http-tls-key)')
  }
  const tokenFile = asString(pick('httpTokenFile'), 'httpTokenFile')
  const httpInsecure = asBool(pick('httpInsecure'), 'httpInsecure') ?? false
  if (tokenFile === undefined && !httpInsecure && !isLoopbackHost(http.host)) {
    throw new ConfigError('http', httpSetting?.source ?? 'default', `listens on ${http.host}, beyond loopback, with no bearer tokens: anyone who reaches the port could read, write and drop every space. Give --http-token-file (SHOAL_HTTP_TOKEN_FILE), or --http-insecure (SHOAL_HTTP_INSECURE) on a network you trust`)
  }
  const logLevelSetting = pick('logLevel')
  const logLevel = (asString(logLevelSetting, 'logLevel') ?? 'info') as LogLevel
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('logLevel', logLevelSetting?.source ?? 'default', `must be one of ${LOG_LEVELS.join(', ')}`)
  const membership = asNumberMap(pick('membership'), 'membership') ?? {}
  const replication = asNumberMap(pick('replication'), 'replication') ?? {}
  const query = asNumberMap(pick('query'), 'query') ?? {}
  const drainTimeoutMs = asNumber(pick('drainTimeoutMs'), 'drainTimeoutMs') ?? 5000
  const decommissionSetting = pick('decommissionTimeoutMs')
  const decommissionTimeoutMs = asNumber(decommissionSetting, 'decommissionTimeoutMs') ?? DEFAULT_DECOMMISSION_TIMEOUT_MS
  if (!Number.isInteger(decommissionTimeoutMs) || decommissionTimeoutMs > MAX_DECOMMISSION_TIMEOUT_MS) {
    throw new ConfigError('decommissionTimeoutMs', decommissionSetting!.source, `must be an integer from 0 to ${MAX_DECOMMISSION_TIMEOUT_MS} (ms)`)
  }
  const storage = asNumberMap(pick('storage'), 'storage') ?? {}
  const placement = asNumberMap(pick('placement'), 'placement') ?? {}
  const cacheSetting = pick('cacheMiB')
  const cacheMiB = asNumber(cacheSetting, 'cacheMiB')
  if (cacheMiB !== undefined) {
    if (!Number.isInteger(cacheMiB) || cacheMiB < 1) throw new ConfigError('cacheMiB', cacheSetting!.source, 'must be a positive integer (MiB)')
    storage.cacheMiB = cacheMiB
  }
  const heapSetting = pick('heapMiB')
  let heapMiB: number | undefined
  try {
    heapMiB = parseHeapMiB(heapSetting?.value)
  } catch (err) {
    throw new ConfigError('heapMiB', heapSetting!.source, (err as Error).message)
  }
  const growthSetting = pick('heapGrowthPercent')
  const heapGrowthPercent = asNumber(growthSetting, 'heapGrowthPercent') ?? DEFAULT_HEAP_GROWTH_PERCENT
  if (!Number.isInteger(heapGrowthPercent) || heapGrowthPercent < 0 || heapGrowthPercent > 1000) {
    throw new ConfigError('heapGrowthPercent', growthSetting!.source, 'must be an integer from 0 to 1000 (percent of the live heap; 0: V8\'s own growth)')
  }
  const httpCapSetting = pick('maxHttpConnections')
  const maxHttpConnections = asNumber(httpCapSetting, 'maxHttpConnections')
  if (maxHttpConnections !== undefined && (!Number.isInteger(maxHttpConnections) || maxHttpConnections < 1)) {
    throw new ConfigError('maxHttpConnections', httpCapSetting!.source, 'must be a positive integer')
  }
  const peerCapSetting = pick('maxPeerConnections')
  const maxPeerConnections = asNumber(peerCapSetting, 'maxPeerConnections')
  if (maxPeerConnections !== undefined && (!Number.isInteger(maxPeerConnections) || maxPeerConnections < 1)) {
    throw new ConfigError('maxPeerConnections', peerCapSetting!.source, 'must be a positive integer (libp2p connections to other peers)')
  }

  return {
    dataDir,
    listen,
    http,
    bootstrap,
    ...(swarmKey !== undefined ? { swarmKeyFile: resolve(swarmKey) } : {}),
    name,
    enableFaultInjection,
    ...(tlsCert !== undefined && tlsKey !== undefined ? { httpTls: { certFile: resolve(tlsCert), keyFile: resolve(tlsKey) } } : {}),
    ...(tokenFile !== undefined ? { httpTokenFile: resolve(tokenFile) } : {}),
    httpInsecure,
    logLevel,
    membership,
    replication,
    query,
    storage,
    placement,
    drainTimeoutMs,
    decommissionTimeoutMs,
    heapGrowthPercent,
    ...(maxHttpConnections !== undefined ? { maxHttpConnections } : {}),
    ...(maxPeerConnections !== undefined ? { maxPeerConnections } : {}),
    ...(heapMiB !== undefined ? { heapMiB } : {})
  }
}

/** --heap-mib / SHOAL_HEAP_MIB: an integer of MiB from 64, or undefined when not given. */
function parseHeapMiB (value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined
  const n = typeof value === 'number' ? value : Number(String(value))
  if (!Number.isInteger(n) || n < 64 || n > 1_048_576) throw new RangeError(`must be an integer of MiB from 64 to 1048576, got ${JSON.stringify(value)}`)
  return n
}

function readConfigFile (path: string): RawSettings {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError('config', 'flags', `cannot read ${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('config', 'flags', `${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('config', 'flags', `${path} must hold a JSON object`)
  }
  for (const key of Object.keys(parsed)) {
    if (!KNOWN_KEYS.has(key as keyof RawSettings)) {
      throw new ConfigError(key, `config file ${path}`, `unknown setting; known: ${[...KNOWN_KEYS].join(', ')}`)
    }
  }
  return parsed as RawSettings
}

function fromEnv (env: ResolveInput['env']): RawSettings {
  const settings: Record<string, unknown> = {}
  for (const [variable, key] of Object.entries(ENV_VARS)) {
    const value = env[variable]
    if (value === undefined || value === '') continue
    settings[key] = key === 'listen' || key === 'bootstrap' ? value.split(',').map(s => s.trim()).filter(s => s !== '') : value
  }
  return settings as RawSettings
}

type Picked = { value: unknown, source: string } | undefined

function asString (picked: Picked, key: string): string | undefined {
  if (picked === undefined) return undefined
  if (typeof picked.value !== 'string') throw new ConfigError(key, picked.source, 'must be a string')
  return picked.value
}

function asList (picked: Picked, key: string): string[] | undefined {
  if (picked === undefined) return undefined
  const value = typeof picked.value === 'string' ? [picked.value] : picked.value
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) throw new ConfigError(key, picked.source, 'must be a list of strings')
  if (value.length > 64) throw new ConfigError(key, picked.source, 'at most 64 entries')
  return value
}

function asBool (picked: Picked, key: string): boolean | undefined {
  if (picked === undefined) return undefined
  const v = picked.value
  if (typeof v === 'boolean') return v
  if (v === 'true' || v === '1') return true
  if (v === 'false' || v === '0') return false
  throw new ConfigError(key, picked.source, 'must be true or false')
}

function asNumber (picked: Picked, key: string): number | undefined {
  if (picked === undefined) return undefined
  const n = typeof picked.value === 'string' ? Number(picked.value) : picked.value
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new ConfigError(key, picked.source, 'must be a non-negative number')
  return n
}

function asNumberMap (picked: Picked, key: string): Record<string, number> | undefined {
  if (picked === undefined) return undefined
  const v = picked.value
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(key, picked.source, 'must be an object of numbers')
  const out: Record<string, number> = Object.create(null)
  for (const [k, n] of Object.entries(v)) {
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new ConfigError(`${key}.${k}`, picked.source, 'must be a non-negative number')
    out[k] = n
  }
  return out
}

export function parseHostPort (text: string, source: string): { host: string, port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  if (m === null) throw new ConfigError('http', source, `expected HOST:PORT, got '${text}'`)
  const port = Number(m[2])
  if (port > 65535) throw new ConfigError('http', source, `port ${port} is out of range`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

function checkMultiaddr (addr: string, key: string, source: string): void {
  // Full parsing happens in net/; this catches the common slip of passing HOST:PORT.
  if (!addr.startsWith('/')) throw new ConfigError(key, source, `'${addr}' is not a multiaddr (expected e.g. /ip4/127.0.0.1/tcp/7946)`)
}
