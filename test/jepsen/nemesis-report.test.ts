import { describe, expect, it } from 'vitest'
import type { TestCluster } from '../cluster/index.js'
import { faultWindows, History, type Op } from './history.js'
import { LOSS_NEEDS_NETNS, Nemesis, partitionGrudge, rng, schedule } from './nemesis.js'
import { latencySvg, throughputSvg, timelineHtml } from './report.js'

describe('nemesis schedule', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4', 'n5']

  it('is deterministic for a seed and alternates quiet and fault windows', () => {
    const o = { seed: 5, nemeses: ['partition', 'kill', 'pause', 'clock'] as const, nodes, timeLimitMs: 40_000, faultMs: 5000, quietMs: 5000 }
    const a = schedule({ ...o, nemeses: [...o.nemeses] })
    expect(schedule({ ...o, nemeses: [...o.nemeses] })).toEqual(a)
    expect(a.map(p => [p.kind, p.start, p.end])).toEqual([['partition', 5000, 10000], ['kill', 15000, 20000], ['pause', 25000, 30000], ['clock', 35000, 40000]])
    expect(a[1]!.nodes!.length).toBeLessThanOrEqual(2) // a minority
    expect(schedule({ ...o, nemeses: [...o.nemeses], seed: 6 })).not.toEqual(a)
  })

  it('plans disk windows on a minority, mode fill, without changing the other kinds\' schedules', () => {
    const o = { seed: 15, nodes, timeLimitMs: 60_000, faultMs: 5000, quietMs: 5000 }
    const disk = schedule({ ...o, nemeses: ['disk'] })
    expect(disk).toHaveLength(6)
    for (const p of disk) {
      expect(p.kind).toBe('disk')
      expect(p.disk).toEqual({ mode: 'fill' })
      expect(p.nodes!.length).toBeGreaterThanOrEqual(1)
      expect(p.nodes!.length).toBeLessThanOrEqual(2)
      expect(new Set(p.nodes).size).toBe(p.nodes!.length)
    }
    expect(new Set(disk.map(p => p.nodes!.join())).size).toBeGreaterThan(1)
    expect(schedule({ ...o, nemeses: ['disk'] })).toEqual(disk)
    // The kinds before it draw the same randomness as before the disk kind existed.
    const kinds = schedule({ ...o, nemeses: ['partition', 'kill', 'disk'] })
    expect(kinds.map(p => p.kind)).toEqual(['partition', 'kill', 'disk', 'partition', 'kill', 'disk'])
    expect(kinds[0]!.grudge).toEqual(schedule({ ...o, nemeses: ['partition', 'kill'] })[0]!.grudge)
    // A lead of its own before the first window.
    expect(schedule({ ...o, nemeses: ['disk'], timeLimitMs: 24_000, leadMs: 3000, quietMs: 4000, faultMs: 7000 }).map(p => [p.start, p.end])).toEqual([[3000, 10_000], [14_000, 21_000]])
  })

  it('records a disk window it cannot apply (no tmpfs) as skipped, not as a fault window', async () => {
    const h = new History()
    const nemesis = new Nemesis({ peers: new Map() } as unknown as TestCluster, h, () => {}, 'not root (uid 1000); mounting a tmpfs needs root')
    const plan = schedule({ seed: 1, nemeses: ['disk'], nodes, timeLimitMs: 10_000, faultMs: 5000, quietMs: 5000 })[0]!
    await nemesis.start(plan)
    await nemesis.stop(plan)
    expect(h.ops.map(o => [o.f, o.value])).toEqual([['skip-disk', { mode: 'fill', nodes: plan.nodes, reason: 'not root (uid 1000); mounting a tmpfs needs root' }]])
    expect(faultWindows(h.ops)).toEqual([])
  })

  it('in a namespace cluster: some partitions one-way, loss windows; the rest of the seed\'s schedule as on loopback', () => {
    const o = { seed: 20, nodes, timeLimitMs: 200_000, faultMs: 5000, quietMs: 5000 }
    const loopback = schedule({ ...o, nemeses: ['partition', 'kill'] })
    const netns = schedule({ ...o, nemeses: ['partition', 'kill'], net: 'netns' })
    expect(netns.map(p => [p.kind, p.start, p.end])).toEqual(loopback.map(p => [p.kind, p.start, p.end]))
    const oneWay = netns.filter(p => p.shape === 'one-way')
    expect(oneWay.length).toBeGreaterThan(0)
    expect(oneWay.length).toBeLessThan(netns.filter(p => p.kind === 'partition').length)
    netns.forEach((p, i) => { if (p.shape !== 'one-way') expect(p).toEqual(loopback[i]) })
    expect(loopback.some(p => p.shape === 'one-way')).toBe(false)
    for (const p of oneWay) {
      // One half's packets do not reach the other half; the other half's reach it.
      const senders = Object.entries(p.grudge!).filter(([, to]) => to.length > 0)
      expect(senders).toHaveLength(2)
      for (const [from, to] of senders) {
        expect(to).toHaveLength(3)
        for (const t of to) expect(p.grudge![t]).toEqual([])
        expect(to).not.toContain(from)
      }
    }
    // Loss: a non-empty set of distinct links at the given share, in its turn.
    const loss = schedule({ ...o, nemeses: ['partition', 'loss'], net: 'netns', lossPercent: 30 })
    expect(loss.map(p => p.kind).slice(0, 4)).toEqual(['partition', 'loss', 'partition', 'loss'])
    for (const p of loss.filter(x => x.kind === 'loss')) {
      expect(p.loss!.percent).toBe(30)
      expect(p.loss!.links.length).toBeGreaterThan(0)
      expect(new Set(p.loss!.links.map(l => l.join())).size).toBe(p.loss!.links.length)
      for (const [x, y] of p.loss!.links) { expect(nodes).toContain(x); expect(nodes).toContain(y); expect(x).not.toBe(y) }
    }
    expect(schedule({ ...o, nemeses: ['loss'], net: 'netns' })[0]!.loss!.percent).toBe(25)
    // Loss needs the packet filter: refused on loopback.
    expect(() => schedule({ ...o, nemeses: ['partition', 'loss'] })).toThrow(LOSS_NEEDS_NETNS)
  })

  it('refuses a loss window on a loopback cluster, recording why, and opens no window', async () => {
    const h = new History()
    const nemesis = new Nemesis({ peers: new Map(), network: undefined } as unknown as TestCluster, h)
    const plan = { kind: 'loss' as const, start: 0, end: 10, loss: { links: [['n1', 'n2']] as Array<[string, string]>, percent: 25 } }
    await nemesis.start(plan)
    await nemesis.stop(plan)
    expect(h.ops.map(o => [o.f, o.value])).toEqual([['error-loss', LOSS_NEEDS_NETNS]])
    expect(faultWindows(h.ops)).toEqual([])
  })

  it('builds symmetric partitions of each shape', () => {
    for (const shape of ['halves', 'isolate', 'ring', 'bridge'] as const) {
      const g = partitionGrudge(shape, nodes, rng(1))
      for (const [a, deny] of Object.entries(g)) for (const b of deny) expect(g[b]).toContain(a)
      if (shape === 'ring') for (const deny of Object.values(g)) expect(deny).toHaveLength(2) // each sees a majority of 3
      if (shape === 'bridge') expect(Object.values(g).filter(d => d.length === 0)).toHaveLength(1)
    }
  })
})

describe('report', () => {
  it('renders plots and a self-contained timeline with the fault windows shaded', () => {
    const ops: Op[] = [
      { index: 0, process: 0, type: 'invoke', f: 'add', workload: 'set', key: 'a', value: 'a', time: 100 },
      { index: 1, process: 'nemesis', type: 'info', f: 'start-partition', value: { shape: 'halves' }, time: 200 },
      { index: 2, process: 0, type: 'ok', f: 'add', workload: 'set', key: 'a', value: 'a', time: 300 },
      { index: 3, process: 1, type: 'invoke', f: 'add', workload: 'set', key: 'b', value: 'b', time: 400 },
      { index: 4, process: 1, type: 'info', f: 'add', workload: 'set', key: 'b', value: 'b', time: 3400, error: 'TimeoutError' },
      { index: 5, process: 'nemesis', type: 'info', f: 'stop-partition', value: null, time: 5000 }
    ]
    for (const svg of [latencySvg(ops), throughputSvg(ops)]) {
      expect(svg.startsWith('<svg')).toBe(true)
      expect(svg).toContain('#9ecae1') // the partition window
    }
    const html = timelineHtml(ops, { valid: true, failures: [] })
    expect(html).toContain('<!doctype html>')
    expect(html).not.toMatch(/<script src=|<link /)
    expect(html).toContain('TimeoutError')
    // Disk windows shaded in their own color.
    const disk: Op[] = [
      { index: 0, process: 'nemesis', type: 'info', f: 'start-disk', value: { mode: 'fill', nodes: ['n3'] }, time: 100 },
      { index: 1, process: 'nemesis', type: 'info', f: 'disk-health', value: { node: 'n3', phase: 'window', status: 'yellow', failed: ['jepsen_set/1 ENOSPC'] }, time: 200 },
      { index: 2, process: 'nemesis', type: 'info', f: 'stop-disk', value: { nodes: ['n3'] }, time: 900 }
    ]
    expect(faultWindows(disk)).toEqual([{ kind: 'disk', start: 100, end: 900, detail: { mode: 'fill', nodes: ['n3'] } }])
    expect(latencySvg(disk)).toContain('#b8d8a8')
    // The full peer's /health samples get a lane of their own.
    const timeline = timelineHtml(disk, { valid: true, failures: [] })
    expect(timeline).toContain('>n3 health</text>')
    expect(timeline).toContain('n3 /health yellow (window) at 0.20 s failed: jepsen_set/1 ENOSPC')
    // A namespace run's loss window: its own color, and the packets it dropped in the faults table.
    const loss: Op[] = [
      { index: 0, process: 'nemesis', type: 'info', f: 'start-loss', value: { links: [['n1', 'n2']], percent: 25, via: 'nftables' }, time: 100 },
      { index: 1, process: 'nemesis', type: 'info', f: 'stop-loss', value: { droppedPackets: { n1: 7, n2: 5 } }, time: 900 }
    ]
    expect(latencySvg(loss)).toContain('#f2b5d4')
    expect(timelineHtml(loss, { valid: true, failures: [] })).toContain(`<td><code>${'{&quot;droppedPackets&quot;:{&quot;n1&quot;:7,&quot;n2&quot;:5}}'}</code></td>`)
  })

  it('draws partial query answers in their own color, with coverage and confidence, and the load in its own lane', () => {
    const cov = { total: 8, answered: 6, missing: [{ space: 'jepsen_queries', partition: 2, reason: 'n3: unreachable' }, { space: 'jepsen_queries', partition: 5, reason: 'n3: unreachable' }] }
    const ops: Op[] = [
      { index: 0, process: 'load', type: 'invoke', f: 'load', workload: 'queries', key: 'jepsen_queries', value: { rows: 10, partitions: 8 }, time: 0 },
      { index: 1, process: 'load', type: 'ok', f: 'load', workload: 'queries', key: 'jepsen_queries', value: { rows: 10, partitions: 8, byPartition: [] }, time: 50 },
      { index: 2, process: 0, type: 'invoke', f: 'query', workload: 'queries', key: 'total', value: { allowPartial: true }, time: 100, coordinator: 'n1' },
      { index: 3, process: 0, type: 'ok', f: 'query', workload: 'queries', key: 'total', value: [{ n: 7, s: 70 }], time: 120, coordinator: 'n1', coverage: cov, confidence: 0.75 },
      { index: 4, process: 0, type: 'invoke', f: 'query', workload: 'queries', key: 'total', value: { allowPartial: false }, time: 130, coordinator: 'n1' },
      { index: 5, process: 0, type: 'fail', f: 'query', workload: 'queries', key: 'total', value: { allowPartial: false }, time: 140, coordinator: 'n1', error: 'PARTIAL_RESULT', coverage: cov }
    ]
    const html = timelineHtml(ops, { valid: true, failures: [] })
    expect(html).toContain('ok partial')
    expect(html).toContain('#3a86c8')
    expect(html).toContain('coverage 6/8 missing 2 (n3: unreachable), 5 (n3: unreachable) confidence 0.75')
    expect(html).toContain('>pload</text>')
    expect(latencySvg(ops)).toContain('#3a86c8')
  })
})
