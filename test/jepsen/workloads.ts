/**
 * The workloads: what each client worker does, and the final reads after the heal.
 *
 *  set       unique ids `s<process>-<n>` added at QUORUM; now and then a QUORUM read of an id the
 *            worker added (value: present or not), and, with setRemoveRate > 0, a remove at
 *            QUORUM of an id whose add was acknowledged (each id removed once); finally every
 *            attempted id read at ALL.
 *  register  keys sw<i> (written only by register worker i % workers, read by everyone) and mw<i>
 *            (written by everyone); unique integer values; writes and reads at QUORUM; finally
 *            every key read at ALL.
 *  queries   before the faults, a fixed dataset (`rows` records q<i> with an int64 v in 0..999 and
 *            a utf8 g of 5 groups) is loaded at ALL into its own space, each batch retried until
 *            acknowledged; the load's completion records the exact answers per partition. Workers
 *            then ask `SELECT count(*), sum(v)` and the same GROUP BY g through random peers, with
 *            allowPartial true or false at random; after the heal every peer is asked both with
 *            allowPartial false until it answers (final queries).
 */
import type { PeerProcess } from '../cluster/index.js'
import { partitionOfId } from '../../src/placement/hash.js'
import type { QueriesDataset, QueryName } from './checkers/queries.js'
import { request, Session, type ShoalClient, type Outcome, type QueryOutcome } from './client.js'
import type { History, Op, Workload } from './history.js'

export const SET_SPACE = 'jepsen_set'
export const REGISTER_SPACE = 'jepsen_register'
export const QUERIES_SPACE = 'jepsen_queries'
export const SPACES: Record<Workload, string> = { set: SET_SPACE, register: REGISTER_SPACE, queries: QUERIES_SPACE }
export const SCHEMAS: Record<Workload, Array<{ name: string, type: string }>> = {
  set: [{ name: 'id', type: 'utf8' }],
  register: [{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int64' }],
  queries: [{ name: 'g', type: 'utf8' }, { name: 'v', type: 'int64' }]
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
  /** Fraction of set operations that remove an id the worker added (and saw acknowledged); default 0. */
  setRemoveRate?: number
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
  const removable: string[] = []
  const session = new Session()
  while (!ctx.stopped()) {
    const coord = pick(ctx.coordinators(), ctx.random)
    if (coord === undefined) { await sleep(100); continue }
    const removeRate = ctx.setRemoveRate ?? 0
    if (removeRate > 0 && removable.length > 0 && ctx.random() < removeRate) {
      // Each acknowledged id is removed at most once (a swap-remove from those not yet removed).
      const k = Math.floor(ctx.random() * removable.length)
      const id = removable[k]!
      removable[k] = removable[removable.length - 1]!
      removable.pop()
      session.saw(await perform(ctx, process, { f: 'remove', workload: 'set', key: id, value: id }, coord,
        async () => await ctx.client.remove(coord.url, SET_SPACE, id, 'quorum', session.newest),
        o => (typeof o.body.version === 'number' ? { version: o.body.version } : {})))
    } else if (acked.length > 0 && ctx.random() < 0.15) {
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
      if (o.type === 'ok') { acked.push(id); removable.push(id) }
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
      const space = SPACES[item.workload]
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

// ------------------------------------------------------------------------------------ queries

export const QUERY_GROUPS = ['a', 'b', 'c', 'd', 'e']
export const QUERY_SQL: Record<QueryName, string> = {
  total: `SELECT count(*) AS n, sum(v) AS s FROM ${QUERIES_SPACE}`,
  groups: `SELECT g, count(*) AS n, sum(v) AS s FROM ${QUERIES_SPACE} GROUP BY g ORDER BY g`
}

/** The queries workload's fixed dataset and its exact answers per partition. */
export function queriesDataset (rows: number, partitions: number): { records: Array<{ id: string, g: string, v: number }>, dataset: QueriesDataset } {
  const records = Array.from({ length: rows }, (_, i) => ({ id: `q${i}`, g: QUERY_GROUPS[i % QUERY_GROUPS.length]!, v: (i * 7919 + 17) % 1000 }))
  const byPartition = Array.from({ length: partitions }, (_, partition) => ({ partition, groups: {} as Record<string, { n: number, s: number }> }))
  for (const r of records) {
    const groups = byPartition[partitionOfId(r.id, partitions)]!.groups
    const a = groups[r.g] ?? (groups[r.g] = { n: 0, s: 0 })
    a.n++
    a.s += r.v
  }
  return { records, dataset: { space: QUERIES_SPACE, rows, partitions, byPartition } }
}

/**
 * Loads the dataset at ALL, batch by batch through random peers, retrying each batch until it is
 * acknowledged (every replica holds it) or the deadline passes (then throws). Recorded as one
 * 'load' operation of process 'load', whose completion holds the dataset's known answers. Then
 * checks, through /query/explain, that the server maps ids to the partitions this suite assumes.
 */
export async function loadQueries (ctx: WorkerContext, rows: number, partitions: number, deadline: number, batchSize = 500): Promise<QueriesDataset> {
  const { records, dataset } = queriesDataset(rows, partitions)
  const inv = ctx.history.add({ process: 'load', type: 'invoke', f: 'load', workload: 'queries', key: QUERIES_SPACE, value: { rows, partitions } })
  let attempts = 0
  let lastError = ''
  const finish = (type: 'ok' | 'info', extra: Partial<Op>): void => {
    const time = ctx.history.now()
    ctx.history.add({ process: 'load', type, f: 'load', workload: 'queries', key: QUERIES_SPACE, value: { rows, partitions }, time, latencyMs: Math.round((time - inv.time) * 10) / 10, ...extra })
  }
  for (let from = 0; from < records.length; from += batchSize) {
    const batch = records.slice(from, from + batchSize)
    for (let attempt = 0; ; attempt++) {
      const coord = pick(ctx.coordinators(), ctx.random)
      if (coord === undefined) { await sleep(200); continue }
      attempts++
      const o = await request(`${coord.url}/spaces/${QUERIES_SPACE}/records?consistency=all&timeoutMs=8000`, { method: 'POST', body: JSON.stringify(batch) }, 10_000, false)
      if (o.type === 'ok') break
      lastError = `${coord.name}: ${o.status} ${o.error}`
      if (performance.now() > deadline) {
        finish('info', { error: `load: batch ${from} not acknowledged at ALL after ${attempt + 1} attempts (${lastError})` })
        throw new Error(`queries workload: could not load batch ${from}..${from + batch.length - 1} at ALL (${lastError})`)
      }
      await sleep(Math.min(1000, 100 * (attempt + 1)))
    }
  }
  // Where the partitions are (peer names), for reading the history: which coordinator could reach a replica of each.
  let placement: Record<string, string[]> | undefined
  try {
    const coord = pick(ctx.coordinators(), ctx.random)!
    const names = new Map(ctx.coordinators().map(p => [p.peerId, p.name]))
    const desc = await (await fetch(`${coord.url}/spaces/${QUERIES_SPACE}`, { signal: AbortSignal.timeout(10_000) })).json() as { placement?: Array<{ partition: number, owners: string[] }> }
    placement = Object.fromEntries((desc.placement ?? []).map(pl => [String(pl.partition), pl.owners.map(o => names.get(o) ?? o)]))
  } catch { /* only for the reader */ }
  const ds: QueriesDataset = { ...dataset, attempts, ...(placement !== undefined ? { placement } : {}) }
  finish('ok', { value: ds })
  for (const r of records.slice(0, 8)) {
    const coord = pick(ctx.coordinators(), ctx.random)!
    const res = await fetch(`${coord.url}/query/explain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: `SELECT count(*) AS n FROM ${QUERIES_SPACE} WHERE id = '${r.id}'` }), signal: AbortSignal.timeout(10_000) })
    const body = await res.json() as { plan?: { targets?: Array<{ partition: number }> } }
    const got = body.plan?.targets?.map(t => t.partition)
    const want = partitionOfId(r.id, partitions)
    if (got?.length !== 1 || got[0] !== want) throw new Error(`queries workload: the server plans id ${r.id} on partitions ${JSON.stringify(got)}, this suite computed ${want}: the checker's per-partition answers would be wrong`)
  }
  return ds
}

/** Asks one query, recording invoke and completion (ok: rows, coverage, confidence; fail / info: error, and the coverage of a PARTIAL_RESULT). */
export async function performQuery (ctx: WorkerContext, process: number | string, f: 'query' | 'final-query', name: QueryName, allowPartial: boolean, coord: PeerProcess): Promise<QueryOutcome> {
  const invoke = { f, workload: 'queries' as const, key: name, value: { allowPartial } }
  const inv = ctx.history.add({ ...invoke, process, type: 'invoke', coordinator: coord.name })
  const o = await ctx.client.query(coord.url, QUERY_SQL[name], allowPartial)
  const time = ctx.history.now()
  const base = { ...invoke, process, coordinator: coord.name, time, latencyMs: Math.round((time - inv.time) * 10) / 10 }
  if (o.type === 'ok') ctx.history.add({ ...base, type: 'ok', value: o.rows, coverage: o.coverage, confidence: o.confidence })
  else ctx.history.add({ ...base, type: o.type, error: o.error, ...(o.coverage !== undefined ? { coverage: o.coverage } : {}) })
  return o
}

export async function queryWorker (ctx: WorkerContext, process: number): Promise<void> {
  while (!ctx.stopped()) {
    const coord = pick(ctx.coordinators(), ctx.random)
    if (coord === undefined) { await sleep(100); continue }
    const name: QueryName = ctx.random() < 0.5 ? 'total' : 'groups'
    const allowPartial = ctx.random() < 0.5
    await performQuery(ctx, process, 'query', name, allowPartial, coord)
    await sleep(ctx.random() * ctx.thinkMs)
  }
}

/**
 * After the heal: every peer is asked both queries with allowPartial false, each retried until it
 * answers (or the deadline passes); process 'final-q<i>' per peer.
 */
export async function finalQueries (ctx: WorkerContext, peers: readonly PeerProcess[], deadline: number): Promise<void> {
  await Promise.all(peers.map(async (peer, i) => {
    for (const name of ['total', 'groups'] as const) {
      for (let attempt = 0; ; attempt++) {
        const o = await performQuery(ctx, `final-q${i}`, 'final-query', name, false, peer)
        if (o.type === 'ok' || performance.now() > deadline) break
        await sleep(Math.min(1000, 100 * (attempt + 1)))
      }
    }
  }))
}
