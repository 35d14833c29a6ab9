/**
 * ShoalClient declares the HTTP API's shapes itself (src/client/types.ts) so that a program using
 * it compiles against the client alone. These assignments make `tsc` (which npm test runs first)
 * fail when the server's shapes and the client's drift apart, either way.
 */
import { describe, expect, it } from 'vitest'
import type {
  BackupBegin, ClusterRepair, ClusterStatus, Completion, Consistency, Coverage, DecommissionEvent, ExplainResult, GetResult,
  Member, RemovePeerResult, Space
} from '../../src/client/index.js'
import type { BackupBegin as ServerBackupBegin } from '../../src/backup/index.js'
import type { Completion as ServerCompletion } from '../../src/query/exec/complete-fill.js'
import type { Consistency as ServerConsistency, MemberView, RecordAnswer, RemovePeerAnswer, SpaceView } from '../../src/http/index.js'
import type { ClusterRepair as ServerClusterRepair, ClusterStatus as ServerClusterStatus } from '../../src/peer/cluster-status.js'
import type { DecommissionEvent as ServerDecommissionEvent } from '../../src/peer/decommission.js'
import type { Coverage as ServerCoverage, QueryService } from '../../src/query/service/index.js'

/** Compiles only when A and B are assignable both ways. */
function same<A, B> (_check: [A] extends [B] ? ([B] extends [A] ? true : false) : false): void {}
/** Compiles only when what the server sends (S) fits what the client declares (C): for shapes the client declares loosely. */
function fits<S, C> (_check: [S] extends [C] ? true : false): void {}

describe('the client\'s declared shapes', () => {
  it('match the server\'s (checked by the compiler)', () => {
    same<Member, MemberView>(true)
    same<Space, SpaceView>(true)
    same<Consistency, ServerConsistency>(true)
    same<Coverage, ServerCoverage>(true)
    same<Completion, ServerCompletion>(true)
    same<ClusterStatus, ServerClusterStatus>(true)
    same<ClusterRepair, ServerClusterRepair>(true)
    same<DecommissionEvent, ServerDecommissionEvent>(true)
    same<RemovePeerResult, RemovePeerAnswer>(true)
    // The server's column types are narrower (ColumnType) than the client's strings.
    fits<ServerBackupBegin, BackupBegin>(true)
    fits<RecordAnswer, GetResult>(true)
    fits<Awaited<ReturnType<QueryService['explain']>>, ExplainResult>(true)
    expect(true).toBe(true)
  })
})
