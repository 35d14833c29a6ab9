import { HttpError, type HttpServer } from './server.js'

/** One member as the HTTP contract shows it (DESIGN.md section 8). */
export interface MemberView {
  peerId: string
  name: string | null
  addrs: string[]
  http: string | null
  state: 'alive' | 'suspect' | 'dead' | 'left'
  incarnation: number
}

export interface HealthReport {
  status: 'green' | 'yellow' | 'red'
  peer: string
  name: string
  addrs: string[]
  majority: boolean
  [extra: string]: unknown
}

/** Fault injection hooks; present only when the peer runs with --enable-fault-injection. */
export interface FaultControl {
  setDenied(peerIds: string[]): Promise<void>
  state(): { deny: string[] }
}

/** What the HTTP API needs from a peer (peer.ts implements it). */
export interface ApiPeer {
  health(): HealthReport
  members(): MemberView[]
  clusterHealth(): unknown
  metrics(): Promise<{ contentType: string, text: string }>
  readonly faults: FaultControl | undefined
}

/** Largest deny list accepted: more peers than any cluster we run, small enough to bound work. */
const MAX_DENY = 1024

/** Registers the endpoints of the contract that this layer serves. */
export function registerApi (server: HttpServer, peer: ApiPeer): void {
  server.route('GET', '/health', () => ({ body: peer.health() }))
  server.route('GET', '/cluster/members', () => ({ body: peer.members() }))
  server.route('GET', '/cluster/health', () => ({ body: peer.clusterHealth() }))
  server.route('GET', '/metrics', async () => {
    const { contentType, text } = await peer.metrics()
    return { text, contentType }
  })
  server.route('GET', '/admin/faults', () => ({ body: requireFaults(peer).state() }))
  server.route('POST', '/admin/faults', async (req) => {
    const faults = requireFaults(peer)
    const body = await req.json()
    const deny = parseDeny(body)
    await faults.setDenied(deny)
    return { body: faults.state() }
  })
}

function requireFaults (peer: ApiPeer): FaultControl {
  if (peer.faults === undefined) {
    throw new HttpError(403, 'FAULT_INJECTION_DISABLED', 'fault injection is disabled; start the peer with --enable-fault-injection to use /admin/faults')
  }
  return peer.faults
}

function parseDeny (body: unknown): string[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object like {"deny": ["<peerId>", ...]}')
  for (const key of Object.keys(body)) {
    if (key !== 'deny') throw new HttpError(400, 'BAD_REQUEST', `unknown field '${key}'; expected 'deny'`)
  }
  const deny = (body as { deny?: unknown }).deny
  if (!Array.isArray(deny)) throw new HttpError(400, 'BAD_REQUEST', "field 'deny' must be an array of peer ids")
  if (deny.length > MAX_DENY) throw new HttpError(400, 'BAD_REQUEST', `field 'deny' has ${deny.length} entries; at most ${MAX_DENY}`)
  deny.forEach((id, i) => {
    if (typeof id !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{20,128}$/.test(id)) throw new HttpError(400, 'BAD_REQUEST', `field 'deny[${i}]' is not a peer id`)
  })
  return [...new Set(deny as string[])]
}
