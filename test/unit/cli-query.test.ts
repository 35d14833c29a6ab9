import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Readable, Writable } from 'node:stream'
import { Command } from 'commander'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { CliError } from '../../src/cli/errors.js'
import { peerOption, peerUrl } from '../../src/cli/peer-option.js'
import { coverageWarning, formatCsv, formatFloat, formatResultTable, formatValue, registerQueryCommands, runExplain, runQuery, type CliIo } from '../../src/cli/query.js'

/** One request as the fake peer saw it. */
interface Seen { method: string, url: string, headers: IncomingMessage['headers'], body: unknown }
type Reply = (req: Seen, res: ServerResponse) => void

/** A node:http server playing the peer's side of the query contract with canned answers. */
class FakePeer {
  seen: Seen[] = []
  reply: Reply = (_req, res) => json(res, 500, { error: { code: 'INTERNAL', message: 'no reply set' } })
  private server!: Server
  url = ''

  async start (): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const seen: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: text === '' ? undefined : JSON.parse(text) }
        this.seen.push(seen)
        this.reply(seen, res)
      })
    })
    await new Promise<void>(resolve => this.server.listen(0, '127.0.0.1', resolve))
    const addr = this.server.address()
    this.url = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`
  }

  async stop (): Promise<void> {
    await new Promise(resolve => this.server.close(resolve))
  }

  get last (): Seen { return this.seen[this.seen.length - 1]! }
}

function json (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** Captured stdout/stderr and a given stdin, in place of the process's. */
function captureIo (opts: { stdin?: string, tty?: boolean } = {}): CliIo & { out: () => string, outBytes: () => Buffer, err: () => string } {
  const outChunks: Buffer[] = []
  const errChunks: Buffer[] = []
  const sink = (into: Buffer[]): Writable => new Writable({
    write (chunk: Buffer | string, _enc, cb) { into.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)); cb() }
  })
  const stdout = sink(outChunks) as Writable & { isTTY?: boolean }
  if (opts.tty === true) stdout.isTTY = true
  return {
    stdout,
    stderr: sink(errChunks),
    stdin: Readable.from(opts.stdin !== undefined ? [Buffer.from(opts.stdin)] : []),
    out: () => Buffer.concat(outChunks).toString('utf8'),
    outBytes: () => Buffer.concat(outChunks),
    err: () => Buffer.concat(errChunks).toString('utf8')
  }
}

/** Runs `shoal ARGS` through the same commander registration main.ts uses, in-process. */
async function cli (args: string[], io: CliIo): Promise<void> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} })
  registerQueryCommands(program, peerOption, () => io)
  await program.parseAsync(args, { from: 'user' })
}

const ANSWER = {
  columns: [
    { name: 'id', type: 'utf8' },
    { name: 'amount', type: 'float64' },
    { name: 'qty', type: 'int64' },
    { name: 'paid', type: 'bool' },
    { name: 'at', type: 'timestamp' },
    { name: 'day', type: 'date' },
    { name: 'tags', type: 'list<utf8>' },
    { name: 'emb', type: 'vector<3>' }
  ],
  rows: [
    { id: 'a', amount: 0.1 + 0.2, qty: 3, paid: true, at: Date.UTC(2024, 0, 2, 3, 4, 5), day: 19724, tags: ['x', 'y'], emb: [0.5, 0.25, 1] },
    { id: 'longer-id', amount: 1234567.891, qty: '9007199254740993', paid: false, at: null, day: null, tags: null, emb: null },
    { id: 'c', amount: null, qty: -42, paid: null, at: 0, day: 0, tags: [], emb: [1e-9, 0, 2] }
  ],
  coverage: { total: 16, answered: 16, missing: [] },
  confidence: 1,
  tookMs: 23
}

describe('shoal query and explain against a fake peer', () => {
  const peer = new FakePeer()
  beforeAll(async () => { await peer.start() })
  afterAll(async () => { await peer.stop() })
  beforeEach(() => { peer.seen = [] })

  it('prints an aligned table with types formatted, NULLs shown, and a footer', async () => {
    peer.reply = (_req, res) => json(res, 200, ANSWER)
    const io = captureIo()
    await cli(['query', 'SELECT * FROM orders', '--peer', peer.url], io)

    expect(peer.last.method).toBe('POST')
    expect(peer.last.url).toBe('/query')
    expect(peer.last.headers['content-type']).toBe('application/json')
    expect(peer.last.body).toEqual({ sql: 'SELECT * FROM orders' }) // no timeoutMs / allowPartial unless given

    // Text left-aligned, numbers (and their headers) right-aligned, every column as wide as its widest cell.
    expect(io.out()).toBe([
      'id              amount               qty  paid   at                        day         tags        emb',
      '---------  -----------  ----------------  -----  ------------------------  ----------  ----------  --------------',
      'a                  0.3                 3  true   2024-01-02T03:04:05.000Z  2024-01-02  ["x", "y"]  [0.5, 0.25, 1]',
      'longer-id  1234567.891  9007199254740993  false  NULL                      NULL        NULL        NULL',
      'c                 NULL               -42  NULL   1970-01-01T00:00:00.000Z  1970-01-01  []          [1e-9, 0, 2]',
      '3 rows · 16/16 partitions · confidence 1.00 · 23 ms',
      ''
    ].join('\n'))
    expect(io.err()).toBe('')
  })

  it('prints a completion\'s filled record under its neighbours; refuses CSV for it', async () => {
    peer.reply = (_req, res) => json(res, 200, {
      columns: [{ name: 'id', type: 'utf8' }, { name: 'city', type: 'utf8' }, { name: 'age', type: 'int32' }, { name: 'job', type: 'utf8' }, { name: '_score', type: 'float64' }],
      rows: [{ id: 'p1', city: 'Paris', age: 30, job: 'baker', _score: 0.95 }, { id: 'p2', city: 'Paris', age: 40, job: 'cook', _score: 0.5 }],
      completion: { record: { city: 'Paris', age: 31, job: 'baker' }, confidence: { job: 0.655 }, support: { job: 1 } },
      coverage: { total: 4, answered: 4, missing: [] },
      confidence: 1,
      tookMs: 3
    })
    const io = captureIo()
    await cli(['query', "SELECT * FROM complete('people', '{\"city\": \"Paris\", \"age\": 31}', 2)", '--peer', peer.url], io)
    const out = io.out()
    expect(out).toContain('completed record:')
    const lines = out.split('\n')
    const at = lines.indexOf('completed record:')
    expect(lines.slice(at + 1, at + 6).map(l => l.split(/\s+/).filter(x => x !== '').join(' '))).toEqual([
      'column value confidence support',
      '------ ----- ---------- -------',
      'city Paris given',
      'age 31 given',
      'job baker 0.655 1'
    ])
    expect(lines.at(-2)).toBe('2 rows · 4/4 partitions · confidence 1.00 · 3 ms')
    const csv = captureIo()
    await expect(cli(['query', 'SELECT 1', '--peer', peer.url, '--format', 'csv'], csv)).rejects.toThrow(/completion.*no CSV form/)
  })

  it('truncates long cells with … and escapes newlines', async () => {
    peer.reply = (_req, res) => json(res, 200, {
      columns: [{ name: 'note', type: 'utf8' }],
      rows: [{ note: 'x'.repeat(100) }, { note: 'two\nlines' }],
      coverage: { total: 1, answered: 1, missing: [] },
      confidence: 1,
      tookMs: 1
    })
    const io = captureIo()
    await cli(['query', 'SELECT note FROM t', '--peer', peer.url, '--max-cell-width', '20'], io)
    const lines = io.out().split('\n')
    expect(lines[2]).toBe('x'.repeat(19) + '…')
    expect(lines[3]).toBe('two\\nlines')
    expect(lines[4]).toBe('2 rows · 1/1 partitions · confidence 1.00 · 1 ms')
  })

  it('sends --timeout and --allow-partial / --no-allow-partial in the body', async () => {
    peer.reply = (_req, res) => json(res, 200, { ...ANSWER, rows: [] })
    await cli(['query', 'SELECT 1', '--peer', peer.url, '--timeout', '2500', '--allow-partial'], captureIo())
    expect(peer.last.body).toEqual({ sql: 'SELECT 1', timeoutMs: 2500, allowPartial: true })
    await cli(['query', 'SELECT 1', '--peer', peer.url, '--no-allow-partial'], captureIo())
    expect(peer.last.body).toEqual({ sql: 'SELECT 1', allowPartial: false })
  })

  it('rejects a bad --timeout and --format as usage errors before asking the peer', async () => {
    const bad = await cli(['query', 'SELECT 1', '--peer', peer.url, '--timeout', 'soon'], captureIo()).catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(CliError)
    expect((bad as CliError).exitCode).toBe(2)
    const fmt = await cli(['query', 'SELECT 1', '--peer', peer.url, '--format', 'xml'], captureIo()).catch((e: unknown) => e)
    expect((fmt as { code?: string }).code).toBe('commander.invalidArgument')
    expect(peer.seen).toHaveLength(0)
  })

  it('reads the SQL from stdin for -', async () => {
    peer.reply = (_req, res) => json(res, 200, { ...ANSWER, rows: [] })
    const io = captureIo({ stdin: '  SELECT id\nFROM orders\n' })
    await cli(['query', '-', '--peer', peer.url, '--format', 'json'], io)
    expect(peer.last.body).toEqual({ sql: 'SELECT id\nFROM orders' })

    const empty = await runQuery('-', { peer: peer.url, format: 'table' }, captureIo({ stdin: '\n' })).catch((e: unknown) => e)
    expect((empty as CliError).message).toBe('no SQL on stdin')
    expect((empty as CliError).exitCode).toBe(2)
  })

  it('--format json prints the answer as the peer sent it, pretty printed', async () => {
    peer.reply = (_req, res) => json(res, 200, ANSWER)
    const io = captureIo()
    await cli(['query', 'SELECT * FROM orders', '--format', 'json', '--peer', peer.url], io)
    expect(io.out()).toBe(JSON.stringify(ANSWER, null, 2) + '\n')
    expect(JSON.parse(io.out()).rows[1].qty).toBe('9007199254740993')
    expect(io.err()).toBe('')
  })

  it('--format arrow asks for an Arrow stream and writes its bytes unchanged', async () => {
    const bytes = Buffer.alloc(70_000)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff // every byte value, incl. 0x00 and invalid UTF-8
    peer.reply = (_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/vnd.apache.arrow.stream',
        'x-shoal-coverage': JSON.stringify({ total: 4, answered: 4, missing: [] }),
        'x-shoal-confidence': '1',
        'x-shoal-took-ms': '5'
      })
      res.write(bytes.subarray(0, 1000))
      setTimeout(() => res.end(bytes.subarray(1000)), 10)
    }
    const io = captureIo()
    await cli(['query', 'SELECT * FROM orders', '--format', 'arrow', '--peer', peer.url], io)
    expect(peer.last.headers.accept).toBe('application/vnd.apache.arrow.stream')
    expect(peer.last.body).toEqual({ sql: 'SELECT * FROM orders' })
    expect(io.outBytes().equals(bytes)).toBe(true)
    expect(io.err()).toBe('')
  })

  it('--format arrow refuses a terminal unless --force', async () => {
    peer.reply = (_req, res) => { res.writeHead(200, { 'content-type': 'application/vnd.apache.arrow.stream' }); res.end(Buffer.from([1, 2, 3])) }
    const err = await cli(['query', 'SELECT 1', '--format', 'arrow', '--peer', peer.url], captureIo({ tty: true })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CliError)
    expect((err as CliError).exitCode).toBe(2)
    expect((err as CliError).message).toMatch(/terminal.*--force/)
    expect(peer.seen).toHaveLength(0)
    const io = captureIo({ tty: true })
    await cli(['query', 'SELECT 1', '--format', 'arrow', '--force', '--peer', peer.url], io)
    expect([...io.outBytes()]).toEqual([1, 2, 3])
  })

  it('--format arrow fails clearly when the peer answers JSON instead', async () => {
    peer.reply = (_req, res) => json(res, 200, ANSWER)
    const io = captureIo()
    const err = await runQuery('SELECT 1', { peer: peer.url, format: 'arrow' }, io).catch((e: unknown) => e)
    expect((err as CliError).message).toContain('instead of application/vnd.apache.arrow.stream')
    expect(io.outBytes()).toHaveLength(0)
  })

  describe('a partial answer', () => {
    const coverage = { total: 16, answered: 14, missing: [{ space: 'orders', partition: 3, reason: 'no replica reachable' }, { space: 'orders', partition: 7, reason: 'timeout' }] }
    const partial = { ...ANSWER, rows: ANSWER.rows.slice(0, 1), coverage, confidence: 0.875 }

    it('table: the footer shows the coverage and stderr names the missing partitions', async () => {
      peer.reply = (_req, res) => json(res, 200, partial)
      const io = captureIo()
      await cli(['query', 'SELECT * FROM orders', '--allow-partial', '--peer', peer.url], io)
      expect(io.out().trimEnd().split('\n').at(-1)).toBe('1 row · 14/16 partitions · confidence 0.88 · 23 ms')
      expect(io.err()).toBe(
        'shoal: warning: partial answer: 14 of 16 partitions answered (confidence 0.88); missing:\n' +
        '  orders partition 3: no replica reachable\n' +
        '  orders partition 7: timeout\n')
    })

    it('json: the answer on stdout unchanged, the warning on stderr, no failure', async () => {
      peer.reply = (_req, res) => json(res, 200, partial)
      const io = captureIo()
      await runQuery('SELECT * FROM orders', { peer: peer.url, format: 'json' }, io)
      expect(JSON.parse(io.out())).toEqual(partial)
      expect(io.err()).toContain('14 of 16 partitions answered')
      expect(io.err()).toContain('orders partition 7: timeout')
    })

    it('arrow: the warning comes from the x-shoal-coverage header', async () => {
      peer.reply = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/vnd.apache.arrow.stream', 'x-shoal-coverage': JSON.stringify(coverage), 'x-shoal-confidence': '0.875', 'x-shoal-took-ms': '9' })
        res.end(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]))
      }
      const io = captureIo()
      await runQuery('SELECT * FROM orders', { peer: peer.url, format: 'arrow' }, io)
      expect([...io.outBytes()]).toEqual([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
      expect(io.err()).toContain('partial answer: 14 of 16 partitions answered (confidence 0.88); missing:\n  orders partition 3: no replica reachable\n')
    })

    it('lists at most 20 missing partitions', () => {
      const many = { total: 64, answered: 0, missing: Array.from({ length: 64 }, (_, i) => ({ space: 's', partition: i, reason: 'down' })) }
      const text = coverageWarning(many)!
      expect(text.split('\n').filter(l => l.startsWith('  s partition'))).toHaveLength(20)
      expect(text).toContain('  … and 44 more\n')
      expect(coverageWarning({ total: 4, answered: 4, missing: [] })).toBeUndefined()
    })
  })

  it('prints each validation error on its own line and fails with exit code 1', async () => {
    peer.reply = (_req, res) => json(res, 400, {
      error: {
        code: 'INVALID_QUERY',
        message: '2 problems with the query',
        details: [
          { code: 'unknown_column', message: "unknown column 'amout' at line 1, column 8", column: 'amout', at: 'line 1, column 8' },
          { code: 'type_mismatch', message: 'cannot compare utf8 with int64', at: 'line 1, column 30' }
        ]
      }
    })
    const err = await cli(['query', 'SELECT amout FROM orders WHERE id > 3', '--peer', peer.url], captureIo()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CliError)
    expect((err as CliError).exitCode).toBe(1)
    expect((err as CliError).message.split('\n')).toEqual([
      'peer answered 400 INVALID_QUERY: 2 problems with the query',
      "  unknown_column: unknown column 'amout' at line 1, column 8",
      '  type_mismatch: cannot compare utf8 with int64 (at line 1, column 30)'
    ])
  })

  it('formats CSV as RFC 4180: quoted where needed, quotes doubled, NULL empty, lists as JSON', () => {
    expect(formatCsv(['id', 'note', 'n', 'tags'], [
      { id: 'a', note: 'plain', n: 1, tags: ['x', 'y'] },
      { id: 'b', note: 'with, comma and "quotes"\nand a line', n: null, tags: null }
    ])).toBe('id,note,n,tags\r\na,plain,1,"[""x"",""y""]"\r\nb,"with, comma and ""quotes""\nand a line",,\r\n')
  })

  it('takes --peer as a URL or host:port, and from SHOAL_PEER when the flag is absent', async () => {
    expect(peerUrl('127.0.0.1:7947')).toBe('http://127.0.0.1:7947')
    expect(peerUrl('[::1]:7947')).toBe('http://[::1]:7947')
    expect(peerUrl(' https://db.example:443 ')).toBe('https://db.example:443')
    peer.reply = (_req, res) => json(res, 200, ANSWER)
    const hostPort = peer.url.replace(/^http:\/\//, '')
    await cli(['query', 'SELECT 1', '--peer', hostPort], captureIo())
    expect(peer.last.body).toEqual({ sql: 'SELECT 1' })
    peer.seen = []
    process.env.SHOAL_PEER = hostPort
    try {
      await cli(['query', 'SELECT 2'], captureIo())
    } finally {
      delete process.env.SHOAL_PEER
    }
    expect(peer.last.body).toEqual({ sql: 'SELECT 2' })
  })

  it('says a single SQL error once: no detail line repeating it, no code printed twice', async () => {
    const message = 'unsupported: JOIN (line 1, column 20)'
    peer.reply = (_req, res) => json(res, 400, { error: { code: 'INVALID_QUERY', message, details: [{ code: 'unsupported', message, at: 'line 1, column 20' }] } })
    const err = await cli(['query', 'SELECT id FROM a JOIN b ON a.id = b.id', '--peer', peer.url], captureIo()).catch((e: unknown) => e)
    expect((err as CliError).message).toBe(`peer answered 400 INVALID_QUERY: ${message}`)
    peer.reply = (_req, res) => json(res, 400, { error: { code: 'INVALID_QUERY', message: '2 problems', details: [{ code: 'unsupported', message: 'unsupported: WITH' }, { code: 'unsupported', message: 'unsupported: WINDOW' }] } })
    const two = await cli(['query', 'WITH x AS (SELECT 1) SELECT 1', '--peer', peer.url], captureIo()).catch((e: unknown) => e)
    expect((two as CliError).message.split('\n')).toEqual(['peer answered 400 INVALID_QUERY: 2 problems', '  unsupported: WITH', '  unsupported: WINDOW'])
  })

  it('reports a refusal of a partial answer (503) and an unreachable peer as failures', async () => {
    peer.reply = (_req, res) => json(res, 503, { error: { code: 'PARTIAL', message: '2 of 16 partitions unavailable' } })
    const err = await runQuery('SELECT 1', { peer: peer.url, format: 'table', allowPartial: false }, captureIo()).catch((e: unknown) => e)
    expect((err as CliError).message).toBe('peer answered 503 PARTIAL: 2 of 16 partitions unavailable')
    expect((err as CliError).exitCode).toBe(1)
    const arrowErr = await runQuery('SELECT 1', { peer: peer.url, format: 'arrow' }, captureIo()).catch((e: unknown) => e)
    expect((arrowErr as CliError).message).toBe('peer answered 503 PARTIAL: 2 of 16 partitions unavailable')

    const down = await runQuery('SELECT 1', { peer: 'http://127.0.0.1:1', format: 'table' }, captureIo()).catch((e: unknown) => e)
    expect((down as CliError).message).toMatch(/^cannot reach peer at http:\/\/127\.0\.0\.1:1/)
    const notUrl = await runQuery('SELECT 1', { peer: 'nope', format: 'json' }, captureIo()).catch((e: unknown) => e)
    expect((notUrl as CliError).exitCode).toBe(2)
  })

  it('explain prints the text as is', async () => {
    const text = 'Scan orders (16 partitions)\n  Filter amount > 10\n  Project id, amount'
    peer.reply = (_req, res) => json(res, 200, { text, plan: { op: 'scan' } })
    const io = captureIo()
    await cli(['explain', 'SELECT id, amount FROM orders WHERE amount > 10', '--peer', peer.url], io)
    expect(peer.last.url).toBe('/query/explain')
    expect(peer.last.body).toEqual({ sql: 'SELECT id, amount FROM orders WHERE amount > 10' })
    expect(io.out()).toBe(text + '\n')
  })

  it('explain --analyze adds a per-peer table and the total', async () => {
    const answer = {
      text: 'Scan orders (16 partitions)\n',
      plan: {},
      analyze: {
        peers: [
          { peer: '12D3KooWAAA', name: 'a', partitions: 6, rows: 1200, bytes: 52_000, ms: 12.4, roundTripMs: 14.2, mergeMs: 0.4 },
          { peer: '12D3KooWBBBB', name: null, partitions: 10, rows: 34, bytes: 900, ms: 3 }
        ],
        tookMs: 17,
        stages: { parseMs: 0.3, planMs: 0.2, scatterMs: 15.1, mergeMs: 0.5, finishMs: 1.2, gcMs: 0 }
      }
    }
    peer.reply = (_req, res) => json(res, 200, answer)
    const io = captureIo()
    await cli(['explain', '--analyze', 'SELECT * FROM orders', '--peer', peer.url], io)
    expect(peer.last.body).toEqual({ sql: 'SELECT * FROM orders', analyze: true })
    expect(io.out()).toBe([
      'Scan orders (16 partitions)',
      '',
      'PEER          PARTITIONS  ROWS   BYTES  MS  ROUND TRIP MS  MERGE MS',
      '------------  ----------  ----  ------  --  -------------  --------',
      'a                      6  1200  51 KiB  12             14       0.4',
      '12D3KooWBBBB          10    34   900 B   3              0         0',
      'stages: parse 0.3 · plan 0.2 · scatter 15 (merging 0.5) · finish 1.2 · gc 0 ms',
      'total: 2 peers · 16 partitions · 1234 rows · 52 KiB · 17 ms',
      ''
    ].join('\n'))

    const raw = captureIo()
    await runExplain('SELECT * FROM orders', { peer: peer.url, analyze: true, json: true }, raw)
    expect(JSON.parse(raw.out())).toEqual(answer)
  })

  it('explain reads SQL from stdin and reports errors like query', async () => {
    peer.reply = (_req, res) => json(res, 400, { error: { code: 'INVALID_QUERY', message: 'bad', details: [{ code: 'unknown_space', message: "unknown space 'nope'" }] } })
    const err = await cli(['explain', '-', '--peer', peer.url], captureIo({ stdin: 'SELECT * FROM nope' })).catch((e: unknown) => e)
    expect(peer.last.body).toEqual({ sql: 'SELECT * FROM nope' })
    expect((err as CliError).message).toBe("peer answered 400 INVALID_QUERY: bad\n  unknown_space: unknown space 'nope'")
  })
})

describe('cell formatting', () => {
  it('formats floats without binary noise', () => {
    expect(formatFloat(0.1 + 0.2)).toBe('0.3')
    expect(formatFloat(1 / 3)).toBe('0.333333')
    expect(formatFloat(2)).toBe('2')
    expect(formatFloat(-1234.5)).toBe('-1234.5')
    expect(formatFloat(1e20)).toBe('1e+20')
    expect(formatFloat(1.5e-9)).toBe('1.5e-9')
    expect(formatFloat(-1e-7 / 3)).toBe('-3.333333e-8')
    expect(formatFloat(Number.NaN)).toBe('NaN')
    expect(formatFloat(-0)).toBe('0')
  })

  it('formats each Arrow type', () => {
    expect(formatValue(null, 'int64')).toBe('NULL')
    expect(formatValue(undefined, 'utf8')).toBe('NULL')
    expect(formatValue('-9223372036854775808', 'int64')).toBe('-9223372036854775808')
    expect(formatValue(7, 'int32')).toBe('7')
    expect(formatValue(2.5, 'float32')).toBe('2.5')
    expect(formatValue(false, 'bool')).toBe('false')
    expect(formatValue(Date.UTC(2000, 1, 29, 12), 'timestamp')).toBe('2000-02-29T12:00:00.000Z')
    expect(formatValue(-1, 'date')).toBe('1969-12-31')
    expect(formatValue([1, 2], 'list<int64>')).toBe('[1, 2]')
    expect(formatValue([[1], null], 'list<list<int32>>')).toBe('[[1], NULL]')
    expect(formatValue([0.1 + 0.2], 'vector<1>')).toBe('[0.3]')
    expect(formatValue('tab\there', 'utf8')).toBe('tab\\there')
  })

  it('lays out a table with a rule and numbers to the right', () => {
    expect(formatResultTable([{ name: 'name', type: 'utf8' }, { name: 'n', type: 'int64' }], [{ name: 'a', n: 5 }, { name: 'bcdef', n: 1234 }])).toBe(
      'name      n\n' +
      '-----  ----\n' +
      'a         5\n' +
      'bcdef  1234\n')
  })
})
