import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { BlockCache, FilePool, MANIFEST_FILE } from '../../src/storage/index.js'
import { SegmentFile, type SegmentFileMeta } from '../../src/storage/segment-file.js'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

interface Damage { space: string, partition: number, file: string, copy: string, regions: Array<{ offset: number, bytes: number }>, bytes: number, repaired: boolean, inService: boolean, lost: boolean, message: string }

/** Every WAL file under a peer's data directory. */
async function walFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /^wal-\d+\.log$/.test(e.name)) out.push(join(e.parentPath, e.name))
  }
  return out
}

/** Writes `batches` POSTs of `size` rows each (each POST one WAL frame on each replica); answers the ids per batch. */
/** Peers a and b of `cluster`, joined, with space `events` (1 partition, 2 replicas) known to both. */
async function twoPeersWithEvents (cluster: TestCluster): Promise<{ a: PeerProcess, b: PeerProcess }> {
  const a = await cluster.startPeer('a')
  const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
  await waitFor(async () => (await a.members()).filter(m => m.state === 'alive').length === 2, { timeoutMs: 20_000 })
  const create = await a.post('/spaces', { name: 'events', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'note', type: 'utf8' }], partitions: 1, replicas: 2 })
  expect(create.status).toBe(201)
  await waitFor(async () => (await b.get('/spaces/events') as { name?: string }).name === 'events', { timeoutMs: 15_000 })
  return { a, b }
}

async function writeBatches (peer: PeerProcess, space: string, batches: number, size: number): Promise<string[][]> {
  const ids: string[][] = []
  for (let b = 0; b < batches; b++) {
    const rows = Array.from({ length: size }, (_, i) => ({ id: `b${b}-r${i}`, n: b * size + i, note: `batch ${b} row ${i}` }))
    const res = await fetch(`${peer.url}/spaces/${space}/records?consistency=all`, { method: 'POST', body: JSON.stringify(rows), headers: { 'content-type': 'application/json' } })
    expect(res.status, await res.clone().text()).toBe(200)
    ids.push(rows.map(r => r.id))
  }
  return ids
}

async function present (peer: PeerProcess, space: string, id: string): Promise<boolean> {
  const res = await fetch(`${peer.url}/spaces/${space}/records/${id}?consistency=one`)
  if (res.status !== 200 && res.status !== 404) throw new Error(`GET ${id}: ${res.status} ${await res.text()}`)
  return res.status === 200
}

async function flipAt30Percent (file: string): Promise<void> {
  const bytes = await readFile(file)
  const at = Math.floor(bytes.length * 0.3)
  bytes[at] = bytes[at]! ^ 0x5a
  await writeFile(file, bytes)
}

async function damaged (peer: PeerProcess): Promise<{ status: string, damaged: Damage[] }> {
  return await peer.health() as unknown as { status: string, damaged: Damage[] }
}

describe('a damaged write-ahead log, through a real peer', () => {
  const clusters: TestCluster[] = []
  afterAll(async () => { for (const c of clusters) await c.stopAll() })

  it('R = 1: after a byte flipped at 30% of a WAL only that frame\'s rows are gone, and health says plainly what was lost', async () => {
    const cluster = await TestCluster.create()
    clusters.push(cluster)
    const a = await cluster.startPeer('a')
    const create = await a.post('/spaces', { name: 'events', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'note', type: 'utf8' }], partitions: 1, replicas: 1 })
    expect(create.status).toBe(201)
    const batches = await writeBatches(a, 'events', 60, 10)
    await a.kill()
    const [wal, ...others] = await walFiles(a.dataDir)
    expect(others).toEqual([])
    await flipAt30Percent(wal!)

    await cluster.restart('a')
    await waitFor(async () => await present(a, 'events', batches[0]![0]!), { timeoutMs: 20_000, describe: async () => JSON.stringify(await a.health()) })
    const missing: string[] = []
    for (const ids of batches) for (const id of ids) if (!await present(a, 'events', id)) missing.push(id)
    // One POST was one frame: exactly its rows are gone, every row written after it is there.
    expect(missing).toHaveLength(10)
    expect(batches.some(ids => ids.every(id => missing.includes(id)))).toBe(true)
    const health = await damaged(a)
    expect(health.status).not.toBe('green')
    expect(health.damaged).toHaveLength(1)
    expect(health.damaged[0]).toMatchObject({ space: 'events', partition: 0, file: wal, copy: `${wal!}.corrupt`, repaired: false, lost: true, message: expect.stringMatching(/LOST/) })
    expect(health.damaged[0]!.bytes).toBeGreaterThan(0)
    expect((await stat(`${wal!}.corrupt`)).size).toBeGreaterThan(0)
  }, 90_000)

  it('R = 2: the damaged replica serves no reads until it has synced with the other, then holds every row again', async () => {
    const cluster = await TestCluster.create()
    clusters.push(cluster)
    const { a, b } = await twoPeersWithEvents(cluster)
    await writeBatches(a, 'events', 60, 10)
    await b.kill()
    const [wal] = await walFiles(b.dataDir)
    await flipAt30Percent(wal!)
    await cluster.restart('b')
    await waitFor(async () => (await damaged(b)).damaged?.some(d => d.repaired) ?? false, { timeoutMs: 60_000, describe: async () => JSON.stringify(await b.health()) })
    const health = await damaged(b)
    expect(health.damaged[0]).toMatchObject({ space: 'events', partition: 0, file: wal, repaired: true, lost: false })
    // b's own replica holds every row again: its digest equals a's.
    const digests = async (p: PeerProcess): Promise<Array<{ digest: string, records: number }>> => await p.get('/cluster/partitions') as Array<{ digest: string, records: number }>
    const [da, db] = [await digests(a), await digests(b)]
    expect(db[0]!.records).toBe(600)
    expect(db[0]!.digest).toBe(da[0]!.digest)
    // It was marked ready (announced for reads) only after the repair, not at start-up.
    // (the log reaches its file a moment after the line is written)
    await waitFor(async () => /"msg":"partition ready"/.test((await b.logs()).slice((await b.logs()).lastIndexOf('"damaged partition repaired'))), { timeoutMs: 10_000 })
    const log = await b.logs()
    const restartedAt = log.lastIndexOf('"damaged partition repaired')
    expect(restartedAt).toBeGreaterThan(0)
    expect(log.slice(log.lastIndexOf('CORRUPT'), restartedAt)).not.toMatch(/"msg":"partition ready"/)
    expect(log.slice(restartedAt)).toMatch(/"msg":"partition ready"/)
  }, 120_000)
})

interface SegmentDamage { space: string, partition: number, kind: string, file: string, column?: string, movedTo?: string, repaired: boolean, inService: boolean, lost: boolean, message: string }

/** The only partition directory under a peer's data directory (the one holding a MANIFEST). */
async function partitionDir (dataDir: string): Promise<string> {
  const found: string[] = []
  for (const e of await readdir(join(dataDir, 'spaces'), { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name === MANIFEST_FILE && !/\.corrupt-/.test(e.parentPath)) found.push(e.parentPath)
  }
  expect(found).toHaveLength(1)
  return found[0]!
}

/**
 * Flips a byte of column `column` of the first record batch of the partition's first segment, on
 * disk under the running peer (its cache has not read that block: flushes do not fill the cache
 * and nothing has read the rows yet); answers the segment's file and the ids whose rows it holds.
 */
async function corruptColumn (dir: string, column: string): Promise<{ file: string, ids: string[] }> {
  const [meta] = (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: SegmentFileMeta[] }).segments
  const seg = await SegmentFile.open(dir, meta!, { files: new FilePool(), cache: new BlockCache(1 << 20) })
  const range = seg.columnRange(0, column)!
  const ids = await seg.ids(0)
  await seg.close()
  const file = join(dir, meta!.file)
  const fh = await open(file, 'r+')
  try {
    const b = Buffer.alloc(1)
    const at = range.offset + range.length - 1
    await fh.read(b, 0, 1, at)
    b[0] = b[0]! ^ 0x40
    await fh.write(b, 0, 1, at)
  } finally {
    await fh.close()
  }
  return { file, ids: [...ids] }
}

async function getRecord (peer: PeerProcess, space: string, id: string): Promise<{ status: number, body: { record?: Record<string, unknown> } }> {
  const res = await fetch(`${peer.url}/spaces/${space}/records/${id}?consistency=one`)
  return { status: res.status, body: await res.json() as { record?: Record<string, unknown> } }
}

async function segmentDamage (peer: PeerProcess): Promise<{ status: string, damaged: SegmentDamage[] }> {
  return await peer.health() as unknown as { status: string, damaged: SegmentDamage[] }
}

describe('a damaged segment block, through real peers', () => {
  const clusters: TestCluster[] = []
  afterAll(async () => { for (const c of clusters) await c.stopAll() })
  // Small memtables: the rows are in segments, read from disk through a 1 MiB cache.
  const storage = { cacheMiB: 1, memtableMaxRows: 200 }

  it('R = 2: reads stay right while the damaged replica is out of service; it is rebuilt from the other and holds every row again', async () => {
    const cluster = await TestCluster.create({ config: { storage } })
    clusters.push(cluster)
    const { a, b } = await twoPeersWithEvents(cluster)
    await writeBatches(a, 'events', 10, 100)
    const dir = await partitionDir(b.dataDir)
    await waitFor(async () => (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: unknown[] }).segments.length >= 2, { timeoutMs: 15_000, describe: async () => `${await readFile(join(dir, MANIFEST_FILE), 'utf8')} ${(await readdir(dir)).join(',')}` })
    const { file, ids } = await corruptColumn(dir, 'n')
    const id = ids[0]!
    const n = Number(/^b(\d+)-r(\d+)$/.exec(id)![1]) * 100 + Number(/^b(\d+)-r(\d+)$/.exec(id)![2])

    // Through the damaged peer at ONE it reads its own replica first: that read fails, the next
    // replica answers, right.
    const got = await getRecord(b, 'events', id)
    expect(got.status, JSON.stringify(got.body)).toBe(200)
    expect(got.body.record).toMatchObject({ id, n })
    // Queries through either peer answer every row.
    for (const p of [a, b]) {
      const q = await p.post('/query', { sql: 'SELECT count(*) AS c, sum(n) AS s FROM events', allowPartial: false })
      expect(q.status, JSON.stringify(q.body)).toBe(200)
      expect((q.body as { rows: Array<{ c: number, s: number }> }).rows).toEqual([{ c: 1000, s: 999 * 1000 / 2 }])
    }

    // Rebuilt from a: the damaged files moved aside, the report says so and that it is repaired.
    await waitFor(async () => (await segmentDamage(b)).damaged?.some(d => d.kind === 'segment' && d.repaired) ?? false, { timeoutMs: 60_000, describe: async () => JSON.stringify(await b.health()) })
    const health = await segmentDamage(b)
    const report = health.damaged.find(d => d.kind === 'segment')!
    expect(report).toMatchObject({ space: 'events', partition: 0, repaired: true, lost: false, column: 'n', movedTo: expect.stringContaining(`${dir}.corrupt-`), message: expect.stringMatching(/repaired/) })
    expect(report.file).toBe(join(report.movedTo!, file.slice(dir.length + 1)))
    expect((await stat(report.file)).size).toBeGreaterThan(0)
    expect(dirname(report.movedTo!)).toBe(dirname(dir))
    // Repaired comes a moment before ready is announced: then health is green again.
    await waitFor(async () => (await segmentDamage(b)).status === 'green', { timeoutMs: 15_000, describe: async () => JSON.stringify(await b.health()) })
    // b's own replica holds every row again: its digest equals a's, and its rows read back.
    const digests = async (p: PeerProcess): Promise<Array<{ digest: string, records: number }>> => await p.get('/cluster/partitions') as Array<{ digest: string, records: number }>
    const [da, db] = [await digests(a), await digests(b)]
    expect(db[0]!.records).toBe(1000)
    expect(db[0]!.digest).toBe(da[0]!.digest)
    for (const x of ids.slice(0, 20)) expect((await getRecord(b, 'events', x)).status).toBe(200)
    // Out of service from the damage to the repair, announced ready only after it.
    await waitFor(async () => /"msg":"partition ready"/.test((await b.logs()).slice((await b.logs()).lastIndexOf('damaged partition repaired'))), { timeoutMs: 10_000 })
    const log = await b.logs()
    const outAt = log.indexOf('damaged partition taken out of service')
    const repairedAt = log.lastIndexOf('damaged partition repaired')
    expect(log.indexOf('SEGMENT FILE CORRUPT')).toBeGreaterThan(0)
    expect(outAt).toBeGreaterThan(log.indexOf('SEGMENT FILE CORRUPT'))
    expect(repairedAt).toBeGreaterThan(outAt)
    expect(log.slice(outAt, repairedAt)).not.toMatch(/"msg":"partition ready"/)
  }, 120_000)

  it('R = 1: reads of the damaged block fail with a 5xx naming the file, the rest is served, and health reports the loss', async () => {
    const cluster = await TestCluster.create({ config: { storage } })
    clusters.push(cluster)
    const a = await cluster.startPeer('a')
    const create = await a.post('/spaces', { name: 'events', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'note', type: 'utf8' }], partitions: 1, replicas: 1 })
    expect(create.status).toBe(201)
    await writeBatches(a, 'events', 10, 100)
    const dir = await partitionDir(a.dataDir)
    await waitFor(async () => (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as { segments: unknown[] }).segments.length >= 2, { timeoutMs: 15_000, describe: async () => `${await readFile(join(dir, MANIFEST_FILE), 'utf8')} ${(await readdir(dir)).join(',')}` })
    const { file, ids } = await corruptColumn(dir, 'n')

    // The flipped byte is the last row's value (the block's last byte): a get of that row fails.
    // (A get reads its row's 4 KiB pages: rows on other pages of the block are served, right;
    // the unit tests of segment-file.ts show it.)
    const bad = await getRecord(a, 'events', ids[ids.length - 1]!)
    expect(bad.status, JSON.stringify(bad.body)).toBeGreaterThanOrEqual(500)
    expect(JSON.stringify(bad.body)).toContain(file)
    // A row of another segment is still served.
    const other = Array.from({ length: 1000 }, (_, i) => `b${Math.floor(i / 100)}-r${i % 100}`).find(x => !ids.includes(x))!
    expect((await getRecord(a, 'events', other)).status).toBe(200)
    // A query that needs the damaged block does not answer without it.
    const q = await a.post('/query', { sql: 'SELECT sum(n) AS s FROM events', allowPartial: false })
    expect(q.status).toBeGreaterThanOrEqual(500)
    expect(JSON.stringify(q.body)).toContain(file)
    const partial = await a.post('/query', { sql: 'SELECT sum(n) AS s FROM events' })
    expect(partial.status, JSON.stringify(partial.body)).toBe(200)
    expect((partial.body as { coverage: { answered: number, missing: unknown[] } }).coverage).toMatchObject({ answered: 0, missing: [expect.anything()] })
    expect(JSON.stringify((partial.body as { coverage: unknown }).coverage)).toContain(file)

    const health = await segmentDamage(a)
    expect(health.status).not.toBe('green')
    expect(health.damaged).toMatchObject([{ space: 'events', partition: 0, kind: 'segment', file, column: 'n', repaired: false, inService: true, lost: true, message: expect.stringMatching(/LOST/) }])
    expect(health.damaged[0]!.movedTo).toBeUndefined()
    expect((await stat(file + '.corrupt.json')).size).toBeGreaterThan(0)
  }, 90_000)
})
