import { describe, expect, it } from 'vitest'
import { formatEvent, formatSummary } from '../../src/cli/decommission.js'
import { HttpError, parseDecommissionBody } from '../../src/http/index.js'
import { DecommissionRunner, EventLines } from '../../src/peer/decommission.js'
import type { DecommissionEvent, DecommissionSummary } from '../../src/peer/decommission.js'
import type { HandOffOptions, HandOffReport } from '../../src/replication/index.js'
import { silentLogger } from '../../src/runtime/index.js'

function runner (report: HandOffReport): { r: DecommissionRunner, calls: string[] } {
  const calls: string[] = []
  const r = new DecommissionRunner({
    replicator: {
      handOff: async (opts: HandOffOptions) => {
        calls.push(`handOff ${opts.timeoutMs}`)
        opts.onProgress?.({ event: 'started', partitions: report.total, timeoutMs: opts.timeoutMs })
        for (const [i, h] of report.handedOff.entries()) opts.onProgress?.({ event: 'handed-off', space: h.space, partition: h.partition, to: h.to, recordsPushed: 0, done: i + 1, total: report.total })
        return report
      },
      finishHandOff: async () => { calls.push('finish'); return { partitions: report.handedOff.length, failed: [] } },
      cancelHandOff: () => { calls.push('cancel') }
    },
    leave: async () => { calls.push('leave') },
    log: silentLogger,
    nameOf: id => `name-of-${id}`,
    isCurrent: () => true,
    self: { peerId: 'self-id', name: 'self' },
    drainTimeoutMs: 1000,
    now: () => 0
  })
  return { r, calls }
}

const complete: HandOffReport = { complete: true, total: 2, handedOff: [{ space: 's', partition: 0, to: ['x'] }, { space: 's', partition: 1, to: ['y'] }], notHandedOff: [], tookMs: 1500 }
const timedOut: HandOffReport = { complete: false, total: 2, handedOff: [{ space: 's', partition: 0, to: ['x'] }], notHandedOff: [{ space: 's', partition: 1, reason: 'waiting for y to catch up', otherReplicas: [] }], tookMs: 60_000 }

describe('decommission: the peer side', () => {
  it('a complete hand-off leaves, pushes once more, and names peers in the events', async () => {
    const { r, calls } = runner(complete)
    const events: DecommissionEvent[] = []
    const s = await r.run({ timeoutMs: 5000, leaveOnTimeout: false, onEvent: ev => { events.push(ev) } })
    expect(calls).toEqual(['handOff 5000', 'leave', 'finish'])
    expect(s).toMatchObject({ event: 'done', complete: true, left: true, total: 2, handedOff: 2, notHandedOff: [] })
    expect(events.map(e => e.event)).toEqual(['started', 'handed-off', 'handed-off', 'leaving'])
    expect(events[1]).toMatchObject({ to: ['name-of-x'] })
    // One that left stays the last: no second decommission.
    expect(() => r.run({ timeoutMs: 1, leaveOnTimeout: false })).toThrow(/already under way/)
  })

  it('a timed-out hand-off asked for by the command is given up: the peer does not leave, and may be asked again', async () => {
    const { r, calls } = runner(timedOut)
    const s = await r.run({ timeoutMs: 5000, leaveOnTimeout: false })
    expect(calls).toEqual(['handOff 5000', 'cancel'])
    expect(s).toMatchObject({ complete: false, left: false, handedOff: 1, notHandedOff: [{ space: 's', partition: 1, reason: 'waiting for y to catch up', otherReplicas: [] }] })
    expect(r.current).toBeUndefined()
  })

  it('SIGTERM\'s hand-off leaves even when it timed out', async () => {
    const { r, calls } = runner(timedOut)
    const s = await r.run({ timeoutMs: 5000, leaveOnTimeout: true })
    expect(calls).toEqual(['handOff 5000', 'leave', 'finish'])
    expect(s).toMatchObject({ complete: false, left: true })
  })

  it('EventLines yields each event as one NDJSON line, in order, until ended', async () => {
    const lines = new EventLines()
    const read = (async () => { const out: string[] = []; for await (const l of lines) out.push(l); return out })()
    lines.push({ event: 'leaving', complete: true })
    await Promise.resolve()
    lines.push({ event: 'error', message: 'x' })
    lines.end()
    lines.push({ event: 'error', message: 'after the end: dropped' })
    expect(await read).toEqual(['{"event":"leaving","complete":true}\n', '{"event":"error","message":"x"}\n'])
  })

  it('EventLines is bounded: a caller that reads nothing loses the oldest waiting lines first', async () => {
    const lines = new EventLines(3)
    const waiting = (done: number): DecommissionEvent => ({ event: 'waiting', done, total: 9, elapsedMs: 0, pending: [] })
    lines.push(waiting(1))
    lines.push({ event: 'handed-off', space: 's', partition: 0, to: [], recordsPushed: 0, done: 1, total: 9 })
    lines.push(waiting(2))
    lines.push(waiting(3))
    lines.end()
    const out: string[] = []
    for await (const l of lines) out.push(l)
    expect(out.map(l => JSON.parse(l) as { event: string, done: number }).map(e => `${e.event}${e.done}`)).toEqual(['handed-off1', 'waiting2', 'waiting3'])
  })
})

describe('POST /admin/decommission body', () => {
  it('takes an empty body or {timeoutMs}, refusing anything else naming the field', () => {
    expect(parseDecommissionBody('')).toEqual({})
    expect(parseDecommissionBody('{}')).toEqual({})
    expect(parseDecommissionBody('{"timeoutMs": 120000}')).toEqual({ timeoutMs: 120000 })
    for (const bad of ['{"timeoutMs": -1}', '{"timeoutMs": 1.5}', '{"timeoutMs": "10"}', '{"timeoutMs": 86400001}', '{"timeout": 5}', '[]', 'nope']) {
      expect(() => parseDecommissionBody(bad), bad).toThrow(HttpError)
    }
    expect(() => parseDecommissionBody('{"timeout": 5}')).toThrow(/unknown field 'timeout'/)
  })
})

describe('shoal decommission output', () => {
  it('prints a line per partition handed off and a summary that says what was not and why', () => {
    expect(formatEvent({ event: 'started', peer: 'id', name: 'b', partitions: 7, timeoutMs: 60_000 })).toBe('decommission: b hands off 7 partitions to their next owners (waiting at most 60.0 s)\n')
    expect(formatEvent({ event: 'handed-off', space: 'kept', partition: 3, to: ['a'], recordsPushed: 2, done: 1, total: 7 })).toBe('  kept/3 → a (2 records pushed)  [1/7]\n')
    const done: DecommissionSummary = { event: 'done', complete: true, left: true, total: 7, handedOff: 7, notHandedOff: [], tookMs: 2500, message: '' }
    expect(formatSummary(done)).toBe('decommissioned: 7 of 7 partitions handed off in 2.5 s; the peer left the cluster and is stopping\n')
    const notDone: DecommissionSummary = {
      ...done,
      complete: false,
      left: false,
      handedOff: 6,
      notHandedOff: [{ space: 'kept', partition: 5, reason: 'waiting for c to catch up', otherReplicas: [] }, { space: 'kept', partition: 6, reason: 'its next owner c cannot be reached', otherReplicas: ['a'] }]
    }
    const text = formatSummary(notDone)
    expect(text).toContain('NOT decommissioned: 6 of 7 partitions handed off in 2.5 s; the peer stays a member')
    expect(text).toContain('  kept/5: waiting for c to catch up; its only ready copy is on this peer')
    expect(text).toContain('  kept/6: its next owner c cannot be reached; its data is also on a')
  })
})
