import { execFile } from 'node:child_process'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { mkdtemp, realpath, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ShoalClient, ShoalError, ShoalUnavailableError, type ShoalRecord } from '../../src/client/index.js'
import { FAST_MEMBERSHIP, TestCluster, freePort, waitFor, type PeerProcess } from '../cluster/index.js'

const run = promisify(execFile)
/** The checkout (this file is test/integration/client.test.ts): what the consumer project installs. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * ShoalClient against a real 3-peer cluster: every method, its typed errors, failover past a
 * dead URL and a killed peer, and the package installed into another project as a dependency
 * and imported by name (issue 16).
 */
describe('ShoalClient on a real 3-peer cluster', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []
  let client: ShoalClient
  const SPACE = 'items'
  const PARTITIONS = 4

  beforeAll(async () => {
    cluster = await TestCluster.create({ config: { membership: FAST_MEMBERSHIP } })
    peers.push(...await cluster.startJoined(['a', 'b', 'c']))
    client = new ShoalClient(peers.map(p => p.url))
  })
  afterAll(async () => {
    client?.close()
    await cluster?.stopAll()
  })

  /** Every peer has the space and every partition both its replicas ready. */
  async function spaceReady (name: string): Promise<void> {
    await waitFor(async () => (await Promise.all(peers.filter(p => p.exitCode === null).map(async p => {
      const res = await fetch(`${p.url}/spaces/${name}`)
      if (res.status !== 200) return false
      const view = await res.json() as { placement?: Array<{ readReplicas: string[] }> }
      return (view.placement ?? []).length === PARTITIONS && view.placement!.every(pl => pl.readReplicas.length === 2)
    }))).every(ok => ok), { timeoutMs: 20_000 })
  }

  it('creates and lists a space, writes, reads a record with its version, and deletes it', async () => {
    const created = await client.createSpace({ name: SPACE, schema: [{ name: 'name', type: 'utf8' }, { name: 'qty', type: 'int32' }], partitions: PARTITIONS, replicas: 2 })
    expect(created).toMatchObject({ name: SPACE, partitions: PARTITIONS, replicas: 2 })
    expect(created.schema.map(c => c.name)).toContain('qty')
    await spaceReady(SPACE)
    expect((await client.listSpaces()).map(s => s.name)).toContain(SPACE)

    const written = await client.put(SPACE, [{ id: 'r1', name: 'one', qty: 1 }, { id: 'r2', name: 'two', qty: 2 }], { consistency: 'all' })
    expect(written.written).toBe(2)
    const got = await client.get(SPACE, 'r1', { consistency: 'quorum' })
    expect(got?.record).toMatchObject({ id: 'r1', name: 'one', qty: 1 })
    expect(typeof got?.version).toBe('number')
    expect(got!.version).toBeGreaterThan(0)

    // A newer write has a newer version, and reads see it.
    await client.put(SPACE, { id: 'r1', name: 'uno', qty: 11 }, { consistency: 'all', after: got!.version })
    const again = await client.get(SPACE, 'r1', { consistency: 'all' })
    expect(again?.record).toMatchObject({ name: 'uno', qty: 11 })
    expect(again!.version).toBeGreaterThan(got!.version)

    const deleted = await client.delete(SPACE, 'r2', { consistency: 'all' })
    expect(deleted.deleted).toBe(true)
    expect(await client.get(SPACE, 'r2', { consistency: 'all' })).toBeUndefined()
    // A missing space is an error, not a missing record.
    await expect(client.get('no_such_space', 'r1')).rejects.toMatchObject({ name: 'ShoalError', code: 'UNKNOWN_SPACE', status: 404 })
  })

  it('imports a few thousand rows from an async generator, one batch in flight', async () => {
    const ROWS = 3000
    const BATCH = 500
    let produced = 0
    let acknowledged = 0
    let mostAhead = 0
    async function * source (): AsyncGenerator<ShoalRecord> {
      for (let i = 0; i < ROWS; i++) {
        produced++
        mostAhead = Math.max(mostAhead, produced - acknowledged)
        yield { id: `g${i}`, name: `row ${i}`, qty: i % 10 }
      }
    }
    const result = await client.importStream(SPACE, source(), { batchRows: BATCH, consistency: 'all', onProgress: n => { acknowledged = n } })
    expect(result).toEqual({ written: ROWS, batches: ROWS / BATCH, stale: 0 })
    // Back-pressure: the generator never ran more than one batch ahead of what was acknowledged.
    expect(mostAhead).toBeLessThanOrEqual(BATCH)
    const count = await client.query(`SELECT count(*) AS n FROM ${SPACE} WHERE name LIKE 'row %'`)
    expect(count.rows).toEqual([{ n: ROWS }])
  })

  it('reports invalid rows of an import with row numbers over the whole stream', async () => {
    function * rows (): Generator<ShoalRecord> {
      for (let i = 0; i < 1000; i++) yield i === 703 ? { id: `bad${i}`, name: 'x', qty: 'not a number' } : { id: `bad${i}`, name: 'x', qty: 1 }
    }
    const err = await client.importStream(SPACE, rows(), { batchRows: 300 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ShoalError)
    expect(err).toMatchObject({ code: 'INVALID_ROWS', status: 400 })
    expect((err as ShoalError).rowErrors[0]).toMatchObject({ row: 703, field: 'qty' })
  })

  it('answers SQL and JSON queries with columns, rows, coverage, confidence and tookMs', async () => {
    const sql = await client.query(`SELECT qty, count(*) AS n FROM ${SPACE} WHERE name LIKE 'row %' GROUP BY qty ORDER BY qty`, { timeoutMs: 10_000, allowPartial: false, consistency: 'one' })
    expect(sql.columns).toEqual([{ name: 'qty', type: 'int32' }, { name: 'n', type: 'int64' }])
    expect(sql.rows).toEqual(Array.from({ length: 10 }, (_, q) => ({ qty: q, n: 300 })))
    expect(sql.coverage).toEqual({ total: PARTITIONS, answered: PARTITIONS, missing: [] })
    expect(sql.confidence).toBe(1)
    expect(typeof sql.tookMs).toBe('number')

    const json = await client.query({ space: SPACE, filter: { ids: { values: ['g1', 'g2'] } }, sort: [{ id: 'asc' }], fields: ['id', 'qty'] })
    expect(json.rows).toEqual([{ id: 'g1', qty: 1 }, { id: 'g2', qty: 2 }])
    expect(json.coverage.answered).toBe(json.coverage.total)
  })

  it('answers a query as an Arrow Table', async () => {
    const table = await client.queryArrow(`SELECT id, qty FROM ${SPACE} WHERE qty = 3 AND name LIKE 'row %'`)
    expect(table.numRows).toBe(300)
    expect(table.schema.fields.map(f => f.name)).toEqual(['id', 'qty'])
    expect(table.getChild('qty')!.toArray().every((q: number) => q === 3)).toBe(true)
    // With how complete it is: the answer's x-shoal-* headers.
    const result = await client.queryArrowResult(`SELECT count(*) AS n FROM ${SPACE}`)
    expect(result.table.numRows).toBe(1)
    expect(result.coverage).toMatchObject({ total: PARTITIONS, answered: PARTITIONS, missing: [] })
    expect(result.confidence).toBe(1)
    expect(result.tookMs).toBeGreaterThanOrEqual(0)
    expect(peers.map(p => p.url)).toContain(result.peer)
  })

  it('raises a bad query as ShoalError with its code, message, status and details', async () => {
    const err = await client.query(`SELECT regoin FROM ${SPACE}`).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ShoalError)
    expect(err).not.toBeInstanceOf(ShoalUnavailableError)
    const e = err as ShoalError
    expect(e.code).toBe('INVALID_QUERY')
    expect(e.status).toBe(400)
    expect(e.message).toMatch(/regoin/)
    expect((e.details as Array<{ column?: string }>)[0]).toMatchObject({ code: 'unknown_column', column: 'regoin' })
    await expect(client.query('SELECT * FROM nope')).rejects.toMatchObject({ code: 'UNKNOWN_SPACE', status: 404 })
  })

  it('shows members and health', async () => {
    const members = await client.members()
    expect(members).toHaveLength(3)
    expect(members.every(m => m.state === 'alive')).toBe(true)
    expect(members.map(m => m.name).sort()).toEqual(['a', 'b', 'c'])
    const health = await client.health()
    expect(health.majority).toBe(true)
    expect(['green', 'yellow', 'red']).toContain(health.status)
  })

  it('fails over past a URL nothing listens on, for reads and writes, and remembers the live peer', async () => {
    const deadPort = await freePort()
    const dead = `http://127.0.0.1:${deadPort}`
    const failover = new ShoalClient([dead, peers[1]!.url], { token: 'secret-token', timeoutMs: 5000 })
    try {
      expect(failover.currentPeer).toBe(dead)
      expect((await failover.health()).name).toBe('b')
      expect(failover.currentPeer).toBe(peers[1]!.url)
      // A refused connection never reached a peer, so even a write goes to the next one.
      const fresh = new ShoalClient([dead, peers[2]!.url])
      try {
        expect((await fresh.put(SPACE, { id: 'fo1', name: 'failover', qty: 7 }, { consistency: 'all' })).written).toBe(1)
        expect(fresh.currentPeer).toBe(peers[2]!.url)
      } finally { fresh.close() }
      expect((await failover.get(SPACE, 'fo1', { consistency: 'all' }))?.record).toMatchObject({ qty: 7 })
    } finally { failover.close() }

    const nobody = new ShoalClient([dead, `http://127.0.0.1:${await freePort()}`])
    try {
      const err = await nobody.health().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ShoalUnavailableError)
      expect(err).toMatchObject({ code: 'UNAVAILABLE', status: undefined })
      expect((err as ShoalUnavailableError).tried.map(t => t.reason)).toEqual(['ECONNREFUSED', 'ECONNREFUSED'])
    } finally { nobody.close() }
  })

  /** A peer stand-in on a free port that answers every request with `handle` (a 503, a reset). */
  async function fakePeer (handle: Parameters<typeof createServer>[1]): Promise<{ url: string, server: Server }> {
    const server = createServer(handle)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    return { url: `http://127.0.0.1:${port}`, server }
  }

  it('retries a read on another peer after a 503 NOT_SYNCED, but not a write, and sends the bearer token', async () => {
    const seen: IncomingHttpHeaders[] = []
    const notSynced = await fakePeer((req, res) => {
      seen.push(req.headers)
      res.writeHead(503, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { code: 'NOT_SYNCED', message: 'this peer has not synced with its cluster since it started' } }))
    })
    const c = new ShoalClient([notSynced.url, peers[0]!.url], { token: 't0ken' })
    try {
      expect((await c.get(SPACE, 'g7', { consistency: 'quorum' }))?.record).toMatchObject({ qty: 7 })
      expect(seen[0]!.authorization).toBe('Bearer t0ken')
      const again = new ShoalClient([notSynced.url, peers[0]!.url])
      try {
        const err = await again.put(SPACE, { id: 'ns1', name: 'x', qty: 1 }).catch((e: unknown) => e)
        expect(err).toMatchObject({ name: 'ShoalError', code: 'NOT_SYNCED', status: 503 })
        expect(await client.get(SPACE, 'ns1', { consistency: 'all' })).toBeUndefined()
      } finally { again.close() }
    } finally {
      c.close()
      notSynced.server.close()
    }
  })

  it('does not repeat a write on another peer when the connection was reset after the request was sent', async () => {
    const resets = await fakePeer((req) => { req.socket.destroy() })
    const c = new ShoalClient([resets.url, peers[0]!.url])
    try {
      const err = await c.put(SPACE, { id: 'reset1', name: 'x', qty: 1 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ShoalUnavailableError)
      expect((err as ShoalUnavailableError).tried).toEqual([{ peer: resets.url, reason: 'ECONNRESET' }])
      expect(await client.get(SPACE, 'reset1', { consistency: 'all' })).toBeUndefined()
      // A read after the same reset goes on to the live peer.
      expect((await c.health()).name).toBe('a')
    } finally {
      c.close()
      resets.server.close()
    }
  })

  it('works as a dependency of another project, imported by its package name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-consumer-'))
    try {
      await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
      // A path install links node_modules/shoal to the checkout; --offline because it needs no
      // registry, --ignore-scripts because `prepare` would rebuild the project the peers run from.
      await run('npm', ['install', '--no-audit', '--no-fund', '--offline', '--ignore-scripts', ROOT], { cwd: dir, timeout: 120_000 })
      await writeFile(join(dir, 'app.mjs'), `
import { ShoalClient, ShoalError } from 'shoal'
const shoal = new ShoalClient(process.argv.slice(2))
const created = await shoal.createSpace({ name: 'consumer_space', schema: [{ name: 'city', type: 'utf8' }, { name: 'pop', type: 'int32' }], partitions: 2, replicas: 2 })
const put = await shoal.put('consumer_space', [{ id: 'c1', city: 'Oslo', pop: 700 }, { id: 'c2', city: 'Bergen', pop: 290 }], { consistency: 'all' })
const got = await shoal.get('consumer_space', 'c1', { consistency: 'all' })
const q = await shoal.query('SELECT city, pop FROM consumer_space ORDER BY pop DESC')
const t = await shoal.queryArrow('SELECT city, pop FROM consumer_space ORDER BY pop DESC')
let errorCode = null
try { await shoal.query('SELECT nope FROM consumer_space') } catch (e) { errorCode = e instanceof ShoalError ? e.code : 'not a ShoalError' }
await shoal.dropSpace('consumer_space')
shoal.close()
console.log(JSON.stringify({ created: created.name, written: put.written, record: got.record, version: got.version, rows: q.rows, arrowRows: t.numRows, arrowCities: t.getChild('city').toArray(), errorCode }))
`)
      const { stdout } = await run('node', ['app.mjs', ...peers.map(p => p.url)], { cwd: dir, timeout: 60_000 })
      const out = JSON.parse(stdout.trim()) as Record<string, unknown>
      expect(out).toMatchObject({ created: 'consumer_space', written: 2, record: { id: 'c1', city: 'Oslo', pop: 700 }, rows: [{ city: 'Oslo', pop: 700 }, { city: 'Bergen', pop: 290 }], arrowRows: 2, arrowCities: ['Oslo', 'Bergen'], errorCode: 'INVALID_QUERY' })
      expect(out.version).toBeGreaterThan(0)
      // Installed as npm does a path dependency: a link to the checkout.
      expect(await realpath(join(dir, 'node_modules/shoal'))).toBe(await realpath(ROOT))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('fails a read over to another peer when the one it used is killed', async () => {
    const victim = peers[2]!
    const c = new ShoalClient([victim.url, peers[0]!.url, peers[1]!.url])
    try {
      expect((await c.health()).name).toBe('c')
      await victim.kill()
      const answer = await c.query(`SELECT count(*) AS n FROM ${SPACE} WHERE id = 'g5'`, { allowPartial: true })
      expect(answer.rows).toEqual([{ n: 1 }])
      expect(c.currentPeer).toBe(peers[0]!.url)
    } finally { c.close() }
  })

  it('drops a space', async () => {
    const live = new ShoalClient([peers[0]!.url, peers[1]!.url])
    try {
      await live.dropSpace(SPACE)
      expect((await live.listSpaces()).map(s => s.name)).not.toContain(SPACE)
      await expect(live.dropSpace(SPACE)).rejects.toMatchObject({ code: 'UNKNOWN_SPACE', status: 404 })
    } finally { live.close() }
  })
})
