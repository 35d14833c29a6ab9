/**
 * The filesystem as durable state sees it: the operations the WAL, segments, manifests and hint
 * logs need, each with the durability it gives spelled out. A real peer passes `nodeFileSystem`
 * (node:fs); tests and the simulator pass an in-memory one (test/sim/memory-fs.ts) that loses what
 * was not synced when it "crashes", tears writes, fills up and fails, so the same storage code
 * meets power loss and disk faults in a test (issue 13).
 *
 * Durability, as on Linux: written bytes survive a crash or power loss only once `sync()` or
 * `datasync()` of their file resolved; a created, renamed or removed file's directory entry only
 * once `syncDir()` of its directory resolved (a new file synced but its directory not can vanish;
 * a rename not followed by a directory sync can be undone).
 *
 * Errors are node's: an Error with `code` (ENOENT, ENOSPC, EIO, EEXIST, ...), so callers classify a
 * simulated fault exactly as a real one.
 */
import { existsSync, readSync } from 'node:fs'
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'

/** A file opened for appending. */
export interface AppendFile {
  /** Appends `data` at the end of the file (not durable until sync()). */
  append(data: Uint8Array): Promise<void>
  /** fdatasync: everything appended so far survives a crash or power loss. */
  sync(): Promise<void>
  close(): Promise<void>
}

/**
 * An open file with positional reads and writes: the subset of node's FileHandle storage uses, so
 * node's own handle is one (nodeFileSystem wraps it only for readSync, which needs the fd).
 */
export interface RandomAccessFile {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>
  /** Writes `buffers` back to back from `position` (may write less: check bytesWritten). */
  writev(buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }>
  /** fsync: the content and the size survive a crash. */
  sync(): Promise<void>
  /** fdatasync: the content survives a crash (the size too when it grew). */
  datasync(): Promise<void>
  truncate(length: number): Promise<void>
  stat(): Promise<{ size: number }>
  close(): Promise<void>
}

/** How a file is opened, as node's flags: read; read-write; create or truncate; create, must not exist. */
export type OpenFlags = 'r' | 'r+' | 'w' | 'wx'

export interface FileSystem {
  /** Creates a directory and any missing parents; no error when it exists. */
  mkdir(path: string): Promise<void>
  /** The names in a directory; [] when it does not exist. */
  readdir(path: string): Promise<string[]>
  /** A whole file; undefined when it does not exist. */
  readFile(path: string): Promise<Uint8Array | undefined>
  /** Opens a file for appending, creating it (mode 0600) when missing. */
  openAppend(path: string): Promise<AppendFile>
  /** Opens a file for positional I/O ('w' and 'wx' create it, mode 0600). ENOENT when missing for 'r'/'r+'. */
  open(path: string, flags: OpenFlags): Promise<RandomAccessFile>
  /**
   * Reads `length` bytes at `position` of an open file synchronously, in place: a small read from
   * the OS page cache costs ~3.5 µs so, ~35 µs through libuv's pool (segment-file.ts). Returns the
   * bytes read (fewer at the end of the file).
   */
  readSync(file: RandomAccessFile, buffer: Uint8Array, offset: number, length: number, position: number): number
  /**
   * Whether a path exists, synchronously: for status answers that must not wait (the damage log
   * drops a report an operator deleted when it is listed).
   */
  existsSync(path: string): boolean
  /** Size and kind of a path; undefined when it does not exist. */
  stat(path: string): Promise<{ size: number, isDirectory: boolean } | undefined>
  /** Renames `from` over `to` (atomic; durable once both directories are synced). */
  rename(from: string, to: string): Promise<void>
  /** Copies a file (the copy is not synced). */
  copyFile(from: string, to: string): Promise<void>
  /** Removes a file; no error when it is gone. */
  unlink(path: string): Promise<void>
  /** Removes a directory and everything under it; no error when it is gone. */
  removeTree(path: string): Promise<void>
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
  async open (path, flags) { return new NodeFile(await open(path, flags, 0o600)) },
  readSync (file, buffer, offset, length, position) {
    if (!(file instanceof NodeFile)) throw new TypeError('nodeFileSystem.readSync: not a file this filesystem opened')
    return readSync(file.fh.fd, buffer, offset, length, position)
  },
  existsSync (path) { return existsSync(path) },
  async stat (path) {
    try {
      const st = await stat(path)
      return { size: st.size, isDirectory: st.isDirectory() }
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  },
  async rename (from, to) { await rename(from, to) },
  async copyFile (from, to) { await copyFile(from, to) },
  async unlink (path) { await rm(path, { force: true }) },
  async removeTree (path) { await rm(path, { recursive: true, force: true }) },
  async syncDir (path) { await fsyncDir(path) }
}

/** node's FileHandle as a RandomAccessFile (the handle is kept for readSync's fd). */
class NodeFile implements RandomAccessFile {
  constructor (readonly fh: FileHandle) {}
  async read (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> { return await this.fh.read(buffer, offset, length, position) }
  async write (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> { return await this.fh.write(buffer, offset, length, position) }
  async writev (buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }> { return await this.fh.writev(buffers, position) }
  async sync (): Promise<void> { await this.fh.sync() }
  async datasync (): Promise<void> { await this.fh.datasync() }
  async truncate (length: number): Promise<void> { await this.fh.truncate(length) }
  async stat (): Promise<{ size: number }> { return { size: (await this.fh.stat()).size } }
  async close (): Promise<void> { await this.fh.close() }
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
