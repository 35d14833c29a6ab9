/**
 * Membership wire compatibility (issue 14, item 1): this version's decoders accept a message from
 * a newer one (new fields, update kinds, member states, a higher `v`), taking what they know,
 * and still refuse malformed ones whole.
 */
import { describe, expect, it } from 'vitest'
import { MEMBERSHIP_PROTOCOL_VERSION, decodeGossip, decodePing, decodePushPull } from '../../src/membership/wire.js'

const limits = { metaMaxBytes: 512, maxUpdatesPerMessage: 64, maxPushPullMembers: 1024 }
const alive = { k: 'alive', id: 'peer-a', i: 3, a: ['/ip4/127.0.0.1/tcp/1'], m: { name: 'a' } }
const suspect = { k: 'suspect', id: 'peer-b', i: 1, f: 'peer-a' }

describe('membership wire compatibility', () => {
  it('a ping from a newer version: unknown fields ignored, an update of an unknown kind skipped, the rest applied', () => {
    const newer = {
      v: MEMBERSHIP_PROTOCOL_VERSION + 1,
      seq: 7,
      target: 'peer-c',
      hint: { zone: 'eu-1' },
      pb: [alive, { k: 'quarantined', id: 'peer-d', i: 2, why: 'disk' }, { ...suspect, weight: 0.5 }]
    }
    const msg = decodePing(newer, limits)
    expect(msg).not.toBeNull()
    expect(msg!.seq).toBe(7)
    expect(msg!.pb).toEqual([alive, suspect])
  })

  it('a push-pull from a newer version: a member in an unknown state is skipped, the others merged; an unknown p is left out', () => {
    const member = { id: 'peer-a', i: 3, s: 'alive', a: ['/ip4/127.0.0.1/tcp/1'], m: {} }
    const msg = decodePushPull({ v: 9, join: true, members: [member, { id: 'peer-z', i: 1, s: 'draining', a: [], m: {} }], p: { id: 'peer-q', i: 1, s: 'draining', a: [], m: {} } }, limits)
    expect(msg).toEqual({ join: true, members: [member] })
  })

  it('a gossip whose every update is of an unknown kind is empty, not malformed', () => {
    expect(decodeGossip({ v: 2, pb: [{ k: 'quarantined', id: 'peer-d', i: 2 }] }, limits)).toEqual({ pb: [] })
    expect(decodeGossip({ pb: [] }, limits)).toBeNull()
  })

  it('still refuses malformed messages whole: a kind that is not a short string, a bad id, a bad incarnation', () => {
    expect(decodePing({ seq: 1, target: 'peer-c', pb: [alive, { k: 42, id: 'peer-d', i: 2 }] }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'peer-c', pb: [alive, { k: 'x'.repeat(33), id: 'peer-d', i: 2 }] }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'peer-c', pb: [{ k: 'quarantined', id: '', i: 2 }] }, limits)).toBeNull()
    expect(decodePing({ seq: 1, target: 'peer-c', pb: [{ k: 'quarantined', id: 'peer-d', i: -1 }] }, limits)).toBeNull()
    expect(decodePushPull({ join: false, members: [{ id: 'peer-z', i: 1, s: 7, a: [], m: {} }] }, limits)).toBeNull()
  })
})
