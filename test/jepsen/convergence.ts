/**
 * Convergence after the heal: every owner of every partition of the run's spaces reports the same
 * digest root in GET /cluster/partitions; and the hint counters from GET /metrics.
 */
import type { PeerProcess } from '../cluster/index.js'

interface LocalPartition { space: string, uid: string, partition: number, digest: string, records: number }
interface SpaceDescription { name: string, placement: Array<{ partition: number, owners: string[] }> }

async function getJson (peer: PeerProcess, path: string): Promise<unknown> {
  const res = await fetch(peer.url + path, { signal: AbortSignal.timeout(5000) })
  if (res.status !== 200) throw new Error(`${peer.name} ${path}: ${res.status}`)
  return await res.json()
}

/** Partitions whose owners disagree (an owner without the partition counts as the empty digest 'none'). */
export async function disagreements (peers: PeerProcess[], spaces: string[]): Promise<Array<{ space: string, partition: number, digests: Record<string, string> }>> {
  const byId = new Map(peers.map(p => [p.peerId, p]))
  const locals = new Map<string, LocalPartition[]>()
  await Promise.all(peers.map(async p => { locals.set(p.peerId, await getJson(p, '/cluster/partitions') as LocalPartition[]) }))
  const out: Array<{ space: string, partition: number, digests: Record<string, string> }> = []
  for (const space of spaces) {
    const desc = await getJson(peers[0]!, `/spaces/${space}`) as SpaceDescription
    for (const pl of desc.placement) {
      const digests: Record<string, string> = {}
      for (const owner of pl.owners) {
        const lp = locals.get(owner)?.find(l => l.space === space && l.partition === pl.partition)
        const name = byId.get(owner)?.name ?? owner
        digests[name] = lp === undefined || lp.records === 0 ? 'none' : lp.digest
      }
      if (new Set(Object.values(digests)).size > 1) out.push({ space, partition: pl.partition, digests })
    }
  }
  return out
}

export async function hintCounters (peers: PeerProcess[]): Promise<{ written: number, delivered: number, dropped: number }> {
  const sum = { written: 0, delivered: 0, dropped: 0 }
  await Promise.all(peers.map(async p => {
    const text = await fetch(`${p.url}/metrics`, { signal: AbortSignal.timeout(5000) }).then(async r => await r.text()).catch(() => '')
    for (const event of ['written', 'delivered', 'dropped'] as const) {
      const m = new RegExp(`^shoal_hints_total\\{event="${event}"\\} (\\S+)`, 'm').exec(text)
      if (m !== null) sum[event] += Number(m[1])
    }
  }))
  return sum
}
