/**
 * The catalog of spaces: a last-writer-wins map from space name to {def, version, dropped},
 * versions being HLC timestamps. Local changes are stamped with HybridClock.now(), published at
 * once through a Broadcaster (gossipsub; best effort) and carried in full on every membership
 * push-pull exchange (SwimDelegate), which is what makes every peer converge even when broadcasts
 * are lost or a peer was cut off. A drop is a tombstone, kept `tombstoneGraceMs` and then purged.
 *
 * Everything that arrives is untrusted: an entry is validated field by field (name, uid, schema
 * through checkSchema, numbers), bounded in size, built into fresh objects, and one bad entry is
 * skipped without spoiling the others.
 */
import { ClockSkewError, hlcPhysicalMs, isHlc } from '../hlc/index.js'
import type { Hlc, HybridClock } from '../hlc/index.js'
import type { SwimDelegate } from '../membership/index.js'
import type { Broadcaster } from '../net/broadcast.js'
import type { Clock, Logger, Timer } from '../runtime/index.js'
import { SPACE_NAME_RE, SchemaError, addColumn as addSchemaColumn, checkSchema } from '../schema/index.js'
import type { SpaceDef } from '../schema/index.js'
import type { CreateSpaceInput, SpaceCatalog } from './types.js'

export const CATALOG_TOPIC = 'shoal/catalog/1'
const WIRE_VERSION = 1

export const DEFAULT_PARTITIONS = 16
export const MAX_PARTITIONS = 1024
export const DEFAULT_REPLICAS = 3
export const MAX_REPLICAS = 16
const MAX_UID_CHARS = 128

/** One space as the catalog holds it. */
export interface CatalogEntry {
  def: SpaceDef
  version: Hlc
  dropped: boolean
}

export type CatalogErrorCode = 'SPACE_EXISTS' | 'UNKNOWN_SPACE' | 'BAD_NAME' | 'BAD_SCHEMA' | 'BAD_PARTITIONS' | 'BAD_REPLICAS' | 'BAD_INPUT' | 'CATALOG_FULL'

/** A catalog operation refused; `field` names the offending input (e.g. `partitions`, `schema[2].type`). */
export class CatalogError extends Error {
  override name = 'CatalogError'
  constructor (readonly code: CatalogErrorCode, readonly field: string, message: string) { super(`${field}: ${message}`) }
}

export type CatalogEvent = Parameters<Parameters<SpaceCatalog['onChange']>[0]>[0]

export interface CatalogOptions {
  /** A dropped space's tombstone is purged this long after the drop (HLC physical time). ms, default 604800000 = 7 days: longer than any partition should last, or a peer cut off longer could bring the space back. */
  tombstoneGraceMs?: number
  /** Period of the tombstone purge. ms, default 60000. */
  purgeIntervalMs?: number
  /** At most this many entries (tombstones included); remote entries past it are ignored, local creates refused. Default 10000. */
  maxSpaces?: number
  /** Encoded size limit of one entry. bytes, default 262144 = 256 KiB (1,024 columns fit). */
  maxEntryBytes?: number
  /** Encoded size limit of one catalog message (broadcast or push-pull state). bytes, default 1048576 = 1 MiB. */
  maxMessageBytes?: number
}

export interface CatalogDeps {
  hlc: HybridClock
  clock: Clock
  log: Logger
  /** Optional: without one the catalog spreads through push-pull only. */
  broadcaster?: Broadcaster
}

/** The wire form of one entry (JSON inside a `{ v: 1, e: [...] }` message). */
interface WireEntry {
  name: string
  uid: string
  schema: unknown
  partitions: number
  replicas: number
  version: number
  dropped: boolean
}

const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype']

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function hasOwn (o: object, k: string): boolean { return Object.prototype.hasOwnProperty.call(o, k) }

function intIn (v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
}

/** Total order of versions of one name: HLC, then tombstone over live, then uid, then schema size. */
export function compareEntries (a: CatalogEntry, b: CatalogEntry): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1
  if (a.dropped !== b.dropped) return a.dropped ? 1 : -1
  if (a.def.uid !== b.def.uid) return a.def.uid < b.def.uid ? -1 : 1
  return a.def.schema.length - b.def.schema.length
}

function toWire (e: CatalogEntry): WireEntry {
  return { name: e.def.name, uid: e.def.uid, schema: e.def.schema, partitions: e.def.partitions, replicas: e.def.replicas, version: e.version, dropped: e.dropped }
}

/**
 * Validates one decoded entry and builds it afresh; returns a reason string when it is unusable.
 * Exported for tests.
 */
export function decodeEntry (v: unknown): CatalogEntry | string {
  if (!isRecord(v)) return 'entry is not an object'
  for (const k of FORBIDDEN_KEYS) if (hasOwn(v, k)) return `entry carries a forbidden key '${k}'`
  const { name, uid, schema, partitions, replicas, version, dropped } = v
  if (typeof name !== 'string' || !SPACE_NAME_RE.test(name)) return 'bad name'
  if (typeof uid !== 'string' || uid.length > MAX_UID_CHARS || !uid.startsWith(`${name}-`) || uid.length === name.length + 1) return 'bad uid'
  if (!intIn(partitions, 1, MAX_PARTITIONS)) return 'bad partitions'
  if (!intIn(replicas, 1, MAX_REPLICAS)) return 'bad replicas'
  if (!isHlc(version)) return 'bad version'
  if (typeof dropped !== 'boolean') return 'bad dropped'
  let columns
  try {
    columns = checkSchema(schema)
  } catch (err) {
    return err instanceof SchemaError ? `bad schema (${err.message})` : 'bad schema'
  }
  return { def: { name, uid, schema: columns, partitions, replicas }, version, dropped }
}

function cloneDef (d: SpaceDef): SpaceDef {
  return { name: d.name, uid: d.uid, schema: d.schema.map(c => ({ name: c.name, type: c.type, nullable: c.nullable })), partitions: d.partitions, replicas: d.replicas }
}

export class Catalog implements SpaceCatalog {
  private readonly hlc: HybridClock
  private readonly clock: Clock
  private readonly log: Logger
  private readonly broadcaster: Broadcaster | undefined
  private readonly graceMs: number
  private readonly purgeIntervalMs: number
  private readonly maxSpaces: number
  private readonly maxEntryBytes: number
  private readonly maxMessageBytes: number
  private readonly entriesByName = new Map<string, CatalogEntry>()
  private readonly listeners = new Set<(ev: CatalogEvent) => void>()
  private purgeTimer: Timer | undefined
  private running = false
  private subscribed = false
  /** Rotates the start of the push-pull state when the whole catalog does not fit one message. */
  private stateCursor = 0
  /** (name, version) pairs already warned about (clock skew), bounded. */
  private readonly warned = new Set<string>()

  constructor (deps: CatalogDeps, opts: CatalogOptions = {}) {
    this.hlc = deps.hlc
    this.clock = deps.clock
    this.log = deps.log.child({ component: 'catalog' })
    this.broadcaster = deps.broadcaster
    this.graceMs = opts.tombstoneGraceMs ?? 7 * 86_400_000
    this.purgeIntervalMs = opts.purgeIntervalMs ?? 60_000
    this.maxSpaces = opts.maxSpaces ?? 10_000
    this.maxEntryBytes = opts.maxEntryBytes ?? 262_144
    this.maxMessageBytes = opts.maxMessageBytes ?? 1_048_576
  }

  /** Subscribes to the broadcast topic and starts the tombstone purge. */
  start (): void {
    if (this.running) return
    this.running = true
    if (this.broadcaster !== undefined && !this.subscribed) {
      this.subscribed = true
      this.broadcaster.subscribe(CATALOG_TOPIC, (data, from) => { if (this.running) this.mergeBytes(data, from) })
    }
    const tick = (): void => {
      this.purgeTimer = undefined
      if (!this.running) return
      this.purge()
      this.purgeTimer = this.clock.setTimer(this.purgeIntervalMs, tick)
    }
    this.purgeTimer = this.clock.setTimer(this.purgeIntervalMs, tick)
  }

  stop (): void {
    this.running = false
    this.purgeTimer?.cancel()
    this.purgeTimer = undefined
  }

  // ---------------------------------------------------------------- local changes

  create (input: CreateSpaceInput): SpaceDef {
    if (!isRecord(input)) throw new CatalogError('BAD_INPUT', 'body', 'expected {name, schema, partitions?, replicas?}')
    const { name, schema } = input
    const partitions = input.partitions ?? DEFAULT_PARTITIONS
    const replicas = input.replicas ?? DEFAULT_REPLICAS
    if (typeof name !== 'string' || !SPACE_NAME_RE.test(name)) {
      throw new CatalogError('BAD_NAME', 'name', `'${String(name).slice(0, 80)}' is not a space name (lower-case letter first, then lower-case letters, digits, _ or -; at most 63)`)
    }
    let columns
    try {
      columns = checkSchema(schema, { new: true })
    } catch (err) {
      if (err instanceof SchemaError) throw new CatalogError('BAD_SCHEMA', err.field, err.message.slice(err.field.length + 2))
      throw err
    }
    if (!intIn(partitions, 1, MAX_PARTITIONS)) throw new CatalogError('BAD_PARTITIONS', 'partitions', `must be an integer from 1 to ${MAX_PARTITIONS}, got ${String(partitions)}`)
    if (!intIn(replicas, 1, MAX_REPLICAS)) throw new CatalogError('BAD_REPLICAS', 'replicas', `must be an integer from 1 to ${MAX_REPLICAS}, got ${String(replicas)}`)
    const prev = this.entriesByName.get(name)
    if (prev !== undefined && !prev.dropped) throw new CatalogError('SPACE_EXISTS', 'name', `space '${name}' already exists`)
    if (prev === undefined && this.entriesByName.size >= this.maxSpaces) throw new CatalogError('CATALOG_FULL', 'name', `the catalog holds ${this.maxSpaces} spaces (tombstones included); drop some first`)
    const version = this.hlc.now()
    const def: SpaceDef = { name, uid: `${name}-${version}`, schema: columns, partitions, replicas }
    const entry: CatalogEntry = { def, version, dropped: false }
    if (this.entrySize(entry) > this.maxEntryBytes) throw new CatalogError('BAD_SCHEMA', 'schema', `the space definition is over ${this.maxEntryBytes} bytes`)
    this.applyLocal(entry, prev)
    return cloneDef(def)
  }

  drop (name: string): void {
    const prev = this.entriesByName.get(name)
    if (prev === undefined || prev.dropped) throw new CatalogError('UNKNOWN_SPACE', 'name', `no space '${String(name).slice(0, 80)}'`)
    this.applyLocal({ def: prev.def, version: this.hlc.now(), dropped: true }, prev)
  }

  addColumn (name: string, column: unknown): SpaceDef {
    const prev = this.entriesByName.get(name)
    if (prev === undefined || prev.dropped) throw new CatalogError('UNKNOWN_SPACE', 'name', `no space '${String(name).slice(0, 80)}'`)
    let columns
    try {
      columns = addSchemaColumn(prev.def.schema, column)
    } catch (err) {
      if (err instanceof SchemaError) {
        // checkSchema names the new column schema[n]; callers sent it as `column`.
        const field = err.field.replace(/^schema\[\d+\]/, 'column')
        throw new CatalogError('BAD_SCHEMA', field, err.message.slice(err.field.length + 2))
      }
      throw err
    }
    const entry: CatalogEntry = { def: { ...prev.def, schema: columns }, version: this.hlc.now(), dropped: false }
    if (this.entrySize(entry) > this.maxEntryBytes) throw new CatalogError('BAD_SCHEMA', 'column', `the space definition would be over ${this.maxEntryBytes} bytes`)
    this.applyLocal(entry, prev)
    return cloneDef(entry.def)
  }

  // ---------------------------------------------------------------- views

  get (name: string): SpaceDef | undefined {
    const e = this.entriesByName.get(name)
    return e === undefined || e.dropped ? undefined : e.def
  }

  list (): SpaceDef[] {
    const out: SpaceDef[] = []
    for (const e of this.entriesByName.values()) if (!e.dropped) out.push(e.def)
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** The entry of `name`, tombstone included. */
  entry (name: string): CatalogEntry | undefined { return this.entriesByName.get(name) }

  /**
   * Whether `space` (a definition carried by a write, a hint or a copy) is known here to be gone:
   * dropped, or replaced by a space of the same name created after it (its uid's creation version
   * is older). A space this catalog has not heard of, or older news of the same name, is not gone:
   * the catalog may be behind (a space just created elsewhere). Two spaces of one name created
   * concurrently on the two sides of a network partition are ordered here by creation, in the
   * catalog by entry version (an alter raises it): until the catalogs converge a peer may call the
   * eventual winner gone and refuse its writes (SPACE_GONE, not hinted).
   */
  isGone (space: SpaceDef): boolean {
    const e = this.entriesByName.get(space.name)
    if (e === undefined) return false
    if (e.def.uid === space.uid) return e.dropped
    const created = (uid: string): number => Number(uid.slice(space.name.length + 1))
    return created(e.def.uid) > created(space.uid)
  }

  /** Every entry, tombstones included (for tests and diagnostics). */
  entries (): CatalogEntry[] { return [...this.entriesByName.values()] }

  onChange (listener: (ev: CatalogEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  // ---------------------------------------------------------------- spreading

  /** The push-pull delegate to hand to Swim (SwimDeps.delegate). */
  swimDelegate (): SwimDelegate {
    return {
      localState: () => this.localState(),
      mergeRemoteState: (state: unknown) => {
        if (!(state instanceof Uint8Array)) { this.log.debug({}, 'push-pull catalog state is not bytes; ignored'); return }
        this.mergeBytes(state, 'push-pull')
      }
    }
  }

  /** The catalog as one message, within maxMessageBytes (a rotating window when it does not all fit). */
  localState (): Uint8Array {
    const all = [...this.entriesByName.values()]
    if (all.length === 0) return this.encode([])
    const start = this.stateCursor % all.length
    const parts: string[] = []
    let bytes = 16
    let i = 0
    for (; i < all.length; i++) {
      const s = JSON.stringify(toWire(all[(start + i) % all.length]!))
      if (bytes + s.length + 1 > this.maxMessageBytes) break
      parts.push(s)
      bytes += s.length + 1
    }
    // Next time start after what went out, so every entry travels eventually.
    this.stateCursor = i >= all.length ? 0 : start + i
    return new TextEncoder().encode(`{"v":${WIRE_VERSION},"e":[${parts.join(',')}]}`)
  }

  /**
   * Merges a catalog message (broadcast or push-pull state). Returns how many entries changed the
   * catalog. Never throws: malformed input is logged and dropped, a bad entry is skipped.
   */
  mergeBytes (data: Uint8Array, from?: string): number {
    if (!(data instanceof Uint8Array) || data.byteLength > this.maxMessageBytes) {
      this.log.debug({ from }, 'catalog message malformed or over the size limit; dropped')
      return 0
    }
    let msg: unknown
    try {
      msg = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
    } catch {
      this.log.debug({ from }, 'catalog message is not JSON; dropped')
      return 0
    }
    if (!isRecord(msg) || msg.v !== WIRE_VERSION || !Array.isArray(msg.e)) {
      this.log.debug({ from }, 'catalog message has an unknown shape or version; dropped')
      return 0
    }
    return this.mergeEntries(msg.e, from)
  }

  /** Merges decoded wire entries (each validated). Returns how many changed the catalog. */
  mergeEntries (entries: readonly unknown[], from?: string): number {
    let changed = 0
    for (const raw of entries) {
      const e = decodeEntry(raw)
      if (typeof e === 'string') { this.log.debug({ from, reason: e }, 'catalog entry rejected'); continue }
      if (this.entrySize(e) > this.maxEntryBytes) { this.log.debug({ from, name: e.def.name }, 'catalog entry over the size limit; rejected'); continue }
      const prev = this.entriesByName.get(e.def.name)
      if (prev !== undefined && compareEntries(e, prev) <= 0) continue
      if (prev === undefined && this.entriesByName.size >= this.maxSpaces) {
        this.log.warn({ from, name: e.def.name, limit: this.maxSpaces }, 'catalog full; remote space ignored')
        continue
      }
      if (prev === undefined && e.dropped && this.isExpired(e)) continue
      try {
        this.hlc.observe(e.version)
      } catch (err) {
        if (err instanceof ClockSkewError) {
          const key = `${e.def.name}@${e.version}`
          if (!this.warned.has(key)) {
            if (this.warned.size >= 1000) this.warned.clear()
            this.warned.add(key)
            this.log.warn({ err, from, name: e.def.name }, 'catalog entry from too far in the future; not merged')
          }
          continue
        }
        throw err
      }
      this.apply(e, prev)
      changed++
    }
    return changed
  }

  // ---------------------------------------------------------------- internals

  private applyLocal (entry: CatalogEntry, prev: CatalogEntry | undefined): void {
    this.apply(entry, prev)
    if (this.broadcaster !== undefined) {
      try {
        this.broadcaster.publish(CATALOG_TOPIC, this.encode([entry]))
      } catch (err) {
        this.log.debug({ err }, 'catalog broadcast failed; push-pull will carry it')
      }
    }
  }

  private apply (entry: CatalogEntry, prev: CatalogEntry | undefined): void {
    this.entriesByName.set(entry.def.name, entry)
    const wasLive = prev !== undefined && !prev.dropped
    if (entry.dropped) {
      if (wasLive) this.emit({ type: 'dropped', space: prev.def, version: entry.version })
      return
    }
    if (wasLive && prev.def.uid === entry.def.uid) {
      this.emit({ type: 'altered', space: entry.def, version: entry.version })
      return
    }
    // A different uid under a live name: the old space was dropped and re-created elsewhere.
    if (wasLive) this.emit({ type: 'dropped', space: prev.def, version: entry.version })
    this.emit({ type: 'created', space: entry.def, version: entry.version })
  }

  private emit (ev: CatalogEvent): void {
    for (const l of this.listeners) {
      try { l(ev) } catch (err) { this.log.error({ err, type: ev.type }, 'catalog listener failed') }
    }
  }

  private encode (entries: CatalogEntry[]): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ v: WIRE_VERSION, e: entries.map(toWire) }))
  }

  private entrySize (e: CatalogEntry): number {
    return Buffer.byteLength(JSON.stringify(toWire(e)))
  }

  private isExpired (e: CatalogEntry): boolean {
    return e.dropped && this.clock.wallNow() - hlcPhysicalMs(e.version) >= this.graceMs
  }

  /** Forgets tombstones older than the grace period. Returns how many went. */
  purge (): number {
    let n = 0
    for (const [name, e] of this.entriesByName) {
      if (this.isExpired(e)) { this.entriesByName.delete(name); n++ }
    }
    if (n > 0) this.log.debug({ purged: n }, 'catalog tombstones purged')
    return n
  }
}
