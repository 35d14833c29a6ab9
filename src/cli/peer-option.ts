/**
 * `--peer`: which peer's HTTP API a command talks to. A URL, or host:port (http assumed), from the
 * flag or SHOAL_PEER; several separated by commas fail over in order (src/cli/client.ts). Default
 * http://127.0.0.1:7947, where `shoal start` listens by default.
 */
import { Option } from 'commander'

export const DEFAULT_PEER = 'http://127.0.0.1:7947'

/** The peers' base URLs: each part as given when it has a scheme, else `http://part`. */
export function peerUrl (value: string): string {
  return value.split(',').map(part => {
    const v = part.trim()
    return v === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `http://${v}`
  }).join(',')
}

export function peerOption (): Option {
  return new Option('--peer <urls>', "any peer's HTTP API: a URL or host:port, or several separated by commas (tried in order)").env('SHOAL_PEER').argParser(peerUrl).default(DEFAULT_PEER)
}
