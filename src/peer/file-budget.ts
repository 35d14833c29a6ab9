/**
 * How a peer shares its open-file limit (`ulimit -n`, RLIMIT_NOFILE) between the things that hold
 * file descriptors, decided once at start. Every socket and open file is a descriptor; a peer that
 * runs out answers EMFILE everywhere at once (accepting HTTP, dialing peers, opening a WAL, saving
 * its clock), so each consumer gets a fixed share and is capped at it:
 *
 * - fixed: listening sockets, stdio, the log, the data dir's small files (peer key, clock, catalog,
 *   manifests, written one at a time), the segment a flush or a compaction is writing, worker
 *   threads' pipes and Node's own (epoll, eventfd): FIXED_FILES;
 * - libp2p connections to other peers: the host's connection cap;
 * - HTTP connections: HttpServer's cap (idle ones are closed first when it is reached);
 * - storage files: the pool of open write-ahead logs (src/storage), reopened on demand.
 *
 * The limit is read from /proc/self/limits (Linux); where it cannot be read the defaults apply.
 */
import { readFile } from 'node:fs/promises'
import { DEFAULT_MAX_HTTP_CONNECTIONS } from '../http/index.js'
import { DEFAULT_MAX_LIBP2P_CONNECTIONS } from '../net/index.js'
import { DEFAULT_MAX_OPEN_FILES } from '../storage/index.js'

/** Descriptors a peer holds whatever its load (see above), with room to spare. */
export const FIXED_FILES = 64
/** Fewest HTTP connections and open storage files a peer runs with. */
export const MIN_HTTP_CONNECTIONS = 32
export const MIN_STORAGE_FILES = 32
/**
 * libp2p connections when nothing sets them and the limit is unknown: libp2p's own default.
 * Otherwise half of what the limit leaves beside the fixed part and the least HTTP and storage
 * shares, from MIN_ to MAX_AUTO_LIBP2P_CONNECTIONS: membership probes every member, and a
 * connection pruned for being over the cap is dialled again at the next probe, which can make
 * it late (libp2p's 300 pruned a cluster of 300 peers' probes).
 */
export const DEFAULT_LIBP2P_CONNECTIONS = DEFAULT_MAX_LIBP2P_CONNECTIONS
export const MIN_AUTO_LIBP2P_CONNECTIONS = 64
export const MAX_AUTO_LIBP2P_CONNECTIONS = 16_384
/** Largest default HTTP connection cap (the server's own default), when the limit leaves room for more. */
const DEFAULT_HTTP_CONNECTIONS = DEFAULT_MAX_HTTP_CONNECTIONS
/** Largest default pool of open storage files (storage's own default). */
const DEFAULT_STORAGE_FILES = DEFAULT_MAX_OPEN_FILES

export interface FileBudget {
  /** The soft open-file limit, or undefined where it could not be read. */
  limit: number | undefined
  fixed: number
  libp2pConnections: number
  httpConnections: number
  storageFiles: number
}

/** The limit cannot serve even the smallest budget: the peer refuses to start, saying what to raise. */
export class FileLimitError extends Error {
  override name = 'FileLimitError'
}

/** The soft RLIMIT_NOFILE of this process; undefined if unknown (not Linux) or unlimited. */
export async function openFileLimit (limitsFile = '/proc/self/limits'): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(limitsFile, 'utf8')
  } catch {
    return undefined
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)
  if (m === null || m[1] === 'unlimited') return undefined
  return Number(m[1])
}

/**
 * Splits `limit` between the consumers. `httpConnections` and `storageFiles` are the operator's
 * settings (maxHttpConnections, storage.maxOpenFiles), if any: they must fit, or start-up fails
 * naming them. What is not set shares what is left after the fixed part and libp2p, each up to
 * its default.
 */
export function planFileBudget (limit: number | undefined, want: { libp2pConnections?: number, httpConnections?: number, storageFiles?: number }): FileBudget {
  const libp2pConnections = want.libp2pConnections ?? autoLibp2pConnections(limit)
  if (limit === undefined) {
    return { limit, fixed: FIXED_FILES, libp2pConnections, httpConnections: want.httpConnections ?? DEFAULT_HTTP_CONNECTIONS, storageFiles: want.storageFiles ?? DEFAULT_STORAGE_FILES }
  }
  const spare = limit - FIXED_FILES - libp2pConnections
  const least = MIN_HTTP_CONNECTIONS + MIN_STORAGE_FILES
  if (spare < least) {
    throw new FileLimitError(`the open-file limit (ulimit -n) is ${limit}; a peer needs at least ${FIXED_FILES + libp2pConnections + least} ` +
      `(${FIXED_FILES} fixed, ${libp2pConnections} libp2p connections, ${MIN_HTTP_CONNECTIONS} HTTP connections, ${MIN_STORAGE_FILES} storage files): ` +
      'raise it, e.g. `ulimit -n 4096` in the shell that starts the peer or LimitNOFILE=4096 in its systemd unit')
  }
  const setStorage = want.storageFiles ?? MIN_STORAGE_FILES
  if (want.httpConnections !== undefined && want.httpConnections > spare - setStorage) {
    throw new FileLimitError(`maxHttpConnections ${want.httpConnections} does not fit the open-file limit (ulimit -n) of ${limit}: ` +
      `at most ${spare - setStorage} after ${FIXED_FILES} fixed, ${libp2pConnections} libp2p connections and ${setStorage} storage files; ` +
      'lower maxHttpConnections or raise the limit')
  }
  const setHttp = want.httpConnections ?? MIN_HTTP_CONNECTIONS
  if (want.storageFiles !== undefined && want.storageFiles > spare - setHttp) {
    throw new FileLimitError(`storage.maxOpenFiles ${want.storageFiles} does not fit the open-file limit (ulimit -n) of ${limit}: ` +
      `at most ${spare - setHttp} after ${FIXED_FILES} fixed, ${libp2pConnections} libp2p connections and ${setHttp} HTTP connections; ` +
      'lower storage.maxOpenFiles or raise the limit')
  }
  const httpConnections = want.httpConnections ?? Math.min(DEFAULT_HTTP_CONNECTIONS, want.storageFiles !== undefined ? spare - want.storageFiles : Math.floor(spare / 2))
  const storageFiles = want.storageFiles ?? Math.min(DEFAULT_STORAGE_FILES, spare - httpConnections)
  const budget = { limit, fixed: FIXED_FILES, libp2pConnections, httpConnections, storageFiles }
  assertFits(budget)
  return budget
}

/** libp2p connections when nothing sets them: see DEFAULT_LIBP2P_CONNECTIONS. */
export function autoLibp2pConnections (limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_LIBP2P_CONNECTIONS
  const half = Math.floor((limit - FIXED_FILES - MIN_HTTP_CONNECTIONS - MIN_STORAGE_FILES) / 2)
  return Math.max(MIN_AUTO_LIBP2P_CONNECTIONS, Math.min(MAX_AUTO_LIBP2P_CONNECTIONS, half))
}

function assertFits (b: FileBudget): void {
  const total = b.fixed + b.libp2pConnections + b.httpConnections + b.storageFiles
  if (b.limit !== undefined && total > b.limit) throw new Error(`file budget ${total} exceeds the limit ${b.limit}`)
  if (b.httpConnections < 1 || b.storageFiles < 1) throw new Error(`file budget too small: ${JSON.stringify(b)}`)
}
