/**
 * test/jepsen: Shoal's Jepsen-style partition test suite. Real `shoal start` processes (via
 * test/cluster), a seeded nemesis schedule, concurrent clients writing a history of every
 * operation, and checkers that judge the history. See docs/testing.md.
 */
import type { ClusterNet } from '../cluster/index.js'
import type { DiskModeChoice } from './disk.js'
import type { NemesisKind } from './nemesis.js'
import type { RunOptions } from './runner.js'

export { run, netRefused, netSummary, DEFAULTS, type RunOptions, type RunOutcome, type NetSummary, type NetFaultWindow } from './runner.js'
export { schedule, partitionGrudge, oneWayGrudge, rng, Nemesis, NEMESES, NETNS_ONLY_NEMESES, LOSS_NEEDS_NETNS, DEFAULT_LOSS_PERCENT, type FaultPlan, type NemesisKind, type PartitionShape } from './nemesis.js'
export { History, pairs, parseJsonl, readHistory, faultWindows, type Op, type OpType, type Pair, type FaultWindow } from './history.js'
export { ShoalClient, request, type Outcome } from './client.js'
export { checkHistory, checkSet, checkRegisterWorkload, checkRegister, checkQueries, checkDisk, diskSummary, judgedOnEveryCount, expectedAnswer, type QueriesResult, type QueriesDataset, type Results, type ConvergenceResult, type DiskResult } from './checkers/index.js'
export { renderReport, latencySvg, throughputSvg, timelineHtml } from './report.js'
export { simHistory, type SimOp } from './sim.js'
export { DiskNemesis, diskModes, fillDisk, mountDataDirs, tmpfsRefused, DISK_MODES, DISK_MODE_CHOICES, FSYNC_FAULT_RULES, type DiskMode, type DiskModeChoice, type DiskFault, type DiskHealthSample } from './disk.js'

/**
 * The short schedules CI runs: partitions; kills; pauses plus clock skew (5 peers, 5 s fault / 5 s
 * quiet); and one long outage (10 s of load, then one peer killed for 20 s while the tombstone
 * grace is 3 s and the set workload removes ids, a smaller queries dataset: no acknowledged
 * remove may come back); and two disk windows (3 s of load, then a minority's tmpfs data
 * directories full for 7 s; at least 4 s later, once those peers are green again, a minority's
 * WAL fsyncs failing with EIO for 7 s; 3 s of load after it, its heal watched up to the bound:
 * the faulty peers say so and heal without a restart, nothing acknowledged is lost; the fill
 * window needs root and is skipped, saying why, otherwise); and one schedule in network namespaces
 * (root: test/net; skipped, saying why, elsewhere): a one-way partition, 25 % packet loss on some
 * links and a kill, the link faults made by nftables outside the peers, over 22 s of load.
 */
export const CI_SCHEDULES: Array<Partial<RunOptions>> = ([
  { name: 'ci-partitions', nemeses: ['partition'], seed: 11 },
  { name: 'ci-kills', nemeses: ['kill'], seed: 12 },
  { name: 'ci-pauses-clock', nemeses: ['pause', 'clock'], seed: 13 },
  { name: 'ci-outage', nemeses: ['outage'], seed: 14, timeLimitMs: 40_000, quietMs: 10_000, faultMs: 20_000, queryRows: 400 },
  { name: 'ci-disk', nemeses: ['disk'], diskMode: 'both', diskWaitHeal: true, seed: 15, timeLimitMs: 24_000, leadMs: 3000, faultMs: 7000, quietMs: 4000, diskMiB: 32 },
  { name: 'ci-netns', net: 'netns', nemeses: ['partition', 'loss', 'kill'], seed: 20, timeLimitMs: 22_000, leadMs: 3000, faultMs: 5000, quietMs: 2000, queryRows: 1000 }
] satisfies Array<{ name: string, nemeses: NemesisKind[], seed: number, timeLimitMs?: number, quietMs?: number, leadMs?: number, faultMs?: number, queryRows?: number, diskMiB?: number, diskMode?: DiskModeChoice, diskWaitHeal?: boolean, net?: ClusterNet }>).map(s => ({ workload: 'all' as const, nodes: 5, concurrency: 6, timeLimitMs: 30_000, faultMs: 5000, quietMs: 5000, convergenceTimeoutMs: 60_000, maxClockOffsetMs: 1000, maxClockDriftPpm: 2000, ...s }))
