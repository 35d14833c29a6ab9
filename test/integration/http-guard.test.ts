/**
 * The guarded HTTP API (issue 16, item 4), on real peer processes: bearer tokens from a file
 * (a wrong or missing token is 401, a read-only one may read and query but a write is 403), the
 * CLI and ShoalClient passing a token, HTTPS (plain HTTP on the TLS port gets no answer), and a
 * peer refusing to listen beyond loopback without tokens unless --http-insecure.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ShoalClient, ShoalError } from '../../src/client/index.js'
import { TestCluster, freePort, runCli, waitFor, type PeerProcess } from '../cluster/index.js'

const RW = 'rw-0123456789abcdef-token'
const RO = 'ro-0123456789abcdef-token'

async function call (url: string, init: { method?: string, token?: string, body?: unknown } = {}): Promise<{ status: number, body: { error?: { code: string, message: string } }, auth: string | null }> {
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { ...(init.token !== undefined ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(5000)
  })
  return { status: res.status, body: await res.json() as { error?: { code: string, message: string } }, auth: res.headers.get('www-authenticate') }
}

describe('a peer with a token file', () => {
  let cluster: TestCluster
  let peer: PeerProcess
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-guard-'))
    const tokens = join(dir, 'tokens')
    await writeFile(tokens, `# operators\n${RW}\n${RO} read-only\n`, { mode: 0o600 })
    cluster = await TestCluster.create()
    peer = await cluster.startPeer('g', { extraArgs: ['--http-token-file', tokens] })
  })
  afterAll(async () => { await cluster?.stopAll(); await rm(dir, { recursive: true, force: true }) })

  it('answers 401 without a token or with a wrong one, GET /health open to probes', async () => {
    const none = await call(`${peer.url}/spaces`)
    expect(none.status).toBe(401)
    expect(none.body.error?.code).toBe('UNAUTHORIZED')
    expect(none.auth).toMatch(/^Bearer realm="shoal"/)
    const wrong = await call(`${peer.url}/spaces`, { token: `${RW}x` })
    expect(wrong.status).toBe(401)
    expect(wrong.auth).toContain('invalid_token')
    expect((await call(`${peer.url}/query`, { method: 'POST', body: { sql: 'SELECT 1' } })).status).toBe(401)
    expect((await call(`${peer.url}/health`)).status).toBe(200)
  })

  it('lets a read-only token read and query, and refuses it a write, a drop and an admin endpoint with 403', async () => {
    const created = await call(`${peer.url}/spaces`, { method: 'POST', token: RW, body: { name: 'g', schema: [{ name: 'n', type: 'int32' }], partitions: 2, replicas: 1 } })
    expect(created.status).toBe(201)
    await waitFor(async () => (await call(`${peer.url}/spaces/g/records`, { method: 'POST', token: RW, body: [{ id: 'a', n: 1 }, { id: 'b', n: 2 }] })).status === 200, { timeoutMs: 10_000 })
    expect((await call(`${peer.url}/spaces`, { token: RO })).status).toBe(200)
    const q = await call(`${peer.url}/query`, { method: 'POST', token: RO, body: { sql: 'SELECT sum(n) AS s FROM g' } })
    expect(q.status).toBe(200)
    expect((q.body as unknown as { rows: Array<{ s: number }> }).rows).toEqual([{ s: 3 }])
    const write = await call(`${peer.url}/spaces/g/records`, { method: 'POST', token: RO, body: [{ id: 'c', n: 3 }] })
    expect(write.status).toBe(403)
    expect(write.body.error?.code).toBe('FORBIDDEN')
    expect((await call(`${peer.url}/spaces/g`, { method: 'DELETE', token: RO })).status).toBe(403)
    expect((await call(`${peer.url}/admin/faults`, { method: 'POST', token: RO, body: { deny: [] } })).status).toBe(403)
    // The write was refused whole: nothing of it is there.
    const after = await call(`${peer.url}/query`, { method: 'POST', token: RW, body: { sql: 'SELECT count(*) AS n FROM g' } })
    expect((after.body as unknown as { rows: Array<{ n: number }> }).rows).toEqual([{ n: 2 }])
  })

  it('takes the token from SHOAL_TOKEN in the CLI and from the options in ShoalClient', async () => {
    const denied = await runCli(['query', 'SELECT count(*) AS n FROM g', '--peer', peer.url])
    expect(denied.code).not.toBe(0)
    expect(denied.stderr).toContain('401')
    const ok = await runCli(['query', 'SELECT count(*) AS n FROM g', '--peer', peer.url, '--format', 'json'], { env: { SHOAL_TOKEN: RO } })
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout).rows).toEqual([{ n: 2 }])
    const ro = new ShoalClient(peer.url, { token: RO })
    const rw = new ShoalClient(peer.url, { token: RW })
    try {
      expect((await ro.query('SELECT count(*) AS n FROM g')).rows).toEqual([{ n: 2 }])
      const err = await ro.put('g', { id: 'd', n: 4 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ShoalError)
      expect((err as ShoalError).status).toBe(403)
      await rw.put('g', { id: 'd', n: 4 })
      expect((await rw.get('g', 'd'))?.record).toMatchObject({ id: 'd', n: 4 })
    } finally {
      ro.close()
      rw.close()
    }
  })
})

describe('a peer asked to listen beyond loopback', () => {
  it('refuses to start without tokens, naming --http-token-file and --http-insecure, and starts with --http-insecure', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-open-'))
    try {
      const port = await freePort()
      const refused = await runCli(['start', '--data-dir', join(dir, 'a'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `0.0.0.0:${port}`], { timeoutMs: 15_000 })
      expect(refused.code).not.toBe(0)
      expect(refused.stdout + refused.stderr).toMatch(/listens on 0\.0\.0\.0, beyond loopback.*--http-token-file.*--http-insecure/)
      const cluster = await TestCluster.create()
      try {
        // --http given twice: the last wins (commander), so the peer listens on every address.
        const open = await cluster.startPeer('open', { extraArgs: ['--http', `0.0.0.0:${port}`, '--http-insecure'], waitReady: false })
        await waitFor(async () => await fetch(`http://127.0.0.1:${port}/health`).then(r => r.ok, () => false), { timeoutMs: 20_000 })
        expect(await open.logs()).toContain('HTTP API without tokens beyond loopback (--http-insecure)')
      } finally {
        await cluster.stopAll()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

const openssl = await promisify(execFile)('openssl', ['version']).then(() => true, () => false)
if (!openssl) console.warn('test/integration/http-guard.test.ts: the HTTPS test is skipped: no openssl to make a certificate')

describe.skipIf(!openssl)('a peer serving HTTPS', () => {
  it('answers over TLS to a client trusting its certificate, and gives plain HTTP on the same port no answer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-tls-'))
    const cluster = await TestCluster.create()
    try {
      const cert = join(dir, 'cert.pem')
      const key = join(dir, 'key.pem')
      await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
        '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
      const ca = await readFile(cert)
      const peer = await cluster.startPeer('tls', { extraArgs: ['--http-tls-cert', cert, '--http-tls-key', key], waitReady: false })
      const https = `https://127.0.0.1:${peer.httpPort}`
      const client = new ShoalClient(https, { ca })
      try {
        await waitFor(async () => await client.health().then(() => true, () => false), { timeoutMs: 20_000 })
        await client.createSpace({ name: 's', schema: [{ name: 'n', type: 'int32' }], partitions: 1, replicas: 1 })
        await waitFor(async () => await client.put('s', { id: 'x', n: 7 }).then(() => true, () => false), { timeoutMs: 10_000 })
        expect((await client.query('SELECT n FROM s')).rows).toEqual([{ n: 7 }])
      } finally {
        client.close()
      }
      // Plain HTTP to the TLS port: no HTTP answer (the server hangs up on a non-TLS handshake).
      const plain = await fetch(`http://127.0.0.1:${peer.httpPort}/health`, { signal: AbortSignal.timeout(5000) }).then(r => `answered ${r.status}`, (e: Error) => `failed: ${(e.cause as Error | undefined)?.message ?? e.message}`)
      expect(plain).toMatch(/^failed/)
      // And a client that does not trust the certificate is refused by its own TLS check.
      const untrusted = await new Promise<string>(resolve => {
        const req = httpsRequest(`${https}/health`, res => { resolve(`answered ${res.statusCode ?? 0}`) })
        req.on('error', e => { resolve(`failed: ${e.message}`) })
        req.end()
      })
      expect(untrusted).toMatch(/failed: .*(self.signed|certificate)/i)
    } finally {
      await cluster.stopAll()
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
