/**
 * What an operator runs and reads, through real peers: the launcher's settings (the heap limit,
 * the bundle), the heap's growth bound, and the slow-query log.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { VERSION } from '../../src/runtime/index.js'
import { LAUNCHER, runCli, TestCluster, waitFor } from '../cluster/index.js'

describe('the launcher (bin/shoal) and the heap', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('passes --heap-mib to node as its heap limit, and the peer says when its settings may need more; a bad value is refused naming it', async () => {
    cluster = await TestCluster.create()
    const peer = await cluster.startPeer('small', { extraArgs: ['--heap-mib', '256'] })
    const heapLine = (await peer.logs()).split('\n').find(l => l.includes('"msg":"heap"'))
    expect(heapLine).toBeDefined()
    const { heapLimitMiB: limit, heapGrowthPercent } = JSON.parse(heapLine!) as { heapLimitMiB: number, heapGrowthPercent: number | null }
    // V8's heap growth bounded, by default at 50 %, once the peer is ready (it has no data: at once).
    expect(heapGrowthPercent).toBe(50)
    await waitFor(async () => (await peer.logs()).includes('"msg":"heap growth bounded"'), { timeoutMs: 10_000 })
    // The old generation asked for, plus the young generation's three 32 MiB semi-spaces.
    expect(limit).toBeGreaterThanOrEqual(256)
    expect(limit).toBeLessThanOrEqual(256 + 160)
    const logs = await peer.logs()
    expect(logs).toContain('is below the 768 MiB the settings may need at once')
    expect(logs).not.toContain('was asked for (--heap-mib or SHOAL_HEAP_MIB) but')
    const bad = await runCli(['start', '--data-dir', join(cluster.dir, 'bad'), '--heap-mib', '12'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('heapMiB (from flags): must be an integer of MiB from 64')
    const badGrowth = await runCli(['start', '--data-dir', join(cluster.dir, 'bad'), '--heap-growth-percent', '1.5'], { env: { ...process.env, SHOAL_HEAP_GROWTH_PERCENT: '20' } })
    expect(badGrowth.code).toBe(2)
    expect(badGrowth.stderr).toContain('heapGrowthPercent (from flags): must be an integer from 0 to 1000')
    // The test clusters run what `npm test` built, as users run it: the bundle.
    const started = JSON.parse((await peer.logs()).split('\n').find(l => l.includes('"msg":"peer started"'))!) as { program: string, version: string }
    expect(started).toMatchObject({ program: 'bundle', version: VERSION })
  })

  it('runs the bundle only while it is newer than the compiled modules, and the modules with SHOAL_BUNDLE=0', () => {
    // The launcher in a tree of its own, with two programs that say which they are.
    const root = mkdtempSync(join(tmpdir(), 'shoal-launcher-'))
    try {
      const modules = join(root, 'dist', 'src', 'cli', 'main.js')
      const bundle = join(root, 'dist', 'bundle', 'main.js')
      mkdirSync(join(root, 'bin'))
      copyFileSync(LAUNCHER, join(root, 'bin', 'shoal'))
      for (const [file, name] of [[modules, 'modules'], [bundle, 'bundle']] as const) {
        mkdirSync(dirname(file), { recursive: true })
        writeFileSync(file, `console.log('${name}')`)
      }
      const run = (env: Record<string, string> = {}): string => spawnSync('/bin/sh', [join(root, 'bin', 'shoal'), '--version'], { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout.trim()
      const age = (file: string, s: number): void => { const t = new Date(Date.now() - s * 1000); utimesSync(file, t, t) }
      age(modules, 60)
      age(bundle, 30)
      expect(run()).toBe('bundle')
      expect(run({ SHOAL_BUNDLE: '0' })).toBe('modules')
      // A `tsc` after the bundle: its modules are newer, and they run, not the stale bundle.
      age(modules, 10)
      expect(run()).toBe('modules')
      rmSync(bundle)
      expect(run()).toBe('modules')
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})

describe('the slow-query log', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })

  it('logs a query over query.slowQueryMs at warn with its SQL, coverage and each peer\'s share; a fast one not', async () => {
    cluster = await TestCluster.create({ config: { query: { slowQueryMs: 200 } } })
    const peer = await cluster.startPeer('q')
    expect((await peer.post('/spaces', { name: 't', schema: [{ name: 'n', type: 'int64' }], partitions: 2, replicas: 1 })).status).toBe(201)
    expect((await peer.post('/spaces/t/records', [{ id: 'a', n: 1 }, { id: 'b', n: 2 }])).status).toBe(200)
    const fast = await peer.post('/query', { sql: 'SELECT count(*) AS fast FROM t' })
    expect(fast.status).toBe(200)
    expect((await peer.post('/admin/faults', { queryDelayMs: 300 })).status).toBe(200)
    const slow = await peer.post('/query', { sql: 'SELECT sum(n) AS slow FROM t' })
    expect(slow.status).toBe(200)
    const slowLines = async (): Promise<Array<Record<string, unknown>>> => (await peer.logs()).split('\n').filter(l => l.includes('slow query')).map(l => JSON.parse(l) as Record<string, unknown>)
    // Log lines reach the file a moment after they are written.
    await waitFor(async () => (await slowLines()).length > 0, { timeoutMs: 5_000 })
    const lines = await slowLines()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 40, query: 'SELECT sum(n) AS slow FROM t', coverage: { total: 2, answered: 2 } })
    expect(lines[0]!.tookMs as number).toBeGreaterThanOrEqual(300)
    expect(lines[0]!.peers).toEqual([expect.objectContaining({ peer: 'q', partitions: 2 })])
  })
})

describe('the log says which layer, and when a space loses and regains replicas', () => {
  let cluster: TestCluster
  afterAll(async () => { await cluster?.stopAll() })
  const lines = async (p: { logs: () => Promise<string> }): Promise<Array<Record<string, unknown>>> =>
    (await p.logs()).split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)

  it('every line has a component; a peer killed leaves a replicas-3 space under-replicated (warn, placement) until it is back (info)', async () => {
    cluster = await TestCluster.create()
    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    await waitFor(async () => (await a.members()).filter(m => m.state === 'alive').length === 3, { timeoutMs: 20_000 })
    expect((await a.post('/spaces', { name: 'kept', schema: [{ name: 'n', type: 'int64' }], partitions: 4, replicas: 3 })).status).toBe(201)
    await waitFor(async () => (await a.health() as { status: string }).status === 'green', { timeoutMs: 20_000 })
    await c.kill('SIGKILL')
    const shortLine = (l: Record<string, unknown>): boolean => l.component === 'placement' && l.level === 40 && l.space === 'kept' && String(l.msg).startsWith('space under-replicated')
    for (const p of [a, b]) await waitFor(async () => (await lines(p)).some(shortLine), { timeoutMs: 20_000 })
    await cluster.restart('c')
    const backLine = (l: Record<string, unknown>): boolean => l.component === 'placement' && l.level === 30 && l.space === 'kept' && l.msg === 'space no longer under-replicated'
    for (const p of [a, b]) await waitFor(async () => (await lines(p)).some(backLine), { timeoutMs: 30_000 })
    // Said once each, not every second it lasted.
    expect((await lines(a)).filter(shortLine)).toHaveLength(1)
    for (const p of [a, b, c]) {
      const all = await lines(p)
      expect(all.length).toBeGreaterThan(5)
      const without = all.filter(l => typeof l.component !== 'string')
      expect(without, `${p.name}: lines without a component`).toEqual([])
      // One each: a child logger of a child must not say it twice.
      const twice = (await p.logs()).split('\n').filter(l => (l.match(/"component":/g) ?? []).length > 1)
      expect(twice, `${p.name}: lines with two components`).toEqual([])
    }
  })
})
