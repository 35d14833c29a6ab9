/**
 * Placement while a peer decommissions (issue 13): a member whose meta says `leaving` owns nothing,
 * but what it announced ready still counts as a live copy, so its partitions' next owners catch up
 * from it and nothing looks fresh or unavailable meanwhile.
 */
import { describe, expect, it } from 'vitest'
import { HybridClock } from '../../src/hlc/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { Catalog, LEAVING_META_KEY, PlacementService, READY_META_KEY, encodeReady, partitionKey, rendezvous } from '../../src/placement/index.js'
import { ManualClock } from '../sim/manual-clock.js'
import { FakeMembership } from './placement-helpers.js'

const schema = [{ name: 'v', type: 'utf8' as const, nullable: true }]

function setup (self: string): { clock: ManualClock, m: FakeMembership, catalog: Catalog, pl: PlacementService } {
  const clock = new ManualClock()
  clock.t = 1_700_000_000_000
  const m = new FakeMembership(self, ['a', 'b', 'c'].filter(x => x !== self))
  const catalog = new Catalog({ hlc: new HybridClock({ clock }), clock, log: silentLogger })
  const pl = new PlacementService({ membership: m, catalog, clock, log: silentLogger })
  catalog.start()
  pl.start()
  return { clock, m, catalog, pl }
}

describe('placement while a peer decommissions', () => {
  it('a leaving member owns nothing, but its ready copies stay read and write replicas until the next owners are ready', () => {
    const { m, catalog, pl } = setup('a')
    const s = catalog.create({ name: 's', schema, partitions: 32, replicas: 1 })
    // b holds ready what it owns with three members; then it starts leaving.
    const bOwns = [...Array(32).keys()].filter(p => rendezvous(['a', 'b', 'c'], partitionKey(s.uid, p), 1)[0] === 'b')
    expect(bOwns.length).toBeGreaterThan(0)
    m.set('b', { meta: { [READY_META_KEY]: encodeReady(new Map([[s.uid, new Set(bOwns)]])) } })
    m.set('b', { meta: { ...m.member('b')!.meta, [LEAVING_META_KEY]: true } })
    expect(pl.members()).toEqual(['a', 'c'])
    expect(pl.leavingMembers()).toEqual(['b'])
    for (const p of bOwns) {
      const loc = pl.locate(s, p)
      expect(loc.owners).toEqual(rendezvous(['a', 'c'], partitionKey(s.uid, p), 1))
      expect(loc.fresh).toBe(false)
      // Not ready on its next owner yet: b serves it, and takes its writes beside the owner.
      expect(loc.readReplicas).toEqual(['b'])
      expect(loc.writeReplicas).toEqual([...loc.owners, 'b'])
    }
    // Once b has left, with its readiness still announced, it is a gone holder (as before).
    m.set('b', { state: 'left' })
    expect(pl.leavingMembers()).toEqual([])
    expect(pl.locate(s, bOwns[0]!).readReplicas).toEqual(['b'])
  })

  it('this peer leaving: owns nothing at once, announces `leaving`, still counts its own copies (never fresh), and cancels', () => {
    const { clock, m, catalog, pl } = setup('b')
    const s = catalog.create({ name: 's', schema, partitions: 32, replicas: 1 })
    const owned = pl.ownedPartitions().map(o => o.partition)
    expect(owned.length).toBeGreaterThan(0)
    for (const p of owned) pl.markReady(s, p)
    pl.setLeaving(true)
    expect(pl.isLeaving()).toBe(true)
    expect(pl.ownedPartitions()).toEqual([])
    for (const p of owned) {
      const loc = pl.locate(s, p)
      expect(loc.owners).not.toContain('b')
      expect(loc.fresh).toBe(false)
      expect(loc.readReplicas).toEqual(['b'])
    }
    clock.advance(500)
    expect(m.localMember().meta[LEAVING_META_KEY]).toBe(true)
    // After its leave a new meta would revive it as alive: none is published.
    m.set('b', { state: 'left' })
    pl.markReleased(s, owned[0]!)
    clock.advance(500)
    expect(m.localMember().meta[READY_META_KEY]).toEqual(encodeReady(new Map([[s.uid, new Set(owned)]])))
    m.set('b', { state: 'alive' })
    pl.setLeaving(false)
    expect(pl.ownedPartitions().map(o => o.partition)).toEqual(owned)
    clock.advance(500)
    expect(m.localMember().meta[LEAVING_META_KEY]).toBeUndefined()
  })
})
