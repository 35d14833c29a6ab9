import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { BackupService, type ReplicaReader } from '../../src/backup/index.js'
import { runBackup } from '../../src/cli/backup.js'
import { runRestore } from '../../src/cli/restore.js'
import { HttpServer, registerBackupApi } from '../../src/http/index.js'
import { silentLogger } from '../../src/runtime/index.js'
import { checkSchema, type SpaceDef } from '../../src/schema/index.js'
import type { VersionedRecord } from '../../src/storage/index.js'
import { stableHash } from '../../src/storage/hash.js'

/**
 * The CLI's backup and restore against a peer's real HTTP routes and BackupService, with the
 * cluster below stubbed: three replicas as maps (one can be made unreachable per partition), and
 * a target whose writes are kept by last writer wins.
 */
const space: SpaceDef = { name: 'orders', uid: 'orders-1', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'amount', type: 'float64' }, { name: 'big', type: 'int64' }]), partitions: 4, replicas: 3 }
const rec = (id: string, version: number, amount: number | null): VersionedRecord =>
  amount === null ? { id, version, deleted: true, row: null } : { id, version, deleted: false, row: { id, amount, big: 2n ** 62n + BigInt(version) } }
const partitionOf = (id: string): number => stableHash(id) % 4

const replicas = new Map<string, Map<string, VersionedRecord>>([['a', new Map()], ['b', new Map()], ['c', new Map()]])
/** Partitions whose replicas b and c do not answer (a alone is no majority). */
const unavailable = new Set<number>()
const reader: ReplicaReader = {
  count: async (peer, _s, partition) => {
    if (peer !== 'a' && unavailable.has(partition)) throw new Error('unreachable')
    return [...replicas.get(peer)!.values()].filter(r => partitionOf(r.id) === partition).length
  },
  bucket: async (peer, _s, partition, index, buckets) => [...replicas.get(peer)!.values()].filter(r => partitionOf(r.id) === partition && stableHash(r.id) % buckets === index)
}

/** The target cluster: spaces created, records kept newest version first. */
const target = { spaces: [] as SpaceDef[], records: new Map<string, VersionedRecord>(), writes: 0 }

let server: HttpServer
let url: string
beforeAll(async () => {
  server = new HttpServer({ host: '127.0.0.1', port: 0 }, silentLogger)
  const catalog = { get: (n: string) => [space, ...target.spaces].find(s => s.name === n), list: () => [space] }
  registerBackupApi(server, new BackupService({
    catalog,
    hlc: { now: () => 1_000_000 * 1024 },
    isSynced: () => true,
    snapshot: { locate: () => ({ owners: ['a', 'b', 'c'], readReplicas: ['a', 'b', 'c'], quorum: 2 }), isReachable: () => true, reader },
    write: async (_s, records) => {
      target.writes++
      let stale = 0
      for (const r of records) {
        const held = target.records.get(r.id)
        if (held !== undefined && held.version > r.version) { stale++; continue }
        target.records.set(r.id, r)
      }
      return { written: records.length, stale, staleIds: [] }
    },
    log: silentLogger
  }))
  server.route('GET', '/spaces', () => ({ body: target.spaces }))
  server.route('POST', '/spaces', async (req) => {
    const b = await req.json() as SpaceDef
    target.spaces.push({ ...b, uid: `${b.name}-2` })
    return { status: 201, body: b }
  })
  const { port } = await server.start()
  url = `http://127.0.0.1:${port}`
})
afterAll(async () => { await server.stop(0) })

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-backup-cli-'))
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
  for (const m of replicas.values()) m.clear()
  unavailable.clear()
  target.spaces = []
  target.records.clear()
  target.writes = 0
})
afterEach(async () => {
  vi.restoreAllMocks()
  await rm(dir, { recursive: true, force: true })
})

function load (): void {
  for (let i = 0; i < 300; i++) {
    const r = rec(`o${i}`, 100 + i, i / 4)
    // Every record on two replicas of three (a QUORUM write); a few newer on one only.
    const [x, y] = i % 3 === 0 ? ['a', 'b'] : i % 3 === 1 ? ['b', 'c'] : ['a', 'c']
    replicas.get(x!)!.set(r.id, r)
    replicas.get(y!)!.set(r.id, r)
  }
  replicas.get('c')!.set('o5', rec('o5', 999, -1))
  replicas.get('a')!.set('o7', rec('o7', 998, null))
}

describe('shoal backup and shoal restore (the CLI over the peer routes)', () => {
  it('backs up every record a majority holds, restores it with its versions, and a re-run keeps a newer row', async () => {
    load()
    const out = join(dir, 'b')
    await runBackup({ peer: url, out, concurrency: 2, allowPartial: false })
    expect((await readdir(out)).sort()).toEqual(['manifest.json', 'orders'])
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { complete: boolean, startHlc: number, spaces: Array<{ files: Array<{ records: number, tombstones: number, replicas: string[] }> }> }
    expect(manifest.complete).toBe(true)
    expect(manifest.startHlc).toBe(1_000_000 * 1024)
    expect(manifest.spaces[0]!.files.reduce((n, f) => n + f.records, 0)).toBe(300)
    expect(manifest.spaces[0]!.files.reduce((n, f) => n + f.tombstones, 0)).toBe(1)
    expect(manifest.spaces[0]!.files[0]!.replicas).toEqual(['a', 'b', 'c'])

    await runRestore({ peer: url, from: out, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: false })
    expect(target.spaces.map(s => s.name)).toEqual(['orders'])
    expect(target.records.size).toBe(300)
    expect(target.records.get('o5')).toEqual(rec('o5', 999, -1))
    expect(target.records.get('o7')).toEqual(rec('o7', 998, null))
    expect(target.records.get('o10')).toEqual(rec('o10', 110, 2.5))

    // A row written in the target since is newer: the second run leaves it.
    target.records.set('o10', rec('o10', 5000, 42))
    await runRestore({ peer: url, from: out, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: false })
    expect(target.records.size).toBe(300)
    expect(target.records.get('o10')).toEqual(rec('o10', 5000, 42))
  })

  it('fails without a manifest when a partition has no majority, or lists it missing with --allow-partial', async () => {
    load()
    unavailable.add(2)
    const out = join(dir, 'b')
    await expect(runBackup({ peer: url, out, concurrency: 1, allowPartial: false })).rejects.toThrow(/backup failed: partition 2 of 'orders': peer answered 503 PARTITION_UNAVAILABLE: partition 2 of space 'orders' cannot be backed up consistently: 1 of the 2 replicas needed \(a majority\) answered[^]*no manifest was written/)
    expect(await readdir(out)).toEqual(['orders'])
    expect((await readdir(join(out, 'orders'))).every(f => !f.endsWith('.partial'))).toBe(true)
    await expect(runRestore({ peer: url, from: out, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: false })).rejects.toThrow(/restore refused, nothing was written: backup file manifest.json is missing/)

    const partial = join(dir, 'p')
    await expect(runBackup({ peer: url, out: partial, concurrency: 2, allowPartial: true })).rejects.toThrow(/the backup is partial: 1 partition\(s\) .* orders\/2/)
    const manifest = JSON.parse(await readFile(join(partial, 'manifest.json'), 'utf8')) as { complete: boolean, missing: Array<{ space: string, partition: number }> }
    expect(manifest.complete).toBe(false)
    expect(manifest.missing).toMatchObject([{ space: 'orders', partition: 2 }])
    await expect(runRestore({ peer: url, from: partial, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: false })).rejects.toThrow(/the backup .* is partial, 1 partition\(s\) missing \(orders\/2\); pass --allow-partial/)
    expect(target.writes).toBe(0)
    await runRestore({ peer: url, from: partial, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: true })
    expect(target.records.size).toBe(Array.from({ length: 300 }, (_, i) => `o${i}`).filter(id => partitionOf(id) !== 2).length)
  })

  it('refuses a space that exists with another schema before writing anything', async () => {
    load()
    const out = join(dir, 'b')
    await runBackup({ peer: url, out, concurrency: 2, allowPartial: false })
    target.spaces.push({ ...space, uid: 'orders-9', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'amount', type: 'utf8' }, { name: 'big', type: 'int64' }]) })
    await expect(runRestore({ peer: url, from: out, consistency: 'quorum', batchRecords: 64, concurrency: 3, allowPartial: false }))
      .rejects.toThrow("restore refused, nothing was written:\nspace 'orders' exists in the cluster with another schema than in the backup: column 'amount' is float64 in the backup, utf8 in the cluster")
    expect(target.writes).toBe(0)
  })

  it('refuses to write into a directory that is not empty', async () => {
    await expect(runBackup({ peer: url, out: tmpdir(), concurrency: 2, allowPartial: false })).rejects.toThrow(/is not empty/)
  })
})

/**
 * A scripted peer (plain node:http): GET /backup names one space of 2 partitions; each partition
 * answers as `script` says, to give the CLI failures the real service does not make on demand.
 */
describe('shoal backup against a peer that fails', () => {
  const line = (id: string): string => `${JSON.stringify({ id, v: 100, row: { id, amount: 1.5, big: '1' } })}\n`
  const end = (records: number): string => `${JSON.stringify({ end: true, records, tombstones: 0, replicas: ['a', 'b'], buckets: 1 })}\n`
  type Answer = { status: number, body: string } | { chunks: string[] }
  let script: Record<number, Answer> = {}
  let stub: Server
  let stubUrl: string
  beforeAll(async () => {
    stub = createServer((req, res) => {
      if (req.url === '/backup') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ startHlc: 1024, startTime: new Date(1).toISOString(), version: 'test', spaces: [{ name: 'orders', uid: 'orders-1', schema: space.schema, partitions: 2, replicas: 3 }] }))
        return
      }
      const m = /^\/backup\/spaces\/orders\/partitions\/(\d+)$/.exec(req.url ?? '')
      const answer = m === null ? undefined : script[Number(m[1])]
      if (answer === undefined) { res.writeHead(404).end(); return }
      if ('status' in answer) { res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body); return }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      void (async () => {
        for (const c of answer.chunks) { res.write(c); await new Promise(resolve => setTimeout(resolve, 5)) }
        res.end()
      })()
    })
    await new Promise<void>(resolve => stub.listen(0, '127.0.0.1', resolve))
    stubUrl = `http://127.0.0.1:${(stub.address() as { port: number }).port}`
  })
  afterAll(async () => { await new Promise(resolve => stub.close(resolve)) })

  const whole: Answer = { chunks: [line('a') + line('b'), end(2)] }
  const leftover = async (out: string): Promise<string[]> => [...await readdir(out), ...(await readdir(join(out, 'orders'))).map(f => `orders/${f}`)].sort()

  it('with --allow-partial, a busy peer fails the backup instead of listing the partition missing', async () => {
    script = { 0: whole, 1: { status: 503, body: JSON.stringify({ error: { code: 'BUSY', message: 'this peer already serves 8 backup streams, its limit' } }) } }
    const out = join(dir, 'busy')
    await expect(runBackup({ peer: stubUrl, out, concurrency: 1, allowPartial: true }))
      .rejects.toThrow(/backup failed: partition 1 of 'orders': peer answered 503 BUSY: this peer already serves[^]*no manifest was written/)
    expect(await leftover(out)).toEqual(['orders', 'orders/0.ndjson'])

    // A partition without a majority is still the one failure --allow-partial lists as missing.
    script[1] = { status: 503, body: JSON.stringify({ error: { code: 'PARTITION_UNAVAILABLE', message: 'partition 1 of space \'orders\' cannot be backed up consistently' } }) }
    const partial = join(dir, 'partial')
    await expect(runBackup({ peer: stubUrl, out: partial, concurrency: 1, allowPartial: true })).rejects.toThrow(/the backup is partial: 1 partition\(s\) .* orders\/1/)
    const manifest = JSON.parse(await readFile(join(partial, 'manifest.json'), 'utf8')) as { missing: Array<{ space: string, partition: number }> }
    expect(manifest.missing).toMatchObject([{ space: 'orders', partition: 1 }])
  })

  it('refuses a partition stream cut short: an error trailer after some records, or no end line', async () => {
    for (const [name, cut, message] of [
      ['trailer', [line('c'), line('d'), `${JSON.stringify({ error: { code: 'INTERNAL', message: 'replica b went away' } })}\n`], /the peer failed part way: INTERNAL: replica b went away/],
      ['no-end', [line('c'), line('d')], /the stream ended before its end line/]
    ] as const) {
      for (const allowPartial of [false, true]) {
        script = { 0: whole, 1: { chunks: [...cut] } }
        const out = join(dir, `${name}-${String(allowPartial)}`)
        await expect(runBackup({ peer: stubUrl, out, concurrency: 1, allowPartial })).rejects.toThrow(message)
        // Partition 0 was whole and stays; nothing of partition 1 (no .partial), and no manifest.
        expect(await leftover(out)).toEqual(['orders', 'orders/0.ndjson'])
      }
    }
  })
})
