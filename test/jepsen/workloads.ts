/**
 * The workloads: what each client worker does, and the final reads after the heal.
 *
 *  set       unique ids `s<process>-<n>` added at QUORUM; now and then a QUORUM read of an id the
 *            worker added (value: present or not); finally every attempted id read at ALL.
 *  register  keys sw<i> (written only by register worker i % workers, read by everyone) and mw<i>
 *            (written by everyone); unique integer values; writes and reads at QUORUM; finally
 *            every key read at ALL.
 *  queries   not implemented: the query layer does not exist yet.
 */
import type { PeerProcess } from '../cluster/index.js'
import { Session, type ShoalClient, type Outcome } from './client.js'
import type { History, Op, Workload } from './history.js'

export const SET_SPACE = 'jepsen_set'
export const REGISTER_SPACE = 'jepsen_register'
export const SCHEMAS: Record<Workload, Array<{ name: string, type: string }>> = {
  set: [{ name: 'id', type: 'utf8' }],
  register: [{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int64' }]
}

export interface WorkerContext {
  history: History
  client: ShoalClient
  /** Peers a client may send to: the ones whose process exists (paused ones included: a client cannot tell). */
  coordinators: () => PeerProcess[]
  random: () => number
  stopped: () => boolean
  /** Pause between a worker's operations, ms. */
  thinkMs: number
}

function pick<T> (xs: readonly T[], r: () => number): T | undefined {
  return xs.length === 0 ? undefined : xs[Math.floor(r() * xs.length)]
}

async function sleep (ms: number): Promise<void> { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Records invoke, runs, records the completion. */
export async function perform (ctx: WorkerContext, process: number | string, invoke: Omit<Op, 'index' | 'time' | 'process' | 'type' | 'coordinator'>,
  coordinator: PeerProcess, run: () => Promise<Outcome>, complete: (o: Outcome & { type: 'ok' }) => Partial<Op>): Promise<Outcome> {
  const inv = ctx.history.add({ ...invoke, process, type: 'invoke', coordinator: coordinator.name })
  const o = await run()
  const time = ctx.history.now()
  const base = { ...invoke, process, coordinator: coordinator.name, time, latencyMs: Math.round((time - inv.time) * 10) / 10 }
  if (o.type === 'ok') ctx.history.add({ ...base, type: 'ok', ...complete(o) })
  else ctx.history.add({ ...base, type: o.type, error: o.error })
  return o
}

export async function setWorker (ctx: WorkerContext, process: number): Promise<void> {
  let n = 0
  const acked: string[] = []
  const session = new Session()
  while (!ctx.stopped()) {
    const coord = pick(ctx.coordinators(), ctx.random)
    if (coord === undefined) { await sleep(100); continue }
    if (acked.length > 0 && ctx.random() < 0.15) {
      const id = pick(acked, ctx.random)!
      await perform(ctx, process, { f: 'read', workload: 'set', key: id, value: null }, coord,
        async () => await ctx.client.read(coord.url, SET_SPACE, id, 'quorum', undefined, session.newest),
        o => ({ value: o.status === 200, ...(typeof o.body.version === 'number' ? { version: o.body.version } : {}) })).then(o => { session.saw(o) })
    } else {
      const id = `s${process}-${n++}`
      const o = await perform(ctx, process, { f: 'add', workload: 'set', key: id, value: id }, coord,
        async () => await ctx.client.write(coord.url, SET_SPACE, { id }, 'quorum', session.newest),
        o => (typeof o.body.version === 'number' ? { version: o.body.version } : {}))
      session.saw(o)
      if (o.type === 'ok') acked.push(id)
    }
    await sleep(ctx.random() * ctx.thinkMs)
  }
}

export interface RegisterKeys { single: string[], multi: string[] }

export function registerKeys (workers: number, singlePerWorker = 2, multi = 3): RegisterKeys {
  return {
    single: Array.from({ length: workers * singlePerWorker }, (_, i) => `sw${i}`),
    multi: Array.from({ length: multi }, (_, i) => `mw${i}`)
  }
}

/** `index` is this worker's position among the register workers: it writes sw<i> for i % workers === index. */
export async function registerWorker (ctx: WorkerContext, process: number, index: number, workers: number, keys: RegisterKeys): Promise<void> {
  const own = keys.single.filter((_, i) => i % workers === index)
  const all = [...keys.single, ...keys.multi]
  let n = 0
  const session = new Session()
  while (!ctx.stopped()) {
    const coord = pick(ctx.coordinators(), ctx.random)
    if (coord === undefined) { await sleep(100); continue }
    if (ctx.random() < 0.5) {
      const key = ctx.random() < 0.7 && own.length > 0 ? pick(own, ctx.random)! : pick(keys.multi, ctx.random)!
      const value = process * 1_000_000 + (++n)
      session.saw(await perform(ctx, process, { f: 'write', workload: 'register', key, value }, coord,
        async () => await ctx.client.write(coord.url, REGISTER_SPACE, { id: key, v: value }, 'quorum', session.newest),
        o => (typeof o.body.version === 'number' ? { version: o.body.version } : {})))
    } else {
      const key = pick(all, ctx.random)!
      session.saw(await perform(ctx, process, { f: 'read', workload: 'register', key, value: null }, coord,
        async () => await ctx.client.read(coord.url, REGISTER_SPACE, key, 'quorum', undefined, session.newest),
        o => readValue(o)))
    }
    await sleep(ctx.random() * ctx.thinkMs)
  }
}

function readValue (o: Outcome & { type: 'ok' }): Partial<Op> {
  if (o.status === 404) return { value: null }
  const record = o.body.record as { v?: unknown } | undefined
  return { value: record?.v ?? null, ...(typeof o.body.version === 'number' ? { version: o.body.version } : {}) }
}

/**
 * Reads every (workload, id) at ALL, retrying each until it gets an answer (200 or 404) or the
 * deadline passes; `concurrency` single-threaded 'final-<i>' processes share the work.
 */
export async function finalReads (ctx: WorkerContext, items: Array<{ workload: Workload, key: string }>, concurrency: number, deadline: number): Promise<void> {
  let next = 0
  const runner = async (w: number): Promise<void> => {
    for (;;) {
      const item = items[next++]
      if (item === undefined) return
      const space = item.workload === 'set' ? SET_SPACE : REGISTER_SPACE
      for (let attempt = 0; ; attempt++) {
        const coord = pick(ctx.coordinators(), ctx.random)
        if (coord === undefined) { await sleep(200); continue }
        const o = await perform(ctx, `final-${w}`, { f: 'final-read', workload: item.workload, key: item.key, value: null }, coord,
          async () => await ctx.client.read(coord.url, space, item.key, 'all'),
          o => item.workload === 'set'
            ? { value: o.status === 200, ...(typeof o.body.version === 'number' ? { version: o.body.version } : {}) }
            : readValue(o))
        if (o.type === 'ok' || performance.now() > deadline) break
        await sleep(Math.min(1000, 100 * (attempt + 1)))
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => { await runner(w) }))
}
