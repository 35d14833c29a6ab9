/**
 * The light member table (membership/member.ts): records shared between views, tables by id.
 */
import { describe, expect, it } from 'vitest'
import { KeyedMemberTable, MapMemberTable, Member, MemberRecords } from '../../src/membership/member.js'
import type { MemberTable } from '../../src/membership/member.js'

describe('member records and tables', () => {
  it('interns one record per announcement: views that heard the same share it, a new one replaces it', () => {
    const pool = new MemberRecords()
    const meta = { name: 'a' }
    const r1 = pool.intern('a', 3, ['/sim/a'], meta, 12)
    expect(pool.intern('a', 3, ['/sim/a'], meta, 12)).toBe(r1)
    // Equal content in other objects (a decoded copy) is the same announcement.
    expect(pool.intern('a', 3, ['/sim/a'], { name: 'a' }, 12)).toBe(r1)
    const r2 = pool.intern('a', 4, ['/sim/a'], meta, 12)
    expect(r2).not.toBe(r1)
    expect(r2.incarnation).toBe(4)
    expect(pool.intern('a', 4, ['/sim/a2'], meta, 12).addrs).toEqual(['/sim/a2'])
    pool.forget('a')
    expect(pool.size).toBe(0)
    // Numbers outlive forget: a table indexed by them must not mix two members.
    expect(pool.keyOf('a')).toBeUndefined()
    expect(pool.keyFor('a')).toBe(0)
    expect(pool.keyFor('b')).toBe(1)
    expect(pool.keyFor('a')).toBe(0)
  })

  for (const [name, make] of [['Map', () => new MapMemberTable()], ['keyed', () => new KeyedMemberTable(new MemberRecords())]] as Array<[string, () => MemberTable]>) {
    it(`${name} table: get, has, set, delete, values`, () => {
      const t = make()
      const rec = (id: string): Member => new Member({ id, incarnation: 0, addrs: [], meta: {}, metaBytes: 2 }, 'alive', 0)
      const a = rec('a')
      const b = rec('b')
      t.set(a)
      t.set(b)
      expect(t.get('a')).toBe(a)
      expect(t.has('b')).toBe(true)
      expect(t.get('c')).toBeUndefined()
      t.delete('a')
      expect(t.has('a')).toBe(false)
      expect([...t.values()]).toEqual([b])
      t.delete('zz')
      t.set(a)
      expect([...t.values()].map(m => m.id).sort()).toEqual(['a', 'b'])
    })
  }

  it('a member keeps its rare fields out of line and drops them when cleared', () => {
    const m = new Member({ id: 'a', incarnation: 1, addrs: [], meta: {}, metaBytes: 2 }, 'left', 0)
    expect(m.removed).toBe(false)
    m.removed = true
    expect(m.removed).toBe(true)
    m.removed = false
    expect(m.removed).toBe(false)
    expect((m as unknown as { extra: unknown }).extra).toBeUndefined()
  })
})
