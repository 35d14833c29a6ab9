/**
 * RPC latency benchmark on 127.0.0.1: how much RpcTransport adds to a bare libp2p stream, and
 * how much libp2p (Noise + Yamux) adds to raw TCP. Each step is a sequential echo of a small
 * payload over an already-open connection, so the figures are per-round-trip overheads; the three
 * kinds run in interleaved rounds so machine noise hits them alike.
 *
 *   node dist/scripts/bench/rpc.js [iterations]
 */
import '../../src/polyfill/index.js'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { pushable } from 'it-pushable'
import { createHost, RpcTransport, type Host } from '../../src/net/index.js'

export interface LatencyStats {
  medianMs: number
  p99Ms: number
  meanMs: number
}

export interface Result {
  iterations: number
  payloadBytes: number
  rawTcp: LatencyStats
  libp2pStream: LatencyStats
  rpc: LatencyStats
  concurrent: { concurrency: number, requests: number, requestsPerSecond: number }
  /** rpc median / libp2p stream median: the goal is under 1.3. */
  rpcOverLibp2p: number
  /** libp2p stream median / raw TCP median. */
  libp2pOverTcp: number
}

const PAYLOAD_BYTES = 64
const CONCURRENCY = 64
const ECHO_PROTOCOL = '/shoal/bench-echo/1.0.0'

function stats (samplesMs: number[]): LatencyStats {
  const s = [...samplesMs].sort((a, b) => a - b)
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]
  return { medianMs: at(0.5), p99Ms: at(0.99), meanMs: s.reduce((a, b) => a + b, 0) / s.length }
}

/** One echo round trip of a kind, over a connection that is already open. */
interface Echo {
  once: () => Promise<void>
  close: () => Promise<void>
}

/**
 * Measures the echoes in interleaved rounds (a, b, c, b, c, a, ...), so a burst of noise from
 * other processes on this shared machine hits every kind alike instead of skewing one of them.
 */
async function measureInterleaved (echoes: Echo[], iterations: number, warmup: number, rounds = 10): Promise<LatencyStats[]> {
  for (const e of echoes) for (let i = 0; i < warmup; i++) await e.once()
  const samples = echoes.map(() => [] as number[])
  const perRound = Math.max(1, Math.ceil(iterations / rounds))
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < echoes.length; k++) {
      const idx = (k + r) % echoes.length
      const echo = echoes[idx]!
      const out = samples[idx]!
      for (let i = 0; i < perRound; i++) {
        const t0 = performance.now()
        await echo.once()
        out.push(performance.now() - t0)
      }
    }
  }
  return samples.map(stats)
}

/** A length-prefixed frame: the same shape the RPC layer sends, without the msgpack. */
function frame (payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(4 + payload.length)
  new DataView(f.buffer).setUint32(0, payload.length)
  f.set(payload, 4)
  return f
}

/** Resolves once `bytes` more bytes have arrived on a chunk source. */
class ByteWaiter {
  private have = 0
  private want = 0
  private done: (() => void) | undefined
  add (n: number): void {
    this.have += n
    if (this.done !== undefined && this.have >= this.want) {
      this.have -= this.want
      const d = this.done
      this.done = undefined
      d()
    }
  }

  async wait (bytes: number): Promise<void> {
    if (this.have >= bytes) {
      this.have -= bytes
      return
    }
    this.want = bytes
    await new Promise<void>(resolve => { this.done = resolve })
  }
}

async function tcpEcho (msg: Uint8Array): Promise<Echo> {
  const server: Server = createServer(sock => { sock.setNoDelay(true); sock.pipe(sock) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const sock: Socket = connect(port, '127.0.0.1')
  sock.setNoDelay(true)
  await new Promise<void>(resolve => sock.once('connect', resolve))
  const waiter = new ByteWaiter()
  sock.on('data', (d: Buffer) => { waiter.add(d.length) })
  return {
    once: async () => {
      sock.write(msg)
      await waiter.wait(msg.length)
    },
    close: async () => {
      sock.destroy()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

async function libp2pEcho (a: Host, b: Host, msg: Uint8Array): Promise<Echo> {
  await b.libp2p.handle(ECHO_PROTOCOL, ({ stream }) => {
    void stream.sink(stream.source).catch(() => {})
  })
  const stream: Stream = await a.libp2p.dialProtocol(multiaddr(b.multiaddrs()[0]), ECHO_PROTOCOL)
  const out = pushable<Uint8Array>()
  void stream.sink(out).catch(() => {})
  const waiter = new ByteWaiter()
  void (async () => { for await (const chunk of stream.source) waiter.add(chunk.byteLength) })().catch(() => {})
  return {
    once: async () => {
      out.push(msg)
      await waiter.wait(msg.length)
    },
    close: async () => {
      out.end()
      stream.abort(new Error('bench done'))
      await b.libp2p.unhandle(ECHO_PROTOCOL)
    }
  }
}

async function newHost (): Promise<Host> {
  const privateKey = await generateKeyPair('Ed25519') as unknown as PrivateKey
  return await createHost({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], gossipsub: false })
}

export async function benchRpc (opts: { iterations: number }): Promise<Result> {
  const iterations = Math.max(10, opts.iterations)
  const warmup = Math.min(2000, Math.max(200, iterations >> 2))
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7)
  const msg = frame(payload)

  const a = await newHost()
  const b = await newHost()
  const ra = new RpcTransport({ libp2p: a.libp2p })
  const rb = new RpcTransport({ libp2p: b.libp2p })
  const echoes: Echo[] = []
  try {
    await ra.start()
    await rb.start()
    rb.handle('echo', body => body)
    const to = { id: b.peerId, addrs: b.multiaddrs() }
    echoes.push(await tcpEcho(msg), await libp2pEcho(a, b, msg), {
      once: async () => { await ra.request(to, 'echo', payload) },
      close: async () => {}
    })
    const [rawTcp, libp2pStream, rpc] = await measureInterleaved(echoes, iterations, warmup) as [LatencyStats, LatencyStats, LatencyStats]

    // Throughput: CONCURRENCY callers each issuing requests back to back.
    const requests = Math.max(iterations * 2, CONCURRENCY * 50)
    let issued = 0
    const worker = async (): Promise<void> => {
      while (issued < requests) {
        issued++
        await ra.request(to, 'echo', payload)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    issued = 0
    const t0 = performance.now()
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const elapsedMs = performance.now() - t0

    return {
      iterations,
      payloadBytes: PAYLOAD_BYTES,
      rawTcp,
      libp2pStream,
      rpc,
      concurrent: { concurrency: CONCURRENCY, requests, requestsPerSecond: Math.round(requests / (elapsedMs / 1000)) },
      rpcOverLibp2p: rpc.medianMs / libp2pStream.medianMs,
      libp2pOverTcp: libp2pStream.medianMs / rawTcp.medianMs
    }
  } finally {
    for (const e of echoes) await e.close()
    await ra.stop()
    await rb.stop()
    await a.stop()
    await b.stop()
  }
}

function fmt (s: LatencyStats): string {
  return `median ${(s.medianMs * 1000).toFixed(1).padStart(7)} us   p99 ${(s.p99Ms * 1000).toFixed(1).padStart(7)} us   mean ${(s.meanMs * 1000).toFixed(1).padStart(7)} us`
}

export function formatRpcResult (r: Result): string {
  return [
    `rpc bench: ${r.iterations} sequential round trips of ${r.payloadBytes} bytes on 127.0.0.1`,
    `  (a) raw TCP echo          ${fmt(r.rawTcp)}`,
    `  (b) libp2p stream echo    ${fmt(r.libp2pStream)}`,
    `  (c) RpcTransport.request  ${fmt(r.rpc)}`,
    `  (d) ${r.concurrent.concurrency} concurrent requests: ${r.concurrent.requestsPerSecond} req/s (${r.concurrent.requests} requests)`,
    `  c/b = ${r.rpcOverLibp2p.toFixed(2)}   b/a = ${r.libp2pOverTcp.toFixed(2)}`
  ].join('\n')
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const iterations = Number(process.argv[2] ?? 5000)
  benchRpc({ iterations }).then(r => {
    console.log(formatRpcResult(r))
    process.exit(0)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
