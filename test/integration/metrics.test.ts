/**
 * /metrics of a real peer that has served writes, reads and queries (issue 14, item 3): the
 * latency histograms in seconds, request counts by status, WAL fsyncs, disk per space, segments
 * and compactions, hints per target by the target's name, and `promtool check metrics` printing
 * nothing (run when promtool is installed: .ci/run installs Debian's `prometheus` package).
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LAUNCHER, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/** Whether promtool is on the PATH. */
const PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).error === undefined
if (!PROMTOOL) console.warn('metrics.test.ts: promtool is not installed, so `promtool check metrics` is skipped (apt-get install prometheus, as .ci/run does)')

/** The value of the one sample `series` (name and labels exactly as written) in `text`, or undefined. */
function sample (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function post (peer: PeerProcess, path: string, body: unknown): Promise<number> {
  const res = await fetch(peer.url + path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(10_000) })
  await res.arrayBuffer()
  return res.status
}

describe('/metrics', () => {
  let cluster: TestCluster
  let a: PeerProcess
  let b: PeerProcess
  let text = ''

  beforeAll(async () => {
    // Small memtables and few segments allowed: the writes below flush and compact.
    cluster = await TestCluster.create({ config: { storage: { memtableMaxRows: 10, compactionMaxSegments: 2 } } })
    a = await cluster.startPeer('a')
    b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    await waitFor(async () => (await a.members()).filter(m => m.state === 'alive').length === 2, { timeoutMs: 15_000 })
    expect((await a.post('/spaces', { name: 'm', schema: [{ name: 'n', type: 'int64' }], partitions: 2, replicas: 2 })).status).toBe(201)
    const rows = (batch: number): unknown[] => Array.from({ length: 10 }, (_, i) => ({ id: `r${batch}-${i}`, n: i }))
    // The first write waits for the space to reach b and its partitions to be ready.
    await waitFor(async () => await post(a, '/spaces/m/records?consistency=quorum', rows(0)) === 200, { timeoutMs: 15_000 })
    for (let batch = 1; batch < 20; batch++) expect(await post(a, '/spaces/m/records?consistency=quorum', rows(batch))).toBe(200)
    expect((await fetch(`${a.url}/spaces/m/records/r1-1`)).status).toBe(200)
    expect((await fetch(`${a.url}/spaces/m/records/nope`)).status).toBe(404)
    expect((await fetch(`${a.url}/spaces/m/records/r1-2`, { method: 'DELETE' })).status).toBe(200)
    expect(await post(a, '/query', { sql: 'SELECT count(*) AS c FROM m' })).toBe(200)
    expect(await post(a, '/query', { sql: 'SELECT n FROM m WHERE id = \'r2-3\'' })).toBe(200)
    expect(await post(a, '/query', { sql: 'SELECT nope FROM m' })).toBe(400)
    await waitFor(async () => (sample(await (await fetch(`${a.url}/metrics`)).text(), 'shoal_storage_compactions_completed_total') ?? 0) > 0, {
      timeoutMs: 15_000,
      describe: async () => (await (await fetch(`${a.url}/metrics`)).text()).split('\n').filter(l => l.startsWith('shoal_storage_')).join('\n')
    })
    // b away: a write at ONE is answered by a alone and leaves hints for b.
    await b.kill('SIGKILL')
    expect(await post(a, '/spaces/m/records?consistency=one', rows(20))).toBe(200)
    text = await (await fetch(`${a.url}/metrics`)).text()
  })

  afterAll(async () => { await cluster?.stopAll() })

  it.skipIf(!PROMTOOL)('passes `promtool check metrics` without a word on a peer that served writes, reads and queries', () => {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
    expect(check.stdout + check.stderr).toBe('')
    expect(check.status).toBe(0)
  })

  it('times writes, reads, queries and HTTP requests by route in seconds, and counts requests by status', () => {
    expect(text).toContain('# TYPE shoal_write_duration_seconds histogram')
    expect(sample(text, 'shoal_write_duration_seconds_count{op="put",consistency="quorum",outcome="ok"}')).toBeGreaterThanOrEqual(20)
    expect(sample(text, 'shoal_write_duration_seconds_count{op="put",consistency="one",outcome="ok"}')).toBe(1)
    expect(sample(text, 'shoal_write_duration_seconds_count{op="delete",consistency="quorum",outcome="ok"}')).toBe(1)
    const writes = sample(text, 'shoal_write_duration_seconds_count{op="put",consistency="quorum",outcome="ok"}')!
    // Buckets are cumulative and +Inf holds every one; a quorum write on loopback takes far less than 10 s.
    expect(sample(text, 'shoal_write_duration_seconds_bucket{op="put",consistency="quorum",outcome="ok",le="+Inf"}')).toBe(writes)
    expect(sample(text, 'shoal_write_duration_seconds_bucket{op="put",consistency="quorum",outcome="ok",le="10"}')).toBe(writes)
    expect(sample(text, 'shoal_write_duration_seconds_sum{op="put",consistency="quorum",outcome="ok"}')).toBeLessThan(writes * 10)
    expect(sample(text, 'shoal_read_duration_seconds_count{consistency="quorum",outcome="ok"}')).toBe(2)
    expect(sample(text, 'shoal_query_duration_seconds_count{strategy="Broadcast",outcome="ok"}')).toBe(1)
    expect(sample(text, 'shoal_query_duration_seconds_count{strategy="SinglePartition",outcome="ok"}')).toBe(1)
    expect(sample(text, 'shoal_query_duration_seconds_count{strategy="none",outcome="error"}')).toBe(1)
    expect(sample(text, 'shoal_http_request_duration_seconds_count{method="POST",route="/query"}')).toBe(3)
    expect(sample(text, 'shoal_http_requests_total{method="POST",route="/query",status="200"}')).toBe(2)
    expect(sample(text, 'shoal_http_requests_total{method="POST",route="/query",status="400"}')).toBe(1)
    expect(sample(text, 'shoal_http_requests_total{method="GET",route="/spaces/:name/records/:id",status="404"}')).toBe(1)
    expect(sample(text, 'shoal_http_requests_total{method="POST",route="/spaces",status="201"}')).toBe(1)
  })

  it('reports WAL fsyncs, disk bytes and segments per space, compactions and their bytes', () => {
    expect(sample(text, 'shoal_storage_wal_fsync_duration_seconds_count')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_disk_bytes{space="m"}')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_segments{space="m"}')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_segment_bytes{space="m"}')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_compactions_completed_total')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_compaction_bytes_total{direction="read"}')).toBeGreaterThan(0)
    expect(sample(text, 'shoal_storage_compaction_bytes_total{direction="written"}')).toBeGreaterThan(0)
  })

  it('is every one listed in docs/operations.md', () => {
    const docs = readFileSync(join(dirname(LAUNCHER), '..', 'docs', 'operations.md'), 'utf8')
    const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map(m => m[1]!)
    expect(families.length).toBeGreaterThan(50)
    expect(families.filter(f => !docs.includes(`\`${f}\``))).toEqual([])
  })

  it('names the peer a figure is about: hints pending for b by its name and id; anti-entropy differences are counted', () => {
    expect(sample(text, `shoal_hints_pending_by_target{peer="b",peer_id="${b.peerId}"}`)).toBeGreaterThan(0)
    expect(sample(text, 'shoal_anti_entropy_total{event="bucket_differing"}')).toBeGreaterThanOrEqual(0)
    expect(text).toContain('# TYPE shoal_query_peer_latency_seconds gauge')
    // Base units only: nothing in milliseconds, no gauge posing as a counter.
    expect(text).not.toMatch(/^shoal_\w*_ms[{ ]/m)
    expect(text).not.toContain('shoal_nodejs_active_handles_total')
  })
})
