import { createInterface } from 'node:readline/promises'
import { CliError } from './errors.js'
import type { RemovePeerResult as RemoveAnswer, ShoalClient } from '../client/index.js'
import { withClient } from './client.js'

/**
 * `shoal remove-peer PEER_ID`: removes a dead peer on purpose (POST /cluster/remove). First asks
 * what that gives up (partitions whose only copies are on it) and shows it; removes only with
 * --yes, or when the operator answers yes at a terminal. Without either it removes nothing and
 * exits 1, so a script cannot give data up by accident.
 */
export async function runRemovePeer (peerId: string, opts: { peer: string, yes?: boolean, json?: boolean }): Promise<void> {
  await withClient(opts.peer, async client => { await removePeer(client, peerId, opts) })
}

async function removePeer (client: ShoalClient, peerId: string, opts: { peer: string, yes?: boolean, json?: boolean }): Promise<void> {
  const plan = await post(client, opts.peer, peerId, false)
  const label = plan.name !== null ? `${plan.name} (${plan.peerId})` : plan.peerId
  if (plan.removed) {
    print(opts, plan, `peer ${label} was already removed\n`)
    return
  }
  if (opts.json !== true) {
    process.stdout.write(`peer ${label} is ${plan.state}.\n`)
    if (plan.givesUp.length === 0) {
      process.stdout.write('No partition has its only ready copy on it: removing it gives up no data.\n')
    } else {
      process.stdout.write(`Removing it GIVES UP the data of ${plan.givesUp.length} partition(s), whose only ready copies are on it; they start over empty:\n`)
      for (const g of plan.givesUp) process.stdout.write(`  space ${g.space}, partition ${g.partition}\n`)
      process.stdout.write('If the peer can still come back (its disk is intact), start it again instead: those partitions return with it.\n')
    }
  }
  let go = opts.yes === true
  if (!go && process.stdin.isTTY === true && opts.json !== true) {
    const rl = createInterface({ input: process.stdin, output: process.stdout })
    try {
      go = /^(y|yes)$/i.test((await rl.question('Remove it? [y/N] ')).trim())
    } finally {
      rl.close()
    }
  }
  if (!go) {
    if (opts.json === true) process.stdout.write(JSON.stringify(plan, null, 2) + '\n')
    throw new CliError(`peer ${label} not removed; run again with --yes to remove it`)
  }
  const done = await post(client, opts.peer, peerId, true)
  print(opts, done, `removed peer ${label}${done.givesUp.length > 0 ? `; ${done.givesUp.length} partition(s) start over empty` : ''}\n`)
}

async function post (client: ShoalClient, base: string, peerId: string, confirm: boolean): Promise<RemoveAnswer> {
  const answer = await client.removePeer(peerId, { confirm })
  if (typeof answer !== 'object' || answer === null || !Array.isArray(answer.givesUp)) throw new CliError(`unexpected answer from ${base}/cluster/remove`)
  return answer
}

function print (opts: { json?: boolean }, answer: RemoveAnswer, text: string): void {
  process.stdout.write(opts.json === true ? JSON.stringify(answer, null, 2) + '\n' : text)
}
