/**
 * npm run sim -- <schedule> [flags]: a seed sweep of the deterministic simulator.
 *
 *   storage                 the storage engine on a simulated disk (storage-schedule.ts)
 *   cluster                 five whole peers on simulated disks, set clients, a nemesis, the
 *                           Jepsen set checker (cluster-schedule.ts)
 *   --seeds A-B | N[,M...]  seeds to run (default 1-100)
 *   --faults K,K            fault kinds (default all; storage: power,torn,full,eio-write,eio-sync,
 *                           eio-dirsync; cluster: partition,kill,power,disk,clock)
 *   --steps N               storage: steps of each schedule (default 60); cluster: fault windows (default 4)
 *   --verbose               print each failing seed's violations and last steps in full
 *
 * Prints one line per failing seed with the command that replays it, then a summary with the wall
 * time. Exit code 0 when every seed passed, 1 when one failed, 2 on bad flags.
 */
import '../../src/polyfill/index.js'
import { parseArgs } from 'node:util'
import { CLUSTER_FAULTS, runClusterSchedule } from './cluster-schedule.js'
import { runStorageSchedule, STORAGE_FAULTS } from './storage-schedule.js'

/** "1-1000", "7", "3,9,12" → the seeds. */
export function parseSeeds (text: string): number[] {
  const out: number[] = []
  for (const part of text.split(',').map(s => s.trim()).filter(s => s !== '')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part)
    if (m === null) throw new Error(`--seeds: '${part}' is not a seed or a range A-B`)
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (b < a) throw new Error(`--seeds: range ${part} runs backwards`)
    if (b - a > 1_000_000) throw new Error(`--seeds: range ${part} is over a million seeds`)
    for (let s = a; s <= b; s++) out.push(s)
  }
  if (out.length === 0) throw new Error('--seeds: no seed given')
  return out
}

async function main (): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        seeds: { type: 'string', default: '1-100' },
        faults: { type: 'string' },
        steps: { type: 'string' },
        verbose: { type: 'boolean', default: false }
      }
    })
  } catch (err) {
    console.error((err as Error).message)
    return 2
  }
  const { values, positionals } = parsed
  const schedule = positionals[0] ?? 'storage'
  if (schedule !== 'storage' && schedule !== 'cluster') {
    console.error(`unknown schedule '${schedule}'; expected: storage, cluster`)
    return 2
  }
  const known: readonly string[] = schedule === 'storage' ? STORAGE_FAULTS : CLUSTER_FAULTS
  let seeds: number[]
  let faults: string[] | undefined
  const steps = values.steps === undefined ? undefined : Number(values.steps)
  try {
    seeds = parseSeeds(values.seeds)
    if (values.faults !== undefined) {
      faults = values.faults.split(',').filter(s => s !== '')
      for (const f of faults) if (!known.includes(f)) throw new Error(`--faults: unknown kind '${f}' for ${schedule}; expected ${known.join(', ')}`)
    }
    if (steps !== undefined && (!Number.isInteger(steps) || steps < 1)) throw new Error(`--steps must be a positive integer, got ${values.steps}`)
  } catch (err) {
    console.error((err as Error).message)
    return 2
  }
  const t0 = Date.now()
  const failed: number[] = []
  const totals = { acked: 0, crashes: 0, faultsInjected: 0 }
  for (const seed of seeds) {
    let ok: boolean
    let violations: string[]
    let trace: string[]
    if (schedule === 'storage') {
      const r = await runStorageSchedule({ seed, ...(steps !== undefined ? { steps } : {}), ...(faults !== undefined ? { faults: faults as typeof STORAGE_FAULTS[number][] } : {}) })
      totals.acked += r.stats.acked
      totals.crashes += r.stats.crashes
      totals.faultsInjected += r.stats.faultsInjected
      ;({ ok, violations, trace } = r)
    } else {
      const r = await runClusterSchedule({ seed, ...(steps !== undefined ? { windows: steps } : {}), ...(faults !== undefined ? { faults: faults as typeof CLUSTER_FAULTS[number][] } : {}) })
      totals.acked += r.stats.acknowledged
      totals.faultsInjected += r.stats.windows.length
      ok = r.ok
      violations = r.violations
      trace = r.stats.windows
    }
    if (ok) continue
    failed.push(seed)
    const replay = `npm run sim -- ${schedule} --seeds ${seed}${values.faults !== undefined ? ` --faults ${values.faults}` : ''}${steps !== undefined ? ` --steps ${steps}` : ''} --verbose`
    console.log(`FAIL seed ${seed}: ${violations[0]}${violations.length > 1 ? ` (+${violations.length - 1} more)` : ''}\n  replay: ${replay}`)
    if (values.verbose) {
      for (const v of violations) console.log(`  violation: ${v}`)
      for (const t of trace) console.log(`  ${t}`)
    }
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  console.log(`${schedule}: ${seeds.length - failed.length}/${seeds.length} seeds passed in ${secs} s (${totals.acked} acknowledged writes, ${schedule === 'storage' ? `${totals.crashes} power cuts, ${totals.faultsInjected} disk faults` : `${totals.faultsInjected} fault windows`})${failed.length > 0 ? `; failing: ${failed.join(',')}` : ''}`)
  return failed.length === 0 ? 0 : 1
}

main().then(code => { process.exitCode = code }, err => {
  console.error(err)
  process.exitCode = 2
})
