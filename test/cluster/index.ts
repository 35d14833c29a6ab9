/**
 * test/cluster: real `shoal start` processes for integration and partition tests. By default
 * (`net: 'loopback'`) every peer runs on 127.0.0.1 on ports chosen free at run time. With
 * `net: 'netns'` (root; test/net) every peer runs in a network namespace of its own, on its own
 * address (10.x.y.n, ports 7946 and 7947: each namespace has its own ports), behind a bridge the
 * test process reaches them through, so that `cluster.network` can cut and degrade links with
 * the kernel's packet filter, outside the peers. Every peer has its own data dir and log file,
 * and `stopAll()` kills whatever is left (and tears the namespaces down), so a failed test does
 * not leak processes.
 *
 * ```ts
 * const cluster = await TestCluster.create({ membership: FAST_MEMBERSHIP })
 * const a = await cluster.startPeer('a')
 * const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
 * await cluster.stopAll()
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { NetnsNetwork } from '../net/index.js'

const here = dirname(fileURLToPath(import.meta.url))
/** The repository root, from test/cluster or from its compiled copy in dist/test/cluster. */
const ROOT = resolve(here, here.split(/[\\/]/).includes('dist') ? '../../..' : '../..')
/** The compiled CLI; `npm test` builds it first. */
export const CLI = resolve(ROOT, 'dist/src/cli/main.js')
/** The `shoal` command users run (package.json's bin): a launcher that execs node on CLI. */
export const LAUNCHER = resolve(ROOT, 'bin/shoal')

/**
 * The launcher's environment: this node binary, and SHOAL_NODE_ARGS (flags for the peers, e.g.
 * --cpu-prof when profiling a benchmark) as its SHOAL_NODE_OPTIONS.
 */
function launcherEnv (base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...base, SHOAL_NODE: process.execPath, SHOAL_NODE_OPTIONS: process.env.SHOAL_NODE_ARGS ?? '' }
}

/**
 * Membership timings for tests: 5x faster than the defaults, so a death is declared in about a
 * second and a half rather than several seconds.
 */
export const FAST_MEMBERSHIP = {
  probeIntervalMs: 200,
  probeTimeoutMs: 100,
  gossipIntervalMs: 50,
  pushPullIntervalMs: 2000,
  reconnectIntervalMs: 500,
  // 1.5 x max(2, log10 n) x 200 ms: the 600 ms minimum suspicion these tests always had (it was
  // 3 x max(1, log10 n) before suspicionMinScale).
  suspicionMult: 1.5
}

/** Ports handed out by this process, never handed out twice (the kernel may reuse a closed one). */
const handedOut = new Set<number>()

export async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await probePort()
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('no free port found')
}

async function probePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      server.close(() => { resolve(port) })
    })
  })
}

export interface MemberJson { peerId: string, name: string | null, addrs: string[], http: string | null, state: string, incarnation: number }

/** A disk fault rule as POST /admin/faults {disk: [...]} takes it (src/runtime/disk-faults.ts). */
export interface DiskFaultRuleJson {
  op: 'write' | 'sync' | 'syncDir' | 'open' | 'read' | 'rename' | 'unlink' | 'mkdir'
  code: 'EIO' | 'ENOSPC' | 'EDQUOT' | 'EROFS'
  /** A substring of the path (every path when absent). */
  path?: string
  /** How many matching operations fail (until cleared when absent). */
  times?: number
}

export interface StartOptions {
  bootstrap?: string[]
  /** Path of the swarm key file; defaults to the cluster's. `null` starts without one. */
  swarmKeyFile?: string | null
  extraArgs?: string[]
  /** Wait until /health answers (default true). */
  waitReady?: boolean
  /** Pass --enable-fault-injection (default true). */
  faultInjection?: boolean
  /** Run the peer under this open-file limit (`ulimit -n`, set by a shell that then execs node). */
  openFileLimit?: number
}

/** Where a peer runs: on loopback, or in a network namespace (test/net). */
export type ClusterNet = 'loopback' | 'netns'

/** A peer's ports in its own network namespace: shoal's defaults (docs/operations.md). */
export const NETNS_P2P_PORT = 7946
export const NETNS_HTTP_PORT = 7947

/** Where a peer process runs, when not on loopback. */
export interface PeerPlace {
  /** The address it listens on (libp2p and HTTP). */
  address: string
  /** The argv prefix that runs its launcher inside its namespace and execs it (test/net nsPrefix). */
  launchPrefix: string[]
}

export class PeerProcess {
  proc: ChildProcess | undefined
  peerId = ''
  private log: WriteStream | undefined
  exitCode: number | null = null
  private exited: Promise<void> = Promise.resolve()

  constructor (
    readonly name: string,
    readonly dataDir: string,
    readonly p2pPort: number,
    readonly httpPort: number,
    readonly logFile: string,
    private readonly args: string[],
    private readonly openFileLimit?: number,
    private readonly place?: PeerPlace
  ) {}

  /** The address the peer listens on: 127.0.0.1, or its namespace's. */
  get address (): string { return this.place?.address ?? '127.0.0.1' }

  get url (): string { return `http://${this.address}:${this.httpPort}` }

  multiaddr (withId = true): string {
    const base = `/ip4/${this.address}/tcp/${this.p2pPort}`
    return withId && this.peerId !== '' ? `${base}/p2p/${this.peerId}` : base
  }

  spawn (): void {
    this.log = createWriteStream(this.logFile, { flags: 'a' })
    // Through the launcher, as a user runs it (its settings: docs/operations.md); it execs node,
    // so pid, signals and exit codes are the peer's own. In a namespace, nsenter execs the launcher
    // in turn: still one process.
    const argv = ['start', ...this.args]
    const env = launcherEnv()
    const command = this.openFileLimit === undefined
      ? [LAUNCHER, ...argv]
      : ['/bin/sh', '-c', `ulimit -n ${this.openFileLimit} && exec "$0" "$@"`, LAUNCHER, ...argv]
    const [file, ...args] = [...(this.place?.launchPrefix ?? []), ...command]
    const proc = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
    proc.stdout!.pipe(this.log, { end: false })
    proc.stderr!.pipe(this.log, { end: false })
    this.exitCode = null
    this.exited = new Promise(resolve => {
      proc.once('exit', (code, signal) => {
        this.paused = false
        this.exitCode = code ?? (signal !== null ? 128 : -1)
        this.proc = undefined
        resolve()
      })
    })
    this.proc = proc
  }

  get running (): boolean { return this.proc !== undefined }

  async waitReady (timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (!this.running) throw new Error(`peer ${this.name} exited with ${this.exitCode}: ${await this.logs()}`)
      try {
        const health = await this.health()
        this.peerId = health.peer as string
        return
      } catch {
        if (Date.now() > deadline) throw new Error(`peer ${this.name} not ready after ${timeoutMs} ms: ${await this.logs()}`)
        await sleep(100)
      }
    }
  }

  async get (path: string): Promise<unknown> {
    const res = await fetch(this.url + path, { signal: AbortSignal.timeout(3000) })
    return await res.json()
  }

  async post (path: string, body: unknown): Promise<{ status: number, body: unknown }> {
    const res = await fetch(this.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(5000) })
    return { status: res.status, body: await res.json() }
  }

  async health (): Promise<Record<string, unknown>> {
    return await this.get('/health') as Record<string, unknown>
  }

  async members (): Promise<MemberJson[]> {
    return await this.get('/cluster/members') as MemberJson[]
  }

  async deny (peerIds: string[]): Promise<void> {
    const res = await this.post('/admin/faults', { deny: peerIds })
    if (res.status !== 200) throw new Error(`faults on ${this.name}: ${res.status} ${JSON.stringify(res.body)}`)
  }

  /** Sets this peer's clock skew (offset and drift of its HLC physical clock) through /admin/faults. */
  async clockSkew (clockOffsetMs: number, clockDriftPpm: number): Promise<void> {
    const res = await this.post('/admin/faults', { clockOffsetMs, clockDriftPpm })
    if (res.status !== 200) throw new Error(`faults on ${this.name}: ${res.status} ${JSON.stringify(res.body)}`)
  }

  /**
   * Replaces this peer's disk fault rules through /admin/faults (`[]` clears them): its file
   * operations matching a rule fail with the rule's errno, e.g. `[{op: 'sync', code: 'EIO', path:
   * 'wal-'}]` fails every WAL fsync (ops: write, sync, syncDir, open, read, rename, unlink, mkdir;
   * codes: EIO, ENOSPC, EDQUOT, EROFS; `path` a substring; `times` how many, else until cleared).
   * Answers the peer's disk fault state: the rules in force and the operations failed so far.
   */
  async diskFaults (rules: DiskFaultRuleJson[]): Promise<{ disk: DiskFaultRuleJson[], diskFaultsInjected: number }> {
    const res = await this.post('/admin/faults', { disk: rules })
    if (res.status !== 200) throw new Error(`disk faults on ${this.name}: ${res.status} ${JSON.stringify(res.body)}`)
    const body = res.body as { disk?: DiskFaultRuleJson[], diskFaultsInjected?: number }
    return { disk: body.disk ?? [], diskFaultsInjected: body.diskFaultsInjected ?? 0 }
  }

  /** True between pause() and resume(): the process exists but is stopped (SIGSTOP). */
  paused = false

  /** SIGSTOP: the process keeps its sockets but answers nothing, like a long GC pause. */
  pause (): void {
    if (this.proc === undefined || this.paused) return
    this.proc.kill('SIGSTOP')
    this.paused = true
  }

  /** SIGCONT after pause(). */
  resume (): void {
    if (this.proc === undefined || !this.paused) return
    this.proc.kill('SIGCONT')
    this.paused = false
  }

  /** The OS process id while running. */
  get pid (): number | undefined { return this.proc?.pid }

  /** kill -9: no drain, no leave; the data dir stays as the crash left it. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.proc === undefined) return
    this.proc.kill(signal)
    // A stopped process only acts on SIGKILL; anything else waits for SIGCONT.
    if (this.paused) { this.proc.kill('SIGCONT'); this.paused = false }
    await this.exited
  }

  async waitExit (timeoutMs = 15_000): Promise<number | null> {
    await Promise.race([this.exited, sleep(timeoutMs)])
    return this.exitCode
  }

  async logs (): Promise<string> {
    return await readFile(this.logFile, 'utf8').catch(() => '')
  }
}

export interface ClusterOptions {
  /** Membership timing overrides, written to each peer's config file. */
  membership?: Record<string, number>
  /** Create a swarm key shared by all peers (default true). */
  swarmKey?: boolean
  /** More keys for each peer's config file (merged over membership and drainTimeoutMs). */
  config?: Record<string, unknown>
  /** Name prefix of the cluster's folder under the OS tmp dir (default 'shoal-test-'). */
  dirPrefix?: string
  /**
   * 'loopback' (default): every peer on 127.0.0.1. 'netns': every peer in a network namespace of
   * its own (needs root, `ip`, `nsenter` and `nft`: test/net netnsSupport says why not; create
   * throws then), its links faulted through `cluster.network`.
   */
  net?: ClusterNet
  /** Progress lines of the namespace network (netns only). */
  log?: (line: string) => void
}

export class TestCluster {
  readonly peers = new Map<string, PeerProcess>()

  private constructor (
    readonly dir: string,
    readonly configFile: string,
    readonly swarmKeyFile: string | undefined,
    /** The namespace network of a 'netns' cluster (undefined on loopback): its link faults. */
    readonly network: NetnsNetwork | undefined
  ) {}

  get net (): ClusterNet { return this.network === undefined ? 'loopback' : 'netns' }

  static async create (options: ClusterOptions = {}): Promise<TestCluster> {
    if (options.net !== undefined && options.net !== 'loopback' && options.net !== 'netns') throw new Error(`unknown net '${String(options.net)}'; expected loopback or netns`)
    const network = options.net === 'netns' ? await NetnsNetwork.create(options.log !== undefined ? { log: options.log } : {}) : undefined
    try {
      const dir = await mkdtemp(join(tmpdir(), options.dirPrefix ?? 'shoal-test-'))
      const configFile = join(dir, 'config.json')
      await writeFile(configFile, JSON.stringify({ membership: options.membership ?? FAST_MEMBERSHIP, drainTimeoutMs: 2000, ...options.config }))
      let swarmKeyFile: string | undefined
      if (options.swarmKey !== false) {
        swarmKeyFile = join(dir, 'swarm.key')
        await runCli(['keygen', '--out', swarmKeyFile])
      }
      return new TestCluster(dir, configFile, swarmKeyFile, network)
    } catch (err) {
      await network?.destroy()
      throw err
    }
  }

  /**
   * Starts a peer on ports chosen free at run time. A port can still be taken between the check
   * and the peer's bind (by another test's peer, or by an outgoing connection's ephemeral port):
   * then the peer is started again on new ports, up to three times.
   */
  async startPeer (name: string, options: StartOptions = {}): Promise<PeerProcess> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startPeerOnce(name, options)
      } catch (err) {
        const peer = this.peers.get(name)
        const inUse = peer !== undefined && /already in use|address in use|EADDRINUSE/i.test(await peer.logs())
        if (!inUse || attempt >= 3 || options.extraArgs?.includes('--listen') === true) throw err
        this.peers.delete(name)
        await clearDir(peer.dataDir)
        await rm(peer.logFile, { force: true })
      }
    }
  }

  /**
   * Starts `names[0]`, then the others one after another bootstrapped to it, and waits until every
   * one of them sees all of them alive: the usual start of a test's cluster.
   */
  async startJoined (names: readonly string[], options: StartOptions = {}, timeoutMs = 20_000): Promise<PeerProcess[]> {
    const first = await this.startPeer(names[0]!, options)
    const peers = [first]
    for (const name of names.slice(1)) peers.push(await this.startPeer(name, { ...options, bootstrap: [first.multiaddr()] }))
    await waitAllAlive(peers, timeoutMs)
    return peers
  }

  private async startPeerOnce (name: string, options: StartOptions): Promise<PeerProcess> {
    const existing = this.peers.get(name)
    if (existing !== undefined) throw new Error(`peer ${name} exists; use restart()`)
    // In a namespace the peer has the ports to itself; on loopback they are shared with everything.
    let place: PeerPlace | undefined
    if (this.network !== undefined) {
      // A peer started again after a failed start keeps its namespace.
      const host = this.network.has(name) ? this.network.host(name) : await this.network.addHost(name)
      place = { address: host.address, launchPrefix: this.network.launchPrefix(name) }
    }
    const p2pPort = place !== undefined ? NETNS_P2P_PORT : await freePort()
    const httpPort = place !== undefined ? NETNS_HTTP_PORT : await freePort()
    const address = place?.address ?? '127.0.0.1'
    const dataDir = join(this.dir, name)
    const swarmKeyFile = options.swarmKeyFile === undefined ? this.swarmKeyFile : options.swarmKeyFile
    const args = [
      '--data-dir', dataDir,
      '--listen', `/ip4/${address}/tcp/${p2pPort}`,
      '--http', `${address}:${httpPort}`,
      // A namespace's address is not loopback: the test bed's peers are reachable only inside the
      // network it made, so they run without tokens.
      ...(place !== undefined ? ['--http-insecure'] : []),
      '--name', name,
      '--config', this.configFile,
      ...(options.faultInjection === false ? [] : ['--enable-fault-injection']),
      '--log-level', 'debug',
      ...(swarmKeyFile !== undefined && swarmKeyFile !== null ? ['--swarm-key', swarmKeyFile] : []),
      ...(options.bootstrap ?? []).flatMap(addr => ['--bootstrap', addr]),
      ...(options.extraArgs ?? [])
    ]
    const peer = new PeerProcess(name, dataDir, p2pPort, httpPort, join(this.dir, `${name}.log`), args, options.openFileLimit, place)
    this.peers.set(name, peer)
    peer.spawn()
    if (options.waitReady !== false) await peer.waitReady()
    return peer
  }

  /** Starts a stopped or killed peer again on the same data dir and ports. */
  async restart (name: string): Promise<PeerProcess> {
    const peer = this.peers.get(name)
    if (peer === undefined) throw new Error(`no peer ${name}`)
    if (peer.running) throw new Error(`peer ${name} is running`)
    // Its ports may have gone to some connection's ephemeral port while it was down: wait for
    // them rather than move the peer (others know it by its address).
    for (let attempt = 1; ; attempt++) {
      const before = (await peer.logs()).length
      peer.spawn()
      try {
        await peer.waitReady()
        return peer
      } catch (err) {
        const inUse = /already in use|address in use|EADDRINUSE/i.test((await peer.logs()).slice(before))
        if (!inUse || attempt >= 10) throw err
        await sleep(500)
      }
    }
  }

  /**
   * Kills every peer still running, tears the namespace network down (netns) and removes the
   * cluster's directory (unless keepDir).
   */
  async stopAll (opts: { keepDir?: boolean } = {}): Promise<void> {
    // With SHOAL_NODE_ARGS (profiling), stop gracefully so the peers can write their profiles.
    const signal = process.env.SHOAL_NODE_ARGS !== undefined ? 'SIGTERM' : 'SIGKILL'
    await Promise.all([...this.peers.values()].map(async p => { await p.kill(signal) }))
    await this.network?.destroy()
    if (opts.keepDir !== true) await rm(this.dir, { recursive: true, force: true })
  }
}

/**
 * Removes `dir`; when it is a mount point (a test put the peer's data dir on a tmpfs) it cannot
 * be removed (EBUSY), so only what it holds is.
 */
async function clearDir (dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err
    for (const e of await readdir(dir)) await rm(join(dir, e), { recursive: true, force: true })
  }
}

/** Runs the compiled CLI to completion and returns its exit code and output. */
export async function runCli (args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const proc = spawn(LAUNCHER, args, { stdio: ['ignore', 'pipe', 'pipe'], env: launcherEnv(opts.env) })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`shoal ${args.join(' ')} timed out; stderr: ${stderr}`)) }, opts.timeoutMs ?? 20_000)
    proc.once('exit', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Waits until each of `peers` sees every one of them alive. */
export async function waitAllAlive (peers: readonly PeerProcess[], timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await Promise.all(peers.map(async p => (await p.members()).filter(m => m.state === 'alive').length))).every(n => n === peers.length), { timeoutMs })
}

/** Polls `check` until it returns true; fails with `describe()` after timeoutMs. */
export async function waitFor (check: () => Promise<boolean>, opts: { timeoutMs: number, intervalMs?: number, describe?: () => Promise<string> | string }): Promise<number> {
  const started = Date.now()
  for (;;) {
    try {
      if (await check()) return Date.now() - started
    } catch {
      // a peer not answering yet is just "not yet"
    }
    if (Date.now() - started > opts.timeoutMs) {
      const detail = opts.describe !== undefined ? await opts.describe() : ''
      throw new Error(`condition not met within ${opts.timeoutMs} ms ${detail}`)
    }
    await sleep(opts.intervalMs ?? 100)
  }
}
