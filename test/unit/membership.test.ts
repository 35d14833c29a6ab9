/**
 * Unit tests of the membership layer: the pure parts (suspicion timeout, awareness, broadcast
 * queue, decoders) directly, the state machine through a few Swim peers in the simulator, fed
 * hand-made messages from a raw peer that runs no SWIM.
 */
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/runtime/index.js'
import { INCARNATION_LEASE, Swim, retransmitLimit, pushPullScaleMs, suspicionMinMs, suspicionTimeoutMs } from '../../src/membership/index.js'
import type { MemberEvent, SwimOptions } from '../../src/membership/index.js'
import { Awareness, Suspicion } from '../../src/membership/suspicion.js'
import { BroadcastQueue } from '../../src/membership/broadcast.js'
import { decodeAck, decodeGossip, decodeNack, decodePing, decodePingReq, decodePushPull, decodeUpdate, checkAliveDetail, checkMeta } from '../../src/membership/wire.js'
import type { WireUpdate } from '../../src/membership/wire.js'
import { ManualClock, SimWorld, simAddress } from '../sim/index.js'
import { MemoryIncarnationStore } from '../sim/membership-cluster.js'

const limits = { metaMaxBytes: 4096, maxUpdatesPerMessage: 256, maxPushPullMembers: 1000 }


/** A few Swim peers p0..p<n-1> in the simulator, formed by joining p0, plus a raw peer 'raw'. */
async function smallCluster (n: number, options: SwimOptions = {}, seed = 7, worldOptions: { stallTimersFirst?: boolean, maxMessageBytes?: number } = {}): Promise<{ world: SimWorld, swims: Map<string, Swim>, raw: ReturnType<SimWorld['addPeer']> }> {
  const world = new SimWorld({ seed, ...worldOptions })
  const swims = new Map<string, Swim>()
  for (let i = 0; i < n; i++) {
    const p = world.addPeer(`p${i}`)
    const s = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: silentLogger }, { ...options, meta: { name: `p${i}` } })
    await s.start()
    swims.set(p.id, s)
  }
  for (let i = 1; i < n; i++) void swims.get(`p${i}`)!.join([simAddress('p0')])
  await world.runUntil(() => [...swims.values()].every(s => s.liveMembers() === n), { maxMs: 30_000 })
  const raw = world.addPeer('raw')
  return { world, swims, raw }
}

function gossip (raw: ReturnType<SimWorld['addPeer']>, to: string, pb: unknown[]): void {
  raw.transport.send(simAddress(to), 'swim.gossip', { pb })
}

describe('suspicion timeout (Lifeguard)', () => {
  it('min = suspicionMult * max(1, log10 n) * probeInterval', () => {
    expect(suspicionMinMs(4, 100, 1000)).toBe(8000)
    expect(suspicionMinMs(4, 1000, 1000)).toBe(12000)
    // memberlist floors the log factor at 1: small clusters do not get a near-zero timeout.
    expect(suspicionMinMs(4, 1, 1000)).toBe(4000)
    expect(suspicionMinMs(4, 5, 1000)).toBe(4000)
    // Shoal's defaults floor it at 2 (suspicionMinScale): 1.25 * 2 * 1 s under 100 peers.
    expect(suspicionMinMs(1.25, 3, 1000, 2)).toBe(2500)
    expect(suspicionMinMs(1.25, 100, 1000, 2)).toBe(2500)
    expect(suspicionMinMs(1.25, 10_000, 1000, 2)).toBe(5000)
  })

  it('shrinks from max to min as confirmations arrive: max(min, max - (max-min) log(C+1)/log(K+1))', () => {
    const min = 8000
    const max = 48000
    expect(suspicionTimeoutMs(0, 2, min, max)).toBe(48000)
    expect(suspicionTimeoutMs(1, 2, min, max)).toBe(Math.floor(48000 - 40000 * Math.log(2) / Math.log(3)))
    expect(suspicionTimeoutMs(2, 2, min, max)).toBe(8000)
    expect(suspicionTimeoutMs(5, 2, min, max)).toBe(8000)
    // No confirmations expected (tiny cluster): straight to the minimum.
    expect(suspicionTimeoutMs(0, 0, min, max)).toBe(8000)
  })

  it('a confirmation reschedules the remaining time; duplicates and the raiser do not count', () => {
    const clock = new ManualClock()
    let firedAt = -1
    const s = new Suspicion(clock, 'a', 2, 8000, 48000, () => { firedAt = clock.now() })
    clock.advance(5000)
    expect(s.confirm('a')).toBe(false)
    expect(s.confirm('b')).toBe(true)
    expect(s.confirm('b')).toBe(false)
    clock.advance(10_000)
    expect(firedAt).toBe(-1)
    // One confirmation: timeout 22762 ms from the start.
    clock.advance(10_000)
    expect(firedAt).toBe(suspicionTimeoutMs(1, 2, 8000, 48000))
  })

  it('fires at the minimum once K confirmations are in, or not at all when cancelled', () => {
    const clock = new ManualClock()
    let fired = 0
    const s = new Suspicion(clock, 'a', 2, 8000, 48000, () => { fired++ })
    clock.advance(9000)
    s.confirm('b')
    s.confirm('c')
    // Already past the minimum: fires at once.
    clock.advance(0)
    expect(fired).toBe(1)
    const t = new Suspicion(clock, 'a', 2, 8000, 48000, () => { fired++ })
    t.cancel()
    clock.advance(100_000)
    expect(fired).toBe(1)
  })
})

describe('awareness and scaling helpers', () => {
  it('awareness stays within [0, max-1] and scales timeouts by score+1', () => {
    const a = new Awareness(8)
    a.apply(-3)
    expect(a.value).toBe(0)
    a.apply(20)
    expect(a.value).toBe(7)
    expect(a.scale(500)).toBe(4000)
  })

  it('retransmit limit is retransmitMult * ceil(log10(n+1)); push-pull scales above 32 members', () => {
    expect(retransmitLimit(4, 1)).toBe(4)
    expect(retransmitLimit(4, 100)).toBe(12)
    expect(retransmitLimit(4, 1000)).toBe(16)
    expect(pushPullScaleMs(30_000, 32)).toBe(30_000)
    expect(pushPullScaleMs(30_000, 1000)).toBe(30_000 * 6)
  })
})

describe('broadcast queue', () => {
  const u = (id: string, i = 0): WireUpdate => ({ k: 'suspect', id, i, f: 'x' })

  it('sends least-transmitted first, newest first among equals, up to the limit', () => {
    const q = new BroadcastQueue(100)
    q.push(u('a'), 40)
    q.push(u('b'), 40)
    expect(q.take(1000, 1, 3).map(x => x.id)).toEqual(['b'])
    q.push(u('c'), 40)
    // c and a were never sent; c is newer.
    expect(q.take(1000, 2, 3).map(x => x.id)).toEqual(['c', 'a'])
    for (let i = 0; i < 5; i++) q.take(1000, 10, 3)
    expect(q.length).toBe(0)
  })

  it('a newer update about the same member replaces the queued one', () => {
    const q = new BroadcastQueue(100)
    q.push(u('a', 1), 40)
    q.push(u('a', 2), 40)
    expect(q.length).toBe(1)
    expect(q.take(1000, 10, 3)).toEqual([u('a', 2)])
  })

  it('respects the byte budget and the count bound, and drops the most-sent when full', () => {
    const q = new BroadcastQueue(3)
    for (const id of ['a', 'b', 'c']) q.push(u(id), 100)
    expect(q.take(250, 10, 10)).toHaveLength(2)
    q.push(u('d'), 100)
    expect(q.length).toBe(3)
    const ids = q.take(10_000, 10, 10).map(x => x.id)
    expect(ids).toContain('d')
    expect(ids).toHaveLength(3)
  })
})

describe('message validation', () => {
  const alive = { k: 'alive', id: 'p1', i: 3, a: ['/sim/p1'], m: { name: 'p1' } }

  it('accepts well-formed messages', () => {
    expect(decodeUpdate(alive, limits)).toEqual(alive)
    expect(decodePing({ seq: 1, target: 'p1', pb: [alive] }, limits)?.pb).toHaveLength(1)
    expect(decodePingReq({ seq: 1, target: 'p1', ta: [], nack: true }, limits)).not.toBeNull()
    expect(decodeAck({ seq: 9 }, limits)).toEqual({ seq: 9, pb: [] })
    expect(decodeNack({ seq: 9 })).toEqual({ seq: 9 })
    expect(decodePushPull({ join: true, members: [{ id: 'p1', i: 0, s: 'dead', a: [], m: {} }] }, limits)).not.toBeNull()
  })

  it.each([
    ['null', null],
    ['a string', 'hello'],
    ['a kind that is not a string (one of a newer version is skipped: membership-wire-compat.test.ts)', { ...alive, k: 42 }],
    ['a negative incarnation', { ...alive, i: -1 }],
    ['a fractional incarnation', { ...alive, i: 1.5 }],
    ['NaN incarnation', { ...alive, i: NaN }],
    ['an empty id', { ...alive, id: '' }],
    ['an overlong id', { ...alive, id: 'x'.repeat(200) }],
    ['addrs not an array', { ...alive, a: '/sim/p1' }],
    ['too many addrs', { ...alive, a: new Array(100).fill('/sim/p1') }],
    ['meta an array', { ...alive, m: [] }],
    ['a non-id from', { k: 'suspect', id: 'p1', i: 0, f: 42 }]
  ])('rejects an update with %s', (_, bad) => {
    expect(decodeUpdate(bad, limits)).toBeNull()
  })

  it('rejects bad addresses, bad meta and oversize meta in the full alive check', () => {
    expect(checkAliveDetail(['/sim/p1'], { name: 'p1' }, 4096)).toBeGreaterThan(0)
    expect(checkAliveDetail([42], {}, 4096)).toBe(-1)
    expect(checkAliveDetail(['x'.repeat(1000)], {}, 4096)).toBe(-1)
    expect(checkAliveDetail([], { name: 7 }, 4096)).toBe(-1)
    expect(checkAliveDetail([], { http: false }, 4096)).toBe(-1)
    expect(checkAliveDetail([], { blob: 'x'.repeat(5000) }, 4096)).toBe(-1)
    expect(checkMeta({ deep: [[[[[[[[[[[1]]]]]]]]]]] }, 4096)).toBe(-1)
    expect(checkMeta({ n: Infinity }, 4096)).toBe(-1)
    expect(checkMeta({ ok: [1, 'two', { three: true }, null] }, 4096)).toBeGreaterThan(0)
  })

  it('rejects messages with bad envelopes or too many updates', () => {
    expect(decodePing({ seq: -1, target: 'p1' }, limits)).toBeNull()
    expect(decodePing({ seq: 1 }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'p1', pb: 'x' }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'p1', pb: new Array(300).fill(alive) }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'p1', pb: [alive, { k: 'alive' }] }, limits)).toBeNull()
    expect(decodePingReq({ seq: 1, target: 'p1', ta: [], nack: 'yes' }, limits)).toBeNull()
    expect(decodeAck({ seq: '1' }, limits)).toBeNull()
    expect(decodeNack({}))
      .toBeNull()
    expect(decodeGossip({ pb: [] }, limits)).toBeNull()
    expect(decodePushPull({ members: new Array(1001).fill({ id: 'a', i: 0, s: 'alive', a: [], m: {} }) }, limits)).toBeNull()
    expect(decodePushPull({ members: [{ id: 'a', i: 0, s: ['undead'], a: [], m: {} }] }, limits)).toBeNull()
  })

  it('a Swim peer drops garbage without throwing and without changing its view', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    const before = JSON.stringify(p1.members().map(m => [m.id, m.state, m.incarnation]))
    const garbage: unknown[] = [null, 42, 'x', [], { seq: 'a' }, { pb: [{ k: 'alive', id: 'evil', i: 0, a: [1], m: {} }] },
      { pb: [{ k: 'alive', id: 'evil', i: 0, a: [], m: { blob: 'x'.repeat(10_000) } }] }, { pb: new Array(1000).fill(null) }]
    for (const g of garbage) {
      for (const method of ['swim.ping', 'swim.ping-req', 'swim.ack', 'swim.nack', 'swim.gossip']) raw.transport.send(simAddress('p1'), method, g)
    }
    const pending = Promise.all([
      raw.transport.request(simAddress('p1'), 'swim.push-pull', { members: 'nope' }).catch(e => e),
      raw.transport.request(simAddress('p1'), 'swim.push-pull', null).catch(e => e)
    ])
    await world.run(2000)
    const answers = await pending
    for (const a of answers) expect(a).toEqual({ members: [] })
    expect(p1.member('evil')).toBeUndefined()
    expect(p1.stats().messagesDropped).toBeGreaterThanOrEqual(garbage.length * 4)
    expect(JSON.stringify(p1.members().map(m => [m.id, m.state, m.incarnation]))).toBe(before)
  })

  it('a Swim peer acks a ping from a newer version and applies the updates it knows, skipping one of a kind it does not', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    const acks: unknown[] = []
    raw.transport.onMessage('swim.ack', body => { acks.push(body) })
    const p2 = p1.member('p2')!
    // A newer peer's ping: a field, an update kind and a version this one does not know, and a
    // suspicion of p2 it does.
    raw.transport.send(simAddress('p1'), 'swim.ping', {
      v: 99, seq: 5, target: 'p1', src: ['/sim/raw'], hint: 'x',
      pb: [{ k: 'quarantined', id: 'p0', i: 9 }, { k: 'suspect', id: 'p2', i: p2.incarnation, f: 'raw' }]
    })
    await world.run(50)
    expect(acks.some(a => (a as { seq?: number }).seq === 5)).toBe(true)
    expect((acks[0] as { v?: number }).v).toBe(1)
    expect(p1.stats().messagesDropped).toBe(0)
    expect(p1.member('p0')!.state).toBe('alive')
  })

  it('rejects oversize local meta and accepts an update of meta that fits', async () => {
    const { world, swims } = await smallCluster(3)
    const p1 = swims.get('p1')!
    expect(() => { p1.updateMeta({ blob: 'x'.repeat(5000) }) }).toThrow(RangeError)
    p1.updateMeta({ name: 'renamed', http: '127.0.0.1:1' })
    const updates: MemberEvent[] = []
    swims.get('p2')!.onChange(ev => { if (ev.type === 'update') updates.push(ev) })
    await world.run(3000)
    expect(swims.get('p2')!.member('p1')?.meta).toEqual({ name: 'renamed', http: '127.0.0.1:1' })
    expect(swims.get('p2')!.member('p1')?.incarnation).toBe(1)
    expect(updates.map(u => u.member.id)).toEqual(['p1'])
  })
})

describe('state machine', () => {
  it('a suspected peer refutes with incarnation + 1, and everyone takes it back as alive', async () => {
    const { world, swims, raw } = await smallCluster(4)
    gossip(raw, 'p2', [{ k: 'suspect', id: 'p1', i: 0, f: 'raw' }])
    await world.run(50)
    expect(swims.get('p2')!.member('p1')?.state).toBe('suspect')
    await world.run(3000)
    for (const [id, s] of swims) {
      if (id === 'p1') { expect(s.localMember().incarnation).toBe(1); continue }
      expect(s.member('p1')).toMatchObject({ state: 'alive', incarnation: 1 })
    }
    // Having to refute raises the refuter's own awareness (Lifeguard).
    expect(swims.get('p1')!.stats().suspicionsRefuted + swims.get('p2')!.stats().suspicionsRefuted).toBeGreaterThan(0)
  })

  it('a suspicion whose timer fires late (this peer was stalled) reads what reached it meanwhile first: no death for a member that refuted (issue 15)', async () => {
    // Node runs the timers due during a stall before it reads the sockets; the world does too here.
    const { world, swims, raw } = await smallCluster(4, { suspicionMaxTimeoutMult: 1 }, 7, { stallTimersFirst: true })
    const p1 = swims.get('p1')!
    const events: string[] = []
    p1.onChange(ev => { if (ev.member.id === 'p2') events.push(`${ev.type}@${ev.member.incarnation}`) })
    gossip(raw, 'p1', [{ k: 'suspect', id: 'p2', i: 0, f: 'raw' }])
    await world.run(5)
    expect(p1.member('p2')?.state).toBe('suspect')
    // p1 stalls past the suspicion's deadline (2.5 s); meanwhile p2 hears of it and refutes, and its
    // refutation reaches p1 before the deadline but waits, unread, until the stall ends.
    world.stall('p1', 10_000)
    gossip(raw, 'p2', [{ k: 'suspect', id: 'p2', i: 0, f: 'raw' }])
    await world.run(12_000)
    expect(events.filter(e => e.startsWith('dead'))).toEqual([])
    expect(p1.member('p2')).toMatchObject({ state: 'alive', incarnation: 1 })
    expect(p1.stats().lateSuspicionsRechecked).toBe(1)
  })

  it('a stale suspicion (older incarnation) is ignored; a dead claim about oneself is refuted', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    p1.updateMeta({ name: 'p1', v: 2 })
    await world.run(2000)
    gossip(raw, 'p2', [{ k: 'suspect', id: 'p1', i: 0, f: 'raw' }])
    await world.run(50)
    expect(swims.get('p2')!.member('p1')?.state).toBe('alive')
    gossip(raw, 'p1', [{ k: 'dead', id: 'p1', i: 1, f: 'raw' }])
    await world.run(50)
    expect(p1.localMember()).toMatchObject({ state: 'alive', incarnation: 2 })
  })

  it('an update that raises a known incarnation by more than 2^42 is refused and counted: a member cannot be pushed to the end of the safe integers (issue 15)', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    const p2 = swims.get('p2')!
    const top = Number.MAX_SAFE_INTEGER
    // About another member: a suspicion at 2^53 - 1 would leave p1 no incarnation to refute with.
    gossip(raw, 'p2', [{ k: 'suspect', id: 'p1', i: top, f: 'raw' }, { k: 'dead', id: 'p1', i: top, f: 'raw' }, { k: 'alive', id: 'p1', i: top, a: ['/sim/p1'], m: {} }])
    await world.run(50)
    expect(p2.member('p1')).toMatchObject({ state: 'alive', incarnation: 0 })
    expect(p2.stats().incarnationJumpsRefused).toBe(3)
    // About itself: no jump to it (it would refute at 2^53 and be unable to again).
    gossip(raw, 'p1', [{ k: 'suspect', id: 'p1', i: top, f: 'raw' }])
    await world.run(50)
    expect(p1.localMember().incarnation).toBe(0)
    expect(p1.stats().incarnationJumpsRefused).toBe(1)
    // A step within the bound (a new life started at the HLC's milliseconds) is taken as before.
    const step = 1_800_000_000_000
    gossip(raw, 'p2', [{ k: 'alive', id: 'p1', i: step, a: ['/sim/p1'], m: { name: 'p1' } }])
    await world.run(50)
    expect(p2.member('p1')?.incarnation).toBe(step)
    gossip(raw, 'p1', [{ k: 'suspect', id: 'p1', i: step, f: 'raw' }])
    await world.run(50)
    expect(p1.localMember().incarnation).toBe(step + 1)
    // A dead member's return is bounded the same way (push-pull too).
    gossip(raw, 'p2', [{ k: 'alive', id: 'p9', i: 3, a: ['/sim/p9'], m: {} }, { k: 'dead', id: 'p9', i: 3, f: 'raw' }])
    await world.run(50)
    void raw.transport.request(simAddress('p2'), 'swim.push-pull', { members: [{ id: 'p9', i: top, s: 'alive', a: ['/sim/p9'], m: {} }] })
    await world.run(50)
    expect(p2.member('p9')).toMatchObject({ state: 'dead', incarnation: 3 })
  })

  it('a member table larger than one message crosses a push-pull in pages, both ways; a caller that cannot page gets it in one (issue 15)', async () => {
    // Messages of at most 256 KiB, pages of 48 KiB: 1,500 members of ~600 bytes are ~900 KiB.
    const opts: SwimOptions = { pushPullPageBytes: 48 * 1024 }
    const { world, swims, raw } = await smallCluster(3, opts, 9, { maxMessageBytes: 256 * 1024 })
    const p0 = swims.get('p0')!
    const filler = 'x'.repeat(500)
    const fill = async (from: number, to: number): Promise<void> => {
      for (let b = from; b < to; b++) {
        gossip(raw, 'p0', Array.from({ length: 100 }, (_, j) => ({ k: 'alive', id: `f${String(b * 100 + j).padStart(4, '0')}`, i: 1, a: [`/sim/f${b * 100 + j}`], m: { name: filler } })))
      }
      await world.run(50)
    }
    // An older caller (no `pg`) is answered in one message, as before paging: 303 members, ~180
    // KiB, four pages' worth.
    await fill(0, 3)
    const old = raw.transport.request(simAddress('p0'), 'swim.push-pull', { members: [] })
    await world.run(50)
    const answer = await old as { members: unknown[], next?: string, pg?: boolean }
    expect(answer.members).toHaveLength(303)
    expect(answer.next).toBeUndefined()
    expect(answer.pg).toBeUndefined()
    await fill(3, 15)
    expect(p0.members()).toHaveLength(1503)
    // A new peer pulls the whole table from p0 in pages...
    const p3peer = world.addPeer('p3')
    const p3 = new Swim({ transport: p3peer.transport, clock: p3peer.clock, random: p3peer.random, log: silentLogger }, { ...opts, meta: { name: 'p3' } })
    await p3.start()
    const joined = p3.join([simAddress('p0')])
    await world.run(200)
    expect((await joined).errors).toEqual([])
    expect(p3.members().length).toBeGreaterThanOrEqual(1504)
    // ...and p0 pushes its own to a peer that knows nothing (join from the big side).
    const p4peer = world.addPeer('p4')
    const p4 = new Swim({ transport: p4peer.transport, clock: p4peer.clock, random: p4peer.random, log: silentLogger }, { ...opts, meta: { name: 'p4' } })
    await p4.start()
    const pushed = p0.join([simAddress('p4')])
    await world.run(200)
    expect((await pushed).errors).toEqual([])
    expect(p4.members().length).toBeGreaterThanOrEqual(1504)
  })

  it('a ping carrying a suspicion we already refuted is answered with our current incarnation', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    p1.updateMeta({ name: 'p1', v: 2 })
    await world.run(3000)
    const acks: unknown[] = []
    raw.transport.onMessage('swim.ack', body => { acks.push(body) })
    raw.transport.send(simAddress('p1'), 'swim.ping', { seq: 77, target: 'p1', pb: [{ k: 'suspect', id: 'p1', i: 0, f: 'raw' }] })
    await world.run(100)
    expect(acks).toHaveLength(1)
    const ack = acks[0] as { seq: number, pb: Array<{ k: string, id: string, i: number }> }
    expect(ack.seq).toBe(77)
    expect(ack.pb[0]).toMatchObject({ k: 'alive', id: 'p1', i: 1 })
    // Not a refutation: the incarnation did not move.
    expect(p1.localMember().incarnation).toBe(1)
  })

  it('tombstone rule: a dead peer is not revived by stale alive; only a higher incarnation brings it back', async () => {
    const { world, swims, raw } = await smallCluster(3, { deadReapMs: 10_000, reapIntervalMs: 1000 })
    const p2 = swims.get('p2')!
    // A member p9 that p2 learns of, then is told is dead at incarnation 4.
    gossip(raw, 'p2', [{ k: 'alive', id: 'p9', i: 4, a: ['/sim/p9'], m: {} }])
    await world.run(20)
    gossip(raw, 'p2', [{ k: 'dead', id: 'p9', i: 4, f: 'raw' }])
    await world.run(20)
    expect(p2.member('p9')?.state).toBe('dead')
    // A third party's stale view (same or older incarnation) must not revive it.
    gossip(raw, 'p2', [{ k: 'alive', id: 'p9', i: 4, a: ['/sim/p9'], m: {} }, { k: 'alive', id: 'p9', i: 2, a: ['/sim/p9'], m: {} }])
    await world.run(20)
    expect(p2.member('p9')).toMatchObject({ state: 'dead', incarnation: 4 })
    // Nor can push-pull anti-entropy.
    void raw.transport.request(simAddress('p2'), 'swim.push-pull', { members: [{ id: 'p9', i: 4, s: 'alive', a: [], m: {} }] })
    await world.run(50)
    expect(p2.member('p9')?.state).toBe('dead')
    // Reaped: the tombstone keeps the incarnation.
    await world.run(15_000)
    expect(p2.member('p9')).toBeUndefined()
    gossip(raw, 'p2', [{ k: 'alive', id: 'p9', i: 4, a: ['/sim/p9'], m: {} }])
    await world.run(20)
    expect(p2.member('p9')).toBeUndefined()
    // The push-pull answer tells the caller p9 is dead here, so p9 (if alive) would refute.
    const asked = raw.transport.request(simAddress('p2'), 'swim.push-pull', { members: [{ id: 'p9', i: 4, s: 'alive', a: [], m: {} }] })
    await world.run(50)
    const answer = await asked as { members: Array<{ id: string, s: string }> }
    expect(answer.members.find(m => m.id === 'p9')).toMatchObject({ s: 'dead' })
    // Only the peer itself issues a higher incarnation: accepted.
    const joins: string[] = []
    p2.onChange(ev => { if (ev.type === 'join') joins.push(ev.member.id) })
    gossip(raw, 'p2', [{ k: 'alive', id: 'p9', i: 5, a: ['/sim/p9'], m: {} }])
    await world.run(20)
    expect(p2.member('p9')).toMatchObject({ state: 'alive', incarnation: 5 })
    expect(joins).toEqual(['p9'])
  })

  it('a crashed peer is declared dead by all; restarted, it learns of its death via push-pull and refutes', async () => {
    const { world, swims } = await smallCluster(5)
    world.crash('p3')
    await swims.get('p3')!.stop()
    await world.runUntil(() => ['p0', 'p1', 'p2', 'p4'].every(id => swims.get(id)!.member('p3')?.state === 'dead'), { maxMs: 60_000 })
    const deadInc = swims.get('p0')!.member('p3')!.incarnation
    const p = world.restart('p3')
    const fresh = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: silentLogger }, { bootstrap: [simAddress('p0')] })
    await fresh.start()
    const ok = await world.runUntil(() => ['p0', 'p1', 'p2', 'p4'].every(id => swims.get(id)!.member('p3')?.state === 'alive'), { maxMs: 30_000 })
    expect(ok).toBe(true)
    expect(fresh.localMember().incarnation).toBeGreaterThan(deadInc)
    expect(fresh.liveMembers()).toBe(5)
  })

  it('forceRemove: only a dead or left member; it becomes left+removed everywhere (gossip and push-pull); back, it rejoins with a higher incarnation', async () => {
    const { world, swims } = await smallCluster(5, { pushPullIntervalMs: 5_000 })
    const p0 = swims.get('p0')!
    // Refused for a member that is not gone, for itself, and for a stranger.
    expect(() => p0.forceRemove('p1')).toThrow(/alive, not dead/)
    expect(() => p0.forceRemove('p0')).toThrow(/itself/)
    expect(() => p0.forceRemove('nobody')).toThrow(/unknown member/)
    world.crash('p3')
    await swims.get('p3')!.stop()
    await world.runUntil(() => ['p0', 'p1', 'p2', 'p4'].every(id => swims.get(id)!.member('p3')?.state === 'dead'), { maxMs: 60_000 })
    const deadInc = p0.member('p3')!.incarnation
    expect(p0.member('p3')!.removed).toBeUndefined()
    // p4 is cut off while p0 removes p3: gossip cannot reach it, the next push-pull must.
    world.partition(['p4'], ['p0', 'p1', 'p2'])
    expect(p0.forceRemove('p3')).toMatchObject({ state: 'left', removed: true, incarnation: deadInc })
    await world.run(2_000)
    for (const id of ['p1', 'p2']) expect(swims.get(id)!.member('p3')).toMatchObject({ state: 'left', removed: true })
    expect(swims.get('p4')!.member('p3')).toMatchObject({ state: 'dead' })
    world.heal()
    expect(await world.runUntil(() => swims.get('p4')!.member('p3')?.removed === true, { maxMs: 30_000 })).toBe(true)
    // Removing again changes nothing.
    expect(p0.forceRemove('p3')).toMatchObject({ state: 'left', removed: true, incarnation: deadInc })
    // The removed peer restarts: it hears it left, refutes, and is an ordinary member again.
    const p = world.restart('p3')
    const back = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: silentLogger }, { bootstrap: [simAddress('p0')] })
    await back.start()
    const ok = await world.runUntil(() => ['p0', 'p1', 'p2', 'p4'].every(id => swims.get(id)!.member('p3')?.state === 'alive'), { maxMs: 30_000 })
    expect(ok).toBe(true)
    expect(back.localMember().incarnation).toBeGreaterThan(deadInc)
    for (const id of ['p0', 'p1', 'p2', 'p4']) expect(swims.get(id)!.member('p3')!.removed).toBeUndefined()
  })

  it('decoders accept the removed flag only on left', () => {
    expect(decodeUpdate({ k: 'left', id: 'a', i: 1, f: 'b', r: true }, limits)).toEqual({ k: 'left', id: 'a', i: 1, f: 'b', r: true })
    expect(decodeUpdate({ k: 'dead', id: 'a', i: 1, r: true }, limits)).toBeNull()
    expect(decodeUpdate({ k: 'left', id: 'a', i: 1, r: 1 }, limits)).toBeNull()
    expect(decodePushPull({ members: [{ id: 'a', i: 1, s: 'left', a: [], m: {}, r: true }] }, limits)?.members[0]).toMatchObject({ r: true })
    expect(decodePushPull({ members: [{ id: 'a', i: 1, s: 'dead', a: [], m: {}, r: true }] }, limits)).toBeNull()
  })

  it('graceful leave: others record left (never dead), leave() resolves, left members are reaped', async () => {
    const { world, swims } = await smallCluster(5, { leftReapMs: 20_000, reapIntervalMs: 1000 })
    const events: string[] = []
    for (const [id, s] of swims) s.onChange(ev => { if (ev.member.id === 'p4') events.push(`${id}:${ev.type}`) })
    let resolved = false
    void swims.get('p4')!.leave(5000).then(() => { resolved = true })
    await world.run(1000)
    expect(resolved).toBe(true)
    expect(swims.get('p4')!.localMember().state).toBe('left')
    await world.run(2000)
    await swims.get('p4')!.stop()
    world.crash('p4')
    await world.run(10_000)
    for (const id of ['p0', 'p1', 'p2', 'p3']) expect(swims.get(id)!.member('p4')?.state).toBe('left')
    expect(events.filter(e => e.endsWith(':dead') || e.endsWith(':suspect'))).toEqual([])
    await world.run(15_000)
    for (const id of ['p0', 'p1', 'p2', 'p3']) expect(swims.get(id)!.member('p4')).toBeUndefined()
    expect(events.filter(e => e.endsWith(':reaped')).length).toBe(4)
  })

  it('an update larger than a message is dropped and counted, not left in the queue forever; push-pull still carries it (issue 15)', async () => {
    // maxPacketBytes under the meta a member may announce: its alive update never fits a message.
    const { world, swims } = await smallCluster(3, { maxPacketBytes: 1024, pushPullIntervalMs: 2000 })
    const p3 = world.addPeer('p3')
    const big = new Swim({ transport: p3.transport, clock: p3.clock, random: p3.random, log: silentLogger }, { maxPacketBytes: 1024, pushPullIntervalMs: 2000, meta: { name: 'p3', note: 'x'.repeat(2000) } })
    await big.start()
    swims.set('p3', big)
    void big.join([simAddress('p0')])
    await world.run(20_000)
    // Everyone learnt p3 (join and push-pull carry whole states), and nobody's queue holds an update it cannot send.
    for (const [id, s] of swims) expect(s.member('p3')?.state, id).toBe('alive')
    const tooLarge = [...swims.values()].reduce((n, s) => n + s.stats().updatesTooLarge, 0)
    expect(tooLarge).toBeGreaterThan(0)
    for (const s of swims.values()) expect(s.stats().gossipQueueLength).toBe(0)
  })

  it('leave() with nobody to tell resolves at once; a stopped peer resolves a pending leave', async () => {
    const world = new SimWorld({ seed: 1 })
    const p = world.addPeer('solo')
    const s = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: silentLogger })
    await s.start()
    await s.leave(10_000)
    await s.stop()
    expect(s.localMember().state).toBe('left')
  })

  it('join reports unreachable addresses; start() keeps retrying the bootstrap until it answers', async () => {
    const world = new SimWorld({ seed: 3 })
    const a = world.addPeer('a')
    const sa = new Swim({ transport: a.transport, clock: a.clock, random: a.random, log: silentLogger }, { bootstrap: [simAddress('b')], joinRetryIntervalMs: 2000 })
    await sa.start()
    const joining = sa.join([simAddress('nobody')])
    await world.run(12_000)
    const res = await joining
    expect(res.joined).toBe(0)
    expect(res.errors[0]!.addr).toBe('/sim/nobody')
    // b comes up late; a finds it on its own.
    const b = world.addPeer('b')
    const sb = new Swim({ transport: b.transport, clock: b.clock, random: b.random, log: silentLogger })
    await sb.start()
    const ok = await world.runUntil(() => sa.member('b')?.state === 'alive' && sb.member('a')?.state === 'alive', { maxMs: 20_000 })
    expect(ok).toBe(true)
  })

  it('local health: reported event-loop lag and late timers raise awareness, successful probes lower it', async () => {
    const { world, swims } = await smallCluster(4)
    const p1 = swims.get('p1')!
    expect(p1.localHealthScore()).toBe(0)
    p1.noteEventLoopLag(50)
    expect(p1.localHealthScore()).toBe(0)
    p1.noteEventLoopLag(1000)
    p1.noteEventLoopLag(1000)
    // At most one step per probe interval.
    expect(p1.localHealthScore()).toBe(1)
    await world.run(10_000)
    expect(p1.localHealthScore()).toBe(0)
    world.stall('p1', 3000)
    await world.run(3100)
    expect(p1.localHealthScore()).toBeGreaterThan(0)
  })

  it('probes every member in a round, and reports counters', async () => {
    const { world, swims } = await smallCluster(6)
    const p0 = swims.get('p0')!
    const before = p0.stats().probes
    await world.run(10_000)
    const s = p0.stats()
    expect(s.probes - before).toBeGreaterThanOrEqual(9)
    expect(s.probeFailures).toBe(0)
    expect(s.messagesSent['swim.ping']).toBeGreaterThan(0)
    expect(s.messagesReceived['swim.ack']).toBeGreaterThan(0)
    expect(p0.members().map(m => m.id).sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5'])
    expect(p0.localMember().id).toBe('p0')
  })
})

describe('incarnation across restarts (issue 13)', () => {
  function solo (deps: { incarnations?: MemoryIncarnationStore, startIncarnation?: number, log?: typeof silentLogger } = {}): { swim: Swim, world: SimWorld } {
    const world = new SimWorld({ seed: 13 })
    const p = world.addPeer('solo')
    const swim = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: deps.log ?? silentLogger, ...deps }, { meta: { name: 'solo' } })
    return { swim, world }
  }

  it('starts above the saved ceiling, or at startIncarnation when that is higher; 0 with neither', () => {
    expect(solo().swim.localMember().incarnation).toBe(0)
    expect(solo({ startIncarnation: 500 }).swim.localMember().incarnation).toBe(500)
    const store = new MemoryIncarnationStore()
    store.ceiling = 41
    expect(solo({ incarnations: store }).swim.localMember().incarnation).toBe(42)
    store.ceiling = 41
    expect(solo({ incarnations: store, startIncarnation: 500 }).swim.localMember().incarnation).toBe(500)
    store.ceiling = 9000
    expect(solo({ incarnations: store, startIncarnation: 500 }).swim.localMember().incarnation).toBe(9001)
    expect(() => solo({ startIncarnation: -1 })).toThrow(RangeError)
    store.ceiling = 1.5
    expect(() => solo({ incarnations: store })).toThrow(/ceiling/)
  })

  it('saves a ceiling before it uses an incarnation above the saved one, and only then', () => {
    const store = new MemoryIncarnationStore()
    let swim: Swim | undefined
    // Records the incarnation in use at each save: a save must come before the bump it covers.
    const saves: Array<{ ceiling: number, inUse: number | undefined }> = []
    const save = store.save.bind(store)
    store.save = (ceiling: number) => { saves.push({ ceiling, inUse: swim?.localMember().incarnation }); save(ceiling) }
    swim = solo({ incarnations: store }).swim
    // The start itself is covered before anyone hears of it.
    expect(swim.localMember().incarnation).toBe(0)
    expect(saves).toEqual([{ ceiling: INCARNATION_LEASE, inUse: undefined }])
    // Within the lease: no writes.
    for (let i = 1; i <= INCARNATION_LEASE; i++) swim.updateMeta({ name: 'solo', v: i })
    expect(swim.localMember().incarnation).toBe(INCARNATION_LEASE)
    expect(saves.length).toBe(1)
    // Past it: one write, made while the previous incarnation was still the one in use.
    swim.updateMeta({ name: 'solo', v: -1 })
    expect(saves.length).toBe(2)
    expect(saves[1]).toEqual({ ceiling: 2 * INCARNATION_LEASE + 1, inUse: INCARNATION_LEASE })
    expect(swim.localMember().incarnation).toBe(INCARNATION_LEASE + 1)
  })

  it('a store that cannot be written fails the start; after it, the failure is logged and the incarnation used anyway', () => {
    const broken = new MemoryIncarnationStore()
    broken.save = () => { throw new Error('disk full') }
    expect(() => solo({ incarnations: broken })).toThrow(/disk full/)
    const store = new MemoryIncarnationStore()
    const errors: string[] = []
    const log = { ...silentLogger, error: (_: object, msg?: string) => { errors.push(msg ?? '') }, child: () => log }
    const { swim } = solo({ incarnations: store, log })
    store.save = () => { throw new Error('disk full') }
    for (let i = 0; i <= INCARNATION_LEASE; i++) swim.updateMeta({ name: 'solo', v: i })
    expect(swim.localMember().incarnation).toBe(INCARNATION_LEASE + 1)
    expect(errors.length).toBe(1)
    expect(errors[0]).toMatch(/incarnation ceiling/)
  })

  it('hearing itself alive at its own incarnation with other meta or addresses (a previous life) makes a peer refute; the same announcement does not', async () => {
    const { world, swims, raw } = await smallCluster(3)
    const p1 = swims.get('p1')!
    const me = p1.localMember()
    expect(me.incarnation).toBe(0)
    gossip(raw, 'p1', [{ k: 'alive', id: 'p1', i: 0, a: me.addrs, m: me.meta }])
    await world.run(20)
    expect(p1.localMember().incarnation).toBe(0)
    gossip(raw, 'p1', [{ k: 'alive', id: 'p1', i: 0, a: me.addrs, m: { name: 'p1', http: '127.0.0.1:1' } }])
    await world.run(20)
    expect(p1.localMember().incarnation).toBe(1)
    gossip(raw, 'p1', [{ k: 'alive', id: 'p1', i: 1, a: ['/sim/elsewhere'], m: me.meta }])
    await world.run(20)
    expect(p1.localMember().incarnation).toBe(2)
    // What it announces is its own meta, and the others take it.
    await world.run(5_000)
    for (const id of ['p0', 'p2']) expect(swims.get(id)!.member('p1')).toMatchObject({ incarnation: 2, meta: me.meta, addrs: me.addrs })
  })
})

describe('join settling: a restarted peer knocks on every bootstrap address until it answers (issue 13)', () => {
  const RECONNECT_MS = 1_000
  /** p0 running; p1 joining [p0, p2] with p2 not started yet (its transport answers nothing). */
  async function joinWithOneMissing (): Promise<{ world: SimWorld, swims: Map<string, Swim>, startP2: () => Promise<Swim> }> {
    const world = new SimWorld({ seed: 11 })
    const swims = new Map<string, Swim>()
    const start = async (id: string): Promise<Swim> => {
      const p = world.peers().find(x => x.id === id) ?? world.addPeer(id)
      const s = new Swim({ transport: p.transport, clock: p.clock, random: p.random, log: silentLogger }, { reconnectIntervalMs: RECONNECT_MS, meta: { name: id } })
      await s.start()
      swims.set(id, s)
      return s
    }
    await start('p0')
    world.addPeer('p2')
    const p1 = await start('p1')
    const joined = p1.join([simAddress('p0'), simAddress('p2')])
    await world.run(500)
    expect((await joined).joined).toBe(1)
    return { world, swims, startP2: async () => await start('p2') }
  }

  it('stays unsettled while a bootstrap peer is still starting, then merges with it once it answers', async () => {
    const { world, swims, startP2 } = await joinWithOneMissing()
    const p1 = swims.get('p1')!
    // Joined p0, yet p2 may know members p1 does not: an island until p2 answers.
    expect(p1.liveMembers()).toBe(2)
    expect(p1.joinSettled()).toBe(false)
    await world.run(RECONNECT_MS)
    expect(p1.joinSettled()).toBe(false)
    // p2 comes up joining nobody: only p1's knocking (reconnectTick) can bring them together.
    const p2 = await startP2()
    expect(await world.runUntil(() => p1.joinSettled(), { maxMs: 3 * RECONNECT_MS })).toBe(true)
    expect(p1.member('p2')?.state).toBe('alive')
    expect(await world.runUntil(() => p2.liveMembers() === 3, { maxMs: 5_000 })).toBe(true)
  })

  it('gives an address up after it has failed for three reconnect intervals, not before', async () => {
    const { world, swims } = await joinWithOneMissing()
    const p1 = swims.get('p1')!
    await world.run(2 * RECONNECT_MS)
    expect(p1.joinSettled()).toBe(false)
    // Knocks come every reconnect interval (jittered): the one after three intervals gives up.
    expect(await world.runUntil(() => p1.joinSettled(), { maxMs: 3 * RECONNECT_MS })).toBe(true)
    expect(world.now()).toBeGreaterThanOrEqual(3 * RECONNECT_MS)
    expect(p1.member('p2')).toBeUndefined()
  })

  it('settles as soon as the missing address is known alive through another peer', async () => {
    const { world, swims, startP2 } = await joinWithOneMissing()
    const p1 = swims.get('p1')!
    // p1 cannot reach p2 at all, but p2 joins p0, and p0's gossip tells p1 that p2 is alive.
    world.block('p1', 'p2')
    const p2 = await startP2()
    void p2.join([simAddress('p0')])
    expect(await world.runUntil(() => p1.member('p2')?.state === 'alive', { maxMs: 5_000 })).toBe(true)
    expect(p1.joinSettled()).toBe(true)
    expect(world.now()).toBeLessThan(3 * RECONNECT_MS)
  })
})
