/**
 * An in-memory FileSystem (src/runtime/filesystem.ts) that models what a disk keeps through a
 * power cut: crash() keeps of each file only the bytes synced (plus, when asked, a torn piece of
 * what was not), and of each directory only the entries its last syncDir() saw (a file created and
 * synced in a directory never synced vanishes; one removed since comes back). Faults can be
 * injected: the next appends or syncs fail with a given error (EIO, ENOSPC). Paths are
 * '/'-separated; the object survives a simulated restart (hand it to the restarted peer).
 */
import type { AppendFile, FileSystem } from '../../src/runtime/index.js'

interface MemFile { kind: 'file', data: Uint8Array, length: number, synced: number }
interface MemDir { kind: 'dir', entries: Map<string, MemNode>, durable: Map<string, MemNode> }
type MemNode = MemFile | MemDir

const errno = (code: string, path: string): Error => Object.assign(new Error(`${code}: ${path}`), { code })

export class MemoryFileSystem implements FileSystem {
  private root: MemDir = { kind: 'dir', entries: new Map(), durable: new Map() }
  /** Fault injection: while set, append() (write) or sync() (fsync) fails with it. */
  readonly faults: { append?: Error, sync?: Error } = {}
  /** While set, every sync() waits for it (a slow disk); see holdSyncs(). */
  private syncGate: Promise<void> | undefined
  /** Counters, for assertions. */
  readonly ops = { appends: 0, syncs: 0, dirSyncs: 0, unlinks: 0 }

  async mkdir (path: string): Promise<void> {
    let dir = this.root
    for (const name of parts(path)) {
      let next = dir.entries.get(name)
      if (next === undefined) {
        next = { kind: 'dir', entries: new Map(), durable: new Map() }
        dir.entries.set(name, next)
      }
      if (next.kind !== 'dir') throw errno('ENOTDIR', path)
      dir = next
    }
    await Promise.resolve()
  }

  async readdir (path: string): Promise<string[]> {
    const node = this.find(path)
    await Promise.resolve()
    if (node === undefined) return []
    if (node.kind !== 'dir') throw errno('ENOTDIR', path)
    return [...node.entries.keys()].sort()
  }

  async readFile (path: string): Promise<Uint8Array | undefined> {
    const node = this.find(path)
    await Promise.resolve()
    if (node === undefined) return undefined
    if (node.kind !== 'file') throw errno('EISDIR', path)
    return node.data.slice(0, node.length)
  }

  async openAppend (path: string): Promise<AppendFile> {
    const [dir, name] = this.parent(path)
    let f = dir.entries.get(name)
    if (f === undefined) {
      f = { kind: 'file', data: new Uint8Array(256), length: 0, synced: 0 }
      dir.entries.set(name, f)
    }
    if (f.kind !== 'file') throw errno('EISDIR', path)
    await Promise.resolve()
    const file = f
    let closed = false
    return {
      append: async (data: Uint8Array): Promise<void> => {
        if (closed) throw errno('EBADF', path)
        this.ops.appends++
        await Promise.resolve()
        if (this.faults.append !== undefined) throw this.faults.append
        if (file.length + data.length > file.data.length) {
          const grown = new Uint8Array(Math.max(file.data.length * 2, file.length + data.length))
          grown.set(file.data.subarray(0, file.length))
          file.data = grown
        }
        file.data.set(data, file.length)
        file.length += data.length
      },
      sync: async (): Promise<void> => {
        if (closed) throw errno('EBADF', path)
        this.ops.syncs++
        await Promise.resolve()
        while (this.syncGate !== undefined) await this.syncGate
        if (this.faults.sync !== undefined) throw this.faults.sync
        file.synced = file.length
      },
      close: async (): Promise<void> => { closed = true; await Promise.resolve() }
    }
  }

  async unlink (path: string): Promise<void> {
    const [dir, name] = this.parent(path, false)
    this.ops.unlinks++
    dir?.entries.delete(name)
    await Promise.resolve()
  }

  async syncDir (path: string): Promise<void> {
    const node = this.find(path)
    this.ops.dirSyncs++
    await Promise.resolve()
    if (node === undefined) throw errno('ENOENT', path)
    if (node.kind !== 'dir') throw errno('ENOTDIR', path)
    node.durable = new Map(node.entries)
  }

  /** Holds every sync() (of files) until the returned function is called: a disk slow to sync. */
  holdSyncs (): () => void {
    let release = (): void => {}
    const gate = new Promise<void>(resolve => { release = resolve })
    this.syncGate = gate
    return () => {
      if (this.syncGate === gate) this.syncGate = undefined
      release()
    }
  }

  /**
   * A power cut: every directory goes back to the entries its last syncDir saw, every file to its
   * synced bytes plus `tornBytes(path, unsynced)` of the rest (default none). The root directory
   * itself is taken as durable (the data directory existed before the peer ran).
   */
  crash (opts: { tornBytes?: (path: string, unsynced: number) => number } = {}): void {
    const revert = (dir: MemDir, path: string, isRoot: boolean): MemDir => {
      const entries = new Map<string, MemNode>()
      for (const [name, node] of isRoot ? dir.entries : dir.durable) {
        const p = `${path}/${name}`
        if (node.kind === 'dir') {
          entries.set(name, revert(node, p, false))
        } else {
          const unsynced = node.length - node.synced
          const keep = node.synced + Math.max(0, Math.min(unsynced, opts.tornBytes?.(p, unsynced) ?? 0))
          entries.set(name, { kind: 'file', data: node.data.slice(0, keep), length: keep, synced: keep })
        }
      }
      return { kind: 'dir', entries, durable: new Map(entries) }
    }
    this.root = revert(this.root, '', true)
  }

  /** Every file under `path` (recursively), with its size: for assertions. */
  files (path = ''): Map<string, number> {
    const out = new Map<string, number>()
    const walk = (node: MemNode | undefined, p: string): void => {
      if (node === undefined) return
      if (node.kind === 'file') { out.set(p, node.length); return }
      for (const [name, child] of node.entries) walk(child, `${p}/${name}`)
    }
    walk(path === '' ? this.root : this.find(path), path)
    return out
  }

  /** Overwrites bytes of a file in place (synced): a test's bit rot. */
  corrupt (path: string, at: number, bytes: Uint8Array): void {
    const node = this.find(path)
    if (node?.kind !== 'file') throw errno('ENOENT', path)
    node.data.set(bytes, at)
  }

  private find (path: string): MemNode | undefined {
    let node: MemNode = this.root
    for (const name of parts(path)) {
      if (node.kind !== 'dir') return undefined
      const next: MemNode | undefined = node.entries.get(name)
      if (next === undefined) return undefined
      node = next
    }
    return node
  }

  private parent (path: string, mustExist = true): [MemDir, string] {
    const ps = parts(path)
    const name = ps.pop()
    const dir = this.find(ps.join('/'))
    if (name === undefined || dir === undefined || dir.kind !== 'dir') {
      if (mustExist || name === undefined) throw errno('ENOENT', path)
      return [{ kind: 'dir', entries: new Map(), durable: new Map() }, name]
    }
    return [dir, name]
  }
}

function parts (path: string): string[] { return path.split('/').filter(p => p !== '' && p !== '.') }
