/** The Swim push-pull delegate (memberlist's LocalState/MergeRemoteState) in the simulator. */
import { describe, expect, it } from 'vitest'
import { Swim } from '../../src/membership/index.js'
import type { SwimDelegate } from '../../src/membership/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { SimWorld, simAddress } from './index.js'

function node (world: SimWorld, id: string, delegate: SwimDelegate, bootstrap: string[] = [], delegateStateMaxBytes?: number): Swim {
  const peer = world.addPeer(id)
  const swim = new Swim({ transport: peer.transport, clock: peer.clock, random: peer.random, log: silentLogger, delegate },
    { meta: { name: id }, bootstrap: bootstrap.map(simAddress), pushPullIntervalMs: 2_000, delegateStateMaxBytes })
  void swim.start()
  return swim
}

describe('swim push-pull delegate', () => {
  it('carries state both ways on join and anti-entropy, with the join flag', async () => {
    const world = new SimWorld({ seed: 5 })
    const got: Record<string, Array<[unknown, boolean]>> = { a: [], b: [] }
    const mk = (id: string): SwimDelegate => ({ localState: join => ({ from: id, join, bytes: new Uint8Array([1, 2, 3]) }), mergeRemoteState: (s, join) => { got[id]!.push([s, join]) } })
    node(world, 'a', mk('a'))
    node(world, 'b', mk('b'), ['a'])
    await world.run(100)
    // Bytes arrive as a Uint8Array (a Buffer, from msgpack).
    const plain = ([s, join]: [unknown, boolean]): unknown => { const o = s as { from: string, join: boolean, bytes: Uint8Array }; expect(o.bytes).toBeInstanceOf(Uint8Array); return [{ ...o, bytes: [...o.bytes] }, join] }
    expect(plain(got.a![0]!)).toEqual([{ from: 'b', join: true, bytes: [1, 2, 3] }, true])
    expect(plain(got.b![0]!)).toEqual([{ from: 'a', join: true, bytes: [1, 2, 3] }, true])
    await world.run(5_000)
    expect(got.a!.some(([, join]) => !join) || got.b!.some(([, join]) => !join)).toBe(true)
  })

  it('a failing or oversize delegate never breaks membership', async () => {
    const world = new SimWorld({ seed: 6 })
    let merged = 0
    const throwing: SwimDelegate = { localState: () => { throw new Error('boom') }, mergeRemoteState: () => { throw new Error('boom') } }
    const huge: SwimDelegate = { localState: () => new Uint8Array(10_000), mergeRemoteState: () => { merged++ } }
    const a = node(world, 'a', throwing)
    const b = node(world, 'b', huge, ['a'], 1_000)
    const c = node(world, 'c', { localState: () => 'x'.repeat(5_000), mergeRemoteState: () => { merged++ } }, ['a'])
    await world.run(10_000)
    for (const s of [a, b, c]) expect(s.members().filter(m => m.state === 'alive').map(m => m.id).sort()).toEqual(['a', 'b', 'c'])
    // b refuses c's 5 KB string (over b's 1,000-byte limit) and never sends its own 10 KB.
    expect(merged).toBe(0)
    expect(b.stats().messagesDropped).toBeGreaterThan(0)
  })
})
