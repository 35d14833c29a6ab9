/**
 * The CLI's one way to a cluster: a ShoalClient (src/client) for `--peer`, and the one place its
 * typed errors become the one-line CliErrors the CLI prints.
 *
 * `--peer` is one URL, or several separated by commas: a request goes to the first and fails over
 * to the next when a peer does not answer (docs/client.md, "Failover"). SHOAL_TOKEN is sent as the
 * bearer token of a guarded peer (`--http-token-file`); an https peer with a private CA is trusted
 * through NODE_EXTRA_CA_CERTS, which Node adds to the roots the client's https agent uses.
 */
import { ShoalClient, ShoalError, ShoalUnavailableError } from '../client/index.js'
import { CliError } from './errors.js'

/** Row errors listed under a write's failure; the rest are counted. The server lists them all. */
const MAX_ROW_ERRORS = 10

/**
 * Runs `run` with a client of `peer`, closes the client, and turns a ShoalError into a CliError.
 * `timeoutMs`: the default per request (the client's own is 30 s; queries pass longer).
 * Commands that report per batch (import, restore, backup) call toCliError themselves.
 */
export async function withClient<T> (peer: string, run: (client: ShoalClient) => Promise<T>, options: { timeoutMs?: number } = {}): Promise<T> {
  let client: ShoalClient | undefined
  try {
    // No owner routing: a command is one request or a stream of bulk writes, which routing does
    // not route, so it would only add its background requests (who each peer is, placements).
    client = new ShoalClient(peerUrls(peer), { ...tokenOption(), ...options, routing: false })
    return await run(client)
  } catch (err) {
    throw toCliError(err)
  } finally {
    client?.close()
  }
}

/** The URLs of `--peer`: every comma-separated part must be an http(s) URL (usage error, exit 2). */
export function peerUrls (peer: string): string[] {
  const urls = peer.split(',').map(p => p.trim()).filter(p => p !== '')
  const bad = urls.length === 0 || urls.some(u => !isHttpUrl(u))
  if (bad) throw new CliError(`--peer '${peer}' is not a URL (expected e.g. http://127.0.0.1:7947)`, 2)
  return urls
}

function isHttpUrl (text: string): boolean {
  try {
    const u = new URL(text)
    return u.protocol === 'http:' || u.protocol === 'https:'
  } catch {
    return false
  }
}

function tokenOption (): { token?: string } {
  const token = process.env.SHOAL_TOKEN
  return token !== undefined && token !== '' ? { token } : {}
}

export interface CliErrorOptions {
  /** How a write's row is named (import names its line in the file). Default `row N`. */
  rowLabel?: (row: number) => string
}

/**
 * The CliError for a ShoalError: its one line (and the lines of its row errors or validation
 * details); the client's BAD_ARGUMENT is a usage error (exit 2). Anything else is returned as is.
 */
export function toCliError (err: unknown, options: CliErrorOptions = {}): unknown {
  if (!(err instanceof ShoalError)) return err
  return new CliError(cliMessage(err, options), err.code === 'BAD_ARGUMENT' ? 2 : 1, { cause: err })
}

/** The message toCliError gives, for callers that add it to their own. */
export function errorText (err: unknown, options: CliErrorOptions = {}): string {
  const e = toCliError(err, options)
  return e instanceof Error ? e.message : String(e)
}

function cliMessage (err: ShoalError, options: CliErrorOptions): string {
  if (err instanceof ShoalUnavailableError) {
    const t = err.tried
    return t.length === 1 ? `cannot reach peer at ${t[0]!.peer}: ${t[0]!.reason}` : `cannot reach any peer: ${t.map(a => `${a.peer} ${a.reason}`).join(', ')}`
  }
  // The client's own failures (a bad answer, an answer cut short) say everything in their message.
  if (err.status === undefined || err.code === 'BAD_ANSWER') return err.message
  if (err.rowErrors.length > 0) {
    const label = options.rowLabel ?? (row => `row ${row}`)
    const rows = err.rowErrors.slice(0, MAX_ROW_ERRORS).map(e => `\n  ${label(e.row)}${e.field !== '' ? `, field ${e.field}` : ''}: ${e.message}`).join('')
    const more = err.rowErrors.length > MAX_ROW_ERRORS ? `\n  and ${err.rowErrors.length - MAX_ROW_ERRORS} more` : ''
    return `peer answered ${err.status} ${err.code}: invalid records, nothing written${rows}${more}`
  }
  return `peer answered ${err.status} ${err.code}: ${err.message}${detailLines(err.details, err.message)}`
}

/**
 * `error.details` of a query's validation errors, `[{code, message, column?, at?}]`: one indented
 * line each, said once: a detail that repeats the error's own message adds nothing (a single SQL
 * error is both), and a code the message already starts with is not printed twice.
 */
function detailLines (details: unknown, topMessage: string): string {
  if (!Array.isArray(details)) return ''
  return details.map(d => {
    if (typeof d !== 'object' || d === null) return `\n  ${String(d)}`
    const e = d as { code?: unknown, message?: unknown, column?: unknown, at?: unknown }
    const message = typeof e.message === 'string' ? e.message : JSON.stringify(d)
    if (message === topMessage) return ''
    const at = typeof e.at === 'string' && e.at !== '' && !message.includes(e.at) ? ` (at ${e.at})` : ''
    const code = typeof e.code === 'string' && !message.startsWith(`${e.code}:`) ? `${e.code}: ` : ''
    return `\n  ${code}${message}${at}`
  }).join('')
}
