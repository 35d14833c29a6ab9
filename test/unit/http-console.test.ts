/**
 * The console's files over HTTP (src/http/console.ts, src/console): the page never cached without
 * asking again, hashed files cached for good, 304 on a known ETag, HEAD, unknown names 404, a
 * peer without a built console 503 saying how to build it, and the page and files open on a
 * peer with tokens while the API stays closed.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { consoleDir, loadConsoleFiles } from '../../src/console/index.js'
import { HttpServer, parseTokenFile, registerConsole } from '../../src/http/index.js'
import { silentLogger } from '../../src/runtime/index.js'

const TOKEN = 'console-unit-0123456789abcdef'

describe('the console over HTTP', () => {
  let dir: string
  let url: string
  let missingUrl: string
  const servers: HttpServer[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-console-unit-'))
    await writeFile(join(dir, 'index.html'), '<!doctype html><script type="module" src="/console/console-ABC123.js"></script>')
    await writeFile(join(dir, 'console-ABC123.js'), 'console.log(1)')
    await writeFile(join(dir, 'notes.txt'), 'not a console file')
    const start = async (load: Parameters<typeof registerConsole>[1]): Promise<string> => {
      const server = new HttpServer({ host: '127.0.0.1', port: 0, tokens: parseTokenFile(TOKEN) }, silentLogger)
      registerConsole(server, load)
      server.route('GET', '/spaces', () => ({ body: [] }))
      servers.push(server)
      const { port } = await server.start()
      return `http://127.0.0.1:${port}`
    }
    url = await start(async () => await loadConsoleFiles(dir))
    missingUrl = await start(async () => await loadConsoleFiles(join(dir, 'nowhere')))
  })
  afterAll(async () => {
    for (const s of servers) await s.stop(0)
    await rm(dir, { recursive: true, force: true })
  })

  it('serves the page with no-cache and an ETag, and 304 when the browser has it', async () => {
    const res = await fetch(`${url}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(await res.text()).toContain('/console/console-ABC123.js')
    const etag = res.headers.get('etag')!
    expect(etag).toMatch(/^"[0-9a-f]{16}"$/)
    const again = await fetch(`${url}/`, { headers: { 'if-none-match': etag } })
    expect(again.status).toBe(304)
    expect(again.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(await again.text()).toBe('')
  })

  it('serves hashed files as immutable, answers HEAD, and 404 for any other name', async () => {
    const res = await fetch(`${url}/console/console-ABC123.js`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
    expect(await res.text()).toBe('console.log(1)')
    const head = await fetch(`${url}/console/console-ABC123.js`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-length')).toBe('14')
    for (const name of ['notes.txt', 'index.html', '..%2Fnotes.txt', 'nope.js']) {
      expect((await fetch(`${url}/console/${name}`)).status, name).toBe(404)
    }
    expect((await fetch(`${url}/console/a/b`)).status).toBe(401)
  })

  it('opens the page and its files without a token while the API still needs one', async () => {
    expect((await fetch(`${url}/`)).status).toBe(200)
    expect((await fetch(`${url}/spaces`)).status).toBe(401)
    expect((await fetch(`${url}/spaces`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200)
    expect((await fetch(`${url}/`, { method: 'POST' })).status).toBe(401)
  })

  it('answers 503 naming the build step when the console is not built', async () => {
    const res = await fetch(`${missingUrl}/`)
    expect(res.status).toBe(503)
    const body = await res.json() as { error: { code: string, message: string } }
    expect(body.error.code).toBe('CONSOLE_NOT_BUILT')
    expect(body.error.message).toContain('npm run build')
  })

  it('finds dist/console under the package root', () => {
    expect(consoleDir()).toBe(join(process.cwd(), 'dist', 'console'))
  })
})
