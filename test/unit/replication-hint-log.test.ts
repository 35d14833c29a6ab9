import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { decodeHintPayload, encodeHintFrame, HintLog, readHintFrames } from '../../src/replication/hint-log.js'
import type { StoredHint } from '../../src/replication/hint-log.js'
import { HintStore } from '../../src/replication/index.js'
import type { Hint } from '../../src/replication/index.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nodeFileSystem, silentLogger } from '../../src/runtime/index.js'
import type { Clock, Timer } from '../../src/runtime/index.js'
import { checkSchema } from '../../src/schema/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { crc32 } from '../../src/storage/index.js'
import type { VersionedRecord } from '../../src/storage/index.js'
import { MemoryFileSystem } from '../sim/memory-fs.js'

const space: SpaceDef = { name: 's', uid: 's@1', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int32' }]), partitions: 4, replicas: 3 }
const rec = (id: string, version: number, v: number | null = 1): VersionedRecord =>
  v === null ? { id, version, deleted: true, row: null } : { id, version, deleted: false, row: { id, v } }
const DIR = '/data/hints'

/** Monotonic and wall time moved by hand; a restarted process gets a new one (its monotonic origin differs). */
class ManualClock implements Clock {
  private wallOffset = 1_700_000_000_000
  constructor (private t = 0) {}
  now (): number { return this.t }
  wallNow (): number { return this.t + this.wallOffset }
  setTimer (): Timer { throw new Error('no timers here') }
  advance (ms: number): void { this.t += ms }
  setWall (wallMs: number): void { this.wallOffset = wallMs - this.t }
}
const WINDOW_MS = 3 * 3600 * 1000

async function open (fs: MemoryFileSystem, fileBytes?: number): Promise<Awaited<ReturnType<typeof HintLog.open>>> {
  return await HintLog.open({ fs, log: silentLogger }, { dir: DIR, ...(fileBytes !== undefined ? { fileBytes } : {}) })
}

/** A store writing through hint files on `fs`, with its clock. */
async function storeOn (fs: MemoryFileSystem, opts: { maxBytes?: number, clock?: ManualClock, fileBytes?: number } = {}): Promise<{ store: HintStore, log: HintLog, clock: ManualClock, loaded: number }> {
  const clock = opts.clock ?? new ManualClock(1_000)
  const { log, load } = await open(fs, opts.fileBytes)
  const store = new HintStore(opts.maxBytes ?? 1 << 20, WINDOW_MS, { log, clock, logger: silentLogger })
  store.load(load.hints)
  return { store, log, clock, loaded: load.hints.length }
}

const hint = (clock: ManualClock, target: string, partition: number, records: VersionedRecord[]): Hint =>
  ({ target, space, partition, records, createdAt: clock.now(), bytes: 0 })

describe('hint files: format', () => {
  it('a frame decodes to the hint written, validated as a repl.write', () => {
    const h: StoredHint = { target: 'p2', space, partition: 3, records: [rec('a', 5), rec('b', 6, null)], createdAtWallMs: 1234 }
    const file = new Uint8Array([...headerOf(), ...encodeHintFrame(h)])
    const { payloads, end } = readHintFrames(file)
    expect(end).toBe(file.length)
    expect(decodeHintPayload(payloads[0]!, 'p2')).toEqual(h)
    expect(() => decodeHintPayload(payloads[0]!, 'p3')).toThrow(/another target/)
  })

  it('reading stops at a frame cut short, failing its CRC, or claiming a huge length', () => {
    const frames = [1, 2, 3].map(i => encodeHintFrame({ target: 't', space, partition: 0, records: [rec(`r${i}`, i)], createdAtWallMs: 0 }))
    const whole = new Uint8Array([...headerOf(), ...frames.flatMap(f => [...f])])
    const cut = whole.subarray(0, whole.length - 3)
    expect(readHintFrames(cut).payloads).toHaveLength(2)
    const flipped = whole.slice()
    flipped[16 + frames[0]!.length + 20] ^= 0x40
    expect(readHintFrames(flipped).payloads).toHaveLength(1)
    const huge = whole.slice()
    new DataView(huge.buffer).setUint32(16 + 8, 0xfffffff0, true)
    expect(readHintFrames(huge)).toEqual({ payloads: [], end: 16 })
    expect(readHintFrames(new Uint8Array(10)).payloads).toEqual([])
  })

  it('content that passes the CRC but not validation is refused, and pollutes nothing', () => {
    const cols = [['id', 'utf8', false], ['v', 'int32', true]]
    const bad: Array<[string, Uint8Array]> = [
      ['a map, __proto__ key', pack({ __proto__: { polluted: true }, 0: 1 })],
      ['partition out of range', pack([1, 't', 0, ['s', 's@1', 4, 3, cols], 9, pack(['a', 1, false, ['a', 1]])])],
      ['value of the wrong type', pack([1, 't', 0, ['s', 's@1', 4, 3, cols], 0, pack(['a', 1, false, ['a', 'not an int']])])],
      ['row id not the record id', pack([1, 't', 0, ['s', 's@1', 4, 3, cols], 0, pack(['a', 1, false, ['b', 1]])])],
      ['a map for the space', pack([1, 't', 0, { name: 's', uid: 's@1', partitions: 4, replicas: 3, schema: cols }, 0, pack([])])],
      ['another format', pack([2, 't', 0, [], 0, null])]
    ]
    for (const [what, payload] of bad) {
      expect(() => decodeHintPayload(frameOf(payload).subarray(12), 't'), what).toThrow()
    }
    // A column may be named __proto__: it comes back an own key of a row with no prototype.
    const odd = decodeHintPayload(frameOf(pack([1, 't', 0, ['s', 's@1', 4, 3, [['id', 'utf8', false], ['__proto__', 'utf8', true]]], 0,
      pack(['a', 1, false, ['a', 'x']])])).subarray(12), 't')
    expect(Object.getOwnPropertyDescriptor(odd.records[0]!.row, '__proto__')?.value).toBe('x')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe('hint files: HintStore through HintLog', () => {
  it('hints survive a power cut once durable, and come back with their age', async () => {
    const fs = new MemoryFileSystem()
    const a = await storeOn(fs)
    expect(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec('a', 1)]))).toBe('kept')
    a.clock.advance(60_000)
    expect(await a.store.addDurably(hint(a.clock, 'p2', 1, [rec('b', 2), rec('c', 3, null)]))).toBe('kept')
    expect(await a.store.addDurably(hint(a.clock, 'p3', 0, [rec('d', 4)]))).toBe('kept')
    fs.crash()
    // The restarted process: its monotonic clock starts elsewhere, its wall clock 10 s later.
    const clock = new ManualClock(5)
    clock.setWall(a.clock.wallNow() + 10_000)
    const b = await storeOn(fs, { clock })
    expect(b.loaded).toBe(3)
    expect(b.store.stats()).toMatchObject({ loaded: 3, loadedRecords: 4, pending: 3, targets: 2 })
    const first = b.store.peek('p2', clock.now(), 's@1\u00000')!
    expect(first.records).toEqual([rec('a', 1)])
    expect(clock.now() - first.createdAt).toBe(70_000)
    expect(b.store.peek('p2', clock.now(), 's@1\u00001')!.records).toEqual([rec('b', 2), rec('c', 3, null)])
  })

  it('ignores a torn tail: hints not synced when the power went are not read back, the rest are', async () => {
    const fs = new MemoryFileSystem()
    const a = await storeOn(fs)
    for (let i = 0; i < 3; i++) expect(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec(`k${i}`, i + 1)]))).toBe('kept')
    fs.faults.sync = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })
    expect(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec('torn', 9)]))).toBe('failed')
    expect(a.store.stats()).toMatchObject({ droppedDisk: 1, pending: 3 })
    fs.faults.sync = undefined
    fs.crash({ tornBytes: (_path, unsynced) => Math.floor(unsynced / 2) })
    const { load } = await open(fs)
    expect(load.hints.map(h => h.records[0]!.id)).toEqual(['k0', 'k1', 'k2'])
    expect(load.tornBytes).toBeGreaterThan(0)
  })

  it('a hint file is deleted once every hint in it is delivered or expired', async () => {
    const fs = new MemoryFileSystem()
    // Files of about two hints each.
    const a = await storeOn(fs, { fileBytes: 200 })
    for (let i = 0; i < 5; i++) await a.store.addDurably(hint(a.clock, 'p2', i % 2, [rec(`x${i}`, i + 1)]))
    const files = (): string[] => [...fs.files(DIR).keys()]
    expect(files()).toHaveLength(3)
    const bytes = a.store.stats().diskBytes
    expect(bytes).toBe([...fs.files(DIR).values()].reduce((s, n) => s + n, 0))
    // The first file's hints: x0 (partition 0) and x1 (partition 1).
    a.store.delivered(a.store.peek('p2', a.clock.now(), 's@1\u00000')!)
    expect(files()).toHaveLength(3)
    a.store.delivered(a.store.peek('p2', a.clock.now(), 's@1\u00001')!)
    expect(files()).toHaveLength(2)
    a.clock.advance(WINDOW_MS + 1)
    a.store.expire(a.clock.now())
    await Promise.resolve()
    expect(files()).toEqual([])
    expect(a.store.stats()).toMatchObject({ pending: 0, diskBytes: 0, droppedExpired: 3 })
    // Expired while the coordinator was down: dropped at the first look, files deleted.
    await a.store.addDurably(hint(a.clock, 'p2', 0, [rec('old', 1)]))
    const clock = new ManualClock(0)
    clock.setWall(a.clock.wallNow() + WINDOW_MS + 1)
    const b = await storeOn(fs, { clock })
    expect(b.store.peek('p2', clock.now())).toBeUndefined()
    expect(files()).toEqual([])
  })

  it('bounds the hint files by hintMaxBytes; a failed disk drops hints until it works again', async () => {
    const fs = new MemoryFileSystem()
    const a = await storeOn(fs, { maxBytes: 400 })
    const outcomes = []
    for (let i = 0; i < 6; i++) outcomes.push(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec(`b${i}`, i + 1)])))
    expect(outcomes).toContain('full')
    expect(a.store.stats().diskBytes).toBeLessThanOrEqual(400)
    expect(a.store.stats().droppedFull).toBe(outcomes.filter(o => o === 'full').length)
    for (let h; (h = a.store.peek('p2', a.clock.now())) !== undefined;) a.store.delivered(h)
    fs.faults.append = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
    expect(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec('full', 1)]))).toBe('failed')
    fs.faults.append = undefined
    expect(await a.store.addDurably(hint(a.clock, 'p2', 0, [rec('later', 2)]))).toBe('kept')
    expect(a.store.stats()).toMatchObject({ droppedDisk: 1, pending: 1 })
  })

  it('a hint delivered before its write failed counts as kept', async () => {
    const fs = new MemoryFileSystem()
    const a = await storeOn(fs)
    fs.faults.sync = new Error('EIO')
    const h = hint(a.clock, 'p2', 0, [rec('fast', 1)])
    const outcome = a.store.addDurably(h)
    a.store.delivered(h)
    expect(await outcome).toBe('kept')
    expect(a.store.stats()).toMatchObject({ delivered: 1, droppedDisk: 0, pending: 0 })
  })
})

function headerOf (): Uint8Array {
  const h = new Uint8Array(16)
  const v = new DataView(h.buffer)
  v.setUint32(0, 0x544e4853, true)
  v.setUint32(4, 1, true)
  v.setUint32(12, crc32(h.subarray(0, 12)), true)
  return h
}

function frameOf (payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(12 + payload.length)
  f.set(payload, 12)
  const v = new DataView(f.buffer)
  v.setUint32(0, 0x68a1f00d, true)
  v.setUint32(8, payload.length, true)
  v.setUint32(4, crc32(f.subarray(8)), true)
  return f
}

describe('hint files on node:fs', () => {
  it('are written, read back after a reopen, and deleted once delivered', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-hints-'))
    try {
      const clock = new ManualClock(0)
      const opened = await HintLog.open({ fs: nodeFileSystem, log: silentLogger }, { dir: join(dir, 'hints') })
      const store = new HintStore(1 << 20, WINDOW_MS, { log: opened.log, clock, logger: silentLogger })
      expect(await store.addDurably(hint(clock, 'QmTarget', 2, [rec('a', 1), rec('b', 2, null)]))).toBe('kept')
      expect(await store.addDurably(hint(clock, 'weird/id', 0, [rec('c', 3)]))).toBe('kept')
      await opened.log.close()
      const again = await HintLog.open({ fs: nodeFileSystem, log: silentLogger }, { dir: join(dir, 'hints') })
      expect(again.load.hints.map(h => [h.target, h.partition, h.records.map(r => r.id).join()])).toEqual([['QmTarget', 2, 'a,b'], ['weird/id', 0, 'c']])
      const store2 = new HintStore(1 << 20, WINDOW_MS, { log: again.log, clock, logger: silentLogger })
      store2.load(again.load.hints)
      for (const t of ['QmTarget', 'weird/id']) store2.delivered(store2.peek(t, clock.now())!)
      await again.log.close()
      expect((await nodeFileSystem.readdir(join(dir, 'hints', 'QmTarget')))).toEqual([])
      expect(store2.stats().diskBytes).toBe(0)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
