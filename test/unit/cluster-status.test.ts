/**
 * `shoal status` and `shoal repair` without a network: the peer-side gathering and summary
 * (src/peer/cluster-status.ts) over stub views, the RPC bodies' checks (status-wire.ts), the
 * HTTP request parsing (src/http/ops.ts), this peer's part of a repair (replication/on-demand.ts)
 * and the CLI's tables (src/cli/status.ts, repair.ts).
 */
import { describe, expect, it } from 'vitest'
import { formatRepair } from '../../src/cli/repair.js'
import { formatStatus, formatUptime } from '../../src/cli/status.js'
import { formatBytes } from '../../src/cli/table.js'
import { HttpError, parseRepairBody, parseStatusQuery } from '../../src/http/index.js'
import {
  ClusterStatusService, collectLocalStatus, compareDigests, summarizeSpace,
  type ClusterRepair, type ClusterStatus, type ClusterStatusDeps, type StatusMember, type StatusPlacement
} from '../../src/peer/cluster-status.js'
import {
  MAX_STATUS_REPLICAS, METHOD_REPAIR, METHOD_STATUS, parseRepairAnswer, parseRepairRequest, parseStatusAnswer, type PeerStatus
} from '../../src/peer/status-wire.js'
import type { RepairReport, RepairRequest } from '../../src/replication/index.js'
import { repairNow, type OnDemandContext } from '../../src/replication/on-demand.js'
import type { SyncOptions } from '../../src/replication/anti-entropy.js'
import { silentLogger, type PeerAddress, type RequestHandler } from '../../src/runtime/index.js'
import type { SpaceDef } from '../../src/schema/index.js'

const space = (name: string, partitions: number, replicas: number): SpaceDef => ({ name, uid: `${name}-1`, schema: [{ name: 'id', type: 'utf8', nullable: false }], partitions, replicas })

const member = (peerId: string, state: StatusMember['state'] = 'alive'): StatusMember => ({ peerId, name: peerId.toLowerCase(), addrs: [], http: null, version: '0.1.0', state })

function peerStatus (peerId: string, digests: Record<number, string | null>, extra: Partial<PeerStatus> = {}): PeerStatus {
  const replicas = Object.entries(digests).map(([p, digest]) => ({ uid: 'people-1', space: 'people', partition: Number(p), ready: true, digest, rows: 10 }))
  return {
    peerId, name: peerId.toLowerCase(), version: '0.1.0', uptimeMs: 65_000, ready: true,
    partitions: { held: replicas.length, ready: replicas.length }, rows: 10 * replicas.length, tombstones: 0, diskBytes: 4096, hintsPending: 0, replicas, ...extra
  }
}

const emptyReport = (over: Partial<RepairReport> = {}): RepairReport => ({
  partitions: 2, syncs: 2, syncsFailed: 0, bucketsCompared: 128, bucketsDiffering: 0, recordsPulled: 0, recordsPushed: 0, failures: [], cancelled: false, ...over
})

/** A ClusterStatusService over stubs: members A (this peer), B, C; `remote` answers for the others. */
function service (opts: {
  members?: StatusMember[]
  remote: (peer: string, method: string, body: unknown, timeoutMs: number | undefined) => Promise<unknown>
  local?: PeerStatus
  spaces?: SpaceDef[]
  placement?: (space: SpaceDef, partition: number) => StatusPlacement
  reachable?: (peer: string) => boolean
  repair?: (req: RepairRequest) => Promise<RepairReport>
}): { svc: ClusterStatusService, handlers: Map<string, RequestHandler>, asked: Array<{ peer: string, method: string, body: unknown }> } {
  const handlers = new Map<string, RequestHandler>()
  const asked: Array<{ peer: string, method: string, body: unknown }> = []
  const spaces = opts.spaces ?? [space('people', 2, 3)]
  const deps: ClusterStatusDeps = {
    transport: {
      localPeerId: 'A',
      request: async (to: PeerAddress, method: string, body: unknown, o?: { timeoutMs?: number }) => {
        asked.push({ peer: to.id!, method, body })
        return await opts.remote(to.id!, method, body, o?.timeoutMs)
      },
      handle: (method, handler) => { handlers.set(method, handler) }
    },
    clock: { now: () => 1000, wallNow: () => Date.UTC(2025, 0, 1) },
    log: silentLogger,
    local: async () => opts.local ?? peerStatus('A', { 0: 'r0', 1: 'r1' }),
    members: () => opts.members ?? [member('A'), member('B'), member('C')],
    health: () => ({ status: 'green', majority: true }),
    spaces: () => spaces,
    space: name => spaces.find(s => s.name === name),
    locate: opts.placement ?? (() => ({ owners: ['A', 'B', 'C'], readReplicas: ['A', 'B', 'C'], quorum: 2 })),
    isReachable: opts.reachable ?? (() => true),
    addressOf: id => ({ id, addrs: [] }),
    repair: opts.repair ?? (async () => emptyReport())
  }
  return { svc: new ClusterStatusService(deps), handlers, asked }
}

describe('compareDigests()', () => {
  it('says agree when every live replica reported the same root', () => {
    expect(compareDigests(['x', 'x', 'x'], 3)).toBe('agree')
  })
  it('says differ when two roots differ, even if another replica did not answer', () => {
    expect(compareDigests(['x', 'y', undefined], 3)).toBe('differ')
  })
  it('says unknown when a replica did not answer or reported no digest', () => {
    expect(compareDigests(['x', undefined], 3)).toBe('unknown')
    expect(compareDigests(['x', null, 'x'], 3)).toBe('unknown')
  })
  it('says unknown with one live replica of several owners, agree with one owner only', () => {
    expect(compareDigests(['x'], 3)).toBe('unknown')
    expect(compareDigests(['x'], 1)).toBe('agree')
    expect(compareDigests([], 3)).toBe('unknown')
  })
})

describe('summarizeSpace()', () => {
  it('counts replicas live per partition, short, below quorum and unavailable partitions, and digest agreement', () => {
    const s = space('people', 4, 3)
    const placements: StatusPlacement[] = [
      { owners: ['A', 'B', 'C'], readReplicas: ['A', 'B', 'C'], quorum: 2 },
      { owners: ['A', 'B', 'C'], readReplicas: ['A', 'B', 'C'], quorum: 2 },
      { owners: ['A', 'C', 'D'], readReplicas: ['C', 'D'], quorum: 2 },
      { owners: ['D', 'E', 'C'], readReplicas: ['D', 'E'], quorum: 2 }
    ]
    const reachable = new Set(['A', 'B', 'C'])
    const roots: Record<string, Record<number, string>> = { A: { 0: 'r0', 1: 'r1' }, B: { 0: 'r0', 1: 'other' }, C: { 0: 'r0', 1: 'r1', 2: 'r2' } }
    const row = summarizeSpace(s, p => placements[p]!, id => reachable.has(id), (peer, p) => roots[peer] === undefined ? undefined : roots[peer]![p] ?? null)
    expect(row).toEqual({
      name: 'people',
      partitions: 4,
      replicas: { wanted: 3, fewestLive: 0, mostLive: 3 },
      partitionsShort: 2,
      belowQuorum: [2],
      unavailable: [3],
      digests: { state: 'differ', differing: [1], unknown: [2, 3] }
    })
  })
})

describe('ClusterStatusService.status()', () => {
  it('asks every other alive or suspect member at once, lists one that does not answer as unreachable, and does not ask dead ones', async () => {
    const { svc, asked } = service({
      members: [member('A'), member('B'), member('C', 'suspect'), member('D', 'dead')],
      remote: async (peer, method, _body, timeoutMs) => {
        expect(method).toBe(METHOD_STATUS)
        expect(timeoutMs).toBe(250)
        if (peer === 'B') return peerStatus('B', { 0: 'r0', 1: 'r1' }, { version: '0.2.0', hintsPending: 3 })
        throw Object.assign(new Error(`request ops.status to ${peer} timed out after 250 ms`), { code: 'TIMEOUT' })
      }
    })
    const status = await svc.status({ timeoutMs: 250 })
    expect(asked.map(a => a.peer).sort()).toEqual(['B', 'C'])
    expect(status).toMatchObject({ peer: 'A', name: 'a', health: 'green', majority: true, timeoutMs: 250, at: '2025-01-01T00:00:00.000Z' })
    const byId = new Map(status.peers.map(p => [p.peerId, p]))
    expect(byId.get('A')).toMatchObject({ state: 'alive', reachable: true, version: '0.1.0', partitions: { held: 2, ready: 2 }, rows: 20, diskBytes: 4096, hintsPending: 0 })
    expect(byId.get('B')).toMatchObject({ reachable: true, version: '0.2.0', hintsPending: 3 })
    expect(byId.get('C')).toMatchObject({ state: 'suspect', reachable: false, error: 'request ops.status to C timed out after 250 ms', rows: null, version: '0.1.0' })
    expect(byId.get('D')).toMatchObject({ state: 'dead', reachable: false, rows: null })
    expect(byId.get('D')!.error).toBeUndefined()
    // C is live (reachable per the detector) but did not answer: its digests are unknown.
    expect(status.spaces[0]!.digests).toEqual({ state: 'unknown', differing: [], unknown: [0, 1] })
  })

  it('says the digests agree once every live replica answered with the same roots, and differ naming the partition otherwise', async () => {
    const agree = service({ remote: async peer => peerStatus(peer, { 0: 'r0', 1: 'r1' }) })
    expect((await agree.svc.status({ timeoutMs: 100 })).spaces[0]!.digests.state).toBe('agree')
    const differ = service({ remote: async peer => peerStatus(peer, { 0: 'r0', 1: peer === 'C' ? 'stale' : 'r1' }) })
    expect((await differ.svc.status({ timeoutMs: 100 })).spaces[0]!.digests).toEqual({ state: 'differ', differing: [1], unknown: [] })
  })

  it('refuses an answer that breaks the wire shape (listed unreachable, with the reason)', async () => {
    const { svc } = service({ remote: async peer => peer === 'B' ? { ...peerStatus('B', {}), rows: -1 } : peerStatus(peer, { 0: 'r0', 1: 'r1' }) })
    const b = (await svc.status({ timeoutMs: 100 })).peers.find(p => p.peerId === 'B')!
    expect(b.reachable).toBe(false)
    expect(b.error).toContain('rows must be a non-negative integer')
  })

  it('serves ops.status with this peer\'s own figures and refuses a body that is not an object', async () => {
    const { svc, handlers } = service({ remote: async () => { throw new Error('unused') } })
    svc.register()
    expect(await handlers.get(METHOD_STATUS)!({}, { from: 'B', signal: new AbortController().signal })).toMatchObject({ peerId: 'A' })
    await expect(async () => await handlers.get(METHOD_STATUS)!([1, 2], { from: 'B', signal: new AbortController().signal })).rejects.toThrow(/must be an object/)
  })
})

describe('ClusterStatusService.repair()', () => {
  it('asks every live peer with the same covered set, sums their reports and fails when a peer does not answer', async () => {
    let localReq: RepairRequest | undefined
    const { svc, asked } = service({
      members: [member('A'), member('B'), member('C'), member('D', 'left')],
      repair: async req => { localReq = req; return emptyReport({ recordsPulled: 5 }) },
      remote: async peer => {
        if (peer === 'B') return emptyReport({ recordsPushed: 7, bucketsDiffering: 2 })
        throw new Error('peer C unreachable: connection refused')
      }
    })
    const r = await svc.repair({ space: 'people', timeoutMs: 5000 })
    expect(asked.map(a => a.body)).toEqual([{ spaces: ['people'], covered: ['A', 'B', 'C'] }, { spaces: ['people'], covered: ['A', 'B', 'C'] }])
    expect(asked.every(a => a.method === METHOD_REPAIR)).toBe(true)
    expect(localReq!.spaces.map(s => s.name)).toEqual(['people'])
    expect(localReq!.covered).toEqual(['A', 'B', 'C'])
    expect(r.ok).toBe(false)
    expect(r.totals).toEqual({ partitions: 4, syncs: 4, syncsFailed: 0, bucketsCompared: 256, bucketsDiffering: 2, recordsPulled: 5, recordsPushed: 7 })
    expect(r.peers.map(p => [p.peerId, p.ok])).toEqual([['A', true], ['B', true], ['C', false]])
    expect(r.peers[2]!.error).toBe('peer C unreachable: connection refused')
    expect(r.notAsked).toEqual([{ peerId: 'D', name: 'd', state: 'left' }])
  })

  it('is not ok when a peer answers with failed syncs, and refuses an unknown space before asking anyone', async () => {
    const failed = emptyReport({ syncsFailed: 1, failures: [{ space: 'people', partition: 1, peer: 'C', error: 'TIMEOUT' }] })
    const { svc, asked } = service({ remote: async peer => peer === 'B' ? failed : emptyReport() })
    const r = await svc.repair({ timeoutMs: 5000 })
    expect(r.spaces).toBeNull()
    expect(r.ok).toBe(false)
    expect(r.peers.find(p => p.peerId === 'B')).toMatchObject({ ok: false, error: '1 sync(s) did not complete' })
    asked.length = 0
    await expect(svc.repair({ space: 'nope', timeoutMs: 5000 })).rejects.toMatchObject({ name: 'CatalogError', code: 'UNKNOWN_SPACE' })
    expect(asked).toEqual([])
  })

  it('runs one repair at a time: a second one asked meanwhile, through this peer or by another peer, is refused as busy', async () => {
    let release!: () => void
    const { svc, handlers } = service({ remote: async () => emptyReport(), repair: async () => { await new Promise<void>(resolve => { release = resolve }); return emptyReport() } })
    svc.register()
    const first = svc.repair({ timeoutMs: 5000 })
    await expect(svc.repair({ timeoutMs: 5000 })).rejects.toMatchObject({ name: 'RepairBusyError' })
    await expect(async () => await handlers.get(METHOD_REPAIR)!({ spaces: null, covered: [] }, { from: 'B', signal: new AbortController().signal })).rejects.toThrow(/already running on this peer/)
    release()
    expect((await first).ok).toBe(true)
    // Once it finished, the next one runs.
    const second = svc.repair({ timeoutMs: 5000 })
    await new Promise(resolve => setTimeout(resolve, 0))
    release()
    expect((await second).ok).toBe(true)
  })

  it('serves ops.repair for the spaces its catalog has, with the caller\'s covered set and signal', async () => {
    let got: RepairRequest | undefined
    const { svc, handlers } = service({ remote: async () => emptyReport(), repair: async req => { got = req; return emptyReport() } })
    svc.register()
    const signal = new AbortController().signal
    await handlers.get(METHOD_REPAIR)!({ spaces: ['people', 'unknown-here'], covered: ['A', 'B'], future: 1 }, { from: 'B', signal })
    expect(got!.spaces.map(s => s.name)).toEqual(['people'])
    expect(got!.covered).toEqual(['A', 'B'])
    expect(got!.signal).toBe(signal)
    await handlers.get(METHOD_REPAIR)!({ spaces: null, covered: [] }, { from: 'B', signal })
    expect(got!.spaces.map(s => s.name)).toEqual(['people'])
    await expect(async () => await handlers.get(METHOD_REPAIR)!({ spaces: 'people', covered: [] }, { from: 'B', signal })).rejects.toThrow(/spaces must be an array/)
  })
})

describe('collectLocalStatus()', () => {
  it('sums rows and disk over the open replicas, reports each digest root, and null for a replica whose digest fails', async () => {
    const s = space('people', 2, 3)
    const store = (partition: number, ok: boolean): Parameters<typeof collectLocalStatus>[0]['stores'] extends () => Array<infer T> ? T : never => ({
      space: s,
      partition,
      stats: () => ({ liveRows: 10 + partition, tombstones: 1, diskBytes: 1000 }),
      digest: async () => { if (!ok) throw new Error('disk failed'); return { root: `root${partition}` } }
    })
    const status = await collectLocalStatus({
      peerId: 'A', name: 'a', version: '0.1.0', uptimeMs: () => 1234.4, ready: () => true,
      stores: () => [store(0, true), store(1, false)],
      isReady: (_s, p) => p === 0,
      replication: () => ({ heldPartitions: 2, readyPartitions: 1, hints: { pending: 4 } })
    })
    expect(status).toEqual({
      peerId: 'A', name: 'a', version: '0.1.0', uptimeMs: 1234, ready: true, partitions: { held: 2, ready: 1 }, rows: 21, tombstones: 2, diskBytes: 2000, hintsPending: 4,
      replicas: [
        { uid: 'people-1', space: 'people', partition: 0, ready: true, digest: 'root0', rows: 10 },
        { uid: 'people-1', space: 'people', partition: 1, ready: false, digest: null, rows: 11 }
      ]
    })
    // What it answers passes the wire's own checks.
    expect(parseStatusAnswer(status)).toEqual(status)
  })
})

describe('the ops.status and ops.repair bodies', () => {
  it('ignore fields a newer peer adds and refuse wrong types, oversized lists and impossible counts', () => {
    const ok = peerStatus('B', { 0: 'r0' })
    expect(parseStatusAnswer({ ...ok, cpu: 0.5 })).toEqual(ok)
    expect(() => parseStatusAnswer({ ...ok, partitions: { held: 1, ready: 2 } })).toThrow(/must not exceed/)
    expect(() => parseStatusAnswer({ ...ok, replicas: new Array(MAX_STATUS_REPLICAS + 1).fill(ok.replicas[0]) })).toThrow(/at most 65536/)
    expect(() => parseStatusAnswer({ ...ok, replicas: [{ ...ok.replicas[0], digest: 5 }] })).toThrow(/replicas\[0\]\.digest/)
    expect(() => parseStatusAnswer({ ...ok, name: 'x'.repeat(2000) })).toThrow(/name must be a string of at most 1024/)
    expect(parseRepairRequest({ covered: ['A'] })).toEqual({ spaces: null, covered: ['A'] })
    expect(() => parseRepairRequest({ spaces: ['a'], covered: new Array(5000).fill('A') })).toThrow(/covered has 5000 entries/)
    expect(() => parseRepairRequest({ spaces: [1], covered: [] })).toThrow(/spaces\[0\]/)
    const report = emptyReport({ failures: [{ space: 'people', partition: 0, peer: 'C', error: 'TIMEOUT' }] })
    expect(parseRepairAnswer(report)).toEqual(report)
    expect(() => parseRepairAnswer({ ...report, cancelled: 'no' })).toThrow(/cancelled must be true or false/)
    expect(() => parseRepairAnswer({ ...report, failures: new Array(101).fill(report.failures[0]) })).toThrow(/at most 100/)
  })
})

describe('the HTTP requests of /cluster/status and /cluster/repair', () => {
  it('GET /cluster/status takes timeoutMs from 100 to 60000, default 3000, and nothing else', () => {
    expect(parseStatusQuery(new URLSearchParams())).toBe(3000)
    expect(parseStatusQuery(new URLSearchParams('timeoutMs=500'))).toBe(500)
    expect(() => parseStatusQuery(new URLSearchParams('timeoutMs=50'))).toThrow(HttpError)
    expect(() => parseStatusQuery(new URLSearchParams('timeoutMs=1e3'))).toThrow(/integer from 100 to 60000/)
    expect(() => parseStatusQuery(new URLSearchParams('timeout=500'))).toThrow(/unknown query parameter 'timeout'/)
  })

  it('POST /cluster/repair takes an empty body or {space?, timeoutMs?}, naming what is wrong', () => {
    expect(parseRepairBody('')).toEqual({ timeoutMs: 600_000 })
    expect(parseRepairBody('{}')).toEqual({ timeoutMs: 600_000 })
    expect(parseRepairBody('{"space":"people","timeoutMs":5000}')).toEqual({ space: 'people', timeoutMs: 5000 })
    const fails = (body: string): HttpError => { try { parseRepairBody(body) } catch (err) { return err as HttpError } throw new Error(`accepted ${body}`) }
    expect(fails('{"space":')).toMatchObject({ status: 400, code: 'BAD_JSON' })
    expect(fails('[]')).toMatchObject({ status: 400, code: 'BAD_REQUEST' })
    expect(fails('{"space":""}').message).toContain("field 'space' must be a space name")
    expect(fails('{"space":3}').message).toContain("field 'space'")
    expect(fails('{"timeoutMs":"5000"}').message).toContain("field 'timeoutMs' must be an integer from 1000 to 86400000")
    expect(fails('{"spaces":["a"]}').message).toContain("unknown field 'spaces'")
  })
})

describe('repairNow(): this peer\'s part of a repair', () => {
  /** A context over 3 partitions of `people`: readReplicas per partition, and a syncWith that records its calls. */
  function ctx (over: { self?: string, replicas?: string[][], ready?: (p: number) => boolean, reachable?: (p: string) => boolean, sync?: (peer: string, partition: number, opts: SyncOptions) => boolean, stopped?: boolean }) {
    const calls: Array<[string, number]> = []
    const replicas = over.replicas ?? [['A', 'B', 'C'], ['B', 'C', 'A'], ['B', 'C', 'D']]
    const c: OnDemandContext = {
      self: over.self ?? 'B',
      placement: { locate: (_s: SpaceDef, p: number) => ({ readReplicas: replicas[p]! }) } as unknown as OnDemandContext['placement'],
      detector: { isReachable: (p: string) => over.reachable?.(p) ?? true, quorumReachable: () => true },
      replicas: { isReady: (key: string) => over.ready?.(Number(key.split('\u0000')[1])) ?? true } as unknown as OnDemandContext['replicas'],
      life: { stopped: over.stopped ?? false } as unknown as OnDemandContext['life'],
      counters: { antiEntropy: { rounds: 0, bucketsDiffering: 0, bucketsRepaired: 0, recordsPulled: 0, recordsPushed: 0, failures: 0 } },
      antiEntropy: {
        syncWith: async (peer, _space, partition, opts) => {
          calls.push([peer, partition])
          opts.report!.bucketsCompared += 64
          return over.sync?.(peer, partition, opts) ?? true
        }
      }
    }
    return { c, calls }
  }

  it('syncs only the partitions it leads (its id first among the covered ready replicas), with every other reachable ready replica', async () => {
    const { c, calls } = ctx({})
    const report = await repairNow(c, { spaces: [space('people', 3, 3)], covered: ['A', 'B', 'C', 'D'] })
    // A leads partitions 0 and 1; B leads 2.
    expect(calls).toEqual([['C', 2], ['D', 2]])
    expect(report).toMatchObject({ partitions: 1, syncs: 2, syncsFailed: 0, bucketsCompared: 128, failures: [], cancelled: false })
    expect(c.counters.antiEntropy.rounds).toBe(2)
  })

  it('leads a partition whose other replicas are not in the repair, and skips unreachable replicas and partitions not ready here', async () => {
    const { c, calls } = ctx({ reachable: p => p !== 'D', ready: p => p !== 1 })
    const report = await repairNow(c, { spaces: [space('people', 3, 3)], covered: ['B'] })
    expect(calls.sort()).toEqual([['A', 0], ['C', 0], ['C', 2]])
    expect(report.partitions).toBe(2)
  })

  it('syncs again with the replicas before the last one it pulled records from, which lack them', async () => {
    const { c, calls } = ctx({ replicas: [['B', 'C', 'D', 'E']], sync: (peer, _p, opts) => { if (peer === 'D') opts.report!.recordsPulled += 3; return true } })
    const report = await repairNow(c, { spaces: [space('people', 1, 3)], covered: [] })
    expect(calls).toEqual([['C', 0], ['D', 0], ['E', 0], ['C', 0]])
    expect(report).toMatchObject({ partitions: 1, syncs: 4, recordsPulled: 3 })
  })

  it('counts what the syncs found differing and pushed, and names the syncs that failed', async () => {
    const { c } = ctx({
      replicas: [['B', 'C', 'D']],
      sync: (peer, _p, opts) => {
        opts.report!.bucketsDiffering += 2
        opts.report!.recordsPushed += 1
        if (peer === 'D') { opts.report!.error = 'TIMEOUT'; return false }
        return true
      }
    })
    const report = await repairNow(c, { spaces: [space('people', 1, 3)], covered: ['B', 'C', 'D'] })
    expect(report).toMatchObject({ partitions: 1, syncs: 2, syncsFailed: 1, bucketsCompared: 128, bucketsDiffering: 4, recordsPulled: 0, recordsPushed: 2 })
    expect(report.failures).toEqual([{ space: 'people', partition: 0, peer: 'D', error: 'TIMEOUT' }])
    // What the syncs found and moved goes into the background counters in syncWith itself (this fake does not): a repair adds its rounds.
    expect(c.counters.antiEntropy).toMatchObject({ rounds: 2 })
  })

  it('starts no sync once the caller gave up, and says it was cancelled', async () => {
    const abort = new AbortController()
    abort.abort()
    const { c, calls } = ctx({})
    const report = await repairNow(c, { spaces: [space('people', 3, 3)], covered: [], signal: abort.signal })
    expect(calls).toEqual([])
    expect(report.cancelled).toBe(true)
  })
})

describe('the CLI tables', () => {
  const status: ClusterStatus = {
    peer: 'A', name: 'a', at: '2025-01-01T00:00:00.000Z', tookMs: 12, timeoutMs: 3000, health: 'yellow', majority: true,
    peers: [
      { peerId: 'A', name: 'a', state: 'alive', reachable: true, http: null, version: '0.1.0', uptimeMs: 3_725_000, ready: true, partitions: { held: 16, ready: 16 }, rows: 12345, tombstones: 0, diskBytes: 3 * 1048576, hintsPending: 0 },
      { peerId: 'B', name: 'b', state: 'alive', reachable: false, error: 'request ops.status to B timed out after 3000 ms', http: null, version: '0.1.0', uptimeMs: null, ready: null, partitions: null, rows: null, tombstones: null, diskBytes: null, hintsPending: null },
      { peerId: 'C', name: 'c', state: 'dead', reachable: false, http: null, version: null, uptimeMs: null, ready: null, partitions: null, rows: null, tombstones: null, diskBytes: null, hintsPending: null }
    ],
    spaces: [
      { name: 'people', partitions: 16, replicas: { wanted: 3, fewestLive: 2, mostLive: 2 }, partitionsShort: 16, belowQuorum: [], unavailable: [], digests: { state: 'differ', differing: [3, 7], unknown: [] } },
      { name: 'logs', partitions: 4, replicas: { wanted: 1, fewestLive: 0, mostLive: 1 }, partitionsShort: 1, belowQuorum: [], unavailable: [2], digests: { state: 'unknown', differing: [], unknown: [2] } }
    ]
  }

  it('shoal status prints one row per peer and per space, with the reasons below', () => {
    expect(formatStatus(status)).toBe([
      'cluster yellow: 3 peers (1 alive, 1 unreachable, 1 dead), 2 spaces; asked a at 2025-01-01T00:00:00.000Z, 12 ms',
      '',
      'PEER  STATE        VERSION  UPTIME  HELD  READY    ROWS     DISK  HINTS',
      'a     alive        0.1.0     1h 2m    16     16  12,345  3.0 MiB      0',
      'b     unreachable  0.1.0         -     -      -       -        -      -',
      'c     dead         -             -     -      -       -        -      -',
      '',
      'SPACE   PARTITIONS  REPLICAS  SHORT  BELOW QUORUM  UNAVAILABLE  DIGESTS',
      'people          16       2/3     16             0            0  differ (2 partitions)',
      'logs             4     0-1/1      1             0            1  unknown (1 partition)',
      '',
      'not answering:',
      '  b: request ops.status to B timed out after 3000 ms',
      '',
      'partitions:',
      '  people: replicas\' digests differ in partitions 3, 7 (shoal repair people)',
      '  logs: no live replica of partition 2',
      ''
    ].join('\n'))
  })

  it('shoal repair prints each peer\'s counts, the totals and what failed', () => {
    const report = (over: Partial<RepairReport>): RepairReport => ({ ...emptyReport(), ...over })
    const r: ClusterRepair = {
      peer: 'A', name: 'a', spaces: ['people'], tookMs: 2345, ok: false,
      peers: [
        { peerId: 'A', name: 'a', ok: true, report: report({ partitions: 16, syncs: 32, bucketsCompared: 2048, bucketsDiffering: 3, recordsPulled: 0, recordsPushed: 40 }) },
        { peerId: 'B', name: 'b', ok: false, error: '1 sync(s) did not complete', report: report({ partitions: 16, syncs: 16, syncsFailed: 1, bucketsCompared: 1024, failures: [{ space: 'people', partition: 5, peer: 'A', error: 'TIMEOUT' }] }) },
        { peerId: 'C', name: 'c', ok: false, error: 'peer C unreachable: connection refused' }
      ],
      notAsked: [{ peerId: 'D', name: 'd', state: 'dead' }],
      totals: { partitions: 32, syncs: 48, syncsFailed: 1, bucketsCompared: 3072, bucketsDiffering: 3, recordsPulled: 0, recordsPushed: 40 }
    }
    expect(formatRepair(r)).toBe([
      'repair of space people through a: 3 peers, 2.3 s',
      '',
      'PEER   PARTITIONS  SYNCS  BUCKETS  DIFFERING  PULLED  PUSHED  RESULT',
      'a              16     32    2,048          3       0      40  ok',
      'b              16     16    1,024          0       0       0  FAILED',
      'c               -      -        -          -       -       -  FAILED',
      'total          32     48    3,072          3       0      40  FAILED',
      '',
      'repaired: 40 records copied between replicas (0 pulled, 40 pushed) from 3 differing digest buckets',
      '',
      '2 peers did not complete (run shoal repair again once they are back):',
      '  b: 1 sync(s) did not complete',
      '  c: peer C unreachable: connection refused',
      '  b: people partition 5 with a: TIMEOUT',
      '',
      'not asked (d dead): their replicas are repaired when they return (catch-up)',
      ''
    ].join('\n'))
  })

  it('formats uptimes and sizes for humans', () => {
    expect([formatUptime(4_000), formatUptime(725_000), formatUptime(3_725_000), formatUptime(2 * 86_400_000 + 4 * 3_600_000)]).toEqual(['4s', '12m 5s', '1h 2m', '2d 4h'])
    expect([formatBytes(512), formatBytes(1536), formatBytes(340 * 1048576)]).toEqual(['512 B', '1.5 KiB', '340 MiB'])
  })
})
