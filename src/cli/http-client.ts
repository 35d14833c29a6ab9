import { CliError } from './errors.js'

/** GETs or POSTs JSON to a peer's HTTP API, turning every failure into a one-line CliError. */
export async function fetchJson (base: string, path: string, init: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<unknown> {
  let url: URL
  try {
    url = new URL(path, base)
  } catch {
    throw new CliError(`--peer '${base}' is not a URL (expected e.g. http://127.0.0.1:7947)`, 2)
  }
  let res: Response
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      ...(init.body !== undefined ? { body: JSON.stringify(init.body), headers: { 'content-type': 'application/json' } } : {}),
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
    const error = (body as { error?: { code?: string, message?: string } }).error
    throw new CliError(`peer answered ${res.status} ${error?.code ?? ''}: ${error?.message ?? text.slice(0, 200)}`)
  }
  return body
}
