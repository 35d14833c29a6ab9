/**
 * Durable file operations over the peer's FileSystem (src/runtime/filesystem.ts): every rename and
 * create is followed by an fsync of its directory.
 */
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path'
import type { FileSystem, RandomAccessFile } from '../runtime/index.js'

/** Writes a new file and fsyncs it and its directory. */
export async function writeFileDurable (fs: FileSystem, path: string, data: Uint8Array, syncDir = true): Promise<void> {
  const fh = await fs.open(path, 'w')
  try {
    await writeAllAt(fh, data, 0)
    await fh.sync()
  } finally {
    await fh.close()
  }
  if (syncDir) await fs.syncDir(dirname(path))
}

/** Replaces `path` atomically: readers see the old or the new content, never a mix. */
export async function writeFileAtomic (fs: FileSystem, path: string, data: Uint8Array): Promise<void> {
  const tmp = path + '.tmp'
  await writeFileDurable(fs, tmp, data, false)
  await fs.rename(tmp, path)
  await fs.syncDir(dirname(path))
}

/**
 * Creates `dir` and any missing parents, each made durable in its parent (the parent's directory
 * fsynced): without it a power cut can take a new partition's directory away with the WAL files
 * already synced inside it (found by the storage schedules of the simulator, issue 13).
 */
export async function mkdirDurable (fs: FileSystem, dir: string): Promise<void> {
  const missing: string[] = []
  for (let d = dir; (await fs.stat(d)) === undefined; d = dirname(d)) {
    missing.push(d)
    if (dirname(d) === d) break
  }
  if (missing.length === 0) return
  await fs.mkdir(dir)
  // Deepest first: a directory's own entries are synced before its entry in its parent.
  for (const d of missing) await fs.syncDir(dirname(d))
}

/**
 * The directories under a data directory whose entries are durable, for one process: `ensure(dir)`
 * creates a partition's directory and fsyncs each parent up to the data directory, once per
 * directory per process (whether the directory was there or not: an earlier open may have made it
 * and failed before its sync, seed 13 of the storage schedule). A directory's fsyncs are group
 * committed: a thousand partitions opened at once cost a few fsyncs of their space's directory,
 * not a thousand (a 1,024-partition space's first write timed out without).
 */
export class DurableDirs {
  /** Directories whose entry in their parent is durable. */
  private readonly durable = new Set<string>()
  /** Directories this process made (until forgotten): their entries are newer than fsyncs begun before. */
  private readonly made = new Set<string>()
  private readonly syncs = new Map<string, { running: Promise<void> | undefined, queued: Promise<void> | undefined }>()
  private readonly root: string

  constructor (private readonly fs: FileSystem, root: string) {
    this.root = resolve(root)
  }

  async ensure (dir: string): Promise<void> {
    const target = resolve(dir)
    const rel = relative(this.root, target)
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new Error(`DurableDirs: ${dir} is not under ${this.root}`)
    if (this.durable.has(target)) return
    const levels: string[] = []
    for (let d = target; d !== this.root && !this.durable.has(d); d = dirname(d)) levels.push(d)
    // `made` is read after the stat: a concurrent call of this process adds what it will make to
    // `made` before its mkdir, so a directory seen here because that mkdir ran is seen as made.
    if ((await this.fs.stat(target)) !== undefined && levels.every(d => !this.made.has(d))) {
      // There before this process (a restart): every entry on the way is older than any fsync
      // this process starts, so one already in flight covers it, and the levels need no order:
      // synced at once. A restart opening 16 partitions waited for six directory fsyncs one
      // after another (each level: the one in flight, then the next), and right after a crash,
      // with the disk busy, a directory fsync here took 360 ms.
      await Promise.all(levels.map(async d => { await this.syncDir(dirname(d), true) }))
      for (const d of levels) this.durable.add(d)
      return
    }
    for (const d of levels) if ((await this.fs.stat(d)) === undefined) this.made.add(d)
    await this.fs.mkdir(dir)
    // Made now (or earlier by this process): deepest first, each entry synced after those below it.
    for (const d of levels) {
      await this.syncDir(dirname(d))
      this.durable.add(d)
    }
  }

  /** `dir` and what was under it are gone (a dropped space or partition): made again, they are synced again. */
  forget (dir: string): void {
    const gone = resolve(dir)
    for (const d of [...this.durable]) if (d === gone || d.startsWith(gone + sep)) this.durable.delete(d)
    for (const d of [...this.made]) if (d === gone || d.startsWith(gone + sep)) this.made.delete(d)
  }

  /**
   * fsync of `dir`, group committed: with none in flight one starts; with one in flight (it may
   * have begun before the caller's entry was made) the caller waits for the next, shared by all
   * who arrive meanwhile. `joinRunning`: the caller's entries are older than any fsync in flight
   * (they were there before this process), so the one in flight will do.
   */
  private async syncDir (dir: string, joinRunning = false): Promise<void> {
    let st = this.syncs.get(dir)
    if (st === undefined) {
      st = { running: undefined, queued: undefined }
      this.syncs.set(dir, st)
    }
    const state = st
    if (joinRunning && state.running !== undefined) return await state.running
    const start = (): Promise<void> => {
      const running: Promise<void> = this.fs.syncDir(dir).finally(() => {
        state.running = undefined
        if (state.queued === undefined && this.syncs.get(dir) === state) this.syncs.delete(dir)
      })
      state.running = running
      return running
    }
    if (state.running === undefined) return await start()
    state.queued ??= state.running.catch(() => {}).then(async () => {
      state.queued = undefined
      return await start()
    })
    return await state.queued
  }
}

export async function removeFiles (fs: FileSystem, dir: string, paths: readonly string[]): Promise<void> {
  if (paths.length === 0) return
  for (const p of paths) await fs.unlink(p)
  await fs.syncDir(dir)
}

/** Writes all of `data` at `position` (a write may be short: continue where it stopped). */
export async function writeAllAt (fh: RandomAccessFile, data: Uint8Array, position: number): Promise<void> {
  let off = 0
  while (off < data.length) off += (await fh.write(data, off, data.length - off, position + off)).bytesWritten
}

/** node's ENOENT for `path`: where the FileSystem answers "none" and a caller expects node's error. */
export function missingFile (path: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file or directory, ${syscall} '${path}'`), { code: 'ENOENT', syscall, path })
}

/** A whole file as text; throws ENOENT (as node's readFile does) when it does not exist. */
export async function readTextFile (fs: FileSystem, path: string): Promise<string> {
  const bytes = await fs.readFile(path)
  if (bytes === undefined) throw missingFile(path, 'open')
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
}
