/**
 * The nemesis: a seeded schedule of fault windows separated by quiet periods, and the code that
 * applies and heals each fault on a TestCluster.
 *
 *   partition  random halves | isolate one | majorities ring | bridge, through /admin/faults deny
 *              (loopback: the peers cut the links themselves); in a namespace cluster (--net netns)
 *              nftables drop rules in the peers' namespaces instead, and a fifth shape, one-way
 *              (one half's packets to the other dropped, the other way through)
 *   loss       netns only: X % of the packets dropped at random (nftables numgen) both ways on a
 *              random set of links, removed when the window ends
 *   kill       kill -9 of a minority, restarted on the same data dir when the window ends
 *   pause      SIGSTOP of a minority, SIGCONT when the window ends
 *   clock      offset (ms) and drift (ppm) of some peers' HLC physical clock, reset at the end
 *   outage     kill -9 of one peer for a window longer than the shortened tombstone grace the
 *              runner then gives the cluster (RunOptions.outageGraceMs), restarted on the same
 *              data dir at the end: the others delete and purge meanwhile (issue 13)
 *   disk       mode fill: a minority's data directories (each peer's a small tmpfs in such a run)
 *              filled by a ballast file until ENOSPC, kept full, the ballast deleted at the end;
 *              mode fsync: a minority's WAL fsyncs fail with EIO (fault rules in the peers,
 *              /admin/faults {disk}), cleared at the end; their /health sampled meanwhile and
 *              until green again (disk.ts; issue 13). Modes taken in turn (ScheduleOptions.diskModes)
 *
 * The schedule depends only on (seed, nemeses, node names, timings): the same flags give the same
 * faults at the same offsets.
 */
import type { ClusterNet, PeerProcess, TestCluster } from '../cluster/index.js'
import { grudgeLinks, lossBothWays, type NetnsNetwork } from '../net/index.js'
import type { DiskFault, DiskMode, DiskNemesis } from './disk.js'
import type { History } from './history.js'

export type NemesisKind = 'partition' | 'kill' | 'pause' | 'clock' | 'outage' | 'disk' | 'loss'
export const NEMESES: NemesisKind[] = ['partition', 'kill', 'pause', 'clock', 'outage', 'disk', 'loss']
/** Kinds that need the kernel's packet filter between the peers: a namespace cluster (--net netns). */
export const NETNS_ONLY_NEMESES: NemesisKind[] = ['loss']
/** Why a loss window cannot run on loopback, as the CLI and the runner refuse it. */
export const LOSS_NEEDS_NETNS = 'the loss nemesis needs --net netns: packet loss is made by nftables rules in each peer\'s network namespace, and on loopback there is no packet filter between the peers (root, `ip`, `nsenter` and `nft` needed)'
/** 'one-way' only in a namespace cluster: a peer's deny list cuts whole connections, both ways. */
export type PartitionShape = 'halves' | 'isolate' | 'ring' | 'bridge' | 'one-way'
/** Default share of packets a loss window drops on its links, %. */
export const DEFAULT_LOSS_PERCENT = 25

export interface FaultPlan {
  kind: NemesisKind
  /** ms after the start of the workload. */
  start: number
  end: number
  shape?: PartitionShape
  /**
   * Partition: for each node, the nodes its packets do not reach; symmetric (so no traffic either
   * way) for every shape but one-way.
   */
  grudge?: Record<string, string[]>
  /** Loss: the links (both directions of each pair) and the share of packets dropped on them. */
  loss?: { links: Array<[string, string]>, percent: number }
  /** Kill / pause / outage / disk: the nodes hit. */
  nodes?: string[]
  /** Disk: how the disk fails (`fill` or `fsync`). */
  disk?: DiskFault
  /** Clock: per node offset and drift. */
  skew?: Record<string, { offsetMs: number, driftPpm: number }>
}

export interface ScheduleOptions {
  seed: number
  nemeses: NemesisKind[]
  nodes: string[]
  timeLimitMs: number
  faultMs: number
  quietMs: number
  maxClockOffsetMs?: number
  maxClockDriftPpm?: number
  /** Modes of the disk windows, taken in turn (default ['fill']). */
  diskModes?: DiskMode[]
  /** The quiet period before the first fault window (default quietMs): load before any fault. */
  leadMs?: number
  /**
   * Where the peers run (default loopback). A namespace cluster adds the one-way partition shape
   * and allows loss windows; the loopback schedule of a seed is the netns schedule of that seed
   * with no partition turned one-way (see schedule()).
   */
  net?: ClusterNet
  /** Loss windows: the share of packets dropped on their links, % (default DEFAULT_LOSS_PERCENT). */
  lossPercent?: number
}

/** mulberry32: small, seeded, good enough for schedules. */
export function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shuffle<T> (xs: readonly T[], r: () => number): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

/** Symmetric grudge from components: nodes in different components cannot talk. */
function fromComponents (nodes: string[], comps: string[][]): Record<string, string[]> {
  const g: Record<string, string[]> = {}
  for (const n of nodes) {
    const mine = comps.filter(c => c.includes(n)).flat()
    g[n] = nodes.filter(m => m !== n && !mine.includes(m))
  }
  return g
}

export function partitionGrudge (shape: PartitionShape, nodes: string[], r: () => number): Record<string, string[]> {
  const s = shuffle(nodes, r)
  const n = s.length
  if (shape === 'one-way') return oneWayGrudge(nodes, r)
  if (shape === 'halves') return fromComponents(s, [s.slice(0, Math.floor(n / 2)), s.slice(Math.floor(n / 2))])
  if (shape === 'isolate' || n < 5) return fromComponents(s, [s.slice(0, 1), s.slice(1)])
  if (shape === 'bridge') {
    // Two halves that cannot see each other and one node in the middle that sees both.
    const half = Math.floor((n - 1) / 2)
    const left = s.slice(0, half)
    const right = s.slice(half + 1)
    const g: Record<string, string[]> = {}
    for (const x of s) g[x] = left.includes(x) ? right : right.includes(x) ? left : []
    return g
  }
  // Majorities ring: each node sees its neighbours on a ring, a majority that differs per node.
  const see = Math.floor(n / 2) // neighbours seen, split over both sides
  const g: Record<string, string[]> = {}
  s.forEach((x, i) => {
    g[x] = s.filter((_, j) => {
      const d = Math.min((i - j + n) % n, (j - i + n) % n)
      return d > Math.ceil(see / 2)
    })
  })
  return g
}

/**
 * One-way: the packets of a random half (the smaller) to the other half are dropped; the other
 * half's packets reach it. A TCP connection across it stalls (its acknowledgements are lost), but
 * differently from a cut both ways: one side keeps hearing the other.
 */
export function oneWayGrudge (nodes: string[], r: () => number): Record<string, string[]> {
  const s = shuffle(nodes, r)
  const from = s.slice(0, Math.floor(s.length / 2))
  const to = s.slice(Math.floor(s.length / 2))
  const g: Record<string, string[]> = {}
  for (const n of s) g[n] = from.includes(n) ? to : []
  return g
}

/** A random non-empty set of the node pairs (each in with even odds). */
function randomLinks (nodes: string[], r: () => number): Array<[string, string]> {
  const all: Array<[string, string]> = []
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) all.push([nodes[i]!, nodes[j]!])
  const picked = all.filter(() => r() < 0.5)
  return picked.length > 0 ? picked : [all[Math.floor(r() * all.length)]!]
}

export function schedule (o: ScheduleOptions): FaultPlan[] {
  const r = rng(o.seed)
  // Choices only a namespace cluster makes (one-way partitions) draw from a stream of their own,
  // so that they leave every other choice of the seed as on loopback.
  const rNetns = rng(o.seed ^ 0x0e7e75)
  const netns = o.net === 'netns'
  const lossPercent = o.lossPercent ?? DEFAULT_LOSS_PERCENT
  if (!netns && o.nemeses.some(k => NETNS_ONLY_NEMESES.includes(k))) throw new Error(LOSS_NEEDS_NETNS)
  if (!Number.isInteger(lossPercent) || lossPercent < 1 || lossPercent > 100) throw new Error(`loss percent ${lossPercent}: expected an integer from 1 to 100`)
  const plans: FaultPlan[] = []
  const minority = Math.max(1, Math.floor((o.nodes.length - 1) / 2))
  const maxOffset = o.maxClockOffsetMs ?? 2000
  const maxDrift = o.maxClockDriftPpm ?? 2000
  let t = o.leadMs ?? o.quietMs
  let k = 0
  let disks = 0
  const diskModes = o.diskModes ?? ['fill']
  while (o.nemeses.length > 0 && t + o.faultMs <= o.timeLimitMs) {
    const kind = o.nemeses[k++ % o.nemeses.length]!
    const plan: FaultPlan = { kind, start: t, end: t + o.faultMs }
    if (kind === 'partition') {
      const shapes: PartitionShape[] = ['halves', 'isolate', 'ring', 'bridge']
      plan.shape = shapes[Math.floor(r() * shapes.length)]!
      plan.grudge = partitionGrudge(plan.shape, o.nodes, r)
      // One shape in five one-way, where the packet filter can drop a single direction.
      if (netns && rNetns() < 0.2) {
        plan.shape = 'one-way'
        plan.grudge = oneWayGrudge(o.nodes, rNetns)
      }
    } else if (kind === 'loss') {
      plan.loss = { links: randomLinks(o.nodes, r), percent: lossPercent }
    } else if (kind === 'kill' || kind === 'pause') {
      plan.nodes = shuffle(o.nodes, r).slice(0, 1 + Math.floor(r() * minority))
    } else if (kind === 'outage') {
      // One replica away: the other two of each of its partitions go on deleting and purging.
      plan.nodes = shuffle(o.nodes, r).slice(0, 1)
    } else if (kind === 'disk') {
      // A minority's disks: every partition keeps a majority of its replicas on disks with room.
      plan.nodes = shuffle(o.nodes, r).slice(0, 1 + Math.floor(r() * minority))
      plan.disk = { mode: diskModes[disks++ % diskModes.length]! }
    } else {
      const hit = shuffle(o.nodes, r).slice(0, 1 + Math.floor(r() * o.nodes.length))
      plan.skew = {}
      for (const n of hit) plan.skew[n] = { offsetMs: Math.round((r() * 2 - 1) * maxOffset), driftPpm: Math.round((r() * 2 - 1) * maxDrift) }
    }
    plans.push(plan)
    t += o.faultMs + o.quietMs
  }
  return plans
}

/** Applies and heals fault plans on a real cluster, writing nemesis ops into the history. */
export class Nemesis {
  /**
   * `disk`: the disk nemesis of a run whose data directories are tmpfs mounts, or why there is
   * none (a string: then disk windows are recorded as skip-disk and do nothing).
   */
  constructor (private readonly cluster: TestCluster, private readonly history: History, private readonly log: (s: string) => void = () => {}, private readonly disk: DiskNemesis | string = 'no disk nemesis in this run') {}

  private peer (name: string): PeerProcess {
    const p = this.cluster.peers.get(name)
    if (p === undefined) throw new Error(`no peer ${name}`)
    return p
  }

  /** The namespace network whose packet filter cuts the links, or undefined on loopback. */
  private get network (): NetnsNetwork | undefined { return this.cluster.network }

  private record (f: string, value: unknown): void {
    this.history.add({ process: 'nemesis', type: 'info', f, value })
  }

  /** Why this disk window cannot run here (recorded as skip-disk), or undefined. */
  private diskRefused (plan: FaultPlan): string | undefined {
    if (plan.kind !== 'disk') return undefined
    return typeof this.disk === 'string' ? this.disk : this.disk.refused(plan.disk?.mode ?? 'fill')
  }

  async start (plan: FaultPlan): Promise<void> {
    const refused = this.diskRefused(plan)
    if (refused !== undefined) {
      this.record('skip-disk', { mode: 'fill', ...plan.disk, nodes: plan.nodes, reason: refused })
      this.log(`nemesis: ${plan.disk?.mode ?? 'fill'} disk window skipped (${refused})`)
      return
    }
    // run() refuses a loss window on loopback before anything starts; a caller that did not ask it gets no window.
    if (plan.kind === 'loss' && this.network === undefined) {
      this.record('error-loss', LOSS_NEEDS_NETNS)
      this.log(`nemesis: loss window refused: ${LOSS_NEEDS_NETNS}`)
      return
    }
    // How a link fault is made: by the peers themselves (deny lists) or by the kernel (nftables).
    const via = this.network !== undefined ? { via: 'nftables' } : { via: 'deny' }
    const detail = plan.kind === 'partition'
      ? { shape: plan.shape, grudge: plan.grudge, ...via }
      : plan.kind === 'loss'
        ? { ...plan.loss, ...via }
        : plan.kind === 'clock'
          ? { skew: plan.skew }
          : plan.kind === 'disk' ? { mode: 'fill', ...plan.disk, nodes: plan.nodes, healBoundMs: (this.disk as DiskNemesis).healBoundMs } : { nodes: plan.nodes }
    this.record(`start-${plan.kind}`, detail)
    this.log(`nemesis: start ${plan.kind} ${JSON.stringify(detail)}`)
    try {
      if (plan.kind === 'partition' && this.network !== undefined) {
        // In the namespaces, whether or not the peers run: a peer restarted meanwhile is cut too.
        await this.network.setFaults({ drop: grudgeLinks(plan.grudge!), loss: [] })
      } else if (plan.kind === 'partition') {
        if (plan.shape === 'one-way') throw new Error('a one-way partition needs --net netns: a peer\'s deny list cuts whole connections')
        await Promise.all(Object.entries(plan.grudge!).map(async ([name, deny]) => {
          const p = this.peer(name)
          if (p.running && !p.paused) await p.deny(deny.map(d => this.peer(d).peerId))
        }))
      } else if (plan.kind === 'loss') {
        await this.network!.setFaults({ drop: [], loss: lossBothWays(plan.loss!.links, plan.loss!.percent) })
      } else if (plan.kind === 'kill' || plan.kind === 'outage') {
        await Promise.all(plan.nodes!.map(async n => { await this.peer(n).kill('SIGKILL') }))
      } else if (plan.kind === 'pause') {
        for (const n of plan.nodes!) this.peer(n).pause()
      } else if (plan.kind === 'disk') {
        await (this.disk as DiskNemesis).start(plan.nodes!, plan.disk?.mode ?? 'fill')
      } else {
        await Promise.all(Object.entries(plan.skew!).map(async ([n, s]) => {
          const p = this.peer(n)
          if (p.running && !p.paused) await p.clockSkew(s.offsetMs, s.driftPpm)
        }))
      }
    } catch (err) {
      this.record(`error-${plan.kind}`, (err as Error).message)
    }
  }

  async stop (plan: FaultPlan): Promise<void> {
    if (plan.kind === 'disk') {
      if (typeof this.disk === 'string' || this.diskRefused(plan) !== undefined) return
      const mode = plan.disk?.mode ?? 'fill'
      let detail: unknown = { mode, nodes: plan.nodes }
      try {
        detail = await this.disk.stop(plan.nodes!, mode)
      } catch (err) {
        this.record('error-disk', (err as Error).message)
      }
      this.record('stop-disk', detail)
      this.log(`nemesis: stop disk (${mode === 'fill' ? 'ballast deleted' : 'fsync faults cleared'} on ${plan.nodes!.join(', ')}): ${JSON.stringify(detail)}`)
      this.disk.watchHeal(plan.nodes!)
      return
    }
    if (plan.kind === 'loss' && this.network === undefined) return // refused at its start
    // A link fault in the namespaces ends with what it cost: packets dropped per peer's namespace.
    let outcome: unknown = null
    try {
      if ((plan.kind === 'partition' || plan.kind === 'loss') && this.network !== undefined) {
        outcome = { droppedPackets: await this.network.clearFaults() }
      } else if (plan.kind === 'partition') {
        await Promise.all(Object.keys(plan.grudge!).map(async n => { const p = this.peer(n); if (p.running && !p.paused) await p.deny([]) }))
      } else if (plan.kind === 'kill' || plan.kind === 'outage') {
        for (const n of plan.nodes!) if (!this.peer(n).running) await this.cluster.restart(n)
      } else if (plan.kind === 'pause') {
        for (const n of plan.nodes!) this.peer(n).resume()
      } else {
        await Promise.all(Object.keys(plan.skew!).map(async n => { const p = this.peer(n); if (p.running && !p.paused) await p.clockSkew(0, 0) }))
      }
    } catch (err) {
      this.record(`error-${plan.kind}`, (err as Error).message)
    }
    this.record(`stop-${plan.kind}`, outcome)
    this.log(`nemesis: stop ${plan.kind}${outcome !== null ? ` ${JSON.stringify(outcome)}` : ''}`)
  }

  /**
   * The final heal: everything resumed, restarted, reconnected (no deny list, no nftables rule)
   * and unskewed (and no disk fault rule left).
   */
  async healAll (): Promise<void> {
    const peers = [...this.cluster.peers.values()]
    for (const p of peers) p.resume()
    await this.network?.clearFaults()
    for (const p of peers) if (!p.running) await this.cluster.restart(p.name)
    await Promise.all(peers.map(async p => {
      await p.deny([])
      await p.clockSkew(0, 0)
    }))
    if (typeof this.disk !== 'string') await this.disk.clearAll()
    this.record('heal', null)
    this.log('nemesis: final heal')
  }
}
