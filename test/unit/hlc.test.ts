import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClockSkewError, FileHlcStore, HybridClock, hlcLogical, hlcPhysicalMs, makeHlc, type HlcStore } from '../../src/hlc/index.js'
import { ManualClock } from '../sim/index.js'

function wallAt (ms: number): ManualClock {
  const clock = new ManualClock()
  clock.t = ms
  return clock
}

class MemoryStore implements HlcStore {
  saved: number[] = []
  value: number | undefined
  load (): number | undefined { return this.value }
  save (ceiling: number): void { this.value = ceiling; this.saved.push(ceiling) }
}

describe('HybridClock', () => {
  it('packs physical milliseconds and a logical counter into one comparable number', () => {
    const h = makeHlc(1_800_000_000_000, 5)
    expect(hlcPhysicalMs(h)).toBe(1_800_000_000_000)
    expect(hlcLogical(h)).toBe(5)
    expect(Number.isSafeInteger(makeHlc(8_000_000_000_000, 1023))).toBe(true)
  })

  it('issues strictly increasing timestamps even when the wall clock stands still or goes back', () => {
    const clock = wallAt(1_000_000)
    const hlc = new HybridClock({ clock })
    const a = hlc.now()
    const b = hlc.now()
    clock.t = 999_000
    const c = hlc.now()
    expect(b).toBeGreaterThan(a)
    expect(c).toBeGreaterThan(b)
    expect(hlcPhysicalMs(c)).toBe(1_000_000)
  })

  it('moves past a remote timestamp it observes, so causality is kept', () => {
    const hlc = new HybridClock({ clock: wallAt(1_000_000) })
    const remote = makeHlc(1_000_500, 7)
    const after = hlc.observe(remote)
    expect(after).toBeGreaterThan(remote)
    expect(hlc.now()).toBeGreaterThan(after)
  })

  it('refuses, and reports, a remote timestamp further ahead than maxSkewMs', () => {
    const hlc = new HybridClock({ clock: wallAt(1_000_000) }, { maxSkewMs: 1000 })
    const before = hlc.current()
    expect(() => hlc.observe(makeHlc(1_002_000, 0))).toThrow(ClockSkewError)
    expect(hlc.current()).toBe(before)
    expect(hlc.skew.count).toBe(1)
    expect(hlc.skew.maxSeenMs).toBe(2000)
  })

  it('skewLimit is the newest timestamp observe accepts; countRefusal counts without observing', () => {
    const hlc = new HybridClock({ clock: wallAt(1_000_000) }, { maxSkewMs: 1000 })
    const limit = hlc.skewLimit()
    expect(hlcPhysicalMs(limit)).toBe(1_001_000)
    expect(() => hlc.observe(limit + 1)).toThrow(ClockSkewError)
    expect(hlc.observe(limit)).toBeGreaterThan(limit)
    const before = hlc.current()
    const err = hlc.countRefusal(makeHlc(1_005_000, 0))
    expect(err.skewMs).toBe(5000)
    expect(hlc.current()).toBe(before)
    expect(hlc.skew.count).toBe(2)
    expect(hlc.skew.maxSeenMs).toBe(5000)
  })

  it('persists a ceiling ahead of what it issues and never goes backwards after a restart', () => {
    const store = new MemoryStore()
    const clock = wallAt(5_000_000)
    const first = new HybridClock({ clock }, { store, leaseMs: 10_000 })
    const issued = first.now()
    expect(store.value).toBe(makeHlc(5_010_000, 0))
    for (let i = 0; i < 100; i++) first.now()
    expect(store.saved.length).toBe(1)
    // Restart with the wall clock set back by an hour.
    clock.t = 5_000_000 - 3_600_000
    const second = new HybridClock({ clock }, { store, leaseMs: 10_000 })
    expect(second.now()).toBeGreaterThan(issued)
  })

  it('a ceiling that cannot be saved (a full disk) does not stop the clock: it keeps issuing, says so once, retries at most once a second, and says when it is saved again', () => {
    const store = new MemoryStore()
    let full = true
    const attempts: number[] = []
    const failing: HlcStore = {
      load: () => store.load(),
      save: (ceiling) => {
        attempts.push(ceiling)
        if (full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
        store.save(ceiling)
      }
    }
    const heard: Array<string | undefined> = []
    const clock = wallAt(5_000_000)
    const hlc = new HybridClock({ clock }, { store: failing, leaseMs: 10_000, onPersistError: err => { heard.push(err?.message) } })
    let prev = 0
    for (let i = 0; i < 50; i++) {
      const t = hlc.now()
      expect(t).toBeGreaterThan(prev)
      prev = t
      hlc.observe(t - 5)
      clock.t += 100
    }
    // 5 s of issuing: a try at the start and one a second after, not one a call.
    expect(attempts.length).toBeGreaterThanOrEqual(5)
    expect(attempts.length).toBeLessThanOrEqual(6)
    expect(heard).toEqual(['ENOSPC: no space left on device, write'])
    expect(store.value).toBeUndefined()
    full = false
    clock.t += 1000
    const after = hlc.now()
    expect(after).toBeGreaterThan(prev)
    expect(store.value).toBe(makeHlc(hlcPhysicalMs(after) + 10_000, 0))
    expect(heard).toEqual(['ENOSPC: no space left on device, write', undefined])
  })

  describe('FileHlcStore', () => {
    let dir: string
    beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-hlc-')) })
    afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

    it('round-trips the ceiling through a file', () => {
      const store = new FileHlcStore(dir)
      expect(store.load()).toBeUndefined()
      store.save(makeHlc(123_456, 0))
      expect(new FileHlcStore(dir).load()).toBe(makeHlc(123_456, 0))
    })
  })
})
