/**
 * The queries checker. Before the faults, a fixed dataset is loaded at ALL into its own space
 * (every replica holds every row), and the load's completion records the dataset's exact answers
 * per partition. Then workers query count / sum (total, and by group) through random peers, with
 * allowPartial true or false, during the faults; after the heal every peer is asked again
 * ('final-query'). Nothing writes to the space after the load, so every answer is known exactly:
 *
 *   complete answer (answered == total, missing empty)
 *     rows equal to the known answer, confidence exactly 1                      gated
 *   partial answer (anything else)
 *     asked with allowPartial true                                              gated
 *     confidence < 1 and not above answered / total                             gated
 *     answered < total, missing lists total - answered distinct partitions
 *       of the space                                                            gated
 *     counts and sums not above the known ones, no unknown group                gated
 *     exact over the partitions that answered (docs/query.md: "a partial
 *       answer is exact over the partitions that answered")                     gated
 *   error answer (fail)
 *     PARTIAL_RESULT only for allowPartial false, with an incomplete coverage   gated
 *     counted by code (PARTIAL_RESULT, NOT_SYNCED, ...); no answer (info) counted by cause
 *
 * The coverage's `total` must be the space's partition count (a broadcast needs them all).
 */
import { pairs, type Op, type Pair, type QueryCoverage } from '../history.js'

/** The known answer of one partition: count and sum of v per group. */
export interface QueriesPartition { partition: number, groups: Record<string, { n: number, s: number }> }

/** What the load's completion records (value of the ok 'load' op). */
export interface QueriesDataset {
  space: string
  rows: number
  partitions: number
  byPartition: QueriesPartition[]
  /** Write requests the load took, failed ones included. */
  attempts?: number
  /** The owners (peer names) of each partition after the load; for the reader, not the checker. */
  placement?: Record<string, string[]>
}

export type QueryName = 'total' | 'groups'

export interface QueryViolation {
  /** Index of the completion in the history. */
  index: number
  process: number | string
  coordinator?: string
  query: string
  allowPartial: boolean
  kind: string
  detail: string
}

interface Tally { ok: number, complete: number, partial: number, fail: number, info: number }

export interface QueriesResult {
  valid: boolean | 'unknown'
  /** The dataset as loaded; null when the history has no completed load (then valid is unknown). */
  dataset: { space: string, rows: number, partitions: number, attempts?: number, placement?: Record<string, string[]> } | null
  /** Queries during the run (not counting the ones after the heal). */
  queries: number
  ok: number
  complete: number
  partial: number
  /** Error answers by code. */
  errors: Record<string, number>
  /** No answer (timeouts, resets) by cause. */
  noAnswer: Record<string, number>
  byAllowPartial: { true: Tally, false: Tally }
  /** Partial answers: fewest partitions answered, lowest confidence, and the reasons of missing partitions. */
  partialAnswers: { minAnswered: number | null, minConfidence: number | null, missingReasons: Record<string, number> }
  /** The queries after the heal (allowPartial false, retried per peer until complete). */
  afterHeal: { queries: number, complete: number, partial: number, errors: Record<string, number>, peersWithoutCompleteAnswer: string[] }
  violationCount: number
  violationsByKind: Record<string, number>
  /** The first 100 violations. */
  violations: QueryViolation[]
}

type Row = Record<string, unknown>

/** The exact answer of `name` over the given partitions (all of them when undefined). */
export function expectedAnswer (ds: QueriesDataset, name: QueryName, partitions?: ReadonlySet<number>): Row[] {
  const groups = new Map<string, { n: number, s: number }>()
  for (const p of ds.byPartition) {
    if (partitions !== undefined && !partitions.has(p.partition)) continue
    for (const [g, a] of Object.entries(p.groups)) {
      const cur = groups.get(g) ?? { n: 0, s: 0 }
      groups.set(g, { n: cur.n + a.n, s: cur.s + a.s })
    }
  }
  if (name === 'total') {
    let n = 0
    let s = 0
    for (const a of groups.values()) { n += a.n; s += a.s }
    // SQL: the sum over no rows is NULL.
    return [{ n, s: n === 0 ? null : s }]
  }
  return [...groups].filter(([, a]) => a.n > 0).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([g, a]) => ({ g, n: a.n, s: a.s }))
}

/** int64 may come as a decimal string (beyond 2^53): compare as numbers. */
function num (x: unknown): unknown {
  return typeof x === 'string' && /^-?\d+$/.test(x) ? Number(x) : x
}

function canon (rows: readonly unknown[]): string {
  return JSON.stringify(rows.map(r => {
    if (r === null || typeof r !== 'object') return r
    const o = r as Row
    return Object.fromEntries(Object.keys(o).sort().map(k => [k, num(o[k])]))
  }))
}

function coverageShapeOk (c: unknown): c is QueryCoverage {
  if (c === null || typeof c !== 'object') return false
  const x = c as QueryCoverage
  return Number.isInteger(x.total) && Number.isInteger(x.answered) && Array.isArray(x.missing) &&
    x.missing.every(m => m !== null && typeof m === 'object' && Number.isInteger(m.partition))
}

/** Why a partial answer's coverage is inconsistent, or null. */
function coverageProblem (c: QueryCoverage, ds: QueriesDataset): string | null {
  if (!(c.answered < c.total)) return `answered ${c.answered} is not below total ${c.total} although ${c.missing.length} partitions are missing`
  if (c.answered < 0) return `answered ${c.answered}`
  if (c.missing.length !== c.total - c.answered) return `missing lists ${c.missing.length} partitions, total - answered = ${c.total - c.answered}`
  const ps = c.missing.map(m => m.partition)
  if (new Set(ps).size !== ps.length) return `missing lists a partition twice: ${ps.join(',')}`
  const bad = c.missing.find(m => m.partition < 0 || m.partition >= ds.partitions || m.space !== ds.space)
  if (bad !== undefined) return `missing names ${bad.space}/${bad.partition}, not a partition of ${ds.space} (0..${ds.partitions - 1})`
  return null
}

/** Counts or sums above the known ones, or unknown groups, in a partial answer. */
function aboveKnown (rows: readonly unknown[], known: Row[], name: QueryName): string | null {
  const byKey = new Map(known.map(r => [name === 'total' ? '' : String(r.g), r]))
  for (const r of rows) {
    const row = (r ?? {}) as Row
    const k = byKey.get(name === 'total' ? '' : String(row.g))
    if (k === undefined) return `unknown group ${JSON.stringify(row.g)}`
    const n = num(row.n)
    const s = num(row.s)
    if (typeof n !== 'number' || n > (k.n as number)) return `count ${JSON.stringify(row.n)}${name === 'groups' ? ` of group ${String(row.g)}` : ''} above the known ${String(k.n)}`
    if (s !== null && (typeof s !== 'number' || s > (k.s as number))) return `sum ${JSON.stringify(row.s)}${name === 'groups' ? ` of group ${String(row.g)}` : ''} above the known ${String(k.s)} (every v is >= 0)`
  }
  if (name === 'total' && rows.length !== 1) return `${rows.length} rows, expected 1`
  return null
}

function emptyTally (): Tally { return { ok: 0, complete: 0, partial: 0, fail: 0, info: 0 } }

function bump (m: Record<string, number>, k: string): void { m[k] = (m[k] ?? 0) + 1 }

export function checkQueries (ops: readonly Op[]): QueriesResult {
  const ps = pairs(ops).filter(p => p.invoke.workload === 'queries')
  const load = ps.find(p => p.invoke.f === 'load' && p.type === 'ok')
  const ds = load !== undefined ? load.complete.value as QueriesDataset : undefined
  const out: QueriesResult = {
    valid: true,
    dataset: ds === undefined ? null : { space: ds.space, rows: ds.rows, partitions: ds.partitions, ...(ds.attempts !== undefined ? { attempts: ds.attempts } : {}), ...(ds.placement !== undefined ? { placement: ds.placement } : {}) },
    queries: 0,
    ok: 0,
    complete: 0,
    partial: 0,
    errors: {},
    noAnswer: {},
    byAllowPartial: { true: emptyTally(), false: emptyTally() },
    partialAnswers: { minAnswered: null, minConfidence: null, missingReasons: {} },
    afterHeal: { queries: 0, complete: 0, partial: 0, errors: {}, peersWithoutCompleteAnswer: [] },
    violationCount: 0,
    violationsByKind: {},
    violations: []
  }
  const violate = (p: Pair, kind: string, detail: string): void => {
    out.violationCount++
    bump(out.violationsByKind, kind)
    if (out.violations.length < 100) {
      out.violations.push({ index: p.complete.index, process: p.invoke.process, ...(p.invoke.coordinator !== undefined ? { coordinator: p.invoke.coordinator } : {}), query: p.invoke.key ?? '?', allowPartial: allowPartialOf(p), kind, detail })
    }
  }
  const healPeers = new Map<string, boolean>()
  for (const p of ps) {
    if (p.invoke.f !== 'query' && p.invoke.f !== 'final-query') continue
    const final = p.invoke.f === 'final-query'
    const allow = allowPartialOf(p)
    const tally = out.byAllowPartial[allow ? 'true' : 'false']
    const coord = p.invoke.coordinator ?? '?'
    if (final) { out.afterHeal.queries++; if (!healPeers.has(coord)) healPeers.set(coord, false) } else out.queries++
    if (p.type !== 'ok') {
      const code = p.complete.error ?? '?'
      if (final) bump(out.afterHeal.errors, code)
      else if (p.type === 'fail') { bump(out.errors, code); tally.fail++ } else { bump(out.noAnswer, code); tally.info++ }
      if (p.type === 'fail' && code === 'PARTIAL_RESULT') {
        if (allow) violate(p, 'partial-error-with-allowPartial', 'PARTIAL_RESULT to a query asked with allowPartial true')
        const c = p.complete.coverage
        if (c === undefined || !coverageShapeOk(c) || c.missing.length === 0 || c.answered >= c.total) violate(p, 'error-coverage', `PARTIAL_RESULT with coverage ${JSON.stringify(c)}`)
      }
      continue
    }
    if (!final) { out.ok++; tally.ok++ }
    if (ds === undefined) continue
    const name: QueryName = p.invoke.key === 'groups' ? 'groups' : 'total'
    const rows = Array.isArray(p.complete.value) ? p.complete.value : []
    if (!Array.isArray(p.complete.value)) violate(p, 'no-rows', `answer without rows: ${JSON.stringify(p.complete.value)}`)
    const c = p.complete.coverage
    const confidence = p.complete.confidence
    if (!coverageShapeOk(c)) { violate(p, 'coverage-malformed', `coverage ${JSON.stringify(c)}`); continue }
    if (c.total !== ds.partitions) violate(p, 'coverage-total', `coverage total ${c.total}, the space has ${ds.partitions} partitions`)
    const complete = c.answered === c.total && c.missing.length === 0
    if (complete) {
      if (final) { out.afterHeal.complete++; healPeers.set(coord, true) } else { out.complete++; tally.complete++ }
      if (confidence !== 1) violate(p, 'complete-confidence', `complete coverage ${c.answered}/${c.total} with confidence ${String(confidence)}`)
      const want = expectedAnswer(ds, name)
      if (canon(rows) !== canon(want)) violate(p, 'complete-wrong', `complete answer ${JSON.stringify(rows)}, expected ${JSON.stringify(want)}`)
      continue
    }
    if (final) out.afterHeal.partial++; else { out.partial++; tally.partial++ }
    const pa = out.partialAnswers
    pa.minAnswered = pa.minAnswered === null ? c.answered : Math.min(pa.minAnswered, c.answered)
    if (typeof confidence === 'number') pa.minConfidence = pa.minConfidence === null ? confidence : Math.min(pa.minConfidence, confidence)
    for (const m of c.missing) bump(pa.missingReasons, reasonClass(m.reason))
    if (!allow) violate(p, 'partial-with-allowPartial-false', `partial answer (${c.answered}/${c.total}) to a query asked with allowPartial false`)
    if (typeof confidence !== 'number' || !(confidence < 1)) violate(p, 'partial-confidence', `partial coverage ${c.answered}/${c.total} with confidence ${String(confidence)}`)
    else if (c.total > 0 && confidence > c.answered / c.total + 1e-9) violate(p, 'partial-confidence', `confidence ${confidence} above answered / total = ${c.answered}/${c.total}`)
    const problem = coverageProblem(c, ds)
    if (problem !== null) violate(p, 'partial-coverage', problem)
    const above = aboveKnown(rows, expectedAnswer(ds, name), name)
    if (above !== null) violate(p, 'partial-above-known', above)
    if (problem === null) {
      const missing = new Set(c.missing.map(m => m.partition))
      const answered = new Set(Array.from({ length: ds.partitions }, (_, i) => i).filter(i => !missing.has(i)))
      const want = expectedAnswer(ds, name, answered)
      if (canon(rows) !== canon(want)) violate(p, 'partial-inexact', `partial answer ${JSON.stringify(rows)} over partitions ${[...answered].join(',')}, expected ${JSON.stringify(want)}`)
    }
  }
  out.afterHeal.peersWithoutCompleteAnswer = [...healPeers].filter(([, ok]) => !ok).map(([peer]) => peer).sort()
  out.valid = out.violationCount > 0 ? false : ds === undefined ? 'unknown' : true
  return out
}

function allowPartialOf (p: Pair): boolean {
  const v = p.invoke.value as { allowPartial?: unknown } | null
  return v?.allowPartial !== false
}

/**
 * A missing partition's reason, classified: the error code of "<peer>: <CODE>: <message>"
 * (NOT_HELD, NOT_SYNCED, ...), else unreachable / timeout / no reachable replica / every replica
 * failed when the reason says so, else its first 40 characters after the peer's name.
 */
export function reasonClass (reason: unknown): string {
  const s = String(reason ?? '?')
  const parts = s.split(': ')
  if (parts.length >= 3 && /^[A-Z][A-Z_]+$/.test(parts[1]!)) return parts[1]!
  for (const k of ['unreachable', 'no reachable replica', 'every replica failed', 'ended its answer early']) if (s.includes(k)) return k
  if (/timeout|timed out|deadline/i.test(s)) return 'timeout'
  return (parts.length >= 2 ? parts.slice(1).join(': ') : s).slice(0, 40)
}
