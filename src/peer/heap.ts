/**
 * The peer's V8 heap against what its settings let it hold. The heap limit is set when node
 * starts (`--heap-mib` or SHOAL_HEAP_MIB, which bin/shoal turns into --max-old-space-size; Node's
 * default otherwise, about a quarter of the memory up to 4 GiB), before any setting is read, so
 * the peer can only check it: a limit below what memtables and one query may hold is an
 * out-of-memory crash waiting for the largest query, and a limit asked for but not in force means
 * the peer was started without the launcher.
 *
 * Why a limit at all: V8 lets the heap grow between collections in proportion to its limit. One
 * peer loading 10 M rows with Node's default limit peaked at 795-896 MiB resident; with
 * --max-old-space-size=768, at 524 (docs/benchmarks.md, "Memory and restart").
 *
 * Without a limit, the growth itself is bounded (boundHeapGrowth): once the peer is ready, V8
 * may grow the heap by `heapGrowthPercent` of what is live between collections (default 50),
 * where with a large limit it lets it grow up to 4x. Not from the start: a restart replaying its
 * memtables, with the heap still small, collected so often under the bound that it took 0.2-0.6 s
 * longer.
 */
import { setFlagsFromString } from 'node:v8'

const MiB = 1048576
/** The most a heap limit may exceed the old generation asked for: the young generation's share. */
const YOUNG_GENERATION_SLACK_MIB = 160

/** What a peer's heap must hold beyond its data in flight: code, sockets, catalogs, buffers. */
export const HEAP_BASE_MIB = 128
/**
 * The memtable budget counts the active memtables' estimated heap; those being flushed may hold
 * as much again.
 */
export const MEMTABLE_HEAP_FACTOR = 2

export interface HeapPlan {
  /** The heap limit in force (v8.getHeapStatistics().heap_size_limit), MiB. */
  limitMiB: number
  /** What the settings let the heap hold at once: base + memtables (active and being flushed) + one query's budget. */
  neededMiB: number
  /** --heap-mib or SHOAL_HEAP_MIB, when given. */
  askedMiB?: number
  /** Problems worth a warning at start-up, in words naming the settings. */
  warnings: string[]
}

export function planHeap (opts: { limitBytes: number, askedMiB?: number, memtableBudgetBytes: number, queryBudgetMiB: number }): HeapPlan {
  const limitMiB = Math.round(opts.limitBytes / MiB)
  const neededMiB = HEAP_BASE_MIB + Math.ceil(opts.memtableBudgetBytes * MEMTABLE_HEAP_FACTOR / MiB) + opts.queryBudgetMiB
  const warnings: string[] = []
  // V8's limit is the old generation asked for plus the young one (three semi-spaces: 96 MiB
  // with the launcher's 32 MiB ones).
  if (opts.askedMiB !== undefined && (limitMiB < opts.askedMiB || limitMiB > opts.askedMiB + YOUNG_GENERATION_SLACK_MIB)) {
    warnings.push(`a heap of ${opts.askedMiB} MiB was asked for (--heap-mib or SHOAL_HEAP_MIB) but ${limitMiB} MiB is in force: start the peer with bin/shoal (npm start, npx shoal), which passes it to node`)
  }
  if (limitMiB < neededMiB) {
    warnings.push(`the heap limit of ${limitMiB} MiB is below the ${neededMiB} MiB the settings may need at once (${HEAP_BASE_MIB} base + memtables active and being flushed, ${MEMTABLE_HEAP_FACTOR} x storage.memtableBudgetBytes ${Math.round(opts.memtableBudgetBytes / MiB)} MiB + one query's query.memoryBudgetMb ${opts.queryBudgetMiB}): ` +
      'raise --heap-mib, or lower query.memoryBudgetMb or storage.memtableBudgetBytes')
  }
  return { limitMiB, neededMiB, ...(opts.askedMiB !== undefined ? { askedMiB: opts.askedMiB } : {}), warnings }
}

/**
 * Sets V8's heap growing factor to 1 + percent / 100 for every collection from now on (V8 reads
 * the flag each time it sets the next limit; worker threads share it). 0 leaves V8's own.
 */
export function boundHeapGrowth (percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 1000) throw new RangeError(`heap growth must be an integer percent from 0 to 1000, got ${String(percent)}`)
  if (percent === 0) return
  setFlagsFromString(`--heap-growing-percent=${percent}`)
}
