import { ConsoleNotBuiltError, loadConsoleFiles, type ConsoleFile, type ConsoleFiles } from '../console/index.js'
import { HttpError, type HttpServer, type RouteRequest, type RouteResponse } from './server.js'

/**
 * Hashed files never change under their name: a year, and `immutable` so a reload does not even
 * ask (the longest max-age caches honour, RFC 9111 and every browser's practice).
 */
const IMMUTABLE = 'public, max-age=31536000, immutable'

/**
 * The page: asked again every time (a 304 when it is the same), so a new build's file names
 * reach the browser at once. Its scripts and styles come from this peer only; it may not be framed.
 */
const PAGE_HEADERS = {
  'cache-control': 'no-cache',
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer'
}

/**
 * GET / (the console's page) and GET /console/<file> (its hashed scripts and styles), HEAD for
 * both: docs/console.md. Open without a token (guard.ts): the files are the same for everyone
 * and hold no data; the page calls the API with the token it asks for.
 *
 * The files are read from disk on the first request and held (about 80 KiB); when they are not
 * built, GET / answers 503 saying how to build them and is tried again on the next request.
 */
export function registerConsole (server: HttpServer, load: () => Promise<ConsoleFiles> = async () => await loadConsoleFiles()): void {
  let files: Promise<ConsoleFiles> | undefined
  const get = async (): Promise<ConsoleFiles> => {
    files ??= load()
    try {
      return await files
    } catch (err) {
      files = undefined
      if (err instanceof ConsoleNotBuiltError) throw new HttpError(503, 'CONSOLE_NOT_BUILT', err.message)
      throw err
    }
  }
  const page = async (req: RouteRequest): Promise<RouteResponse> => answer(req, (await get()).index, PAGE_HEADERS)
  const asset = async (req: RouteRequest): Promise<RouteResponse> => {
    const file = (await get()).assets.get(req.params.file!)
    if (file === undefined) throw new HttpError(404, 'NOT_FOUND', `no console file '${req.params.file!.slice(0, 100)}' (the page names the files of this peer's build)`)
    return answer(req, file, { 'cache-control': IMMUTABLE, 'x-content-type-options': 'nosniff' })
  }
  for (const method of ['GET', 'HEAD']) {
    server.route(method, '/', page)
    server.route(method, '/console/:file', asset)
  }
}

/** The file, or 304 when the browser holds it already (If-None-Match names its ETag). */
function answer (req: RouteRequest, file: ConsoleFile, headers: Record<string, string>): RouteResponse {
  const all = { ...headers, etag: file.etag }
  const known = req.headers['if-none-match']
  const fresh = known !== undefined && known.split(',').some(tag => tag.trim() === file.etag)
  // The same content type on a 304 too: a browser updates what it holds from the 304's headers.
  return { status: fresh ? 304 : 200, bytes: fresh ? new Uint8Array(0) : file.body, contentType: file.contentType, headers: all }
}
