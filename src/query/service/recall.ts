/**
 * Recall over several spaces ("imagine"): the same top-K vector search in each space, merged by
 * score into one top K. `{"spaces": ["notes", "papers"], "knn": {...}, "fields": [...]}`: each
 * space runs as its own query (so each gets its own plan, replicas and coverage); the answer adds
 * `_space` to every row (and always `_score`) and sums the coverage.
 */
import { batchFromRows } from '../../columnar/index.js'
import { SCORE_COLUMN } from '../model/index.js'
import { QueryError } from './errors.js'
import type { Coverage, QueryAnswer, QueryRequest } from './service.js'

export const SPACE_COLUMN = '_space'
/** Most spaces one recall may search. */
export const MAX_RECALL_SPACES = 16

/** True when a JSON query names several spaces. */
export function isMultiSpace (query: unknown): query is Record<string, unknown> & { spaces: unknown } {
  return query !== null && typeof query === 'object' && !Array.isArray(query) && 'spaces' in query
}

export async function recallMany (req: QueryRequest, run: (req: QueryRequest) => Promise<QueryAnswer>, now: () => number): Promise<QueryAnswer> {
  const t0 = now()
  const q = req.query as Record<string, unknown>
  const spaces = q.spaces
  if (!Array.isArray(spaces) || spaces.length === 0 || spaces.length > MAX_RECALL_SPACES || !spaces.every(s => typeof s === 'string') || new Set(spaces).size !== spaces.length) {
    throw new QueryError('INVALID_QUERY', 400, `spaces: a list of 1 to ${MAX_RECALL_SPACES} distinct space names`)
  }
  if (q.space !== undefined) throw new QueryError('INVALID_QUERY', 400, 'space: give either space or spaces')
  const knn = q.knn as { k?: unknown, metric?: unknown } | undefined
  if (knn === undefined || knn === null || typeof knn !== 'object') throw new QueryError('INVALID_QUERY', 400, 'spaces: a query over several spaces is a recall: it needs knn')
  const rest: Record<string, unknown> = { ...q }
  delete rest.spaces
  // Rows of different spaces are ranked by score, so the score is always in the answer.
  if (Array.isArray(rest.fields) && !rest.fields.includes(SCORE_COLUMN)) rest.fields = [...rest.fields, SCORE_COLUMN]
  const answers: Array<{ space: string, answer: QueryAnswer }> = []
  for (const space of spaces as string[]) {
    answers.push({ space, answer: await run({ ...req, query: { ...rest, space } }) })
  }
  const lowerIsBetter = knn.metric === 'l2'
  const rows: Array<Record<string, unknown>> = answers.flatMap(({ space, answer }) => answer.rows.map(r => ({ ...r, [SPACE_COLUMN]: space })))
  rows.sort((a, b) => {
    const x = a[SCORE_COLUMN] as number; const y = b[SCORE_COLUMN] as number
    return lowerIsBetter ? x - y : y - x
  })
  const size = typeof rest.size === 'number' ? rest.size : typeof knn.k === 'number' ? knn.k : rows.length
  const kept = rows.slice(0, size)
  const columns = [...new Map(answers.flatMap(a => a.answer.columns).map(c => [c.name, c])).values()]
  columns.push({ name: SPACE_COLUMN, type: 'utf8' })
  const coverage: Coverage = { total: 0, answered: 0, missing: [] }
  for (const { answer } of answers) {
    coverage.total += answer.coverage.total
    coverage.answered += answer.coverage.answered
    coverage.missing.push(...answer.coverage.missing)
  }
  const ordered = kept.map(r => Object.fromEntries(columns.map(c => [c.name, r[c.name] ?? null])))
  return {
    columns,
    rows: ordered,
    batch: batchFromRows(ordered, columns),
    coverage,
    confidence: coverage.total === 0 ? 1 : coverage.answered / coverage.total,
    tookMs: now() - t0,
    strategy: 'MultiSpace'
  }
}
