import { describe, expect, it } from 'vitest'
import { HybridClock } from '../../src/hlc/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { Catalog, PlacementService, decodeBitmap, encodeBitmap, rendezvous, partitionKey } from '../../src/placement/index.js'
import { ManualClock } from '../sim/manual-clock.js'
import { FakeMembership } from './placement-helpers.js'

function setup (self = 'a', others = ['b', 'c', 'd']): { clock: ManualClock, m: FakeMembership, catalog: Catalog, pl: PlacementService } {
  const clock = new ManualClock()
  clock.t = 1_700_000_000_000
  const m = new FakeMembership(self, others)
  const catalog = new Catalog({ hlc: new HybridClock({ clock }), clock, log: silentLogger })
  const pl = new PlacementService({ membership: m, catalog, clock, log: silentLogger })
  catalog.start()
  pl.start()
  return { clock, m, catalog, pl }
}

const schema = [{ name: 'v', type: 'utf8' as const, nullable: true }]

describe('readiness bitmap', () => {
  it('round-trips and is compact', () => {
    expect(encodeBitmap([])).toBe('')
    expect(encodeBitmap([0])).toBe('01')
    expect(encodeBitmap([0, 1, 2, 3, 15])).toBe('0f80')
    expect(encodeBitmap([1023]).length).toBe(256)
    expect([...decodeBitmap('0f80')!].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 15])
    expect(decodeBitmap('zz')).toBeNull()
    expect(decodeBitmap('0')).toBeNull()
    expect(decodeBitmap(7)).toBeNull()
  })
})

describe('PlacementService', () => {
  it('owners are HRW over alive, suspect and dead members; left members are excluded', () => {
    const { m, catalog, pl } = setup()
    const s = catalog.create({ name: 's', schema, partitions: 8, replicas: 3 })
    for (let p = 0; p < 8; p++) expect(pl.locate(s, p).owners).toEqual(rendezvous(['a', 'b', 'c', 'd'], partitionKey(s.uid, p), 3))
    m.set('b', { state: 'suspect' })
    expect(pl.members()).toEqual(['a', 'b', 'c', 'd'])
    // A dead member keeps its partitions: a peer cut off from the rest must not own them alone.
    m.set('b', { state: 'dead' })
    m.set('c', { state: 'left' })
    expect(pl.members()).toEqual(['a', 'b', 'd'])
    for (let p = 0; p < 8; p++) {
      const loc = pl.locate(s, p)
      expect([...loc.owners].sort()).toEqual(['a', 'b', 'd'])
      expect(loc.quorum).toBe(2)
    }
    expect(pl.ownedPartitions()).toHaveLength(8)
    expect(() => pl.locate(s, 8)).toThrow(RangeError)
    expect(pl.addressOf('d')).toEqual({ id: 'd', addrs: ['/sim/d'] })
    expect(pl.addressOf('zz')).toBeUndefined()
  })

  it('drops a long-dead owner only on the majority side', () => {
    const clock = new ManualClock()
    clock.t = 1_000_000
    const m = new FakeMembership('a', ['b', 'c', 'd'])
    const catalog = new Catalog({ hlc: new HybridClock({ clock }), clock, log: silentLogger })
    let majority = false
    const pl = new PlacementService({ membership: m, catalog, clock, log: silentLogger, isMajority: () => majority }, { deadOwnerTimeoutMs: 60_000 })
    catalog.start()
    pl.start()
    m.view.set('b', { ...m.view.get('b')!, state: 'dead', stateChangedAt: clock.t })
    m.set('b', { state: 'dead' })
    clock.advance(120_000)
    expect(pl.members()).toEqual(['a', 'b', 'c', 'd'])
    majority = true
    m.set('c', { state: 'alive' })
    expect(pl.members()).toEqual(['a', 'c', 'd'])
    pl.stop()
  })

  it('fresh partitions: owners count as ready; then only announced holders are read from', () => {
    const { m, catalog, pl } = setup()
    const s = catalog.create({ name: 's', schema, partitions: 4, replicas: 2 })
    const loc0 = pl.locate(s, 0)
    expect(loc0.readReplicas).toEqual(loc0.owners)
    expect(loc0.writeReplicas).toEqual(loc0.owners)
    expect(loc0.quorum).toBe(2)
    const [o1, o2] = loc0.owners as [string, string]
    // One owner announces: the other is not ready any more (it must catch up).
    const hex = encodeBitmap([0])
    // A remote owner (not self, whose readiness is local) announces.
    const announced = o1 === 'a' ? o2 : o1
    m.set(announced, { meta: { ready: { [s.uid]: hex } } })
    const loc1 = pl.locate(s, 0)
    expect(loc1.readReplicas).toEqual([announced])
    expect(loc1.writeReplicas).toEqual(loc0.owners)
    expect(loc1.quorum).toBe(1)
    // A non-owner holding it ready is a former holder: read after the owners, written to.
    const outsider = ['a', 'b', 'c', 'd'].find(x => !loc0.owners.includes(x))!
    if (outsider === 'a') pl.markReady(s, 0)
    else m.set(outsider, { meta: { ready: { [s.uid]: hex } } })
    const loc2 = pl.locate(s, 0)
    expect(loc2.readReplicas).toEqual([announced, outsider])
    expect(loc2.writeReplicas).toEqual([...loc0.owners, outsider])
    expect(loc2.quorum).toBe(2)
    // Malformed remote announcements count as nothing.
    m.set(announced, { meta: { ready: { [s.uid]: 'not-hex', other: 12 } } })
    expect(pl.locate(s, 0).readReplicas).toEqual(outsider === 'a' ? ['a'] : [outsider])
  })

  it('markReady/markReleased reach meta, debounced, keeping other keys', () => {
    const { m, clock, catalog, pl } = setup('a', ['b'])
    m.view.get('a')!.meta = { name: 'peer-a', http: '127.0.0.1:1' }
    const s = catalog.create({ name: 's', schema, partitions: 16, replicas: 2 })
    let changes = 0
    pl.onChange(() => { changes++ })
    for (let p = 0; p < 16; p++) pl.markReady(s, p)
    expect(pl.readyPartitions('a', s)).toHaveLength(16)
    clock.advance(0)
    expect(m.metaUpdates).toBe(1)
    expect(changes).toBe(1)
    expect(m.localMember().meta).toEqual({ name: 'peer-a', http: '127.0.0.1:1', ready: { [s.uid]: 'ffff' } })
    pl.markReleased(s, 0)
    pl.markReleased(s, 1)
    clock.advance(50)
    expect(m.metaUpdates).toBe(1) // within 200 ms of the last update
    clock.advance(200)
    expect(m.metaUpdates).toBe(2)
    expect(m.localMember().meta.ready).toEqual({ [s.uid]: 'fcff' })
    // dropping the space withdraws the announcement
    catalog.drop('s')
    clock.advance(500)
    expect(m.localMember().meta).toEqual({ name: 'peer-a', http: '127.0.0.1:1' })
  })

  it('a member that left gracefully owns nothing but its data still counts: its sole partitions are unavailable, not fresh, until it is removed', () => {
    const { m, catalog, pl } = setup('a', ['b', 'c'])
    const s = catalog.create({ name: 's', schema, partitions: 32, replicas: 1 })
    const onB = [...Array(32).keys()].filter(p => pl.locate(s, p).owners[0] === 'b')
    expect(onB.length).toBeGreaterThan(0)
    m.set('b', { meta: { ready: { [s.uid]: encodeBitmap(onB) } } })
    m.set('b', { state: 'left' })
    for (const p of onB) {
      const loc = pl.locate(s, p)
      expect(loc.owners).not.toContain('b')
      // Before issue 13 a leaver's readiness was forgotten at once: fresh, and its new owner answered 404.
      expect(loc.fresh).toBe(false)
      expect(loc.readReplicas).toEqual(['b'])
      expect(loc.writeReplicas).toEqual([...loc.owners, 'b'])
    }
    expect(pl.partitionsOnlyOn('b').map(x => x.partition)).toEqual(onB)
    expect(pl.partitionsOnlyOn('c')).toEqual([])
    // Removed on purpose (remove-peer): its data is given up, and the partitions start over empty.
    m.set('b', { state: 'left', removed: true })
    for (const p of onB) {
      const loc = pl.locate(s, p)
      expect(loc.fresh).toBe(true)
      expect(loc.readReplicas).toEqual(loc.owners)
    }
  })

  it('a partition only returning holders announce is not fresh and has no read replicas; only data from before the start is returning', () => {
    const { m, catalog, pl } = setup('a', ['b', 'c'])
    const s = catalog.create({ name: 's', schema, partitions: 4, replicas: 3 })
    expect(pl.locate(s, 0).fresh).toBe(true)
    // Another member restarted holding data of partition 0 (meta `back`), nobody has it ready.
    m.set('b', { meta: { back: { [s.uid]: encodeBitmap([0]) } } })
    const loc = pl.locate(s, 0)
    expect(loc.fresh).toBe(false)
    expect(loc.readReplicas).toEqual([])
    expect(loc.returning).toEqual(['b'])
    expect(pl.locate(s, 1).fresh).toBe(true)
    // Once a member has it ready, it is read from there, and `returning` is empty.
    m.set('c', { meta: { ready: { [s.uid]: encodeBitmap([0]) } } })
    expect(pl.locate(s, 0).readReplicas).toEqual(['c'])
    expect(pl.locate(s, 0).returning).toEqual([])

    // This peer: writes taken in this life do not make a returning copy (a new partition written to
    // before its catch-up would otherwise wait for every owner); what was on its disk at start does.
    pl.markReturning(s, 1)
    expect(pl.locate(s, 1).fresh).toBe(true)
    pl.claimReturning([{ uid: s.uid, partition: 2 }, { uid: s.uid, partition: 3 }])
    expect(pl.returningMeta()).toEqual({ [s.uid]: encodeBitmap([2, 3]) })
    expect(pl.locate(s, 2)).toMatchObject({ fresh: false, readReplicas: [], returning: ['a'] })
    pl.markReturning(s, 2)
    // Found empty: withdrawn, fresh again, and its later writes are not returning either.
    pl.withdrawReturning(s, 3)
    expect(pl.locate(s, 3).fresh).toBe(true)
    pl.markReturning(s, 3)
    expect(pl.locate(s, 3).fresh).toBe(true)
    expect(pl.returningMeta()).toEqual({ [s.uid]: encodeBitmap([2]) })
  })

  it('caches placements and invalidates them on membership and catalog changes', () => {
    const { m, catalog, pl } = setup()
    const s = catalog.create({ name: 's', schema, partitions: 4, replicas: 3 })
    const l1 = pl.locate(s, 1)
    expect(pl.locate(s, 1)).toBe(l1)
    m.set('e', { state: 'alive' })
    const l2 = pl.locate(s, 1)
    expect(l2).not.toBe(l1)
    expect(l2.owners).toEqual(rendezvous(['a', 'b', 'c', 'd', 'e'], partitionKey(s.uid, 1), 3))
    expect(Object.isFrozen(l2.owners)).toBe(true)
  })
})
