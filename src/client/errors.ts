/**
 * The client's errors, matched by class or `code`, never by message (STYLE.md: Deno std).
 *
 * - ShoalError: a peer answered with an error (`{error: {code, message, details?}}` or a
 *   write's row errors `{errors: [{row, field, message}]}`), or the client refused its input.
 * - ShoalUnavailableError: no peer answered at all (refused, reset or timed out before an
 *   answer began), with what each peer tried gave.
 */

/** One invalid row of a write: nothing of the request was written. */
export interface RowError {
  /** Position of the row in the rows the caller passed (for importStream, in the whole stream). */
  row: number
  field: string
  message: string
}

export interface ShoalErrorInit {
  /** HTTP status of the answer; undefined when no answer was received. */
  status?: number
  /** The partition the server named (a query's first missing partition), when it named one. */
  partition?: number
  /** `error.details` of the answer (a query's validation errors), or other extras the server sent. */
  details?: unknown
  rowErrors?: RowError[]
  /** The peer that answered (or that was tried last). */
  peer?: string
  cause?: unknown
}

export class ShoalError extends Error {
  override name = 'ShoalError'
  readonly status: number | undefined
  readonly partition: number | undefined
  readonly details: unknown
  readonly rowErrors: RowError[]
  readonly peer: string | undefined

  constructor (readonly code: string, message: string, init: ShoalErrorInit = {}) {
    super(message, init.cause !== undefined ? { cause: init.cause } : undefined)
    this.status = init.status
    this.partition = init.partition
    this.details = init.details
    this.rowErrors = init.rowErrors ?? []
    this.peer = init.peer
  }
}

/** Why one peer gave no answer. */
export interface PeerAttempt {
  peer: string
  /** The socket error code (ECONNREFUSED, ECONNRESET, ...) or TIMEOUT. */
  reason: string
}

/** Every peer tried gave no answer: the cluster (or the network to it) is down from here. */
export class ShoalUnavailableError extends ShoalError {
  override name = 'ShoalUnavailableError'
  constructor (readonly tried: PeerAttempt[], message: string, cause?: unknown) {
    super('UNAVAILABLE', message, { ...(tried.length > 0 ? { peer: tried[tried.length - 1]!.peer } : {}), cause })
  }
}

/** Largest error body kept in a message when it is not the JSON error shape (an HTML proxy page). */
const MAX_RAW_ERROR_CHARS = 200

/**
 * The ShoalError for an answer with a 4xx/5xx status. The body shapes are those of src/http:
 * `{error: {code, message, ...extras}, ...topLevelExtras}` and, for invalid rows,
 * `{written, errors: [{row, field, message}]}`.
 */
export function errorFromAnswer (status: number, bodyText: string, peer: string): ShoalError {
  let body: unknown
  try {
    body = JSON.parse(bodyText)
  } catch {
    return new ShoalError('BAD_ANSWER', `peer ${peer} answered ${status} with non-JSON: ${bodyText.slice(0, MAX_RAW_ERROR_CHARS)}`, { status, peer })
  }
  const b = (typeof body === 'object' && body !== null ? body : {}) as { error?: Record<string, unknown>, errors?: unknown }
  if (Array.isArray(b.errors) && b.errors.length > 0 && b.error === undefined) {
    const rowErrors = b.errors.map(toRowError)
    const first = rowErrors[0]!
    return new ShoalError('INVALID_ROWS', `${rowErrors.length} invalid record(s), nothing written; first: row ${first.row}${first.field !== '' ? `, field ${first.field}` : ''}: ${first.message}`, { status, rowErrors, peer, details: body })
  }
  const error = b.error ?? {}
  const code = typeof error.code === 'string' ? error.code : `HTTP_${status}`
  const message = typeof error.message === 'string' ? error.message : bodyText.slice(0, MAX_RAW_ERROR_CHARS)
  const { code: _c, message: _m, ...extras } = error
  const partition = partitionOf(extras)
  // A query's validation errors travel as error.details; other extras (a PARTIAL_RESULT's
  // coverage, a bad NDJSON line's `written`) are kept whole so nothing the server said is lost.
  const { error: _e, ...topExtras } = b as Record<string, unknown>
  const details = extras.details !== undefined ? extras.details : mergeExtras(extras, topExtras)
  return new ShoalError(code, message, { status, peer, details, ...(partition !== undefined ? { partition } : {}) })
}

function toRowError (e: unknown): RowError {
  const r = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>
  return { row: typeof r.row === 'number' ? r.row : -1, field: typeof r.field === 'string' ? r.field : '', message: typeof r.message === 'string' ? r.message : JSON.stringify(e) }
}

/**
 * The partition an error names in its structure: `partition`, or the first of a PARTIAL_RESULT's
 * `coverage.missing`. Messages are not parsed: their wording is not a contract.
 */
function partitionOf (extras: Record<string, unknown>): number | undefined {
  if (typeof extras.partition === 'number') return extras.partition
  const coverage = extras.coverage as { missing?: Array<{ partition?: unknown }> } | undefined
  const first = coverage?.missing?.[0]?.partition
  return typeof first === 'number' ? first : undefined
}

function mergeExtras (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> | undefined {
  const merged = { ...b, ...a }
  return Object.keys(merged).length > 0 ? merged : undefined
}
