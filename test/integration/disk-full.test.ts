/**
 * A replica's disk fills up under load (issue 13, "disk faults leave zombie replicas"), with real
 * peers: peer b's data directory is a small tmpfs, holding a filler file the test deletes later so
 * that space can be freed. Under QUORUM writes the cluster keeps acknowledging, b stays up and is
 * not green (its /health names each failed partition and ENOSPC, a metric and an error line say
 * so), turns green again without a restart once space is freed, and every acknowledged row reads
 * back at ALL. Needs root (mount); skipped with a message where mounting is not permitted.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { sleep, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

/**
 * The tmpfs: 16 MiB, 12 of them a filler file; rows of about 8 KB fill the rest in ~500 rows
 * (about 1 MiB of WAL a partition; few rows, so that reading every one at ALL stays short). Once
 * freed, the filler's space holds what the replica missed while it was failed (the load stops a
 * few batches after the first failure).
 */
const DISK_MIB = 16
const FILLER_MIB = 12
const NOTE = 'x'.repeat(7900)
const BATCH = 25

interface Failed { space: string, partition: number, kind: string, code: string, operation: string, path?: string, inService: boolean, message: string }
interface Health { status: string, failed?: Failed[], ready?: boolean }

function tryMount (dir: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK_MIB}m`, 'tmpfs', dir], { stdio: 'pipe' })
    return undefined
  } catch (err) {
    return (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message
  }
}

function unmount (dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' })
  } catch {
    // Still busy (a process not yet reaped): detach it now, the kernel frees it when unused.
    try { execFileSync('umount', ['-l', dir], { stdio: 'pipe' }) } catch {}
  }
}

async function health (p: PeerProcess): Promise<Health> { return await p.health() as unknown as Health }

/** POSTs one batch at QUORUM through `via`; the answer's status and the ids it acknowledged. */
async function writeBatch (via: PeerProcess, batch: number): Promise<{ status: number, ids: string[], body: string }> {
  const rows = Array.from({ length: BATCH }, (_, i) => ({ id: `k${batch}-${i}`, n: batch * BATCH + i, note: NOTE }))
  const res = await fetch(`${via.url}/spaces/load/records?consistency=quorum`, {
    method: 'POST', body: JSON.stringify(rows), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000)
  })
  const body = await res.text()
  return { status: res.status, ids: res.status === 200 ? rows.map(r => r.id) : [], body }
}

describe('a replica whose disk fills up, with real peers', () => {
  let cluster: TestCluster | undefined
  let mountPoint: string | undefined
  afterAll(async () => {
    // Peers first (their open files keep the mount busy), then the mount, then the directory.
    await cluster?.stopAll({ keepDir: true }).catch(() => {})
    if (mountPoint !== undefined) unmount(mountPoint)
    if (cluster !== undefined) await rm(cluster.dir, { recursive: true, force: true })
  })

  it('under QUORUM load the cluster keeps acknowledging; the full peer stays up, is not green naming the partitions and ENOSPC, turns green without a restart once space is freed, and every acknowledged row reads at ALL', async (ctx) => {
    cluster = await TestCluster.create({
      config: {
        // A full disk probed every 2 s at most, so healing is quick once space is freed.
        replication: { diskProbeMinMs: 500, diskProbeMaxMs: 2000, reconcileIntervalMs: 1000, catchUpRetryMs: 1000 }
      }
    })
    const dirB = join(cluster.dir, 'b')
    await mkdir(dirB, { recursive: true })
    const refused = tryMount(dirB)
    if (refused !== undefined) {
      console.warn(`skipped: cannot mount a tmpfs for the full-disk test (${refused}); it needs root`)
      ctx.skip()
      return
    }
    mountPoint = dirB
    const filler = join(dirB, 'filler.bin')
    await writeFile(filler, Buffer.alloc(FILLER_MIB << 20, 1))

    const a = await cluster.startPeer('a')
    const b = await cluster.startPeer('b', { bootstrap: [a.multiaddr()] })
    const c = await cluster.startPeer('c', { bootstrap: [a.multiaddr()] })
    const peers = [a, b, c]
    for (const p of peers) await waitFor(async () => (await p.members()).filter(m => m.state === 'alive').length === 3, { timeoutMs: 30_000 })
    const create = await a.post('/spaces', { name: 'load', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }, { name: 'note', type: 'utf8' }], partitions: 4, replicas: 3 })
    expect(create.status).toBe(201)
    for (const p of peers) await waitFor(async () => (await health(p)).status === 'green', { timeoutMs: 30_000, describe: async () => JSON.stringify(await health(p)) })
    // Every replica ready and announced in every view (not merely fresh): a QUORUM write then
    // needs any two of the three, so b's failing leaves a and c.
    const settled = async (p: PeerProcess): Promise<boolean> => {
      const view = await p.get('/spaces/load') as { placement: Array<{ readReplicas: string[], fresh: boolean }> }
      return view.placement.every(x => !x.fresh && x.readReplicas.length === 3)
    }
    for (const p of peers) await waitFor(async () => await settled(p), { timeoutMs: 30_000, describe: async () => JSON.stringify(await p.get('/spaces/load')) })
    const pidB = b.pid

    // QUORUM load through every peer, the full one too, until b's disk is full and it says so,
    // then three rounds more: every batch must be acknowledged.
    const acked: string[] = []
    const failures: string[] = []
    let batch = 0
    let roundsAfterFull: number | undefined
    const started = Date.now()
    while (roundsAfterFull === undefined || roundsAfterFull < 3) {
      if (Date.now() - started > 180_000) throw new Error(`b's disk never filled: ${JSON.stringify(await health(b))}`)
      const results = await Promise.all(peers.map(async (via, i) => await writeBatch(via, batch + i)))
      batch += peers.length
      for (const [i, r] of results.entries()) {
        if (r.status === 200) acked.push(...r.ids)
        else failures.push(`via ${peers[i]!.name}: ${r.status} ${r.body.slice(0, 2000)}`)
      }
      if (roundsAfterFull !== undefined) roundsAfterFull++
      else if (((await health(b)).failed?.length ?? 0) > 0) roundsAfterFull = 0
    }
    expect(failures).toEqual([])
    expect(b.running).toBe(true)

    // The full peer: up, not green, naming each failed partition and the error.
    const full = await health(b)
    expect(full.status).not.toBe('green')
    expect(full.failed!.length).toBeGreaterThan(0)
    for (const f of full.failed!) {
      expect(f).toMatchObject({ space: 'load', kind: 'no-space', code: 'ENOSPC', inService: false })
      expect(f.partition).toBeGreaterThanOrEqual(0)
      expect(f.message).toMatch(/disk is full/)
    }
    const metrics = await (await fetch(`${b.url}/metrics`)).text()
    expect(Number(/shoal_storage_failed_partitions\{reason="no_space"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThan(0)
    await waitFor(async () => /"msg":"partition failed: the disk is full[^"]*"/.test(await b.logs()), { timeoutMs: 10_000 })
    const line = (await b.logs()).split('\n').find(l => l.includes('"msg":"partition failed: the disk is full'))!
    expect(JSON.parse(line)).toMatchObject({ level: 50, space: 'load', code: 'ENOSPC', path: expect.stringContaining(dirB) })

    // Space freed: b turns green by itself, the same process.
    await rm(filler)
    await waitFor(async () => (await health(b)).status === 'green', {
      timeoutMs: 120_000,
      intervalMs: 500,
      describe: async () => `${JSON.stringify(await health(b))}\nb's last lines about its disk:\n${(await b.logs()).split('\n').filter(l => /disk|partition (healed|ready|reopened)|catch-up/.test(l)).slice(-8).join('\n')}\n${execFileSync('du', ['-ak', dirB]).toString()}`
    })
    expect(b.pid).toBe(pidB)
    expect((await health(b)).failed).toEqual([])
    expect(await b.logs()).toMatch(/"msg":"partition healed/)
    expect((await stat(dirB)).isDirectory()).toBe(true)

    // Every acknowledged row, read at ALL (every replica answers, b's among them).
    const missing: string[] = []
    const readers = Array.from({ length: 24 }, async (_, w) => {
      for (let i = w; i < acked.length; i += 24) {
        const via = peers[i % peers.length]!
        const res = await fetch(`${via.url}/spaces/load/records/${acked[i]!}?consistency=all`, { signal: AbortSignal.timeout(10_000) })
        if (res.status !== 200) missing.push(`${acked[i]!}: ${res.status} ${(await res.text()).slice(0, 200)}`)
        else await res.arrayBuffer()
      }
    })
    await Promise.all(readers)
    expect(missing.slice(0, 10)).toEqual([])
    expect(acked.length).toBeGreaterThan(400)
    // And b's own replicas hold them: its digests equal a's.
    await sleep(0)
    const parts = async (p: PeerProcess): Promise<Array<{ partition: number, digest: string, records: number }>> => await p.get('/cluster/partitions') as Array<{ partition: number, digest: string, records: number }>
    const [pa, pb] = [await parts(a), await parts(b)]
    expect(pb.map(x => x.digest)).toEqual(pa.map(x => x.digest))
    expect(pb.reduce((n, x) => n + x.records, 0)).toBe(acked.length)
  }, 420_000)
})
