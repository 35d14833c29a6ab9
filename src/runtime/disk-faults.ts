/**
 * Disk faults on demand: rules that make chosen file operations fail with a real errno (EIO,
 * ENOSPC, ...), and a FileSystem that applies them in front of another. The simulator's disk
 * (test/sim/memory-fs.ts) uses the same rules; a real peer wraps node:fs with them only when it
 * runs with --enable-fault-injection (POST /admin/faults {disk: [...]}), so that the Jepsen-style
 * suite can fail fsync on a live peer. Without the flag no peer constructs one.
 */
import type { AppendFile, FileSystem, OpenFlags, RandomAccessFile } from './filesystem.js'

/** What a rule can make fail. `write` covers appends and truncation; `sync` covers sync and datasync of files. */
export const DISK_OPS = ['write', 'sync', 'syncDir', 'open', 'read', 'rename', 'unlink', 'mkdir'] as const
export type DiskOp = typeof DISK_OPS[number]

/** The errors a rule may answer: those a failing or full disk gives. */
export const DISK_FAULT_CODES = ['EIO', 'ENOSPC', 'EDQUOT', 'EROFS'] as const
export type DiskFaultCode = typeof DISK_FAULT_CODES[number]

export interface DiskFaultRule {
  op: DiskOp
  code: DiskFaultCode | string
  /** Only paths matching this (a RegExp, or a substring); every path when absent. */
  path?: RegExp | string
  /** How many matching operations fail; until cleared when absent. */
  times?: number
}

/** The error a rule throws: shaped as node's (code, syscall, path), so callers classify it as a real one. */
export function diskFaultError (code: string, op: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected ${op} failure, '${path}'`), { code, syscall: op, path })
}

/** A list of fault rules, checked in order; a rule with `times` is removed once used up. */
export class DiskFaultRules {
  private rules: DiskFaultRule[] = []
  /** Operations failed by a rule so far. */
  injected = 0

  add (rule: DiskFaultRule): void {
    if (!DISK_OPS.includes(rule.op)) throw new RangeError(`disk fault op must be one of ${DISK_OPS.join(', ')}, got ${String(rule.op)}`)
    if (rule.times !== undefined && (!Number.isInteger(rule.times) || rule.times < 1)) throw new RangeError(`disk fault times must be a positive integer, got ${String(rule.times)}`)
    this.rules.push({ ...rule })
  }

  clear (): void { this.rules = [] }

  /** The rules in force (copies; a RegExp path as its source). */
  list (): Array<Omit<DiskFaultRule, 'path'> & { path?: string }> {
    return this.rules.map(({ path, ...r }) => ({ ...r, ...(path !== undefined ? { path: typeof path === 'string' ? path : path.source } : {}) }))
  }

  /** Throws the error of the first rule matching `op` on `path`, if one does. */
  check (op: DiskOp, path: string): void {
    for (const rule of this.rules) {
      if (rule.op !== op) continue
      if (rule.path !== undefined && !(typeof rule.path === 'string' ? path.includes(rule.path) : rule.path.test(path))) continue
      if (rule.times !== undefined && --rule.times === 0) this.rules.splice(this.rules.indexOf(rule), 1)
      this.injected++
      throw diskFaultError(rule.code, op, path)
    }
  }
}

/** `inner` with `rules` checked before every operation. */
export class FaultInjectingFileSystem implements FileSystem {
  constructor (private readonly inner: FileSystem, readonly rules: DiskFaultRules = new DiskFaultRules()) {}

  async mkdir (path: string): Promise<void> { this.rules.check('mkdir', path); await this.inner.mkdir(path) }
  async readdir (path: string): Promise<string[]> { return await this.inner.readdir(path) }
  async readFile (path: string): Promise<Uint8Array | undefined> { this.rules.check('read', path); return await this.inner.readFile(path) }
  existsSync (path: string): boolean { return this.inner.existsSync(path) }
  async stat (path: string): Promise<{ size: number, isDirectory: boolean } | undefined> { return await this.inner.stat(path) }
  async rename (from: string, to: string): Promise<void> { this.rules.check('rename', from); await this.inner.rename(from, to) }
  async copyFile (from: string, to: string): Promise<void> { this.rules.check('write', to); await this.inner.copyFile(from, to) }
  async unlink (path: string): Promise<void> { this.rules.check('unlink', path); await this.inner.unlink(path) }
  async removeTree (path: string): Promise<void> { this.rules.check('unlink', path); await this.inner.removeTree(path) }
  async syncDir (path: string): Promise<void> { this.rules.check('syncDir', path); await this.inner.syncDir(path) }

  async open (path: string, flags: OpenFlags): Promise<RandomAccessFile> {
    this.rules.check('open', path)
    return new FaultInjectingFile(await this.inner.open(path, flags), path, this.rules)
  }

  readSync (file: RandomAccessFile, buffer: Uint8Array, offset: number, length: number, position: number): number {
    if (!(file instanceof FaultInjectingFile)) throw new TypeError('FaultInjectingFileSystem.readSync: not a file this filesystem opened')
    this.rules.check('read', file.path)
    return this.inner.readSync(file.inner, buffer, offset, length, position)
  }

  async openAppend (path: string): Promise<AppendFile> {
    this.rules.check('open', path)
    const file = await this.inner.openAppend(path)
    return {
      append: async (data) => { this.rules.check('write', path); await file.append(data) },
      sync: async () => { this.rules.check('sync', path); await file.sync() },
      close: async () => { await file.close() }
    }
  }
}

class FaultInjectingFile implements RandomAccessFile {
  constructor (readonly inner: RandomAccessFile, readonly path: string, private readonly rules: DiskFaultRules) {}

  async read (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    this.rules.check('read', this.path)
    return await this.inner.read(buffer, offset, length, position)
  }

  async write (buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    this.rules.check('write', this.path)
    return await this.inner.write(buffer, offset, length, position)
  }

  async writev (buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }> {
    this.rules.check('write', this.path)
    return await this.inner.writev(buffers, position)
  }

  async sync (): Promise<void> { this.rules.check('sync', this.path); await this.inner.sync() }
  async datasync (): Promise<void> { this.rules.check('sync', this.path); await this.inner.datasync() }
  async truncate (length: number): Promise<void> { this.rules.check('write', this.path); await this.inner.truncate(length) }
  async stat (): Promise<{ size: number }> { return await this.inner.stat() }
  async close (): Promise<void> { await this.inner.close() }
}
