/**
 * The disk nemesis's pieces without a cluster: the ballast fills a tmpfs to ENOSPC and only a
 * tmpfs, and the sweep of what a crashed run left behind (unmounts and removes folders whose
 * owner is gone, leaves a live run's alone). The mounting parts need root and say so otherwise.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { diskSpace, isTmpfsMount, mountsUnder, mountTmpfs, OWNER_FILE, sweepStaleMounts, unmount } from '../cluster/tmpfs.js'
import { FULL_SLACK_BYTES } from './checkers/disk.js'
import { BALLAST, fillDisk, tmpfsRefused } from './disk.js'

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
