import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger, PeerAddress } from '../runtime/index.js'

/** At most this many peers are remembered: enough to find a cluster again, small to write. */
const MAX_KNOWN = 64
/** Writes are coalesced to at most one per this period. */
const SAVE_INTERVAL_MS = 5000

/**
 * The peers this peer last knew alive, kept in `<data-dir>/peers.json`. On restart they are
 * joined like bootstrap addresses, so a peer that was started without --bootstrap (the first of
 * its cluster) still finds the others again, and knows that it must hear from them before its
 * own data counts (Swim.hasSynced).
 */
export class KnownPeers {
  private readonly path: string
  private timer: NodeJS.Timeout | undefined
  private pending: PeerAddress[] | undefined
  private last = ''

  constructor (dataDir: string, private readonly log: Logger) {
    this.path = join(dataDir, 'peers.json')
  }

  async load (): Promise<PeerAddress[]> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    try {
      const parsed = JSON.parse(text) as unknown
      if (!Array.isArray(parsed)) return []
      return parsed.slice(0, MAX_KNOWN).flatMap((p: unknown) => {
        const { id, addrs } = (p ?? {}) as { id?: unknown, addrs?: unknown }
        if (typeof id !== 'string' || !Array.isArray(addrs) || !addrs.every(a => typeof a === 'string')) return []
        return [{ id, addrs: addrs.slice(0, 16) as string[] }]
      })
    } catch {
      this.log.warn({ path: this.path }, 'ignoring an unreadable list of known peers')
      return []
    }
  }

  /** Remembers the given live peers (written within SAVE_INTERVAL_MS). */
  update (peers: PeerAddress[]): void {
    this.pending = peers.slice(0, MAX_KNOWN)
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.flush()
    }, SAVE_INTERVAL_MS)
    this.timer.unref()
  }

  async flush (): Promise<void> {
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined }
    const peers = this.pending
    this.pending = undefined
    if (peers === undefined) return
    const text = JSON.stringify(peers.map(p => ({ id: p.id, addrs: p.addrs })))
    // An empty view (everyone else gone) is not worth forgetting the cluster over.
    if (text === this.last || peers.length === 0) return
    try {
      await writeFile(this.path + '.tmp', text, { mode: 0o600 })
      await rename(this.path + '.tmp', this.path)
      this.last = text
    } catch (err) {
      this.log.warn({ err, path: this.path }, 'could not save the list of known peers')
    }
  }
}
