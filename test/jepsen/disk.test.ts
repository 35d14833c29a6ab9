/**
 * The disk nemesis's pieces without a cluster: the ballast fills a tmpfs to ENOSPC and only a
 * tmpfs, and the sweep of what a crashed run left behind (unmounts and removes folders whose
 * owner is gone, leaves a live run's alone); the modes of the disk windows in the schedule; an
 * fsync window's fault rules set and cleared on fake peers, and a fill window skipped without a
 * tmpfs while the fsync windows run. The mounting parts need root and say so otherwise.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { DiskFaultRuleJson, TestCluster } from '../cluster/index.js'
import { diskSpace, isTmpfsMount, mountsUnder, mountTmpfs, OWNER_FILE, sweepStaleMounts, unmount } from '../cluster/tmpfs.js'
import { FULL_SLACK_BYTES } from './checkers/disk.js'
import { BALLAST, DiskNemesis, diskModes, fillDisk, FSYNC_FAULT_RULES, tmpfsRefused } from './disk.js'
import { History } from './history.js'
import { CI_SCHEDULES } from './index.js'
import { Nemesis, schedule } from './nemesis.js'

/** A pid that no process has now (a child that has exited). */
function deadPid (): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!
}

describe('disk nemesis: ballast and mounts', () => {
  const dirs: string[] = []
  afterAll(async () => {
    for (const d of dirs) {
      for (const m of mountsUnder(d)) unmount(m)
      await rm(d, { recursive: true, force: true })
    }
  })

  it('refuses to write a ballast anywhere but on a tmpfs mount point', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-jepsen-ballast-'))
    dirs.push(dir)
    await expect(fillDisk(dir)).rejects.toThrow(/not a tmpfs mount point/)
    await expect(stat(join(dir, BALLAST))).rejects.toThrow(/ENOENT/)
  })

  it('sweeps folders whose owner is gone, and leaves a live run\'s and a just-made one alone', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'shoal-jepsen-sweep-'))
    dirs.push(parent)
    const mk = async (name: string, owner?: number): Promise<string> => {
      const d = join(parent, name)
      await mkdir(join(d, 'n1'), { recursive: true })
      if (owner !== undefined) await writeFile(join(d, OWNER_FILE), String(owner))
      return d
    }
    const dead = await mk('run-dead', deadPid())
    const live = await mk('run-live', process.pid)
    const fresh = await mk('run-fresh')
    const other = await mk('other-dead', deadPid())
    expect(await sweepStaleMounts(parent, 'run-')).toEqual([dead])
    for (const d of [live, fresh, other]) expect((await stat(d)).isDirectory()).toBe(true)
  })

  it('fills a tmpfs until ENOSPC, leaving nothing for a new file, and frees it when the ballast goes; a stale mount is swept (root)', async (ctx) => {
    const refused = await tmpfsRefused()
    if (refused !== undefined) {
      console.warn(`skipped: ${refused}`)
      ctx.skip()
      return
    }
    const parent = await mkdtemp(join(tmpdir(), 'shoal-jepsen-fill-'))
    dirs.push(parent)
    const run = join(parent, 'run-x')
    const dir = join(run, 'n1')
    await mkdir(dir, { recursive: true })
    expect(mountTmpfs(dir, 4)).toBeUndefined()
    expect(isTmpfsMount(dir)).toBe(true)
    expect(mountsUnder(parent)).toEqual([dir])
    await writeFile(join(dir, 'data'), Buffer.alloc(100_000, 1))
    const { bytes, free } = await fillDisk(dir)
    expect(free).toBeLessThanOrEqual(FULL_SLACK_BYTES)
    expect(bytes).toBeGreaterThan(3 << 20)
    await expect(writeFile(join(dir, 'more'), Buffer.alloc(8192, 1))).rejects.toThrow(/ENOSPC/)
    // Topping up a full disk adds nothing.
    expect((await fillDisk(dir)).bytes).toBeLessThan(8192)
    await rm(join(dir, BALLAST))
    expect((await diskSpace(dir)).free).toBeGreaterThan(3 << 20)
    await writeFile(join(dir, 'more'), Buffer.alloc(8192, 1))
    // Left mounted by a run whose process is gone: the sweep unmounts it and removes the folder.
    await writeFile(join(run, OWNER_FILE), String(deadPid()))
    expect(await sweepStaleMounts(parent, 'run-')).toEqual([run])
    expect(mountsUnder(parent)).toEqual([])
    await expect(stat(run)).rejects.toThrow(/ENOENT/)
  })
})

describe('disk nemesis: modes', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4', 'n5']

  it('takes the modes in turn, fill first for both, on the same minorities whatever the modes', () => {
    expect(diskModes('both')).toEqual(['fill', 'fsync'])
    expect(diskModes('fsync')).toEqual(['fsync'])
    expect(diskModes('fill')).toEqual(['fill'])
    const o = { seed: 15, nemeses: ['disk' as const], nodes, timeLimitMs: 60_000, faultMs: 5000, quietMs: 5000 }
    const both = schedule({ ...o, diskModes: diskModes('both') })
    expect(both.map(p => p.disk?.mode)).toEqual(['fill', 'fsync', 'fill', 'fsync', 'fill', 'fsync'])
    const fsync = schedule({ ...o, diskModes: ['fsync'] })
    expect(fsync.every(p => p.disk?.mode === 'fsync')).toBe(true)
    expect(fsync.map(p => p.nodes)).toEqual(both.map(p => p.nodes))
    expect(schedule(o).map(p => p.nodes)).toEqual(both.map(p => p.nodes))
    // Mixed with other kinds, only the disk windows count for the turn.
    expect(schedule({ ...o, nemeses: ['kill', 'disk'], diskModes: diskModes('both') }).map(p => p.disk?.mode ?? p.kind)).toEqual(['kill', 'fill', 'kill', 'fsync', 'kill', 'fill'])
  })

  it('ci-disk plans one fill and one fsync window after a short lead, the second waiting for the first\'s heal', () => {
    const ci = CI_SCHEDULES.find(s => s.name === 'ci-disk')!
    expect(ci).toMatchObject({ diskMode: 'both', diskWaitHeal: true })
    const plans = schedule({ seed: ci.seed!, nemeses: ci.nemeses!, nodes, timeLimitMs: ci.timeLimitMs!, faultMs: ci.faultMs!, quietMs: ci.quietMs!, leadMs: ci.leadMs!, diskModes: diskModes(ci.diskMode!) })
    expect(plans.map(p => [p.disk?.mode, p.start, p.end])).toEqual([['fill', 3000, 10_000], ['fsync', 14_000, 21_000]])
    for (const p of plans) expect(p.nodes!.length).toBeLessThanOrEqual(2)
  })

  it('sets the fsync fault rules on the window\'s peers and clears them at its end, counting the failures; a fill window without a tmpfs is skipped, saying why', async () => {
    const calls: Array<[string, DiskFaultRuleJson[]]> = []
    const injected = new Map<string, number>()
    const peer = (name: string): unknown => ({
      name,
      running: false, // samples say so without asking
      paused: false,
      pid: undefined,
      dataDir: '/nonexistent',
      url: 'http://127.0.0.1:9',
      diskFaults: async (rules: DiskFaultRuleJson[]) => {
        calls.push([name, rules])
        // The peer's count of failed operations: 5 before, 42 more by the time the rules are cleared.
        const n = (injected.get(name) ?? 5) + (rules.length === 0 ? 42 : 0)
        injected.set(name, n)
        return { disk: rules, diskFaultsInjected: n }
      }
    })
    const cluster = { peers: new Map(nodes.map(n => [n, peer(n)])) } as unknown as TestCluster
    const h = new History()
    const disk = new DiskNemesis(cluster, h, { sampleMs: 10, healBoundMs: 50, fillRefused: 'not root (uid 1000); mounting a tmpfs needs root' })
    expect(disk.refused('fill')).toMatch(/not root/)
    expect(disk.refused('fsync')).toBeUndefined()
    const nemesis = new Nemesis(cluster, h, () => {}, disk)
    const [fill, fsync] = schedule({ seed: 15, nemeses: ['disk'], nodes, timeLimitMs: 20_000, faultMs: 5000, quietMs: 5000, diskModes: ['fill', 'fsync'] })
    await nemesis.start(fill!)
    await nemesis.stop(fill!)
    expect(h.ops.map(o => [o.f, o.value])).toEqual([['skip-disk', { mode: 'fill', nodes: fill!.nodes, reason: 'not root (uid 1000); mounting a tmpfs needs root' }]])
    expect(calls).toEqual([])

    await nemesis.start(fsync!)
    await new Promise(resolve => setTimeout(resolve, 40))
    await nemesis.stop(fsync!)
    await disk.settle()
    const node = fsync!.nodes![0]!
    const f = h.ops.filter(o => o.process === 'nemesis').map(o => o.f)
    expect(f[1]).toBe('start-disk')
    expect(h.ops[1]!.value).toEqual({ mode: 'fsync', nodes: fsync!.nodes, healBoundMs: 50 })
    expect(f).toContain('disk-fault')
    expect(h.ops.find(o => o.f === 'disk-fault' && (o.value as { node: string }).node === node)!.value).toEqual({ node, rules: FSYNC_FAULT_RULES, injectedBefore: 5 })
    const stop = h.ops.find(o => o.f === 'stop-disk')!
    expect(stop.value).toEqual({ mode: 'fsync', nodes: fsync!.nodes, injected: Object.fromEntries(fsync!.nodes!.map(n => [n, 42])) })
    // Samples before, during and after the window (here: the fake peer is not running).
    const phases = new Set(h.ops.filter(o => o.f === 'disk-health').map(o => (o.value as { phase: string }).phase))
    expect([...phases].sort()).toEqual(['before', 'heal', 'window'])
    for (const n of fsync!.nodes!) expect(calls.filter(c => c[0] === n).map(c => c[1])).toEqual([FSYNC_FAULT_RULES, []])
    // The final heal clears every running peer's rules (none runs here).
    await disk.clearAll()
    expect(calls).toHaveLength(2 * fsync!.nodes!.length)
    await disk.close()
  })
})
