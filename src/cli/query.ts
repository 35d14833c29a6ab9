import { Option, type Command } from 'commander'
import { CliError } from './errors.js'
import type { Completion, Coverage, ExplainResult, PeerWork, QueryResult } from '../client/index.js'
import { withClient } from './client.js'
import { positiveInt } from './space.js'
import { formatBytes, formatTable } from './table.js'

/** `shoal query` and `shoal explain`: SQL against any peer's `POST /query` and `POST /query/explain`. */

export const ARROW_STREAM = 'application/vnd.apache.arrow.stream'
/** The media type of an NDJSON answer: one JSON object a row. */
export const NDJSON = 'application/x-ndjson'
export type QueryFormat = 'table' | 'json' | 'arrow' | 'ndjson' | 'csv'

/** Where a command reads and writes; the process's streams unless a test passes its own. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean }
  stderr: NodeJS.WritableStream
  stdin: AsyncIterable<unknown>
}

export const processIo = (): CliIo => ({ stdout: process.stdout, stderr: process.stderr, stdin: process.stdin })

export interface QueryOptions {
  peer: string
  format: QueryFormat
  /** Sent as `timeoutMs`; the HTTP request itself waits a little longer. */
  timeoutMs?: number
  /** Sent as `allowPartial` only when given. */
  allowPartial?: boolean
  /** Write Arrow bytes even to a terminal. */
  force?: boolean
  /** Table cells longer than this are cut with '…'; 0 never cuts. Default 60. */
  maxCellWidth?: number
}

export interface ExplainOptions {
  peer: string
  analyze?: boolean
  json?: boolean
}

export interface QueryColumn { name: string, type: string }
/** A query's JSON answer as the CLI reads it: any part may be missing from an odd peer. */
export type QueryAnswer = Partial<QueryResult> & Pick<QueryResult, 'rows'>

/** How long a query's request waits, answer included, when no --timeout is given: the server's longest query timeout. */
const DEFAULT_QUERY_WAIT_MS = 300_000
const DEFAULT_MAX_CELL = 60
const MAX_MISSING_LISTED = 20

/** `shoal query 'SQL'`: table (default), json (the peer's answer) or arrow (the raw IPC stream). */
export async function runQuery (sqlArg: string, opts: QueryOptions, io: CliIo = processIo()): Promise<void> {
  if (opts.format === 'arrow' && io.stdout.isTTY === true && opts.force !== true) {
    throw new CliError('refusing to write binary Arrow data to a terminal: redirect stdout to a file or a pipe, or pass --force', 2)
  }
  const sql = await resolveSql(sqlArg, io)
  const options = { ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}), ...(opts.allowPartial !== undefined ? { allowPartial: opts.allowPartial } : {}) }
  const format = opts.format
  if (format === 'arrow' || format === 'ndjson') {
    // Streamed through as the peer writes it: rows in the body, how complete they are in headers.
    await withClient(opts.peer, async client => {
      const answer = await client.queryStream(sql, { ...options, format })
      await pipeBody(answer.body, io.stdout)
      warnIfPartial(answer.coverage, answer.confidence, io)
    }, { timeoutMs: DEFAULT_QUERY_WAIT_MS })
    return
  }

  // The answer as the peer sent it: without the URL the client notes beside it (QueryResult.peer).
  const { peer: _peer, ...answer } = await withClient(opts.peer, async client => await client.query(sql, options), { timeoutMs: DEFAULT_QUERY_WAIT_MS }) as QueryAnswer & { peer?: string }
  if (typeof answer !== 'object' || answer === null) throw new CliError(`unexpected answer from ${opts.peer}/query`)

  if (opts.format === 'json') {
    await write(io.stdout, JSON.stringify(answer, null, 2) + '\n')
  } else if (opts.format === 'csv') {
    if (!Array.isArray(answer.rows)) throw new CliError('a JSON query\'s aggregations have no CSV form: use --format json')
    if (answer.completion !== undefined) throw new CliError('a completion\'s filled record has no CSV form (the rows are only its neighbours): use --format json or table')
    const columns = Array.isArray(answer.columns) ? answer.columns.map(c => c.name) : Object.keys(answer.rows[0] ?? {})
    await write(io.stdout, formatCsv(columns, answer.rows))
  } else if (!Array.isArray(answer.rows) && answer.aggregations !== undefined) {
    // Only JSON queries answer aggregations; print them as they came.
    await write(io.stdout, JSON.stringify(answer.aggregations, null, 2) + '\n' + formatFooter(answer) + '\n')
  } else {
    if (!Array.isArray(answer.rows)) throw new CliError(`unexpected answer from ${opts.peer}/query: no rows`)
    const columns = Array.isArray(answer.columns) ? answer.columns : Object.keys(answer.rows[0] ?? {}).map(name => ({ name, type: 'unknown' }))
    const table = columns.length > 0 ? formatResultTable(columns, answer.rows, opts.maxCellWidth ?? DEFAULT_MAX_CELL) : ''
    const filled = answer.completion !== undefined ? formatCompletion(answer.completion, columns, opts.maxCellWidth ?? DEFAULT_MAX_CELL) : ''
    await write(io.stdout, table + filled + formatFooter(answer) + '\n')
  }
  warnIfPartial(answer.coverage, answer.confidence, io)
}

/**
 * Rows as CSV (RFC 4180): a header of column names, a line a row, CRLF line ends; a field with a
 * comma, a quote or a line break is quoted, quotes doubled; NULL is empty; lists and other
 * structured values are their JSON text.
 */
export function formatCsv (columns: readonly string[], rows: ReadonlyArray<Record<string, unknown>>): string {
  const field = (v: unknown): string => {
    const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v)
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
  }
  let out = columns.map(field).join(',') + '\r\n'
  for (const r of rows) out += columns.map(c => field(r[c])).join(',') + '\r\n'
  return out
}

/** `shoal explain [--analyze] 'SQL'`: the peer's explanation; with --analyze, who did what. */
export async function runExplain (sqlArg: string, opts: ExplainOptions, io: CliIo = processIo()): Promise<void> {
  const sql = await resolveSql(sqlArg, io)
  const answer = await withClient(opts.peer, async client => await client.explain(sql, { analyze: opts.analyze === true }), { timeoutMs: DEFAULT_QUERY_WAIT_MS })
  if (opts.json === true) {
    await write(io.stdout, JSON.stringify(answer, null, 2) + '\n')
    return
  }
  if (typeof answer?.text !== 'string') throw new CliError(`unexpected answer from ${opts.peer}/query/explain: no text`)
  let out = answer.text.endsWith('\n') ? answer.text : answer.text + '\n'
  if (opts.analyze === true && answer.analyze !== undefined) out += '\n' + formatAnalyze(answer.analyze)
  await write(io.stdout, out)
}

/** The per-peer table of `explain --analyze` and a total line. */
export function formatAnalyze (analyze: NonNullable<ExplainResult['analyze']>): string {
  const peers = Array.isArray(analyze.peers) ? analyze.peers : []
  const count = (p: number | unknown[]): number => Array.isArray(p) ? p.length : Number(p ?? 0)
  const table = peers.length === 0
    ? 'no peers reported\n'
    : formatTable(['PEER', 'PARTITIONS', 'ROWS', 'BYTES', 'MS', 'ROUND TRIP MS', 'MERGE MS'],
      peers.map(p => [p.name ?? p.peer ?? '-', String(count(p.partitions)), String(p.rows ?? 0), formatBytes(p.bytes ?? 0), formatMs(p.ms ?? 0), formatMs(p.roundTripMs ?? 0), formatMs(p.mergeMs ?? 0)]),
      { align: ['left', 'right', 'right', 'right', 'right', 'right', 'right'], rule: true })
  const sum = (f: (p: PeerWork) => number): number => peers.reduce((acc, p) => acc + (Number(f(p)) || 0), 0)
  const st = analyze.stages
  const stages = st === undefined
    ? ''
    : `stages: parse ${formatMs(st.parseMs)} · plan ${formatMs(st.planMs)} · scatter ${formatMs(st.scatterMs)} (merging ${formatMs(st.mergeMs)}) · finish ${formatMs(st.finishMs)} · gc ${formatMs(st.gcMs)} ms\n`
  return table + stages + `total: ${peers.length} ${peers.length === 1 ? 'peer' : 'peers'} · ${sum(p => count(p.partitions))} partitions · ` +
    `${sum(p => p.rows)} rows · ${formatBytes(sum(p => p.bytes))} · ${formatMs(analyze.tookMs ?? 0)} ms\n`
}

/** Aligned text for a query's rows: numbers right-aligned, the rest left; a dashed rule under the names. */
export function formatResultTable (columns: QueryColumn[], rows: Array<Record<string, unknown> | unknown[]>, maxCellWidth = DEFAULT_MAX_CELL): string {
  const cells = rows.map(row => columns.map((c, i) => truncate(formatValue(Array.isArray(row) ? row[i] : row[c.name], c.type), maxCellWidth)))
  return formatTable(columns.map(c => truncate(c.name, maxCellWidth)), cells, { align: columns.map(c => isNumericType(c.type) ? 'right' : 'left'), rule: true })
}

/** `12 rows · 16/16 partitions · confidence 1.00 · 23 ms` (parts the answer lacks are left out). */
/**
 * A completion's record under its neighbours: one line a column, the given ones marked, each
 * filled one with how much the neighbours agree (confidence) and how many hold the value.
 */
export function formatCompletion (c: Completion, columns: readonly QueryColumn[], maxCellWidth = DEFAULT_MAX_CELL): string {
  const typeOf = new Map(columns.map(col => [col.name, col.type]))
  const rows = Object.keys(c.record).map(name => {
    const given = !Object.prototype.hasOwnProperty.call(c.confidence, name)
    return [name, formatValue(c.record[name], typeOf.get(name) ?? 'unknown'), given ? 'given' : formatFloat(c.confidence[name]!), given ? '' : String(c.support[name] ?? 0)]
  })
  const head: QueryColumn[] = [{ name: 'column', type: 'utf8' }, { name: 'value', type: 'utf8' }, { name: 'confidence', type: 'utf8' }, { name: 'support', type: 'utf8' }]
  return '\ncompleted record:\n' + formatResultTable(head, rows, maxCellWidth)
}

export function formatFooter (answer: Partial<QueryAnswer>): string {
  const parts: string[] = []
  if (Array.isArray(answer.rows)) parts.push(`${answer.rows.length} ${answer.rows.length === 1 ? 'row' : 'rows'}`)
  if (answer.coverage !== undefined) parts.push(`${answer.coverage.answered}/${answer.coverage.total} partitions`)
  if (typeof answer.confidence === 'number') parts.push(`confidence ${answer.confidence.toFixed(2)}`)
  if (typeof answer.tookMs === 'number') parts.push(`${formatMs(answer.tookMs)} ms`)
  return parts.join(' · ')
}

/** The stderr warning for an answer that some partitions did not contribute to, or undefined if complete. */
export function coverageWarning (coverage: Coverage | undefined, confidence?: number): string | undefined {
  if (coverage === undefined || !(coverage.answered < coverage.total)) return undefined
  const missing = Array.isArray(coverage.missing) ? coverage.missing : []
  const conf = typeof confidence === 'number' && Number.isFinite(confidence) ? ` (confidence ${confidence.toFixed(2)})` : ''
  const lines = [`shoal: warning: partial answer: ${coverage.answered} of ${coverage.total} partitions answered${conf}${missing.length > 0 ? '; missing:' : ''}`]
  for (const m of missing.slice(0, MAX_MISSING_LISTED)) lines.push(`  ${m.space} partition ${m.partition}: ${m.reason}`)
  if (missing.length > MAX_MISSING_LISTED) lines.push(`  … and ${missing.length - MAX_MISSING_LISTED} more`)
  return lines.join('\n') + '\n'
}

/** One value as a table cell, by its Arrow type name. */
export function formatValue (value: unknown, type: string): string {
  if (value === null || value === undefined) return 'NULL'
  const t = type.trim().toLowerCase()
  // Strings also carry int64 beyond 2^53 and anything else JSON cannot hold: shown as they came.
  if (typeof value === 'string') return escapeControl(value)
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number') {
    if (t.startsWith('timestamp')) return isoTimestamp(value)
    if (t === 'date' || t.startsWith('date32') || t === 'date32[day]') return isoDate(value)
    if (t.startsWith('float') || t === 'double' || t.startsWith('decimal')) return formatFloat(value)
    return Number.isInteger(value) ? String(value) : formatFloat(value)
  }
  if (typeof value === 'bigint') return value.toString()
  if (Array.isArray(value)) {
    const inner = t.startsWith('vector<') ? 'float32' : t.startsWith('list<') && t.endsWith('>') ? t.slice(5, -1) : 'unknown'
    return '[' + value.map(v => typeof v === 'string' ? JSON.stringify(v) : formatValue(v, inner)).join(', ') + ']'
  }
  return escapeControl(JSON.stringify(value))
}

/** Floats without binary noise: at most 6 decimals, trailing zeros dropped; exponents for the very large and small. */
export function formatFloat (x: number): string {
  if (!Number.isFinite(x)) return String(x)
  if (x === 0) return '0'
  const a = Math.abs(x)
  if (a >= 1e15 || a < 1e-6) return x.toExponential(6).replace(/\.?0+e/, 'e')
  const fixed = x.toFixed(6).replace(/\.?0+$/, '')
  return fixed === '-0' ? '0' : fixed
}

function isoTimestamp (ms: number): string {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString()
}

function isoDate (days: number): string {
  const d = new Date(days * 86_400_000)
  return Number.isNaN(d.getTime()) ? String(days) : d.toISOString().slice(0, 10)
}

function isNumericType (type: string): boolean {
  return /^(u?int\d*|float\d*|double|decimal)/.test(type.trim().toLowerCase())
}

/** Newlines and other control characters would break the table's lines. */
function escapeControl (s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, c => c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

function truncate (s: string, max: number): string {
  if (max <= 0 || s.length <= max) return s
  return max === 1 ? '…' : s.slice(0, max - 1) + '…'
}

function formatMs (ms: number): string {
  return ms < 10 && !Number.isInteger(ms) ? ms.toFixed(1) : String(Math.round(ms))
}

function warnIfPartial (coverage: Coverage | undefined, confidence: number | undefined, io: CliIo): void {
  const warning = coverageWarning(coverage, confidence)
  if (warning !== undefined) io.stderr.write(warning)
}

/** The SQL argument, or all of stdin for '-'. */
async function resolveSql (arg: string, io: CliIo): Promise<string> {
  let sql = arg
  if (arg === '-') {
    const chunks: Buffer[] = []
    try {
      for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer)
    } catch (err) {
      throw new CliError(`cannot read SQL from stdin: ${(err as Error).message}`)
    }
    sql = Buffer.concat(chunks).toString('utf8')
  }
  sql = sql.trim()
  if (sql === '') throw new CliError(arg === '-' ? 'no SQL on stdin' : 'no SQL given', 2)
  return sql
}

/** The answer's body to `out` chunk by chunk, unchanged, waiting for each write to be taken (a cut-short answer throws). */
async function pipeBody (body: AsyncIterable<Uint8Array>, out: NodeJS.WritableStream): Promise<void> {
  for await (const chunk of body) await write(out, chunk)
}

async function write (out: NodeJS.WritableStream, chunk: string | Uint8Array): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    out.write(chunk, err => {
      if (err === undefined || err === null) resolve()
      else if ((err as NodeJS.ErrnoException).code === 'EPIPE') resolve() // the reader went away (| head)
      else reject(new CliError(`cannot write output: ${err.message}`))
    })
  })
}

/** Registers `query` and `explain` on the program; `peerOption` makes the shared --peer option. */
export function registerQueryCommands (program: Command, peerOption: () => Option, io: () => CliIo = processIo): void {
  program.command('query <sql>')
    .description("run a SQL query on the cluster through any peer ('-' reads the SQL from stdin)")
    .addOption(new Option('--format <format>', 'output: an aligned table, the JSON answer, an Arrow IPC stream, NDJSON rows or CSV').choices(['table', 'json', 'arrow', 'ndjson', 'csv']).default('table'))
    .option('--timeout <ms>', 'give up on the query after this many milliseconds (default: the peer\'s)')
    .option('--allow-partial', 'answer from the partitions that can be reached (see the coverage warning)')
    .option('--no-allow-partial', 'fail rather than answer without some partitions')
    .option('--max-cell-width <n>', `cut table cells longer than this with '…' (0: never)`, String(DEFAULT_MAX_CELL))
    .option('--force', 'write Arrow data even when stdout is a terminal')
    .addOption(peerOption())
    .action(async (sql: string, opts: { format: QueryFormat, timeout?: string, allowPartial?: boolean, maxCellWidth: string, force?: boolean, peer: string }) => {
      const maxCell = Number(opts.maxCellWidth)
      if (!Number.isInteger(maxCell) || maxCell < 0) throw new CliError(`--max-cell-width must be a whole number, got '${opts.maxCellWidth}'`, 2)
      await runQuery(sql, {
        peer: opts.peer,
        format: opts.format,
        ...(opts.timeout !== undefined ? { timeoutMs: positiveInt(opts.timeout, '--timeout') } : {}),
        ...(opts.allowPartial !== undefined ? { allowPartial: opts.allowPartial } : {}),
        force: opts.force === true,
        maxCellWidth: maxCell
      }, io())
    })

  program.command('explain <sql>')
    .description("show how a SQL query would run ('-' reads the SQL from stdin)")
    .option('--analyze', 'run the query and report what each peer did')
    .option('--json', 'print the JSON answer (text, plan, analyze)')
    .addOption(peerOption())
    .action(async (sql: string, opts: { analyze?: boolean, json?: boolean, peer: string }) => {
      await runExplain(sql, { peer: opts.peer, analyze: opts.analyze === true, json: opts.json === true }, io())
    })
}
