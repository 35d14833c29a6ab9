import { CliError } from './errors.js'

/**
 * The bearer token of a guarded peer (`--http-token-file` on the peer): from SHOAL_TOKEN, sent
 * with every request the CLI makes. (An https peer with a private CA: NODE_EXTRA_CA_CERTS.)
 */
export function authHeaders (): Record<string, string> {
  const token = process.env.SHOAL_TOKEN
  return token !== undefined && token !== '' ? { authorization: `Bearer ${token}` } : {}
}

/** GETs or POSTs JSON to a peer's HTTP API, turning every failure into a one-line CliError. */
export async function fetchJson (base: string, path: string, init: { method?: string, body?: unknown, rawBody?: string, contentType?: string, timeoutMs?: number } = {}): Promise<unknown> {
  let url: URL
  try {
    url = new URL(path, base)
  } catch {
    throw new CliError(`--peer '${base}' is not a URL (expected e.g. http://127.0.0.1:7947)`, 2)
  }
  const contentType = init.rawBody !== undefined ? init.contentType ?? 'application/json' : init.body !== undefined ? 'application/json' : undefined
  let res: Response
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: { ...authHeaders(), ...(contentType !== undefined ? { 'content-type': contentType } : {}) },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      ...(init.rawBody !== undefined ? { body: init.rawBody } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 10_000)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    throw new CliError(`cannot reach peer at ${url.origin}: ${cause}`)
  }
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new CliError(`peer at ${url.origin} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`)
  }
  if (!res.ok) {
    const b = body as { error?: { code?: string, message?: string, details?: unknown }, errors?: Array<{ row: number, field: string, message: string }> }
    const rowErrors = (b.errors ?? []).slice(0, 10).map(e => `\n  row ${e.row}${e.field !== '' ? `, field ${e.field}` : ''}: ${e.message}`).join('')
    throw new CliError(`peer answered ${res.status} ${b.error?.code ?? ''}: ${b.error?.message ?? (rowErrors !== '' ? 'invalid records, nothing written' : text.slice(0, 200))}${rowErrors}${detailLines(b.error?.details, b.error?.message)}`)
  }
  return body
}

/**
 * `error.details` of a query's validation errors, `[{code, message, column?, at?}]`: one indented
 * line each, said once: a detail that repeats the error's own message adds nothing (a single SQL
 * error is both), and a code the message already starts with is not printed twice.
 */
function detailLines (details: unknown, topMessage: string | undefined): string {
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

/**
 * POSTs a JSON body and hands back the successful Response unread (for bodies that are not JSON,
 * e.g. an Arrow IPC stream). Failures become the same one-line CliErrors as fetchJson's.
 */
export async function fetchResponse (base: string, path: string, init: { method?: string, body?: unknown, accept?: string, timeoutMs?: number } = {}): Promise<Response> {
  let url: URL
  try {
    url = new URL(path, base)
  } catch {
    throw new CliError(`--peer '${base}' is not a URL (expected e.g. http://127.0.0.1:7947)`, 2)
  }
  const headers: Record<string, string> = authHeaders()
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  if (init.accept !== undefined) headers.accept = init.accept
  let res: Response
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers,
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 10_000)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    throw new CliError(`cannot reach peer at ${url.origin}: ${cause}`)
  }
  if (res.ok) return res
  const text = await res.text()
  let body: { error?: { code?: string, message?: string, details?: unknown } }
  try {
    body = JSON.parse(text) as typeof body
  } catch {
    throw new CliError(`peer at ${url.origin} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`)
  }
  throw new CliError(`peer answered ${res.status} ${body.error?.code ?? ''}: ${body.error?.message ?? text.slice(0, 200)}${detailLines(body.error?.details, body.error?.message)}`)
}
