/**
 * Histories from the simulator. A simulated client records what it did as SimOps (virtual time
 * in ms, no HTTP); `simHistory` turns them into the history shape of a real run, so the same
 * checkers judge both.
 */
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
