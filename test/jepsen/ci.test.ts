/**
 * The CI schedules of the Jepsen-style suite against real `shoal start` processes: partitions;
 * kills; pauses plus clock skew; a long outage (one peer away longer than a shortened tombstone
 * grace while the set workload removes ids); a disk window (a minority's tmpfs data directories
 * filled: the full peers' /health not green naming ENOSPC, green again without a restart within
 * the bound, everything acknowledged meanwhile read at ALL; skipped, saying why, where a tmpfs
 * cannot be mounted), each running the set, register and queries workloads. Each fails on a lost acknowledged write, an acknowledged remove undone, an LWW oracle mismatch, a linearizability violation of a
 * single-writer register, a wrong or dishonest query answer, or replicas that never converge.
 * The run's folder (history.jsonl, results.json, logs, timeline.html, plots) is kept when a
 * schedule fails, and removed when it passes unless SHOAL_JEPSEN_STORE names a folder to keep.
 */
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CI_SCHEDULES, run, tmpfsRefused } from './index.js'

const store = process.env.SHOAL_JEPSEN_STORE ?? join(tmpdir(), 'shoal-jepsen')

describe('jepsen CI schedules on a real 5-peer cluster', () => {
  for (const schedule of CI_SCHEDULES) {
    it(`${schedule.name ?? '?'}: no lost acknowledged write, no undone remove, LWW oracle holds, single-writer registers linearizable, query answers exact or honest, replicas converge${schedule.nemeses?.includes('disk') === true ? ', full disks noticed and healed' : ''}`, async (ctx) => {
      if (schedule.nemeses?.includes('disk') === true) {
        const refused = await tmpfsRefused()
        if (refused !== undefined) {
          console.warn(`skipped ${schedule.name ?? '?'}: the disk nemesis cannot mount a tmpfs for the peers' data directories (${refused}); it needs root`)
          ctx.skip()
          return
        }
      }
      const out = await run({ ...schedule, store, log: line => { if (process.env.SHOAL_JEPSEN_VERBOSE !== undefined) console.log(line) } })
      const r = out.results
      const summary = {
        dir: out.dir,
        failures: r.failures,
        set: { attempted: r.set?.attempted, acknowledged: r.set?.acknowledged, info: r.set?.info, lost: r.set?.lost.length, removes: r.set?.removes, resurrected: r.set?.resurrected.length, recovered: r.set?.recovered, stale: r.set?.stale.length },
        register: { writes: r.register?.writes, reads: r.register?.reads, mismatches: r.register?.oracle.mismatches.length, swViolations: r.register?.singleWriter.violations.length, mwNonLinearizable: r.register?.multiWriter.nonLinearizable.length, monotonic: r.register?.monotonic.violations.length, staleReads: r.register?.staleReads.length },
        queries: { queries: r.queries?.queries, complete: r.queries?.complete, partial: r.queries?.partial, errors: r.queries?.errors, noAnswer: r.queries?.noAnswer, violations: r.queries?.violationsByKind, afterHeal: r.queries?.afterHeal.complete },
        convergence: { afterMs: r.convergence?.afterMs, hints: r.convergence?.hints },
        ...(r.disk !== undefined
          ? {
              disk: {
                skipped: r.disk.skipped,
                windows: r.disk.windows.map(w => ({
                  at: [w.start, w.end].map(t => Math.round(t)),
                  acknowledged: w.acknowledged,
                  readAtAll: { acknowledged: w.readAtAll.acknowledged, present: w.readAtAll.present, removed: w.readAtAll.removed, absent: w.readAtAll.absent.length, unread: w.readAtAll.unread.length },
                  nodes: w.nodes.map(n => ({ node: n.node, ballastMiB: n.fill !== null ? Math.round(n.fill.ballastBytes / 2 ** 20 * 10) / 10 : null, freeBytes: n.fill?.freeBytes, usedMiB: n.fill !== null ? Math.round(n.fill.usedBytes / 2 ** 20 * 10) / 10 : null, topUps: n.topUps?.count, samples: n.windowSamples, notGreen: n.notGreen, namingEnospc: n.namingEnospc, noticedAfterMs: n.noticedAfterMs, failedPartitions: n.failedPartitions.length, fullForMs: n.fullForMs, tooShort: n.tooShort, failuresGoneAfterMs: n.failuresGoneAfterMs, greenAfterMs: n.greenAfterMs, masked: n.masked, pids: n.pids.length }))
                })),
                violations: r.disk.violations,
                unknown: r.disk.unknown
              }
            }
          : {})
      }
      console.log(`${schedule.name ?? '?'}: ${JSON.stringify(summary)}`)
      // The workload did something under faults: acknowledged adds and writes on both workloads.
      expect(r.set?.acknowledged ?? 0).toBeGreaterThan(50)
      expect(r.register?.writes.ok ?? 0).toBeGreaterThan(20)
      expect(r.queries?.complete ?? 0).toBeGreaterThan(20)
      expect(r.set?.lost, summary.dir).toEqual([])
      expect(r.set?.resurrected, summary.dir).toEqual([])
      expect(r.set?.unexpected, summary.dir).toEqual([])
      expect(r.register?.oracle.mismatches, summary.dir).toEqual([])
      expect(r.register?.singleWriter.violations, summary.dir).toEqual([])
      expect(r.queries?.violations, summary.dir).toEqual([])
      expect(r.convergence?.converged, summary.dir).toBe(true)
      if (schedule.nemeses?.includes('disk') === true) {
        expect(r.disk?.skipped, summary.dir).toBeUndefined()
        expect(r.disk?.windows.length ?? 0, summary.dir).toBeGreaterThan(0)
        expect(r.disk?.violations, summary.dir).toEqual([])
        expect(r.disk?.unknown, summary.dir).toEqual([])
        // Not vacuous: some full peer was judged on every count (not cut short, not masked).
        expect(r.disk?.windows.some(w => w.nodes.some(n => n.noticedAfterMs !== null && n.greenAfterMs !== null && !n.tooShort && !n.masked)), summary.dir).toBe(true)
      }
      expect(r.valid, JSON.stringify(r.failures)).toBe(true)
      if (process.env.SHOAL_JEPSEN_STORE === undefined) await rm(out.dir, { recursive: true, force: true })
    }, 180_000)
  }
})
