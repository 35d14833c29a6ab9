/**
 * Key material a peer keeps on disk: the swarm key shared by every member of a private network
 * (libp2p pnet format) and the peer's own identity key, so a restarted peer keeps its PeerId.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
const SWARM_KEY_CODEC = '/base16/'
const SWARM_KEY_BYTES = 32

/** The swarm key text is malformed; `problem` says which part. */
export class SwarmKeyError extends Error {
  override name = 'SwarmKeyError'
  readonly problem: string
  constructor (problem: string) {
    super(`invalid swarm key: ${problem}`)
    this.problem = problem
  }
}

/** The persisted peer key exists but cannot be used. */
export class PeerKeyError extends Error {
  override name = 'PeerKeyError'
  readonly path: string
  constructor (path: string, reason: string, cause?: unknown) {
    super(`peer key ${path}: ${reason}`, { cause })
    this.path = path
  }
}

/** A fresh swarm key in the text format of `swarm.key` files (go-ipfs / libp2p pnet compatible). */
export function generateSwarmKey (): string {
  return `${SWARM_KEY_HEADER}\n${SWARM_KEY_CODEC}\n${randomBytes(SWARM_KEY_BYTES).toString('hex')}\n`
}

/**
 * Validates swarm key text and returns the bytes @libp2p/pnet's `preSharedKey({ psk })` expects
 * (the canonical text, UTF-8 encoded). pnet's own parser only says "invalid PSK", so the checks
 * here exist to tell an operator what exactly is wrong with the file.
 */
export function parseSwarmKey (text: string | Uint8Array): Uint8Array {
  const str = typeof text === 'string' ? text : new TextDecoder().decode(text)
  const lines = str.split(/\r?\n/).map(l => l.trim())
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  if (lines.length === 0) throw new SwarmKeyError('empty')
  if (lines[0] !== SWARM_KEY_HEADER) {
    throw new SwarmKeyError(`first line must be "${SWARM_KEY_HEADER}", got "${truncate(lines[0])}"`)
  }
  if (lines.length < 2) throw new SwarmKeyError(`missing encoding line "${SWARM_KEY_CODEC}"`)
  if (lines[1] !== SWARM_KEY_CODEC) {
    throw new SwarmKeyError(`second line must be "${SWARM_KEY_CODEC}" (only base16 is supported), got "${truncate(lines[1])}"`)
  }
  if (lines.length < 3) throw new SwarmKeyError('missing key line (64 hex characters)')
  if (lines.length > 3) throw new SwarmKeyError(`unexpected content after the key line (${lines.length} lines, expected 3)`)
  const hex = lines[2]
  if (!/^[0-9a-fA-F]*$/.test(hex)) throw new SwarmKeyError('key line contains non-hex characters')
  if (hex.length !== SWARM_KEY_BYTES * 2) {
    throw new SwarmKeyError(`key line must be ${SWARM_KEY_BYTES * 2} hex characters, got ${hex.length}`)
  }
  // pnet decodes with multibase base16, which is lower case only.
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_CODEC}\n${hex.toLowerCase()}`)
}

function truncate (s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s
}

/** Where loadOrCreatePeerKey keeps the key inside a data dir. */
export const PEER_KEY_FILE = 'peer.key'

/**
 * The peer's Ed25519 identity from `<dataDir>/peer.key` (protobuf bytes), created on first use.
 * Written to a temp file, fsynced and renamed, so a crash never leaves a truncated key that would
 * silently give the peer a new identity; mode 0600 because it is a private key.
 */
export async function loadOrCreatePeerKey (dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, PEER_KEY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PeerKeyError(path, 'cannot read', err)
  }
  if (bytes !== undefined) {
    try {
      // Cast: @libp2p/crypto's declarations resolve a duplicate copy of @libp2p/interface.
      return privateKeyFromProtobuf(bytes) as unknown as PrivateKey
    } catch (err) {
      throw new PeerKeyError(path, 'not a libp2p private key (protobuf); move it away to create a new identity', err)
    }
  }
  await mkdir(dataDir, { recursive: true })
  const key = await generateKeyPair('Ed25519')
  const tmp = `${path}.tmp-${process.pid}`
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(privateKeyToProtobuf(key))
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw new PeerKeyError(path, 'cannot write', err)
  }
  return key as unknown as PrivateKey
}
