/**
 * The CI schedules of the Jepsen-style suite against real `shoal start` processes: partitions;
 * kills; pauses plus clock skew; a long outage (one peer away longer than a shortened tombstone
 * grace while the set workload removes ids), each running the set, register and queries
 * workloads. Each fails on a lost acknowledged write, an acknowledged remove undone, an LWW oracle mismatch, a linearizability violation of a
 * single-writer register, a wrong or dishonest query answer, or replicas that never converge.
 * The run's folder (history.jsonl, results.json, logs, timeline.html, plots) is kept when a
 * schedule fails, and removed when it passes unless SHOAL_JEPSEN_STORE names a folder to keep.
 */
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CI_SCHEDULES, run } from './index.js'

const store = process.env.SHOAL_JEPSEN_STORE ?? join(tmpdir(), 'shoal-jepsen')

describe('jepsen CI schedules on a real 5-peer cluster', () => {
  for (const schedule of CI_SCHEDULES) {
    it(`${schedule.name ?? '?'}: no lost acknowledged write, no undone remove, LWW oracle holds, single-writer registers linearizable, query answers exact or honest, replicas converge`, async () => {
      const out = await run({ ...schedule, store, log: line => { if (process.env.SHOAL_JEPSEN_VERBOSE !== undefined) console.log(line) } })
      const r = out.results
      const summary = {
        dir: out.dir,
        failures: r.failures,
        set: { attempted: r.set?.attempted, acknowledged: r.set?.acknowledged, info: r.set?.info, lost: r.set?.lost.length, removes: r.set?.removes, resurrected: r.set?.resurrected.length, recovered: r.set?.recovered, stale: r.set?.stale.length },
        register: { writes: r.register?.writes, reads: r.register?.reads, mismatches: r.register?.oracle.mismatches.length, swViolations: r.register?.singleWriter.violations.length, mwNonLinearizable: r.register?.multiWriter.nonLinearizable.length, monotonic: r.register?.monotonic.violations.length, staleReads: r.register?.staleReads.length },
        queries: { queries: r.queries?.queries, complete: r.queries?.complete, partial: r.queries?.partial, errors: r.queries?.errors, noAnswer: r.queries?.noAnswer, violations: r.queries?.violationsByKind, afterHeal: r.queries?.afterHeal.complete },
        convergence: { afterMs: r.convergence?.afterMs, hints: r.convergence?.hints }
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
      expect(r.valid, JSON.stringify(r.failures)).toBe(true)
      if (process.env.SHOAL_JEPSEN_STORE === undefined) await rm(out.dir, { recursive: true, force: true })
    }, 180_000)
  }
})
