/**
 * Real peers in network namespaces (issue 15, item 5): N `shoal start` processes (default 50),
 * each in a namespace of its own behind a bridge (test/net), with the default membership timings
 * (probe interval 1 s), as a user runs them. Measures:
 *
 * - join: from the first start until every peer sees every other alive;
 * - detection: kill -9 of one peer, until each other peer sees it dead (p50 / p99 / max over them);
 * - a partition made by nftables (a fifth of the peers cut off from the rest, packets dropped),
 *   held 20 s, then healed: until every peer sees every other alive again;
 * - memory: each peer's resident set (VmRSS) once the cluster is formed and quiet.
 *
 *   sudo node dist/scripts/bench/netns-cluster.js [peers]      (root, ip, nsenter, nft)
 *
 * On a 2-core machine 30 peers run (docs/benchmarks.md); at 50 the 40th peer's dials timed out.
 */
import '../../src/polyfill/index.js'
import { readFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { TestCluster, waitFor, type MemberJson, type PeerProcess } from '../../test/cluster/index.js'
import { grudgeLinks, netnsSupport } from '../../test/net/index.js'

export interface NetnsClusterBench {
  peers: number
  joinS: number
  detection: { p50S: number, p99S: number, maxS: number }
  partition: { cutOff: number, heldS: number, healedAfterS: number, firstContactS: number, droppedPackets: number, reconnectKnocks: number, rpcFailures: Record<string, number> }
  rssMiB: { median: number, max: number }
  startS: number
}

function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

async function rssMiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN)
  return kb / 1024
}

/** Sums of the peers' Prometheus samples named `name`, by the value of `label` (what moved during a phase). */
async function metricSums (peers: PeerProcess[], name: string, label: string): Promise<Record<string, number>> {
  const sums: Record<string, number> = {}
  const line = new RegExp(`^${name}\\{[^}]*${label}="([^"]+)"[^}]*\\} (\\S+)$`)
  for (const p of peers) {
    const text = await fetch(`${p.url}/metrics`, { signal: AbortSignal.timeout(3000) }).then(async r => await r.text()).catch(() => '')
    for (const l of text.split('\n')) {
      const m = line.exec(l)
      if (m !== null) sums[m[1]!] = (sums[m[1]!] ?? 0) + Number(m[2])
    }
  }
  return sums
}

function delta (after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v !== 0))
}

async function views (peers: PeerProcess[]): Promise<MemberJson[][]> {
  return await Promise.all(peers.map(async p => await p.members().catch(() => [])))
}

export async function benchNetnsCluster (n = 50, log: (line: string) => void = () => {}): Promise<NetnsClusterBench> {
  const support = await netnsSupport()
  if (!support.ok) throw new Error(`cannot run: ${support.why}`)
  // Default membership timings (probe interval 1 s): what a user runs, not the tests' fast ones.
  const cluster = await TestCluster.create({ net: 'netns', membership: {}, dirPrefix: 'shoal-bench-netns-' })
  try {
    const t0 = Date.now()
    const first = await cluster.startPeer('n1')
    const peers: PeerProcess[] = [first]
    // Two at a time (a machine of 2 cores starts the programs), each joining through three peers
    // already up rather than all through n1: 50 joins at once through one peer made its dials
    // time out on a loaded machine.
    for (let i = 2; i <= n; i += 2) {
      const batch = [i, i + 1].filter(k => k <= n)
      peers.push(...await Promise.all(batch.map(async k => {
        const via = [first, ...peers.slice(1).sort(() => Math.random() - 0.5).slice(0, 2)].map(p => p.multiaddr())
        const p = await cluster.startPeer(`n${k}`, { bootstrap: via, waitReady: false })
        await p.waitReady(120_000)
        return p
      })))
    }
    const startS = (Date.now() - t0) / 1000
    log(`${n} peers started in ${startS.toFixed(1)} s`)
    await waitFor(async () => (await views(peers)).every(v => v.length === n && v.every(m => m.state === 'alive')), { timeoutMs: 180_000, intervalMs: 250 })
    const joinS = (Date.now() - t0) / 1000
    log(`every peer sees ${n} alive ${joinS.toFixed(1)} s after the first start`)

    await new Promise(resolve => setTimeout(resolve, 10_000))
    const rss = (await Promise.all(peers.map(async p => await rssMiB(p.pid!)))).sort((a, b) => a - b)

    // Detection: kill -9 of one peer; poll every view until each has it dead.
    const victim = peers[Math.floor(n / 2)]!
    const others = peers.filter(p => p !== victim)
    const deadAfter = new Map<string, number>()
    const killedAt = Date.now()
    await victim.kill('SIGKILL')
    await waitFor(async () => {
      const vs = await views(others)
      vs.forEach((v, i) => {
        const name = others[i]!.name
        if (!deadAfter.has(name) && v.find(m => m.peerId === victim.peerId)?.state === 'dead') deadAfter.set(name, (Date.now() - killedAt) / 1000)
      })
      return deadAfter.size === others.length
    }, { timeoutMs: 120_000, intervalMs: 100 })
    const det = [...deadAfter.values()].sort((a, b) => a - b)
    log(`kill -9 → dead at every peer: p50 ${pct(det, 50).toFixed(2)} s, p99 ${pct(det, 99).toFixed(2)} s`)

    // Partition: a fifth of the live peers cut off from the rest, both ways, by nftables.
    const live = others
    const minority = live.slice(0, Math.max(1, Math.floor(live.length / 5)))
    const majority = live.slice(minority.length)
    const grudge: Record<string, string[]> = {}
    for (const p of minority) grudge[p.name] = majority.map(q => q.name)
    for (const q of majority) grudge[q.name] = minority.map(p => p.name)
    const eventsBefore = await metricSums(live, 'shoal_swim_events_total', 'event')
    const rpcBefore = await metricSums(live, 'shoal_rpc_calls_total', 'outcome')
    await cluster.network!.setFaults({ drop: grudgeLinks(grudge), loss: [] })
    const heldS = 20
    await new Promise(resolve => setTimeout(resolve, heldS * 1000))
    const dropped = Object.values(await cluster.network!.clearFaults()).reduce((a, b) => a + b, 0)
    const healedAt = Date.now()
    // First contact: some peer of one side sees a peer of the other alive again (a reconnect
    // knock got through); the rest of the heal is refutations spreading by gossip.
    const minorityIds = new Set(minority.map(p => p.peerId))
    let firstContactS = NaN
    let lastReport = healedAt
    await waitFor(async () => {
      const vs = await views(live)
      if (Number.isNaN(firstContactS) && vs.some((v, i) => v.some(m => m.state === 'alive' && minorityIds.has(m.peerId) !== minorityIds.has(live[i]!.peerId)))) {
        firstContactS = (Date.now() - healedAt) / 1000
      }
      const done = vs.every(v => v.filter(m => m.state === 'alive').length === live.length)
      if (!done && Date.now() - lastReport >= 2000) {
        // Which views still hold whom not alive: says whether the heal waits on a few members'
        // refutations or on whole views (SHOAL_BENCH_HEAL_TRACE=1).
        lastReport = Date.now()
        const stale = vs.flatMap((v, i) => live[i] === undefined ? [] : live.filter(p => v.find(m => m.peerId === p.peerId)?.state !== 'alive').map(p => `${live[i]!.name}>${p.name}:${v.find(m => m.peerId === p.peerId)?.state ?? 'unknown'}`))
        if (process.env.SHOAL_BENCH_HEAL_TRACE === '1') log(`  +${((Date.now() - healedAt) / 1000).toFixed(1)} s: ${stale.length} (view, member) pairs not alive: ${stale.slice(0, 12).join(' ')}`)
      }
      return done
    }, { timeoutMs: 180_000, intervalMs: 250 })
    const healedAfterS = (Date.now() - healedAt) / 1000
    const events = delta(await metricSums(live, 'shoal_swim_events_total', 'event'), eventsBefore)
    const rpcFailures = delta(await metricSums(live, 'shoal_rpc_calls_total', 'outcome'), rpcBefore)
    delete rpcFailures.ok
    log(`first contact across the healed cut ${firstContactS.toFixed(1)} s after the heal; reconnect knocks during cut and heal: ${events.reconnect ?? 0}; RPC failures: ${JSON.stringify(rpcFailures)}`)
    log(`partition of ${minority.length} / ${majority.length} for ${heldS} s (${dropped} packets dropped): every live peer sees all alive ${healedAfterS.toFixed(1)} s after the heal`)
    return {
      peers: n,
      startS,
      joinS,
      detection: { p50S: pct(det, 50), p99S: pct(det, 99), maxS: det.at(-1)! },
      partition: { cutOff: minority.length, heldS, healedAfterS, firstContactS, droppedPackets: dropped, reconnectKnocks: events.reconnect ?? 0, rpcFailures },
      rssMiB: { median: pct(rss, 50), max: rss.at(-1)! }
    }
  } finally {
    await cluster.stopAll()
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.argv[2] ?? 50)
  benchNetnsCluster(n, line => { console.log(line) }).then(r => {
    console.log(JSON.stringify(r, null, 2))
    process.exit(0)
  }, (err: unknown) => { console.error(err); process.exit(1) })
}
