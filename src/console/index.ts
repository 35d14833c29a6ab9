/**
 * console: the browser console every peer serves at GET / (docs/console.md). The page itself is
 * built from ./browser (preact, htm and uPlot, bundled by scripts/bundle.ts into dist/console/:
 * an index.html and content-hashed files beside it); this face finds those files and holds them
 * for the HTTP layer, which serves them (src/http/console.ts).
 *
 * ```ts
 * const files = await loadConsoleFiles()       // ConsoleNotBuiltError when dist/console is missing
 * files.index.body                             // the page: never cached without asking again
 * files.assets.get('console-3JQ2ZC7T.js')      // a hashed file: cached for a year
 * ```
 */
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** One file of the console, held in memory. */
export interface ConsoleFile {
  body: Buffer
  contentType: string
  /** A strong validator: the first 16 hex digits of the body's SHA-256, quoted. */
  etag: string
}

export interface ConsoleFiles {
  /** The page (index.html), which names the hashed files. */
  index: ConsoleFile
  /** The hashed files by name (`console-<hash>.js`, `console-<hash>.css`). */
  assets: ReadonlyMap<string, ConsoleFile>
}

/** The console's files are not where the build puts them: the peer was compiled without scripts/bundle.ts. */
export class ConsoleNotBuiltError extends Error {
  override name = 'ConsoleNotBuiltError'
  constructor (readonly dir: string, cause?: unknown) {
    super(`the console is not built (no ${join(dir, 'index.html')}): run npm run build`, { cause })
  }
}

/**
 * Most files and bytes held: the build makes three files of about 80 KiB in all (preact 10 KiB,
 * uPlot 50 KiB, our code and styles), so anything far beyond is not a console build.
 */
export const MAX_CONSOLE_FILES = 32
export const MAX_CONSOLE_BYTES = 4 * 1024 * 1024

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png'
}

/**
 * dist/console under the package root, found by walking up from this module to shoal's
 * package.json: the same code runs as dist/src/console/index.js (tsc), inside
 * dist/bundle/main.js (esbuild) and as src/console/index.ts (vitest), each at another depth.
 */
export function consoleDir (): string {
  const start = dirname(fileURLToPath(import.meta.url))
  let dir = start
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }
      if (pkg.name === 'shoal') return join(dir, 'dist', 'console')
    } catch {
      // Not the package root: look one level up.
    }
    dir = dirname(dir)
  }
  // No package.json above (a copy of dist/ alone): dist/console as tsc's layout places it.
  return join(start, '..', '..', 'console')
}

/** Reads the built console into memory; throws ConsoleNotBuiltError when there is none. */
export async function loadConsoleFiles (dir: string = consoleDir()): Promise<ConsoleFiles> {
  let names: string[]
  try {
    names = (await readdir(dir)).filter(n => CONTENT_TYPES[extname(n)] !== undefined)
  } catch (err) {
    throw new ConsoleNotBuiltError(dir, err)
  }
  if (!names.includes('index.html')) throw new ConsoleNotBuiltError(dir)
  if (names.length > MAX_CONSOLE_FILES) throw new Error(`${dir} holds ${names.length} files; a console build has a few (at most ${MAX_CONSOLE_FILES})`)
  let total = 0
  const files = new Map<string, ConsoleFile>()
  for (const name of names) {
    const path = join(dir, name)
    const size = (await stat(path)).size
    total += size
    if (total > MAX_CONSOLE_BYTES) throw new Error(`${dir} holds more than ${MAX_CONSOLE_BYTES} bytes; a console build is about 80 KiB`)
    const body = await readFile(path)
    files.set(name, { body, contentType: CONTENT_TYPES[extname(name)]!, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` })
  }
  const index = files.get('index.html')!
  files.delete('index.html')
  return { index, assets: files }
}
