/**
 * Link faults made by the kernel's packet filter, outside the peers: each peer's namespace gets
 * one nftables table of ours (`inet shoal`), rewritten whole, in one transaction, whenever the
 * faults change, and deleted to heal (so nothing of ours is left in a namespace after a heal).
 *
 *   drop a → b        every packet from a to b dropped: in a's output hook (daddr b) and in b's
 *                     input hook (saddr a). Dropped, not rejected: a peer sees silence, as across a
 *                     real partition, not a refused connection. A symmetric partition is both
 *                     directions; a one-way partition one.
 *   loss a → b, P %   `numgen random mod 100 < P` of the packets from a to b dropped, in a's output
 *                     hook only: a packet meets the dice once, so the share lost is P, not
 *                     1 - (1 - P)².
 *
 * Every rule counts what it dropped (`counter`), so a run can say how many packets a window cost.
 */

/** One direction of a link between two hosts (by name): packets from `from` to `to`. */
export interface Link { from: string, to: string }
/** A direction of a link that loses `percent` % of its packets (an integer, 1-100). */
export interface LossLink extends Link { percent: number }

/** The faults in force on a network: every link not listed works. */
export interface LinkFaults {
  drop: Link[]
  loss: LossLink[]
}

export const NO_FAULTS: LinkFaults = { drop: [], loss: [] }

/** Our table in each namespace. */
export const NFT_TABLE = 'inet shoal'

/**
 * The directed links a grudge cuts: `grudge[a]` lists the hosts a's packets do not reach. A
 * symmetric grudge (b in grudge[a] iff a in grudge[b]) is a partition both ways.
 */
export function grudgeLinks (grudge: Record<string, readonly string[]>): Link[] {
  return Object.entries(grudge).flatMap(([from, tos]) => tos.map(to => ({ from, to })))
}

/** Both directions of each pair, losing `percent` % each way. */
export function lossBothWays (pairs: ReadonlyArray<readonly [string, string]>, percent: number): LossLink[] {
  return pairs.flatMap(([a, b]) => [{ from: a, to: b, percent }, { from: b, to: a, percent }])
}

/** Throws unless `faults` is well formed: no self links, percentages integers in 1..100. */
export function checkFaults (faults: LinkFaults): void {
  for (const l of [...faults.drop, ...faults.loss]) {
    if (l.from === l.to) throw new Error(`link fault from ${l.from} to itself`)
  }
  for (const l of faults.loss) {
    if (!Number.isInteger(l.percent) || l.percent < 1 || l.percent > 100) throw new Error(`loss on ${l.from} → ${l.to}: ${l.percent} % is not an integer from 1 to 100`)
  }
}

/**
 * The nft script that leaves `host`'s namespace with exactly its share of `faults`: our table
 * replaced in one transaction (the `table` line makes the delete safe when it is absent), or just
 * deleted when none of the faults touch this host.
 */
export function nftScript (host: string, faults: LinkFaults, addressOf: (name: string) => string): string {
  const input = faults.drop.filter(l => l.to === host).map(l => `ip saddr ${addressOf(l.from)} counter drop`)
  const output = [
    ...faults.drop.filter(l => l.from === host).map(l => `ip daddr ${addressOf(l.to)} counter drop`),
    ...faults.loss.filter(l => l.from === host).map(l => `ip daddr ${addressOf(l.to)} numgen random mod 100 < ${l.percent} counter drop`)
  ]
  const reset = `table ${NFT_TABLE}\ndelete table ${NFT_TABLE}\n`
  if (input.length === 0 && output.length === 0) return reset
  const chain = (name: string, rules: string[]): string =>
    `  chain ${name} {\n    type filter hook ${name} priority filter; policy accept;\n${rules.map(r => `    ${r}\n`).join('')}  }\n`
  return `${reset}table ${NFT_TABLE} {\n${chain('input', input)}${chain('output', output)}}\n`
}

/** Packets dropped by the rules of a listing of our table (`nft list table inet shoal`). */
export function droppedPackets (listing: string): number {
  let n = 0
  for (const m of listing.matchAll(/counter packets (\d+) bytes \d+ drop/g)) n += Number(m[1])
  return n
}
