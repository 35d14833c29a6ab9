/**
 * The history of a run: every client operation as an invocation followed by its completion
 * (ok / fail / info), and the nemesis's fault windows, one JSON object per line (history.jsonl).
 *
 *   ok    the operation happened (the server answered 200)
 *   fail  the operation did not happen: refused before anything was sent (4xx, 503
 *         PARTITION_UNAVAILABLE, connection refused)
 *   info  it may or may not have happened (timeout, reset connection, 503 WRITE_INCOMPLETE, 504)
 *
 * Queries have no effect, so for them: ok = an answer (with its coverage and confidence), fail =
 * an error answer from the server (its code; PARTIAL_RESULT's coverage too), info = no answer.
 *
 * The simulator's runs produce the same shape (see sim.ts), so the checkers take either.
 */
import { readFile } from 'node:fs/promises'

export type OpType = 'invoke' | 'ok' | 'fail' | 'info'
export type Workload = 'set' | 'register' | 'queries'

/** A query answer's coverage (POST /query): partitions needed, answered, and the missing ones. */
export interface QueryCoverage {
  total: number
  answered: number
  missing: Array<{ space: string, partition: number, reason: string }>
}

export interface Op {
  /** Position in the history. */
  index: number
  /**
   * The client worker (a number), 'nemesis', 'final-<i>' for the reads after the heal, 'load' for
   * the queries workload's load, 'final-q<i>' for its queries after the heal.
   */
  process: number | string
  type: OpType
  /** add | read | write | final-read | load | query | final-query (clients); start-<fault> | stop-<fault> | heal (nemesis). */
  f: string
  workload?: Workload
  /** The register key, the set element's id, or the query's name (total | groups). */
  key?: string
  /**
   * Written value / value read (null: absent); for the set's reads, true when present; for a query,
   * {allowPartial} on the invocation and the answer's rows on an ok completion; for the queries
   * workload's load, the dataset and its known answers per partition.
   */
  value: unknown
  /** ms since the start of the run. */
  time: number
  /** The peer that coordinated the operation. */
  coordinator?: string
  /** The HLC version the server reported (writes and reads). */
  version?: number
  /** Error code or message of a fail / info. */
  error?: string
  /** Latency in ms of a completion. */
  latencyMs?: number
  /** Queries: the answer's coverage (or the error's, for 503 PARTIAL_RESULT). */
  coverage?: QueryCoverage
  /** Queries: the answer's confidence. */
  confidence?: number
}

/** An invocation paired with its completion (info when the history ended without one). */
export interface Pair {
  invoke: Op
  complete: Op
  /** Completion type; 'info' also for an invocation that never completed. */
  type: 'ok' | 'fail' | 'info'
}

export class History {
  readonly ops: Op[] = []
  private readonly t0: number

  constructor (t0 = performance.now()) { this.t0 = t0 }

  now (): number { return Math.round((performance.now() - this.t0) * 1000) / 1000 }

  add (op: Omit<Op, 'index' | 'time'> & { time?: number }): Op {
    const full = { ...op, index: this.ops.length, time: op.time ?? this.now() } as Op
    this.ops.push(full)
    return full
  }

  toJsonl (): string { return this.ops.map(o => JSON.stringify(o)).join('\n') + '\n' }
}

export function parseJsonl (text: string): Op[] {
  const ops: Op[] = []
  for (const line of text.split('\n')) {
    const t = line.trim()
    if (t === '') continue
    const o = JSON.parse(t) as Op
    ops.push(o)
  }
  return ops
}

export async function readHistory (file: string): Promise<Op[]> {
  return parseJsonl(await readFile(file, 'utf8'))
}

/**
 * Pairs every client invocation with the next completion of the same process (processes are
 * single-threaded). Nemesis operations are not paired.
 */
export function pairs (ops: readonly Op[]): Pair[] {
  const open = new Map<string, Op>()
  const out: Pair[] = []
  for (const op of ops) {
    if (op.process === 'nemesis') continue
    const p = String(op.process)
    if (op.type === 'invoke') {
      const prev = open.get(p)
      if (prev !== undefined) out.push({ invoke: prev, complete: { ...prev, type: 'info', error: 'no completion' }, type: 'info' })
      open.set(p, op)
      continue
    }
    const inv = open.get(p)
    if (inv === undefined) throw new Error(`history: completion without invocation at index ${op.index} (process ${p})`)
    open.delete(p)
    out.push({ invoke: inv, complete: op, type: op.type })
  }
  for (const inv of open.values()) out.push({ invoke: inv, complete: { ...inv, type: 'info', time: Infinity, error: 'no completion' }, type: 'info' })
  return out
}

export interface FaultWindow { kind: string, start: number, end: number, detail: unknown }

/** Fault windows from the nemesis's start-X / stop-X operations (an unclosed one ends at the last op). */
export function faultWindows (ops: readonly Op[]): FaultWindow[] {
  const open = new Map<string, Op>()
  const out: FaultWindow[] = []
  const last = ops.length > 0 ? ops[ops.length - 1]!.time : 0
  for (const op of ops) {
    if (op.process !== 'nemesis') continue
    if (op.f.startsWith('start-')) open.set(op.f.slice(6), op)
    else if (op.f.startsWith('stop-')) {
      const kind = op.f.slice(5)
      const s = open.get(kind)
      if (s !== undefined) { out.push({ kind, start: s.time, end: op.time, detail: s.value }); open.delete(kind) }
    }
  }
  for (const [kind, s] of open) out.push({ kind, start: s.time, end: last, detail: s.value })
  return out.sort((a, b) => a.start - b.start)
}
