import { describe, expect, it } from 'vitest'
import { AvailabilityLog, type SpaceAvailability } from '../../src/peer/availability-log.js'
import { recordingLogger } from './storage-helpers.js'

const space = (over: Partial<SpaceAvailability> = {}): SpaceAvailability => ({ name: 'orders', replicas: 3, partitions: 8, quorumOnly: 0, fewestLive: 3, unavailable: [], ...over })

describe('AvailabilityLog', () => {
  it('logs a space going short of replicas and partitions going unavailable at warn, once, and their return at info', () => {
    const log = recordingLogger()
    const a = new AvailabilityLog(log)
    a.observe([space()])
    expect(log.entries).toEqual([])
    a.observe([space({ quorumOnly: 8, fewestLive: 2 })])
    a.observe([space({ quorumOnly: 8, fewestLive: 2 })])
    expect(log.entries.map(e => [e.level, e.msg])).toEqual([['warn', 'space under-replicated: partitions with fewer live replicas than asked for']])
    expect(log.entries[0]!.obj).toMatchObject({ space: 'orders', replicas: 3, fewestLiveReplicas: 2, partitionsShort: 8 })

    a.observe([space({ quorumOnly: 6, fewestLive: 1, unavailable: [2, 5] })])
    a.observe([space({ quorumOnly: 5, fewestLive: 1, unavailable: [2, 5, 7] })])
    const unavailable = log.entries.filter(e => e.msg?.startsWith('partitions unavailable'))
    expect(unavailable.map(e => e.obj)).toMatchObject([{ space: 'orders', partitions: [2, 5], count: 2, unavailableNow: 2 }, { partitions: [7], count: 1, unavailableNow: 3 }])
    expect(unavailable.every(e => e.level === 'warn')).toBe(true)

    a.observe([space({ quorumOnly: 0, fewestLive: 3 })])
    const tail = log.entries.slice(-2)
    expect(tail.map(e => [e.level, e.msg])).toEqual([['info', 'partitions available again'], ['info', 'space no longer under-replicated']])
    expect(tail[0]!.obj).toMatchObject({ partitions: [2, 5, 7], count: 3, unavailableNow: 0 })
  })

  it('forgets a dropped space, and lists at most 32 partitions a line with the count', () => {
    const log = recordingLogger()
    const a = new AvailabilityLog(log)
    const all = Array.from({ length: 100 }, (_, p) => p)
    a.observe([space({ partitions: 100, unavailable: all, fewestLive: 0 })])
    expect(log.entries[0]!.obj).toMatchObject({ count: 100 })
    expect((log.entries[0]!.obj as { partitions: number[] }).partitions).toHaveLength(32)
    a.observe([])
    a.observe([space({ partitions: 100, unavailable: all, fewestLive: 0 })])
    expect(log.entries.filter(e => e.msg?.startsWith('partitions unavailable'))).toHaveLength(2)
  })
})
