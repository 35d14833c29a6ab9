/**
 * An in-memory FileSystem (src/runtime/filesystem.ts) that models what a disk keeps through a
 * power cut, and what a failing or full disk does:
 *
 * - crash(): every file goes back to the bytes its last sync()/datasync() saw, plus, when asked,
 *   a prefix of the writes made since (the last of them torn at any byte: `tornBytes`); every
 *   directory to the entries its last syncDir() saw (a file created and synced in a directory never
 *   synced vanishes; one removed or renamed away since comes back). Handles opened before the crash
 *   and filesystems from process() fail from then on: the process that held them is gone, and its
 *   unfinished work must not reach the disk the restarted peer reads.
 * - capacityBytes: a write that would take the files past it fails with ENOSPC (a full disk).
 * - fail(): the next matching operations (write, sync, open, read, rename, ...) fail with a code
 *   (EIO, ENOSPC), on every path or those matching a pattern, a number of times or until cleared.
 *
 * Paths are '/'-separated; the object survives a simulated restart (hand its process() to the
 * restarted peer).
 */
import { DiskFaultRules, diskFaultError, type AppendFile, type DiskFaultRule, type DiskOp, type FileSystem, type OpenFlags, type RandomAccessFile } from '../../src/runtime/index.js'

/** A write not yet synced, or a truncation: replayed in order, in part, by a crash. */
type PendingOp = { kind: 'write', at: number, bytes: Uint8Array } | { kind: 'truncate', length: number }
interface MemFile { kind: 'file', data: Uint8Array, length: number, durable: Uint8Array, pending: PendingOp[] }
interface MemDir { kind: 'dir', entries: Map<string, MemNode>, durable: Map<string, MemNode> }
type MemNode = MemFile | MemDir

/** What fail() takes: the runtime's disk fault rules (src/runtime/disk-faults.ts). */
export type { DiskFaultRule as FaultRule, DiskOp } from '../../src/runtime/index.js'

const errno = diskFaultError

export class MemoryFileSystem implements FileSystem {
  private root: MemDir = { kind: 'dir', entries: new Map(), durable: new Map() }
  /** Legacy fault injection: while set, append()/write() or sync() fails with it. */
  readonly faults: { append?: Error, sync?: Error } = {}
  private readonly rules = new DiskFaultRules()
  /** While set, every sync() waits for it (a slow disk); see holdSyncs(). */
  private syncGate: Promise<void> | undefined
  /** Counters, for assertions. */
  readonly ops = { appends: 0, writes: 0, syncs: 0, dirSyncs: 0, unlinks: 0, renames: 0, crashes: 0, faults: 0 }
  /** Bytes the files may hold in all; a write past it fails with ENOSPC. */
  capacityBytes = Number.POSITIVE_INFINITY
  private usedBytes = 0
  /** Bumped by crash(): handles and process() views of an older epoch refuse every operation. */
  private epoch = 0

  /** Bytes the files hold now (what capacityBytes bounds). */
  get used (): number { return this.usedBytes }

  /** Makes matching operations fail (see FaultRule). */
  fail (rule: DiskFaultRule): void {
    this.rules.add(rule)
  }

  clearFaults (): void {
    this.rules.clear()
    this.faults.append = undefined
    this.faults.sync = undefined
  }

  /**
   * A view of this disk for one run of a process: after the next crash() every call through it
   * (and every handle opened through it) fails, as the operations of a dead process never happen.
   */
  process (): FileSystem {
    const epoch = this.epoch
    const check = (): void => {
      if (this.epoch !== epoch) throw errno('EIO', 'any', 'this process crashed')
    }
    const self = this
    return {
      async mkdir (p) { check(); await self.mkdir(p) },
      async readdir (p) { check(); return await self.readdir(p) },
      async readFile (p) { check(); return await self.readFile(p) },
      async openAppend (p) { check(); return await self.openAppend(p, epoch) },
      async open (p, flags) { check(); return await self.open(p, flags, epoch) },
      readSync (f, b, o, l, pos) { check(); return self.readSync(f, b, o, l, pos) },
      existsSync (p) { check(); return self.existsSync(p) },
      async stat (p) { check(); return await self.stat(p) },
      async rename (a, b) { check(); await self.rename(a, b) },
      async copyFile (a, b) { check(); await self.copyFile(a, b) },
      async unlink (p) { check(); await self.unlink(p) },
      async removeTree (p) { check(); await self.removeTree(p) },
      async syncDir (p) { check(); await self.syncDir(p) }
    }
  }

  async mkdir (path: string): Promise<void> {
    await Promise.resolve()
    this.inject('mkdir', path)
    let dir = this.root
    for (const name of parts(path)) {
      let next = dir.entries.get(name)
      if (next === undefined) {
        next = { kind: 'dir', entries: new Map(), durable: new Map() }
        dir.entries.set(name, next)
      }
      if (next.kind !== 'dir') throw errno('ENOTDIR', 'mkdir', path)
      dir = next
    }
  }

  async readdir (path: string): Promise<string[]> {
    await Promise.resolve()
    const node = this.find(path)
    if (node === undefined) return []
    if (node.kind !== 'dir') throw errno('ENOTDIR', 'readdir', path)
    return [...node.entries.keys()].sort()
  }

  async readFile (path: string): Promise<Uint8Array | undefined> {
    await Promise.resolve()
    const node = this.find(path)
    if (node === undefined) return undefined
    if (node.kind !== 'file') throw errno('EISDIR', 'read', path)
    this.inject('read', path)
    return node.data.slice(0, node.length)
  }

  existsSync (path: string): boolean { return this.find(path) !== undefined }

  async stat (path: string): Promise<{ size: number, isDirectory: boolean } | undefined> {
    await Promise.resolve()
    const node = this.find(path)
    if (node === undefined) return undefined
    return node.kind === 'dir' ? { size: 4096, isDirectory: true } : { size: node.length, isDirectory: false }
  }

  async openAppend (path: string, epoch = this.epoch): Promise<AppendFile> {
    const handle = await this.open(path, 'a', epoch) as MemHandle
    return {
      append: async (data: Uint8Array): Promise<void> => {
        this.ops.appends++
        await handle.write(data, 0, data.length, APPEND)
      },
      sync: async (): Promise<void> => { await handle.datasync() },
      close: async (): Promise<void> => { await handle.close() }
    }
  }

  async open (path: string, flags: OpenFlags | 'a', epoch = this.epoch): Promise<RandomAccessFile> {
    await Promise.resolve()
    this.inject('open', path)
    const [dir, name] = this.parent(path)
    let node = dir.entries.get(name)
    if (node?.kind === 'dir') throw errno('EISDIR', 'open', path)
    if (node === undefined) {
      if (flags === 'r' || flags === 'r+') throw errno('ENOENT', 'open', path)
      node = { kind: 'file', data: new Uint8Array(256), length: 0, durable: new Uint8Array(0), pending: [] }
      dir.entries.set(name, node)
    } else if (flags === 'wx') {
      throw errno('EEXIST', 'open', path)
    } else if (flags === 'w') {
      this.truncateFile(node, 0)
    }
    return new MemHandle(this, node, path, flags === 'r', epoch)
  }

  readSync (file: RandomAccessFile, buffer: Uint8Array, offset: number, length: number, position: number): number {
    if (!(file instanceof MemHandle) || file.disk !== this) throw new TypeError('readSync: not a file this filesystem opened')
    return file.readNow(buffer, offset, length, position)
  }

  async rename (from: string, to: string): Promise<void> {
    await Promise.resolve()
    this.inject('rename', from)
    const [fromDir, fromName] = this.parent(from)
    const node = fromDir.entries.get(fromName)
    if (node === undefined) throw errno('ENOENT', 'rename', from)
    const [toDir, toName] = this.parent(to)
    const replaced = toDir.entries.get(toName)
    if (replaced !== undefined && replaced !== node) this.release(replaced)
    fromDir.entries.delete(fromName)
    toDir.entries.set(toName, node)
    this.ops.renames++
  }

  async copyFile (from: string, to: string): Promise<void> {
    const src = this.find(from)
    if (src === undefined) throw errno('ENOENT', 'copyfile', from)
    if (src.kind !== 'file') throw errno('EISDIR', 'copyfile', from)
    const bytes = src.data.slice(0, src.length)
    const fh = await this.open(to, 'w')
    await fh.write(bytes, 0, bytes.length, 0)
    await fh.close()
  }

  async unlink (path: string): Promise<void> {
    this.inject('unlink', path)
    const [dir, name] = this.parent(path, false)
    const node = dir.entries.get(name)
    if (node?.kind === 'dir') throw errno('EISDIR', 'unlink', path)
    if (node !== undefined) this.release(node)
    dir.entries.delete(name)
    this.ops.unlinks++
    await Promise.resolve()
  }

  async removeTree (path: string): Promise<void> {
    await Promise.resolve()
    this.inject('unlink', path)
    const [dir, name] = this.parent(path, false)
    const node = dir.entries.get(name)
    if (node !== undefined) this.release(node)
    dir.entries.delete(name)
  }

  async syncDir (path: string): Promise<void> {
    this.ops.dirSyncs++
    await Promise.resolve()
    this.inject('syncDir', path)
    const node = this.find(path)
    if (node === undefined) throw errno('ENOENT', 'fsync', path)
    if (node.kind !== 'dir') throw errno('ENOTDIR', 'fsync', path)
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
   * synced bytes plus the first `tornBytes(path, unsynced)` bytes of the writes since (in order; the
   * last one kept may be cut anywhere; default none). The root directory itself is taken as durable
   * (the data directory existed before the peer ran). Handles and process() views opened before
   * fail from now on.
   */
  crash (opts: { tornBytes?: (path: string, unsynced: number) => number } = {}): void {
    this.epoch++
    this.ops.crashes++
    this.syncGate = undefined
    const revived = new Map<MemFile, MemFile>()
    const reviveFile = (node: MemFile, path: string): MemFile => {
      const seen = revived.get(node)
      if (seen !== undefined) return seen
      let unsynced = 0
      for (const op of node.pending) if (op.kind === 'write') unsynced += op.bytes.length
      let keep = Math.max(0, Math.min(unsynced, Math.floor(opts.tornBytes?.(path, unsynced) ?? 0)))
      const file: MemFile = { kind: 'file', data: node.durable.slice(), length: node.durable.length, durable: new Uint8Array(0), pending: [] }
      // The operations since the last sync reached the disk in order, up to `keep` written bytes.
      for (const op of keep > 0 ? node.pending : []) {
        if (op.kind === 'truncate') {
          truncateTo(file, op.length)
          continue
        }
        const piece = op.bytes.subarray(0, Math.min(keep, op.bytes.length))
        writeTo(file, piece, op.at)
        keep -= piece.length
        if (keep === 0) break
      }
      file.durable = file.data.slice(0, file.length)
      revived.set(node, file)
      return file
    }
    const revert = (dir: MemDir, path: string, isRoot: boolean): MemDir => {
      const entries = new Map<string, MemNode>()
      for (const [name, node] of isRoot ? dir.entries : dir.durable) {
        const p = `${path}/${name}`
        entries.set(name, node.kind === 'dir' ? revert(node, p, false) : reviveFile(node, p))
      }
      return { kind: 'dir', entries, durable: new Map(entries) }
    }
    this.root = revert(this.root, '', true)
    this.usedBytes = 0
    for (const size of this.files().values()) this.usedBytes += size
  }

  /**
   * The process using this disk dies (kill -9), the machine does not: everything written stays,
   * synced or not (the OS page cache writes it back), but handles and process() views opened
   * before fail from now on.
   */
  kill (): void {
    this.epoch++
    this.syncGate = undefined
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

  /** Overwrites bytes of a file in place, synced or not: a test's bit rot. */
  corrupt (path: string, at: number, bytes: Uint8Array): void {
    const node = this.find(path)
    if (node?.kind !== 'file') throw errno('ENOENT', 'corrupt', path)
    if (at < 0 || at + bytes.length > node.length) throw new RangeError(`corrupt: bytes [${at}, ${at + bytes.length}) outside '${path}' (${node.length} bytes)`)
    node.data.set(bytes, at)
    if (at + bytes.length <= node.durable.length) node.durable.set(bytes, at)
  }

  /** Throws the injected error for `op` on `path`, if a rule (or a legacy fault) says so. */
  inject (op: DiskOp, path: string, legacy?: Error): void {
    if (legacy !== undefined) { this.ops.faults++; throw legacy }
    const before = this.rules.injected
    try {
      this.rules.check(op, path)
    } finally {
      this.ops.faults += this.rules.injected - before
    }
  }

  /** A write's bytes into a file: ENOSPC (nothing written) past capacityBytes. */
  writeFile (file: MemFile, bytes: Uint8Array, at: number, path: string): void {
    const grows = Math.max(0, at + bytes.length - file.length)
    if (this.usedBytes + grows > this.capacityBytes) throw errno('ENOSPC', 'write', path)
    this.usedBytes += grows
    writeTo(file, bytes, at)
    file.pending.push({ kind: 'write', at, bytes: bytes.slice() })
    this.ops.writes++
  }

  truncateFile (file: MemFile, length: number): void {
    this.usedBytes += length - file.length
    truncateTo(file, length)
    file.pending.push({ kind: 'truncate', length })
  }

  async syncFile (file: MemFile, path: string): Promise<void> {
    this.ops.syncs++
    await Promise.resolve()
    while (this.syncGate !== undefined) await this.syncGate
    this.inject('sync', path, this.faults.sync)
    file.durable = file.data.slice(0, file.length)
    file.pending = []
  }

  isCurrent (epoch: number): boolean { return epoch === this.epoch }

  /** A removed file or tree: its bytes no longer count against capacityBytes. */
  private release (node: MemNode): void {
    if (node.kind === 'file') { this.usedBytes -= node.length; return }
    for (const child of node.entries.values()) this.release(child)
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
      if (mustExist || name === undefined) throw errno('ENOENT', 'open', path)
      return [{ kind: 'dir', entries: new Map(), durable: new Map() }, name]
    }
    return [dir, name]
  }
}

/** An open file of a MemoryFileSystem; fails once closed or once its process crashed. */
class MemHandle implements RandomAccessFile {
  private closed = false

  constructor (readonly disk: MemoryFileSystem, private readonly file: MemFile, private readonly path: string, private readonly readOnly: boolean, private readonly epoch: number) {}

  private check (op: string): void {
    if (this.closed) throw errno('EBADF', op, this.path)
    if (!this.disk.isCurrent(this.epoch)) throw errno('EIO', op, `${this.path} (its process crashed)`)
  }

  readNow (buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.check('read')
    this.disk.inject('read', this.path)
    const n = Math.max(0, Math.min(length, this.file.length - position))
    buffer.set(this.file.data.subarray(position, position + n), offset)
    return n
  }

  async read (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    await Promise.resolve()
    return { bytesRead: this.readNow(buffer, offset, length, position) }
  }

  async write (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    await Promise.resolve()
    this.check('write')
    if (this.readOnly) throw errno('EBADF', 'write', this.path)
    this.disk.inject('write', this.path, this.disk.faults.append)
    this.disk.writeFile(this.file, buffer.subarray(offset, offset + length), position === APPEND ? this.file.length : position, this.path)
    return { bytesWritten: length }
  }

  async writev (buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }> {
    let n = 0
    for (const b of buffers) n += (await this.write(b, 0, b.length, position + n)).bytesWritten
    return { bytesWritten: n }
  }

  async sync (): Promise<void> {
    this.check('fsync')
    await this.disk.syncFile(this.file, this.path)
    this.check('fsync')
  }

  async datasync (): Promise<void> { await this.sync() }

  async truncate (length: number): Promise<void> {
    await Promise.resolve()
    this.check('ftruncate')
    this.disk.inject('write', this.path)
    this.disk.truncateFile(this.file, length)
  }

  async stat (): Promise<{ size: number }> {
    await Promise.resolve()
    this.check('fstat')
    return { size: this.file.length }
  }

  async close (): Promise<void> {
    await Promise.resolve()
    this.closed = true
  }
}

/** The position of a write at the end of the file, wherever that is when it happens (openAppend). */
const APPEND = -1

function writeTo (file: MemFile, bytes: Uint8Array, at: number): void {
  const end = at + bytes.length
  if (end > file.data.length) {
    const grown = new Uint8Array(Math.max(file.data.length * 2, end))
    grown.set(file.data.subarray(0, file.length))
    file.data = grown
  }
  // A write past the end leaves a hole of zeros, as on a real file.
  if (at > file.length) file.data.fill(0, file.length, at)
  file.data.set(bytes, at)
  file.length = Math.max(file.length, end)
}

function truncateTo (file: MemFile, length: number): void {
  if (length > file.data.length) {
    const grown = new Uint8Array(length)
    grown.set(file.data.subarray(0, file.length))
    file.data = grown
  }
  if (length > file.length) file.data.fill(0, file.length, length)
  file.length = length
}

function parts (path: string): string[] { return path.split('/').filter(p => p !== '' && p !== '.') }
