/**
 * The backup directory on disk: files written whole or not at all (a temporary name, fsync,
 * rename, fsync of the directory, as storage writes its MANIFEST), the manifest written last,
 * and the check a restore runs before it writes anything: every file there, of the size the
 * manifest says, with its SHA-256.
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fsyncDir } from '../runtime/index.js'
import { BackupCorruptError } from './errors.js'
import { MANIFEST_FILE, parseManifest, type BackupManifest, type ManifestFile } from './format.js'

/** Suffix of a file being written; a directory holding one is a backup that did not finish. */
export const TEMP_SUFFIX = '.partial'

/**
 * A file written under a temporary name and renamed into place once synced: a crash or an
 * error leaves no file at `path`, never a short one. Counts its bytes and hashes them on the way.
 */
export class AtomicFile {
  bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private readonly temp: string
  private done = false

  private constructor (readonly path: string, private readonly handle: FileHandle) {
    this.temp = path + TEMP_SUFFIX
  }

  /** Creates `path`'s temporary file; fails if `path` or the temporary file exists. */
  static async create (path: string): Promise<AtomicFile> {
    try {
      await stat(path)
      throw new Error(`${path} exists; a backup never overwrites a file`)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    return new AtomicFile(path, await open(path + TEMP_SUFFIX, 'wx', 0o644))
  }

  async write (chunk: string | Uint8Array): Promise<void> {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    this.hash.update(buf)
    this.bytes += buf.length
    let off = 0
    while (off < buf.length) {
      const { bytesWritten } = await this.handle.write(buf, off, buf.length - off)
      off += bytesWritten
    }
  }

  /** Syncs, closes and renames into place (then syncs the directory); returns the hex SHA-256. */
  async commit (): Promise<string> {
    if (this.done) throw new Error(`${this.path} was already committed or aborted`)
    this.done = true
    await this.handle.sync()
    await this.handle.close()
    await rename(this.temp, this.path)
    await fsyncDir(dirname(this.path))
    return this.hash.digest('hex')
  }

  /** Closes and removes the temporary file (after a failure); never throws. */
  async abort (): Promise<void> {
    if (this.done) return
    this.done = true
    await this.handle.close().catch(() => {})
    await rm(this.temp, { force: true }).catch(() => {})
  }
}

/** Writes manifest.json atomically: the last file of a backup, so its presence means "finished". */
export async function writeManifest (dir: string, manifest: BackupManifest): Promise<void> {
  const text = JSON.stringify(manifest, null, 2) + '\n'
  // The check a restore runs: a backup never writes a manifest its restore would refuse.
  parseManifest(text)
  const file = await AtomicFile.create(join(dir, MANIFEST_FILE))
  try {
    await file.write(text)
    await file.commit()
  } catch (err) {
    await file.abort()
    throw err
  }
}

/** Reads and checks DIR/manifest.json (BackupCorruptError when missing or malformed). */
export async function readManifest (dir: string): Promise<BackupManifest> {
  let text: string
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BackupCorruptError(MANIFEST_FILE, `is missing in ${dir}: not a backup, or a backup that did not finish (the manifest is written last)`)
    }
    throw new BackupCorruptError(MANIFEST_FILE, `cannot be read: ${(err as Error).message}`)
  }
  return parseManifest(text)
}

/** The hex SHA-256 of a file, read as a stream (bounded memory). */
export async function sha256File (path: string, onBytes?: (n: number) => void): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer)
    onBytes?.((chunk as Buffer).length)
  }
  return hash.digest('hex')
}

/**
 * Checks one file of the backup against its manifest entry: present, of its size, with its
 * SHA-256. Throws BackupCorruptError naming the file (relative to the backup directory).
 */
export async function verifyFile (dir: string, entry: ManifestFile, onBytes?: (n: number) => void): Promise<void> {
  const path = join(dir, entry.file)
  let size: number
  try {
    size = (await stat(path)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupCorruptError(entry.file, 'is missing')
    throw new BackupCorruptError(entry.file, `cannot be read: ${(err as Error).message}`)
  }
  if (size < entry.bytes) throw new BackupCorruptError(entry.file, `is truncated: ${size} bytes, the manifest says ${entry.bytes}`)
  if (size > entry.bytes) throw new BackupCorruptError(entry.file, `is longer than written: ${size} bytes, the manifest says ${entry.bytes}`)
  const sum = await sha256File(path, onBytes)
  if (sum !== entry.sha256) throw new BackupCorruptError(entry.file, `has SHA-256 ${sum}, the manifest says ${entry.sha256}: it was changed or damaged since the backup`)
}

/**
 * Reads the manifest (unless `opts.manifest`, already read from `dir`, is given) and checks every
 * file it lists (see verifyFile), before a restore writes anything. `onFile` is told of each file
 * checked (for progress). Returns the manifest.
 */
export async function verifyBackup (dir: string, opts: { manifest?: BackupManifest, onBytes?: (n: number) => void, onFile?: (entry: ManifestFile) => void } = {}): Promise<BackupManifest> {
  const manifest = opts.manifest ?? await readManifest(dir)
  for (const space of manifest.spaces) {
    for (const entry of space.files) {
      await verifyFile(dir, entry, opts.onBytes)
      opts.onFile?.(entry)
    }
  }
  return manifest
}
