/**
 * Issue 13: the seed sweep's cluster schedule (cluster-schedule.ts) in CI: five whole peers on
 * simulated disks, set clients at QUORUM, partitions (one-way too), kills, power cuts, failing and
 * full disks, clock skew, joins and decommissions, pauses, space drops, reads at ALL right after each heal,
 * judged by the Jepsen set checker. Seeds 4, 5 and 6 fail if a partition's directory is not
 * synced in its parent; seeds 4 and 5 if a partition whose holders all restarted passes for fresh
 * (reads right after the heal then miss acknowledged adds); seed 24 if a restarted peer decides
 * before its join has reached every peer it knew. `npm run sim -- cluster --seeds
 * 1-1000` runs more; docs/testing.md says how many a release should pass.
 *
 * Seeds 9 and 35 found the sim's own client unsound, not the database: a remove stamped by a
 * coordinator whose clock was behind that of the add's lost to the add (last writer wins), as a
 * client without a session may see; the clients now carry the newest version they saw (the HTTP
 * API's `after`), as the real Jepsen clients do.
 */
import { describe, expect, it } from 'vitest'
import { runClusterSchedule } from './cluster-schedule.js'

describe('whole clusters on simulated disks: the seed sweep', () => {
  it('keeps every acknowledged add and remove, and every read sees what was acknowledged, through 9 seeded schedules of every fault kind', async () => {
    const failed: string[] = []
    let acknowledged = 0
    const kinds = new Set<string>()
    // Seed 24: after a power cut of the whole cluster, an island of the peers up first took itself
    // for the cluster (see Swim.joinSettled).
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 24]) {
      const r = await runClusterSchedule({ seed })
      acknowledged += r.stats.acknowledged
      for (const w of r.stats.windows) { const k = w.split(' ')[0]!; kinds.add(k === 'join' || k === 'decommission' ? 'membership' : k) }
      if (!r.ok) failed.push(`seed ${seed}: ${r.violations.join('; ')} (windows: ${r.stats.windows.join(' / ')})`)
    }
    expect(failed).toEqual([])
    expect(acknowledged).toBeGreaterThan(3000)
    expect([...kinds].sort()).toEqual(['clock', 'disk', 'drop', 'kill', 'membership', 'partition', 'pause', 'power'])
  }, 180_000)

  it('a space dropped and created again while a peer is away: no disk keeps the dropped uid, nothing written into it comes back into the new one', async () => {
    // Seeds 1 and 7 failed before the fix: a peer that had held the dropped uid kept handing it
    // off (a digest sync with its owners), and an owner restarted since created its replica again.
    for (const seed of [1, 7]) {
      const r = await runClusterSchedule({ seed, faults: ['drop'] })
      expect(r.stats.windows.filter(w => w.startsWith('drop')).length, `seed ${seed}`).toBe(4)
      expect(r.violations, `seed ${seed}`).toEqual([])
    }
  }, 60_000)
})
