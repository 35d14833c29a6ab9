/**
 * Histories from the simulator. A simulated client records what it did as SimOps (virtual time
 * in ms, no HTTP); `simHistory` turns them into the history shape of a real run, so the same
 * checkers judge both.
 */
import type { HybridClock } from '../../src/hlc/index.js'
import { PartitionUnavailableError, type Replicator } from '../../src/replication/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import type { SimWorld } from '../sim/index.js'
import type { Op, OpType, Workload } from './history.js'

export interface SimOp {
  process: number | string
  type: OpType
  f: string
  workload: Workload
  key: string
  value: unknown
  /** Virtual ms. */
  time: number
  coordinator?: string
  version?: number
  error?: string
}

export function simHistory (ops: readonly SimOp[]): Op[] {
  return [...ops]
    .map((o, i) => ({ o, i }))
    .sort((a, b) => a.o.time - b.o.time || a.i - b.i)
    .map(({ o }, index) => ({ ...o, index }))
}

/** A coordinator a simulated client can use: a peer's replicator (and hybrid clock, for a session). */
export interface SimCoordinator { id: string, replicator: Replicator, hlc: HybridClock }

export interface SimSetClientOptions {
  world: SimWorld
  /** The peers up now (the client picks one at random per operation; none up: it waits). */
  coordinators: () => readonly SimCoordinator[]
  space: SpaceDef
  ops: SimOp[]
  stopped: () => boolean
  /** Share of operations that remove an id this client added and saw acknowledged (each once). */
  removeRate: number
  /** Pause between operations: thinkMs + up to thinkSpreadMs more (virtual ms). */
  thinkMs: number
  thinkSpreadMs: number
  /**
   * Carry a session (the newest version seen, observed by each coordinator before its write, as
   * the HTTP API's `after`), so a remove is stamped after the add it removes even when the add's
   * coordinator had a clock running ahead. Without it such a remove can lose to its add.
   */
  session: boolean
}

/**
 * The set workload's client in the simulator: adds unique ids (`s<process>-<n>`) and removes
 * acknowledged ones at QUORUM, recording every operation as a SimOp; an answer not in within 3 s
 * is 'info', a PartitionUnavailableError 'fail' (nothing was written).
 */
export async function simSetClient (process: number, o: SimSetClientOptions): Promise<void> {
  const { world, space, ops } = o
  const rnd = world.random
  const outcomeOf = async (p: Promise<unknown>): Promise<'ok' | 'fail' | 'info'> => await Promise.race([
    p.then(() => 'ok' as const, (err: Error) => err instanceof PartitionUnavailableError ? 'fail' as const : 'info' as const),
    new Promise<'info'>(resolve => { world.schedule(3000, () => { resolve('info') }) })
  ])
  let n = 0
  const removable: string[] = []
  let newest = 0
  const seen = async (p: Promise<{ version: number }>): Promise<unknown> => await p.then(r => { newest = Math.max(newest, r.version); return r })
  while (!o.stopped()) {
    const up = o.coordinators()
    if (up.length === 0) {
      await new Promise<void>(resolve => { world.schedule(100, resolve) })
      continue
    }
    const coord = up[rnd.int(up.length)]!
    if (o.session && newest > 0) {
      try {
        coord.hlc.observe(newest)
      } catch {
        // The coordinator's clock is too far behind the session: its operation will be refused.
      }
    }
    if (removable.length > 0 && rnd.next() < o.removeRate) {
      const id = removable.splice(rnd.int(removable.length), 1)[0]!
      ops.push({ process, type: 'invoke', f: 'remove', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
      const outcome = await outcomeOf(seen(coord.replicator.remove(space, [id], { consistency: 'quorum', timeoutMs: 1000 })))
      ops.push({ process, type: outcome, f: 'remove', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
    } else {
      const id = `s${process}-${n++}`
      ops.push({ process, type: 'invoke', f: 'add', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
      const outcome = await outcomeOf(seen(coord.replicator.write(space, [{ id, v: 1 }], { consistency: 'quorum', timeoutMs: 1000 })))
      ops.push({ process, type: outcome, f: 'add', workload: 'set', key: id, value: id, time: world.now(), coordinator: coord.id })
      if (outcome === 'ok') removable.push(id)
    }
    await new Promise<void>(resolve => { world.schedule(o.thinkMs + rnd.int(o.thinkSpreadMs), resolve) })
  }
}
