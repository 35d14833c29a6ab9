/**
 * Whether this machine can run a namespace network (network.ts) and its link faults (faults.ts):
 * Linux, root, the `ip`, `nsenter` and `nft` commands, and a kernel that lets us make a namespace,
 * a veth pair into it, a bridge, and an nftables table with the rules the faults use. The probe
 * makes one of each (named after this process's pid, so a sweep can tell a dead probe's
 * leftovers: network.ts) and removes them; its answer is kept for the life of the process.
 */
import { nftScript } from './faults.js'
import { onPath, run, runIn, runSync } from './exec.js'

export type NetnsSupport = { ok: true } | { ok: false, why: string }

/** Names of the probe's namespace, bridge and veth: `shoal-p<pid>`, `shbp<pid>`, `shvp<pid>`. */
export function probeNames (pid: number): { namespace: string, bridge: string, veth: string } {
  return { namespace: `shoal-p${pid}`, bridge: `shbp${pid}`, veth: `shvp${pid}` }
}

let cached: Promise<NetnsSupport> | undefined

/** Whether namespace clusters can run here, and if not, why (for a test to skip saying so). */
export async function netnsSupport (): Promise<NetnsSupport> {
  cached ??= probe()
  return await cached
}

async function probe (): Promise<NetnsSupport> {
  if (process.platform !== 'linux') return { ok: false, why: `network namespaces need Linux (this is ${process.platform})` }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, why: `not root (uid ${process.getuid()}); network namespaces, veth pairs and nftables need root` }
  const missing = [['ip', 'iproute2'], ['nsenter', 'util-linux'], ['nft', 'nftables']].filter(([cmd]) => !onPath(cmd!))
  if (missing.length > 0) return { ok: false, why: `missing ${missing.map(([cmd, pkg]) => `\`${cmd}\` (package ${pkg})`).join(', ')}; e.g. apt-get install -y ${missing.map(([, pkg]) => pkg).join(' ')}` }
  const { namespace, bridge, veth } = probeNames(process.pid)
  try {
    await run('ip', ['netns', 'add', namespace])
    await run('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace])
    await run('ip', ['link', 'add', bridge, 'type', 'bridge'])
    await run('ip', ['link', 'set', veth, 'master', bridge])
    // The rules the faults use, loss's numgen included: an nft or kernel without them fails here.
    const script = nftScript('a', { drop: [{ from: 'a', to: 'b' }, { from: 'b', to: 'a' }], loss: [{ from: 'a', to: 'c', percent: 25 }] }, n => ({ a: '10.0.0.1', b: '10.0.0.2', c: '10.0.0.3' })[n]!)
    // Through nsenter, as the peers are started.
    await runIn(namespace, 'nft', ['-f', '-'], script)
    return { ok: true }
  } catch (err) {
    return { ok: false, why: (err as Error).message }
  } finally {
    runSync('ip', ['link', 'del', veth])
    runSync('ip', ['link', 'del', bridge])
    runSync('ip', ['netns', 'del', namespace])
  }
}
