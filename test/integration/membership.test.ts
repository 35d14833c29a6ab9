import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestCluster, waitFor, type MemberJson, type PeerProcess } from '../cluster/index.js'

/**
 * Real `shoal start` processes on 127.0.0.1: five peers join through one bootstrap address, then
 * a crash, a cut-off and heal, and a stranger with another swarm key, as DESIGN.md promises.
 */
/** A peer's log as JSON lines (pino: level 30 info, 40 warn). */
async function logLines (p: PeerProcess): Promise<Array<Record<string, unknown>>> {
  return (await p.logs()).split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
}

describe('a five-peer cluster of real processes', () => {
  let cluster: TestCluster
  const peers: PeerProcess[] = []

  const stateOf = (members: MemberJson[], peerId: string): string | undefined => members.find(m => m.peerId === peerId)?.state
  const describeViews = async (): Promise<string> => {
    const views = await Promise.all(peers.filter(p => p.running).map(async p => `${p.name}: ${JSON.stringify((await p.members().catch(() => [])).map(m => `${m.name}=${m.state}`))}`))
    return views.join('\n')
  }

  beforeAll(async () => {
    cluster = await TestCluster.create()
    const first = await cluster.startPeer('p0')
    peers.push(first)
    // Half join with the peer id in the address, half without: both must work.
    // p4's libp2p connection cap (18: 2 other members with the 16 spare) is under the cluster's 4:
    // it says so once the others are in (its 4 connections stay well within the cap itself).
    const started = await Promise.all([1, 2, 3, 4].map(async i => await cluster.startPeer(`p${i}`, { bootstrap: [first.multiaddr(i % 2 === 0)], ...(i === 4 ? { extraArgs: ['--max-peer-connections', '18'] } : {}) })))
    peers.push(...started)
  })

  afterAll(async () => {
    await cluster?.stopAll()
  })

  it('every peer sees all five members alive after joining through one bootstrap address', async () => {
    await waitFor(async () => {
      const views = await Promise.all(peers.map(async p => await p.members()))
      return views.every(v => v.length === 5 && v.every(m => m.state === 'alive'))
    }, { timeoutMs: 15_000, describe: describeViews })
    // A cap the cluster has outgrown is named, once, with what to raise; a default cap is not.
    const capWarnings = async (p: PeerProcess): Promise<Array<Record<string, unknown>>> => (await logLines(p)).filter(l => typeof l.msg === 'string' && l.msg.includes('libp2p connection cap of'))
    await waitFor(async () => (await capWarnings(peers[4]!)).length > 0, { timeoutMs: 10_000, describe: async () => (await peers[4]!.logs()).slice(-2000) })
    const [warning] = await capWarnings(peers[4]!)
    expect(warning).toMatchObject({ level: 40, maxPeerConnections: 18 })
    expect(String(warning!.msg)).toMatch(/Raise maxPeerConnections \(--max-peer-connections, SHOAL_MAX_PEER_CONNECTIONS\)/)
    expect(await capWarnings(peers[4]!)).toHaveLength(1)
    expect(await capWarnings(peers[0]!)).toEqual([])
    // Green once every member is alive and nobody suspects anyone. On a loaded 2-core CI machine a
    // probe can time out just after the join and make one peer suspect for a moment (a CI run saw
    // yellow here), so wait for green rather than read it once.
    await waitFor(async () => (await peers[0]!.health()).status === 'green', {
      timeoutMs: 15_000,
      describe: async () => `${JSON.stringify(await peers[0]!.health())}\n${await describeViews()}`
    })
    expect((await peers[0]!.health()).majority).toBe(true)
    const names = (await peers[3]!.members()).map(m => m.name).sort()
    expect(names).toEqual(['p0', 'p1', 'p2', 'p3', 'p4'])
  })

  it('marks a peer killed with kill -9 as dead on every other peer', async () => {
    const victim = peers[4]!
    await victim.kill('SIGKILL')
    const tookMs = await waitFor(async () => {
      const views = await Promise.all(peers.slice(0, 4).map(async p => await p.members()))
      return views.every(v => stateOf(v, victim.peerId) === 'dead')
    }, { timeoutMs: 20_000, describe: describeViews })
    console.log(`kill -9 detected as dead by all 4 survivors in ${tookMs} ms`)
    // Four of five in the stable cluster are reachable: still a majority, but not all replicas.
    const health = await peers[0]!.health()
    expect(health.majority).toBe(true)
    expect(health.status).toBe('yellow')
    // GET /cluster/health names it as its operator started it, beside its id.
    const clusterHealth = await peers[0]!.get('/cluster/health') as { partitionDetector: { unreachablePeers: Array<{ peerId: string, name: string | null }> } }
    expect(clusterHealth.partitionDetector.unreachablePeers).toContainEqual({ peerId: victim.peerId, name: victim.name })
    // Every survivor says so in its log, at warn, by name and id (lines reach the file a moment after).
    for (const p of peers.slice(0, 4)) {
      await waitFor(async () => (await logLines(p)).some(l => l.level === 40 && l.component === 'membership' && l.msg === 'member dead' && l.member === victim.name && l.peerId === victim.peerId), { timeoutMs: 5_000 })
    }
  })

  it('welcomes a killed peer back when it restarts on its data dir, with a higher incarnation', async () => {
    const victim = peers[4]!
    const before = (await peers[0]!.members()).find(m => m.peerId === victim.peerId)!
    await cluster.restart(victim.name)
    // Same data dir, same key: the same member, not a stranger with a new id.
    expect((await victim.health()).peer).toBe(before.peerId)
    // It says "ready" once its partitions are recovered and caught up, in its health and in the
    // log of this life (the lines after its 'open-file budget', logged once at start; they reach
    // the file a moment after they are written).
    await waitFor(async () => (await victim.health() as { ready?: boolean }).ready === true, { timeoutMs: 20_000 })
    const readyThisLife = async (): Promise<boolean> => {
      const msgs = (await logLines(victim)).map(l => l.msg)
      return msgs.slice(msgs.lastIndexOf('open-file budget')).includes('ready: every partition this peer owns is recovered and caught up')
    }
    await waitFor(readyThisLife, { timeoutMs: 10_000 })
    await waitFor(async () => {
      const views = await Promise.all(peers.map(async p => await p.members()))
      return views.every(v => v.length === 5 && v.every(m => m.state === 'alive'))
    }, { timeoutMs: 20_000, describe: describeViews })
    const after = (await peers[0]!.members()).find(m => m.peerId === victim.peerId)!
    expect(after.incarnation).toBeGreaterThan(before.incarnation)
    // And every survivor logs its return, at info, with its new incarnation.
    for (const p of peers.slice(0, 4)) {
      await waitFor(async () => (await logLines(p)).some(l => l.msg === 'member rejoined' && l.member === victim.name && (l.incarnation as number) > before.incarnation), { timeoutMs: 10_000 })
    }
  })

  it('reports majority: false on a peer cut off with /admin/faults, and rejoins after the heal', async () => {
    const isolated = peers[3]!
    const others = peers.filter(p => p !== isolated)
    await isolated.deny(others.map(p => p.peerId))
    // Dead declarations, then a view stable for the detector's 10 s window: on a loaded machine
    // Lifeguard stretches the first part (the isolated peer's local health score climbs).
    await waitFor(async () => (await isolated.health()).majority === false, { timeoutMs: 40_000, describe: async () => JSON.stringify(await isolated.health()) })
    // The others keep their majority (4 of 5 reachable) and stop seeing the isolated peer alive.
    await waitFor(async () => {
      const views = await Promise.all(others.map(async p => await p.members()))
      return views.every(v => stateOf(v, isolated.peerId) !== 'alive')
    }, { timeoutMs: 20_000, describe: describeViews })
    expect((await others[0]!.health()).majority).toBe(true)

    await isolated.deny([])
    const tookMs = await waitFor(async () => {
      if ((await isolated.health()).majority !== true) return false
      const views = await Promise.all([isolated, ...others].map(async p => await p.members()))
      return views.every(v => [isolated, ...others].every(p => stateOf(v, p.peerId) === 'alive'))
    }, { timeoutMs: 30_000, describe: describeViews })
    console.log(`cut-off peer rejoined ${tookMs} ms after the heal`)
  }, 120_000)

  it('never admits a peer with a different swarm key', async () => {
    const otherCluster = await TestCluster.create()
    try {
      const stranger = await otherCluster.startPeer('stranger', { bootstrap: [peers[0]!.multiaddr()] })
      // Give it several join retries and anti-entropy rounds.
      await new Promise(resolve => setTimeout(resolve, 3000))
      for (const p of peers) {
        const members = await p.members()
        expect(members.find(m => m.peerId === stranger.peerId)).toBeUndefined()
      }
      const strangerView = await stranger.members()
      expect(strangerView.map(m => m.peerId)).toEqual([stranger.peerId])
    } finally {
      await otherCluster.stopAll()
    }
  })
})
