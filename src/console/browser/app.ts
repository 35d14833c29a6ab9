/**
 * The console's page: a header with this peer's health, the members, the charts, the spaces with
 * their partition maps, and the query box. Everything it shows comes from the Poller's state.
 */
import { useEffect, useState } from 'preact/hooks'
import { html, type View } from './html.js'
import { saveToken, savedToken, type Member, type Space, type StatusPeer } from './api.js'
import { Chart } from './chart.js'
import { MAX_DETAILED_SPACES, Poller, type ConsoleState } from './poll.js'
import { QueryBox } from './query.js'

/** Partitions drawn per space: a map wider than this says nothing a table of totals does not. */
const MAX_MAP_PARTITIONS = 256
const OPS = [{ label: 'writes', color: '#2f6fdb' }, { label: 'reads', color: '#1f9d6b' }, { label: 'queries', color: '#c2622d' }]

export function App (): View {
  const [poller] = useState(() => new Poller(s => { setState(s) }, () => savedToken() !== null))
  const [state, setState] = useState<ConsoleState>(poller.state)
  useEffect(() => { poller.start(); return () => { poller.stop() } }, [])
  const names = new Map(state.members.map(m => [m.peerId, m.name ?? short(m.peerId)]))
  return html`
    <${Header} state=${state} />
    ${state.auth !== 'ok' && html`<${TokenPrompt} rejected=${state.auth === 'rejected'} onToken=${(t: string) => { saveToken(t); poller.now() }} />`}
    <main>
      <section class="card wide">
        <h2>Members</h2>
        <${Members} members=${state.members} self=${state.health?.peer} status=${new Map((state.status?.peers ?? []).map(p => [p.peerId, p]))} />
      </section>
      <section class="card">
        <${Chart} id="chart-rate" title="Operations per second (coordinated by this peer)" series=${OPS} data=${state.rates} decimals=${1} />
      </section>
      <section class="card">
        <${Chart} id="chart-latency" title="Mean latency, ms" series=${OPS} data=${state.latency} decimals=${1} />
      </section>
      <section class="card wide">
        <h2>Spaces</h2>
        <${Spaces} state=${state} />
        ${state.spaces.slice(0, MAX_DETAILED_SPACES).map(s => state.placement.has(s.name) && html`<${PartitionMap} key=${s.name} space=${state.placement.get(s.name)!} members=${state.members} names=${names} />`)}
      </section>
      <section class="card wide">
        <h2>Query</h2>
        <${QueryBox} />
      </section>
    </main>`
}

function Header ({ state }: { state: ConsoleState }): View {
  const counts = { alive: 0, suspect: 0, dead: 0, left: 0 }
  for (const m of state.members) counts[m.state]++
  const health = state.health
  return html`
    <header>
      <h1>Shoal</h1>
      ${health !== undefined && html`<span class="peer">${health.name}</span><span class=${`badge ${health.status}`} id="health">${health.status}</span>`}
      <span class="summary">${counts.alive} alive · ${counts.suspect} suspect · ${counts.dead} dead${counts.left > 0 ? ` · ${counts.left} left` : ''}</span>
      <span class="updated">${state.error !== undefined ? html`<span class="error" id="poll-error">${state.error}</span>` : state.updatedAt !== undefined ? `updated ${new Date(state.updatedAt).toLocaleTimeString()}` : 'loading…'}</span>
    </header>`
}

function TokenPrompt ({ rejected, onToken }: { rejected: boolean, onToken: (token: string) => void }): View {
  const submit = (e: Event): void => {
    e.preventDefault()
    const token = (new FormData(e.target as HTMLFormElement).get('token') as string | null ?? '').trim()
    if (token !== '') onToken(token)
  }
  return html`
    <div class="overlay">
      <form id="token" class="card" onSubmit=${submit}>
        <h2>This peer needs a token</h2>
        <p>${rejected ? 'The token was refused. ' : ''}Enter a bearer token from the peer's token file (--http-token-file). It is kept in this tab only.</p>
        <input type="password" name="token" autocomplete="off" placeholder="token" autofocus />
        <button type="submit">Connect</button>
      </form>
    </div>`
}

function Members ({ members, self, status }: { members: Member[], self: string | undefined, status: Map<string, StatusPeer> }): View {
  const rows = [...members].sort((a, b) => (a.name ?? a.peerId).localeCompare(b.name ?? b.peerId))
  return html`
    <table id="members">
      <thead><tr><th>State</th><th>Name</th><th>Version</th><th>HTTP</th><th>Address</th><th>Health</th></tr></thead>
      <tbody>${rows.map(m => html`
        <tr key=${m.peerId} data-peer=${m.peerId} data-state=${m.state} class=${`state-${m.state}`}>
          <td><span class=${`badge ${m.state}`}>${m.state}${m.leaving === true ? ' (leaving)' : ''}</span></td>
          <td class="name" title=${m.peerId}>${m.name ?? short(m.peerId)}${m.peerId === self ? html` <small>(this peer)</small>` : ''}</td>
          <td>${m.version ?? '–'}</td>
          <td>${m.http !== null ? html`<a href=${m.http}>${m.http.replace(/^https?:\/\//, '')}</a>` : '–'}</td>
          <td class="addr">${m.addrs[0]?.replace(/\/p2p\/.*$/, '') ?? '–'}</td>
          <td>${memberHealth(m, status.get(m.peerId))}</td>
        </tr>`)}
      </tbody>
    </table>`
}

/** What /cluster/status says of a member: whether it answered, is ready, and its replicas. */
function memberHealth (m: Member, s: StatusPeer | undefined): string {
  if (m.state === 'dead' || m.state === 'left') return 'not serving'
  if (s === undefined) return '…'
  if (!s.reachable) return `not answering${s.error !== undefined ? `: ${s.error}` : ''}`
  const parts = [s.ready === true ? 'ready' : 'starting']
  if (s.partitions !== null) parts.push(`${s.partitions.ready}/${s.partitions.held} partitions ready`)
  if (s.rows !== null) parts.push(`${s.rows.toLocaleString()} rows`)
  return parts.join(' · ')
}

function Spaces ({ state }: { state: ConsoleState }): View {
  if (state.spaces.length === 0) return html`<p class="muted">No spaces yet: create one with <code>shoal space create</code> or POST /spaces.</p>`
  return html`
    <table id="spaces">
      <thead><tr><th>Space</th><th>Schema</th><th>Partitions</th><th>Replicas</th><th>Rows</th></tr></thead>
      <tbody>${state.spaces.map(s => {
        const c = state.counts.get(s.name)
        return html`
          <tr key=${s.name} data-space=${s.name}>
            <td class="name">${s.name}</td>
            <td class="schema">${s.schema.map(col => html`<span class="col">${col.name} <small>${col.type}${col.nullable === false ? '' : '?'}</small></span>`)}</td>
            <td>${s.partitions}</td>
            <td>${s.replicas}</td>
            <td>${c === undefined ? '…' : `${c.partial ? '≥ ' : ''}${c.rows.toLocaleString()}`}</td>
          </tr>`
      })}</tbody>
    </table>`
}

/**
 * One space's partitions against the peers holding them: R a ready replica, C one catching up
 * (an owner not yet ready), a red column a partition with no ready replica on a live member.
 */
function PartitionMap ({ space, members, names }: { space: Space, members: Member[], names: Map<string, string> }): View {
  const placement = (space.placement ?? []).slice(0, MAX_MAP_PARTITIONS)
  const state = new Map(members.map(m => [m.peerId, m.state]))
  const live = (id: string): boolean => state.get(id) === 'alive' || state.get(id) === 'suspect'
  const peers = [...new Set(placement.flatMap(p => [...p.owners, ...p.readReplicas, ...p.writeReplicas]))]
    .sort((a, b) => (names.get(a) ?? a).localeCompare(names.get(b) ?? b))
  const down = new Set(placement.filter(p => !p.readReplicas.some(live)).map(p => p.partition))
  return html`
    <div class="pmap" data-space=${space.name}>
      <h3>${space.name} <small>${down.size > 0 ? html`<span class="error">${down.size} of ${space.partitions} partitions unavailable</span>` : `${space.partitions} partitions, ${space.replicas} ${space.replicas === 1 ? 'replica' : 'replicas'}`}</small></h3>
      <table>
        <thead><tr><th></th>${placement.map(p => html`<th class=${down.has(p.partition) ? 'unavailable' : ''}>${p.partition}</th>`)}</tr></thead>
        <tbody>${peers.map(id => html`
          <tr key=${id}>
            <th class=${live(id) ? '' : 'down'}>${names.get(id) ?? short(id)}${live(id) ? '' : ` (${state.get(id) ?? 'gone'})`}</th>
            ${placement.map(p => {
              const cell = p.readReplicas.includes(id) ? 'ready' : p.owners.includes(id) || p.writeReplicas.includes(id) ? 'catching-up' : ''
              const cls = [cell, live(id) ? '' : 'down', down.has(p.partition) ? 'unavailable' : ''].join(' ')
              return html`<td class=${cls} title=${cell === '' ? '' : `partition ${p.partition}: ${cell.replace('-', ' ')}${live(id) ? '' : ', peer down'}`}>${cell === 'ready' ? 'R' : cell === 'catching-up' ? 'C' : ''}</td>`
            })}
          </tr>`)}
        </tbody>
      </table>
    </div>`
}

function short (peerId: string): string {
  return `…${peerId.slice(-8)}`
}
