/**
 * All benchmarks in one run, printed as Markdown ready for docs/benchmarks.md:
 *
 *   npm run bench                 # RPC, SWIM at 100 to 10,000 peers, storage, 3-peer ingest and reads, queries vs DuckDB, scans past the cache
 *   npm run bench -- --quick      # fewer iterations and sizes, for a smoke check
 *
 * Figures on shared machines are noisy: compare the ratios measured within one run.
 */
import '../../src/polyfill/index.js'
import { cpus, loadavg } from 'node:os'
import { benchCluster, formatClusterBench } from './cluster.js'
import { benchClusterQueries, benchLocalQueries, formatClusterQueryBench, formatLocalQueryBench } from './query.js'
import { benchRpc, type LatencyStats } from './rpc.js'
import { benchScan, formatScanBench } from './scan.js'
import { benchStorage, formatStorageBench } from './storage.js'
import { benchSwim } from './swim.js'

const quick = process.argv.includes('--quick')
const us = (s: LatencyStats): string => `${(s.medianMs * 1000).toFixed(1)} µs | ${(s.p99Ms * 1000).toFixed(1)} µs`

async function main (): Promise<void> {
  const started = new Date().toISOString()
  console.log(`# Benchmark run ${started}`)
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg().map(l => l.toFixed(1)).join(' ')}\n`)

  const rpc = await benchRpc({ iterations: quick ? 1000 : 5000 })
  console.log(`## RPC round trip (${rpc.iterations} sequential ${rpc.payloadBytes}-byte echoes on 127.0.0.1, interleaved rounds)\n`)
  console.log('| path | median | p99 |')
  console.log('| --- | --- | --- |')
  console.log(`| raw TCP echo (node:net) | ${us(rpc.rawTcp)} |`)
  console.log(`| bare libp2p stream echo (noise + yamux, one open stream) | ${us(rpc.libp2pStream)} |`)
  console.log(`| RpcTransport.request (msgpackr frames, one long-lived stream) | ${us(rpc.rpc)} |`)
  console.log(`\nRPC / bare libp2p: **${rpc.rpcOverLibp2p.toFixed(2)}×** (target < 1.30); libp2p / TCP: ${rpc.libp2pOverTcp.toFixed(2)}×. ` +
    `${rpc.concurrent.concurrency} concurrent callers: ${rpc.concurrent.requestsPerSecond.toLocaleString('en-US')} requests/s.\n`)

  const sizes = quick ? [100, 1000] : [100, 1000, 3000, 10_000]
  const swim = await benchSwim({ sizes })
  console.log('## SWIM in the simulator (probe interval 1 s, the shared probe ring, latency 1-5 ms)\n')
  console.log('| peers | crash → dead at every peer, p50 / p99 / max (s) | change reaches 99.9 % (periods) | limit ceil(log2 N)+2 | messages / peer / s | wall (s) |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const r of swim) {
    if (r.skipped !== undefined) {
      console.log(`| ${r.peers.toLocaleString('en-US')} | not run: ${r.skipped} | | | | |`)
      continue
    }
    const t = r.timeToDeadS!
    console.log(`| ${r.peers.toLocaleString('en-US')} | ${t.p50.toFixed(2)} / ${t.p99.toFixed(2)} / ${t.max.toFixed(2)} | ${r.disseminationPeriods!.toFixed(2)} | ${Math.ceil(Math.log2(r.peers)) + 2} | ${r.messagesPerPeerPerS!.toFixed(2)} | ${r.wallS!.toFixed(1)} |`)
  }

  console.log('')
  console.log(formatStorageBench(await benchStorage({ rows: quick ? 50_000 : 200_000, walMiB: quick ? 16 : 64 })))

  console.log('\n## A 3-peer cluster on 127.0.0.1 (coordinator in-process, two peer processes, 2 cores shared)\n')
  console.log(formatClusterBench(await benchCluster({ rows: quick ? 20_000 : 100_000 })))

  console.log('\n## Queries: Shoal and DuckDB on the same data\n')
  console.log('Local execution, one peer (every partition its own: no network), against DuckDB in-process:\n')
  console.log(formatLocalQueryBench(await benchLocalQueries(quick ? 1_000_000 : 10_000_000)))
  console.log('\nReal peers over HTTP (16 partitions, one replica each: every query needs every peer):\n')
  console.log(formatClusterQueryBench(await benchClusterQueries(quick ? 50_000 : 200_000)))
  console.log('\n## Scans of data four times the block cache, against a warm cache and DuckDB\'s own file\n')
  console.log(formatScanBench(await benchScan(quick ? 1_000_000 : 4_000_000, quick ? 3 : 5)))
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err)
  process.exit(1)
})
