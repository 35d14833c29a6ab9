/**
 * `--peer`: which peer's HTTP API a command talks to. A URL, or host:port (http assumed), from the
 * flag or SHOAL_PEER; default http://127.0.0.1:7947, where `shoal start` listens by default.
 */
import { Option } from 'commander'

export const DEFAULT_PEER = 'http://127.0.0.1:7947'

/** The peer's base URL: `value` as given when it has a scheme, else `http://value`. */
export function peerUrl (value: string): string {
  const v = value.trim()
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`
}

export function peerOption (): Option {
  return new Option('--peer <url>', "any peer's HTTP API: a URL or host:port").env('SHOAL_PEER').argParser(peerUrl).default(DEFAULT_PEER)
}
