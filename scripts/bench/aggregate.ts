/**
 * Aggregation throughput and wire sizes, printed as Markdown:
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/aggregate.js [--quick]
 *
 * Columnar collect over one in-memory batch, then encode + msgpack of the partial state and the
 * merge of 8 partials. Figures on shared machines are noisy.
 */
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { SeededRandom } from '../../src/runtime/index.js'
import { createAggregator, packState, type AggSpec } from '../../src/query/aggregate/index.js'

export interface AggregateBenchRow { name: string, rows: number, mRowsPerSecond: number, stateBytes: number, mergeMs: number }

export function benchAggregate (opts: { rows?: number } = {}): AggregateBenchRow[] {
  const n = opts.rows ?? 1_000_000
  const rng = new SeededRandom(1)
  const x = new Float64Array(n)
  const user: string[] = new Array(n)
  const t = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(rng.next() * 10)
    user[i] = `user-${rng.int(200_000)}`
    t[i] = 1.7e12 + rng.int(30 * 86_400_000)
  }
  const batch = { length: n, column: (f: string) => (f === 'x' ? x : f === 'user' ? user : f === 't' ? t : undefined) }
  const specs: Array<[string, AggSpec]> = [
    ['sum', { kind: 'sum', field: 'x' }],
    ['stats', { kind: 'stats', field: 'x' }],
    ['extended_stats', { kind: 'extended_stats', field: 'x' }],
    ['cardinality (strings)', { kind: 'cardinality', field: 'user' }],
    ['percentiles', { kind: 'percentiles', field: 'x', percents: [50, 99] }],
    ['terms (200k keys, size 10)', { kind: 'terms', field: 'user', size: 10 }],
    ['date_histogram 1h + avg', { kind: 'date_histogram', field: 't', interval: '1h', aggs: { a: { kind: 'avg', field: 'x' } } }]
  ]
  const out: AggregateBenchRow[] = []
  for (const [name, spec] of specs) {
    const agg = createAggregator(spec)
    const s = agg.init()
    const t0 = performance.now()
    agg.collect(s, batch)
    const ms = performance.now() - t0
    const bytes = packState(agg.encode(s)).length
    const parts = Array.from({ length: 8 }, () => agg.decode(agg.encode(s)))
    const t1 = performance.now()
    parts.reduce((a, b) => agg.merge(a, b))
    out.push({ name, rows: n, mRowsPerSecond: n / ms / 1000, stateBytes: bytes, mergeMs: performance.now() - t1 })
  }
  return out
}

export function formatAggregateBench (rows: AggregateBenchRow[]): string {
  const lines = ['| aggregation | rows | M rows/s | partial state (bytes, msgpack) | merge 8 partials (ms) |', '| --- | --- | --- | --- | --- |']
  for (const r of rows) lines.push(`| ${r.name} | ${r.rows.toLocaleString('en-US')} | ${r.mRowsPerSecond.toFixed(1)} | ${r.stateBytes.toLocaleString('en-US')} | ${r.mergeMs.toFixed(1)} |`)
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log('## Aggregations (one batch, columnar collect)\n')
  console.log(formatAggregateBench(benchAggregate({ rows: process.argv.includes('--quick') ? 100_000 : 1_000_000 })))
}
