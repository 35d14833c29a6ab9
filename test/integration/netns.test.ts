/**
 * A 3-peer cluster in network namespaces (test/net; needs root, ip, nsenter and nft, else skipped
 * saying why): each peer in a namespace of its own on its own address, its links cut from outside
 * by nftables rules in the namespaces, as Jepsen cuts them, not by the peer's own deny list.
 *
 * Isolating one peer this way must look to the others like a dead peer and to it like the loss of
 * its majority: a QUORUM write on the majority side succeeds, the isolated peer's /health says it
 * has no majority and its QUORUM write is refused. Healed, the cluster is green again. And
 * nothing of the network is left once the cluster stops, nor after a test process that made one
 * was terminated or killed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readlinkSync, statSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sleep, TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'
import { run } from '../net/exec.js'
import { grudgeLinks, lossBothWays, MARKER_DIR, NetnsNetwork, netnsSupport, sweepStaleNetworks, type NetnsHost } from '../net/index.js'

const support = await netnsSupport()
if (!support.ok) console.warn(`test/integration/netns.test.ts skipped: namespace clusters cannot run here: ${support.why}`)

/** What of the network `suffix` exists on the machine: its namespaces, links and marker. */
async function leftovers (suffix: string): Promise<string[]> {
  const namespaces = (await run('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0]!).filter(n => n.startsWith(`shoal-${suffix}-`))
  const links = (await run('ip', ['-o', 'link', 'show'])).split('\n').map(l => /^\d+:\s+([^@:\s]+)/.exec(l)?.[1] ?? '').filter(n => n === `shb${suffix}` || n.startsWith(`shv${suffix}`))
  const marker = await readFile(join(MARKER_DIR, suffix), 'utf8').then(() => [`marker ${suffix}`], () => [])
  return [...namespaces, ...links, ...marker]
}

interface ErrorBody { error?: { code?: string, message?: string } }

describe.skipIf(!support.ok)('a 3-peer cluster in network namespaces', () => {
  let cluster: TestCluster
  let a: PeerProcess, b: PeerProcess, c: PeerProcess
  let suffix = ''

  beforeAll(async () => {
    cluster = await TestCluster.create({ net: 'netns' })
    suffix = cluster.network!.suffix
    a = await cluster.startPeer('a')
    ;[b, c] = await Promise.all(['b', 'c'].map(async n => await cluster.startPeer(n, { bootstrap: [a.multiaddr()] }))) as [PeerProcess, PeerProcess]
  })
  afterAll(async () => { await cluster?.stopAll() })

  const peers = (): PeerProcess[] => [a, b, c]
  const allAliveAndGreen = async (): Promise<boolean> => (await Promise.all(peers().map(async p => {
    const [members, health] = await Promise.all([p.members(), p.health()])
    return members.filter(m => m.state === 'alive').length === 3 && health.status === 'green' && health.majority === true
  }))).every(Boolean)

  it('forms, every peer in its own namespace on its own address, the peer process itself in it', async () => {
    await waitFor(allAliveAndGreen, { timeoutMs: 20_000 })
    const net = cluster.network!
    for (const p of peers()) {
      const host = net.host(p.name)
      expect(p.address).toBe(host.address)
      expect(p.url).toBe(`http://${host.address}:7947`)
      expect(host.address.startsWith(`${net.subnet}.`)).toBe(true)
      // Everyone knows it by that address.
      for (const q of peers()) expect((await q.members()).find(m => m.name === p.name)?.addrs.some(x => x.startsWith(`/ip4/${host.address}/tcp/7946`))).toBe(true)
      // The pid a signal goes to is node's (nsenter and the launcher exec'd), and it is in the namespace.
      const pid = p.pid!
      expect((await readFile(`/proc/${pid}/comm`, 'utf8')).trim()).toBe('node')
      expect(readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${statSync(`/run/netns/${host.namespace}`).ino}]`)
    }
    const res = await a.post('/spaces', { name: 'cut', schema: [{ name: 'id', type: 'utf8' }, { name: 'n', type: 'int64' }], partitions: 4, replicas: 3 })
    expect(res.status).toBe(201)
    await waitFor(async () => (await Promise.all(peers().map(async p => await p.get('/spaces') as Array<{ name: string }>))).every(l => l.some(s => s.name === 'cut')), { timeoutMs: 15_000 })
    // Every partition ready on all three owners before the next test cuts one off: a CI run cut c
    // while b was still catching up a partition of the new space, so a's QUORUM write found only
    // itself of that partition's ready replicas (a and c) reachable: 503, rightly.
    await waitFor(allAliveAndGreen, { timeoutMs: 30_000, describe: async () => JSON.stringify(await Promise.all(peers().map(async p => await p.health()))) })
  })

  it('a partition by nftables isolates a peer: the others see it dead, the majority writes at QUORUM, the isolated peer knows it has no majority; healed, green again', async () => {
    const net = cluster.network!
    await net.setFaults({ drop: grudgeLinks({ c: ['a', 'b'], a: ['c'], b: ['c'] }), loss: [] })
    try {
      expect(await net.rules('c')).toMatch(new RegExp(`ip saddr ${net.host('a').address.replace(/\./g, '\\.')} counter packets \\d+ bytes \\d+ drop`))
      expect(await net.rules('a')).toMatch(/ip daddr \S+ counter packets \d+ bytes \d+ drop/)
      await waitFor(async () => (await Promise.all([a, b].map(async p => (await p.members()).find(m => m.name === 'c')?.state))).every(s => s === 'suspect' || s === 'dead'), {
        timeoutMs: 15_000, describe: async () => JSON.stringify(await a.members())
      })
      await waitFor(async () => (await c.members()).filter(m => m.name !== 'c' && m.state === 'dead').length === 2 && (await c.health()).majority === false, {
        timeoutMs: 20_000, describe: async () => JSON.stringify({ members: await c.members(), health: await c.health() })
      })
      // The cut is the kernel's: the isolated peer's own deny list is empty, and the rules dropped packets.
      expect((await c.get('/admin/faults') as { deny: string[] }).deny).toEqual([])
      expect((await net.dropped()).c).toBeGreaterThan(0)
      expect((await a.health()).majority).toBe(true)

      // With c cut off, a's only way to b is direct: no peer is left to probe b for a indirectly,
      // so on a loaded machine one late answer to a 100 ms probe can have a take b for dead for a
      // moment (a CI run: a's QUORUM write then found itself alone, 503, nothing written: the
      // honest answer). What must hold is that the majority side writes while the cut lasts, so
      // a write refused as unavailable is tried again; any other answer ends the wait.
      let ok: { status: number, body: unknown } | undefined
      await waitFor(async () => {
        ok = await a.post('/spaces/cut/records?consistency=quorum&timeoutMs=5000', [{ id: 'm1', n: 1 }, { id: 'm2', n: 2 }, { id: 'm3', n: 3 }, { id: 'm4', n: 4 }])
        return ok.status !== 503 || (ok.body as ErrorBody).error?.code !== 'PARTITION_UNAVAILABLE'
      }, { timeoutMs: 20_000, describe: async () => JSON.stringify({ last: ok?.body, members: await a.members() }) })
      expect(ok?.status, JSON.stringify(ok?.body)).toBe(200)
      const refused = await c.post('/spaces/cut/records?consistency=quorum&timeoutMs=5000', [{ id: 'c1', n: -1 }])
      expect(refused.status, JSON.stringify(refused.body)).toBe(503)
      expect((refused.body as ErrorBody).error?.code).toBe('PARTITION_UNAVAILABLE')
    } finally {
      await net.clearFaults()
    }
    expect(await net.rules('a')).toBe('')
    expect(await net.rules('c')).toBe('')
    await waitFor(allAliveAndGreen, { timeoutMs: 30_000, describe: async () => JSON.stringify(await Promise.all(peers().map(async p => ({ name: p.name, health: await p.health().catch(e => String(e)), members: (await p.members().catch(() => [])).map(m => `${m.name}:${m.state}`) })))) })
    // The write made on the majority side during the partition is read back through the peer that was cut off.
    const read = await fetch(`${c.url}/spaces/cut/records/m1?consistency=quorum`, { signal: AbortSignal.timeout(5000) })
    expect(read.status).toBe(200)
    expect((await read.json() as { record?: { n: number } }).record?.n).toBe(1)
  })

  it('loses a share of packets on chosen links (numgen), and cuts one direction only in a one-way partition', async () => {
    const net = cluster.network!
    const [addrA, addrB] = [net.host('a').address, net.host('b').address]
    await net.setFaults({ drop: [], loss: lossBothWays([['a', 'b']], 30) })
    try {
      // Each direction meets the dice once: at its sender's output hook.
      expect(await net.rules('a')).toContain(`ip daddr ${addrB} numgen random mod 100 < 30 counter packets`)
      expect(await net.rules('b')).toContain(`ip daddr ${addrA} numgen random mod 100 < 30 counter packets`)
      expect(await net.rules('c')).toBe('')
      // Membership traffic flows all the time: some of it is lost within a couple of seconds.
      await waitFor(async () => { const d = await net.dropped(); return d.a! > 0 && d.b! > 0 }, { timeoutMs: 10_000, intervalMs: 250 })
    } finally {
      await net.clearFaults()
    }
    await net.setFaults({ drop: grudgeLinks({ c: ['a'] }), loss: [] })
    try {
      expect(await net.rules('c')).toMatch(new RegExp(`chain output \\{[^}]*ip daddr ${addrA.replace(/\./g, '\\.')} counter`))
      expect(await net.rules('c')).not.toMatch(/ip saddr/)
      expect(await net.rules('a')).toMatch(/chain input \{[^}]*ip saddr \S+ counter/)
      expect(await net.rules('a')).not.toMatch(/ip daddr/)
      expect(await net.rules('b')).toBe('')
    } finally {
      await net.clearFaults()
    }
    await waitFor(allAliveAndGreen, { timeoutMs: 30_000 })
  })

  it('leaves no namespace, link, firewall rule or marker behind once stopped', async () => {
    expect(await leftovers(suffix)).not.toEqual([])
    await cluster.stopAll()
    expect(await leftovers(suffix)).toEqual([])
    expect(await run('nft', ['list', 'ruleset'])).not.toContain(`shoal-netns-${suffix}`)
  })
})

describe.skipIf(!support.ok)('a namespace network of a test process that dies', () => {
  // A child process builds a network of two hosts with a process running in one (as a peer
  // would), prints the suffix, and waits to be signalled. It runs the compiled module (dist/).
  const moduleUrl = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/test/net/index.js')
  const script = `
    const { NetnsNetwork } = await import(${JSON.stringify(moduleUrl)})
    const { spawn } = await import('node:child_process')
    const net = await NetnsNetwork.create()
    await net.addHost('x'); await net.addHost('y')
    const [cmd, ...args] = net.launchPrefix('x')
    spawn(cmd, [...args, 'sleep', '600'], { stdio: 'ignore', detached: true }).unref()
    console.log(net.suffix)
    setInterval(() => {}, 1000)`

  async function start (): Promise<{ suffix: string, exited: Promise<number | null>, kill: (s: NodeJS.Signals) => void }> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<number | null>(resolve => child.once('exit', (code, signal) => { resolve(code ?? (signal !== null ? -1 : null)) }))
    const suffix = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { const m = /([0-9a-f]{4})/.exec(d.toString()); if (m !== null) resolve(m[1]!) })
      void exited.then(code => { reject(new Error(`child exited (${String(code)}) before making its network: ${err}`)) })
    })
    return { suffix, exited, kill: s => { child.kill(s) } }
  }

  it('SIGTERM: its exit handler tears everything down, the process in a namespace included', async () => {
    const child = await start()
    const made = await leftovers(child.suffix)
    expect(made).toHaveLength(2 + 3 + 1) // 2 namespaces, bridge + 2 veths, marker
    child.kill('SIGTERM')
    expect(await child.exited).toBe(143)
    expect(await leftovers(child.suffix)).toEqual([])
  })

  it('SIGKILL: everything stays until the next sweep, which removes it (and leaves a live network alone)', async () => {
    const live = await start()
    const dead = await start()
    dead.kill('SIGKILL')
    await dead.exited
    await sleep(100)
    expect(await leftovers(dead.suffix)).toHaveLength(6)
    const swept = await sweepStaleNetworks()
    expect(swept).toContain(`network ${dead.suffix}`)
    expect(swept).not.toContain(`network ${live.suffix}`)
    expect(await leftovers(dead.suffix)).toEqual([])
    expect(await leftovers(live.suffix)).toHaveLength(6)
    live.kill('SIGINT')
    expect(await live.exited).toBe(130)
    expect(await leftovers(live.suffix)).toEqual([])
  })
})

describe.skipIf(!support.ok)('the kernel\'s ARP table, one for every namespace', () => {
  // Its hard cap (gc_thresh3, 1,024 by default) counts the neighbours of every namespace: n hosts
  // need about n(n + 1) entries, so 50 hosts overflowed it and hosts added late could not reach
  // one another (connections timed out). Here the cap is lowered to 64 so that 10 hosts (110
  // entries) overflow it unless the network makes room.
  const NEIGH = '/proc/sys/net/ipv4/neigh/default/'
  const threshold = async (name: string): Promise<number> => Number((await readFile(NEIGH + name, 'utf8')).trim())

  it('every host of a network reaches every other: the network makes room as hosts are added and puts the table back', async () => {
    const original = { gc_thresh2: await threshold('gc_thresh2'), gc_thresh3: await threshold('gc_thresh3') }
    await writeFile(NEIGH + 'gc_thresh2', '32')
    await writeFile(NEIGH + 'gc_thresh3', '64')
    let net: NetnsNetwork | undefined
    try {
      net = await NetnsNetwork.create()
      const hosts: NetnsHost[] = []
      for (let i = 1; i <= 10; i++) hosts.push(await net.addHost(`h${i}`))
      expect(await threshold('gc_thresh3')).toBeGreaterThanOrEqual(10 * 11)
      // One process per host: a server, then a connection to every other host's server; each
      // serves until every host has reported (then they are killed).
      const addrs = hosts.map(h => h.address)
      const script = `
        const net = require('net'); const me = process.argv[1]; const addrs = ${JSON.stringify(addrs)}
        const failed = []; let done = 0
        net.createServer(c => c.end('ok')).listen(7000, me, () => setTimeout(() => {
          for (const a of addrs) {
            if (a === me) { done++; continue }
            const c = net.connect(7000, a)
            const end = ok => { if (!ok) failed.push(a); c.destroy(); if (++done === addrs.length) console.log(JSON.stringify(failed)) }
            c.setTimeout(5000, () => end(false)); c.on('data', () => end(true)); c.on('error', () => end(false))
          }
        }, 1500))`
      const children: ChildProcess[] = []
      const unreachable = await Promise.all(hosts.map(async h => await new Promise<string[]>((resolve, reject) => {
        const [cmd, ...args] = net!.launchPrefix(h.name)
        const child = spawn(cmd!, [...args, process.execPath, '-e', script, h.address], { stdio: ['ignore', 'pipe', 'inherit'] })
        children.push(child)
        let out = ''
        child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.endsWith('\n')) resolve(JSON.parse(out) as string[]) })
        child.once('exit', code => { reject(new Error(`host ${h.name} exited ${String(code)} before reporting: ${out}`)) })
      }))).finally(() => { for (const c of children) c.kill('SIGKILL') })
      expect(unreachable.map((u, i) => `${hosts[i]!.name}: ${u.join(' ')}`)).toEqual(hosts.map(h => `${h.name}: `))
    } finally {
      await net?.destroy()
      // Put back as it was before the network: what this test set.
      expect(await threshold('gc_thresh3')).toBe(64)
      await writeFile(NEIGH + 'gc_thresh3', String(original.gc_thresh3))
      await writeFile(NEIGH + 'gc_thresh2', String(original.gc_thresh2))
    }
  }, 60_000)
})
