import { createServer, type Server } from 'node:http'
import { describe, expect, it } from 'vitest'
import { PeerTransport } from '../../src/client/transport.js'
import { MAX_QUERY_ROUTES, MAX_ROUTED_QUERY_CHARS, PLACEMENT_TTL_MS, PROBE_RETRY_MS, Routes, parseRoute } from '../../src/client/routing.js'
import { partitionOfId } from '../../src/placement/hash.js'

/** Lets the background promises of Routes settle. */
const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

function fixture (ids: Array<string | Error>, placements: Record<string, unknown> = {}): { routes: Routes, probes: number[], fetches: string[], clock: { t: number } } {
  const probes: number[] = []
  const fetches: string[] = []
  const clock = { t: 0 }
  const routes = new Routes(ids.length, {
    peerIdOf: async (i) => { probes.push(i); const id = ids[i]!; if (id instanceof Error) throw id; return id },
    placementOf: async (space) => { fetches.push(space); if (placements[space] === undefined) throw new Error('unknown space'); return placements[space] },
    now: () => clock.t
  })
  return { routes, probes, fetches, clock }
}

describe('client owner routing (Routes)', () => {
  it('routes a query text to the configured URLs of the peers its answer named, once it knows who they are', async () => {
    const { routes, probes } = fixture(['Pa', 'Pb', 'Pc'])
    expect(routes.forQuery('q')).toEqual([])
    routes.learnQuery('q', 'Pc,Pa')
    // Not yet: the URLs are being asked who they are.
    expect(routes.forQuery('q')).toEqual([])
    await settle()
    expect(probes).toEqual([0, 1, 2])
    expect(routes.forQuery('q')).toEqual([2, 0])
    // Known peers are not asked again; an answer without a route drops the text's entry.
    routes.learnQuery('r', 'Pb')
    await settle()
    expect(probes).toEqual([0, 1, 2])
    routes.learnQuery('q', undefined)
    expect(routes.forQuery('q')).toEqual([])
    expect(routes.forQuery('r')).toEqual([1])
  })

  it('ignores malformed or oversized route headers and long query texts, and keeps at most MAX_QUERY_ROUTES texts', async () => {
    expect(parseRoute('Pa,P b')).toEqual([])
    expect(parseRoute('Pa,__proto__')).toEqual([])
    expect(parseRoute(['Pa'])).toEqual([])
    expect(parseRoute(Array.from({ length: 17 }, (_, i) => `P${i}`).join(','))).toEqual([])
    expect(parseRoute('Pa, Pb')).toEqual(['Pa', 'Pb'])
    const { routes } = fixture(['Pa', 'Pb'])
    routes.learnQuery('x'.repeat(MAX_ROUTED_QUERY_CHARS + 1), 'Pa')
    await settle()
    expect(routes.forQuery('x'.repeat(MAX_ROUTED_QUERY_CHARS + 1))).toEqual([])
    for (let i = 0; i <= MAX_QUERY_ROUTES; i++) routes.learnQuery(`q${i}`, 'Pb')
    await settle()
    expect(routes.forQuery('q0')).toEqual([])
    expect(routes.forQuery('q1')).toEqual([1])
    expect(routes.forQuery(`q${MAX_QUERY_ROUTES}`)).toEqual([1])
  })

  it('asks a URL that did not answer again only after PROBE_RETRY_MS', async () => {
    const ids: Array<string | Error> = ['Pa', new Error('refused')]
    const { routes, probes, clock } = fixture(ids)
    routes.learnQuery('q', 'Pb')
    await settle()
    expect(probes).toEqual([0, 1])
    ids[1] = 'Pb'
    routes.learnQuery('q', 'Pb')
    await settle()
    expect(probes).toEqual([0, 1])
    expect(routes.forQuery('q')).toEqual([])
    clock.t += PROBE_RETRY_MS
    routes.learnQuery('q', 'Pb')
    await settle()
    expect(probes).toEqual([0, 1, 1])
    expect(routes.forQuery('q')).toEqual([1])
  })

  it('routes records by id with the space placement, fetched in the background and again after PLACEMENT_TTL_MS', async () => {
    const placement = (owners: string[]): unknown => ({ name: 's', partitions: 4, placement: owners.map((o, p) => ({ partition: p, owners: [o], readReplicas: [o], writeReplicas: [o] })) })
    const placements: Record<string, unknown> = { s: placement(['Pa', 'Pb', 'Pc', 'Pa']) }
    const { routes, fetches, clock } = fixture(['Pa', 'Pb', 'Pc'], placements)
    const id = (p: number): string => Array.from({ length: 100 }, (_, i) => `k${i}`).find(k => partitionOfId(k, 4) === p)!
    expect(routes.forRecord('s', id(1), false)).toEqual([])
    await settle()
    expect(fetches).toEqual(['s'])
    expect(routes.forRecord('s', id(1), false)).toEqual([1])
    expect(routes.forRecord('s', id(2), true)).toEqual([2])
    // A batch over one partition has its owner; over two, none.
    expect(routes.forRecords('s', 2, i => [id(3), id(3)][i], true)).toEqual([0])
    expect(routes.forRecords('s', 2, i => [id(3), id(2)][i], true)).toEqual([])
    expect(routes.forRecords('s', 1, () => 42, true)).toEqual([])
    // A one-partition space: every batch has its owner, no id hashed.
    placements.one = { name: 'one', partitions: 1, placement: [{ partition: 0, owners: ['Pb'], readReplicas: ['Pb'], writeReplicas: ['Pb'] }] }
    routes.forRecords('one', 1, () => 'x', true)
    await settle()
    expect(routes.forRecords('one', 3, () => { throw new Error('hashed an id') }, true)).toEqual([1])
    // The placement moves; the client sees it after the TTL.
    placements.s = placement(['Pc', 'Pc', 'Pc', 'Pc'])
    clock.t += PLACEMENT_TTL_MS + 1
    expect(routes.forRecord('s', id(1), false)).toEqual([1])
    await settle()
    expect(routes.forRecord('s', id(1), false)).toEqual([2])
    // An unknown space, or a malformed description, routes nothing, and is asked again only after the TTL.
    expect(routes.forRecord('gone', 'x', false)).toEqual([])
    await settle()
    expect(routes.forRecord('gone', 'x', false)).toEqual([])
    await settle()
    expect(fetches.filter(f => f === 'gone')).toHaveLength(1)
    clock.t += PLACEMENT_TTL_MS + 1
    routes.forRecord('gone', 'x', false)
    await settle()
    expect(fetches.filter(f => f === 'gone')).toHaveLength(2)
    placements.bad = { partitions: 2, placement: [{ partition: 0 }] }
    routes.forRecord('bad', 'x', false)
    await settle()
    expect(routes.forRecord('bad', 'x', false)).toEqual([])
  })

  it('sends a routed request on to the usual peers when the routed one has not heard of the space or not synced, a write too', async () => {
    /** A peer stand-in answering every request with `status` and `code` (200: {"ok": name}). */
    const fake = async (name: string, status: number, code = ''): Promise<{ url: string, server: Server, hits: () => number }> => {
      let hits = 0
      const server = createServer((req, res) => {
        hits++
        req.resume()
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(status === 200 ? { ok: name } : { error: { code, message: `${name} says ${code}` } }))
      })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, hits: () => hits }
    }
    const current = await fake('current', 200)
    const unknown = await fake('routed', 404, 'UNKNOWN_SPACE')
    const invalid = await fake('routed', 400, 'INVALID_ROWS')
    const t = new PeerTransport([current.url, unknown.url, invalid.url])
    try {
      const write = { method: 'POST' as const, path: '/spaces/s/records', body: '[]', retry: 'write' as const }
      const answer = await t.send({ ...write, prefer: [1] })
      expect(JSON.parse(answer.body.toString())).toEqual({ ok: 'current' })
      expect(unknown.hits()).toBe(1)
      // Not routed there: its answer is the answer.
      await expect(t.send({ ...write, only: 1 })).rejects.toMatchObject({ code: 'UNKNOWN_SPACE', status: 404 })
      // A refusal of the request itself is the same from any peer: thrown, not repeated.
      await expect(t.send({ ...write, prefer: [2] })).rejects.toMatchObject({ code: 'INVALID_ROWS', status: 400 })
      expect(current.hits()).toBe(1)
    } finally {
      t.close()
      for (const f of [current, unknown, invalid]) f.server.close()
    }
  })
})
