/**
 * test/net: a network of Linux network namespaces for tests, so that peers talk through a kernel
 * that can drop their packets, from outside the database, as Jepsen cuts links with the packet
 * filter. A bridge in the root namespace, one namespace per peer on a veth pair with an address
 * of its own (network.ts); partitions (both ways or one way) and packet loss as nftables rules
 * inside each peer's namespace, in one table of ours (faults.ts); a probe that says why this
 * machine cannot (support.ts: Linux, root, ip, nsenter, nft). Everything made is removed by
 * `destroy()`, on exit / SIGINT / SIGTERM, and, after a crash, by the next run's sweep.
 *
 * ```ts
 * const support = await netnsSupport()            // { ok: false, why } where it cannot run
 * const net = await NetnsNetwork.create()
 * const a = await net.addHost('a')                // a.namespace, a.address (10.x.y.1)
 * spawn(...net.launchPrefix('a'), 'shoal', 'start', '--listen', `/ip4/${a.address}/tcp/7946`, ...)
 * await net.setFaults({ drop: grudgeLinks({ a: ['b'], b: ['a'] }), loss: [] })
 * await net.clearFaults()
 * await net.destroy()
 * ```
 *
 * TestCluster (test/cluster) runs on it with `net: 'netns'`; the Jepsen runner with `--net netns`.
 */
export { netnsSupport, type NetnsSupport } from './support.js'
export { NetnsNetwork, sweepStaleNetworks, bridgeName, namespaceName, vethName, overlaps, MARKER_DIR, MAX_HOSTS, type NetnsHost } from './network.js'
export { grudgeLinks, lossBothWays, checkFaults, nftScript, droppedPackets, NFT_TABLE, NO_FAULTS, type Link, type LossLink, type LinkFaults } from './faults.js'
export { nsPrefix } from './exec.js'
