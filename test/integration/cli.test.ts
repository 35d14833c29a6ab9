import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, runCli, TestCluster, waitFor } from '../cluster/index.js'

/** The version every build reports: package.json's. */
const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

describe('the shoal CLI on bad input', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-cli-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('prints its version (package.json\'s) with --version', async () => {
    const res = await runCli(['--version'])
    expect(res.code).toBe(0)
    expect(res.stdout.trim()).toBe(PACKAGE_VERSION)
  })

  it('rejects an unknown flag with a usage error naming it', async () => {
    const res = await runCli(['start', '--no-such-flag'])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain("unknown option '--no-such-flag'")
  })

  it('rejects an unreadable swarm key file, naming the file', async () => {
    const missing = join(dir, 'missing.key')
    const res = await runCli(['start', '--data-dir', join(dir, 'd1'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `127.0.0.1:${await freePort()}`, '--swarm-key', missing])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain(`cannot read swarm key file ${missing}`)
  })

  it('rejects a malformed swarm key file', async () => {
    const bad = join(dir, 'bad.key')
    await writeFile(bad, '/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n')
    const res = await runCli(['start', '--data-dir', join(dir, 'd2'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `127.0.0.1:${await freePort()}`, '--swarm-key', bad])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('is not a valid swarm key')
  })

  it('rejects an --http value that is not HOST:PORT', async () => {
    const res = await runCli(['start', '--data-dir', join(dir, 'd3'), '--http', 'localhost'])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain("http (from flags): expected HOST:PORT, got 'localhost'")
  })

  it('rejects a misspelt membership option from the config file, naming it', async () => {
    const configFile = join(dir, 'typo.json')
    await writeFile(configFile, JSON.stringify({ membership: { probeIntervalMz: 100 } }))
    const res = await runCli(['start', '--data-dir', join(dir, 'd6'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `127.0.0.1:${await freePort()}`, '--config', configFile])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('unknown option membership.probeIntervalMz')
    await writeFile(configFile, JSON.stringify({ replication: { antiEntropyEveryMs: 100 } }))
    const repl = await runCli(['start', '--data-dir', join(dir, 'd7'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `127.0.0.1:${await freePort()}`, '--config', configFile])
    expect(repl.code).toBe(1)
    expect(repl.stderr).toContain('unknown option replication.antiEntropyEveryMs')
  })

  describe('with a port already taken', () => {
    let blocker: Server
    let port: number
    beforeAll(async () => {
      port = await freePort()
      blocker = createServer()
      await new Promise<void>(resolve => blocker.listen(port, '127.0.0.1', resolve))
    })
    afterAll(async () => { await new Promise(resolve => blocker.close(resolve)) })

    it('exits with a clear error when the libp2p port is in use', async () => {
      const res = await runCli(['start', '--data-dir', join(dir, 'd4'), '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--http', `127.0.0.1:${await freePort()}`])
      expect(res.code).toBe(1)
      expect(res.stderr).toMatch(/in use/)
      expect(res.stderr).toContain(String(port))
    })

    it('exits with a clear error when the HTTP port is in use', async () => {
      const res = await runCli(['start', '--data-dir', join(dir, 'd5'), '--listen', `/ip4/127.0.0.1/tcp/${await freePort()}`, '--http', `127.0.0.1:${port}`])
      expect(res.code).toBe(1)
      expect(res.stderr).toContain(`HTTP address 127.0.0.1:${port} is already in use`)
    })
  })

  it('keygen writes a pnet swarm key with mode 0600 and refuses to overwrite it', async () => {
    const out = join(dir, 'swarm.key')
    const first = await runCli(['keygen', '--out', out])
    expect(first.code).toBe(0)
    const text = await readFile(out, 'utf8')
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n?$/)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    const second = await runCli(['keygen', '--out', out])
    expect(second.code).toBe(1)
    expect(second.stderr).toContain('already exists')
  })

  it('members reports an unreachable peer without a stack trace', async () => {
    const res = await runCli(['members', '--peer', `http://127.0.0.1:${await freePort()}`])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/^shoal: cannot reach peer at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/)
  })
})

describe('a peer with an unreachable bootstrap address', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('starts anyway, says so in its log, and joins once the bootstrap peer appears', async () => {
    cluster = await TestCluster.create()
    const laterPort = await freePort()
    const b = await cluster.startPeer('b', { bootstrap: [`/ip4/127.0.0.1/tcp/${laterPort}`] })
    expect((await b.health()).peer).toBe(b.peerId)
    await waitFor(async () => (await b.logs()).includes('no bootstrap peer reachable yet'), { timeoutMs: 10_000 })
    // Until it has reached its cluster, it coordinates no write: its view is only itself.
    expect((await b.post('/spaces', { name: 'early', schema: [{ name: 'v', type: 'utf8' }] })).status).toBe(201)
    const early = await b.post('/spaces/early/records', [{ id: 'x', v: 'y' }])
    expect(early.status).toBe(503)
    expect((early.body as { error: { code: string } }).error.code).toBe('NOT_SYNCED')

    // Bring up a peer on the address b was told about; b's background retries must find it.
    const a = await cluster.startPeer('a', { extraArgs: ['--listen', `/ip4/127.0.0.1/tcp/${laterPort}`] })
    await waitFor(async () => (await b.members()).some(m => m.peerId === a.peerId && m.state === 'alive'), { timeoutMs: 20_000, describe: async () => JSON.stringify(await b.members()) })
  })

  it('answers /members in a table and in JSON through the CLI, and serves Prometheus metrics', async () => {
    const b = cluster.peers.get('b')!
    const table = await runCli(['members', '--peer', b.url])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/^NAME\s+STATE\s+INC/)
    expect(table.stdout).toContain('2 members: 2 alive')
    expect(table.stdout).toMatch(/^NAME\s+STATE\s+INC\s+VERSION/)
    expect(table.stdout.split('\n').filter(l => l.includes(` ${PACKAGE_VERSION} `))).toHaveLength(2)
    const json = await runCli(['members', '--peer', b.url, '--json'])
    expect(JSON.parse(json.stdout)).toHaveLength(2)
    expect((JSON.parse(json.stdout) as Array<{ version: string }>).map(m => m.version)).toEqual([PACKAGE_VERSION, PACKAGE_VERSION])
    const metrics = await fetch(`${b.url}/metrics`).then(async r => await r.text())
    expect(metrics).toMatch(/shoal_members\{state="alive"\} 2/)
    expect(metrics).toContain('shoal_swim_events_total{event="probe"}')
    expect(metrics).toMatch(/shoal_rpc_calls_total\{outcome="ok"\} [1-9]/)
    expect(metrics).toContain(`shoal_build_info{version="${PACKAGE_VERSION}",node="${process.version}"} 1`)
    expect(((await b.get('/health')) as { version: string }).version).toBe(PACKAGE_VERSION)
  })

  it('refuses /admin/faults bodies that are not a deny list, naming the field', async () => {
    const b = cluster.peers.get('b')!
    const res = await b.post('/admin/faults', { deny: ['x'] })
    expect(res.status).toBe(400)
    expect(JSON.stringify(res.body)).toContain("deny[0]")
    const unknown = await b.post('/admin/faults', { deny: [], extra: 1 })
    expect(unknown.status).toBe(400)
  })

  it('drains and leaves gracefully on SIGTERM: the other peer sees it as left', async () => {
    const a = cluster.peers.get('a')!
    const b = cluster.peers.get('b')!
    await b.kill('SIGTERM')
    expect(await b.waitExit()).toBe(0)
    await waitFor(async () => (await a.members()).find(m => m.peerId === b.peerId)?.state === 'left', { timeoutMs: 10_000, describe: async () => JSON.stringify(await a.members()) })
  })
})

describe('a peer started without --enable-fault-injection', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('refuses /admin/faults with 403', async () => {
    cluster = await TestCluster.create()
    const peer = await cluster.startPeer('plain', { faultInjection: false })
    const res = await peer.post('/admin/faults', { deny: [] })
    expect(res.status).toBe(403)
    expect((res.body as { error: { code: string } }).error.code).toBe('FAULT_INJECTION_DISABLED')
  })
})
