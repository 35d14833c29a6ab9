import { describe, expect, it } from 'vitest'
import { HybridClock } from '../../src/hlc/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { CATALOG_TOPIC, Catalog, CatalogError, decodeEntry } from '../../src/placement/index.js'
import type { Broadcaster, BroadcastHandler, CatalogEvent } from '../../src/placement/index.js'
import { ManualClock } from '../sim/manual-clock.js'

const EPOCH = 1_700_000_000_000

class Bus implements Broadcaster {
  readonly sent: Uint8Array[] = []
  handler: BroadcastHandler | undefined
  publish (topic: string, data: Uint8Array): void { expect(topic).toBe(CATALOG_TOPIC); this.sent.push(data) }
  subscribe (_topic: string, handler: BroadcastHandler): void { this.handler = handler }
}

function make (offsetMs = 0, opts = {}): { catalog: Catalog, clock: ManualClock, hlc: HybridClock, bus: Bus, events: CatalogEvent[] } {
  const clock = new ManualClock()
  clock.t = EPOCH
  const hlc = new HybridClock({ clock })
  hlc.setSkew(offsetMs)
  const bus = new Bus()
  const catalog = new Catalog({ hlc, clock, log: silentLogger, broadcaster: bus }, opts)
  const events: CatalogEvent[] = []
  catalog.onChange(ev => events.push(ev))
  catalog.start()
  return { catalog, clock, hlc, bus, events }
}

const schema = [{ name: 'amount', type: 'float64', nullable: true }] as const

function errorOf (fn: () => unknown): CatalogError {
  try { fn() } catch (err) { if (err instanceof CatalogError) return err; throw err }
  throw new Error('did not throw')
}

describe('catalog: local changes', () => {
  it('creates with defaults, a unique uid, and publishes the entry', () => {
    const { catalog, bus, events } = make()
    const def = catalog.create({ name: 'orders', schema: [...schema] })
    expect(def.partitions).toBe(16)
    expect(def.replicas).toBe(3)
    expect(def.schema.map(c => c.name)).toEqual(['id', 'amount'])
    expect(def.uid).toMatch(/^orders-\d+$/)
    expect(catalog.get('orders')).toEqual(def)
    expect(catalog.list().map(s => s.name)).toEqual(['orders'])
    expect(bus.sent).toHaveLength(1)
    expect(events.map(e => e.type)).toEqual(['created'])
    // drop + re-create makes a new space
    catalog.drop('orders')
    expect(catalog.get('orders')).toBeUndefined()
    expect(catalog.entry('orders')?.dropped).toBe(true)
    const again = catalog.create({ name: 'orders', schema: [...schema], partitions: 4, replicas: 1 })
    expect(again.uid).not.toBe(def.uid)
    expect(events.map(e => e.type)).toEqual(['created', 'dropped', 'created'])
    expect(bus.sent).toHaveLength(3)
  })

  it('validation errors name the field and carry a code', () => {
    const { catalog } = make()
    expect(errorOf(() => catalog.create({ name: 'Bad Name', schema: [...schema] }))).toMatchObject({ code: 'BAD_NAME', field: 'name' })
    expect(errorOf(() => catalog.create({ name: '__proto__', schema: [...schema] }))).toMatchObject({ code: 'BAD_NAME', field: 'name' })
    expect(errorOf(() => catalog.create({ name: 's', schema: [{ name: 'x', type: 'float65', nullable: true }] as never }))).toMatchObject({ code: 'BAD_SCHEMA', field: 'schema[0].type' })
    expect(errorOf(() => catalog.create({ name: 's', schema: 'nope' as never }))).toMatchObject({ code: 'BAD_SCHEMA', field: 'schema' })
    for (const partitions of [0, 1025, 1.5, '4']) {
      expect(errorOf(() => catalog.create({ name: 's', schema: [...schema], partitions: partitions as number }))).toMatchObject({ code: 'BAD_PARTITIONS', field: 'partitions' })
    }
    for (const replicas of [0, 17, NaN]) {
      expect(errorOf(() => catalog.create({ name: 's', schema: [...schema], replicas }))).toMatchObject({ code: 'BAD_REPLICAS', field: 'replicas' })
    }
    catalog.create({ name: 's', schema: [...schema], partitions: 1024, replicas: 16 })
    expect(errorOf(() => catalog.create({ name: 's', schema: [...schema] }))).toMatchObject({ code: 'SPACE_EXISTS', field: 'name' })
    expect(errorOf(() => catalog.drop('nope'))).toMatchObject({ code: 'UNKNOWN_SPACE', field: 'name' })
    expect(errorOf(() => catalog.addColumn('nope', { name: 'x', type: 'utf8' }))).toMatchObject({ code: 'UNKNOWN_SPACE', field: 'name' })
    expect(errorOf(() => catalog.addColumn('s', { name: 'x', type: 'utf8', nullable: false }))).toMatchObject({ code: 'BAD_SCHEMA', field: 'column.nullable' })
    expect(errorOf(() => catalog.addColumn('s', { name: 'amount', type: 'utf8' }))).toMatchObject({ code: 'BAD_SCHEMA', field: 'column.name' })
  })

  it('addColumn keeps the uid and bumps the version', () => {
    const { catalog, events } = make()
    const def = catalog.create({ name: 's', schema: [...schema] })
    const v1 = catalog.entry('s')!.version
    const next = catalog.addColumn('s', { name: 'note', type: 'utf8' })
    expect(next.uid).toBe(def.uid)
    expect(next.schema.map(c => c.name)).toEqual(['id', 'amount', 'note'])
    expect(catalog.entry('s')!.version).toBeGreaterThan(v1)
    expect(events.map(e => e.type)).toEqual(['created', 'altered'])
  })
})

describe('catalog: merging remote entries (LWW)', () => {
  it('newer wins, older is ignored; a drop tombstone beats an older create; a create after the drop wins', () => {
    const a = make()
    const b = make()
    const defA = a.catalog.create({ name: 's', schema: [...schema] })
    // b hears of it
    expect(b.catalog.mergeBytes(a.bus.sent[0]!)).toBe(1)
    expect(b.catalog.get('s')).toEqual(defA)
    expect(b.events.map(e => e.type)).toEqual(['created'])
    // the same again changes nothing
    expect(b.catalog.mergeBytes(a.bus.sent[0]!)).toBe(0)
    // b alters (newer), a merges; then a's old create arriving at b again is ignored
    b.clock.t += 10
    b.catalog.addColumn('s', { name: 'n', type: 'int64' })
    expect(a.catalog.mergeBytes(b.bus.sent[0]!)).toBe(1)
    expect(a.catalog.get('s')!.schema).toHaveLength(3)
    expect(b.catalog.mergeBytes(a.bus.sent[0]!)).toBe(0)
    expect(b.catalog.get('s')!.schema).toHaveLength(3)
    // a drops: the tombstone beats b's older alter
    a.clock.t += 10
    a.catalog.drop('s')
    const tomb = a.bus.sent.at(-1)!
    expect(b.catalog.mergeBytes(tomb)).toBe(1)
    expect(b.catalog.get('s')).toBeUndefined()
    expect(b.events.at(-1)!.type).toBe('dropped')
    expect(a.catalog.mergeBytes(b.bus.sent[0]!)).toBe(0)
    expect(a.catalog.get('s')).toBeUndefined()
    // a create after the drop (on b) wins at a, with a new uid
    b.clock.t += 10
    const re = b.catalog.create({ name: 's', schema: [...schema], partitions: 8 })
    expect(a.catalog.mergeBytes(b.bus.sent.at(-1)!)).toBe(1)
    expect(a.catalog.get('s')).toEqual(re)
    expect(re.uid).not.toBe(defA.uid)
    // the stale tombstone arriving late does not kill the new space
    expect(a.catalog.mergeBytes(tomb)).toBe(0)
    expect(a.catalog.get('s')).toEqual(re)
  })

  it('push-pull state: the whole catalog, tombstones included, through the swim delegate', () => {
    const a = make()
    const b = make()
    a.catalog.create({ name: 'x', schema: [...schema] })
    a.catalog.create({ name: 'y', schema: [...schema] })
    a.catalog.drop('y')
    const d = a.catalog.swimDelegate()
    b.catalog.swimDelegate().mergeRemoteState(d.localState(false), false)
    expect(b.catalog.list().map(s => s.name)).toEqual(['x'])
    expect(b.catalog.entry('y')?.dropped).toBe(true)
    // garbage never throws
    b.catalog.swimDelegate().mergeRemoteState({ e: [] }, false)
    expect(b.catalog.mergeBytes(new Uint8Array([0xff, 0xfe]))).toBe(0)
    expect(b.catalog.mergeBytes(new TextEncoder().encode('{"v":2,"e":[]}'))).toBe(0)
  })

  it('a push-pull state larger than the message limit rotates, so every entry travels eventually', () => {
    const a = make(0, { maxMessageBytes: 600 })
    const b = make()
    for (let i = 0; i < 10; i++) a.catalog.create({ name: `s${i}`, schema: [...schema] })
    for (let round = 0; round < 10 && b.catalog.list().length < 10; round++) {
      const st = a.catalog.localState()
      expect(st.byteLength).toBeLessThanOrEqual(600)
      b.catalog.mergeBytes(st)
    }
    expect(b.catalog.list()).toHaveLength(10)
  })

  it('validates every field of a remote entry and skips only the bad ones', () => {
    const a = make()
    const good = { name: 'ok', uid: 'ok-1', schema: [{ name: 'v', type: 'utf8', nullable: true }], partitions: 4, replicas: 2, version: (EPOCH - 1000) * 1024, dropped: false }
    const bad: Array<Record<string, unknown>> = [
      { ...good, name: 'Bad' },
      { ...good, name: 'ok2', uid: 'other-1' },
      { ...good, name: 'ok3', uid: 'ok3-1', partitions: 0 },
      { ...good, name: 'ok4', uid: 'ok4-1', replicas: 99 },
      { ...good, name: 'ok5', uid: 'ok5-1', version: -1 },
      { ...good, name: 'ok6', uid: 'ok6-1', dropped: 'yes' },
      { ...good, name: 'ok7', uid: 'ok7-1', schema: [{ name: 'id', type: 'int64' }] },
      { ...good, name: 'ok8', uid: 'ok8-1', schema: [{ name: 'x', type: 'utf8', extra: 1 }] }
    ]
    for (const e of bad) expect(typeof decodeEntry(e)).toBe('string')
    const msg = new TextEncoder().encode(JSON.stringify({ v: 1, e: [...bad, good] }))
    expect(a.catalog.mergeBytes(msg)).toBe(1)
    expect(a.catalog.list().map(s => s.name)).toEqual(['ok'])
    expect(a.catalog.get('ok')!.schema[0]).toEqual({ name: 'id', type: 'utf8', nullable: false })
  })

  it('ignores prototype-pollution attempts', () => {
    const a = make()
    const v = (EPOCH - 1000) * 1024
    const attempts = [
      '{"v":1,"e":[{"name":"p1","uid":"p1-1","schema":[{"name":"x","type":"utf8"}],"partitions":4,"replicas":1,"version":' + v + ',"dropped":false,"__proto__":{"polluted":true}}]}',
      '{"v":1,"e":[{"name":"p2","uid":"p2-1","schema":[{"name":"x","type":"utf8","__proto__":{"polluted":true}}],"partitions":4,"replicas":1,"version":' + v + ',"dropped":false}]}',
      '{"v":1,"e":[{"name":"__proto__","uid":"__proto__-1","schema":[{"name":"x","type":"utf8"}],"partitions":4,"replicas":1,"version":' + v + ',"dropped":false}]}',
      '{"v":1,"__proto__":{"polluted":true},"e":[{"name":"p3","uid":"p3-1","schema":[{"name":"x","type":"utf8"}],"partitions":4,"replicas":1,"version":' + v + ',"dropped":false,"constructor":{"prototype":{"polluted":true}}}]}'
    ]
    for (const s of attempts) expect(a.catalog.mergeBytes(new TextEncoder().encode(s))).toBe(0)
    expect(a.catalog.list()).toEqual([])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('a remote version too far in the future is not merged (clock skew), the rest is', () => {
    const a = make()
    const ahead = make(3_600_000)
    ahead.catalog.create({ name: 'future', schema: [...schema] })
    expect(a.catalog.mergeBytes(ahead.bus.sent[0]!)).toBe(0)
    expect(a.catalog.get('future')).toBeUndefined()
    expect(a.hlc.skew.count).toBe(1)
  })

  it('tombstones are purged after the grace period; an expired tombstone is not re-learned', () => {
    const a = make(0, { tombstoneGraceMs: 60_000, purgeIntervalMs: 10_000 })
    const b = make()
    a.catalog.create({ name: 'gone', schema: [...schema] })
    a.catalog.drop('gone')
    const tomb = a.bus.sent.at(-1)!
    a.clock.advance(30_000)
    expect(a.catalog.entry('gone')).toBeDefined()
    a.clock.advance(40_000)
    expect(a.catalog.entry('gone')).toBeUndefined()
    // b's clock is at EPOCH too; move it past the grace and offer the old tombstone
    const late = make(0, { tombstoneGraceMs: 60_000 })
    late.clock.t += 120_000
    expect(late.catalog.mergeBytes(tomb)).toBe(0)
    expect(b.catalog.mergeBytes(tomb)).toBe(1)
  })
})
