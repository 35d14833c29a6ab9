/**
 * The CI schedules of the Jepsen-style suite against real `shoal start` processes: partitions;
 * kills; pauses plus clock skew; a long outage (one peer away longer than a shortened tombstone
 * grace while the set workload removes ids); disk windows (a minority's tmpfs data directories
 * filled, then a minority's WAL fsyncs failing with EIO: the faulty peers' /health not green
 * naming ENOSPC / EIO, green again without a restart within the bound, everything acknowledged
 * meanwhile read at ALL; each mode with some peer judged on every count; the fill window
 * skipped, saying why, where a tmpfs cannot be mounted); a run in network namespaces (a one-way
 * partition and packet loss made by nftables outside the peers, and a kill; skipped, saying why,
 * where namespaces cannot be made: root, ip, nsenter, nft), each running the set, register and queries workloads. Each fails on a lost acknowledged write, an acknowledged remove undone, an LWW oracle mismatch, a linearizability violation of a
 * single-writer register, a wrong or dishonest query answer, or replicas that never converge.
 * The run's folder (history.jsonl, results.json, logs, timeline.html, plots) is kept when a
 * schedule fails, and removed when it passes unless SHOAL_JEPSEN_STORE names a folder to keep.
 */
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CI_SCHEDULES, diskModes, diskSummary, judgedOnEveryCount, netRefused, run, tmpfsRefused, type DiskMode } from './index.js'

const store = process.env.SHOAL_JEPSEN_STORE ?? join(tmpdir(), 'shoal-jepsen')

describe('jepsen CI schedules on a real 5-peer cluster', () => {
  for (const schedule of CI_SCHEDULES) {
    const netns = schedule.net === 'netns'
    it(`${schedule.name ?? '?'}: no lost acknowledged write, no undone remove, LWW oracle holds, single-writer registers linearizable, query answers exact or honest, replicas converge${schedule.nemeses?.includes('disk') === true ? ', full and failing disks noticed and healed' : ''}${netns ? ', every link fault dropped packets in the kernel' : ''}`, async (ctx) => {
      if (netns) {
        const refused = await netRefused({ net: 'netns', nemeses: schedule.nemeses ?? [] })
        if (refused !== undefined) {
          console.warn(`${schedule.name ?? '?'} skipped: ${refused}`)
          ctx.skip()
          return
        }
      }
      // Disk: the modes whose windows must run here (fill needs a tmpfs: root; fsync does not).
      let modes: DiskMode[] = []
      if (schedule.nemeses?.includes('disk') === true) {
        const refused = await tmpfsRefused()
        modes = diskModes(schedule.diskMode ?? 'both').filter(m => m !== 'fill' || refused === undefined)
        if (refused !== undefined) console.warn(`${schedule.name ?? '?'}: its fill windows are skipped: the disk nemesis cannot mount a tmpfs for the peers' data directories (${refused}); it needs root. Its fsync windows run.`)
        if (modes.length === 0) { ctx.skip(); return }
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
        ...(r.disk !== undefined ? { disk: diskSummary(r.disk) } : {}),
        ...(r.net !== undefined ? { net: r.net.windows.map(w => ({ kind: w.kind, shape: w.shape, links: w.links?.length, percent: w.percent, totalDropped: w.totalDropped })) } : {})
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
      if (modes.length > 0) {
        expect(r.disk?.windows.length ?? 0, summary.dir).toBeGreaterThan(0)
        expect(r.disk?.violations, summary.dir).toEqual([])
        expect(r.disk?.unknown, summary.dir).toEqual([])
        // Not vacuous: for each mode that could run, some faulty peer was judged on every count (not cut short, not masked).
        for (const mode of modes) expect(r.disk?.windows.some(w => w.mode === mode && w.nodes.some(judgedOnEveryCount)), `${mode}: ${summary.dir}`).toBe(true)
      }
      if (netns) {
        // The partition and the loss were the kernel's doing: every such window's rules dropped packets.
        const kinds = (schedule.nemeses ?? []).filter(k => k === 'partition' || k === 'loss')
        for (const kind of kinds) expect(r.net?.windows.some(w => w.kind === kind), `${kind} window: ${summary.dir}`).toBe(true)
        for (const w of r.net?.windows ?? []) expect(w.totalDropped ?? 0, `${w.kind} ${w.shape ?? ''} dropped nothing: ${summary.dir}`).toBeGreaterThan(0)
      }
      expect(r.valid, JSON.stringify(r.failures)).toBe(true)
      if (process.env.SHOAL_JEPSEN_STORE === undefined) await rm(out.dir, { recursive: true, force: true })
    }, 180_000)
  }
})
