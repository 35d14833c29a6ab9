/**
 * The incarnation ceiling file of a peer (issue 13): round trip, atomic replace, what is ignored
 * and what is an error, and a Swim restarted on the same data dir starting above its old self.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FileIncarnationStore, IncarnationFileError } from '../../src/peer/incarnation-file.js'
import { INCARNATION_LEASE, Swim } from '../../src/membership/index.js'
import { silentLogger, type Logger } from '../../src/runtime/index.js'
import { SimWorld } from '../sim/index.js'

const dirs: string[] = []
function tempDir (): string {
  const d = mkdtempSync(join(tmpdir(), 'shoal-incarnation-'))
  dirs.push(d)
  return d
}
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

function recordingLog (): { log: Logger, warnings: string[] } {
  const warnings: string[] = []
  const log: Logger = { ...silentLogger, warn: (_o, msg) => { warnings.push(msg ?? '') }, child: () => log }
  return { log, warnings }
}

describe('FileIncarnationStore', () => {
  it('loads nothing from a fresh data dir, then what it saved; the file is replaced whole, no temporary left', () => {
    const dir = tempDir()
    const store = new FileIncarnationStore(dir, silentLogger)
    expect(store.load()).toBeUndefined()
    store.save(1234)
    store.save(5678)
    expect(new FileIncarnationStore(dir, silentLogger).load()).toBe(5678)
    expect(readFileSync(join(dir, 'incarnation'), 'utf8')).toBe('5678')
    expect(readdirSync(dir)).toEqual(['incarnation'])
  })

  it('ignores unreadable content with a warning (the clock and refutation cover a lost ceiling)', () => {
    for (const content of ['', 'abc', '-5', '1.5', '99999999999999999999']) {
      const dir = tempDir()
      writeFileSync(join(dir, 'incarnation'), content)
      const { log, warnings } = recordingLog()
      expect(new FileIncarnationStore(dir, log).load()).toBeUndefined()
      expect(warnings).toEqual(['ignoring an unreadable incarnation file; starting from the clock'])
    }
  })

  it('a file it cannot read or write is an error that names it', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'incarnation'))
    const store = new FileIncarnationStore(dir, silentLogger)
    expect(() => store.load()).toThrow(IncarnationFileError)
    expect(() => new FileIncarnationStore(join(dir, 'missing'), silentLogger).save(1)).toThrow(/cannot write .*incarnation/)
  })

  it('a Swim restarted on the same data dir starts above every incarnation its previous life used', () => {
    const dir = tempDir()
    const world = new SimWorld({ seed: 1 })
    const first = world.addPeer('p')
    const a = new Swim({ transport: first.transport, clock: first.clock, random: first.random, log: silentLogger, incarnations: new FileIncarnationStore(dir, silentLogger) }, { meta: { name: 'p' } })
    for (let i = 0; i < INCARNATION_LEASE + 5; i++) a.updateMeta({ name: 'p', v: i })
    const used = a.localMember().incarnation
    const again = world.restart('p')
    const b = new Swim({ transport: again.transport, clock: again.clock, random: again.random, log: silentLogger, incarnations: new FileIncarnationStore(dir, silentLogger) }, { meta: { name: 'p', http: '127.0.0.1:2' } })
    expect(b.localMember().incarnation).toBeGreaterThan(used)
  })
})
