/**
 * `shoal decommission [--peer URL] [--timeout-ms N] [--json]`: the peer at URL hands every
 * partition it holds to its next owners, waits until they are ready, then leaves the cluster and
 * stops (POST /admin/decommission; src/peer/decommission.ts). Progress on stderr as it happens
 * (one line per partition handed off, a `waiting` line every 5 s), the summary on stdout. Exit 0
 * once the peer has left; 1 when the hand-off timed out (the peer stays a member, nothing given
 * up), the peer failed, or the answer was cut short; 2 on a usage error.
 */
import { ShoalError, type DecommissionEvent, type DecommissionSummary } from '../client/index.js'
import { errorText, peerUrls, withClient } from './client.js'
import { CliError } from './errors.js'

/** Partitions not handed off printed in the summary (--json has them all). */
const MAX_LISTED = 50

export async function runDecommission (opts: { peer: string, timeoutMs?: number, json?: boolean }): Promise<void> {
  // The peer to decommission is the one named: never another one a list would fail over to.
  if (peerUrls(opts.peer).length > 1) throw new CliError(`--peer names the one peer to decommission; got a list: '${opts.peer}'`, 2)
  let summary: DecommissionSummary | undefined
  let failure: string | undefined
  let answered = false
  await withClient(opts.peer, async client => {
    try {
      for await (const ev of client.decommission(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {})) {
        answered = true
        if (opts.json === true) process.stdout.write(JSON.stringify(ev) + '\n')
        else if (ev.event !== 'done') process.stderr.write(formatEvent(ev))
        if (ev.event === 'done') summary = ev
        if (ev.event === 'error') failure = ev.message
      }
    } catch (err) {
      // Before the first event, the request failed as any other; after it, the answer was cut short.
      if (!answered || !(err instanceof ShoalError)) throw err
      throw new CliError(`the answer of ${opts.peer} was cut short (${errorText(err)}); see \`shoal members\` and the peer's log for where the decommission stands`)
    }
  })
  if (failure !== undefined) throw new CliError(`decommission failed on the peer: ${failure}`)
  if (summary === undefined) throw new CliError(`the answer of ${opts.peer} ended without its summary; see \`shoal members\` and the peer's log for where the decommission stands`)
  if (opts.json !== true) process.stdout.write(formatSummary(summary))
  if (!summary.left) process.exitCode = 1
}

/** One progress event as a line of text (stderr). */
export function formatEvent (ev: DecommissionEvent): string {
  switch (ev.event) {
    case 'started':
      return ev.partitions === 0
        ? `decommission: ${ev.name} holds no partition; leaving\n`
        : `decommission: ${ev.name} hands off ${ev.partitions} partition${ev.partitions === 1 ? '' : 's'} to their next owners (waiting at most ${seconds(ev.timeoutMs)})\n`
    case 'handed-off':
      return `  ${ev.space}/${ev.partition} → ${ev.to.join(', ')}${ev.recordsPushed > 0 ? ` (${ev.recordsPushed} record${ev.recordsPushed === 1 ? '' : 's'} pushed)` : ''}  [${ev.done}/${ev.total}]\n`
    case 'waiting':
      return `  waiting (${seconds(ev.elapsedMs)}): ${ev.done} of ${ev.total} handed off; ${ev.pending.slice(0, 3).map(p => `${p.space}/${p.partition}: ${p.reason}`).join('; ')}${ev.pending.length > 3 ? '; ...' : ''}\n`
    case 'leaving':
      return ev.complete ? 'decommission: every partition handed off; leaving the cluster\n' : 'decommission: leaving the cluster without handing everything off\n'
    case 'error':
      return `decommission: error: ${ev.message}\n`
    case 'done':
      return ''
  }
}

/** The summary (stdout): what was handed off, what was not and why, and whether the peer left. */
export function formatSummary (s: DecommissionSummary): string {
  const lines: string[] = []
  const counts = `${s.handedOff} of ${s.total} partition${s.total === 1 ? '' : 's'} handed off in ${seconds(s.tookMs)}`
  if (s.left && s.complete) lines.push(`decommissioned: ${counts}; the peer left the cluster and is stopping`)
  else if (s.left) lines.push(`left the cluster WITHOUT handing everything off: ${counts}`)
  else lines.push(`NOT decommissioned: ${counts}; the peer stays a member and owns partitions again (nothing was given up)`)
  if (s.notHandedOff.length > 0) {
    lines.push(`not handed off (${s.notHandedOff.length}):`)
    for (const n of s.notHandedOff.slice(0, MAX_LISTED)) {
      lines.push(`  ${n.space}/${n.partition}: ${n.reason}; ${n.otherReplicas.length > 0 ? `its data is also on ${n.otherReplicas.join(', ')}` : 'its only ready copy is on this peer'}`)
    }
    if (s.notHandedOff.length > MAX_LISTED) lines.push(`  and ${s.notHandedOff.length - MAX_LISTED} more (see --json)`)
    if (!s.left) lines.push('run it again once they are reachable, or with a longer --timeout-ms')
  }
  if (s.finalSync !== undefined && s.finalSync.failed.length > 0) {
    lines.push(`the last push after the leave did not complete for ${s.finalSync.failed.length} partition(s): writes this peer alone took in its last moments may be missing on their owners until it returns`)
  }
  return lines.join('\n') + '\n'
}

function seconds (ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`
}
