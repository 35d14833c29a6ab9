/**
 * Durable file operations over the peer's FileSystem (src/runtime/filesystem.ts): every rename and
 * create is followed by an fsync of its directory.
 */
import { dirname, isAbsolute, relative, resolve } from 'node:path'
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
 * already synced inside it (found by the storage schedules of the simulator, issue 13). With
 * `root`, every directory from `dir`'s parent up to `root` is synced, created now or not: an
 * earlier open may have created them and failed before its sync (a directory fsync that has
 * nothing to write costs next to nothing).
 */
export async function mkdirDurable (fs: FileSystem, dir: string, root?: string): Promise<void> {
  if (root !== undefined) {
    const rel = relative(root, dir)
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new Error(`mkdirDurable: ${dir} is not under ${root}`)
    await fs.mkdir(dir)
    const top = resolve(root)
    for (let d = dirname(dir); ; d = dirname(d)) {
      await fs.syncDir(d)
      if (resolve(d) === top || dirname(d) === d) break
    }
    return
  }
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
