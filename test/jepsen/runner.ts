/**
 * One Jepsen-style run: start the cluster, create the spaces, load the queries workload's dataset,
 * run the workers while the nemesis plays its schedule, heal, read everything at ALL, ask every
 * peer the queries again, wait for convergence, check, and write the
 * store folder (history.jsonl, results.json, schedule.json, logs/, timeline.html, latency.svg,
 * throughput.svg).
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { FAST_MEMBERSHIP, TestCluster, waitFor, type ClusterNet, type PeerProcess } from '../cluster/index.js'
import { sweepStaleMounts, writeOwner } from '../cluster/tmpfs.js'
import { netnsSupport } from '../net/index.js'
import { checkHistory, type ConvergenceResult, type Results } from './checkers/index.js'
import { ShoalClient } from './client.js'
import { disagreements, hintCounters } from './convergence.js'
import { DISK_DIR_PREFIX, DISK_REPLICATION_CONFIG, DISK_STORAGE_CONFIG, DiskNemesis, diskModes, mountDataDirs, tmpfsRefused, unmountAll, type DiskModeChoice } from './disk.js'
import { History, type Op, type Workload } from './history.js'
import { DEFAULT_LOSS_PERCENT, LOSS_NEEDS_NETNS, Nemesis, NETNS_ONLY_NEMESES, rng, schedule, type FaultPlan, type NemesisKind } from './nemesis.js'
import { renderReport } from './report.js'
import { finalQueries, finalReads, loadQueries, queryWorker, registerKeys, registerWorker, SCHEMAS, setWorker, SPACES, type WorkerContext } from './workloads.js'

export interface RunOptions {
  name: string
  nodes: number
  /** 'all': set, register and queries. */
  workload: Workload | 'all'
  nemeses: NemesisKind[]
  seed: number
  /** Length of the workload (fault and quiet windows), ms. */
  timeLimitMs: number
  faultMs: number
  quietMs: number
  /** The quiet period before the first fault window, ms (default: quietMs). */
  leadMs: number | undefined
  /**
   * Client workers: of the set and register workloads (split in half when both run), or of the
   * queries workload when it runs alone.
   */
  concurrency: number
  /** Query workers when the queries workload runs beside others ('all'), in addition to `concurrency`. */
  queryWorkers: number
  /** Records of the queries workload's dataset (8 partitions, 3 replicas). */
  queryRows: number
  opTimeoutMs: number
  serverTimeoutMs: number
  thinkMs: number
  /**
   * Single-writer register keys per register worker. Long runs want more keys, so that no key
   * collects more operations than the linearizability search takes (4,000).
   */
  keysPerWriter: number
  /**
   * How long replicas may take to agree after the final reads are done, ms. The final reads
   * themselves (every attempted id at ALL) get their own, longer deadline.
   */
  convergenceTimeoutMs: number
  /** Parent folder; the run's folder is <store>/<name>-<seed>-<date>. */
  store: string
  maxClockOffsetMs: number
  maxClockDriftPpm: number
  /**
   * The tombstone grace the peers get when the schedule has an outage window (storage
   * tombstoneGraceMs, ms; default 3000), with anti-entropy every second, a hint window of two
   * thirds of it and a dead-owner timeout of 4 s, so that within a window of a few times that the
   * others stop counting the peer away, repair without it and purge its deletes (issue 13).
   */
  outageGraceMs: number
  /**
   * Fraction of set operations that remove an id the worker added (acknowledged); default: 0.3
   * when the schedule has an outage window, else 0.
   */
  setRemoveRate: number | undefined
  /**
   * A run with disk windows: each peer's data directory is a tmpfs of this many MiB (default
   * 128: room for what a long run writes, a peer's data is a few MiB in CI; a window's ballast
   * fills what is left, and takes that much memory while it is there).
   */
  diskMiB: number
  /**
   * How the disk windows fail the disk: 'fill' (tmpfs filled to ENOSPC; needs root), 'fsync' (WAL
   * fsyncs fail with EIO, through the peers' fault rules) or 'both' (taken in turn, fill first;
   * default). Where no tmpfs can be mounted the fill windows are skipped, saying why.
   */
  diskMode: DiskModeChoice
  /** How long a faulty peer may take to be green again after its disk works again, ms (default 30 s). */
  diskHealBoundMs: number
  /**
   * The fault window after a disk window waits until that window's peers are green again (or
   * the heal bound has passed), so that their heal is judged rather than masked by the next
   * fault; the rest of the schedule (and the time limit) shifts by the wait, recorded as
   * `disk-wait` {waitedMs, shiftMs, totalShiftMs}. Default false: windows start at their planned time.
   */
  diskWaitHeal: boolean
  /** ms between /health samples of a full peer (default 500). */
  diskSampleMs: number
  /**
   * Where the peers run: 'loopback' (default; partitions through the peers' deny lists) or
   * 'netns' (a network namespace each, root only; partitions and loss by nftables rules in the
   * namespaces, outside the peers: test/net).
   */
  net: ClusterNet
  /** Loss windows (netns only): the share of packets dropped on their links, % (default 25). */
  lossPercent: number
  log: (line: string) => void
}

export const DEFAULTS: RunOptions = {
  name: 'run',
  nodes: 5,
  workload: 'all',
  nemeses: ['partition'],
  seed: 1,
  timeLimitMs: 60_000,
  faultMs: 10_000,
  quietMs: 10_000,
  leadMs: undefined,
  concurrency: 6,
  queryWorkers: 2,
  queryRows: 4000,
  opTimeoutMs: 3000,
  serverTimeoutMs: 2000,
  thinkMs: 30,
  keysPerWriter: 2,
  convergenceTimeoutMs: 90_000,
  store: 'store/jepsen',
  maxClockOffsetMs: 2000,
  maxClockDriftPpm: 2000,
  outageGraceMs: 3000,
  setRemoveRate: undefined,
  diskMiB: 128,
  diskMode: 'both',
  diskHealBoundMs: 30_000,
  diskWaitHeal: false,
  diskSampleMs: 500,
  net: 'loopback',
  lossPercent: DEFAULT_LOSS_PERCENT,
  log: () => {}
}

export interface RunOutcome {
  dir: string
  /** `net`: a namespace run's link fault windows, with the packets each dropped. */
  results: Results & { run: Record<string, unknown>, net?: NetSummary }
  schedule: FaultPlan[]
}

const live = new Set<TestCluster>()
/** Clusters whose data directories are tmpfs mounts: unmounted on exit too. */
const mounted = new Set<string>()
let handlersInstalled = false
/** Kill every peer of every run still going when this process is interrupted: no leftovers. */
function installExitHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const killAll = (): void => {
    for (const c of live) for (const p of c.peers.values()) { try { p.proc?.kill('SIGKILL') } catch { /* gone */ } }
    // Killed peers' files may keep a mount busy for a moment: unmount detaches it then.
    for (const dir of mounted) unmountAll(dir)
  }
  process.once('exit', killAll)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { killAll(); process.exit(130) })
}

async function sleepUntil (t: number): Promise<void> {
  const ms = t - performance.now()
  if (ms > 0) await new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Why this run cannot start as asked (undefined: it can): a netns-only nemesis on loopback, or a
 * namespace cluster where namespaces cannot be made (root, `ip`, `nsenter`, `nft`).
 */
export async function netRefused (o: Pick<RunOptions, 'net' | 'nemeses'>): Promise<string | undefined> {
  if (o.net !== 'netns' && o.net !== 'loopback') return `unknown --net '${String(o.net)}'; expected loopback or netns`
  if (o.net === 'loopback' && o.nemeses.some(k => NETNS_ONLY_NEMESES.includes(k))) return LOSS_NEEDS_NETNS
  if (o.net === 'netns') {
    const support = await netnsSupport()
    if (!support.ok) return `--net netns cannot run here: ${support.why}`
  }
  return undefined
}

export async function run (partial: Partial<RunOptions>): Promise<RunOutcome> {
  const o: RunOptions = { ...DEFAULTS, ...partial }
  const refused = await netRefused(o)
  if (refused !== undefined) throw new Error(refused)
  installExitHandlers()
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const dir = join(o.store, `${o.name}-${o.seed}-${stamp}`)
  await mkdir(join(dir, 'logs'), { recursive: true })
  const names = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`)
  const disk = o.nemeses.includes('disk')
  const modes = diskModes(o.diskMode)
  // Fill windows need tmpfs data directories (root); fsync windows need nothing but the peers' fault injection.
  let fillRefused = disk && modes.includes('fill') ? await tmpfsRefused() : undefined
  const warnFill = (why: string): void => {
    console.warn(modes.includes('fsync')
      ? `jepsen: the disk nemesis's fill windows are skipped: cannot mount a tmpfs for the peers' data directories (${why}); fill needs root. Only its fsync windows run (--disk-mode fsync makes every disk window one)`
      : `jepsen: the disk nemesis is skipped: cannot mount a tmpfs for the peers' data directories (${why}); it needs root (--disk-mode fsync does not)`)
  }
  if (fillRefused !== undefined) warnFill(fillRefused)
  const plans = schedule({ seed: o.seed, nemeses: o.nemeses, nodes: names, timeLimitMs: o.timeLimitMs, faultMs: o.faultMs, quietMs: o.quietMs, maxClockOffsetMs: o.maxClockOffsetMs, maxClockDriftPpm: o.maxClockDriftPpm, diskModes: modes, net: o.net, lossPercent: o.lossPercent, ...(o.leadMs !== undefined ? { leadMs: o.leadMs } : {}) })
  await writeFile(join(dir, 'schedule.json'), JSON.stringify(plans, null, 2))
  const workloads: Workload[] = o.workload === 'all' ? ['set', 'register', 'queries'] : [o.workload]

  // A 1 MiB block cache and small memtables: what the schedules write is flushed to segments and
  // compacted while the nemeses run, and read back from disk through constant eviction.
  const outage = o.nemeses.includes('outage')
  const config: Record<string, Record<string, unknown>> = outage ? outageConfig(o.outageGraceMs) : { storage: { cacheMiB: 1, memtableMaxRows: 200 } }
  if (disk) {
    config.replication = { ...config.replication, ...DISK_REPLICATION_CONFIG }
    config.storage = { ...config.storage, memtableMaxRows: Math.min(Number(config.storage?.memtableMaxRows ?? Infinity), DISK_STORAGE_CONFIG.memtableMaxRows) }
  }
  // Disk runs: mounts a crashed run left behind go first; this run's folder is marked as ours.
  if (disk) {
    const swept = await sweepStaleMounts(tmpdir(), DISK_DIR_PREFIX)
    if (swept.length > 0) o.log(`swept ${swept.length} stale disk-run folders: ${swept.join(', ')}`)
  }
  const cluster = await TestCluster.create({ membership: FAST_MEMBERSHIP, config, net: o.net, log: o.log, ...(disk ? { dirPrefix: DISK_DIR_PREFIX } : {}) })
  live.add(cluster)
  let history: History | undefined
  let diskNemesis: DiskNemesis | undefined
  try {
    if (disk) {
      await writeOwner(cluster.dir)
      mounted.add(cluster.dir)
      if (modes.includes('fill') && fillRefused === undefined) {
        fillRefused = await mountDataDirs(cluster.dir, names, o.diskMiB)
        if (fillRefused !== undefined) warnFill(fillRefused)
      }
    }
    // Cluster.
    const first = await cluster.startPeer(names[0]!)
    for (const n of names.slice(1)) await cluster.startPeer(n, { bootstrap: [first.multiaddr()] })
    const peers = [...cluster.peers.values()]
    await waitFor(async () => (await Promise.all(peers.map(async p => (await p.members()).filter(m => m.state === 'alive').length))).every(c => c === o.nodes), { timeoutMs: 30_000 })
    for (const w of workloads) {
      const space = SPACES[w]
      const res = await first.post('/spaces', { name: space, schema: SCHEMAS[w], partitions: 8, replicas: 3 })
      if (res.status !== 201) throw new Error(`create space ${space}: ${res.status} ${JSON.stringify(res.body)}`)
    }
    await waitFor(async () => (await Promise.all(peers.map(async p => await p.get('/spaces') as Array<{ name: string }>)))
      .every(list => workloads.every(w => list.some(s => s.name === SPACES[w]))), { timeoutMs: 15_000 })
    o.log(`cluster of ${o.nodes} up in ${cluster.dir}${cluster.network !== undefined ? ` (network namespaces, ${peers.map(p => `${p.name} ${p.address}`).join(', ')})` : ''}; schedule: ${plans.map(p => `${p.kind}@${p.start}`).join(' ')}`)

    // Workload and nemesis (the queries workload's load first: the history's clock starts before it).
    const h = new History()
    history = h
    const random = rng(o.seed ^ 0x5eed)
    let stop = false
    const ctx: WorkerContext = {
      history: h,
      client: new ShoalClient({ timeoutMs: o.opTimeoutMs, serverTimeoutMs: o.serverTimeoutMs }),
      coordinators: () => peers.filter(p => p.running),
      random,
      stopped: () => stop,
      thinkMs: o.thinkMs,
      setRemoveRate: o.setRemoveRate ?? (outage ? 0.3 : 0)
    }
    if (workloads.includes('queries')) {
      const loadStart = performance.now()
      const ds = await loadQueries(ctx, o.queryRows, 8, loadStart + 120_000)
      o.log(`queries: ${ds.rows} rows loaded at ALL in ${Math.round(performance.now() - loadStart)} ms (${String(ds.attempts)} write requests)`)
    }
    const regWorkers = workloads.includes('register') ? (workloads.includes('set') ? Math.floor(o.concurrency / 2) : o.concurrency) : 0
    const setWorkers = workloads.includes('set') ? o.concurrency - regWorkers : 0
    const qWorkers = workloads.includes('queries') ? (workloads.length === 1 ? o.concurrency : o.queryWorkers) : 0
    const keys = registerKeys(Math.max(1, regWorkers), o.keysPerWriter)
    const workers: Array<Promise<void>> = []
    for (let i = 0; i < setWorkers; i++) workers.push(setWorker(ctx, i))
    for (let i = 0; i < regWorkers; i++) workers.push(registerWorker(ctx, setWorkers + i, i, regWorkers, keys))
    for (let i = 0; i < qWorkers; i++) workers.push(queryWorker(ctx, setWorkers + regWorkers + i))
    if (disk) diskNemesis = new DiskNemesis(cluster, h, { healBoundMs: o.diskHealBoundMs, sampleMs: o.diskSampleMs, ...(fillRefused !== undefined ? { fillRefused } : {}) }, o.log)
    const nemesis = new Nemesis(cluster, h, o.log, diskNemesis)
    const t0 = performance.now()
    // With diskWaitHeal the windows after a disk window shift by the time its peers took to heal.
    let shift = 0
    for (const [i, plan] of plans.entries()) {
      await sleepUntil(t0 + shift + plan.start)
      await nemesis.start(plan)
      await sleepUntil(t0 + shift + plan.end)
      await nemesis.stop(plan)
      const next = plans[i + 1]
      if (o.diskWaitHeal && plan.kind === 'disk' && next !== undefined && diskNemesis !== undefined) {
        const from = performance.now()
        await diskNemesis.settle()
        const healed = performance.now()
        const shiftBy = Math.max(0, healed - (t0 + shift + next.start))
        shift += shiftBy
        h.add({ process: 'nemesis', type: 'info', f: 'disk-wait', value: { waitedMs: Math.round(healed - from), shiftMs: Math.round(shiftBy), totalShiftMs: Math.round(shift) } })
        if (shiftBy > 0) o.log(`nemesis: the next window waits ${Math.round(shiftBy)} ms for the disk window's peers to heal`)
      }
    }
    await sleepUntil(t0 + shift + o.timeLimitMs)
    stop = true
    await Promise.all(workers)
    // Faulty peers are watched until green (or the heal bound) after their window.
    await diskNemesis?.settle()

    // Heal, final reads, convergence.
    const healStart = performance.now()
    await nemesis.healAll()
    await waitFor(async () => (await Promise.all(peers.map(async p => (await p.members()).filter(m => m.state === 'alive').length))).every(c => c === o.nodes), { timeoutMs: 30_000 }).catch(() => {})
    // A long run has hundreds of thousands of ids to read back: give the reads room of their own.
    const readDeadline = healStart + Math.max(o.convergenceTimeoutMs, 900_000)
    const items: Array<{ workload: Workload, key: string }> = []
    if (workloads.includes('set')) {
      for (const id of new Set(h.ops.filter(x => x.workload === 'set' && x.f === 'add' && x.type === 'invoke').map(x => x.key!))) items.push({ workload: 'set', key: id })
    }
    if (workloads.includes('register')) for (const k of [...keys.single, ...keys.multi]) items.push({ workload: 'register', key: k })
    await finalReads(ctx, items, 8, readDeadline)
    const finalReadsDoneMs = Math.round(performance.now() - healStart)
    o.log(`final reads of ${items.length} ids done ${finalReadsDoneMs} ms after the heal`)
    if (workloads.includes('queries')) {
      await finalQueries(ctx, peers, performance.now() + 30_000)
      o.log(`final queries done ${Math.round(performance.now() - healStart)} ms after the heal`)
    }
    const deadline = performance.now() + o.convergenceTimeoutMs
    const spaces = workloads.map(w => SPACES[w])
    let last: Awaited<ReturnType<typeof disagreements>> = []
    let afterMs: number | null = null
    while (performance.now() < deadline) {
      try {
        last = await disagreements(peers, spaces)
        if (last.length === 0) { afterMs = Math.round(performance.now() - healStart); break }
      } catch (err) {
        last = [{ space: '?', partition: -1, digests: { error: (err as Error).message } }]
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    const hints = await hintCounters(peers)
    const convergence: ConvergenceResult = {
      converged: afterMs !== null,
      afterMs,
      finalReadsDoneMs,
      disagreeing: afterMs === null ? last : [],
      hints: { ...hints, note: 'summed over the peers\' current processes: a killed peer\'s counters restart at 0' },
      note: 'measured from the start of the final heal; the final ALL reads (which repair stale replicas) and hint replay ran in that time; anti-entropy runs every 60 s by default (replication.antiEntropyIntervalMs)'
    }
    h.add({ process: 'nemesis', type: 'info', f: 'converged', value: { afterMs } })
    o.log(`convergence: ${afterMs === null ? 'never' : `${afterMs} ms`}; hints ${JSON.stringify(hints)}`)

    // Check and store.
    const checked = checkHistory(h.ops, { convergence })
    if (disk && fillRefused !== undefined) {
      const skippedWindows = h.ops.filter(x => x.process === 'nemesis' && x.f === 'skip-disk').length
      checked.disk = { ...(checked.disk ?? { valid: true, windows: [], violations: [], unknown: [] }), skipped: fillRefused, skippedWindows }
    }
    const results = {
      ...checked,
      ...(cluster.network !== undefined ? { net: netSummary(h.ops, cluster.network.subnet) } : {}),
      run: { name: o.name, seed: o.seed, nodes: o.nodes, workload: o.workload, nemeses: o.nemeses, net: o.net, ...(o.nemeses.includes('loss') ? { lossPercent: o.lossPercent } : {}), timeLimitMs: o.timeLimitMs, faultMs: o.faultMs, quietMs: o.quietMs, concurrency: o.concurrency, ...(workloads.includes('queries') ? { queryWorkers: qWorkers, queryRows: o.queryRows } : {}), ...(disk ? { disk: { modes, ...(modes.includes('fill') ? (fillRefused === undefined ? { tmpfsMiB: o.diskMiB } : { fillSkipped: fillRefused }) : {}), healBoundMs: o.diskHealBoundMs, sampleMs: o.diskSampleMs, waitHeal: o.diskWaitHeal } } : {}), ops: h.ops.length, dir }
    }
    await writeFile(join(dir, 'results.json'), JSON.stringify(results, null, 2))
    await writeFile(join(dir, 'history.jsonl'), h.toJsonl())
    await renderReport(dir, h.ops, results)
    return { dir, results, schedule: plans }
  } catch (err) {
    if (history !== undefined) await writeFile(join(dir, 'history.jsonl'), history.toJsonl()).catch(() => {})
    throw err
  } finally {
    await diskNemesis?.close()
    await cluster.stopAll({ keepDir: true })
    await copyLogs(cluster, join(dir, 'logs'))
    // The peers are gone: their tmpfs mounts can go (stopAll cannot remove a mount point).
    if (disk) unmountAll(cluster.dir)
    await cluster.stopAll()
    mounted.delete(cluster.dir)
    live.delete(cluster)
  }
}

/**
 * The peers' settings for a schedule with an outage window: the usual small cache, memtables of
 * 5 records (the set workload's tombstones reach segments, where compaction purges them, within
 * seconds), a tombstone grace of `graceMs`
 * checked every second, anti-entropy every second (repairs complete well within the grace), a
 * hint window shorter than the grace (a hint would otherwise bring the deletes to the returning
 * peer, as the grace must outlast the hint window), and a 4 s dead-owner timeout (the peer away
 * stops owning, so the others repair without it and purge).
 */
/** One link fault window of a namespace run, as results.json → `net.windows` shows it. */
export interface NetFaultWindow {
  kind: 'partition' | 'loss'
  start: number
  end: number | null
  shape?: string
  grudge?: Record<string, string[]>
  links?: Array<[string, string]>
  percent?: number
  /** Packets the window's nftables rules dropped, per peer's namespace (null: not counted). */
  droppedPackets: Record<string, number> | null
  /** Their sum: 0 would mean the window cut nothing. */
  totalDropped: number | null
}

export interface NetSummary { mode: 'netns', subnet: string, windows: NetFaultWindow[] }

/** The link fault windows of a namespace run, with the packets each dropped (from the nemesis's start/stop records). */
export function netSummary (ops: readonly Op[], subnet: string): NetSummary {
  const windows: NetFaultWindow[] = []
  const open = new Map<string, NetFaultWindow>()
  for (const op of ops) {
    if (op.process !== 'nemesis') continue
    const m = /^(start|stop)-(partition|loss)$/.exec(op.f)
    if (m === null) continue
    const kind = m[2] as 'partition' | 'loss'
    if (m[1] === 'start') {
      const v = op.value as { shape?: string, grudge?: Record<string, string[]>, links?: Array<[string, string]>, percent?: number }
      const w: NetFaultWindow = { kind, start: op.time, end: null, ...(kind === 'partition' ? { shape: v.shape, grudge: v.grudge } : { links: v.links, percent: v.percent }), droppedPackets: null, totalDropped: null }
      windows.push(w)
      open.set(kind, w)
    } else {
      const w = open.get(kind)
      if (w === undefined) continue
      open.delete(kind)
      w.end = op.time
      const dropped = (op.value as { droppedPackets?: Record<string, number> } | null)?.droppedPackets
      if (dropped !== undefined) { w.droppedPackets = dropped; w.totalDropped = Object.values(dropped).reduce((a, b) => a + b, 0) }
    }
  }
  return { mode: 'netns', subnet: `${subnet}.0/24`, windows }
}

function outageConfig (graceMs: number): Record<string, Record<string, unknown>> {
  return {
    storage: { cacheMiB: 1, memtableMaxRows: 5, tombstoneGraceMs: graceMs, compactionCheckIntervalMs: 1000 },
    replication: { antiEntropyIntervalMs: 1000, hintWindowMs: Math.round(graceMs * 2 / 3) },
    placement: { deadOwnerTimeoutMs: 4000 }
  }
}

async function copyLogs (cluster: TestCluster, to: string): Promise<void> {
  await Promise.all([...cluster.peers.values()].map(async (p: PeerProcess) => {
    await copyFile(p.logFile, join(to, basename(p.logFile))).catch(() => {})
  }))
}
