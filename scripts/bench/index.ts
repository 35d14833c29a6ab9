/**
 * All benchmarks in one run, printed as Markdown ready for docs/benchmarks.md:
 *
 *   npm run bench                 # RPC, SWIM at 100 to 10,000 peers, storage, 3-peer ingest and reads, queries vs DuckDB, column decoding, scans past the cache
 *   npm run bench -- --quick      # fewer iterations and sizes, for a smoke check
 *   npm run bench -- --only swim,rpc   # only these parts (with or without --quick); --help lists them
 *
 * Figures on shared machines are noisy: compare the ratios measured within one run.
 */
import '../../src/polyfill/index.js'
import { cpus, loadavg } from 'node:os'
import { benchCluster, formatClusterBench } from './cluster.js'
import { benchDecode, formatDecodeBench } from './decode.js'
import { BenchArgsError, benchUsage, parseBenchArgs, type BenchPartInfo } from './parts.js'
import { benchClusterQueries, benchLocalQueries, formatClusterQueryBench, formatLocalQueryBench } from './query.js'
import { benchMemoryQueries, formatMemoryQueryBench } from './memory-queries.js'
import { benchRpc, type LatencyStats } from './rpc.js'
import { benchScan, formatScanBench } from './scan.js'
import { benchStorage, formatStorageBench } from './storage.js'
import { benchSwim } from './swim.js'

const us = (s: LatencyStats): string => `${(s.medianMs * 1000).toFixed(1)} µs | ${(s.p99Ms * 1000).toFixed(1)} µs`

interface BenchPart extends BenchPartInfo {
  run: (quick: boolean) => Promise<void>
}

/** The parts, in the order they run (and print). */
const PARTS: BenchPart[] = [
  {
    name: 'rpc',
    description: 'RPC round trip: raw TCP, bare libp2p stream, RpcTransport.request; concurrent callers',
    run: async quick => {
      const rpc = await benchRpc({ iterations: quick ? 1000 : 5000 })
      console.log(`## RPC round trip (${rpc.iterations} sequential ${rpc.payloadBytes}-byte echoes on 127.0.0.1, interleaved rounds)\n`)
      console.log('| path | median | p99 |')
      console.log('| --- | --- | --- |')
      console.log(`| raw TCP echo (node:net) | ${us(rpc.rawTcp)} |`)
      console.log(`| bare libp2p stream echo (noise + yamux, one open stream) | ${us(rpc.libp2pStream)} |`)
      console.log(`| RpcTransport.request (msgpackr frames, one long-lived stream) | ${us(rpc.rpc)} |`)
      console.log(`\nRPC / bare libp2p: **${rpc.rpcOverLibp2p.toFixed(2)}×** (target < 1.30); libp2p / TCP: ${rpc.libp2pOverTcp.toFixed(2)}×. ` +
        `${rpc.concurrent.concurrency} concurrent callers: ${rpc.concurrent.requestsPerSecond.toLocaleString('en-US')} requests/s.\n`)
    }
  },
  {
    name: 'swim',
    description: 'SWIM in the simulator: crash to dead, dissemination, quiet messages and bytes per peer (100 to 10,000 peers)',
    run: async quick => {
      const sizes = quick ? [100, 1000] : [100, 1000, 3000, 10_000]
      const swim = await benchSwim({ sizes })
      console.log('## SWIM in the simulator (probe interval 1 s, the shared probe ring, latency 1-5 ms)\n')
      console.log('| peers | crash → dead at every peer, p50 / p99 / max (s) | change reaches 99.9 % (periods) | limit ceil(log2 N)+2 | messages / peer / s | membership bytes / peer / s | wall (s) |')
      console.log('| --- | --- | --- | --- | --- | --- | --- |')
      for (const r of swim) {
        if (r.skipped !== undefined) {
          console.log(`| ${r.peers.toLocaleString('en-US')} | not run: ${r.skipped} | | | | | |`)
          continue
        }
        const t = r.timeToDeadS!
        console.log(`| ${r.peers.toLocaleString('en-US')} | ${t.p50.toFixed(2)} / ${t.p99.toFixed(2)} / ${t.max.toFixed(2)} | ${r.disseminationPeriods!.toFixed(2)} | ${Math.ceil(Math.log2(r.peers)) + 2} | ${r.messagesPerPeerPerS!.toFixed(2)} | ${Math.round(r.bytesPerPeerPerS!).toLocaleString('en-US')} | ${r.wallS!.toFixed(1)} |`)
      }
      console.log('')
    }
  },
  {
    name: 'storage',
    description: 'one partition on this disk: apply throughput (1 and 8 writers), point get, WAL recovery',
    run: async quick => {
      console.log(formatStorageBench(await benchStorage({ rows: quick ? 50_000 : 200_000, walMiB: quick ? 16 : 64 })))
    }
  },
  {
    name: 'cluster',
    description: '3 peers on 127.0.0.1: ingest at ONE/QUORUM/ALL over HTTP and internal, point reads',
    run: async quick => {
      console.log('\n## A 3-peer cluster on 127.0.0.1 (coordinator in-process, two peer processes, 2 cores shared)\n')
      console.log(formatClusterBench(await benchCluster({ rows: quick ? 20_000 : 100_000 })))
    }
  },
  {
    name: 'query',
    description: 'queries in Shoal and DuckDB on the same data: one peer locally, then real peers over HTTP; recall, spread and complete on 3 peers against 1',
    run: async quick => {
      console.log('\n## Queries: Shoal and DuckDB on the same data\n')
      console.log('Local execution, one peer (every partition its own: no network), against DuckDB in-process:\n')
      console.log(formatLocalQueryBench(await benchLocalQueries(quick ? 1_000_000 : 10_000_000)))
      console.log('\nReal peers over HTTP (16 partitions, one replica each: every query needs every peer):\n')
      console.log(formatClusterQueryBench(await benchClusterQueries(quick ? 50_000 : 200_000)))
      if (!quick) {
        console.log('\nThe same at 10 M rows, 3 peers against DuckDB in-process:\n')
        console.log(formatClusterQueryBench(await benchClusterQueries(10_000_000, { single: false })))
      }
      console.log('\nMemory-style queries, 3 peers against 1 peer holding every partition (16 partitions, one replica):\n')
      console.log(formatMemoryQueryBench(await benchMemoryQueries(quick ? 10_000 : 50_000)))
    }
  },
  {
    name: 'decode',
    description: 'decoding a segment batch\'s columns into the executor\'s form, by type and by distinct utf8 values (what a cold scan pays a row)',
    run: async quick => {
      console.log('\n## Decoding a segment batch\'s columns (what a cold scan pays a row)\n')
      console.log(formatDecodeBench(await benchDecode(quick ? 20 : 60)))
    }
  },
  {
    name: 'scan',
    description: 'scans of data four times the block cache, against a warm cache and DuckDB\'s own file',
    run: async quick => {
      console.log('\n## Scans of data four times the block cache, against a warm cache and DuckDB\'s own file\n')
      console.log(formatScanBench(await benchScan(quick ? 1_000_000 : 4_000_000, quick ? 3 : 5)))
    }
  }
]

async function main (): Promise<void> {
  let args
  try {
    args = parseBenchArgs(process.argv.slice(2), PARTS)
  } catch (err) {
    if (!(err instanceof BenchArgsError)) throw err
    console.error(`bench: ${err.message} (npm run bench -- --help for the usage)`)
    process.exit(2)
  }
  if (args.help) {
    console.log(benchUsage(PARTS))
    return
  }
  const started = new Date().toISOString()
  console.log(`# Benchmark run ${started}`)
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg().map(l => l.toFixed(1)).join(' ')}\n`)
  for (const part of PARTS) {
    if (args.only.includes(part.name)) await part.run(args.quick)
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err)
  process.exit(1)
})
