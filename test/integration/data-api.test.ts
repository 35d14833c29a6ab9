import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tableToIPC, tableFromArrays } from 'apache-arrow'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/** The spaces and records endpoints and CLI commands, as a user drives them, on two real peers. */
describe('spaces and records through HTTP and the CLI', () => {
  let cluster: TestCluster
  let a: PeerProcess
  let b: PeerProcess

  beforeAll(async () => {
    cluster = await TestCluster.create()
    a = await cluster.startPeer('a')
    b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    await waitFor(async () => (await b.members()).filter(m => m.state === 'alive').length === 2, { timeoutMs: 15_000 })
  })
  afterAll(async () => { await cluster?.stopAll() })

  const post = async (peer: PeerProcess, path: string, body: unknown): Promise<{ status: number, body: any }> => await peer.post(path, body)

  it('creates a space on one peer and shows it on the other', async () => {
    const res = await runCli(['space', 'create', 'people', '--schema', 'name:utf8!,age:int32,score:float64,tags:list<utf8>', '--partitions', '4', '--peer', a.url])
    expect(res.stdout).toContain('created space people: 4 partitions, 3 replicas')
    // Two peers for three replicas: the CLI says so.
    expect(res.stderr).toBe('note: the cluster has 2 peers, fewer than the 3 replicas asked for: each partition holds 2 copies until more peers join\n')
    await waitFor(async () => (await b.get('/spaces/people') as { name?: string }).name === 'people', { timeoutMs: 10_000 })
    const list = await runCli(['space', 'list', '--peer', b.url])
    expect(list.stdout).toMatch(/people\s+4\s+3\s+id:utf8,name:utf8,age:int32/)
    // Three replicas asked for, two peers: every partition is short of one, and health says which.
    await waitFor(async () => {
      const h = await a.health() as { status: string, spaces?: Array<{ name: string }> }
      return h.status === 'yellow' && h.spaces?.some(s => s.name === 'people') === true
    }, { timeoutMs: 10_000, describe: async () => JSON.stringify(await a.health()) })
    const health = await a.health() as { spaces: Array<Record<string, unknown>> }
    expect(health.spaces.find(s => s.name === 'people')).toEqual({ name: 'people', replicas: 3, fewestLiveReplicas: 2, partitionsShort: 4, unavailable: [] })
  })

  it('refuses bad space definitions with 4xx errors naming the field', async () => {
    expect((await post(a, '/spaces', { name: 'Bad Name', schema: [] })).status).toBe(400)
    const badType = await post(a, '/spaces', { name: 'x', schema: [{ name: 'v', type: 'decimal' }] })
    expect(badType.status).toBe(400)
    expect(badType.body.error.message).toContain('schema[0].type')
    const exists = await post(a, '/spaces', { name: 'people', schema: [{ name: 'v', type: 'utf8' }] })
    expect(exists.status).toBe(409)
    // One code for an unknown space everywhere: the spaces API, the records API and queries.
    for (const res of [
      await fetch(`${a.url}/spaces/nope`),
      await fetch(`${a.url}/spaces/nope/records`, { method: 'POST', body: '[{"id":"x"}]' }),
      await fetch(`${a.url}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT count(*) FROM nope' }) })
    ]) {
      expect(res.status).toBe(404)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNKNOWN_SPACE')
    }
    const cli = await runCli(['space', 'create', 'y', '--schema', 'v:decimal', '--peer', a.url])
    expect(cli.code).toBe(2)
    expect(cli.stderr).toContain('unknown type')
  })

  it('writes nothing from a batch with one bad row, and names its row and field', async () => {
    const res = await post(a, '/spaces/people/records', [{ id: 'p1', name: 'Ann', age: 30 }, { id: 'p2', name: 'Bob', age: 'old' }])
    expect(res.status).toBe(400)
    expect(res.body.written).toBe(0)
    expect(res.body.errors).toEqual([{ row: 1, field: 'age', message: expect.stringContaining('int32') }])
    expect((await fetch(`${a.url}/spaces/people/records/p1`)).status).toBe(404)
    const unknown = await post(a, '/spaces/people/records', [{ id: 'p3', name: 'C', colour: 'red' }])
    expect(unknown.body.errors[0]).toMatchObject({ row: 0, field: 'colour', message: 'unknown column' })
    const level = await fetch(`${a.url}/spaces/people/records?consistency=most`, { method: 'POST', body: '[]' })
    expect(level.status).toBe(400)
    expect((await fetch(`${a.url}/spaces/nope/records`, { method: 'POST', body: '[{"id":"x"}]' })).status).toBe(404)
  })

  it('writes JSON arrays and NDJSON, reads by id on any peer, and deletes', async () => {
    const res = await post(a, '/spaces/people/records?consistency=all', [{ id: 'p1', name: 'Ann', age: 30, tags: ['x'] }])
    expect(res.status).toBe(200)
    expect(res.body.written).toBe(1)
    const ndjson = await fetch(`${b.url}/spaces/people/records`, { method: 'POST', body: '{"id":"p2","name":"Bob"}\n\n{"id":"p3","name":"Cy","score":1.5}\n', headers: { 'content-type': 'application/x-ndjson' } })
    expect(((await ndjson.json()) as { written: number }).written).toBe(2)
    const got = await b.get('/spaces/people/records/p1?consistency=quorum') as { record: Record<string, unknown>, version: number }
    expect(got.record).toEqual({ id: 'p1', name: 'Ann', age: 30, score: null, tags: ['x'] })
    expect(typeof got.version).toBe('number')
    const cli = await runCli(['get', 'people', 'p3', '--peer', a.url])
    expect(JSON.parse(cli.stdout).record.score).toBe(1.5)
    const del = await fetch(`${a.url}/spaces/people/records/p3`, { method: 'DELETE' })
    expect(del.status).toBe(200)
    expect((await fetch(`${b.url}/spaces/people/records/p3?consistency=quorum`)).status).toBe(404)
  })

  it('imports NDJSON, CSV and Arrow files with a final rows/s figure, and a re-run is harmless', async () => {
    const ndjson = join(cluster.dir, 'people.ndjson')
    await writeFile(ndjson, Array.from({ length: 2500 }, (_, i) => JSON.stringify({ id: `n${i}`, name: `N${i}`, age: i % 90 })).join('\n') + '\n')
    const first = await runCli(['import', 'people', ndjson, '--batch-rows', '1000', '--peer', a.url])
    expect(first.code).toBe(0)
    expect(first.stderr).toMatch(/imported 2,500 rows into people in [\d.]+ s: [\d,]+ rows\/s/)
    const again = await runCli(['import', 'people', ndjson, '--batch-rows', '1000', '--peer', b.url])
    expect(again.code).toBe(0)
    const n2499 = await b.get('/spaces/people/records/n2499') as { record: { age: number } }
    expect(n2499.record?.age, JSON.stringify(n2499)).toBe(2499 % 90)

    const csv = join(cluster.dir, 'people.csv')
    await writeFile(csv, 'id,name,age,score,tags\nc1,Cat,4,2.5,"[""a"",""b""]"\nc2,Dog,,,\n')
    const csvRun = await runCli(['import', 'people', csv, '--peer', a.url])
    expect(csvRun.code).toBe(0)
    expect(((await a.get('/spaces/people/records/c1')) as { record: unknown }).record).toEqual({ id: 'c1', name: 'Cat', age: 4, score: 2.5, tags: ['a', 'b'] })
    expect(((await a.get('/spaces/people/records/c2')) as { record: { age: unknown } }).record.age).toBeNull()

    const arrow = join(cluster.dir, 'people.arrow')
    await writeFile(arrow, tableToIPC(tableFromArrays({ id: ['r1', 'r2'], name: ['Rex', 'Rio'], age: Int32Array.from([7, 8]) }), 'file'))
    const arrowRun = await runCli(['import', 'people', arrow, '--peer', a.url])
    expect(arrowRun.code).toBe(0)
    expect(arrowRun.stderr).toContain('imported 2 rows')
    expect(((await b.get('/spaces/people/records/r2')) as { record: { age: number } }).record.age).toBe(8)
  })

  it('stops an import at a bad row, naming its line, and resumes after the fix', async () => {
    const file = join(cluster.dir, 'bad.ndjson')
    const lines = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: `b${i}`, name: `B${i}`, age: i === 25 ? 'x' : i }))
    await writeFile(file, lines.join('\n'))
    const run = await runCli(['import', 'people', file, '--batch-rows', '10', '--concurrency', '1', '--peer', a.url])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('line 26 of')
    expect(run.stderr).toContain('field age')
    expect(run.stderr).toContain('20 rows before this batch are written')
    lines[25] = JSON.stringify({ id: 'b25', name: 'B25', age: 25 })
    await writeFile(file, lines.join('\n'))
    const resumed = await runCli(['import', 'people', file, '--batch-rows', '10', '--resume', '--peer', a.url])
    expect(resumed.code).toBe(0)
    expect(resumed.stderr).toContain('(20 rows skipped by --resume)')
    expect((await fetch(`${a.url}/spaces/people/records/b29`)).status).toBe(200)
  })

  it('shows the partition digests of each replica, equal on both peers once writes are done', async () => {
    type Part = { space: string, partition: number, digest: string, ready: boolean }
    await waitFor(async () => {
      const [pa, pb] = await Promise.all([a.get('/cluster/partitions'), b.get('/cluster/partitions')]) as [Part[], Part[]]
      const key = (p: Part): string => `${p.space}/${p.partition}=${p.digest}`
      const people = (ps: Part[]): string[] => ps.filter(p => p.space === 'people').map(key)
      return people(pa).length === 4 && people(pa).join() === people(pb).join()
    }, { timeoutMs: 10_000 })
  })

  it('drops a space everywhere', async () => {
    await post(a, '/spaces', { name: 'gone', schema: [{ name: 'v', type: 'utf8' }] })
    await waitFor(async () => (await fetch(`${b.url}/spaces/gone`)).status === 200, { timeoutMs: 10_000 })
    const drop = await runCli(['space', 'drop', 'gone', '--peer', b.url])
    expect(drop.code).toBe(0)
    await waitFor(async () => (await fetch(`${a.url}/spaces/gone`)).status === 404, { timeoutMs: 10_000 })
  })

  it('answers writes with their version and moves its clock past a client\'s causality token', async () => {
    const first = await post(a, '/spaces/people/records', [{ id: 'tok', name: 'first' }])
    expect(typeof first.body.version).toBe('number')
    // A token 10 s ahead (within the 60 s skew bound): the next write through b is newer still.
    const ahead = first.body.version + 10_000 * 1024
    const second = await post(b, `/spaces/people/records?after=${ahead}`, [{ id: 'tok', name: 'second' }])
    expect(second.status).toBe(200)
    expect(second.body.version).toBeGreaterThan(ahead)
    expect(((await a.get('/spaces/people/records/tok')) as { record: { name: string } }).record.name).toBe('second')
    expect((await post(b, '/spaces/people/records?after=soon', [{ id: 'tok', name: 'x' }])).status).toBe(400)
    const tooFar = await post(b, `/spaces/people/records?after=${first.body.version + 3_600_000 * 1024}`, [{ id: 'tok', name: 'x' }])
    expect(tooFar.status).toBe(503)
    expect(tooFar.body.error.code).toBe('CLOCK_SKEW')
  })

  it('answers a write that lost to a newer version on every replica as stale, with its ids', async () => {
    // One replica per record, on one peer: the other coordinates without ever having seen the
    // owner's clock, as a coordinator that is not a replica would in a larger cluster.
    expect((await post(a, '/spaces', { name: 'lww', schema: [{ name: 'v', type: 'utf8' }], partitions: 1, replicas: 1 })).status).toBe(201)
    await waitFor(async () => (await fetch(`${b.url}/spaces/lww`)).status === 200, { timeoutMs: 10_000 })
    const owner = ((await a.get('/spaces/lww')) as { placement: Array<{ owners: string[] }> }).placement[0]!.owners[0]
    const [skewed, other] = owner === a.peerId ? [a, b] : [b, a]
    // The owner's clock runs 50 s ahead (within the 60 s bound) while it writes.
    await post(skewed, '/admin/faults', { clockOffsetMs: 50_000 })
    try {
      expect((await post(skewed, '/spaces/lww/records', [{ id: 'k', v: 'ahead' }])).status).toBe(200)
    } finally {
      await post(skewed, '/admin/faults', { clockOffsetMs: 0 })
    }
    const res = await post(other, '/spaces/lww/records?consistency=all', [{ id: 'k', v: 'lost' }, { id: 'n', v: 'new' }])
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ written: 2, stale: 1, staleIds: ['k'] })
    expect(((await other.get('/spaces/lww/records/k')) as { record: { v: string } }).record.v).toBe('ahead')
    const fresh = await post(other, '/spaces/lww/records', [{ id: 'n2', v: 'x' }])
    expect(fresh.body).toMatchObject({ written: 1, stale: 0, staleIds: [] })
  })

  // Last: a skewed peer's HLC stays ahead after the skew is removed (it never goes backwards).
  it('refuses writes stamped by a peer whose clock is skewed past the bound, and says so', async () => {
    const skew = await post(b, '/admin/faults', { clockOffsetMs: 120_000 })
    expect(skew.body).toMatchObject({ clockOffsetMs: 120_000, clockDriftPpm: 0 })
    try {
      const res = await post(b, '/spaces/people/records?consistency=all', [{ id: 'skewed', name: 'S' }])
      expect(res.status).toBe(503)
      expect(JSON.stringify(res.body)).toContain('CLOCK_SKEW')
      const metrics = await fetch(`${a.url}/metrics`).then(async r => await r.text())
      expect(metrics).toMatch(/shoal_clock_skew_refusals_total [1-9]/)
    } finally {
      await post(b, '/admin/faults', { clockOffsetMs: 0 })
    }
    expect((await post(b, '/admin/faults', { clockOffsetMs: 'soon' })).status).toBe(400)
  })
})
