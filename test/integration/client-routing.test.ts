import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ShoalClient } from '../../src/client/index.js'
import { partitionOfId } from '../../src/placement/hash.js'
import { FAST_MEMBERSHIP, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * Owner routing in ShoalClient (src/client/routing.ts) on a real 3-peer cluster, one replica per
 * partition: a query that read one partition (or several one peer holds), run again, goes to the
 * peer holding it; records by id go to their partition's peer (counted by each peer's own HTTP
 * metrics); queries over partitions no one peer holds stay where they were; `routing: false`
 * turns it off; a dead owner is failed over.
 */
describe('ShoalClient owner routing on a real 3-peer cluster', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []
  const PARTITIONS = 4

  beforeAll(async () => {
    cluster = await TestCluster.create({ config: { membership: FAST_MEMBERSHIP } })
    peers.push(...await cluster.startJoined(['a', 'b', 'c']))
    for (const [name, partitions] of [['one', 1], ['many', PARTITIONS]] as const) {
      expect((await peers[0]!.post('/spaces', { name, schema: [{ name: 'v', type: 'int32' }], partitions, replicas: 1 })).status).toBe(201)
      await waitFor(async () => (await Promise.all(peers.map(async p => {
        const view = await (await fetch(`${p.url}/spaces/${name}`)).json() as { placement?: Array<{ readReplicas: string[] }> }
        return view.placement?.length === partitions && view.placement.every(pl => pl.readReplicas.length === 1)
      }))).every(ok => ok), { timeoutMs: 20_000 })
      const rows = Array.from({ length: 40 }, (_, i) => ({ id: `${name}-${i}`, v: i }))
      expect((await peers[0]!.post(`/spaces/${name}/records?consistency=all`, rows)).status).toBe(200)
    }
  })
  afterAll(async () => {
    await cluster?.stopAll()
  })

  /** The peer holding partition `p` of `space` (one replica each). */
  async function ownerOf (space: string, p: number): Promise<PeerProcess> {
    const view = await (await fetch(`${peers[0]!.url}/spaces/${space}`)).json() as { placement: Array<{ readReplicas: string[] }> }
    const id = view.placement[p]!.readReplicas[0]!
    const owner = peers.find(x => x.peerId === id)
    expect(owner).toBeDefined()
    return owner!
  }

  /** GET requests for records each peer has served, by its own metrics. */
  async function recordGets (): Promise<number[]> {
    return await Promise.all(peers.map(async p => {
      const text = await (await fetch(`${p.url}/metrics`)).text()
      let n = 0
      for (const line of text.split('\n')) {
        if (line.startsWith('shoal_http_requests_total{') && line.includes('method="GET"') && line.includes('route="/spaces/:name/records"')) n += Number(line.split(' ').at(-1))
      }
      return n
    }))
  }

  it('sends a query that read one partition, run again, to the peer holding it', async () => {
    const owner = await ownerOf('one', 0)
    // The owner last, so an unrouted client never starts there.
    const urls = [...peers.filter(p => p !== owner), owner].map(p => p.url)
    const sql = 'SELECT count(*) AS n, sum(v) AS s FROM one'
    const raw = await fetch(`${urls[0]}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql }) })
    expect(raw.headers.get('x-shoal-route')).toBe(owner.peerId)

    const client = new ShoalClient(urls)
    try {
      const first = await client.query(sql)
      expect(first.peer).toBe(urls[0])
      expect(first.rows).toEqual([{ n: 40, s: 780 }])
      // Who each URL is is learned in the background; then the same text goes to the owner.
      await waitFor(async () => (await client.query(sql)).peer === owner.url, { timeoutMs: 10_000 })
      for (let i = 0; i < 5; i++) {
        const again = await client.query(sql)
        expect(again.peer).toBe(owner.url)
        expect(again.rows).toEqual([{ n: 40, s: 780 }])
        expect(again.coverage).toMatchObject({ total: 1, answered: 1 })
      }
      // The Arrow form of the same query goes there too (its own text: the Accept differs, the body not).
      expect((await client.queryArrow(sql)).numRows).toBe(1)
      // A query over partitions that no one peer holds has no route: it stays with the current
      // peer. (Rendezvous may put all 4 partitions of `many` on one peer, 1 time in 27: then that
      // peer is its route.)
      const view = await (await fetch(`${urls[0]}/spaces/many`)).json() as { placement: Array<{ readReplicas: string[] }> }
      const holders = new Set(view.placement.map(pl => pl.readReplicas[0]!))
      for (let i = 0; i < 3; i++) {
        const all = await client.query('SELECT count(*) AS n FROM many')
        expect(all.rows).toEqual([{ n: 40 }])
        if (holders.size > 1) expect(all.peer).toBe(urls[0])
      }
      // The routed queries did not move the current peer.
      expect(client.currentPeer).toBe(urls[0])
    } finally { client.close() }

    const off = new ShoalClient(urls, { routing: false })
    try {
      for (let i = 0; i < 3; i++) expect((await off.query(sql)).peer).toBe(urls[0])
    } finally { off.close() }
  })

  it('routes a query over several partitions that one peer holds all of', async () => {
    const view = await (await fetch(`${peers[0]!.url}/spaces/many`)).json() as { placement: Array<{ readReplicas: string[] }> }
    const holder = new Map<number, string>(view.placement.map((pl, p) => [p, pl.readReplicas[0]!]))
    // Two ids in two partitions of the same peer, if the placement has such a pair (4 partitions
    // on 3 peers always does).
    const ids = Array.from({ length: 200 }, (_, i) => `many-${i % 40}`)
    let pair: [string, string] | undefined
    for (const x of ids) {
      for (const y of ids) {
        const px = partitionOfId(x, PARTITIONS); const py = partitionOfId(y, PARTITIONS)
        if (px !== py && holder.get(px) === holder.get(py)) pair = [x, y]
      }
    }
    expect(pair).toBeDefined()
    const owner = peers.find(p => p.peerId === holder.get(partitionOfId(pair![0], PARTITIONS)))!
    const urls = [...peers.filter(p => p !== owner), owner].map(p => p.url)
    const sql = `SELECT count(*) AS n FROM many WHERE id IN ('${pair![0]}', '${pair![1]}')`
    const client = new ShoalClient(urls)
    try {
      expect((await client.query(sql)).rows).toEqual([{ n: 2 }])
      await waitFor(async () => (await client.query(sql)).peer === owner.url, { timeoutMs: 10_000 })
      expect((await client.query(sql)).rows).toEqual([{ n: 2 }])
    } finally { client.close() }
  })

  it('reads and writes records by id at the peer holding their partition', async () => {
    const target = await ownerOf('many', 2)
    const ids = Array.from({ length: 400 }, (_, i) => `r${i}`).filter(id => partitionOfId(id, PARTITIONS) === 2).slice(0, 20)
    const client = new ShoalClient(peers.filter(p => p !== target).concat(target).map(p => p.url))
    try {
      // The first use fetches the space's placement in the background; wait for it and for who the URLs are.
      await client.get('many', ids[0]!)
      await waitFor(async () => {
        const before = await recordGets()
        await client.get('many', ids[0]!)
        const after = await recordGets()
        return after[peers.indexOf(target)]! - before[peers.indexOf(target)]! === 1
      }, { timeoutMs: 10_000 })
      for (const id of ids) expect((await client.put('many', { id, v: 7 }, { consistency: 'one' })).written).toBe(1)
      const before = await recordGets()
      for (const id of ids) expect((await client.get('many', id, { consistency: 'one' }))?.record).toMatchObject({ id, v: 7 })
      const after = await recordGets()
      const served = after.map((n, i) => n - before[i]!)
      expect(served[peers.indexOf(target)]).toBe(ids.length)
      expect(served.reduce((a, b) => a + b, 0)).toBe(ids.length)
    } finally { client.close() }
  })

  it('fails a routed query over to another peer when the owner is dead', async () => {
    const owner = await ownerOf('one', 0)
    const urls = [...peers.filter(p => p !== owner), owner].map(p => p.url)
    const client = new ShoalClient(urls)
    try {
      const sql = 'SELECT count(*) AS n FROM one'
      await waitFor(async () => (await client.query(sql)).peer === owner.url, { timeoutMs: 10_000 })
      await owner.kill()
      // Its only replica is gone: a partial answer, from a peer that is alive.
      const answer = await client.query(sql, { allowPartial: true })
      expect(answer.peer).not.toBe(owner.url)
      expect(answer.coverage).toMatchObject({ total: 1, answered: 0 })
    } finally { client.close() }
  })
})
