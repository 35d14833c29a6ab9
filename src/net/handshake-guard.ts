/**
 * Tells a stranger apart from a broken handshake. A peer of another cluster (another swarm key),
 * a peer with no key, or anything else that is not a libp2p peer produces, after the private
 * network's stream cipher, bytes that are noise to us; libp2p then fails somewhere in protocol
 * negotiation with messages such as "message length length too long", and the refusing side
 * logs nothing at all. Every libp2p connection opens with the multistream-select header
 * (varint 19, "/multistream/1.0.0\n"), so the first bytes read through the protector show at
 * once whether the other side speaks our protocol under our key. The guard checks them, byte by
 * byte as they arrive, and on a mismatch fails the connection with SwarmKeyMismatchError ("swarm
 * key mismatch or not a Shoal peer") and says so in the log, on whichever side sees it.
 *
 * It wraps the pnet protector when the cluster has a swarm key, and stands alone when it does
 * not (a keyless peer dialled by a keyed one reads the other's pnet nonce as garbage too).
 */
import type { ConnectionProtector, MultiaddrConnection } from '@libp2p/interface'

export const SWARM_KEY_MISMATCH = 'swarm key mismatch or not a Shoal peer'

/** The other side of a connection does not speak libp2p under this peer's swarm key (or lack of one). */
export class SwarmKeyMismatchError extends Error {
  override name = 'SwarmKeyMismatchError'
}

/** The first message of every multistream-select exchange: its varint length, then the text. */
const MSS_HEADER = new Uint8Array([19, ...new TextEncoder().encode('/multistream/1.0.0\n')])

export interface HandshakeGuardOptions {
  /** The pnet protector to wrap, if the cluster has a swarm key. */
  inner?: ConnectionProtector
  /** Called once per refused connection with the remote address. */
  onMismatch: (remoteAddr: string, keyed: boolean) => void
}

export function handshakeGuard (opts: HandshakeGuardOptions): ConnectionProtector {
  return {
    async protect (connection: MultiaddrConnection, options?: Parameters<ConnectionProtector['protect']>[1]): Promise<MultiaddrConnection> {
      const conn = opts.inner !== undefined ? await opts.inner.protect(connection, options) : connection
      const remote = conn.remoteAddr.toString()
      const keyed = opts.inner !== undefined
      const source = checkHeader(conn.source, keyed, (closed) => {
        opts.onMismatch(remote, keyed)
        const what = closed ? 'closed the connection right after the key exchange' : 'opened with bytes that are not libp2p\'s handshake under this peer\'s swarm key'
        return new SwarmKeyMismatchError(`${SWARM_KEY_MISMATCH} (${remote} ${what}${keyed ? '' : '; this peer has no swarm key'})`)
      })
      return { ...conn, source }
    }
  }
}

/**
 * Passes `source` through once its first bytes are the multistream header; throws the error of
 * `mismatch()` at the first byte that differs, or at an end before the header is complete. Under
 * a swarm key, an end before any byte counts too: the other side took our nonce and hung up, which
 * is what a peer of another cluster does when our handshake is noise to it (a deny-list refusal
 * closes before the nonce exchange, so it never gets here).
 *
 * An iterator object rather than a generator: once the header has passed, its `next` is the
 * source's own, so the check costs nothing per chunk for the life of the connection (a generator
 * adds a hop to every read: 5-10 % of an RPC round trip, measured).
 */
function checkHeader (source: MultiaddrConnection['source'], keyed: boolean, mismatch: (closed: boolean) => Error): MultiaddrConnection['source'] {
  // The type says generator; some sources are only iterables (their iterator is another object).
  const it = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]() as MultiaddrConnection['source']
  let seen = 0
  const fail = async (closed: boolean): Promise<never> => {
    const err = mismatch(closed)
    await it.return?.(undefined)
    throw err
  }
  const guarded: MultiaddrConnection['source'] = {
    next: async () => {
      const r = await it.next()
      if (r.done === true) {
        if (seen > 0 || keyed) return await fail(true)
        return r
      }
      const bytes = r.value instanceof Uint8Array ? r.value : r.value.subarray()
      const n = Math.min(bytes.length, MSS_HEADER.length - seen)
      for (let i = 0; i < n; i++) if (bytes[i] !== MSS_HEADER[seen + i]) return await fail(false)
      seen += n
      // Checked: from now on the reader calls the source's own next, with no hop of ours.
      if (seen === MSS_HEADER.length) guarded.next = it.next.bind(it)
      return r
    },
    return: async (value?: unknown) => await (it.return?.(value) ?? { done: true, value: undefined }),
    throw: async (err?: unknown) => { if (it.throw === undefined) throw err; return await it.throw(err) },
    [Symbol.asyncIterator] () { return guarded }
  }
  return guarded
}
