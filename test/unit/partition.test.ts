/**
 * The partition detector against a fake membership view and a manual clock.
 */
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/runtime/index.js'
import type { Clock } from '../../src/runtime/index.js'
import { PartitionDetector } from '../../src/partition/index.js'
import type { MembershipView, PartitionEvent } from '../../src/partition/index.js'
import type { MemberEvent, MemberInfo, MemberState } from '../../src/membership/index.js'
import { ManualClock } from '../sim/index.js'


class FakeView implements MembershipView {
  readonly localPeerId = 'self'
  private readonly byId = new Map<string, MemberInfo>()
  private readonly listeners = new Set<(ev: MemberEvent) => void>()
  constructor (private readonly clock: Clock) { this.set('self', 'alive') }
  members (): MemberInfo[] { return [...this.byId.values()].map(m => ({ ...m })) }
  onChange (l: (ev: MemberEvent) => void): () => void { this.listeners.add(l); return () => { this.listeners.delete(l) } }

  set (id: string, state: MemberState): void {
    const prev = this.byId.get(id)
    const m: MemberInfo = { id, addrs: [], meta: {}, state, incarnation: 0, stateChangedAt: this.clock.now() }
    this.byId.set(id, m)
    const type = prev === undefined ? 'join' : prev.state === 'suspect' && state === 'alive' ? 'alive' : state
    for (const l of this.listeners) l({ type: type as MemberEvent['type'], member: { ...m } })
  }

  reap (id: string): void {
    const m = this.byId.get(id)!
    this.byId.delete(id)
    for (const l of this.listeners) l({ type: 'reaped', member: m })
  }
}

function setup (peers: string[], stableWindowMs = 10_000): { clock: ManualClock, view: FakeView, det: PartitionDetector, events: PartitionEvent[] } {
  const clock = new ManualClock()
  const view = new FakeView(clock)
  for (const p of peers) view.set(p, 'alive')
  const det = new PartitionDetector({ membership: view, clock, log: silentLogger }, { stableWindowMs })
  const events: PartitionEvent[] = []
  det.onChange(ev => events.push(ev))
  det.start()
  return { clock, view, det, events }
}

describe('partition detector', () => {
  it('a peer alone is its own majority', () => {
    const { det } = setup([])
    expect(det.status()).toEqual({ majority: true, reachable: 1, stableClusterSize: 1, unreachable: [], suspect: [] })
  })

  it('counts self, alive and suspect members of the stable cluster as reachable', () => {
    const { det, view } = setup(['a', 'b', 'c', 'd'])
    expect(det.status()).toMatchObject({ majority: true, reachable: 5, stableClusterSize: 5 })
    view.set('a', 'suspect')
    view.set('b', 'dead')
    expect(det.status()).toEqual({ majority: true, reachable: 4, stableClusterSize: 5, unreachable: ['b'], suspect: ['a'] })
    expect(det.isReachable('a')).toBe(true)
    expect(det.isReachable('b')).toBe(false)
    expect(det.isReachable('self')).toBe(true)
    expect(det.isReachable('nobody')).toBe(false)
  })

  it('the minority side of a split loses the majority, and regains it after the heal', () => {
    const { det, view, clock, events } = setup(['a', 'b', 'c', 'd'])
    // self + a | b + c + d
    view.set('b', 'dead'); view.set('c', 'dead'); view.set('d', 'dead')
    expect(det.status()).toMatchObject({ majority: false, reachable: 2, stableClusterSize: 5 })
    expect(events.filter(e => e.type === 'majority-lost')).toHaveLength(1)
    // Dead members stay in the stable cluster after the window: still a minority.
    clock.advance(60_000)
    expect(det.status()).toMatchObject({ majority: false, stableClusterSize: 5 })
    view.set('b', 'alive'); view.set('c', 'alive')
    expect(det.status()).toMatchObject({ majority: true, reachable: 4 })
    expect(events.filter(e => e.type === 'majority-regained')).toHaveLength(1)
  })

  it('exactly half is not a majority', () => {
    const { det, view } = setup(['a', 'b', 'c'])
    view.set('b', 'dead'); view.set('c', 'dead')
    expect(det.status()).toMatchObject({ majority: false, reachable: 2, stableClusterSize: 4 })
  })

  it('left members leave the stable cluster at once; a graceful shrink keeps the majority', () => {
    const { det, view } = setup(['a', 'b', 'c', 'd'])
    view.set('a', 'left'); view.set('b', 'left'); view.set('c', 'left')
    expect(det.status()).toMatchObject({ majority: true, reachable: 2, stableClusterSize: 2 })
  })

  it('reaped dead members leave the stable cluster', () => {
    const { det, view, clock } = setup(['a', 'b'])
    view.set('a', 'dead'); view.set('b', 'dead')
    expect(det.status().majority).toBe(false)
    clock.advance(20_000)
    view.reap('a'); view.reap('b')
    expect(det.status()).toMatchObject({ majority: true, stableClusterSize: 1 })
  })

  it('newcomers join the stable cluster only once the view was unchanged for the window', () => {
    const { det, view, clock } = setup(['a', 'b'], 5000)
    view.set('c', 'alive')
    clock.advance(3000)
    view.set('d', 'alive')
    clock.advance(4000)
    // The window restarted with d: not yet stable.
    expect(det.status().stableClusterSize).toBe(3)
    expect(det.stableCluster().sort()).toEqual(['a', 'b', 'self'])
    clock.advance(1001)
    expect(det.status().stableClusterSize).toBe(5)
    // New members that die before the window are still counted once it passes (the view is what it is).
    view.set('e', 'alive'); view.set('e', 'dead')
    clock.advance(5000)
    expect(det.status()).toMatchObject({ stableClusterSize: 6, reachable: 5, unreachable: ['e'] })
  })

  it('reports reachability flips', () => {
    const { view, events } = setup(['a'])
    view.set('a', 'dead')
    view.set('a', 'alive')
    expect(events.filter(e => e.type === 'reachability')).toEqual([
      { type: 'reachability', peerId: 'a', reachable: false },
      { type: 'reachability', peerId: 'a', reachable: true }
    ])
  })

  it('quorumReachable and anyReachable', () => {
    const { det, view } = setup(['a', 'b', 'c'])
    view.set('b', 'dead')
    view.set('c', 'suspect')
    expect(det.quorumReachable(['a', 'b', 'c'], 2)).toBe(true)
    expect(det.quorumReachable(['a', 'b', 'c'], 3)).toBe(false)
    expect(det.quorumReachable(['self', 'b'], 2)).toBe(false)
    expect(det.quorumReachable(['a', 'a', 'b'], 2)).toBe(false)
    expect(det.quorumReachable([], 0)).toBe(true)
    expect(det.anyReachable(['b', 'x'])).toBe(false)
    expect(det.anyReachable(['b', 'c'])).toBe(true)
    expect(det.anyReachable([])).toBe(false)
  })

  it('stop() unsubscribes and cancels the window timer', () => {
    const { det, view, clock, events } = setup(['a', 'b'])
    det.stop()
    view.set('a', 'dead'); view.set('b', 'dead')
    clock.advance(60_000)
    expect(events).toEqual([])
  })
})
