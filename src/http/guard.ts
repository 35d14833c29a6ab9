/**
 * The HTTP API's guard: bearer tokens from a file, and which requests a read-only token may make.
 *
 * Token file (`--http-token-file`): one token a line, `<token>` or `<token> read-only` (or
 * `<token> read-write`, the default); blank lines and lines starting with `#` are skipped. A token
 * is at least MIN_TOKEN_CHARS printable characters without spaces: a short one is refused at start
 * with its line number, never silently accepted. Tokens are kept as SHA-256 digests and compared in
 * constant time, so neither memory dumps nor response timing give them away.
 *
 * With a token file, every request but GET /health (a load balancer's or orchestrator's probe:
 * it says whether the peer is up and little else) and the console's page and files (GET / and
 * /console/<file>, which hold no data) needs `Authorization: Bearer <token>`: a missing
 * or unknown token is 401, a read-only token asking for more is 403. Read-only may GET and HEAD
 * anything outside /admin and /backup, and POST a query (/query, /query/explain): queries never
 * write.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

export type TokenRole = 'read-write' | 'read-only'

/** Shortest token accepted: 16 characters (a 96-bit random token in base64 is 16). */
export const MIN_TOKEN_CHARS = 16

export class TokenFileError extends Error {
  override name = 'TokenFileError'
}

export interface TokenEntry { digest: Buffer, role: TokenRole }

/** Parses a token file's text; throws TokenFileError naming the line of the first bad entry. */
export function parseTokenFile (text: string): TokenEntry[] {
  const out: TokenEntry[] = []
  const seen = new Set<string>()
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const [token, role, ...extra] = line.split(/\s+/)
    const at = `line ${i + 1}`
    if (extra.length > 0) throw new TokenFileError(`${at}: expected '<token>' or '<token> read-only', got ${1 + 1 + extra.length} words`)
    if (!/^[\x21-\x7e]+$/.test(token!)) throw new TokenFileError(`${at}: a token is printable ASCII without spaces`)
    if (token!.length < MIN_TOKEN_CHARS) throw new TokenFileError(`${at}: a token must be at least ${MIN_TOKEN_CHARS} characters (this one has ${token!.length})`)
    if (role !== undefined && role !== 'read-only' && role !== 'read-write') throw new TokenFileError(`${at}: the role is read-only or read-write, not '${role}'`)
    const digest = sha256(token!)
    const key = digest.toString('hex')
    if (seen.has(key)) throw new TokenFileError(`${at}: this token is already listed`)
    seen.add(key)
    out.push({ digest, role: (role ?? 'read-write') as TokenRole })
  })
  if (out.length === 0) throw new TokenFileError('no token in the file (an empty token file would lock every client out)')
  return out
}

function sha256 (text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** The role of the request's bearer token, or undefined when it has none or an unknown one. */
export function roleOf (tokens: readonly TokenEntry[], authorization: string | undefined): TokenRole | undefined {
  if (authorization === undefined) return undefined
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (m === null) return undefined
  const digest = sha256(m[1]!)
  let role: TokenRole | undefined
  // Every entry is compared, found or not: the time taken does not say where a token stands.
  for (const t of tokens) if (timingSafeEqual(t.digest, digest)) role = t.role
  return role
}

/**
 * Requests that need no token: an orchestrator's liveness probe, and the console's page and files
 * (`/` and `/console/<file>`: the same for everyone, no data in them; the page asks for a token
 * when the API answers 401, docs/console.md).
 */
export function isOpen (method: string, path: string): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false
  return path === '/health' || path === '/' || CONSOLE_FILE.test(path)
}

/** A console file's path: one segment under /console/, no further slash. */
const CONSOLE_FILE = /^\/console\/[^/]+$/

/**
 * Whether a read-only token may make this request: reads outside /admin and /backup, and queries.
 * A backup is an operator's export of every space at once (and its GETs start one), not a read.
 */
export function readOnlyMay (method: string, path: string): boolean {
  for (const area of ['/admin', '/backup']) if (path === area || path.startsWith(`${area}/`)) return false
  if (method === 'GET' || method === 'HEAD') return true
  return method === 'POST' && (path === '/query' || path === '/query/explain')
}

/** Whether an HTTP host is a loopback address (the API's default, where no guard is needed). */
export function isLoopbackHost (host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}
