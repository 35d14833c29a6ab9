/**
 * Small tmpfs mounts for tests that fill a peer's disk (the Jepsen suite's disk nemesis): mount,
 * unmount, the mounts under a folder, free space, and a sweep of the mounts a crashed run left
 * behind. Mounting needs root (or CAP_SYS_ADMIN); `mountTmpfs` answers why it could not, so a
 * caller can say plainly that it skips.
 *
 * A folder that holds mounts is marked with its owner's pid (`writeOwner`): `sweepStaleMounts`
 * unmounts and removes only folders whose owner is gone, never a run still going in another
 * process (integration tests and Jepsen runs may share the machine).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { join, resolve, sep } from 'node:path'

/** The owner marker written into a folder that holds mounts. */
export const OWNER_FILE = 'owner.pid'

/** Mounts a tmpfs of `sizeMiB` on `dir` (which must exist); undefined when mounted, else why not. */
export function mountTmpfs (dir: string, sizeMiB: number): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir], { stdio: 'pipe' })
    return undefined
  } catch (err) {
    return ((err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message).replace(/\s+/g, ' ')
  }
}

/** Unmounts `dir`; a mount still busy (a process not yet reaped) is detached (`umount -l`). Never throws. */
export function unmount (dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' })
  } catch {
    try { execFileSync('umount', ['-l', dir], { stdio: 'pipe' }) } catch {}
  }
}

/** The path as the kernel lists it (symlinks resolved), or as given when it does not exist. */
function real (dir: string): string {
  try { return realpathSync(dir) } catch { return resolve(dir) }
}

/** /proc/self/mounts escapes blanks and backslashes in octal (\040). */
function unescapeMount (s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** The mount points at or below `dir` (deepest first, the order to unmount them in). */
export function mountsUnder (dir: string): string[] {
  let text: string
  try { text = readFileSync('/proc/self/mounts', 'utf8') } catch { return [] }
  const root = real(dir)
  const out: string[] = []
  for (const line of text.split('\n')) {
    const point = line.split(' ')[1]
    if (point === undefined) continue
    const p = unescapeMount(point)
    if (p === root || p.startsWith(root + sep)) out.push(p)
  }
  return out.sort((a, b) => b.length - a.length)
}

/** Whether `dir` is itself the mount point of a tmpfs (what a ballast may be written into). */
export function isTmpfsMount (dir: string): boolean {
  let text: string
  try { text = readFileSync('/proc/self/mounts', 'utf8') } catch { return false }
  const root = real(dir)
  return text.split('\n').some(line => {
    const [, point, type] = line.split(' ')
    return point !== undefined && type === 'tmpfs' && unescapeMount(point) === root
  })
}

/** Free bytes for an unprivileged writer of the filesystem holding `dir`, and its size. */
export async function diskSpace (dir: string): Promise<{ free: number, size: number }> {
  const s = await statfs(dir)
  return { free: s.bavail * s.bsize, size: s.blocks * s.bsize }
}

/** Marks `dir` as owned by this process (see sweepStaleMounts). */
export async function writeOwner (dir: string): Promise<void> {
  await writeFile(join(dir, OWNER_FILE), String(process.pid))
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * For every folder `<parent>/<prefix>*` whose owner (OWNER_FILE) is no longer running, or that has
 * no owner file a minute after it was made: unmounts every mount below it and removes it. What a crashed or killed run left
 * behind; a folder of a run still going is left alone. Returns the folders swept.
 */
export async function sweepStaleMounts (parent: string, prefix: string): Promise<string[]> {
  const swept: string[] = []
  let names: string[]
  try { names = await readdir(parent) } catch { return swept }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue
    const dir = join(parent, name)
    const owner = Number((await readFile(join(dir, OWNER_FILE), 'utf8').catch(() => '')).trim())
    if (Number.isInteger(owner) && owner > 0 && alive(owner)) continue
    if (owner === 0) {
      // No owner yet: a run that has just made its folder, unless the folder is old.
      const made = await stat(dir).then(s => s.mtimeMs, () => 0)
      if (Date.now() - made < 60_000) continue
    }
    for (const m of mountsUnder(dir)) unmount(m)
    if (mountsUnder(dir).length > 0) continue // detached but still listed: leave the folder
    await rm(dir, { recursive: true, force: true }).catch(() => {})
    swept.push(dir)
  }
  return swept
}
