/**
 * `shoal status [--json] [--timeout MS]`: the whole cluster in one table, as the peer asked
 * gathers it (GET /cluster/status; src/peer/cluster-status.ts). Exit 0 once printed, whatever the
 * cluster's state (scripts read --json); 1 when the peer cannot be asked; 2 on a usage error.
 */
import type { ClusterPeerRow as PeerRow, ClusterSpaceRow as SpaceRow, ClusterStatus } from '../client/index.js'
import { CliError } from './errors.js'
import { withClient } from './client.js'
import { formatBytes, formatTable } from './table.js'

export async function runStatus (opts: { peer: string, json?: boolean, timeoutMs?: number }): Promise<void> {
  const status = await withClient(opts.peer, async client => await client.status(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}))
  if (status === null || typeof status !== 'object' || !Array.isArray(status.peers) || !Array.isArray(status.spaces)) {
    throw new CliError(`unexpected answer from ${opts.peer}/cluster/status`)
  }
  process.stdout.write(opts.json === true ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status))
}

/** The status as text: a headline, the peers' table, the spaces' table, and why peers did not answer. */
export function formatStatus (s: ClusterStatus): string {
  const counts = new Map<string, number>()
  for (const p of s.peers) counts.set(stateOf(p), (counts.get(stateOf(p)) ?? 0) + 1)
  const lines = [
    `cluster ${s.health}${s.majority ? '' : ' (this peer is on the minority side)'}: ${s.peers.length} peer${s.peers.length === 1 ? '' : 's'} (${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')}), ${s.spaces.length} space${s.spaces.length === 1 ? '' : 's'}; asked ${s.name} at ${s.at}, ${s.tookMs} ms`,
    ''
  ]
  const dash = (v: number | null | undefined, f: (n: number) => string = n => n.toLocaleString('en-US')): string => v === null || v === undefined ? '-' : f(v)
  lines.push(formatTable(
    ['PEER', 'STATE', 'VERSION', 'UPTIME', 'HELD', 'READY', 'ROWS', 'DISK', 'HINTS'],
    s.peers.map(p => [
      p.name ?? p.peerId, stateOf(p), p.version ?? '-', dash(p.uptimeMs, formatUptime),
      dash(p.partitions?.held), dash(p.partitions?.ready), dash(p.rows), dash(p.diskBytes, formatBytes), dash(p.hintsPending)
    ]),
    { align: ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'right'] }
  ).trimEnd())
  lines.push('')
  if (s.spaces.length === 0) {
    lines.push('no spaces')
  } else {
    lines.push(formatTable(
      ['SPACE', 'PARTITIONS', 'REPLICAS', 'SHORT', 'BELOW QUORUM', 'UNAVAILABLE', 'DIGESTS'],
      s.spaces.map(sp => [sp.name, String(sp.partitions), replicasCell(sp), String(sp.partitionsShort), String(sp.belowQuorum.length), String(sp.unavailable.length), digestsCell(sp)]),
      { align: ['left', 'right', 'right', 'right', 'right', 'right', 'left'] }
    ).trimEnd())
  }
  const notes = s.peers.filter(p => p.error !== undefined).map(p => `  ${p.name ?? p.peerId}: ${p.error}`)
  if (notes.length > 0) lines.push('', 'not answering:', ...notes)
  const detail = s.spaces.flatMap(sp => [
    ...(sp.unavailable.length > 0 ? [`  ${sp.name}: no live replica of partition${plural(sp.unavailable)} ${list(sp.unavailable)}`] : []),
    ...(sp.belowQuorum.length > 0 ? [`  ${sp.name}: fewer live replicas than a quorum in partition${plural(sp.belowQuorum)} ${list(sp.belowQuorum)}`] : []),
    ...(sp.digests.differing.length > 0 ? [`  ${sp.name}: replicas' digests differ in partition${plural(sp.digests.differing)} ${list(sp.digests.differing)} (shoal repair ${sp.name})`] : [])
  ])
  if (detail.length > 0) lines.push('', 'partitions:', ...detail)
  return lines.join('\n') + '\n'
}

/** A peer's state: its membership state, or `unreachable` when it is alive but did not answer. */
function stateOf (p: PeerRow): string {
  return (p.state === 'alive' || p.state === 'suspect') && !p.reachable ? 'unreachable' : p.state
}

/** `live/wanted`, the live count a range when partitions differ (`2-3/3`). */
function replicasCell (sp: SpaceRow): string {
  const live = sp.replicas.fewestLive === sp.replicas.mostLive ? String(sp.replicas.fewestLive) : `${sp.replicas.fewestLive}-${sp.replicas.mostLive}`
  return `${live}/${sp.replicas.wanted}`
}

function digestsCell (sp: SpaceRow): string {
  const d = sp.digests
  if (d.state === 'differ') return `differ (${d.differing.length} partition${plural(d.differing)})`
  if (d.state === 'unknown') return `unknown (${d.unknown.length} partition${plural(d.unknown)})`
  return 'agree'
}

function plural (xs: readonly unknown[]): string { return xs.length === 1 ? '' : 's' }

/** At most 20 partition numbers, then how many more. */
function list (xs: readonly number[]): string {
  return xs.length <= 20 ? xs.join(', ') : `${xs.slice(0, 20).join(', ')} and ${xs.length - 20} more`
}

/** Uptime in its two largest units: `45s`, `12m 5s`, `3h 20m`, `2d 4h`. */
export function formatUptime (ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor(s % 86_400 / 3600)}h`
}
