/**
 * Disk failures of a partition store (issue 13, "disk faults leave zombie replicas"): what a
 * failed write, fsync, flush or manifest swap turns into. The store's status records the first
 * failure (the state of a file after a failed write or sync is unknown, so it takes no more
 * writes until it is reopened), classifies it, logs it once, and tells its listeners; replication
 * takes the replica out of service then. Two kinds, because they heal differently:
 *
 * - `no-space` (ENOSPC, EDQUOT): nothing on disk is damaged, the disk is full. Once a write and an
 *   fsync succeed again (probeDisk), the partition is reopened from its durable state (recovery
 *   replays the WAL, cutting a torn tail) and catches up from the other replicas.
 * - `io` (EIO and every other error): the disk may have lost or garbled what it acknowledged, so
 *   the replica is rebuilt from the other replicas, like one holding a damaged segment.
 */
import { join } from 'node:path'
import type { FileSystem, Logger } from '../runtime/index.js'
import { writeAllAt } from './fsutil.js'

/** What was being done when the disk failed. */
export type FailedOperation = 'write-ahead log' | 'flush' | 'compaction' | 'read' | 'open'

/** A disk failure that stopped a partition store. */
export interface StoreFailure {
  /** `no-space`: the disk is full (ENOSPC, EDQUOT), heals once space is freed; `io`: anything else, rebuilt from the other replicas. */
  kind: 'no-space' | 'io'
  /** The errno code (ENOSPC, EIO, ...), or UNKNOWN for an error without one. */
  code: string
  operation: FailedOperation
  /** The file the failing call was on, when known. */
  path?: string
  message: string
  /** Wall-clock ms when it failed. */
  at: number
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT'])
/** Codes that say the device itself failed (not a missing file or a bad argument). */
const DEVICE = new Set(['EIO', 'EROFS', 'ENXIO', 'ENODEV', 'EUCLEAN'])

/** The errno code of `err` or of an error in its cause chain (WalFailedError wraps the fs error). */
export function errnoCode (err: unknown): string | undefined {
  for (let e = err as { code?: unknown, cause?: unknown } | null | undefined, depth = 0; e !== null && e !== undefined && depth < 8; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && /^E[A-Z0-9]+$/.test(e.code)) return e.code
  }
  return undefined
}

function pathOf (err: unknown): string | undefined {
  for (let e = err as { path?: unknown, cause?: unknown } | null | undefined, depth = 0; e !== null && e !== undefined && depth < 8; e = e.cause as typeof e, depth++) {
    if (typeof e.path === 'string') return e.path
  }
  return undefined
}

/** Whether `err` says the disk is full. */
export function isNoSpace (err: unknown): boolean {
  const code = errnoCode(err)
  return code !== undefined && NO_SPACE.has(code)
}

/** Whether `err` is a failure of the device (full, or an I/O error), not a missing file or a bug. */
export function isDiskFault (err: unknown): boolean {
  const code = errnoCode(err)
  return code !== undefined && (NO_SPACE.has(code) || DEVICE.has(code))
}

export function describeFailure (err: unknown, operation: FailedOperation, at: number, path?: string): StoreFailure {
  const code = errnoCode(err) ?? 'UNKNOWN'
  const where = path ?? pathOf(err)
  return {
    kind: NO_SPACE.has(code) ? 'no-space' : 'io',
    code,
    operation,
    ...(where !== undefined ? { path: where } : {}),
    message: err instanceof Error ? err.message : String(err),
    at
  }
}

/**
 * The status every part of a store reads (context.ts StoreStatus): closed, and failed. A failure
 * is recorded once (the first one is the cause; what fails after it follows from it): logged at
 * error with the partition (the logger's bindings), the code and the file, then the listener is
 * called; `fail` is the one way to set it, so no part can fail the store without it being seen.
 */
export class FailureStatus {
  closed = false
  private error: Error | undefined
  private recorded: StoreFailure | undefined

  constructor (private readonly log: Logger, private readonly wallNow: () => number, private readonly listener: (f: StoreFailure) => void) {}

  get failed (): Error | undefined { return this.error }

  get failure (): StoreFailure | undefined { return this.recorded }

  /** Records the store's first failure (later ones are ignored); a closed store records none. */
  fail (err: unknown, operation: FailedOperation, path?: string): void {
    if (this.error !== undefined || this.closed) return
    this.error = err instanceof Error ? err : new Error(String(err))
    const f = describeFailure(err, operation, this.wallNow(), path)
    this.recorded = f
    const what = f.kind === 'no-space'
      ? 'the disk is full (no space left)'
      : f.code === 'UNKNOWN' ? `failed (${f.message})` : `disk I/O error (${f.code})`
    this.log.error({ code: f.code, kind: f.kind, operation: f.operation, path: f.path, err: f.message },
      `partition failed: ${what} in its ${operation}; it takes no writes until ${f.kind === 'no-space' ? 'reopened once space is free' : 'rebuilt from the other replicas'}`)
    try {
      this.listener(f)
    } catch (e) {
      this.log.error({ err: e }, 'a failure listener failed')
    }
  }
}

/** Bytes the probe writes: a WAL group commit's worth, so a disk with only a page free does not pass. */
export const PROBE_BYTES = 64 * 1024
const PROBE_FILE = 'disk-probe.tmp'

/**
 * Whether the disk under `dir` takes writes again: writes PROBE_BYTES to a file there, fsyncs it,
 * and removes it; throws the error it met (ENOSPC while the disk is still full). A removed probe
 * file is left to nobody: the next probe replaces it.
 */
export async function probeDisk (fs: FileSystem, dir: string): Promise<void> {
  const path = join(dir, PROBE_FILE)
  const fh = await fs.open(path, 'w')
  try {
    await writeAllAt(fh, Buffer.alloc(PROBE_BYTES, 0x5a), 0)
    await fh.datasync()
  } finally {
    await fh.close().catch(() => {})
    await fs.unlink(path).catch(() => {})
  }
}
