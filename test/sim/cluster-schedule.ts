/**
 * One seeded schedule of a whole cluster in the simulator: five peers (real Swim, Catalog,
 * PartitionDetector, PlacementService, Replicator and StorageEngine, each engine on its own
 * simulated disk), two set clients adding ids and removing acknowledged ones at QUORUM through
 * random coordinators, and a nemesis taking fault windows in turn from the kinds asked:
 *
 *   partition  random halves, or one peer isolated (world.partition); a third of them one-way
 *   kill       kill -9 of one or two peers (the page cache survives), restarted at the window's end
 *   power      a power cut of one or two peers, or now and then of all five (unsynced writes
 *              lost), restarted at the window's end
 *   disk       one peer's disk fails: fsync of its WAL files EIO, or full (ENOSPC); healed at the end
 *   clock      one peer's wall clock skewed by up to ±2 s (HLC timestamps), reset at the end
 *   membership a new peer joins (and stays), or one decommissions (hands its partitions off,
 *              leaves, stops) and rejoins on its disk at the window's end
 *   pause      one or two peers run nothing for 1-5 s (a GC pause, a loaded machine): their
 *              timers and deliveries wait, then run in order
 *   drop       a second space, written by its own client, is dropped and created again (same
 *              name, new uid) while one peer is down; the peer comes back at the window's end
 *
 * At the end of every window, right after its heal and before anything has converged, a sample
 * of the acknowledged ids is read at ALL through random peers: a read that answers must see every
 * add acknowledged before it (a partition whose holders had all restarted once answered from the
 * owner holding least, a Jepsen ci-kills run). After the last window everything heals, every peer
 * runs, the cluster settles, and every id ever attempted is read at ALL; the history goes through
 * the Jepsen set checker (no lost acknowledged add, no undone acknowledged remove, nothing
 * unexpected, no read missing an acknowledged add). The dropped space: no disk keeps data of a
 * dropped uid, every write acknowledged into the space as it is now is there, and none written
 * into an earlier one came back into it. Same seed, same run.
 */
import type { SpaceDef } from '../../src/schema/index.js'
import { checkSet } from '../jepsen/checkers/index.js'
import { simHistory, simSetClient, type SimOp } from '../jepsen/sim.js'
import { SimWorld } from './index.js'
import { WholeCluster, spaceOn } from './placement-replication-cluster.js'
import { drive } from './replication-cluster.js'

export const CLUSTER_FAULTS = ['partition', 'kill', 'power', 'disk', 'clock', 'membership', 'pause', 'drop'] as const
export type ClusterFault = typeof CLUSTER_FAULTS[number]

export interface ClusterScheduleOptions {
  seed: number
  faults?: readonly ClusterFault[]
  /** Fault windows (each followed by a quiet period). Default 4. */
  windows?: number
}

export interface ClusterScheduleResult {
  seed: number
  ok: boolean
  violations: string[]
  stats: { acknowledged: number, removes: number, lost: number, resurrected: number, unexpected: number, staleReads: number, reads: number, windows: string[], virtualMs: number }
}

const NAMES = ['p0', 'p1', 'p2', 'p3', 'p4']
const WINDOW_MS = 6_000
const QUIET_MS = 4_000
/** The space the drop windows drop and create again. */
const SCRATCH = { name: 'scratch', schema: [{ name: 'v', type: 'int32' as const, nullable: true }], partitions: 4, replicas: 3 }
/** Acknowledged ids read back at ALL right after each window's heal. */
const READ_BACK = 30

export async function runClusterSchedule (opts: ClusterScheduleOptions): Promise<ClusterScheduleResult> {
  // Storage yields with setImmediate: the world waits for real macrotasks between events.
  const world = new SimWorld({ seed: opts.seed, flush: 'always' })
  const rnd = world.random
  const kinds = [...(opts.faults ?? CLUSTER_FAULTS)]
  const c = new WholeCluster(world, {
    swim: { pushPullIntervalMs: 5_000, reconnectIntervalMs: 2_000 },
    placement: { deadOwnerTimeoutMs: 60_000 },
    replication: { antiEntropyIntervalMs: 1000, hintReplayIntervalMs: 1000, requestTimeoutMs: 1000, catchUpRetryMs: 1000, diskProbeMinMs: 500, diskProbeMaxMs: 2000 },
    disks: {}
  })
  c.add('p0')
  for (const id of NAMES.slice(1)) c.add(id, 'p0')
  c.get('p0').catalog.create({ name: 'jset', schema: [{ name: 'v', type: 'int32', nullable: true }], partitions: 8, replicas: 3 })
  if (!await world.runUntil(() => c.up().length === NAMES.length && c.settled('jset'), { maxMs: 60_000, checkEveryMs: 100 })) {
    return failed(opts.seed, 'the cluster did not form')
  }
  const space: SpaceDef = spaceOn(c.get('p0'), 'jset')
  // The space the drop windows drop and create again, and the writes acknowledged into each of its uids.
  c.get('p0').catalog.create(SCRATCH)
  const scratchAcked = new Map<string, Set<string>>()
  const droppedUids = new Set<string>()

  const ops: SimOp[] = []
  let stop = false
  const client = async (process: number): Promise<void> => {
    await simSetClient(process, { world, coordinators: () => c.up(), space, ops, stopped: () => stop, removeRate: 0.3, thinkMs: 20, thinkSpreadMs: 60, session: true })
  }
  /** Writes unique ids into the scratch space as each coordinator knows it now (its uid recorded with the ack). */
  const scratchClient = async (): Promise<void> => {
    let n = 0
    while (!stop) {
      const up = c.up()
      const coord = up[rnd.int(up.length)]
      const def = coord?.catalog.get(SCRATCH.name)
      if (coord !== undefined && def !== undefined) {
        const id = `x${n++}`
        const ok = await Promise.race([
          coord.replicator.write(def, [{ id, v: 1 }], { consistency: 'quorum', timeoutMs: 1000 }).then(() => true, () => false),
          new Promise<false>(resolve => { world.schedule(3000, () => { resolve(false) }) })
        ])
        if (ok) {
          let set = scratchAcked.get(def.uid)
          if (set === undefined) { set = new Set(); scratchAcked.set(def.uid, set) }
          set.add(id)
        }
      }
      await new Promise<void>(resolve => { world.schedule(40 + rnd.int(80), resolve) })
    }
  }
  const running = [client(0), client(1), scratchClient()]
  const nemesis = (f: string, value: unknown): void => { ops.push({ process: 'nemesis', type: 'info', f, workload: 'set', key: '', value, time: world.now() }) }
  /** The peers of the cluster now (joins add to it). */
  const members = [...NAMES]
  const minority = (): string[] => [...members].sort(() => rnd.next() - 0.5).slice(0, 1 + rnd.int(2))
  const windows: string[] = []
  /**
   * Reads up to READ_BACK acknowledged, never-removed ids at ALL, each through a random up peer,
   * as 'read' ops: the set checker counts a read invoked after its add was acknowledged that did
   * not see it (stale). Reads that fail (a partition unavailable, a replica unreachable) say
   * nothing and are not counted.
   */
  const readBack = async (): Promise<void> => {
    const removed = new Set(ops.filter(o => o.f === 'remove').map(o => o.key))
    const acked = [...new Set(ops.filter(o => o.f === 'add' && o.type === 'ok' && !removed.has(o.key)).map(o => o.key))]
    for (let i = 0; i < READ_BACK && acked.length > 0; i++) {
      const id = acked[rnd.int(acked.length)]!
      const up = c.up()
      const coord = up[rnd.int(up.length)]
      if (coord === undefined) return
      ops.push({ process: 'reader', type: 'invoke', f: 'read', workload: 'set', key: id, value: null, time: world.now(), coordinator: coord.id })
      try {
        const r = await drive(world, coord.replicator.read(space, id, { consistency: 'all' }), 10_000)
        ops.push({ process: 'reader', type: 'ok', f: 'read', workload: 'set', key: id, value: r.record !== undefined, time: world.now(), coordinator: coord.id })
      } catch (err) {
        ops.push({ process: 'reader', type: 'fail', f: 'read', workload: 'set', key: id, value: null, time: world.now(), coordinator: coord.id, error: (err as Error).message })
      }
    }
  }

  await world.run(2_000)
  for (let w = 0; w < (opts.windows ?? 4) && kinds.length > 0; w++) {
    const kind = kinds[rnd.int(kinds.length)]!
    let heal: () => Promise<void>
    if (kind === 'partition') {
      const shuffled = [...members].sort(() => rnd.next() - 0.5)
      const cut = rnd.next() < 0.5 ? 1 : 2
      const oneWay = rnd.next() < 0.3
      world.partition(shuffled.slice(0, cut), shuffled.slice(cut), { oneWay })
      windows.push(`partition ${shuffled.slice(0, cut).join(',')} ${oneWay ? '->' : '|'} ${shuffled.slice(cut).join(',')}`)
      heal = async () => { world.heal() }
    } else if (kind === 'kill' || kind === 'power') {
      // A power cut now and then takes the whole cluster (one feed): what was acknowledged must
      // come back from the disks alone.
      const hit = kind === 'power' && rnd.next() < 0.3 ? [...members] : minority()
      for (const id of hit) c.crash(id, { powerLoss: kind === 'power' })
      windows.push(`${kind} ${hit.join(',')}`)
      heal = async () => {
        const first = members.find(n => !hit.includes(n))
        for (const id of hit) c.add(id, first ?? (id === hit[0] ? undefined : hit[0]))
      }
    } else if (kind === 'disk') {
      const id = members[rnd.int(members.length)]!
      const disk = c.disks.get(id)!
      const full = rnd.next() < 0.5
      if (full) disk.capacityBytes = disk.used + rnd.int(16_384)
      else disk.fail({ op: 'sync', code: 'EIO', path: /wal-/ })
      windows.push(`disk ${id} ${full ? 'full' : 'fsync EIO'}`)
      heal = async () => {
        disk.clearFaults()
        disk.capacityBytes = Number.POSITIVE_INFINITY
        // A disk that kept failing (EIO) through 3 rebuilds in a row is given up until the peer
        // restarts on a working disk (docs/operations.md): the operator's move, made here.
        const n = c.get(id)
        if (n.peer.up && n.replicator.ioRebuildsGivenUp().length > 0) {
          c.crash(id)
          c.add(id, members.find(x => x !== id))
        }
      }
    } else if (kind === 'membership') {
      if (rnd.next() < 0.5) {
        // A new peer joins and stays: partitions move to it while the clients write.
        const id = `p${members.length}`
        c.add(id, members[rnd.int(members.length)])
        members.push(id)
        windows.push(`join ${id}`)
        heal = async () => {}
      } else {
        // A peer decommissions as SIGTERM does (hand off, leave, last push, stop), and comes back.
        const id = members[rnd.int(members.length)]!
        const node = c.get(id)
        windows.push(`decommission ${id}`)
        try {
          await drive(world, node.replicator.handOff({ timeoutMs: 5_000 }), 20_000)
          await drive(world, node.swim.leave(2_000), 10_000)
          await drive(world, node.replicator.finishHandOff({ timeoutMs: 2_000 }), 10_000)
        } catch (err) {
          return failed(opts.seed, `the decommission of ${id} did not settle: ${(err as Error).message}`, windows)
        }
        c.crash(id)
        heal = async () => { c.add(id, members.find(x => x !== id)) }
      }
    } else if (kind === 'drop') {
      // One peer is away while the space is dropped and created again: it comes back holding
      // the old uid's data (and maybe hints for it), which must not return.
      const away = members[rnd.int(members.length)]!
      c.crash(away)
      const by = members.filter(x => x !== away)[rnd.int(members.length - 1)]!
      const old = c.get(by).catalog.get(SCRATCH.name)
      await world.run(500 + rnd.int(1500))
      if (old !== undefined && c.get(by).peer.up) {
        c.get(by).catalog.drop(SCRATCH.name)
        droppedUids.add(old.uid)
        await world.run(rnd.int(2000))
        c.get(by).catalog.create(SCRATCH)
      }
      windows.push(`drop ${SCRATCH.name} by ${by}, ${away} away`)
      heal = async () => { c.add(away, members.find(x => x !== away)) }
    } else if (kind === 'pause') {
      const hit = minority()
      for (const id of hit) world.stall(id, 1_000 + rnd.int(4_000))
      windows.push(`pause ${hit.join(',')}`)
      heal = async () => {}
    } else {
      const id = members[rnd.int(members.length)]!
      const offsetMs = (rnd.next() < 0.5 ? -1 : 1) * (200 + rnd.int(1800))
      world.setClockSkew(id, offsetMs)
      windows.push(`clock ${id} ${offsetMs} ms`)
      heal = async () => { world.setClockSkew(id, 0) }
    }
    nemesis(`start-${kind}`, windows[windows.length - 1])
    await world.run(WINDOW_MS)
    await heal()
    nemesis(`stop-${kind}`, null)
    await readBack()
    await world.run(QUIET_MS)
  }
  stop = true
  try {
    await drive(world, Promise.all(running), 30_000)
  } catch (err) {
    return failed(opts.seed, `the clients did not stop: ${(err as Error).message}`, windows)
  }
  if (!await world.runUntil(() => c.up().length === members.length && c.settled('jset') && c.settled(SCRATCH.name) && c.announced(space), { maxMs: 120_000, checkEveryMs: 200 })) {
    return failed(opts.seed, `the cluster did not settle after the heal: ${unsettled(c, space).join('; ')}`, windows)
  }
  const attempted = [...new Set(ops.filter(o => o.f === 'add').map(o => o.key))]
  for (const id of attempted) {
    ops.push({ process: 'final', type: 'invoke', f: 'final-read', workload: 'set', key: id, value: null, time: world.now() })
    try {
      const r = await drive(world, c.get(members[rnd.int(members.length)]!).replicator.read(space, id, { consistency: 'all' }), 30_000)
      ops.push({ process: 'final', type: 'ok', f: 'final-read', workload: 'set', key: id, value: r.record !== undefined, time: world.now() })
    } catch (err) {
      return failed(opts.seed, `final read of ${id} at ALL failed: ${(err as Error).message}`, windows)
    }
  }
  const violations: string[] = []
  // The scratch space: its current uid holds what was acknowledged into it and nothing written
  // into an earlier one; no disk keeps a dropped uid's data once its peer has gone through it.
  const scratch = c.get(members[0]!).catalog.get(SCRATCH.name)
  if (scratch !== undefined && c.settled(SCRATCH.name)) {
    const current = scratchAcked.get(scratch.uid) ?? new Set<string>()
    const earlier = new Set([...scratchAcked].filter(([uid]) => uid !== scratch.uid).flatMap(([, ids]) => [...ids]).filter(id => !current.has(id)))
    for (const [id, want] of [...[...current].map(id => [id, true] as const), ...[...earlier].slice(0, 200).map(id => [id, false] as const)]) {
      try {
        const r = await drive(world, c.get(members[rnd.int(members.length)]!).replicator.read(scratch, id, { consistency: 'all' }), 30_000)
        if ((r.record !== undefined) !== want) violations.push(want ? `scratch: acknowledged write ${id} missing` : `scratch: ${id}, written into a dropped uid, is back in the new one`)
      } catch (err) {
        violations.push(`scratch: the final read of ${id} at ALL failed: ${(err as Error).message}`)
      }
      if (violations.length > 10) break
    }
  } else {
    violations.push('scratch: the space did not settle after the heal')
  }
  for (const n of c.up()) {
    const onDisk = await drive(world, n.engine!.listOnDisk())
    const kept = [...new Set(onDisk.filter(r => droppedUids.has(r.uid)).map(r => r.uid))]
    if (kept.length > 0) violations.push(`${n.id} keeps data of dropped space uid ${kept.join(', ')}`)
  }
  for (const n of c.up()) await n.engine?.close().catch(() => {})
  const result = checkSet(simHistory(ops))
  if (result.lost.length > 0) violations.push(`lost acknowledged adds: ${result.lost.slice(0, 10).join(', ')}`)
  if (result.resurrected.length > 0) violations.push(`undone acknowledged removes: ${result.resurrected.slice(0, 10).join(', ')}`)
  if (result.unexpected.length > 0) violations.push(`unexpected ids: ${result.unexpected.slice(0, 10).join(', ')}`)
  if (result.stale.length > 0) violations.push(`reads at ALL missed acknowledged adds: ${result.stale.slice(0, 10).map(r => `${r.id} (acked ${r.ackedAt} ms, read ${r.readAt} ms)`).join(', ')}`)
  if (!result.valid && violations.length === 0) violations.push('the set checker found the history invalid')
  return {
    seed: opts.seed,
    ok: violations.length === 0,
    violations,
    stats: { acknowledged: result.acknowledged, removes: result.removes.ok, lost: result.lost.length, resurrected: result.resurrected.length, unexpected: result.unexpected.length, staleReads: result.stale.length, reads: result.reads, windows, virtualMs: world.now() }
  }
}

function failed (seed: number, why: string, windows: string[] = []): ClusterScheduleResult {
  return { seed, ok: false, violations: [why], stats: { acknowledged: 0, removes: 0, lost: 0, resurrected: 0, unexpected: 0, staleReads: 0, reads: 0, windows, virtualMs: 0 } }
}

/** Why `c` is not settled, peer by peer: for a failing seed's report. */
function unsettled (c: WholeCluster, space: SpaceDef): string[] {
  const out: string[] = []
  const up = c.up().map(n => n.id).sort().join(',')
  for (const n of c.up()) {
    if (n.catalog.get(space.name) === undefined) out.push(`${n.id} does not know ${space.name}`)
    const alive = n.swim.members().filter(m => m.state === 'alive').map(m => m.id).sort().join(',')
    if (alive !== up) out.push(`${n.id} sees alive ${alive}`)
    const notReady = n.placement.ownedPartitions().filter(o => !n.replicator.isReady(o.space, o.partition)).map(o => o.partition)
    if (notReady.length > 0) {
      const failures = n.engine?.failures().map(f => `${f.partition}:${f.code}`) ?? []
      out.push(`${n.id} owns ${notReady.join(',')} not ready${failures.length > 0 ? ` (disk failures ${failures.join(',')})` : ''}; given up ${JSON.stringify(n.replicator.ioRebuildsGivenUp().map(g => g.partition))}, disk waiting ${JSON.stringify(n.replicator.diskWaiting().map(d => d.partition))}`)
    }
    const pp = [...Array(space.partitions).keys()].map(p => n.placement.locate(space, p)).filter(p => p.fresh || [...p.readReplicas].sort().join() !== [...p.owners].sort().join())
    if (pp.length > 0) out.push(`${n.id}: ${pp.length} partitions not announced`)
  }
  return out
}
