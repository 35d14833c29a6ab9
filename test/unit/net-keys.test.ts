import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateSwarmKey, loadOrCreatePeerKey, parseSwarmKey, PeerKeyError, SwarmKeyError } from '../../src/net/index.js'

describe('swarm keys', () => {
  it('generates keys that parse to the pnet text format', () => {
    const text = generateSwarmKey()
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    const bytes = parseSwarmKey(text)
    expect(new TextDecoder().decode(bytes)).toBe(text.trimEnd())
    expect(generateSwarmKey()).not.toBe(text)
  })

  it('accepts CRLF, trailing blank lines and upper-case hex', () => {
    const hex = 'AB'.repeat(32)
    const bytes = parseSwarmKey(`/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex}\r\n\r\n`)
    expect(new TextDecoder().decode(bytes)).toBe(`/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}`)
  })

  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['wrong header', '/key/swarm/psk/2.0.0/\n/base16/\n' + 'a'.repeat(64), /first line/],
    ['missing codec', '/key/swarm/psk/1.0.0/', /missing encoding/],
    ['wrong codec', '/key/swarm/psk/1.0.0/\n/base64/\n' + 'a'.repeat(64), /second line.*base16/],
    ['missing key', '/key/swarm/psk/1.0.0/\n/base16/\n', /missing key line/],
    ['short key', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'a'.repeat(62), /64 hex characters, got 62/],
    ['non-hex key', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'g'.repeat(64), /non-hex/],
    ['extra lines', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'a'.repeat(64) + '\nmore', /unexpected content/]
  ]
  for (const [name, text, message] of cases) {
    it(`rejects a key with ${name}`, () => {
      let caught: unknown
      try { parseSwarmKey(text) } catch (err) { caught = err }
      expect(caught).toBeInstanceOf(SwarmKeyError)
      expect((caught as SwarmKeyError).name).toBe('SwarmKeyError')
      expect((caught as Error).message).toMatch(message)
    })
  }
})

describe('peer key', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  })

  it('creates an Ed25519 key with mode 0600 and reloads the same identity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-key-'))
    dirs.push(dir)
    const dataDir = join(dir, 'nested', 'data')
    const a = await loadOrCreatePeerKey(dataDir)
    expect(a.type).toBe('Ed25519')
    const st = await stat(join(dataDir, 'peer.key'))
    expect(st.mode & 0o777).toBe(0o600)
    const b = await loadOrCreatePeerKey(dataDir)
    expect(peerIdFromPrivateKey(b).toString()).toBe(peerIdFromPrivateKey(a).toString())
    expect((await readFile(join(dataDir, 'peer.key'))).length).toBeGreaterThan(32)
  })

  it('refuses a corrupt key file instead of silently making a new identity', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-key-'))
    dirs.push(dir)
    await writeFile(join(dir, 'peer.key'), 'not a key')
    await expect(loadOrCreatePeerKey(dir)).rejects.toBeInstanceOf(PeerKeyError)
  })
})
