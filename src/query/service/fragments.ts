/**
 * The data peer's side of a query: serves `query.fragment` streams. A request names a space (by
 * name and uid, so a space dropped and re-created meanwhile is refused), the partitions to run on
 * and the fragment plan; the answer streams one item per partition (rows in chunks), or an error
 * item for a partition this peer cannot serve, so the coordinator can retry just that partition
 * on another replica. Everything in the request is checked: it comes off the network.
 */
import { performance } from 'node:perf_hooks'
import { pack } from 'msgpackr'
import { BatchLease, type StoredBatch, type ValueType } from '../../columnar/index.js'
import { LastItem } from '../../runtime/index.js'
import type { SpaceDef } from '../../schema/index.js'
import type { PartitionStore } from '../../storage/index.js'
import { decodePlan, type PlanNode } from '../model/index.js'
import { validatePlan } from '../validate/index.js'
import { pointBatch, pointReadIds } from './point-reads.js'
import { MemoryBudget, QueryExecError, batchOptions, chunkOutput, fragmentShape, runFragment, type FragmentOutput, type FragmentPool, type FragmentStats } from '../exec/index.js'

export const METHOD_FRAGMENT = 'query.fragment'

/** Rows per streamed item: bounded frames, and the coordinator merges while the rest travels. */
export const ROWS_PER_CHUNK = 32_768
/**
 * Bytes per streamed item, measured as encoded: half the RPC's 8 MiB frame limit, so wide rows
 * (long strings, lists, big sketch states) travel in more, smaller items instead of one frame the
 * RPC refuses.
 */
export const BYTES_PER_CHUNK = 4 * 1024 * 1024
const MAX_PARTITIONS_PER_REQUEST = 65_536

export interface FragmentRequest {
  space: string
  uid: string
  partitions: number[]
  plan: PlanNode
  budgetBytes: number
  analyze: boolean
}

/**
 * Where a partition's time went on the data peer, beside FragmentStats.ms (the executor's own):
 * how long it waited for its turn (a worker busy with another partition), how long opening the
 * replica and reading its batches took, and when its answer was ready. Sent with analyze only; a peer of an older version sends
 * neither (read as 0).
 */
export interface PartitionTimings {
  waitMs?: number
  readMs?: number
  /** From the request's arrival to this partition's answer being ready to send. */
  readyMs?: number
}

export type FragmentItem =
  | { p: number, out: FragmentOutput, last: boolean, stats?: FragmentStats & PartitionTimings & { bytes: number } }
  | { p: number, error: { code: string, message: string } }

export interface FragmentServerDeps {
  space: (name: string) => SpaceDef | undefined
  /** The local replica of a partition, refusing (NOT_HELD) one this peer neither holds nor owns. */
  openForQuery: (space: SpaceDef, partition: number) => Promise<PartitionStore>
  isSynced: () => boolean
  /** Fault injection: wait this long before each partition (cancellable). */
  delayMs?: () => number
  /** The peer's clock (Clock.now): fragment timings and when a long scan yields. Default performance.now. */
  now?: () => number
  /** Worker threads to run partitions on side by side (a real peer has one; tests run inline). */
  pool?: FragmentPool
  /**
   * The partition an id belongs to (placement's): a fragment that pins ids reads, in each
   * partition, only the ids of that partition. Without it every partition looks up every id.
   */
  partitionOf?: (space: SpaceDef, id: string) => number
}

export function parseFragmentRequest (body: unknown): FragmentRequest {
  const bad = (why: string): never => { throw new QueryExecError('BAD_FRAGMENT', `bad fragment request: ${why}`) }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return bad('not an object')
  const b = body as Record<string, unknown>
  if (typeof b.space !== 'string' || typeof b.uid !== 'string') return bad('space and uid must be strings')
  if (!Array.isArray(b.partitions) || b.partitions.length === 0 || b.partitions.length > MAX_PARTITIONS_PER_REQUEST || !b.partitions.every(p => Number.isSafeInteger(p) && (p as number) >= 0)) return bad('partitions must be a non-empty list of partition numbers')
  if (typeof b.budgetBytes !== 'number' || !(b.budgetBytes > 0)) return bad('budgetBytes must be a positive number')
  let plan: PlanNode
  try {
    plan = decodePlan(b.plan)
  } catch (err) {
    return bad(`plan: ${(err as Error).message}`)
  }
  // A partition listed twice would run twice: keep the first.
  return { space: b.space, uid: b.uid, partitions: [...new Set(b.partitions as number[])], plan, budgetBytes: b.budgetBytes, analyze: b.analyze === true }
}

/**
 * Runs a fragment request and yields its items. `trusted` skips the checks for a request built by
 * this peer for itself (the local path, which never leaves the process).
 */
export function serveFragments (deps: FragmentServerDeps, req: FragmentRequest, signal: AbortSignal, trusted = false): AsyncGenerator<FragmentItem> {
  return fragmentItems(deps, req, signal, trusted, false) as AsyncGenerator<FragmentItem>
}

/**
 * The `query.fragment` handler's stream: serveFragments of a request off the network, its last
 * item as a LastItem, so the transport sends the stream's end with it (runtime/types.ts).
 */
export function serveRemoteFragments (deps: FragmentServerDeps, req: FragmentRequest, signal: AbortSignal): AsyncGenerator<FragmentItem | LastItem> {
  return fragmentItems(deps, req, signal, false, true)
}

async function * fragmentItems (deps: FragmentServerDeps, req: FragmentRequest, signal: AbortSignal, trusted: boolean, markLast: boolean): AsyncGenerator<FragmentItem | LastItem> {
  const def = deps.space(req.space)
  const refuse = (code: string, message: string): FragmentItem[] => req.partitions.map(p => ({ p, error: { code, message } }))
  if (!deps.isSynced()) { yield * refuse('NOT_SYNCED', 'this peer has not synced with its cluster since it started'); return }
  if (def === undefined || def.uid !== req.uid) { yield * refuse('UNKNOWN_SPACE', `this peer has no space ${req.space} (${req.uid})`); return }
  const columnType = columnTypes(def)
  if (!trusted) {
    try {
      fragmentShape(req.plan)
    } catch (err) {
      yield * refuse('BAD_FRAGMENT', (err as Error).message)
      return
    }
    const v = validatePlan(req.plan, def)
    if (!v.ok) { yield * refuse('BAD_FRAGMENT', `the fragment does not fit the space: ${v.errors.map(e => e.message).join('; ')}`); return }
  }
  // Partitions run side by side when a pool of worker threads is there (one fragment per thread
  // plus this one), one after another otherwise; items go out as each partition finishes.
  const limit = deps.pool?.parallelism ?? 1
  const shape = fragmentShape(req.plan)
  const columns = shape.scan.columns ?? []
  const options = batchOptions(shape, columnType)
  const types = columns.map(c => [c, columnType(c) ?? 'null'] as [string, ValueType])
  const pointIds = pointReadIds(shape.filter)
  // The request pins the same ids for each of its partitions (a spread hop: the whole frontier);
  // a partition holds only its own, so each looks up only those: grouped once per request.
  const pointIdsOf = pointIds === null ? null : idsByPartition(pointIds, deps.partitionOf === undefined ? undefined : id => deps.partitionOf!(def, id))
  const clock = deps.now ?? (() => performance.now())
  const received = clock()
  const partition = async (p: number): Promise<FragmentItem[]> => {
    if (signal.aborted) return []
    const started = clock()
    if (p >= def.partitions) return [{ p, error: { code: 'BAD_FRAGMENT', message: `partition ${p} out of range` } }]
    let store: PartitionStore
    try {
      store = await deps.openForQuery(def, p)
    } catch (err) {
      return [{ p, error: { code: (err as { code?: string }).code ?? 'STORE_FAILED', message: (err as Error).message } }]
    }
    const delay = deps.delayMs?.() ?? 0
    if (delay > 0) await sleepUnlessAborted(delay, signal)
    if (signal.aborted) return []
    // Reading the replica apart from running on it: a read that fails is this replica's trouble
    // (the next one is asked), an execution that fails is the query's (see fragmentErrorCode).
    let batches: StoredBatch[] | undefined
    // The batches' cached columns are held until the fragment is done with them: the pool's run
    // settles only once no thread reads them, and its output never views them (encodeBatch
    // copies shared memory). Storage then may reuse their memory for other columns.
    const lease = new BatchLease()
    let read = started
    let result
    try {
      try {
        if (pointIds !== null) {
          // A few pinned ids: read by id (point-reads.ts), and run here: one small batch is not
          // worth a worker's hand-off.
          batches = [await pointBatch(store, pointIdsOf!(p), columns, columnType)]
        } else if (deps.pool !== undefined) {
          const into: StoredBatch[] = batches = []
          await deps.pool.loading(async () => { for await (const b of store.batches(columns, { ...options, lease })) into.push(b) })
        }
      } catch (err) {
        return [{ p, error: { code: 'STORE_FAILED', message: (err as Error).message } }]
      }
      read = clock()
      try {
        const now = deps.now !== undefined ? { now: deps.now } : {}
        result = pointIds !== null
          ? await runFragment(req.plan, { source: { batches: () => batches! }, columnType, budget: new MemoryBudget(req.budgetBytes), signal, ...now })
          : deps.pool !== undefined
            ? await deps.pool.run({ plan: req.plan, batches: batches!, columnType, types, budgetBytes: req.budgetBytes, signal, ...now })
            : await runFragment(req.plan, { source: store, columnType, budget: new MemoryBudget(req.budgetBytes), signal, ...now })
      } catch (err) {
        return [{ p, error: { code: fragmentErrorCode(err), message: (err as Error).message } }]
      }
    } finally {
      lease.release()
    }
    const bytes = req.analyze ? outputBytes(result.output) : 0
    // The store's open (and, with a pool, the batches' reading) apart from the executor's work.
    const stats = req.analyze ? { ...result.stats, bytes, waitMs: started - received, readMs: read - started, readyMs: clock() - received } : { ...result.stats, bytes }
    // Cut by rows and by bytes; rows as encoded: views of the answer's bytes, not decoded and encoded again.
    const pieces = [...chunkOutput(result.output, { maxRows: ROWS_PER_CHUNK, maxBytes: BYTES_PER_CHUNK })]
    return pieces.map((out, i) => i === pieces.length - 1 ? { p, out, last: true, stats } : { p, out, last: false })
  }
  const queue = [...req.partitions]
  const running = new Map<number, Promise<{ key: number, items: FragmentItem[] }>>()
  let nextKey = 0
  while (queue.length > 0 || running.size > 0) {
    while (running.size < limit && queue.length > 0 && !signal.aborted) {
      const key = nextKey++
      running.set(key, partition(queue.shift()!).then(items => ({ key, items })))
    }
    if (running.size === 0) return
    const done = await Promise.race(running.values())
    running.delete(done.key)
    if (markLast && queue.length === 0 && running.size === 0 && done.items.length > 0) {
      yield * done.items.slice(0, -1)
      yield new LastItem(done.items[done.items.length - 1])
      return
    }
    yield * done.items
  }
}

/** The pinned ids each partition looks up: those placement puts in it, or all of them without placement. */
function idsByPartition (ids: readonly string[], partitionOf: ((id: string) => number) | undefined): (p: number) => readonly string[] {
  if (partitionOf === undefined) return () => ids
  const groups = new Map<number, string[]>()
  for (const id of ids) {
    const p = partitionOf(id)
    let g = groups.get(p)
    if (g === undefined) groups.set(p, g = [])
    g.push(id)
  }
  return p => groups.get(p) ?? []
}

/**
 * The code a failed partition answers with. An aggregation past one of its limits is LIMIT, as a
 * budget is MEMORY_BUDGET: the coordinator fails the query with them (422) instead of trying the
 * next replica, which would meet the same limit. The executor's own errors (QueryExecError, and
 * the TypeError or RangeError of a bug in it) are EXEC_ERROR: every replica would meet them too, so
 * the coordinator fails the query with them rather than answer without the partition. Anything
 * else (a worker thread that died, storage that could not be read, memory this peer could not
 * allocate) may be this replica's trouble: EXEC_FAILED, and the next replica is asked.
 */
export function fragmentErrorCode (err: unknown): string {
  if (err instanceof QueryExecError) return err.code === 'MEMORY_BUDGET' || err.code === 'LIMIT' || err.code === 'BAD_FRAGMENT' || err.code === 'CANCELLED' ? err.code : 'EXEC_ERROR'
  const e = err as Error | undefined
  switch (e?.name) {
    case 'AggregationLimitError': return 'LIMIT'
    // A worker thread's error arrives as a plain Error with the original name.
    case 'QueryExecError': return 'EXEC_ERROR'
    case 'TypeError': case 'ReferenceError': return 'EXEC_ERROR'
    case 'RangeError': return /allocation failed|out of memory/i.test(e.message) ? 'EXEC_FAILED' : 'EXEC_ERROR'
    default: return 'EXEC_FAILED'
  }
}

async function sleepUnlessAborted (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done, { once: true })
  })
}

function outputBytes (out: FragmentOutput): number {
  try {
    return pack(out).length
  } catch {
    return 0
  }
}

/** Column name → type of a space, for typing expressions. */
export function columnTypes (def: SpaceDef): (name: string) => ValueType | undefined {
  const m = new Map<string, ValueType>(def.schema.map(c => [c.name, c.type]))
  return name => m.get(name)
}
