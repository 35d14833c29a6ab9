/**
 * ShoalClient declares the HTTP API's shapes itself (src/client/types.ts) so that a program using
 * it compiles against the client alone. These assignments make `tsc` (which npm test runs first)
 * fail when the server's shapes and the client's drift apart, either way.
 */
import { describe, expect, it } from 'vitest'
import type { Completion, Consistency, Coverage, Member, Space } from '../../src/client/index.js'
import type { Completion as ServerCompletion } from '../../src/query/exec/complete-fill.js'
import type { Consistency as ServerConsistency, MemberView, SpaceView } from '../../src/http/index.js'
import type { Coverage as ServerCoverage } from '../../src/query/service/index.js'

/** Compiles only when A and B are assignable both ways. */
function same<A, B> (_check: [A] extends [B] ? ([B] extends [A] ? true : false) : false): void {}

describe('the client\'s declared shapes', () => {
  it('match the server\'s (checked by the compiler)', () => {
    same<Member, MemberView>(true)
    same<Space, SpaceView>(true)
    same<Consistency, ServerConsistency>(true)
    same<Coverage, ServerCoverage>(true)
    same<Completion, ServerCompletion>(true)
    expect(true).toBe(true)
  })
})
