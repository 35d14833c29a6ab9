/** Durable file operations: every rename and create is followed by an fsync of its directory. */
import { open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { fsyncDir } from '../runtime/index.js'

/** Makes a directory's entries (creates, renames, unlinks) durable (one implementation, in runtime). */
export { fsyncDir }

/** Writes a new file and fsyncs it and its directory. */
export async function writeFileDurable (path: string, data: Uint8Array, syncDir = true): Promise<void> {
  const fh = await open(path, 'w', 0o600)
  try {
    let off = 0
    while (off < data.length) off += (await fh.write(data, off, data.length - off, off)).bytesWritten
    await fh.sync()
  } finally {
    await fh.close()
  }
  if (syncDir) await fsyncDir(dirname(path))
}

/** Replaces `path` atomically: readers see the old or the new content, never a mix. */
export async function writeFileAtomic (path: string, data: Uint8Array): Promise<void> {
  const tmp = path + '.tmp'
  await writeFileDurable(tmp, data, false)
  await rename(tmp, path)
  await fsyncDir(dirname(path))
}

export async function removeFiles (dir: string, paths: readonly string[]): Promise<void> {
  if (paths.length === 0) return
  for (const p of paths) await rm(p, { force: true })
  await fsyncDir(dir)
}
