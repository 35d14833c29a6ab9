/**
 * The nftables scripts of test/net's link faults, as text (no root needed): where each rule goes,
 * that a heal deletes our table, and the subnet overlap test. The rules applied in real namespaces
 * are tested in test/integration/netns.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { checkFaults, droppedPackets, grudgeLinks, lossBothWays, nftScript, NO_FAULTS, overlaps } from '../net/index.js'

const ADDR: Record<string, string> = { a: '10.9.9.1', b: '10.9.9.2', c: '10.9.9.3' }
const addressOf = (n: string): string => { const x = ADDR[n]; if (x === undefined) throw new Error(`no ${n}`); return x }
const ip = (s: string): number => s.split('.').reduce((v, o) => (v << 8 | Number(o)) >>> 0, 0)

describe('link faults as nftables rules', () => {
  it('drops a partition\'s packets at the sender\'s output and the receiver\'s input, both ways when symmetric', () => {
    const faults = { drop: grudgeLinks({ c: ['a', 'b'], a: ['c'], b: ['c'] }), loss: [] }
    const c = nftScript('c', faults, addressOf)
    expect(c).toBe([
      'table inet shoal',
      'delete table inet shoal',
      'table inet shoal {',
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      '    ip saddr 10.9.9.1 counter drop',
      '    ip saddr 10.9.9.2 counter drop',
      '  }',
      '  chain output {',
      '    type filter hook output priority filter; policy accept;',
      '    ip daddr 10.9.9.1 counter drop',
      '    ip daddr 10.9.9.2 counter drop',
      '  }',
      '}',
      ''
    ].join('\n'))
    const a = nftScript('a', faults, addressOf)
    expect(a).toContain('ip saddr 10.9.9.3 counter drop')
    expect(a).toContain('ip daddr 10.9.9.3 counter drop')
    expect(a).not.toContain('10.9.9.2')
  })

  it('cuts a single direction for a one-way grudge', () => {
    const faults = { drop: grudgeLinks({ a: ['b'], b: [] }), loss: [] }
    expect(nftScript('a', faults, addressOf)).toMatch(/chain input \{\n[^\n]*\n {2}\}\n {2}chain output \{\n[^\n]*\n {4}ip daddr 10\.9\.9\.2 counter drop\n/)
    expect(nftScript('a', faults, addressOf)).not.toContain('saddr')
    expect(nftScript('b', faults, addressOf)).toContain('ip saddr 10.9.9.1 counter drop')
    expect(nftScript('b', faults, addressOf)).not.toContain('daddr')
    expect(nftScript('c', faults, addressOf)).toBe('table inet shoal\ndelete table inet shoal\n')
  })

  it('loses packets once per direction, at the sender, with numgen', () => {
    const faults = { drop: [], loss: lossBothWays([['a', 'b']], 25) }
    expect(faults.loss).toEqual([{ from: 'a', to: 'b', percent: 25 }, { from: 'b', to: 'a', percent: 25 }])
    const a = nftScript('a', faults, addressOf)
    expect(a).toContain('    ip daddr 10.9.9.2 numgen random mod 100 < 25 counter drop\n')
    expect(a).not.toContain('saddr')
    expect(nftScript('b', faults, addressOf)).toContain('ip daddr 10.9.9.1 numgen random mod 100 < 25 counter drop')
  })

  it('heals by deleting the table, and refuses malformed faults', () => {
    expect(nftScript('a', NO_FAULTS, addressOf)).toBe('table inet shoal\ndelete table inet shoal\n')
    expect(() => { checkFaults({ drop: [{ from: 'a', to: 'a' }], loss: [] }) }).toThrow(/to itself/)
    expect(() => { checkFaults({ drop: [], loss: [{ from: 'a', to: 'b', percent: 0 }] }) }).toThrow(/1 to 100/)
    expect(() => { checkFaults({ drop: [], loss: [{ from: 'a', to: 'b', percent: 12.5 }] }) }).toThrow(/1 to 100/)
    expect(() => nftScript('a', { drop: [{ from: 'a', to: 'z' }], loss: [] }, addressOf)).toThrow(/no z/)
  })

  it('sums the packets a listing\'s rules dropped', () => {
    const listing = 'table inet shoal {\n\tchain input {\n\t\tip saddr 10.9.9.2 counter packets 12 bytes 900 drop\n\t}\n\tchain output {\n\t\tip daddr 10.9.9.2 numgen random mod 100 < 25 counter packets 3 bytes 200 drop\n\t}\n}\n'
    expect(droppedPackets(listing)).toBe(15)
    expect(droppedPackets('')).toBe(0)
  })

  it('tells overlapping prefixes from disjoint ones', () => {
    expect(overlaps(ip('10.20.30.0'), 24, ip('10.20.30.7'), 32)).toBe(true)
    expect(overlaps(ip('10.20.30.0'), 24, ip('10.0.0.0'), 8)).toBe(true)
    expect(overlaps(ip('10.20.30.0'), 24, ip('10.20.31.0'), 24)).toBe(false)
    expect(overlaps(ip('10.20.30.0'), 24, ip('192.0.2.0'), 24)).toBe(false)
    expect(overlaps(ip('10.20.30.0'), 24, 0, 0)).toBe(true)
  })
})
