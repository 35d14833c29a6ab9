/**
 * Spreading activation: starts with activation 1 at each seed record and follows the links column
 * hop by hop. Each hop is an ordinary query (`id IN frontier`, reading only id and the links),
 * so it goes only to the partitions holding the frontier, with the same replica choice, fallback
 * and coverage as any query. A record reached over several paths sums what reaches it.
 */
import { vectorFromValues, type ColumnBatch } from '../../columnar/index.js'
import type { SpaceDef } from '../../schema/index.js'
import { column, filter, inList, literal, scan, type PlanNode, type SpreadNode } from '../model/index.js'
import type { FinalResult, MemoryBudget, QueryMerger } from '../exec/index.js'
import type { Coverage } from './service.js'

/** Most records one hop follows (the most activated ones win): bounds each hop's query. */
export const MAX_FRONTIER = 10_000

export interface SpreadDeps {
  run: (plan: PlanNode) => Promise<{ merger: QueryMerger, coverage: Coverage }>
  partitionOf: (id: string) => number
  budget: MemoryBudget
}

export async function runSpread (node: SpreadNode, space: SpaceDef, deps: SpreadDeps): Promise<{ result: FinalResult, coverage: Coverage }> {
  const activation = new Map<string, number>()
  const hops = new Map<string, number>()
  let frontier = new Map<string, number>()
  for (const s of node.seeds) frontier.set(s, 1)
  for (const [id, a] of frontier) { activation.set(id, a); hops.set(id, 0) }
  const touched = new Set<number>()
  const missing = new Map<number, string>()
  const linksType = space.schema.find(c => c.name === node.linksColumn)?.type ?? 'list<utf8>'
  for (let hop = 1; hop <= node.maxHops && frontier.size > 0; hop++) {
    if (frontier.size > MAX_FRONTIER) frontier = new Map([...frontier].sort((a, b) => b[1] - a[1]).slice(0, MAX_FRONTIER))
    const ids = [...frontier.keys()]
    const plan = filter(scan(space.name, ['id', node.linksColumn]), inList(column('id'), ids.map(id => literal(id))))
    const { merger, coverage } = await deps.run(plan)
    for (const id of ids) touched.add(deps.partitionOf(id))
    for (const m of coverage.missing) missing.set(m.partition, m.reason)
    const rows = merger.finish([{ name: 'id', type: 'utf8' }, { name: node.linksColumn, type: linksType }]).rows
    const next = new Map<string, number>()
    for (const r of rows) {
      const from = frontier.get(r.id as string)
      const links = r[node.linksColumn]
      if (from === undefined || !Array.isArray(links)) continue
      const passed = from * node.decay
      if (passed <= node.threshold || passed === 0) continue
      for (const to of new Set(links)) {
        if (typeof to !== 'string') continue
        next.set(to, (next.get(to) ?? 0) + passed)
      }
    }
    for (const [id, a] of next) {
      activation.set(id, (activation.get(id) ?? 0) + a)
      if (!hops.has(id)) hops.set(id, hop)
    }
    frontier = next
    deps.budget.set(activation, activation.size * 120)
  }
  deps.budget.release(activation)
  let out = [...activation].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  if (node.limit !== null) out = out.slice(0, node.limit)
  const columns = [{ name: 'id', type: 'utf8' as const }, { name: 'activation', type: 'float64' as const }, { name: 'hops', type: 'int32' as const }]
  const batch: ColumnBatch = {
    length: out.length,
    columns: new Map([
      ['id', vectorFromValues('utf8', out.map(o => o[0]))],
      ['activation', vectorFromValues('float64', out.map(o => o[1]))],
      ['hops', vectorFromValues('int32', out.map(o => hops.get(o[0]) ?? 0))]
    ])
  }
  const rows = out.map(([id, a]) => ({ id, activation: a, hops: hops.get(id) ?? 0 }))
  const coverage: Coverage = {
    total: touched.size,
    answered: touched.size - missing.size,
    missing: [...missing].map(([partition, reason]) => ({ space: space.name, partition, reason }))
  }
  return { result: { columns, rows, batch }, coverage }
}
