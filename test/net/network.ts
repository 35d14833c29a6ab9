/**
 * A namespace network: one bridge in the root namespace and, per host (a peer), a network
 * namespace joined to it by a veth pair, so that every peer has an address of its own and the
 * links between peers pass through a kernel that can drop packets (faults.ts).
 *
 *   bridge      shb<suffix>              10.<x>.<y>.254/24 (the test process reaches the peers through it)
 *   host n      namespace shoal-<suffix>-<n>, lo up, eth0 10.<x>.<y>.<n>/24 (n = 1..253)
 *   veth n      shv<suffix><n> in the root namespace, a port of the bridge; its peer is the host's eth0
 *
 * The suffix is the subnet in hex (`<x><y>`, 4 characters; Linux names stop at 15), chosen at random
 * among /24s that overlap no address or route of the machine. A marker file
 * `/run/shoal-netns/<suffix>`, created exclusively before anything else, holds the owner's pid:
 * it reserves the subnet against a concurrent run, and lets `sweepStaleNetworks` tell a crashed
 * run's leftovers (owner dead) from a live run's.
 *
 * Teardown (`destroy`) kills whatever still runs in the namespaces, deletes the veths, the
 * namespaces (their nftables tables go with them), the bridge, any firewall exception and the
 * marker. It also runs on exit, SIGINT and SIGTERM of the process that made the network; what a
 * SIGKILL leaves behind, the next `create` sweeps.
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { alive, CommandError, nsPrefix, run, runIn, runSync } from './exec.js'
import { checkFaults, droppedPackets, NFT_TABLE, NO_FAULTS, nftScript, type LinkFaults } from './faults.js'
import { netnsSupport, probeNames } from './support.js'

/** Where the owners' markers live (one file per network, named by its suffix). */
export const MARKER_DIR = '/run/shoal-netns'
/** Comment of the firewall exceptions a network adds (see openForwarding): `shoal-netns-<suffix>`. */
const EXCEPTION_COMMENT = 'shoal-netns-'
/** The most hosts a /24 holds beside the bridge's .254. */
export const MAX_HOSTS = 253

export interface NetnsHost {
  /** The name the caller gave it (a peer's name). */
  name: string
  /** 1-based: the last byte of its address and its namespace's number. */
  index: number
  namespace: string
  address: string
  /** The root namespace's end of its veth pair. */
  veth: string
}

export const bridgeName = (suffix: string): string => `shb${suffix}`
export const namespaceName = (suffix: string, index: number): string => `shoal-${suffix}-${index}`
export const vethName = (suffix: string, index: number): string => `shv${suffix}${index}`

/** Networks of this process not yet torn down: torn down on exit. */
const live = new Set<NetnsNetwork>()
let handlersInstalled = false

function installExitHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const teardownAll = (): void => { for (const n of live) n.destroySync() }
  process.once('exit', teardownAll)
  // A listener replaces the default action (exit) of these signals: exit as it would have.
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(sig, () => { teardownAll(); process.exit(code) })
}

export class NetnsNetwork {
  private readonly hosts = new Map<string, NetnsHost>()
  private next = 1
  private destroyed = false
  private current: LinkFaults = NO_FAULTS

  private constructor (
    /** Four hex digits: the subnet's second and third bytes. */
    readonly suffix: string,
    /** `10.<x>.<y>`: hosts are `<subnet>.<n>`. */
    readonly subnet: string,
    private readonly log: (line: string) => void
  ) {}

  get bridge (): string { return bridgeName(this.suffix) }
  /** The bridge's address: what the peers see the test process as. */
  get gateway (): string { return `${this.subnet}.254` }

  /**
   * Makes the bridge (after sweeping what crashed runs left). Throws, saying why, where namespaces
   * cannot be made (netnsSupport), or where the machine's firewall drops the traffic between them.
   */
  static async create (opts: { log?: (line: string) => void } = {}): Promise<NetnsNetwork> {
    const log = opts.log ?? (() => {})
    const support = await netnsSupport()
    if (!support.ok) throw new Error(`network namespaces are not available here: ${support.why}`)
    const swept = await sweepStaleNetworks()
    if (swept.length > 0) log(`netns: swept what earlier runs left: ${swept.join(', ')}`)
    await mkdir(MARKER_DIR, { recursive: true })
    const { suffix, subnet } = await reserveSubnet()
    const net = new NetnsNetwork(suffix, subnet, log)
    live.add(net)
    installExitHandlers()
    try {
      await run('ip', ['link', 'add', net.bridge, 'type', 'bridge'])
      await run('ip', ['addr', 'add', `${net.gateway}/24`, 'dev', net.bridge])
      await run('ip', ['link', 'set', net.bridge, 'up'])
      await openForwarding(net.bridge, suffix, log)
    } catch (err) {
      net.destroySync()
      throw err
    }
    log(`netns: bridge ${net.bridge} ${net.gateway}/24`)
    return net
  }

  /** The host named `name` (throws when there is none). */
  host (name: string): NetnsHost {
    const h = this.hosts.get(name)
    if (h === undefined) throw new Error(`no host ${name} in namespace network ${this.suffix} (hosts: ${[...this.hosts.keys()].join(', ') || 'none'})`)
    return h
  }

  has (name: string): boolean { return this.hosts.has(name) }

  get hostList (): NetnsHost[] { return [...this.hosts.values()] }

  /**
   * Adds a host: its namespace with lo up, a veth pair whose root end joins the bridge and whose
   * other end is the namespace's eth0, with the host's address. The second host added checks that
   * the bridge carries traffic between namespaces (a firewall may drop it: openForwarding).
   */
  async addHost (name: string): Promise<NetnsHost> {
    if (this.destroyed) throw new Error(`namespace network ${this.suffix} is torn down`)
    if (this.hosts.has(name)) throw new Error(`host ${name} exists in namespace network ${this.suffix}`)
    if (this.next > MAX_HOSTS) throw new Error(`namespace network ${this.suffix} is full (${MAX_HOSTS} hosts)`)
    ensureNeighbourRoom(this.hosts.size + 1, this.log)
    const index = this.next++
    const h: NetnsHost = { name, index, namespace: namespaceName(this.suffix, index), address: `${this.subnet}.${index}`, veth: vethName(this.suffix, index) }
    this.hosts.set(name, h)
    try {
      await run('ip', ['netns', 'add', h.namespace])
      await run('ip', ['link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.namespace])
      await run('ip', ['link', 'set', h.veth, 'master', this.bridge])
      await run('ip', ['link', 'set', h.veth, 'up'])
      await run('ip', ['-n', h.namespace, 'link', 'set', 'lo', 'up'])
      await run('ip', ['-n', h.namespace, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0'])
      await run('ip', ['-n', h.namespace, 'link', 'set', 'eth0', 'up'])
      if (this.hosts.size === 2) await this.checkForwarding()
    } catch (err) {
      // No half-made host: a caller that retries gets a new one (the index is not reused).
      this.hosts.delete(name)
      runSync('ip', ['link', 'del', h.veth])
      runSync('ip', ['netns', 'del', h.namespace])
      throw err
    }
    this.log(`netns: host ${name} ${h.address} in ${h.namespace}`)
    return h
  }

  /** The argv prefix that runs a command in `name`'s namespace, execing it (the pid is the command's). */
  launchPrefix (name: string): string[] { return nsPrefix(this.host(name).namespace) }

  /** The faults in force (setFaults). */
  get faults (): LinkFaults { return this.current }

  /**
   * Puts exactly `faults` in force on every host (each namespace's table replaced in one
   * transaction; a host no fault touches has no table). Answers the packets the rules it replaced
   * dropped, per host. `clearFaults()` heals everything.
   */
  async setFaults (faults: LinkFaults): Promise<Record<string, number>> {
    checkFaults(faults)
    for (const l of [...faults.drop, ...faults.loss]) { this.host(l.from); this.host(l.to) }
    const addressOf = (n: string): string => this.host(n).address
    const dropped: Record<string, number> = {}
    await Promise.all(this.hostList.map(async h => {
      // One process per namespace (a loaded machine starts few quickly): the old table's
      // counters, then the new table. nft cannot list from a script (-f), hence the shell.
      const listing = await runIn(h.namespace, 'sh', ['-c', `nft list table ${NFT_TABLE} 2>/dev/null; exec nft -f -`], nftScript(h.name, faults, addressOf))
      dropped[h.name] = droppedPackets(listing)
    }))
    this.current = faults
    return dropped
  }

  /** Removes every fault; answers the packets their rules dropped, per host. */
  async clearFaults (): Promise<Record<string, number>> { return await this.setFaults(NO_FAULTS) }

  /** Packets our rules dropped in each host's namespace since they were last set (0 where it has none). */
  async dropped (): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    await Promise.all(this.hostList.map(async h => {
      const listing = await runIn(h.namespace, 'nft', ['list', 'table', ...NFT_TABLE.split(' ')]).catch(() => '')
      out[h.name] = droppedPackets(listing)
    }))
    return out
  }

  /** Our table in `name`'s namespace as nft lists it ('' when there is none): for diagnostics and tests. */
  async rules (name: string): Promise<string> {
    return await runIn(this.host(name).namespace, 'nft', ['list', 'table', ...NFT_TABLE.split(' ')]).catch(() => '')
  }

  /** Tears everything down (see the module's note). Safe to call twice. */
  async destroy (): Promise<void> { this.destroySync() }

  /** destroy(), synchronously: what an exit handler can still do. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    live.delete(this)
    teardown(this.suffix)
    if (live.size === 0) restoreNeighbourRoom(this.log)
    this.log(`netns: ${this.suffix} torn down`)
  }

  /**
   * The bridge carries TCP between the first two hosts: a listener in one namespace, a connection
   * from the other (node itself: no ping or netcat needed). Throws naming the likely cause.
   */
  private async checkForwarding (): Promise<void> {
    const [a, b] = this.hostList as [NetnsHost, NetnsHost]
    const port = 7900
    const [enter, ...enterArgs] = nsPrefix(a.namespace)
    const listener = spawn(enter!, [...enterArgs, process.execPath, '-e',
      `const s = require('net').createServer(c => c.end('ok')).listen(${port}, '${a.address}', () => console.log('ready')); setTimeout(() => process.exit(0), 10000)`],
    { stdio: ['ignore', 'pipe', 'pipe'] })
    try {
      await new Promise<void>((resolve, reject) => {
        let err = ''
        listener.stderr.on('data', (d: Buffer) => { err += d.toString() })
        listener.stdout.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve() })
        listener.once('exit', code => { reject(new Error(`forwarding check: the listener in ${a.namespace} exited (${String(code)}): ${err}`)) })
      })
      await runIn(b.namespace, process.execPath, ['-e',
        `const c = require('net').connect(${port}, '${a.address}'); c.setTimeout(3000, () => { console.error('no answer within 3 s'); process.exit(1) }); c.on('data', () => process.exit(0)); c.on('error', e => { console.error(e.message); process.exit(1) })`])
    } catch (err) {
      const why = err instanceof CommandError ? err.stderr.trim() : (err as Error).message
      const brNf = await readFile('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').then(s => s.trim(), () => 'absent')
      throw new Error(`the bridge ${this.bridge} does not carry TCP from ${b.namespace} to ${a.namespace} ${a.address}:${port} (${why}); ` +
        `sysctl net.bridge.bridge-nf-call-iptables is ${brNf}: where it is 1 bridged packets pass the firewall's forward hook, and a chain there that this code does not open (iptables-legacy, ebtables, nft bridge family) may drop them`)
    } finally {
      listener.kill('SIGKILL')
    }
  }
}

/**
 * The kernel has one ARP table for every namespace (arp_cache), and its hard cap, gc_thresh3, is
 * 1,024 entries by default, with gc_thresh2 (512) above which entries are collected hard. Each
 * host of a network keeps an entry for every other host and the bridge: n hosts need about
 * n(n + 1). Past the cap a new neighbour cannot be resolved ("neighbour: arp_cache: neighbor
 * table overflow!" in the kernel log), so connections between hosts added late simply time out:
 * with 50 hosts started at once, hosts 13 to 50 could not reach one another at all, and a
 * 50-peer cluster stalled at its 36th to 40th peer. The thresholds are raised as hosts are added
 * (root; logged), and put back when this process's last network is torn down, unless another
 * run's network still exists.
 */
const NEIGH = '/proc/sys/net/ipv4/neigh/default/'
let savedNeighbourThresholds: { gc_thresh2: number, gc_thresh3: number } | undefined

function readThreshold (name: string): number {
  return Number(readFileSync(NEIGH + name, 'utf8').trim())
}

function ensureNeighbourRoom (hosts: number, log: (line: string) => void): void {
  // Every live network of this process, with the host about to be added (this network is in
  // `live` with hosts - 1 of them), and room for the machine's own neighbours.
  let total = 256
  for (const n of live) total += (n.hostList.length + 1) * (n.hostList.length + 2)
  let thresh2: number, thresh3: number
  try {
    thresh2 = readThreshold('gc_thresh2')
    thresh3 = readThreshold('gc_thresh3')
  } catch {
    return // not Linux's layout: netnsSupport has said so already
  }
  if (thresh3 >= 2 * total && thresh2 >= total) return
  savedNeighbourThresholds ??= { gc_thresh2: thresh2, gc_thresh3: thresh3 }
  const want2 = Math.max(thresh2, total)
  const want3 = Math.max(thresh3, 2 * total)
  writeFileSync(NEIGH + 'gc_thresh2', String(want2))
  writeFileSync(NEIGH + 'gc_thresh3', String(want3))
  log(`netns: the kernel's ARP table (shared by every namespace) raised to gc_thresh2 ${want2}, gc_thresh3 ${want3} for ${hosts} hosts`)
}

function restoreNeighbourRoom (log: (line: string) => void): void {
  const saved = savedNeighbourThresholds
  if (saved === undefined) return
  // Another run's network (its marker) may need the room still: leave it raised then.
  let others: string[] = []
  try { others = readdirSync(MARKER_DIR) } catch {}
  if (others.length > 0) return
  savedNeighbourThresholds = undefined
  try {
    writeFileSync(NEIGH + 'gc_thresh3', String(saved.gc_thresh3))
    writeFileSync(NEIGH + 'gc_thresh2', String(saved.gc_thresh2))
    log(`netns: the kernel's ARP table thresholds put back (gc_thresh2 ${saved.gc_thresh2}, gc_thresh3 ${saved.gc_thresh3})`)
  } catch {}
}

/** Picks a free 10.x.y.0/24 and reserves it with its marker file (created exclusively). */
async function reserveSubnet (): Promise<{ suffix: string, subnet: string }> {
  const taken = usedPrefixes()
  for (let attempt = 0; attempt < 200; attempt++) {
    // 10.16-10.254: the low ones are where clouds and container runtimes put their networks.
    const x = 16 + Math.floor(Math.random() * 239)
    const y = Math.floor(Math.random() * 256)
    const net = (10 << 24 | x << 16 | y << 8) >>> 0
    if (taken.some(p => overlaps(net, 24, p.addr, p.len))) continue
    const suffix = x.toString(16).padStart(2, '0') + y.toString(16).padStart(2, '0')
    try {
      await writeFile(join(MARKER_DIR, suffix), JSON.stringify({ pid: process.pid, subnet: `10.${x}.${y}.0/24`, created: new Date().toISOString() }), { flag: 'wx' })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue // another run's subnet
      throw err
    }
    return { suffix, subnet: `10.${x}.${y}` }
  }
  throw new Error('no free 10.x.y.0/24 subnet found for a namespace network in 200 tries')
}

/** Every IPv4 prefix the machine has an address or a route in (any table); `default` is left out. */
function usedPrefixes (): Array<{ addr: number, len: number }> {
  const text = [runSync('ip', ['-4', '-o', 'addr', 'show']), runSync('ip', ['-4', 'route', 'show', 'table', 'all'])].join('\n')
  const out: Array<{ addr: number, len: number }> = []
  for (const m of text.matchAll(/(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?/g)) {
    const addr = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0
    out.push({ addr, len: m[5] === undefined ? 32 : Number(m[5]) })
  }
  return out
}

/** Whether two prefixes share an address: they agree on the bits of the shorter one. */
export function overlaps (a: number, alen: number, b: number, blen: number): boolean {
  const len = Math.min(alen, blen)
  if (len === 0) return true
  const mask = (0xffffffff << (32 - len)) >>> 0
  return ((a & mask) >>> 0) === ((b & mask) >>> 0)
}

/**
 * With br_netfilter on (sysctl net.bridge.bridge-nf-call-iptables = 1), packets between two ports
 * of a bridge pass the IPv4 forward hook of the root namespace, where a firewall's forward chain
 * with policy drop (Docker sets one) would drop the peers' traffic. An accept rule of ours, at the
 * top of every ip/inet base chain on that hook, lets the bridge's own traffic through; each is
 * commented `shoal-netns-<suffix>` and deleted with the network (or by the sweep).
 */
async function openForwarding (bridge: string, suffix: string, log: (line: string) => void): Promise<void> {
  const brNf = await readFile('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').then(s => s.trim(), () => '0')
  if (brNf !== '1') return
  const ruleset = JSON.parse(await run('nft', ['-j', 'list', 'ruleset'])) as { nftables: Array<{ chain?: { family: string, table: string, name: string, hook?: string } }> }
  const chains = ruleset.nftables.flatMap(o => o.chain !== undefined && o.chain.hook === 'forward' && ['ip', 'inet'].includes(o.chain.family) ? [o.chain] : [])
  for (const c of chains) {
    await run('nft', ['insert', 'rule', c.family, c.table, c.name, 'iifname', bridge, 'oifname', bridge, 'counter', 'accept', 'comment', `"${EXCEPTION_COMMENT}${suffix}"`])
    log(`netns: br_netfilter is on: traffic within ${bridge} accepted first in forward chain ${c.family} ${c.table} ${c.name}`)
  }
}

/** Deletes the firewall exceptions (openForwarding) of the networks `which` selects, by suffix. */
function closeForwarding (which: (suffix: string) => boolean): void {
  const text = runSync('nft', ['-j', '-a', 'list', 'ruleset'])
  if (text === undefined) return
  let parsed: { nftables: Array<{ rule?: { family: string, table: string, chain: string, handle: number, comment?: string } }> }
  try { parsed = JSON.parse(text) } catch { return }
  for (const o of parsed.nftables) {
    const r = o.rule
    if (r?.comment?.startsWith(EXCEPTION_COMMENT) !== true || !which(r.comment.slice(EXCEPTION_COMMENT.length))) continue
    runSync('nft', ['delete', 'rule', r.family, r.table, r.chain, 'handle', String(r.handle)])
  }
}

/** The namespaces and links of the machine, by name. */
function listNamespaces (): string[] {
  return (runSync('ip', ['netns', 'list']) ?? '').split('\n').map(l => l.split(' ')[0]!).filter(s => s !== '')
}
function listLinks (): string[] {
  // `ip -o link`: "12: shv1a2b1@if3: <...>"; the name ends at '@' or ':'.
  return (runSync('ip', ['-o', 'link', 'show']) ?? '').split('\n').map(l => /^\d+:\s+([^@:\s]+)/.exec(l)?.[1]).filter((s): s is string => s !== undefined)
}

/** Kills every process in namespace `ns` (what a torn-down run left running there: its peers). */
function killIn (ns: string): void {
  for (const pid of (runSync('ip', ['netns', 'pids', ns]) ?? '').split('\n').map(Number).filter(n => Number.isInteger(n) && n > 0)) {
    try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
  }
}

/**
 * Whether the network `suffix` belongs to a live run: its marker names a running process, or is
 * being written (no pid yet) and is less than a minute old.
 */
function ownerLive (suffix: string): boolean {
  const file = join(MARKER_DIR, suffix)
  let text: string
  try { text = readFileSync(file, 'utf8') } catch { return false }
  let pid = 0
  try { pid = Number((JSON.parse(text) as { pid?: unknown }).pid) } catch { /* being written */ }
  if (Number.isInteger(pid) && pid > 0) return alive(pid)
  try { return Date.now() - statSync(file).mtimeMs < 60_000 } catch { return false }
}

/** Removes everything of the network `suffix`, found by name (whatever of it exists), and its marker. */
function teardown (suffix: string): void {
  const namespaces = listNamespaces().filter(n => new RegExp(`^shoal-${suffix}-\\d+$`).test(n))
  for (const ns of namespaces) killIn(ns)
  for (const link of listLinks().filter(l => new RegExp(`^shv${suffix}\\d+$`).test(l))) runSync('ip', ['link', 'del', link])
  for (const ns of namespaces) runSync('ip', ['netns', 'del', ns])
  runSync('ip', ['link', 'del', bridgeName(suffix)])
  closeForwarding(s => s === suffix)
  rmSync(join(MARKER_DIR, suffix), { force: true })
}

/**
 * Removes what crashed runs left: every network whose marker's owner is dead, or whose namespaces
 * or links exist without a marker (the marker is made before them and removed after them), and
 * every probe (support.ts) whose pid is dead. A live run's network is left alone. Answers what it
 * removed.
 */
export async function sweepStaleNetworks (): Promise<string[]> {
  // Resources first, markers second: a network made in between has its marker by then.
  const namespaces = listNamespaces()
  const links = listLinks()
  const suffixes = new Set<string>()
  for (const n of namespaces) { const m = /^shoal-([0-9a-f]{4})-\d+$/.exec(n); if (m !== null) suffixes.add(m[1]!) }
  for (const l of links) { const m = /^sh(?:b([0-9a-f]{4})|v([0-9a-f]{4})\d+)$/.exec(l); if (m !== null) suffixes.add((m[1] ?? m[2])!) }
  const markers = await readdir(MARKER_DIR).catch(() => [] as string[])
  for (const f of markers) if (/^[0-9a-f]{4}$/.test(f)) suffixes.add(f)
  const swept: string[] = []
  for (const suffix of suffixes) {
    if (ownerLive(suffix)) continue
    teardown(suffix)
    swept.push(`network ${suffix}`)
  }
  // Probes: their pid is in their names.
  for (const name of [...namespaces, ...links]) {
    const m = /^(?:shoal-p|sh[bv]p)(\d+)$/.exec(name)
    if (m === null || alive(Number(m[1]))) continue
    const { namespace, bridge, veth } = probeNames(Number(m[1]))
    if (name === namespace) { killIn(name); runSync('ip', ['netns', 'del', name]) } else if (name === bridge || name === veth) runSync('ip', ['link', 'del', name])
    swept.push(name)
  }
  // Firewall exceptions of networks gone (their marker is made before them, removed after them).
  closeForwarding(s => !ownerLive(s))
  return swept
}
