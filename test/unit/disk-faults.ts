/**
 * A disk that fails on demand, for storage tests (issue 13, "disk faults leave zombie replicas").
 * A real peer's storage reaches node:fs/promises through nodeFileSystem (src/runtime), so a test
 * file can swap that module for `faultyFs(real)`:
 *
 * ```ts
 * vi.mock('node:fs/promises', async (importOriginal) => (await import('./disk-faults.js')).faultyFs(await importOriginal()))
 * import { diskFaults } from './disk-faults.js'
 * diskFaults.fail({ op: 'write', code: 'ENOSPC', under: dir })   // the disk under dir is full
 * diskFaults.clear()                                               // space freed
 * ```
 *
 * Every file handle opened through it checks the rules on each write (write, writev) and each
 * sync (sync, datasync); a matching rule makes the call fail as the kernel would, with an errno
 * error (`code`, `errno`, `syscall`), before anything is written. Newer tests pass the engine a
 * FileSystem instead (`fs`): FaultInjectingFileSystem (src/runtime/disk-faults.ts) over node:fs,
 * or the simulator's MemoryFileSystem (test/sim/memory-fs.ts), which also models power cuts.
 */

export type FaultOp = 'write' | 'sync'
export type FaultCode = 'ENOSPC' | 'EIO' | 'EDQUOT'

export interface FaultRule {
  op: FaultOp
  code: FaultCode
  /** Only files whose path starts with this (a partition's or a peer's directory); default every file. */
  under?: string
  /** Only files whose name matches (e.g. /^wal-/ or /^seg-/). */
  name?: RegExp
  /** Fails this many calls, then the rule is spent; default until cleared. */
  times?: number
}

const ERRNO: Record<FaultCode, number> = { ENOSPC: -28, EIO: -5, EDQUOT: -122 }
const TEXT: Record<FaultCode, string> = { ENOSPC: 'no space left on device', EIO: 'i/o error', EDQUOT: 'disk quota exceeded' }

export class DiskFaults {
  private rules: FaultRule[] = []
  /** Calls failed so far, by op and code: `write ENOSPC` → n. */
  readonly failed = new Map<string, number>()

  fail (rule: FaultRule): void { this.rules.push({ ...rule }) }

  clear (): void { this.rules = [] }

  /** The error a call `op` on `path` meets now, if any (a counted rule is used up by it). */
  check (op: FaultOp, path: string, syscall: string): Error | undefined {
    const name = path.slice(path.lastIndexOf('/') + 1)
    const rule = this.rules.find(r => r.op === op && (r.under === undefined || path.startsWith(r.under)) && (r.name === undefined || r.name.test(name)))
    if (rule === undefined) return undefined
    if (rule.times !== undefined && --rule.times <= 0) this.rules = this.rules.filter(r => r !== rule)
    const key = `${op} ${rule.code}`
    this.failed.set(key, (this.failed.get(key) ?? 0) + 1)
    return Object.assign(new Error(`${rule.code}: ${TEXT[rule.code]}, ${syscall}`), { code: rule.code, errno: ERRNO[rule.code], syscall })
  }
}

/** The one controller the mocked module and the test share. */
export const diskFaults = new DiskFaults()

type FsPromises = typeof import('node:fs/promises')
type Handle = Awaited<ReturnType<FsPromises['open']>>

const CHECKED: Record<string, FaultOp> = { write: 'write', writev: 'write', sync: 'sync', datasync: 'sync' }

/** node:fs/promises with `open` answering handles whose writes and syncs go through diskFaults. */
export function faultyFs (real: FsPromises): FsPromises {
  const open = async (path: Parameters<FsPromises['open']>[0], ...rest: unknown[]): Promise<Handle> => {
    const fh = await (real.open as (...a: unknown[]) => Promise<Handle>)(path, ...rest)
    const p = String(path)
    return new Proxy(fh, {
      get (target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown
        if (typeof value !== 'function') return value
        const op = typeof prop === 'string' ? CHECKED[prop] : undefined
        if (op === undefined) return (value as (...a: unknown[]) => unknown).bind(target)
        return async (...args: unknown[]) => {
          const err = diskFaults.check(op, p, prop as string)
          if (err !== undefined) throw err
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        }
      }
    })
  }
  const mocked = { ...real, open } as FsPromises
  return { ...mocked, default: mocked } as FsPromises
}
