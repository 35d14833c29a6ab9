import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { HintStore, chunkRecords, packRecords, parseRecord, parseSpace, parseWriteRequest } from '../../src/replication/index.js'
import type { PartitionPlacement } from '../../src/placement/index.js'
import { writeLevel } from '../../src/replication/quorum.js'
import { checkSchema } from '../../src/schema/index.js'
import type { SpaceDef } from '../../src/schema/index.js'
import { compareVersions } from '../../src/storage/types.js'
import type { VersionedRecord } from '../../src/storage/types.js'
import { MemoryPartitionStore } from '../sim/memory-store.js'

const space: SpaceDef = { name: 's', uid: 's@1', schema: checkSchema([{ name: 'id', type: 'utf8' }, { name: 'v', type: 'int32' }]), partitions: 4, replicas: 3 }
const pk = (v: unknown): Uint8Array => pack(v)
const rec = (id: string, version: number, v: number | null = 1): VersionedRecord =>
  v === null ? { id, version, deleted: true, row: null } : { id, version, deleted: false, row: { id, v } }

describe('replication wire validation', () => {
  it('accepts a well-formed write and normalizes rows', () => {
    const req = parseWriteRequest({ space, partition: 1, records: [{ id: 'a', version: 5, deleted: false, row: { id: 'a' } }], hlc: 5 })
    expect(req.records[0]!.row).toEqual({ id: 'a', v: null })
  })

  const bad: Array<[string, unknown]> = [
    ['not an object', 42],
    ['no space', { partition: 0, records: [], hlc: 1 }],
    ['bad schema', { space: { ...space, schema: [{ name: '1x', type: 'utf8' }] }, partition: 0, records: [], hlc: 1 }],
    ['partition out of range', { space, partition: 4, records: [], hlc: 1 }],
    ['fractional partition', { space, partition: 0.5, records: [], hlc: 1 }],
    ['records not an array', { space, partition: 0, records: {}, hlc: 1 }],
    ['negative hlc', { space, partition: 0, records: [], hlc: -1 }],
    ['unsafe version', { space, partition: 0, records: [{ id: 'a', version: 2 ** 60, deleted: false, row: { id: 'a' } }], hlc: 1 }],
    ['id not a string', { space, partition: 0, records: [{ id: 1, version: 1, deleted: false, row: { id: 'a' } }], hlc: 1 }],
    ['deleted not boolean', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: 0, row: { id: 'a' } }], hlc: 1 }],
    ['tombstone with a row', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: true, row: { id: 'a' } }], hlc: 1 }],
    ['live record without a row', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: false, row: null }], hlc: 1 }],
    ['row failing the schema', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: false, row: { id: 'a', v: 'x' } }], hlc: 1 }],
    ['unknown column', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: false, row: { id: 'a', zz: 1 } }], hlc: 1 }],
    ['row id mismatch', { space, partition: 0, records: [{ id: 'a', version: 1, deleted: false, row: { id: 'b' } }], hlc: 1 }],
    ['too many records', { space, partition: 0, records: new Array(20_001).fill(null), hlc: 1 }],
    ['packed: not 4 entries per record', { space, partition: 0, packed: pk(['a', 1, false]), hlc: 1 }],
    ['packed: too few values', { space, partition: 0, packed: pk(['a', 1, false, ['a']]), hlc: 1 }],
    ['packed: values not an array', { space, partition: 0, packed: pk(['a', 1, false, { id: 'a', v: 1 }]), hlc: 1 }],
    ['packed: value failing the schema', { space, partition: 0, packed: pk(['a', 1, false, ['a', 'x']]), hlc: 1 }],
    ['packed: null id value', { space, partition: 0, packed: pk(['a', 1, false, [null, 1]]), hlc: 1 }],
    ['packed: row id mismatch', { space, partition: 0, packed: pk(['a', 1, false, ['b', 1]]), hlc: 1 }],
    ['packed: tombstone with values', { space, partition: 0, packed: pk(['a', 1, true, ['a', 1]]), hlc: 1 }],
    ['packed: unsafe version', { space, partition: 0, packed: pk(['a', 2 ** 60, false, ['a', 1]]), hlc: 1 }],
    ['packed: not msgpack', { space, partition: 0, packed: Uint8Array.of(0xc1), hlc: 1 }],
    ['packed: not an array', { space, partition: 0, packed: pk({ a: 1 }), hlc: 1 }],
    ['packed: an array where bytes belong', { space, partition: 0, packed: ['a', 1, false, ['a', 1]], hlc: 1 }],
    ['packed: too many records', { space, partition: 0, packed: pk(new Array(80_004).fill(null)), hlc: 1 }]
  ]
  for (const [what, body] of bad) {
    it(`refuses ${what} with BAD_REQUEST`, () => {
      let err: unknown
      try { parseWriteRequest(body) } catch (e) { err = e }
      expect((err as { code?: string }).code).toBe('BAD_REQUEST')
    })
  }

  it('accepts records packed positionally (what coordinators send) and gives the same records', () => {
    const recs = [rec('a', 5, 7), rec('b', 6, null), { id: 'c', version: 7, deleted: false, row: { id: 'c', v: null } }]
    const packed = packRecords(space, recs)
    const req = parseWriteRequest({ space, partition: 1, packed: packed.bytes, hlc: 7 })
    expect(req.records).toEqual(recs)
    expect(req.packed?.bytes).toBe(packed.bytes)
    expect(req.packed?.names).toEqual(['id', 'v'])
    // Nothing inherited: a row's prototype chain ends at an empty object with no prototype.
    const proto = Object.getPrototypeOf(req.records[0]!.row)
    expect(Object.keys(proto)).toEqual([])
    expect(Object.getPrototypeOf(proto)).toBe(null)
  })

  it('parses an identical space once, and a changed one again', () => {
    const a = parseSpace(JSON.parse(JSON.stringify(space)))
    expect(parseSpace(JSON.parse(JSON.stringify(space)))).toBe(a)
    const wider = { ...space, schema: [...space.schema, { name: 'w', type: 'utf8', nullable: true }] }
    expect(parseSpace(wider).schema.map(c => c.name)).toEqual(['id', 'v', 'w'])
    // Same columns with an extra key is not the same definition: checkSchema refuses it.
    expect(() => parseSpace({ ...wider, schema: [...wider.schema.slice(0, 2), { name: 'w', type: 'utf8', nullable: true, x: 1 }] })).toThrow(/unknown field/)
  })

  it('validates spaces and records on their own', () => {
    expect(parseSpace(space).schema[0]!.name).toBe('id')
    expect(() => parseSpace({ ...space, uid: '' })).toThrow(/uid/)
    expect(() => parseRecord({ id: 'a', version: 1, deleted: true, row: null, extra: 1 }, space, 'r')).not.toThrow()
  })
})

describe('chunkRecords', () => {
  it('bounds batches by count and bytes and keeps order', () => {
    const recs = [...Array(25).keys()].map(i => rec(`id${i}`, i + 1))
    const byCount = chunkRecords(recs, 10, 1 << 20)
    expect(byCount.map(c => c.length)).toEqual([10, 10, 5])
    const byBytes = chunkRecords(recs, 1000, 200)
    expect(byBytes.length).toBeGreaterThan(3)
    expect(byBytes.flat()).toEqual(recs)
    expect(chunkRecords([], 10, 10)).toEqual([])
  })
})

describe('writeLevel: who must acknowledge a write of one partition', () => {
  const pp = (owners: string[], ready: string[], former: string[] = []): PartitionPlacement => {
    const readReplicas = [...owners.filter(o => ready.includes(o)), ...former]
    return { space, partition: 0, owners, writeReplicas: [...owners, ...former], readReplicas, quorum: Math.floor(readReplicas.length / 2) + 1, fresh: false, returning: [] }
  }
  const plan = (p: PartitionPlacement, c: 'one' | 'quorum' | 'all'): unknown => {
    const l = writeLevel(p, c)
    return { targets: l.targets.join(), groups: l.groups.map(g => `${g.needed} of ${g.members.join()}`), needed: l.needed }
  }

  it('QUORUM with every owner ready is a majority of the owners', () => {
    expect(plan(pp(['a', 'b', 'c'], ['a', 'b', 'c']), 'quorum')).toEqual({ targets: 'a,b,c', groups: ['2 of a,b,c', '2 of a,b,c'], needed: 2 })
  })

  it('QUORUM while one owner replaces a holder needs a majority of the owners and of the ready replicas', () => {
    // a, b in both: two acks can meet both, as long as they are a and b.
    expect(plan(pp(['a', 'b', 'd'], ['a', 'b'], ['c']), 'quorum')).toEqual({ targets: 'a,b,d,c', groups: ['2 of a,b,d', '2 of a,b,c'], needed: 2 })
  })

  it('QUORUM while two owners catch up counts them: one ready copy is not a quorum of 3', () => {
    expect(plan(pp(['a', 'd', 'e'], ['a']), 'quorum')).toEqual({ targets: 'a,d,e', groups: ['2 of a,d,e', '1 of a'], needed: 2 })
  })

  it('QUORUM while every owner is new and the holders leave needs a majority of each', () => {
    expect(plan(pp(['d', 'e', 'f'], [], ['a', 'b', 'c']), 'quorum')).toEqual({ targets: 'd,e,f,a,b,c', groups: ['2 of d,e,f', '2 of a,b,c'], needed: 4 })
  })

  it('ONE and ALL count every target', () => {
    expect(plan(pp(['a', 'd', 'e'], ['a']), 'one')).toEqual({ targets: 'a,d,e', groups: ['1 of a,d,e'], needed: 1 })
    expect(plan(pp(['a', 'b', 'd'], ['a', 'b'], ['c']), 'all')).toEqual({ targets: 'a,b,d,c', groups: ['4 of a,b,d,c'], needed: 4 })
  })
})

describe('HintStore', () => {
  it('keeps hints per target in order and counts deliveries', () => {
    const h = new HintStore(10_000, 1000)
    h.add({ target: 'b', space, partition: 0, records: [rec('a', 1)], createdAt: 0, bytes: 100 })
    h.add({ target: 'b', space, partition: 1, records: [rec('c', 2), rec('d', 3)], createdAt: 1, bytes: 100 })
    const first = h.peek('b', 10)!
    expect(first.partition).toBe(0)
    h.delivered(first)
    expect(h.peek('b', 10)!.partition).toBe(1)
    expect(h.stats()).toMatchObject({ written: 2, delivered: 1, deliveredRecords: 1, pending: 1, pendingRecords: 2, pendingBytes: 100 })
  })

  it('keeps one queue per target and partition, each in order', () => {
    const h = new HintStore(10_000, 1000)
    h.add({ target: 'b', space, partition: 1, records: [rec('a', 1)], createdAt: 0, bytes: 100 })
    h.add({ target: 'b', space, partition: 0, records: [rec('c', 2)], createdAt: 1, bytes: 100 })
    h.add({ target: 'b', space, partition: 1, records: [rec('d', 3)], createdAt: 2, bytes: 100 })
    expect(h.queues('b')).toEqual(['s@1\u00001', 's@1\u00000'])
    expect(h.peek('b', 10, 's@1\u00000')!.records[0]!.id).toBe('c')
    const first = h.peek('b', 10, 's@1\u00001')!
    expect(first.records[0]!.id).toBe('a')
    h.delivered(first)
    expect(h.peek('b', 10, 's@1\u00001')!.records[0]!.id).toBe('d')
    expect(h.stats()).toMatchObject({ pending: 2, pendingBytes: 200, targets: 1 })
  })

  it('drops hints past the byte bound and past the window, counting them', () => {
    const h = new HintStore(150, 1000)
    expect(h.add({ target: 'b', space, partition: 0, records: [rec('a', 1)], createdAt: 0, bytes: 100 })).toBe(true)
    expect(h.add({ target: 'c', space, partition: 0, records: [rec('a', 1)], createdAt: 0, bytes: 100 })).toBe(false)
    expect(h.stats()).toMatchObject({ dropped: 1, droppedFull: 1 })
    expect(h.peek('b', 1001)).toBeUndefined()
    expect(h.stats()).toMatchObject({ dropped: 2, droppedExpired: 1, pending: 0, pendingBytes: 0, targets: 0 })
  })
})

describe('MemoryPartitionStore (the contract replication relies on)', () => {
  it('applies last-writer-wins by compareVersions, tombstones included', async () => {
    const s = new MemoryPartitionStore(space, 0)
    expect(await s.apply([rec('a', 5, 1), rec('b', 1, 1)])).toEqual({ applied: 2, stale: 0 })
    expect(await s.apply([rec('a', 4, 2), rec('a', 5, 1)])).toEqual({ applied: 0, stale: 2 })
    expect(await s.apply([rec('a', 5, null)])).toEqual({ applied: 1, stale: 0 }) // same version: delete wins
    expect((await s.get('a'))!.deleted).toBe(true)
    expect(compareVersions(rec('x', 2, 1), rec('x', 2, 2))).toBeLessThan(0)
    const t = new MemoryPartitionStore(space, 0)
    await t.apply([rec('x', 2, 2)])
    await t.apply([rec('x', 2, 1)])
    expect((await t.get('x'))!.row!.v).toBe(2)
  })

  it('digests are equal for equal contents in any order, incremental and recomputed alike', async () => {
    const a = new MemoryPartitionStore(space, 0)
    const b = new MemoryPartitionStore(space, 0)
    const recs = [...Array(300).keys()].map(i => rec(`k${i}`, 10 + i, i))
    await a.apply(recs)
    await b.apply([...recs].reverse().map(r => ({ ...r, version: r.version - 5 })))
    expect((await a.digest(64)).root).not.toBe((await b.digest(64)).root)
    await b.apply(recs)
    for (const n of [1, 16, 64, 100, 4096, 5000]) {
      expect((await a.digest(n)).root).toBe((await b.digest(n)).root)
      expect((await a.digest(n)).hashes.length).toBe(n)
    }
    await b.apply([rec('k7', 1000, null)])
    const da = (await a.digest(64))
    const db = (await b.digest(64))
    const diff = da.hashes.map((h, i) => h !== db.hashes[i] ? i : -1).filter(i => i >= 0)
    expect(diff.length).toBe(1)
    expect((await b.bucket(diff[0]!, 64)).map(r => r.id)).toContain('k7')
    let n = 0
    for await (const batch of a.scan({ batchRecords: 7 })) { expect(batch.length).toBeLessThanOrEqual(7); n += batch.length }
    expect(n).toBe(300)
  })
})
