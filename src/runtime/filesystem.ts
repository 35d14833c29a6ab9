/**
 * The filesystem as durable state sees it: the few operations an append-only log needs, each
 * with the durability it gives spelled out. A real peer passes `nodeFileSystem` (node:fs); tests
 * and the simulator pass an in-memory one (test/sim/memory-fs.ts) that loses what was not synced
 * when it "crashes", so the same code meets power loss in a test.
 *
 * Durability, as on Linux: appended bytes survive a crash or power loss only once `sync()` of
 * their file resolved; a created or removed file's directory entry only once `syncDir()` of its
 * directory resolved (a new file synced but its directory not can vanish).
 */
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'

/** A file opened for appending. */
export interface AppendFile {
  /** Appends `data` at the end of the file (not durable until sync()). */
  append(data: Uint8Array): Promise<void>
  /** fdatasync: everything appended so far survives a crash or power loss. */
  sync(): Promise<void>
  close(): Promise<void>
}

export interface FileSystem {
  /** Creates a directory and any missing parents; no error when it exists. */
  mkdir(path: string): Promise<void>
  /** The names in a directory; [] when it does not exist. */
  readdir(path: string): Promise<string[]>
  /** A whole file; undefined when it does not exist. */
  readFile(path: string): Promise<Uint8Array | undefined>
  /** Opens a file for appending, creating it (mode 0600) when missing. */
  openAppend(path: string): Promise<AppendFile>
  /** Removes a file; no error when it is gone. */
  unlink(path: string): Promise<void>
  /** fsync of a directory: the files created and removed in it so far stay so after a crash. */
  syncDir(path: string): Promise<void>
}

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException | null)?.code === 'ENOENT'

class NodeAppendFile implements AppendFile {
  constructor (private readonly fh: FileHandle) {}

  async append (data: Uint8Array): Promise<void> {
    let off = 0
    // Opened with 'a': every write goes to the end whatever the position.
    while (off < data.length) off += (await this.fh.write(data, off, data.length - off)).bytesWritten
  }

  async sync (): Promise<void> { await this.fh.datasync() }

  async close (): Promise<void> { await this.fh.close() }
}

/** node:fs, for a real peer. */
export const nodeFileSystem: FileSystem = {
  async mkdir (path) { await mkdir(path, { recursive: true, mode: 0o700 }) },
  async readdir (path) {
    try {
      return await readdir(path)
    } catch (err) {
      if (isMissing(err)) return []
      throw err
    }
  },
  async readFile (path) {
    try {
      return await readFile(path)
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  },
  async openAppend (path) { return new NodeAppendFile(await open(path, 'a', 0o600)) },
  async unlink (path) { await rm(path, { force: true }) },
  async syncDir (path) { await fsyncDir(path) }
}

/** Makes a directory's entries (creates, renames, unlinks) durable: fsync of the directory. */
export async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
