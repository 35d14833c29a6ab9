/**
 * The checkers: set, register (LWW oracle, linearizability, monotonic and stale reads), queries
 * (complete answers exact, partial answers honest), the disk nemesis's windows and convergence. `checkHistory` runs the history checkers on any history of the shape in
 * ../history.ts, from a real run or from the simulator.
 */
import type { Op } from '../history.js'
import { checkRegisterWorkload, type RegisterResult } from './register.js'
import { checkSet, type SetResult } from './set.js'
import { checkQueries, type QueriesResult } from './queries.js'
import { checkDisk, type DiskResult } from './disk.js'
import type { LinearizabilityLimits } from './linearizable.js'

export { checkSet, type SetResult } from './set.js'
export { checkRegisterWorkload, type RegisterResult, type OracleMismatch } from './register.js'
export { checkQueries, expectedAnswer, type QueriesResult, type QueriesDataset, type QueriesPartition, type QueryName, type QueryViolation } from './queries.js'
export { checkDisk, diskSummary, judgedOnEveryCount, FULL_SLACK_BYTES, MIN_FULL_MS, type DiskResult, type DiskWindowResult, type DiskNodeResult } from './disk.js'
export { checkRegister, type RegOp, type KeyResult, type LinearizabilityLimits } from './linearizable.js'

/** What the runner measured after the final heal (not derivable from the history). */
export interface ConvergenceResult {
  converged: boolean
  /** ms from the final heal until every replica of every partition had the same digest. */
  afterMs: number | null
  /** ms from the final heal until the final reads (ALL, which repair) were done. */
  finalReadsDoneMs: number | null
  /** Partitions whose replicas still disagreed at the deadline. */
  disagreeing: Array<{ space: string, partition: number, digests: Record<string, string> }>
  hints: { written: number, delivered: number, dropped: number, note: string }
  note: string
}

export interface Results {
  valid: boolean | 'unknown'
  set?: SetResult
  register?: RegisterResult
  convergence?: ConvergenceResult
  queries?: QueriesResult
  /** The disk nemesis's checks (windows filled, health not green, healed, acknowledged rows read at ALL). */
  disk?: DiskResult
  /** Why valid is false, one line each. */
  failures: string[]
}

export function checkHistory (ops: readonly Op[], opts: { convergence?: ConvergenceResult, limits?: LinearizabilityLimits } = {}): Results {
  const hasSet = ops.some(o => o.workload === 'set')
  const hasRegister = ops.some(o => o.workload === 'register')
  const hasQueries = ops.some(o => o.workload === 'queries')
  const failures: string[] = []
  const out: Results = { valid: true, failures }
  const verdicts: Array<boolean | 'unknown'> = []
  if (hasSet) {
    const s = checkSet(ops)
    out.set = s
    verdicts.push(s.valid)
    if (s.lost.length > 0) failures.push(`set: ${s.lost.length} acknowledged adds lost: ${s.lost.slice(0, 10).join(', ')}`)
    if (s.resurrected.length > 0) failures.push(`set: ${s.resurrected.length} acknowledged removes undone (present again): ${s.resurrected.slice(0, 10).join(', ')}`)
    if (s.unexpected.length > 0) failures.push(`set: ${s.unexpected.length} unexpected elements: ${s.unexpected.slice(0, 10).join(', ')}`)
    if (s.failedPresent.length > 0) failures.push(`set: ${s.failedPresent.length} refused adds are present: ${s.failedPresent.slice(0, 10).join(', ')}`)
    if (s.unreadable.length > 0) failures.push(`set: ${s.unreadable.length} ids could not be read at ALL (unknown)`)
  }
  if (hasRegister) {
    const r = checkRegisterWorkload(ops, opts.limits)
    out.register = r
    verdicts.push(r.valid)
    for (const m of r.oracle.mismatches.slice(0, 10)) failures.push(`register: LWW oracle mismatch on ${m.key}: final ${String(m.final)}@${String(m.finalVersion)}, expected ${String(m.expected)}@${String(m.expectedVersion)} (${m.reason})`)
    for (const v of r.singleWriter.violations.slice(0, 10)) failures.push(`register: single-writer key ${v.key} is not linearizable (stuck after ${String(v.linearizedPrefix)} ops at value ${String(v.stuckAt?.value)}; blocking ops ${v.stuckAt?.blocking.map(b => b.index).join(',')})`)
    if (r.oracle.unreadable.length > 0) failures.push(`register: ${r.oracle.unreadable.length} keys could not be read at ALL (unknown)`)
    if (r.singleWriter.unknown.length > 0) failures.push(`register: linearizability unknown for ${r.singleWriter.unknown.length} keys (search bound)`)
  }
  if (hasQueries) {
    const q = checkQueries(ops)
    out.queries = q
    verdicts.push(q.valid)
    if (q.violationCount > 0) failures.push(`queries: ${q.violationCount} violations (${Object.entries(q.violationsByKind).map(([k, n]) => `${k} ${n}`).join(', ')})`)
    for (const v of q.violations.slice(0, 10)) failures.push(`queries: ${v.kind} at #${v.index} (p${String(v.process)} via ${v.coordinator ?? '?'}, ${v.query}, allowPartial ${String(v.allowPartial)}): ${v.detail}`)
    if (q.dataset === null) failures.push('queries: the dataset was never loaded completely, nothing to check against (unknown)')
  }
  if (ops.some(o => o.process === 'nemesis' && o.f === 'start-disk')) {
    const d = checkDisk(ops)
    out.disk = d
    verdicts.push(d.valid)
    for (const v of d.violations.slice(0, 20)) failures.push(`disk: ${v}`)
    for (const u of d.unknown.slice(0, 10)) failures.push(`disk: ${u} (unknown)`)
  }
  if (opts.convergence !== undefined) {
    out.convergence = opts.convergence
    verdicts.push(opts.convergence.converged)
    if (!opts.convergence.converged) failures.push(`convergence: ${opts.convergence.disagreeing.length} partitions' replicas never agreed`)
  }
  out.valid = verdicts.includes(false) ? false : verdicts.includes('unknown') ? 'unknown' : true
  return out
}
