import { describe, expect, it } from 'vitest'
import { hrwScore, murmur3String, partitionKey, partitionOfId, rendezvous } from '../../src/placement/index.js'

describe('partitionOf hash', () => {
  it('is MurmurHash3 x86_32 (reference vectors)', () => {
    expect(murmur3String('', 0)).toBe(0)
    expect(murmur3String('', 1)).toBe(0x514e28b7)
    expect(murmur3String('hello', 0)).toBe(0x248bfa47)
    expect(murmur3String('Hello, world!', 1234)).toBe(0xfaf6cdb3)
    expect(murmur3String('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723)
  })

  it('is stable: pinned partitions (a change here moves every record in every cluster)', () => {
    const pinned: Array<[string, number, number, number]> = [
      ['a', 1009084850, 2, 434],
      ['user-1', 4171401059, 3, 867],
      ['user-2', 3734456267, 11, 971],
      ['order-17', 63080384, 0, 960],
      ['ß漢字🙂', 422782375, 7, 423],
      ['', 0, 0, 0]
    ]
    for (const [id, h, p16, p1024] of pinned) {
      expect(murmur3String(id, 0)).toBe(h)
      expect(partitionOfId(id, 16)).toBe(p16)
      expect(partitionOfId(id, 1024)).toBe(p1024)
      expect(partitionOfId(id, 1)).toBe(0)
    }
  })

  it('spreads 100k ids evenly over 16 partitions (chi-square)', () => {
    const P = 16
    const N = 100_000
    const counts = new Array<number>(P).fill(0)
    for (let i = 0; i < N; i++) counts[partitionOfId(`user-${i}`, P)]!++
    const expected = N / P
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0)
    // 15 degrees of freedom: p = 0.001 at 37.7.
    expect(chi2).toBeLessThan(37.7)
    // Ids that differ only in high bits of a character must not collide systematically.
    const alt = new Array<number>(P).fill(0)
    for (let i = 0; i < N; i++) alt[partitionOfId(String.fromCharCode(0x61 + (i % 26), 0x41 + ((i / 26) | 0) % 26) + (i / 676 | 0).toString(36), P)]!++
    expect(alt.reduce((s, c) => s + (c - expected) ** 2 / expected, 0)).toBeLessThan(37.7)
  })
})

describe('rendezvous (HRW)', () => {
  const peers = (n: number): string[] => Array.from({ length: n }, (_, i) => `12D3KooWPeer${i}xyz`)

  it('is deterministic, order-independent, top-R, scores 64-bit', () => {
    const ps = peers(7)
    const key = partitionKey('orders-123', 5)
    const a = rendezvous(ps, key, 3)
    expect(a).toHaveLength(3)
    expect(new Set(a).size).toBe(3)
    expect(rendezvous([...ps].reverse(), key, 3)).toEqual(a)
    expect(rendezvous(ps, key, 3)).toEqual(a)
    // The top 3 are the 3 best scores, in order.
    const sorted = [...ps].sort((x, y) => { const [xh, xl] = hrwScore(x, key); const [yh, yl] = hrwScore(y, key); return yh - xh || yl - xl })
    expect(a).toEqual(sorted.slice(0, 3))
    expect(rendezvous(ps, key, 10)).toHaveLength(7)
    expect(rendezvous([], key, 3)).toEqual([])
    // Pinned: the same owners in every version of Shoal.
    expect(rendezvous(['p0', 'p1', 'p2', 'p3', 'p4'], 'orders-1/3', 3)).toEqual(['p4', 'p3', 'p2'])
  })

  it('adding a 4th member to 3 moves only the slots it takes (about 1/4)', () => {
    const P = 1024
    const R = 3
    const before = peers(3)
    const newcomer = 'newcomer'
    const after = [...before, newcomer]
    let moved = 0
    for (let p = 0; p < P; p++) {
      const key = partitionKey('s-1', p)
      const o1 = rendezvous(before, key, R)
      const o2 = rendezvous(after, key, R)
      const gained = o2.filter(x => !o1.includes(x))
      const lost = o1.filter(x => !o2.includes(x))
      // Only the newcomer gains; at most one old owner is displaced, and only if it gained.
      expect(gained.every(x => x === newcomer)).toBe(true)
      expect(lost.length).toBe(gained.length)
      moved += gained.length
    }
    const fraction = moved / (P * R)
    expect(fraction).toBeGreaterThan(0.22)
    expect(fraction).toBeLessThan(0.28)
  })

  it('removing a member moves only its slots', () => {
    const P = 1024
    const R = 3
    const all = peers(8)
    const gone = all[3]!
    const rest = all.filter(x => x !== gone)
    let moved = 0
    for (let p = 0; p < P; p++) {
      const key = partitionKey('s-1', p)
      const o1 = rendezvous(all, key, R)
      const o2 = rendezvous(rest, key, R)
      if (!o1.includes(gone)) {
        expect(o2).toEqual(o1)
      } else {
        // The others keep their slots; one new owner replaces the departed one.
        for (const x of o1) if (x !== gone) expect(o2).toContain(x)
        moved++
      }
    }
    // gone held about R/8 of the partitions.
    expect(moved / P).toBeGreaterThan(0.3)
    expect(moved / P).toBeLessThan(0.45)
  })

  it('spreads ownership evenly', () => {
    const ps = peers(10)
    const counts = new Map<string, number>()
    for (let p = 0; p < 4096; p++) for (const o of rendezvous(ps, partitionKey('x-9', p), 3)) counts.set(o, (counts.get(o) ?? 0) + 1)
    for (const id of ps) expect(Math.abs(counts.get(id)! - 4096 * 3 / 10) / (4096 * 3 / 10)).toBeLessThan(0.1)
  })
})
