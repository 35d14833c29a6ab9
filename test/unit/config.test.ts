import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, resolveConfig } from '../../src/config/index.js'
import { boundHeapGrowth, planHeap } from '../../src/peer/heap.js'

describe('resolveConfig()', () => {
  let dir: string
  let file: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    file = join(dir, 'shoal.json')
    await writeFile(file, JSON.stringify({ http: '127.0.0.1:9000', name: 'from-file', membership: { probeIntervalMs: 500 }, replication: { antiEntropyIntervalMs: 5000 }, placement: { deadOwnerTimeoutMs: 3000 }, bootstrap: ['/ip4/127.0.0.1/tcp/1'] }))
  })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('uses loopback defaults when nothing is given', () => {
    const c = resolveConfig({ flags: {}, env: {} })
    expect(c.http).toEqual({ host: '127.0.0.1', port: 7947 })
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/7946'])
    expect(c.enableFaultInjection).toBe(false)
    expect(c.name).toBe('shoal-7947')
  })

  it('lets flags win over environment variables, and both over the config file', () => {
    const fileOnly = resolveConfig({ flags: {}, env: {}, configFile: file })
    expect(fileOnly.name).toBe('from-file')
    expect(fileOnly.membership).toEqual({ probeIntervalMs: 500 })
    expect(fileOnly.replication).toEqual({ antiEntropyIntervalMs: 5000 })
    expect(fileOnly.placement).toEqual({ deadOwnerTimeoutMs: 3000 })
    const withEnv = resolveConfig({ flags: {}, env: { SHOAL_NAME: 'from-env', SHOAL_BOOTSTRAP: '/ip4/127.0.0.1/tcp/2,/ip4/127.0.0.1/tcp/3' }, configFile: file })
    expect(withEnv.name).toBe('from-env')
    expect(withEnv.bootstrap).toEqual(['/ip4/127.0.0.1/tcp/2', '/ip4/127.0.0.1/tcp/3'])
    const withFlags = resolveConfig({ flags: { name: 'from-flag', bootstrap: [] }, env: { SHOAL_NAME: 'from-env' }, configFile: file })
    expect(withFlags.name).toBe('from-flag')
    // An absent repeatable flag (empty list) does not erase the file's list.
    expect(withFlags.bootstrap).toEqual(['/ip4/127.0.0.1/tcp/1'])
  })

  it('takes the storage cache size from storage.cacheMiB, SHOAL_STORAGE_CACHE_MIB or --cache-mib, in that order of precedence', async () => {
    const cfg = join(dir, 'cache.json')
    await writeFile(cfg, JSON.stringify({ storage: { cacheMiB: 128, maxOpenFiles: 64 }, maxHttpConnections: 100 }))
    const fromFile = resolveConfig({ flags: {}, env: {}, configFile: cfg })
    expect(fromFile.storage).toEqual({ cacheMiB: 128, maxOpenFiles: 64 })
    expect(fromFile.maxHttpConnections).toBe(100)
    expect(resolveConfig({ flags: {}, env: { SHOAL_STORAGE_CACHE_MIB: '256' }, configFile: cfg }).storage.cacheMiB).toBe(256)
    expect(resolveConfig({ flags: { cacheMiB: '512' }, env: { SHOAL_STORAGE_CACHE_MIB: '256' }, configFile: cfg }).storage.cacheMiB).toBe(512)
    expect(() => resolveConfig({ flags: { cacheMiB: '0.5' }, env: {} })).toThrow('cacheMiB (from flags): must be a positive integer (MiB)')
    const topLevel = join(dir, 'top.json')
    await writeFile(topLevel, JSON.stringify({ cacheMiB: 64 }))
    expect(() => resolveConfig({ flags: {}, env: {}, configFile: topLevel })).toThrow(/cacheMiB \(from config file .*\): unknown setting/)
  })

  it('takes maxPeerConnections from the file, SHOAL_MAX_PEER_CONNECTIONS or --max-peer-connections, a positive integer', async () => {
    const cfg = join(dir, 'peers.json')
    await writeFile(cfg, JSON.stringify({ maxPeerConnections: 2000 }))
    expect(resolveConfig({ flags: {}, env: {}, configFile: cfg }).maxPeerConnections).toBe(2000)
    expect(resolveConfig({ flags: {}, env: { SHOAL_MAX_PEER_CONNECTIONS: '3000' }, configFile: cfg }).maxPeerConnections).toBe(3000)
    expect(resolveConfig({ flags: { maxPeerConnections: '4000' }, env: { SHOAL_MAX_PEER_CONNECTIONS: '3000' }, configFile: cfg }).maxPeerConnections).toBe(4000)
    expect(resolveConfig({ flags: {}, env: {} }).maxPeerConnections).toBeUndefined()
    expect(() => resolveConfig({ flags: { maxPeerConnections: '0' }, env: {} })).toThrow('maxPeerConnections (from flags): must be a positive integer (libp2p connections to other peers)')
    expect(() => resolveConfig({ flags: {}, env: { SHOAL_MAX_PEER_CONNECTIONS: '1.5' } })).toThrow('maxPeerConnections (from environment): must be a positive integer')
  })

  it('refuses an HTTP address beyond loopback without tokens unless --http-insecure; TLS needs both files', () => {
    expect(() => resolveConfig({ flags: { http: '0.0.0.0:7947' }, env: {} })).toThrow(/http \(from flags\): listens on 0\.0\.0\.0, beyond loopback, with no bearer tokens.*--http-token-file.*--http-insecure/)
    expect(() => resolveConfig({ flags: {}, env: { SHOAL_HTTP: '10.1.2.3:7947' } })).toThrow(/http \(from environment\)/)
    expect(resolveConfig({ flags: { http: '0.0.0.0:7947', httpInsecure: true }, env: {} }).httpInsecure).toBe(true)
    expect(resolveConfig({ flags: { http: '0.0.0.0:7947' }, env: { SHOAL_HTTP_TOKEN_FILE: 'tokens.txt' } }).httpTokenFile).toMatch(/\/tokens\.txt$/)
    for (const host of ['127.0.0.1', '127.3.4.5', 'localhost', '[::1]']) expect(resolveConfig({ flags: { http: `${host}:7947` }, env: {} }).httpInsecure).toBe(false)
    expect(() => resolveConfig({ flags: { httpTlsCert: 'c.pem' }, env: {} })).toThrow(/httpTlsKey \(from flags\): HTTPS needs both/)
    expect(resolveConfig({ flags: { httpTlsCert: 'c.pem', httpTlsKey: 'k.pem' }, env: {} }).httpTls).toEqual({ certFile: expect.stringMatching(/c\.pem$/), keyFile: expect.stringMatching(/k\.pem$/) })
  })

  it('names the setting and its source in errors', async () => {
    expect(() => resolveConfig({ flags: { http: 'nope' }, env: {} })).toThrow("http (from flags): expected HOST:PORT, got 'nope'")
    expect(() => resolveConfig({ flags: {}, env: { SHOAL_ENABLE_FAULT_INJECTION: 'maybe' } })).toThrow('enableFaultInjection (from environment): must be true or false')
    expect(() => resolveConfig({ flags: { listen: ['127.0.0.1:7946'] }, env: {} })).toThrow(/listen \(from flags\): '127.0.0.1:7946' is not a multiaddr/)
    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ probeIntervalMs: 5 }))
    expect(() => resolveConfig({ flags: {}, env: {}, configFile: bad })).toThrow(ConfigError)
    expect(() => resolveConfig({ flags: {}, env: {}, configFile: bad })).toThrow(/probeIntervalMs \(from config file .*\): unknown setting/)
    const negative = join(dir, 'neg.json')
    await writeFile(negative, JSON.stringify({ membership: { probeIntervalMs: -1 } }))
    expect(() => resolveConfig({ flags: {}, env: {}, configFile: negative })).toThrow('membership.probeIntervalMs')
  })

  it('takes the heap size from SHOAL_HEAP_MIB or --heap-mib (the flag wins), never from a file, and refuses one out of range naming it', () => {
    expect(resolveConfig({ flags: {}, env: {} }).heapMiB).toBeUndefined()
    expect(resolveConfig({ flags: {}, env: { SHOAL_HEAP_MIB: '768' } }).heapMiB).toBe(768)
    expect(resolveConfig({ flags: { heapMiB: '1024' }, env: { SHOAL_HEAP_MIB: '768' } }).heapMiB).toBe(1024)
    expect(() => resolveConfig({ flags: { heapMiB: '32' }, env: {} })).toThrow('heapMiB (from flags): must be an integer of MiB from 64')
    expect(() => resolveConfig({ flags: {}, env: { SHOAL_HEAP_MIB: '1.5' } })).toThrow('heapMiB (from environment)')
  })

  it('bounds the heap growth at 50 % unless a file, SHOAL_HEAP_GROWTH_PERCENT or --heap-growth-percent says otherwise (0: V8\'s own)', async () => {
    expect(resolveConfig({ flags: {}, env: {} }).heapGrowthPercent).toBe(50)
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    const file = join(dir, 'growth.json')
    await writeFile(file, JSON.stringify({ heapGrowthPercent: 100 }))
    expect(resolveConfig({ flags: {}, env: {}, configFile: file }).heapGrowthPercent).toBe(100)
    expect(resolveConfig({ flags: {}, env: { SHOAL_HEAP_GROWTH_PERCENT: '0' }, configFile: file }).heapGrowthPercent).toBe(0)
    expect(resolveConfig({ flags: { heapGrowthPercent: '25' }, env: { SHOAL_HEAP_GROWTH_PERCENT: '0' } }).heapGrowthPercent).toBe(25)
    expect(() => resolveConfig({ flags: {}, env: { SHOAL_HEAP_GROWTH_PERCENT: '1.5' } })).toThrow('heapGrowthPercent (from environment): must be an integer from 0 to 1000')
    expect(() => resolveConfig({ flags: { heapGrowthPercent: '5000' }, env: {} })).toThrow('heapGrowthPercent (from flags)')
    expect(() => boundHeapGrowth(-1)).toThrow(RangeError)
    await rm(dir, { recursive: true, force: true })
  })
})

describe('planHeap()', () => {
  const MiB = 1048576
  it('needs base + memtables as objects + one query, and says when the limit in force is not what was asked', () => {
    const ok = planHeap({ limitBytes: 1200 * MiB, askedMiB: 1100, memtableBudgetBytes: 64 * MiB, queryBudgetMiB: 512 })
    expect(ok.neededMiB).toBe(128 + 128 + 512)
    expect(ok.warnings).toEqual([])
    const small = planHeap({ limitBytes: 600 * MiB, askedMiB: 504, memtableBudgetBytes: 64 * MiB, queryBudgetMiB: 512 })
    expect(small.warnings).toHaveLength(1)
    expect(small.warnings[0]).toContain('below the 768 MiB')
    expect(planHeap({ limitBytes: 600 * MiB, memtableBudgetBytes: 16 * MiB, queryBudgetMiB: 256 }).warnings).toEqual([])
    const ignored = planHeap({ limitBytes: 4144 * MiB, askedMiB: 768, memtableBudgetBytes: 64 * MiB, queryBudgetMiB: 512 })
    expect(ignored.warnings).toHaveLength(1)
    expect(ignored.warnings[0]).toContain('a heap of 768 MiB was asked for')
  })
})
