/**
 * hlc: hybrid logical clock timestamps (Kulkarni et al. 2014) for record versions and the space
 * catalog. A timestamp is one JS number, `physicalMs * 1024 + logical`, exact in a float64 until
 * the year 2248, so versions compare with `<`, travel as plain msgpack numbers and sort in typed
 * arrays.
 *
 * ```ts
 * const hlc = new HybridClock({ clock }, { maxSkewMs: 60_000, store: new FileHlcStore(dir) })
 * const version = hlc.now()        // stamp a local write
 * hlc.observe(remoteVersion)       // on receipt: keeps causality, refuses absurd skew
 * ```
 *
 * Never backwards, even across restarts: the clock persists a ceiling `leaseMs` ahead of what it
 * has handed out and, after a restart, starts above the persisted ceiling, so a peer whose wall
 * clock was set back still issues versions newer than everything it issued before. While the
 * ceiling cannot be saved (a full disk) the clock goes on issuing and says so (onPersistError).
 */
import { join } from 'node:path'
import { readFileIfThereSync, writeFileDurablySync, type Clock } from '../runtime/index.js'

export type Hlc = number

export const HLC_LOGICAL_BITS = 10
const LOGICAL_RANGE = 1 << HLC_LOGICAL_BITS

export function makeHlc (physicalMs: number, logical: number): Hlc { return physicalMs * LOGICAL_RANGE + logical }
export function hlcPhysicalMs (h: Hlc): number { return Math.floor(h / LOGICAL_RANGE) }
export function hlcLogical (h: Hlc): number { return h % LOGICAL_RANGE }
export function formatHlc (h: Hlc): string { return `${new Date(hlcPhysicalMs(h)).toISOString()}+${hlcLogical(h)}` }
export function isHlc (v: unknown): v is Hlc { return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 }

/** A remote timestamp is further ahead of our wall clock than maxSkewMs allows. */
export class ClockSkewError extends Error {
  override name = 'ClockSkewError'
  constructor (readonly remote: Hlc, readonly skewMs: number, readonly maxSkewMs: number) {
    super(`remote timestamp ${formatHlc(remote)} is ${skewMs} ms ahead of this peer's clock (limit ${maxSkewMs} ms); check NTP on both peers`)
  }
}

/** Where the ceiling survives restarts. */
export interface HlcStore {
  load(): Hlc | undefined
  save(ceiling: Hlc): void
}

export interface HybridClockOptions {
  /** Largest accepted lead of a remote timestamp over our wall clock. ms, default 60000 (CockroachDB's default max offset is 500 ms; we only refuse what is clearly broken). */
  maxSkewMs?: number
  /** How far ahead of the handed-out timestamps the persisted ceiling runs. ms, default 10000: one fsync per 10 s at most. */
  leaseMs?: number
  store?: HlcStore
  /**
   * Told when saving the ceiling fails (the error) and when it succeeds again (undefined), once
   * per change. The clock goes on issuing meanwhile (see extendLease).
   */
  onPersistError?: (err: Error | undefined) => void
}

/** While the ceiling cannot be saved, how often saving it is tried again. ms, 1 s. */
const PERSIST_RETRY_MS = 1000

export interface SkewReport { count: number, maxSeenMs: number, lastAt: number }

export class HybridClock {
  private last: Hlc
  private ceiling: Hlc
  private readonly maxSkewMs: number
  private readonly leaseMs: number
  private readonly store: HlcStore | undefined
  private readonly clock: Clock
  private readonly onPersistError: ((err: Error | undefined) => void) | undefined
  /** The error the last save met, while saving fails; and when (clock.now()) to try again. */
  private persistError: Error | undefined
  private retryAt = 0
  /** Offset and drift added to the wall clock: fault injection (clock skew nemesis) only. */
  private offsetMs = 0
  private driftPpm = 0
  private driftFromMs = 0
  readonly skew: SkewReport = { count: 0, maxSeenMs: 0, lastAt: 0 }

  constructor (deps: { clock: Clock }, opts: HybridClockOptions = {}) {
    this.clock = deps.clock
    this.maxSkewMs = opts.maxSkewMs ?? 60_000
    this.leaseMs = opts.leaseMs ?? 10_000
    this.store = opts.store
    this.onPersistError = opts.onPersistError
    const persisted = this.store?.load() ?? 0
    this.last = persisted
    this.ceiling = persisted
  }

  /**
   * Sets an artificial skew of the physical clock (the clock-skew fault): a fixed offset plus a
   * drift in parts per million from now on. The HLC still never goes backwards.
   */
  setSkew (offsetMs: number, driftPpm = 0): void {
    this.offsetMs = offsetMs
    this.driftPpm = driftPpm
    this.driftFromMs = this.clock.wallNow()
  }

  skewSettings (): { clockOffsetMs: number, clockDriftPpm: number } {
    return { clockOffsetMs: this.offsetMs, clockDriftPpm: this.driftPpm }
  }

  private wallMs (): number {
    const wall = this.clock.wallNow()
    const drift = this.driftPpm === 0 ? 0 : (wall - this.driftFromMs) * this.driftPpm / 1e6
    return Math.floor(wall + this.offsetMs + drift)
  }

  /** A timestamp greater than every one this clock has issued or observed. */
  now (): Hlc {
    this.last = Math.max(makeHlc(this.wallMs(), 0), this.last + 1)
    this.extendLease()
    return this.last
  }

  /**
   * Merges a remote timestamp (on every message that carries one). Throws ClockSkewError, and
   * counts it, when the remote is more than maxSkewMs ahead of our wall clock: absorbing it would
   * drag every later version of ours into the future.
   */
  observe (remote: Hlc): Hlc {
    const wallMs = this.wallMs()
    const aheadMs = hlcPhysicalMs(remote) - wallMs
    if (aheadMs > this.maxSkewMs) throw this.countRefusal(remote, wallMs)
    // Packed timestamps make the HLC receive rule one line: a logical overflow carries into the
    // physical part, which only moves the clock 1 ms ahead.
    this.last = Math.max(makeHlc(wallMs, 0), this.last + 1, remote + 1)
    this.extendLease()
    return this.last
  }

  /**
   * The newest remote timestamp observe() accepts right now (maxSkewMs ahead of the wall clock).
   * Records copied between replicas are checked against it one by one, so one record from the
   * future is refused without refusing the records that came with it.
   */
  skewLimit (): Hlc { return makeHlc(this.wallMs() + this.maxSkewMs + 1, 0) - 1 }

  /**
   * Counts a remote timestamp refused for skew without observing anything (a record over
   * skewLimit()), exactly as observe() counts the ones it refuses, and returns the error that
   * says by how much.
   */
  countRefusal (remote: Hlc, wallMs = this.wallMs()): ClockSkewError {
    const aheadMs = hlcPhysicalMs(remote) - wallMs
    this.skew.count++
    this.skew.maxSeenMs = Math.max(this.skew.maxSeenMs, aheadMs)
    this.skew.lastAt = wallMs
    return new ClockSkewError(remote, aheadMs, this.maxSkewMs)
  }

  /** The latest timestamp issued or observed. */
  current (): Hlc { return this.last }

  /**
   * Saves a new ceiling once the timestamps reach the saved one. If that fails (a full disk,
   * issue 13) the clock still issues: stopping it would stop every write this peer coordinates
   * and every replica write it takes, on a peer whose partitions may be fine. What it gives up
   * meanwhile is only the guard against a wall clock set back across a restart (timestamps
   * issued beyond the saved ceiling could be issued again by a peer that crashes now and
   * restarts with its clock behind); the failure is told once, and saving is tried again every
   * PERSIST_RETRY_MS until it succeeds.
   */
  private extendLease (): void {
    if (this.store === undefined || this.last < this.ceiling) return
    if (this.persistError !== undefined && this.clock.now() < this.retryAt) return
    const next = makeHlc(hlcPhysicalMs(this.last) + this.leaseMs, 0)
    try {
      this.store.save(next)
    } catch (err) {
      const first = this.persistError === undefined
      this.persistError = err instanceof Error ? err : new Error(String(err))
      this.retryAt = this.clock.now() + PERSIST_RETRY_MS
      if (first) this.onPersistError?.(this.persistError)
      return
    }
    this.ceiling = next
    if (this.persistError !== undefined) {
      this.persistError = undefined
      this.onPersistError?.(undefined)
    }
  }
}

/** Persists the ceiling as a small file in the data dir, atomically and durably (runtime/durable-file.ts). */
export class FileHlcStore implements HlcStore {
  private readonly path: string
  constructor (dir: string) { this.path = join(dir, 'hlc') }

  load (): Hlc | undefined {
    const text = readFileIfThereSync(this.path)
    if (text === undefined) return undefined
    const v = Number(text.trim())
    if (!isHlc(v)) throw new Error(`${this.path} does not hold an HLC timestamp: '${text.slice(0, 40)}'`)
    return v
  }

  save (ceiling: Hlc): void {
    writeFileDurablySync(this.path, String(ceiling))
  }
}
