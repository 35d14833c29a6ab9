/**
 * npm run jepsen -- [flags]
 *
 *   --workload set|register|queries|all   (default all: set, register and queries)
 *   --nemesis partition,kill,pause,clock,outage,disk,loss   fault kinds, taken in turn (default
 *                                   partition); loss needs --net netns
 *   --net loopback|netns            where the peers run (default loopback: 127.0.0.1, partitions
 *                                   through the peers' deny lists); netns (root, ip, nsenter, nft):
 *                                   a network namespace each, partitions (one-way too) and loss by
 *                                   nftables rules in the namespaces, outside the peers
 *   --loss PERCENT                  share of packets a loss window drops on its links (default 25)
 *   --disk-mode fill|fsync|both     how disk windows fail the disk (default both: taken in turn,
 *                                   fill first): fill needs root (tmpfs data directories), else
 *                                   its windows are skipped with a warning; fsync (WAL fsyncs
 *                                   fail with EIO, a fault rule in the peer) does not
 *   --disk-wait-heal                the window after a disk window waits until its peers are green
 *                                   again (or the heal bound passed); later windows shift by the wait
 *   --disk-mib N --disk-heal-bound SECONDS   disk runs: each peer's tmpfs size (default 128) and
 *                                   how long a faulty peer may take to be green again (default 30)
 *   --time-limit SECONDS            length of the fault/quiet schedule (default 60)
 *   --fault SECONDS --quiet SECONDS length of each fault and quiet window (default 10, 10)
 *   --lead SECONDS                  the quiet period before the first fault window (default --quiet)
 *   --seed N                        schedule and client randomness (default 1)
 *   --nodes N --concurrency K       peers and client workers (default 5, 6)
 *   --think MS --keys-per-writer N  client pause between operations (default 30) and single-writer
 *                                   register keys per worker (default 2): long runs want more keys
 *   --query-workers N --query-rows N   query workers beside the others in 'all' (default 2; a
 *                                   queries-only run has --concurrency of them) and rows of the
 *                                   queries dataset (default 4000)
 *   --store DIR                     parent folder of the run's output (default store/jepsen)
 *   --ci                            the short CI schedules, one after the other (ci-netns is
 *                                   skipped, saying why, where namespaces cannot be made)
 *   --check FILE                    only run the checkers on an existing history.jsonl (e.g. from the simulator)
 *
 * Exit code 0 when valid, 1 when not, 2 when unknown or on error.
 */
import '../../src/polyfill/index.js'
import { parseArgs } from 'node:util'
import { checkHistory, diskSummary } from './checkers/index.js'
import { readHistory } from './history.js'
import { DISK_MODE_CHOICES, type DiskModeChoice } from './disk.js'
import { DEFAULT_LOSS_PERCENT, NEMESES, type NemesisKind } from './nemesis.js'
import { netRefused } from './runner.js'
import { CI_SCHEDULES, run, type RunOptions } from './index.js'

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      workload: { type: 'string', default: 'all' },
      nemesis: { type: 'string', default: 'partition' },
      'time-limit': { type: 'string', default: '60' },
      fault: { type: 'string', default: '10' },
      quiet: { type: 'string', default: '10' },
      seed: { type: 'string', default: '1' },
      nodes: { type: 'string', default: '5' },
      concurrency: { type: 'string', default: '6' },
      think: { type: 'string', default: '30' },
      'keys-per-writer': { type: 'string', default: '2' },
      'query-workers': { type: 'string', default: '2' },
      'query-rows': { type: 'string', default: '4000' },
      store: { type: 'string', default: 'store/jepsen' },
      'disk-mib': { type: 'string', default: '128' },
      'disk-heal-bound': { type: 'string', default: '30' },
      'disk-mode': { type: 'string', default: 'both' },
      'disk-wait-heal': { type: 'boolean', default: false },
      net: { type: 'string', default: 'loopback' },
      loss: { type: 'string', default: String(DEFAULT_LOSS_PERCENT) },
      lead: { type: 'string' },
      ci: { type: 'boolean', default: false },
      check: { type: 'string' }
    }
  })
  if (values.check !== undefined) {
    const results = checkHistory(await readHistory(values.check))
    console.log(JSON.stringify(results, null, 2))
    return results.valid === true ? 0 : results.valid === false ? 1 : 2
  }
  const log = (s: string): void => { console.error(`[${new Date().toISOString()}] ${s}`) }
  const runs: Array<Partial<RunOptions>> = values.ci
    ? CI_SCHEDULES.map(s => ({ ...s, store: values.store }))
    : [(() => {
        const nemeses = values.nemesis.split(',').filter(s => s !== '') as NemesisKind[]
        for (const n of nemeses) if (!NEMESES.includes(n)) throw new Error(`unknown nemesis '${n}'; expected ${NEMESES.join(', ')}`)
        const workload = values.workload as RunOptions['workload']
        if (!['set', 'register', 'queries', 'all'].includes(workload)) throw new Error(`unknown workload '${workload}'; expected set, register, queries or all`)
        const diskMode = values['disk-mode'] as DiskModeChoice
        if (!DISK_MODE_CHOICES.includes(diskMode)) throw new Error(`unknown disk mode '${diskMode}'; expected ${DISK_MODE_CHOICES.join(', ')}`)
        const net = values.net as RunOptions['net']
        if (net !== 'loopback' && net !== 'netns') throw new Error(`unknown --net '${values.net}'; expected loopback or netns`)
        const lossPercent = Number(values.loss)
        if (!Number.isInteger(lossPercent) || lossPercent < 1 || lossPercent > 100) throw new Error(`--loss ${values.loss}: expected an integer percentage from 1 to 100`)
        return {
          name: `${workload}-${nemeses.join('+') || 'none'}`,
          workload,
          nemeses,
          seed: Number(values.seed),
          timeLimitMs: Number(values['time-limit']) * 1000,
          faultMs: Number(values.fault) * 1000,
          quietMs: Number(values.quiet) * 1000,
          ...(values.lead !== undefined ? { leadMs: Number(values.lead) * 1000 } : {}),
          nodes: Number(values.nodes),
          concurrency: Number(values.concurrency),
          thinkMs: Number(values.think),
          keysPerWriter: Number(values['keys-per-writer']),
          queryWorkers: Number(values['query-workers']),
          queryRows: Number(values['query-rows']),
          diskMiB: Number(values['disk-mib']),
          diskMode,
          diskWaitHeal: values['disk-wait-heal'],
          diskHealBoundMs: Number(values['disk-heal-bound']) * 1000,
          net,
          lossPercent,
          store: values.store
        }
      })()]
  let worst = 0
  for (const r of runs) {
    // Refused before anything starts: a netns-only nemesis on loopback, or no namespaces here.
    const refused = await netRefused({ net: r.net ?? 'loopback', nemeses: r.nemeses ?? ['partition'] })
    if (refused !== undefined) {
      if (!values.ci) throw new Error(refused)
      console.error(`jepsen: ${r.name ?? '?'} skipped: ${refused}`)
      continue
    }
    const out = await run({ ...r, log })
    const res = out.results
    console.log(JSON.stringify({ run: r.name, valid: res.valid, dir: out.dir, failures: res.failures, set: res.set !== undefined ? { attempted: res.set.attempted, acknowledged: res.set.acknowledged, lost: res.set.lost.length, removes: res.set.removes, resurrected: res.set.resurrected.length, unexpected: res.set.unexpected.length, recovered: res.set.recovered, stale: res.set.stale.length } : undefined, register: res.register !== undefined ? { writes: res.register.writes, reads: res.register.reads, oracleMismatches: res.register.oracle.mismatches.length, swViolations: res.register.singleWriter.violations.length, mwNonLinearizable: res.register.multiWriter.nonLinearizable.length, monotonic: res.register.monotonic.violations.length, stale: res.register.staleReads.length } : undefined, queries: res.queries !== undefined ? { queries: res.queries.queries, complete: res.queries.complete, partial: res.queries.partial, errors: res.queries.errors, noAnswer: res.queries.noAnswer, violations: res.queries.violationsByKind, afterHeal: { complete: res.queries.afterHeal.complete, peersWithoutCompleteAnswer: res.queries.afterHeal.peersWithoutCompleteAnswer } } : undefined, convergence: res.convergence !== undefined ? { afterMs: res.convergence.afterMs, hints: res.convergence.hints } : undefined, disk: res.disk !== undefined ? diskSummary(res.disk) : undefined, net: res.net !== undefined ? res.net.windows.map(w => ({ kind: w.kind, shape: w.shape, links: w.links?.length, percent: w.percent, totalDropped: w.totalDropped })) : undefined }, null, 2))
    worst = Math.max(worst, res.valid === true ? 0 : res.valid === false ? 1 : 2)
  }
  return worst
}

main().then(code => { process.exit(code) }, err => { console.error(err); process.exit(2) })
