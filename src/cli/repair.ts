/**
 * `shoal repair [SPACE] [--json] [--timeout MS]`: anti-entropy now, on every live peer, for one
 * space or all (POST /cluster/repair; src/peer/cluster-status.ts, src/replication/on-demand.ts),
 * and what each peer found and moved. Exit 0 when every peer's part completed; 1 when a peer
 * failed or did not answer, or a sync did not complete (run it again), or the peer cannot be
 * asked; 2 on a usage error.
 */
import type { ClusterRepair } from '../client/index.js'
import { CliError } from './errors.js'
import { withClient } from './client.js'
import { formatTable } from './table.js'

/** Sync failures printed (the answer lists at most 100 a peer). */
const MAX_FAILURE_LINES = 20

export async function runRepair (space: string | undefined, opts: { peer: string, json?: boolean, timeoutMs?: number }): Promise<void> {
  const body = { ...(space !== undefined ? { space } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) }
  if (opts.json !== true) process.stderr.write(`repair: running anti-entropy on every live peer for ${space !== undefined ? `space ${space}` : 'every space'}...\n`)
  const answer = await withClient(opts.peer, async client => await client.repair(body))
  if (answer === null || typeof answer !== 'object' || !Array.isArray(answer.peers) || typeof answer.totals !== 'object') {
    throw new CliError(`unexpected answer from ${opts.peer}/cluster/repair`)
  }
  process.stdout.write(opts.json === true ? JSON.stringify(answer, null, 2) + '\n' : formatRepair(answer))
  if (!answer.ok) process.exitCode = 1
}

/** The repair as text: per peer and in total, what was compared, found differing and moved. */
export function formatRepair (r: ClusterRepair): string {
  const n = (v: number | undefined): string => v === undefined ? '-' : v.toLocaleString('en-US')
  const rows = r.peers.map(p => [
    p.name ?? p.peerId, n(p.report?.partitions), n(p.report?.syncs), n(p.report?.bucketsCompared), n(p.report?.bucketsDiffering),
    n(p.report?.recordsPulled), n(p.report?.recordsPushed), p.ok ? 'ok' : 'FAILED'
  ])
  const t = r.totals
  rows.push(['total', n(t.partitions), n(t.syncs), n(t.bucketsCompared), n(t.bucketsDiffering), n(t.recordsPulled), n(t.recordsPushed), r.ok ? 'ok' : 'FAILED'])
  const lines = [
    `repair of ${r.spaces === null ? 'every space' : `space ${r.spaces.join(', ')}`} through ${r.name}: ${r.peers.length} peer${r.peers.length === 1 ? '' : 's'}, ${(r.tookMs / 1000).toFixed(1)} s`,
    '',
    formatTable(['PEER', 'PARTITIONS', 'SYNCS', 'BUCKETS', 'DIFFERING', 'PULLED', 'PUSHED', 'RESULT'], rows,
      { align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'left'] }).trimEnd(),
    ''
  ]
  const moved = t.recordsPulled + t.recordsPushed
  lines.push(moved === 0
    ? `nothing to repair: ${t.bucketsDiffering === 0 ? 'every replica compared agreed' : `${t.bucketsDiffering} digest bucket(s) differed but no record was newer on either side`}`
    : `repaired: ${moved.toLocaleString('en-US')} record${moved === 1 ? '' : 's'} copied between replicas (${t.recordsPulled.toLocaleString('en-US')} pulled, ${t.recordsPushed.toLocaleString('en-US')} pushed) from ${t.bucketsDiffering.toLocaleString('en-US')} differing digest bucket${t.bucketsDiffering === 1 ? '' : 's'}`)
  const names = new Map(r.peers.map(p => [p.peerId, p.name ?? p.peerId]))
  const failed = r.peers.filter(p => !p.ok)
  if (failed.length > 0) {
    lines.push('', `${failed.length} peer${failed.length === 1 ? '' : 's'} did not complete (run shoal repair again once they are back):`)
    for (const p of failed) lines.push(`  ${p.name ?? p.peerId}: ${p.error ?? 'failed'}`)
    const syncFailures = failed.flatMap(p => (p.report?.failures ?? []).map(f => `  ${p.name ?? p.peerId}: ${f.space} partition ${f.partition} with ${names.get(f.peer) ?? f.peer}: ${f.error}`))
    lines.push(...syncFailures.slice(0, MAX_FAILURE_LINES))
    if (syncFailures.length > MAX_FAILURE_LINES) lines.push(`  and ${syncFailures.length - MAX_FAILURE_LINES} more (see --json)`)
  }
  if (r.notAsked.length > 0) {
    lines.push('', `not asked (${r.notAsked.map(m => `${m.name ?? m.peerId} ${m.state}`).join(', ')}): their replicas are repaired when they return (catch-up)`)
  }
  return lines.join('\n') + '\n'
}
