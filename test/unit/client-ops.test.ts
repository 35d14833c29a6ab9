/**
 * The client methods the CLI needs beyond the data API (streamed queries, raw writes, operations),
 * against a node:http server with canned answers, and the CLI's one mapping of client errors.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ShoalClient, ShoalError, ShoalUnavailableError } from '../../src/client/index.js'
import { peerUrls, toCliError } from '../../src/cli/client.js'
import { CliError } from '../../src/cli/errors.js'

interface Seen { method: string, url: string, headers: IncomingMessage['headers'], body: string }
type Reply = (req: Seen, res: ServerResponse) => void

const servers: Server[] = []
async function fakePeer (reply: () => Reply, seen: Seen[]): Promise<string> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const s = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      seen.push(s)
      reply()(s, res)
    })
  })
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

function json (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

async function collect (body: AsyncIterable<Uint8Array>): Promise<string> {
  let out = ''
  for await (const chunk of body) out += Buffer.from(chunk).toString('utf8')
  return out
}

/** A port nothing listens on: a server started and closed. */
async function deadUrl (): Promise<string> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return `http://127.0.0.1:${port}`
}

describe('ShoalClient beyond the data API', () => {
  let reply: Reply = (_req, res) => { json(res, 500, { error: { code: 'INTERNAL', message: 'no reply set' } }) }
  const seen: Seen[] = []
  let url: string
  let client: ShoalClient
  beforeAll(async () => { url = await fakePeer(() => reply, seen); client = new ShoalClient(url, { token: 't0ken' }) })
  afterAll(async () => {
    client.close()
    await Promise.all(servers.map(async s => { await new Promise(resolve => s.close(resolve)) }))
  })
  beforeEach(() => { seen.length = 0 })

  it('queryStream() hands the rows through unread and the coverage from the headers', async () => {
    const coverage = { total: 4, answered: 3, missing: [{ space: 's', partition: 2, reason: 'down' }] }
    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-shoal-coverage': JSON.stringify(coverage), 'x-shoal-confidence': '0.75', 'x-shoal-took-ms': '4.5' })
      res.write('{"n":1}\n')
      setTimeout(() => res.end('{"n":2}\n'), 5)
    }
    const answer = await client.queryStream('SELECT n FROM s', { format: 'ndjson', allowPartial: true })
    expect(seen[0]!.headers.accept).toBe('application/x-ndjson')
    expect(seen[0]!.headers.authorization).toBe('Bearer t0ken')
    expect(JSON.parse(seen[0]!.body)).toEqual({ sql: 'SELECT n FROM s', allowPartial: true })
    expect(answer).toMatchObject({ contentType: 'application/x-ndjson', coverage, confidence: 0.75, tookMs: 4.5 })
    expect(await collect(answer.body)).toBe('{"n":1}\n{"n":2}\n')
  })

  it('queryStream() refuses an answer of another type, and a body cut short throws INCOMPLETE_ANSWER', async () => {
    reply = (_req, res) => { json(res, 200, { rows: [] }) }
    const wrong = await client.queryStream('SELECT 1', { format: 'arrow' }).catch((e: unknown) => e)
    expect(wrong).toMatchObject({ code: 'BAD_ANSWER', message: expect.stringContaining('instead of application/vnd.apache.arrow.stream') })

    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write('{"n":1}\n')
      setTimeout(() => res.destroy(), 5)
    }
    const cut = await client.queryStream('SELECT 1', { format: 'ndjson' })
    await expect(collect(cut.body)).rejects.toMatchObject({ code: 'INCOMPLETE_ANSWER' })
  })

  it('putText() sends a JSON array as JSON and anything else as NDJSON, as given', async () => {
    reply = (_req, res) => { json(res, 200, { written: 2 }) }
    expect(await client.putText('s', '[{"id":"a"},{"id":"b"}]', { consistency: 'all' })).toEqual({ written: 2 })
    await client.putText('s', '{"id":"a"}\n{"id":"b"}')
    expect(seen.map(s => [s.url, s.headers['content-type']])).toEqual([
      ['/spaces/s/records?consistency=all', 'application/json'],
      ['/spaces/s/records', 'application/x-ndjson']
    ])
  })

  it('decommission() yields each event as it arrives, and is never sent to another peer', async () => {
    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write('{"event":"started","peer":"p","name":"a","partitions":0,"timeoutMs":5}\n')
      setTimeout(() => res.end('{"event":"leaving","complete":true}\n'), 5)
    }
    const events: string[] = []
    for await (const ev of client.decommission({ timeoutMs: 5 })) events.push(ev.event)
    expect(events).toEqual(['started', 'leaving'])
    expect(JSON.parse(seen[0]!.body)).toEqual({ timeoutMs: 5 })

    const pinned = new ShoalClient([await deadUrl(), url])
    try {
      const err = await (async () => { for await (const _ of pinned.decommission()) { /* none */ } })().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ShoalUnavailableError)
      expect(seen).toHaveLength(1) // the live peer was not asked
    } finally {
      pinned.close()
    }
  })

  it('backupPartition() stops when its signal aborts', async () => {
    reply = (_req, res) => { res.writeHead(200, { 'content-type': 'application/x-ndjson' }); res.write('{"id":"a"}\n') }
    const stop = new AbortController()
    const body = await client.backupPartition('s', 3, { signal: stop.signal })
    expect(seen[0]!.url).toBe('/backup/spaces/s/partitions/3')
    setTimeout(() => { stop.abort() }, 10)
    await expect(collect(body)).rejects.toMatchObject({ code: 'ABORTED' })
  })

  it('status(), repair() and removePeer() send what the server reads', async () => {
    reply = (_req, res) => { json(res, 200, { ok: true }) }
    await client.status({ timeoutMs: 250 })
    await client.repair({ space: 's' })
    await client.removePeer('12D3', { confirm: true })
    expect(seen.map(s => `${s.method} ${s.url} ${s.body}`)).toEqual([
      'GET /cluster/status?timeoutMs=250 ',
      'POST /cluster/repair {"space":"s"}',
      'POST /cluster/remove {"peerId":"12D3","confirm":true}'
    ])
  })
})

describe('the CLI over the client', () => {
  it('takes a comma-separated --peer, and calls anything else not a URL a usage error', () => {
    expect(peerUrls('http://a:1, https://b:2')).toEqual(['http://a:1', 'https://b:2'])
    for (const bad of ['nope', 'ftp://a:1', ' , ']) {
      const err = (() => { try { return peerUrls(bad) } catch (e) { return e } })()
      expect(err).toBeInstanceOf(CliError)
      expect((err as CliError).exitCode).toBe(2)
    }
  })

  it('maps each kind of client error to one CliError line, row errors and details below it', () => {
    const rows = new ShoalError('INVALID_ROWS', 'x', { status: 400, rowErrors: [{ row: 1, field: 'age', message: 'expected int32' }] })
    expect((toCliError(rows, { rowLabel: n => `line ${n + 1}` }) as CliError).message).toBe('peer answered 400 INVALID_ROWS: invalid records, nothing written\n  line 2, field age: expected int32')
    const invalid = new ShoalError('INVALID_QUERY', '2 problems', { status: 400, details: [{ code: 'unknown_column', message: "unknown column 'x'", at: 'line 1, column 8' }] })
    expect((toCliError(invalid) as CliError).message).toBe("peer answered 400 INVALID_QUERY: 2 problems\n  unknown_column: unknown column 'x' (at line 1, column 8)")
    const down = new ShoalUnavailableError([{ peer: 'http://a:1', reason: 'ECONNREFUSED' }, { peer: 'http://b:2', reason: 'TIMEOUT' }], 'none')
    expect((toCliError(down) as CliError).message).toBe('cannot reach any peer: http://a:1 ECONNREFUSED, http://b:2 TIMEOUT')
    expect((toCliError(new ShoalError('BAD_ARGUMENT', 'a record id must not be empty')) as CliError).exitCode).toBe(2)
    const other = new Error('not the client')
    expect(toCliError(other)).toBe(other)
  })
})
