/**
 * partition: the partition detector. From the membership view it answers "is this peer on the
 * majority side of the last stable cluster?" and "which of these replicas can I reach?", for the
 * planner (skip unreachable replicas, fail fast when a quorum is impossible), health and the
 * confidence of partial answers.
 *
 * The last stable cluster is the set of non-left members once the view has been unchanged for
 * stableWindowMs. Dead members stay in it until reaped (so the minority side of a split knows it
 * is the minority); left members leave it at once (a graceful leave costs no majority); newcomers
 * join it once the view is stable again. Reachable = self + alive + suspect members.
 *
 * ```ts
 * import { PartitionDetector } from '../partition/index.js'
 * const detector = new PartitionDetector({ membership: swim, clock, log }, { stableWindowMs: 10_000 })
 * detector.start()
 * detector.onChange(ev => { if (ev.type === 'majority-lost') log.warn(ev.status, 'minority side') })
 * detector.status()                          // { majority, reachable, stableClusterSize, unreachable, suspect }
 * detector.quorumReachable(['a', 'b', 'c'], 2)
 * ```
 */
export { PartitionDetector, DEFAULT_STABLE_WINDOW_MS } from './detector.js'
export type { MembershipView, PartitionDetectorOptions, PartitionStatus, PartitionEvent } from './detector.js'
