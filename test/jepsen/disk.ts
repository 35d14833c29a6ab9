/**
 * The disk nemesis (issue 13, "disk faults leave zombie replicas"). Mode `fill`: every peer's data
 * directory is a small tmpfs of its own; a fault window writes a ballast file into the chosen
 * peers' (a minority) until the disk answers ENOSPC, keeps it full (tops the ballast up every
 * 250 ms: a peer that frees a little space, cutting a torn WAL tail or dropping a segment, finds
 * none), and deletes the ballast when the window ends. Meanwhile it samples the full peers'
 * /health (every `sampleMs`); after the window it goes on sampling until the peer is green again
 * or `healBoundMs` has passed. Everything goes into the history (process 'nemesis'):
 *
 *   start-disk   {mode, nodes, healBoundMs}                                  the window opens
 *   disk-fill    {node, ballastBytes, freeBytes, usedBytes, sizeBytes, error?}  ballast written
 *   disk-health  {node, phase: before|window|heal, status, failed, ready, pid, running, error?}
 *   stop-disk    {nodes, topUps: {node: {count, bytes}}, error?}             ballast deleted
 *   disk-health  ... phase heal, until green                                  after the window
 *
 * and checkers/disk.ts judges them.
 *
 * Mode `fsync`: the disk has room but every WAL fsync of the chosen peers fails with EIO: the
 * window sets the fault rules FSYNC_FAULT_RULES on them through POST /admin/faults {disk}
 * (the peers run with --enable-fault-injection) and clears them at its end; each failed WAL
 * fsync fails its partition (kind 'io'), which the peer rebuilds from the other replicas once its
 * disk works. Its records: `disk-fault {node, rules, injectedBefore, error?}` in place of
 * disk-fill, and `stop-disk {mode, nodes, injected: {node: fsyncs failed in the window}}`; the
 * same /health sampling. It needs neither tmpfs nor root.
 *
 * Mounting needs root: where it is refused the fill windows are skipped (`skip-disk`), and the
 * run says so; fsync windows run anyway.
 */
import { mkdir, mkdtemp, open, rm, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DiskFaultRuleJson, PeerProcess, TestCluster } from '../cluster/index.js'
import { diskSpace, isTmpfsMount, mountsUnder, mountTmpfs, unmount } from '../cluster/tmpfs.js'
import type { History } from './history.js'

/** How a disk window fails the disk: filled to ENOSPC (tmpfs, root), or fsync failing with EIO (a fault rule in the peer). */
export type DiskMode = 'fill' | 'fsync'
export const DISK_MODES: DiskMode[] = ['fill', 'fsync']
/** --disk-mode: one mode, or both taken in turn per window (fill first). */
export type DiskModeChoice = DiskMode | 'both'
export const DISK_MODE_CHOICES: DiskModeChoice[] = ['fill', 'fsync', 'both']

/** What an fsync window sets on its peers: every fsync of a WAL file (`wal-<n>.log`) fails with EIO. */
export const FSYNC_FAULT_RULES: DiskFaultRuleJson[] = [{ op: 'sync', code: 'EIO', path: 'wal-' }]

/** The modes of a run's disk windows, taken in turn (ScheduleOptions.diskModes). */
export function diskModes (choice: DiskModeChoice): DiskMode[] {
  return choice === 'both' ? ['fill', 'fsync'] : [choice]
}

/** A disk window's fault (FaultPlan.disk). */
export interface DiskFault { mode: DiskMode }

/** Name prefix of a disk run's cluster folder under the OS tmp dir (swept for stale mounts). */
export const DISK_DIR_PREFIX = 'shoal-jepsen-disk-'
/** The ballast's name in a peer's data directory. */
export const BALLAST = 'jepsen-ballast.bin'

/** The peers' settings for a run with disk windows: a full disk probed at most every 2 s, so it heals within a quiet window. */
export const DISK_REPLICATION_CONFIG = { diskProbeMinMs: 500, diskProbeMaxMs: 2000, reconcileIntervalMs: 1000, catchUpRetryMs: 1000 }
/**
 * And memtables of 5 records: a full disk is met within a second or two by a flush (a new segment
 * file needs a new page), whatever the write rate. Appends to a WAL find room in its last,
 * partly written page for a while (tmpfs allocates 4 KiB pages, a disk its blocks): at CI's write
 * rate a full disk can go unnoticed for a whole 12 s window with the suite's usual memtables of
 * 200 records (seen in a run of ci-disk on a loaded machine).
 */
export const DISK_STORAGE_CONFIG = { memtableMaxRows: 5 }

/** One /health sample of a full peer, as the history records it. */
export interface DiskHealthSample {
  node: string
  phase: 'before' | 'window' | 'heal'
  /** green | yellow | red, or 'no-answer' (with error). */
  status: string
  /** The failed partitions it names: `<space>/<partition> <code>`. */
  failed: string[]
  /** Of those, the ones it gave up rebuilding (`rebuildsGivenUpAfter`: an I/O error after 3 rebuilds in a row; its disk then probed until it works). */
  givenUp?: string[]
  ready?: boolean
  pid: number | null
  running: boolean
  error?: string
}

/**
 * Why mounting a tmpfs is not possible here (undefined: it is): not root, or the mount refused
 * (a container without CAP_SYS_ADMIN). Mounts and unmounts a 1 MiB tmpfs to find out.
 */
export async function tmpfsRefused (): Promise<string | undefined> {
  if (process.platform !== 'linux') return `tmpfs mounts need Linux (this is ${process.platform})`
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return `not root (uid ${process.getuid()}); mounting a tmpfs needs root`
  const dir = await mkdtemp(join(tmpdir(), 'shoal-tmpfs-probe-'))
  try {
    const refused = mountTmpfs(dir, 1)
    if (refused === undefined) unmount(dir)
    return refused === undefined ? undefined : `mount refused: ${refused}`
  } finally {
    await rmdir(dir).catch(() => {})
  }
}

/**
 * Mounts a tmpfs of `sizeMiB` on each peer's data directory (`<clusterDir>/<name>`, made here)
 * before the peers start. Undefined when all are mounted; else why not (and nothing stays mounted).
 */
export async function mountDataDirs (clusterDir: string, names: string[], sizeMiB: number): Promise<string | undefined> {
  for (const n of names) {
    const dir = join(clusterDir, n)
    await mkdir(dir, { recursive: true })
    const refused = mountTmpfs(dir, sizeMiB)
    if (refused !== undefined) {
      unmountAll(clusterDir)
      return `mount refused: ${refused}`
    }
  }
  return undefined
}

/** Unmounts every mount below `dir` (deepest first). */
export function unmountAll (dir: string): void {
  for (const m of mountsUnder(dir)) unmount(m)
}

/**
 * Appends to the ballast until the disk answers ENOSPC, in chunks of 1 MiB, then 64 KiB, then
 * 4 KiB (tmpfs allocates pages), then 512 B. Only on a tmpfs mount point: never the real disk.
 */
export async function fillDisk (dir: string): Promise<{ bytes: number, free: number }> {
  if (!isTmpfsMount(dir)) throw new Error(`${dir} is not a tmpfs mount point: no ballast written`)
  const { size } = await diskSpace(dir)
  const fh = await open(join(dir, BALLAST), 'a')
  let bytes = 0
  try {
    for (const chunk of [1 << 20, 64 << 10, 4 << 10, 512]) {
      const buf = Buffer.alloc(chunk, 0x5a)
      while (bytes <= size) {
        try {
          const { bytesWritten } = await fh.write(buf)
          bytes += bytesWritten
          if (bytesWritten < chunk) break
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw err
        }
      }
    }
  } finally {
    await fh.close()
  }
  return { bytes, free: (await diskSpace(dir)).free }
}

interface FaultyPeer {
  node: string
  mode: DiskMode
  dir: string
  topUps: { count: number, bytes: number }
  topUpTimer: NodeJS.Timeout | undefined
  topUpRunning: Promise<void> | undefined
  sampler: NodeJS.Timeout | undefined
  sampling: Promise<void> | undefined
  /** fsync: the peer's count of injected failures when the rules were set (undefined: not set). */
  injectedBefore: number | undefined
}

export interface DiskNemesisOptions {
  /** ms between two /health samples of a faulty peer (default 500). */
  sampleMs?: number
  /** How long a peer may take, after the fault ends, to be green again (default 30 s). */
  healBoundMs?: number
  /**
   * Why fill windows cannot run in this run (no tmpfs data directories: not root, or the mount
   * refused): they are recorded as skip-disk. Fsync windows need no tmpfs.
   */
  fillRefused?: string
}

/** What stop() answers, recorded as stop-disk's value. */
export interface DiskStopDetail {
  mode: DiskMode
  nodes: string[]
  /** fill: the top-ups of each full peer's ballast. */
  topUps?: Record<string, { count: number, bytes: number }>
  /** fsync: the file operations each peer's fault rules failed during the window (null: unknown). */
  injected?: Record<string, number | null>
  error?: string
}

/**
 * Fails and heals disks of a cluster: fill windows on data directories that are tmpfs mounts
 * (mountDataDirs), fsync windows through the peers' fault rules.
 */
export class DiskNemesis {
  private readonly faulty = new Map<string, FaultyPeer>()
  private readonly watchers = new Set<Promise<void>>()
  private closed = false
  readonly sampleMs: number
  readonly healBoundMs: number
  readonly fillRefused: string | undefined

  constructor (private readonly cluster: TestCluster, private readonly history: History, opts: DiskNemesisOptions = {}, private readonly log: (s: string) => void = () => {}) {
    this.sampleMs = opts.sampleMs ?? 500
    this.healBoundMs = opts.healBoundMs ?? 30_000
    this.fillRefused = opts.fillRefused
  }

  /** Why a window of this mode cannot run here (then the caller records skip-disk), or undefined. */
  refused (mode: DiskMode): string | undefined {
    return mode === 'fill' ? this.fillRefused : undefined
  }

  private record (f: string, value: unknown): void {
    this.history.add({ process: 'nemesis', type: 'info', f, value })
  }

  private peer (name: string): PeerProcess {
    const p = this.cluster.peers.get(name)
    if (p === undefined) throw new Error(`no peer ${name}`)
    return p
  }

  /** One /health of `node`, recorded. */
  async sample (node: string, phase: DiskHealthSample['phase']): Promise<DiskHealthSample> {
    const p = this.peer(node)
    const s: DiskHealthSample = { node, phase, status: 'no-answer', failed: [], pid: p.pid ?? null, running: p.running }
    if (p.running && !p.paused) {
      try {
        const res = await fetch(`${p.url}/health`, { signal: AbortSignal.timeout(2000) })
        const h = await res.json() as { status?: string, ready?: boolean, failed?: Array<{ space: string, partition: number, code: string, rebuildsGivenUpAfter?: number }> }
        s.status = h.status ?? 'no-answer'
        s.failed = (h.failed ?? []).map(f => `${f.space}/${f.partition} ${f.code}`)
        const givenUp = (h.failed ?? []).filter(f => f.rebuildsGivenUpAfter !== undefined).map(f => `${f.space}/${f.partition}`)
        if (givenUp.length > 0) s.givenUp = givenUp
        if (typeof h.ready === 'boolean') s.ready = h.ready
      } catch (err) {
        s.error = (err as Error).message
      }
    } else {
      s.error = p.running ? 'paused' : 'not running'
    }
    if (!this.closed) this.record('disk-health', s)
    return s
  }

  /**
   * Opens a window (start-disk is recorded by the caller): fill fills each node's disk and keeps
   * it full; fsync sets FSYNC_FAULT_RULES on each node; both sample the nodes' /health.
   */
  async start (nodes: string[], mode: DiskMode = 'fill'): Promise<void> {
    const refused = this.refused(mode)
    if (refused !== undefined) throw new Error(`${mode} windows cannot run: ${refused}`)
    await Promise.all(nodes.map(async node => {
      const p = this.peer(node)
      await this.sample(node, 'before')
      const fp: FaultyPeer = { node, mode, dir: p.dataDir, topUps: { count: 0, bytes: 0 }, topUpTimer: undefined, topUpRunning: undefined, sampler: undefined, sampling: undefined, injectedBefore: undefined }
      this.faulty.set(node, fp)
      if (mode === 'fsync') {
        try {
          const st = await p.diskFaults(FSYNC_FAULT_RULES)
          fp.injectedBefore = st.diskFaultsInjected
          this.record('disk-fault', { node, rules: st.disk, injectedBefore: st.diskFaultsInjected })
          this.log(`nemesis: ${node}'s WAL fsyncs fail with EIO (${JSON.stringify(st.disk)})`)
        } catch (err) {
          this.record('disk-fault', { node, rules: [], error: (err as Error).message })
          return
        }
      } else {
        const { size, free: before } = await diskSpace(p.dataDir).catch(() => ({ size: 0, free: 0 }))
        try {
          const { bytes, free } = await fillDisk(p.dataDir)
          this.record('disk-fill', { node, ballastBytes: bytes, freeBytes: free, usedBytes: size - before, sizeBytes: size })
          this.log(`nemesis: ${node}'s disk full (ballast ${bytes} B, ${free} B free, the peer's data ${size - before} B of ${size})`)
        } catch (err) {
          this.record('disk-fill', { node, ballastBytes: 0, freeBytes: before, usedBytes: size - before, sizeBytes: size, error: (err as Error).message })
          return
        }
        fp.topUpTimer = setInterval(() => {
          if (fp.topUpRunning !== undefined) return
          fp.topUpRunning = (async () => {
            const { free } = await diskSpace(fp.dir)
            if (free <= 0) return
            const { bytes } = await fillDisk(fp.dir)
            fp.topUps.count++
            fp.topUps.bytes += bytes
          })().catch(() => {}).finally(() => { fp.topUpRunning = undefined })
        }, 250)
      }
      fp.sampler = setInterval(() => {
        if (fp.sampling !== undefined) return
        fp.sampling = this.sample(node, 'window').then(() => {}, () => {}).finally(() => { fp.sampling = undefined })
      }, this.sampleMs)
    }))
  }

  /** Ends one node's fault: the ballast deleted, or the fault rules cleared (answering the failures they injected). */
  private async heal (fp: FaultyPeer): Promise<number | null> {
    if (fp.mode === 'fill') {
      await rm(join(fp.dir, BALLAST), { force: true })
      return null
    }
    const st = await this.peer(fp.node).diskFaults([])
    return fp.injectedBefore === undefined ? null : st.diskFaultsInjected - fp.injectedBefore
  }

  /**
   * Closes a window: stops topping up and sampling, deletes the ballasts or clears the fault
   * rules. Answers stop-disk's detail (the caller records it, then calls watchHeal).
   */
  async stop (nodes: string[], mode: DiskMode = 'fill'): Promise<DiskStopDetail> {
    const topUps: Record<string, { count: number, bytes: number }> = {}
    const injected: Record<string, number | null> = {}
    const errors: string[] = []
    for (const node of nodes) {
      const fp = this.faulty.get(node)
      if (fp === undefined) continue
      this.faulty.delete(node)
      clearInterval(fp.topUpTimer)
      clearInterval(fp.sampler)
      await fp.topUpRunning
      await fp.sampling
      if (fp.mode === 'fill') topUps[node] = fp.topUps
      try {
        const n = await this.heal(fp)
        if (fp.mode === 'fsync') injected[node] = n
      } catch (err) {
        if (fp.mode === 'fsync') injected[node] = null
        errors.push(`${node}: ${(err as Error).message}`)
      }
    }
    return { mode, nodes, ...(mode === 'fill' ? { topUps } : { injected }), ...(errors.length > 0 ? { error: errors.join('; ') } : {}) }
  }

  /** Watches each node, in the background (settle() waits), until it is green or healBoundMs has passed. */
  watchHeal (nodes: string[]): void {
    for (const node of nodes) {
      const w: Promise<void> = this.watch(node).catch(() => {}).finally(() => { this.watchers.delete(w) })
      this.watchers.add(w)
    }
  }

  /** Samples `node` until it is green with no failed partition, or healBoundMs has passed. */
  private async watch (node: string): Promise<void> {
    const until = performance.now() + this.healBoundMs
    while (!this.closed && performance.now() < until) {
      const s = await this.sample(node, 'heal')
      if (s.status === 'green' && s.failed.length === 0) return
      await new Promise(resolve => setTimeout(resolve, this.sampleMs))
    }
  }

  /** Waits for the heal watchers (each ends by healBoundMs). */
  async settle (): Promise<void> {
    await Promise.all([...this.watchers])
  }

  /** Clears every peer's disk fault rules (the final heal; a peer not running has none). */
  async clearAll (): Promise<void> {
    await Promise.all([...this.cluster.peers.values()].map(async p => { if (p.running && !p.paused) await p.diskFaults([]) }))
  }

  /** Stops everything, recording nothing more (the run is over or failed). */
  async close (): Promise<void> {
    this.closed = true
    for (const fp of this.faulty.values()) {
      clearInterval(fp.topUpTimer)
      clearInterval(fp.sampler)
      await fp.topUpRunning
      await fp.sampling
      await this.heal(fp).catch(() => {})
    }
    this.faulty.clear()
    await this.settle()
  }
}
