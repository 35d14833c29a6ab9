import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { sleep, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

interface Placement { partition: number, owners: string[], readReplicas: string[] }
interface SpaceDescription { name: string, placement: Placement[] }

async function createSpace (peer: PeerProcess, name: string, partitions = 8): Promise<void> {
  const res = await peer.post('/spaces', { name, schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'writer', type: 'utf8' }], partitions, replicas: 3 })
  if (res.status !== 201) throw new Error(`create space: ${res.status} ${JSON.stringify(res.body)}`)
}

/** The space is known, with the same placement, on every peer given. */
async function waitForSpace (peers: PeerProcess[], name: string): Promise<void> {
  await waitFor(async () => {
    const views = await Promise.all(peers.map(async p => await p.get(`/spaces/${name}`) as SpaceDescription))
    return views.every(v => v.name === name)
  }, { timeoutMs: 15_000 })
}

async function readRecord (peer: PeerProcess, space: string, id: string, consistency: string): Promise<{ status: number, n?: number }> {
  const res = await fetch(`${peer.url}/spaces/${space}/records/${id}?consistency=${consistency}`, { signal: AbortSignal.timeout(10_000) })
  const body = await res.json() as { record?: { n: number } }
  return { status: res.status, ...(body.record !== undefined ? { n: body.record.n } : {}) }
}

/**
 * A writer that keeps a model of what the cluster promised: for each id the last value whose
 * write was acknowledged, and the values of writes that failed or timed out afterwards ("info":
 * they may or may not have happened).
 */
class Writer {
  readonly acked = new Map<string, number>()
  readonly maybe = new Map<string, Set<number>>()
  failures = 0
  private seq = 0

  constructor (private readonly space: string, private readonly peers: () => PeerProcess[]) {}

  async writeBatch (ids: string[]): Promise<void> {
    const alive = this.peers().filter(p => p.running)
    const coordinator = alive[this.seq % alive.length]!
    const value = ++this.seq
    const rows = ids.map(id => ({ id, n: value, writer: coordinator.name }))
    try {
      const res = await fetch(`${coordinator.url}/spaces/${this.space}/records?consistency=quorum`, {
        method: 'POST',
        body: JSON.stringify(rows),
        headers: { 'content-type': 'application/json' },
        signal: AbortSignal.timeout(10_000)
      })
      if (res.status === 200) {
        for (const id of ids) { this.acked.set(id, value); this.maybe.delete(id) }
        return
      }
    } catch {
      // a timeout or a dropped connection: the write may or may not have happened
    }
    this.failures++
    for (const id of ids) {
      const set = this.maybe.get(id) ?? new Set<number>()
      set.add(value)
      this.maybe.set(id, set)
    }
  }

  /** Checks one read against the model; returns a description of the violation, if any. */
  check (id: string, n: number | undefined): string | undefined {
    const want = this.acked.get(id)
    if (want === undefined) return undefined
    if (n === want || (n !== undefined && this.maybe.get(id)?.has(n) === true)) return undefined
    return `${id}: read ${String(n)}, last acknowledged ${want}${this.maybe.has(id) ? ` (or one of ${[...this.maybe.get(id)!].join(',')})` : ''}`
  }
}

describe('replicated writes and reads on a real 3-peer cluster', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('loses no acknowledged QUORUM write when a replica is killed with kill -9 mid-load and restarted', async () => {
    cluster = await TestCluster.create()
    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    const peers = [a, b, c]
    await waitFor(async () => (await c.members()).filter(m => m.state === 'alive').length === 3, { timeoutMs: 15_000 })
    await createSpace(a, 'load')
    await waitForSpace(peers, 'load')

    const writer = new Writer('load', () => peers)
    const ids = Array.from({ length: 600 }, (_, i) => `k${i}`)
    let round = 0
    const load = async (rounds: number): Promise<void> => {
      for (let r = 0; r < rounds; r++, round++) {
        // Every round rewrites a sliding window of ids with a new value, so updates matter too.
        const start = (round * 50) % ids.length
        await writer.writeBatch(ids.slice(start, start + 50))
      }
    }
    await load(12)
    await c.kill('SIGKILL')
    await load(12)
    await cluster.restart('c')
    await load(12)
    expect(writer.acked.size).toBeGreaterThan(500)

    // Every acknowledged row, read at ALL through every peer, has its last acknowledged value.
    const violations: string[] = []
    await waitFor(async () => (await readRecord(c, 'load', ids[0]!, 'all')).status === 200, { timeoutMs: 20_000 })
    for (const [i, id] of [...writer.acked.keys()].entries()) {
      const peer = peers[i % 3]!
      const got = await readRecord(peer, 'load', id, 'all')
      const v = got.status === 200 ? writer.check(id, got.n) : `${id}: status ${got.status} from ${peer.name}`
      if (v !== undefined) violations.push(v)
    }
    expect(violations).toEqual([])
    const metrics = await fetch(`${a.url}/metrics`).then(async r => await r.text()) + await fetch(`${b.url}/metrics`).then(async r => await r.text())
    expect(metrics).toMatch(/shoal_hints_total\{event="written"\} [1-9]/)
  })

  it('moves partitions to a joining peer and away from a leaving one without losing a row, reads answering throughout', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map(n => cluster.peers.get(n)!) as [PeerProcess, PeerProcess, PeerProcess]
    await createSpace(a, 'moving', 8)
    await waitForSpace([a, b, c], 'moving')
    const writer = new Writer('moving', () => [a, b, c])
    const ids = Array.from({ length: 400 }, (_, i) => `m${i}`)
    for (let i = 0; i < ids.length; i += 100) await writer.writeBatch(ids.slice(i, i + 100))
    expect(writer.failures).toBe(0)

    // Readers run through the whole move; every read must answer with the acknowledged value.
    let reading = true
    const leaving = new Set<PeerProcess>()
    const readErrors: string[] = []
    let reads = 0
    const reader = (async () => {
      while (reading) {
        const id = ids[reads % ids.length]!
        // Clients talk to running peers; a peer that is leaving stops answering HTTP, as it should.
        const up = [a, b, c].filter(p => p.running && !leaving.has(p))
        const peer = up[reads % up.length]!
        reads++
        const got = await readRecord(peer, 'moving', id, 'quorum').catch(() => ({ status: 0 }))
        const v = got.status === 200 ? writer.check(id, (got as { n?: number }).n) : `${id}: status ${got.status} from ${peer.name}`
        if (v !== undefined) readErrors.push(v)
        await sleep(5)
      }
    })()

    const d = await cluster.startPeer('d', { bootstrap: [a.multiaddr()] })
    const handedOff = async (peers: PeerProcess[]): Promise<boolean> => {
      const view = await peers[0]!.get('/spaces/moving') as SpaceDescription
      return view.placement.every(p => p.owners.length === 3 && [...p.owners].sort().join() === [...p.readReplicas].sort().join())
    }
    await waitFor(async () => await handedOff([d]) && await handedOff([a]), { timeoutMs: 60_000, describe: async () => JSON.stringify(await a.get('/spaces/moving')) })
    const dOwns = ((await a.get('/spaces/moving')) as SpaceDescription).placement.filter(p => p.owners.includes(d.peerId)).length
    expect(dOwns).toBeGreaterThan(0)

    // b leaves gracefully; its partitions move to the remaining three.
    leaving.add(b)
    await b.kill('SIGTERM')
    expect(await b.waitExit()).toBe(0)
    await waitFor(async () => await handedOff([a]), { timeoutMs: 60_000, describe: async () => JSON.stringify(await a.get('/spaces/moving')) })
    reading = false
    await reader
    expect(reads).toBeGreaterThan(50)
    expect(readErrors, readErrors.join('\n')).toEqual([])

    for (const id of ids) {
      const got = await readRecord(d, 'moving', id, 'quorum')
      expect(writer.check(id, got.n)).toBeUndefined()
    }
  })

  it('fails a QUORUM write fast with 503 naming the partition when a peer is cut off from the others', async () => {
    const [a, c, d] = ['a', 'c', 'd'].map(n => cluster.peers.get(n)!) as [PeerProcess, PeerProcess, PeerProcess]
    await d.deny([a.peerId, c.peerId])
    try {
      await waitFor(async () => (await d.members()).filter(m => m.state === 'dead').length >= 2, { timeoutMs: 30_000 })
      const started = Date.now()
      const res = await d.post('/spaces/moving/records?consistency=quorum&timeoutMs=5000', [{ id: 'm0', n: -1, writer: 'cut-off' }])
      const tookMs = Date.now() - started
      expect(res.status).toBe(503)
      const error = (res.body as { error: { code: string, message: string } }).error
      expect(error.code).toBe('PARTITION_UNAVAILABLE')
      expect(error.message).toMatch(/partition \d+/)
      expect(tookMs).toBeLessThan(2000)
      // Nothing was sent, so nothing changed on the majority side.
      expect((await readRecord(a, 'moving', 'm0', 'quorum')).n).not.toBe(-1)
    } finally {
      await d.deny([])
    }
  })
})

describe('a one-peer cluster restarted after kill -9', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('keeps its spaces and every acknowledged write', async () => {
    cluster = await TestCluster.create()
    const solo = await cluster.startPeer('solo')
    await createSpace(solo, 'kept', 4)
    const writer = new Writer('kept', () => [solo])
    const ids = Array.from({ length: 300 }, (_, i) => `s${i}`)
    for (let i = 0; i < ids.length; i += 50) await writer.writeBatch(ids.slice(i, i + 50))
    expect(writer.failures).toBe(0)
    await solo.kill('SIGKILL')
    await cluster.restart('solo')
    // Its partitions are served once it has opened them and caught them up (/health `ready`):
    // what is on its disk is returning data, not a fresh partition (a few hundred ms here).
    await waitFor(async () => (await solo.health() as { ready?: boolean }).ready === true, { timeoutMs: 20_000 })
    for (const id of ids) {
      const got = await readRecord(solo, 'kept', id, 'quorum')
      expect(writer.check(id, got.n), `${id}: status ${got.status}`).toBeUndefined()
    }
  })
})

describe('a peer that was away while its space was dropped', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('deletes that space\'s data when it comes back', async () => {
    cluster = await TestCluster.create()
    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    await waitFor(async () => (await b.members()).filter(m => m.state === 'alive').length === 2, { timeoutMs: 15_000 })
    await createSpace(a, 'temp', 2)
    await waitForSpace([a, b], 'temp')
    const writer = new Writer('temp', () => [a])
    await writer.writeBatch(['t1', 't2', 't3'])
    expect(writer.failures).toBe(0)
    const uid = ((await a.get('/spaces/temp')) as { uid: string }).uid
    const bData = join(b.dataDir, 'spaces', uid)
    expect(existsSync(bData)).toBe(true)

    await b.kill('SIGKILL')
    expect((await fetch(`${a.url}/spaces/temp`, { method: 'DELETE' })).status).toBe(200)
    await cluster.restart('b')
    await waitFor(async () => !existsSync(bData), { timeoutMs: 20_000 })
    expect((await fetch(`${b.url}/spaces/temp`)).status).toBe(404)
  })
})
