import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, TestCluster, type PeerProcess } from '../cluster/index.js'

/**
 * Requests a hostile or unlucky user sends (issue 11): each once lost data or answered wrong. One
 * real peer, driven over HTTP and the CLI as a user would.
 */
describe('hostile input through the HTTP API', () => {
  let cluster: TestCluster
  let a: PeerProcess

  beforeAll(async () => {
    cluster = await TestCluster.create()
    a = await cluster.startPeer('a')
  })
  afterAll(async () => { await cluster?.stopAll() })

  /** A request whose path goes out exactly as written (fetch and curl fold `.` and `..` segments first). */
  const raw = async (method: string, path: string, body?: string): Promise<{ status: number, body: any }> => await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: a.httpPort, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        try { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }) } catch { resolve({ status: res.statusCode ?? 0, body: text }) }
      })
    })
    req.on('error', reject)
    req.end(body)
  })

  it('keeps ids . and .. as record ids: deleting one never drops the space', async () => {
    expect((await a.post('/spaces', { name: 't', schema: [{ name: 'name', type: 'utf8' }], partitions: 4 })).status).toBe(201)
    const put = await a.post('/spaces/t/records?consistency=all', [{ id: '..', name: 'a' }, { id: '.', name: 'dot' }, { id: 'keep', name: 'b' }])
    expect(put.status).toBe(200)

    // By path, percent-encoded and as sent (node:http does not fold it).
    const got = await raw('GET', '/spaces/t/records/%2E%2E')
    expect(got.status).toBe(200)
    expect(got.body.record).toEqual({ id: '..', name: 'a' })
    expect((await raw('GET', '/spaces/t/records/.')).body.record).toEqual({ id: '.', name: 'dot' })
    // By ?id=, the form WHATWG-URL clients (fetch, browsers) can send; the CLI uses it.
    const cli = await runCli(['get', 't', '..', '--peer', a.url])
    expect(cli.code, cli.stderr).toBe(0)
    expect(JSON.parse(cli.stdout).record).toEqual({ id: '..', name: 'a' })

    const del = await raw('DELETE', '/spaces/t/records/%2E%2E?consistency=all')
    expect(del.status).toBe(200)
    expect(del.body).toMatchObject({ deleted: true })
    expect(del.body.dropped).toBeUndefined()
    const delDot = await fetch(`${a.url}/spaces/t/records?id=.&consistency=all`, { method: 'DELETE' })
    expect(delDot.status).toBe(200)

    // What fetch makes of `records/..` is `DELETE /spaces/t/`: no route, and above all not the drop.
    const folded = await fetch(`${a.url}/spaces/t/records/${encodeURIComponent('..')}`, { method: 'DELETE' })
    expect(folded.status).toBe(404)
    expect((await raw('DELETE', '/spaces/t/')).status).toBe(404)
    expect((await raw('DELETE', '/spaces/t/records/..')).status).toBe(200) // literal, as sent: the (already deleted) record

    expect((await fetch(`${a.url}/spaces/t`)).status).toBe(200)
    expect((await fetch(`${a.url}/spaces/t/records/keep`)).status).toBe(200)
    expect((await fetch(`${a.url}/spaces/t/records?id=..`)).status).toBe(404)
    expect((await fetch(`${a.url}/spaces/t/records?id=.`)).status).toBe(404)
  })

  it('answers 400, not 500, for a malformed percent-escape in a path', async () => {
    for (const path of ['/spaces/t/records/%zz', '/spaces/t/records/%E0%A4', '/spaces/%/records/x', '/spaces/t/records/%ED%A0%80']) {
      const res = await raw('GET', path)
      expect(res.status, path).toBe(400)
      expect(res.body.error.code).toBe('BAD_PATH')
    }
    expect((await fetch(`${a.url}/spaces/t/records`)).status).toBe(400) // GET by ?id= without an id
  })

  it('refuses text with a lone surrogate, naming the row and field, instead of rewriting it', async () => {
    expect((await a.post('/spaces', { name: 'u', schema: [{ name: 'name', type: 'utf8' }, { name: 'tags', type: 'list<utf8>' }], partitions: 2 })).status).toBe(201)
    // JSON.stringify would escape a lone surrogate as \ud800 too; written out here so the bytes are plain.
    const lone = async (body: string): Promise<{ status: number, body: any }> => await raw('POST', '/spaces/u/records?consistency=all', body)
    const ids = await lone('[{"id":"ok","name":"x"},{"id":"\\ud800","name":"x"},{"id":"\\udc00"}]')
    expect(ids.status).toBe(400)
    expect(ids.body.written).toBe(0)
    expect(ids.body.errors[0]).toMatchObject({ row: 1, field: 'id', message: expect.stringContaining('lone UTF-16 surrogate') })
    const column = await lone('[{"id":"v1","name":"a\\udc00b"}]')
    expect(column.status).toBe(400)
    expect(column.body.errors[0]).toMatchObject({ row: 0, field: 'name' })
    const list = await lone('[{"id":"v2","tags":["fine","\\ud83d"]}]')
    expect(list.status).toBe(400)
    expect(list.body.errors[0]).toMatchObject({ row: 0, field: 'tags', message: expect.stringContaining('element 1') })
    expect((await fetch(`${a.url}/spaces/u/records/ok`)).status).toBe(404)

    // A well-formed pair (an emoji) is text like any other, end to end.
    expect((await lone('[{"id":"\\ud83d\\ude00","name":"\\ud83d\\ude00","tags":["\\u00e9"]}]')).status).toBe(200)
    const got = await fetch(`${a.url}/spaces/u/records/${encodeURIComponent('\u{1F600}')}`).then(async r => await r.json()) as { record: unknown }
    expect(got.record).toEqual({ id: '\u{1F600}', name: '\u{1F600}', tags: ['é'] })
  })

  it('refuses a column named __proto__, whose values no answer could carry', async () => {
    const res = await a.post('/spaces', { name: 'p', schema: [{ name: 'id', type: 'utf8' }, { name: '__proto__', type: 'utf8' }] })
    expect(res.status).toBe(400)
    expect((res.body as any).error.message).toContain('schema[1].name')
    expect((await fetch(`${a.url}/spaces/p`)).status).toBe(404)
    expect((await a.post('/spaces', { name: 'p', schema: [{ name: 'constructor', type: 'utf8' }, { name: 'toString', type: 'utf8' }] })).status).toBe(201)
    expect((await a.post('/spaces/p/columns', { name: '__proto__', type: 'utf8', nullable: true })).status).toBe(400)
    expect((await a.post('/spaces/p/records?consistency=all', [{ id: 'k', constructor: 'c', toString: 's' }])).status).toBe(200)
    const got = await fetch(`${a.url}/spaces/p/records/k`).then(async r => await r.json()) as { record: unknown }
    expect(got.record).toEqual({ id: 'k', constructor: 'c', toString: 's' })
    const q = await a.post('/query', { sql: 'SELECT id, constructor, toString FROM p' })
    expect((q.body as any).rows).toEqual([{ id: 'k', constructor: 'c', toString: 's' }])
  })
})
