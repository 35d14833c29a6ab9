/**
 * The console (docs/console.md) in a real browser: Debian's chromium, driven by puppeteer-core,
 * against real peer processes. On a 3-peer cluster the page lists every member, a query typed
 * into the query box shows its rows in #result, and a member killed with SIGKILL turns dead on
 * the page (its only-copy partitions red); screenshots of both go to test-artifacts/. On a peer
 * with a token file the page asks for a token, and with one shows the members.
 *
 * Runs where chromium is installed (.ci/run installs Debian's package; SHOAL_CHROMIUM names
 * another binary) and skips, saying why, where it is not. Needs the console built (npm test
 * builds it: scripts/bundle.ts).
 */
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TestCluster, waitFor, type PeerProcess } from '../cluster/index.js'

const here = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(here, here.split(/[\\/]/).includes('dist') ? '../../..' : '../..')
/** Kept after the run (gitignored): CI keeps them as the run's artifacts. */
const ARTIFACTS = join(ROOT, 'test-artifacts')
const CHROMIUM = process.env.SHOAL_CHROMIUM ?? '/usr/bin/chromium'

/** Why the browser tests cannot run here, or undefined when they can. */
function missing (): string | undefined {
  if (!existsSync(CHROMIUM)) return `no chromium at ${CHROMIUM} (apt-get install chromium, as .ci/run does; or set SHOAL_CHROMIUM)`
  if (!existsSync(join(ROOT, 'dist', 'console', 'index.html'))) return 'the console is not built (npm run build)'
  return undefined
}
const why = missing()
if (why !== undefined) console.warn(`console.test.ts: skipped: ${why}`)

/** Headless chromium as root in a container: no sandbox (it needs user namespaces), no GPU. */
async function launch (): Promise<Browser> {
  return await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'] })
}

/** A page that fails the test on any script error of the console. */
async function open (browser: Browser, url: string, errors: string[]): Promise<Page> {
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900 })
  page.on('pageerror', err => { errors.push(String(err)) })
  await page.goto(url, { waitUntil: 'load' })
  return page
}

/**
 * Waits until `expression` (run in the page; a string, as this file is compiled without the DOM's
 * types) is true.
 */
async function until (page: Page, expression: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(expression, { timeout: timeoutMs })
}

/** The text of each cell of each row under `selector` (rows of a tbody). */
async function cells (page: Page, selector: string): Promise<string[][]> {
  return await page.$$eval(selector, rows => rows.map(row => [...row.querySelectorAll('td')].map(td => (td.textContent ?? '').trim())))
}

describe.skipIf(why !== undefined)('the console in chromium, on a 3-peer cluster', () => {
  let cluster: TestCluster
  let browser: Browser
  const peers: PeerProcess[] = []
  const people = [{ id: 'p1', name: 'Ada', age: 36 }, { id: 'p2', name: 'Grace', age: 45 }, { id: 'p3', name: 'Linus', age: 28 }]

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    cluster = await TestCluster.create()
    peers.push(...await cluster.startJoined(['a', 'b', 'c']))
    const [a] = peers
    // Two replicas of `people` (it survives a death); one of `events`, so a death leaves some of
    // its partitions with no copy: the map shows them red.
    expect((await a!.post('/spaces', { name: 'people', schema: [{ name: 'name', type: 'utf8' }, { name: 'age', type: 'int32' }], partitions: 8, replicas: 2 })).status).toBe(201)
    expect((await a!.post('/spaces', { name: 'events', schema: [{ name: 'kind', type: 'utf8' }, { name: 'at', type: 'timestamp' }], partitions: 12, replicas: 1 })).status).toBe(201)
    await waitFor(async () => (await a!.post('/spaces/people/records?consistency=all', people)).status === 200, { timeoutMs: 20_000 })
    const events = Array.from({ length: 40 }, (_, i) => ({ id: `e${i}`, kind: i % 3 === 0 ? 'login' : 'view', at: 1_790_000_000_000 + i * 1000 }))
    await waitFor(async () => (await a!.post('/spaces/events/records', events)).status === 200, { timeoutMs: 20_000 })
    browser = await launch()
  })
  afterAll(async () => {
    await browser?.close()
    await cluster?.stopAll()
  })

  it('lists every member, shows the rows of a typed query, and marks a killed member dead', async () => {
    const [a, , c] = peers
    const errors: string[] = []
    const page = await open(browser, `${a!.url}/`, errors)

    await until(page, `document.querySelectorAll('#members tbody tr[data-state="alive"]').length === 3`)
    const members = await cells(page, '#members tbody tr')
    expect(members.map(row => row[1]!.replace(/\s*\(this peer\)$/, '')).sort()).toEqual(['a', 'b', 'c'])
    for (const row of members) expect(row[0]).toBe('alive')

    await page.type('#query textarea[name="sql"]', 'SELECT id, name, age FROM people ORDER BY id')
    await page.click('#query button[name="run"]')
    await page.waitForSelector('#result tbody tr', { timeout: 15_000 })
    expect(await page.$$eval('#result thead th', ths => ths.map(th => th.textContent))).toEqual(['id', 'name', 'age'])
    expect(await cells(page, '#result tbody tr')).toEqual(people.map(p => [p.id, p.name, String(p.age)]))
    expect(await page.$eval('#result-meta', el => el.textContent)).toMatch(/coverage 8\/8 partitions · confidence 1 · 3 rows/)

    // The slow part of the poll (placement, row counts, status) in: a full page for the screenshot.
    await until(page, "document.querySelectorAll('.pmap').length === 2 && !document.querySelector('#spaces').textContent.includes('…') && !document.querySelector('#members').textContent.includes('…')")
    const spaces = (await cells(page, '#spaces tbody tr')).map(([name, , partitions, replicas, rows]) => [name, partitions, replicas, rows])
    expect(spaces.sort((x, y) => x[0]!.localeCompare(y[0]!))).toEqual([['events', '12', '1', '40'], ['people', '8', '2', '3']])
    await page.screenshot({ path: join(ARTIFACTS, 'console.png'), fullPage: true })

    await c!.kill()
    const killedAt = Date.now()
    await until(page, `document.querySelector('#members tr[data-peer="${c!.peerId}"]')?.getAttribute('data-state') === 'dead'`, 30_000)
    const shownAfterMs = Date.now() - killedAt
    expect(await page.$eval(`#members tr[data-peer="${c!.peerId}"] td`, td => td.textContent)).toBe('dead')
    // c held a third of `events`' only copies: those partitions are red now.
    await until(page, `document.querySelectorAll('.pmap[data-space="events"] thead th.unavailable').length > 0`)
    await page.screenshot({ path: join(ARTIFACTS, 'console-dead.png'), fullPage: true })
    console.log(`console.test.ts: c shown dead ${shownAfterMs} ms after SIGKILL; screenshots in ${ARTIFACTS}`)
    expect(errors).toEqual([])
  })
})

describe.skipIf(why !== undefined)('the console in chromium, on a peer with a token file', () => {
  const TOKEN = 'console-0123456789abcdef-token'
  let cluster: TestCluster
  let browser: Browser
  let peer: PeerProcess
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-console-'))
    const tokens = join(dir, 'tokens')
    await writeFile(tokens, `${TOKEN} read-only\n`, { mode: 0o600 })
    cluster = await TestCluster.create()
    peer = await cluster.startPeer('t', { extraArgs: ['--http-token-file', tokens] })
    browser = await launch()
  })
  afterAll(async () => {
    await browser?.close()
    await cluster?.stopAll()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves the page without a token, asks for one, refuses a wrong one, and shows the members with the right one', async () => {
    const errors: string[] = []
    const page = await open(browser, `${peer.url}/`, errors)
    await page.waitForSelector('form#token input[name="token"]', { timeout: 15_000 })
    expect(await page.$$eval('#members tbody tr', rows => rows.length)).toBe(0)

    await page.type('form#token input[name="token"]', `${TOKEN}-wrong`)
    await page.click('form#token button[type="submit"]')
    await until(page, "document.querySelector('form#token')?.textContent.includes('The token was refused') === true")

    await page.$eval('form#token input[name="token"]', input => { (input as unknown as { value: string }).value = '' })
    await page.type('form#token input[name="token"]', TOKEN)
    await page.click('form#token button[type="submit"]')
    await until(page, `document.querySelectorAll('#members tbody tr[data-state="alive"]').length === 1 && document.querySelector('form#token') === null`)
    expect((await cells(page, '#members tbody tr'))[0]![1]).toMatch(/^t/)
    expect(await page.evaluate("sessionStorage.getItem('shoal.token')")).toBe(TOKEN)

    // The token lasts as long as the tab: a reload asks for nothing.
    await page.reload({ waitUntil: 'load' })
    await until(page, `document.querySelectorAll('#members tbody tr[data-state="alive"]').length === 1`)
    expect(await page.$('form#token')).toBeNull()
    expect(errors).toEqual([])
  })
})
