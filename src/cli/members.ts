import { CliError } from './errors.js'
import { withClient } from './client.js'
import { formatTable } from './table.js'

export async function runMembers (opts: { peer: string, json?: boolean }): Promise<void> {
  const members = await withClient(opts.peer, async client => await client.members())
  if (!Array.isArray(members)) throw new CliError(`unexpected answer from ${opts.peer}/cluster/members`)
  if (opts.json === true) {
    process.stdout.write(JSON.stringify(members, null, 2) + '\n')
    return
  }
  const order = { alive: 0, suspect: 1, dead: 2, left: 3 } as Record<string, number>
  const sorted = [...members].sort((a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || String(a.name).localeCompare(String(b.name)))
  process.stdout.write(formatTable(
    ['NAME', 'STATE', 'INC', 'VERSION', 'HTTP', 'PEER ID', 'ADDRESS'],
    // A decommissioning member is alive but hands its partitions off: say so beside its state.
    sorted.map(m => [m.name ?? '-', m.leaving === true ? `${m.state} (leaving)` : m.state, String(m.incarnation), m.version ?? '-', m.http ?? '-', m.peerId, m.addrs[0] ?? '-'])
  ))
  const counts = new Map<string, number>()
  for (const m of members) counts.set(m.state, (counts.get(m.state) ?? 0) + 1)
  process.stdout.write(`\n${members.length} members: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ')}\n`)
}
