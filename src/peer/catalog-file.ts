import { join } from 'node:path'
import type { Catalog } from '../placement/index.js'
import { nodeFileSystem, type FileSystem, type Logger } from '../runtime/index.js'
import { readTextFile, writeFileAtomic } from '../storage/fsutil.js'

/**
 * Keeps a copy of the space catalog in the data dir, so a peer that restarts alone (a one-peer
 * cluster, or the first of a cluster to come back) still knows its spaces; push-pull with the
 * others then merges whatever changed meanwhile. Writes are coalesced: at most one in flight,
 * and one more if something changed during it. Each replaces the file atomically and durably
 * (temporary file, fsync, rename, directory fsync: a power cut leaves the old catalog or the new).
 */
export class CatalogFile {
  private readonly path: string
  private writing: Promise<void> | undefined
  private again = false

  constructor (dataDir: string, private readonly catalog: Catalog, private readonly log: Logger, private readonly fs: FileSystem = nodeFileSystem) {
    this.path = join(dataDir, 'catalog.json')
  }

  /** Merges the saved catalog, if any, into the live one. */
  async load (): Promise<number> {
    let text: string
    try {
      text = await readTextFile(this.fs, this.path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw err
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new Error(`${this.path} is not valid JSON (${(err as Error).message}); move it away to start with the catalog the cluster holds`)
    }
    const entries = (parsed as { e?: unknown }).e
    if (!Array.isArray(entries)) throw new Error(`${this.path} does not hold a catalog`)
    return this.catalog.mergeEntries(entries, 'catalog file')
  }

  /** Schedules a save of the current catalog. */
  save (): void {
    if (this.writing !== undefined) {
      this.again = true
      return
    }
    this.writing = this.write().catch((err: unknown) => {
      this.log.error({ err, path: this.path }, 'could not save the space catalog')
    }).finally(() => {
      this.writing = undefined
      if (this.again) {
        this.again = false
        this.save()
      }
    })
  }

  /** Waits for pending saves (on stop). */
  async flush (): Promise<void> {
    while (this.writing !== undefined) await this.writing
  }

  private async write (): Promise<void> {
    const e = this.catalog.entries().map(({ def, version, dropped }) => ({ ...def, version, dropped }))
    await writeFileAtomic(this.fs, this.path, Buffer.from(JSON.stringify({ v: 1, e })))
  }
}
