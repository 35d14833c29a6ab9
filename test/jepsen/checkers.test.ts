import { describe, expect, it } from 'vitest'
import { checkDisk, checkHistory, judgedOnEveryCount, checkQueries, checkRegister, checkRegisterWorkload, checkSet, expectedAnswer, type QueriesDataset, type RegOp } from './checkers/index.js'
import { faultWindows, pairs, parseJsonl, type Op, type OpType, type QueryCoverage } from './history.js'
import { QUERIES_SPACE, queriesDataset } from './workloads.js'

/** A tiny history builder: op(process, type, f, key, value, time, extra). */
class H {
  readonly ops: Op[] = []
  op (process: number | string, type: OpType, f: string, workload: 'set' | 'register' | 'queries' | undefined, key: string | undefined, value: unknown, time: number, extra: Partial<Op> = {}): this {
    this.ops.push({ index: this.ops.length, process, type, f, ...(workload !== undefined ? { workload } : {}), ...(key !== undefined ? { key } : {}), value, time, ...extra })
    return this
  }

  add (p: number, id: string, t0: number, t1: number, outcome: 'ok' | 'fail' | 'info'): this {
    return this.op(p, 'invoke', 'add', 'set', id, id, t0).op(p, outcome, 'add', 'set', id, id, t1)
  }

  final (id: string, present: boolean, t: number): this {
    return this.op('final', 'invoke', 'final-read', 'set', id, null, t).op('final', 'ok', 'final-read', 'set', id, present, t + 1)
  }

  w (p: number, key: string, v: number, t0: number, t1: number, outcome: 'ok' | 'fail' | 'info', version?: number): this {
    return this.op(p, 'invoke', 'write', 'register', key, v, t0).op(p, outcome, 'write', 'register', key, v, t1, version !== undefined ? { version } : {})
  }

  r (p: number, key: string, v: number | null, t0: number, t1: number, version?: number): this {
    return this.op(p, 'invoke', 'read', 'register', key, null, t0).op(p, 'ok', 'read', 'register', key, v, t1, version !== undefined ? { version } : {})
  }

  fr (key: string, v: number | null, version: number | undefined, t: number): this {
    return this.op('final', 'invoke', 'final-read', 'register', key, null, t).op('final', 'ok', 'final-read', 'register', key, v, t + 1, version !== undefined ? { version } : {})
  }
}

describe('set checker', () => {
  it('passes a correct history and counts recovered and never-happened info adds', () => {
    const h = new H().add(0, 'a', 0, 1, 'ok').add(1, 'b', 0, 2, 'info').add(0, 'c', 2, 3, 'fail').add(1, 'd', 3, 4, 'info')
      .final('a', true, 10).final('b', true, 10).final('c', false, 10).final('d', false, 10)
    const r = checkSet(h.ops)
    expect(r.valid).toBe(true)
    expect(r).toMatchObject({ attempted: 4, acknowledged: 1, failed: 1, info: 2, recovered: 1, infoAbsent: 1, lost: [], unexpected: [] })
  })

  it('flags a lost acknowledged add, an unexpected element and a refused add that happened', () => {
    const h = new H().add(0, 'a', 0, 1, 'ok').add(0, 'b', 1, 2, 'ok').add(0, 'c', 2, 3, 'fail')
      .final('a', true, 10).final('b', false, 10).final('c', true, 10).final('zz', true, 10)
    const r = checkSet(h.ops)
    expect(r.valid).toBe(false)
    expect(r.lost).toEqual(['b'])
    expect(r.unexpected).toEqual(['zz'])
    expect(r.failedPresent).toEqual(['c'])
    expect(checkHistory(h.ops).failures.join('\n')).toMatch(/1 acknowledged adds lost: b/)
  })

  it('flags an acknowledged remove that is undone (the id present again at the end), and does not count removed ids as lost', () => {
    const rm = (h: H, p: number, id: string, t0: number, t1: number, outcome: 'ok' | 'fail' | 'info'): H =>
      h.op(p, 'invoke', 'remove', 'set', id, id, t0).op(p, outcome, 'remove', 'set', id, id, t1)
    const h = new H().add(0, 'a', 0, 1, 'ok').add(0, 'b', 1, 2, 'ok').add(0, 'c', 2, 3, 'ok').add(0, 'd', 3, 4, 'ok').add(1, 'e', 3, 4, 'ok')
    rm(h, 0, 'a', 5, 6, 'ok')
    rm(h, 0, 'b', 6, 7, 'ok')
    rm(h, 0, 'c', 7, 8, 'info')
    rm(h, 0, 'd', 8, 9, 'fail')
    h.final('a', false, 20).final('b', true, 20).final('c', false, 20).final('d', false, 20).final('e', true, 20)
    const r = checkSet(h.ops)
    expect(r.valid).toBe(false)
    expect(r.resurrected).toEqual(['b'])
    // Removed ids are absent as they should be; a refused remove left its add, which must be there.
    expect(r.lost).toEqual(['d'])
    expect(r.removes).toEqual({ ok: 2, fail: 1, info: 1 })
    expect(checkHistory(h.ops).failures.join('\n')).toMatch(/1 acknowledged removes undone \(present again\): b/)
  })

  it('reports a stale read (a QUORUM read after the ack that did not see it) without failing', () => {
    const h = new H().add(0, 'a', 0, 1, 'ok')
      .op(1, 'invoke', 'read', 'set', 'a', null, 2).op(1, 'ok', 'read', 'set', 'a', false, 3)
      .final('a', true, 10)
    const r = checkSet(h.ops)
    expect(r.valid).toBe(true)
    expect(r.stale).toEqual([{ id: 'a', readIndex: 2, ackedAt: 1, readAt: 2 }])
  })

  it('says unknown when the final read could not read an id', () => {
    const h = new H().add(0, 'a', 0, 1, 'ok')
      .op('final', 'invoke', 'final-read', 'set', 'a', null, 5).op('final', 'info', 'final-read', 'set', 'a', null, 6)
    expect(checkSet(h.ops).valid).toBe('unknown')
  })
})

describe('linearizability (Wing-Gong/Lowe) of one register', () => {
  const op = (index: number, kind: 'write' | 'read', value: number | null, call: number, ret: number): RegOp => ({ index, kind, value, call, ret })

  it('accepts sequential and concurrent histories that have a linearization', () => {
    expect(checkRegister([op(0, 'write', 1, 0, 1), op(1, 'read', 1, 2, 3), op(2, 'write', 2, 4, 5), op(3, 'read', 2, 6, 7)]).valid).toBe(true)
    // A read concurrent with a write may see either value.
    expect(checkRegister([op(0, 'write', 1, 0, 1), op(1, 'write', 2, 2, 6), op(2, 'read', 1, 3, 4), op(3, 'read', 2, 5, 7)]).valid).toBe(true)
    // Reading absent before any write completes.
    expect(checkRegister([op(0, 'read', null, 0, 1), op(1, 'write', 1, 0, 3), op(2, 'read', 1, 2, 4)]).valid).toBe(true)
  })

  it('rejects a stale read after a completed write', () => {
    const r = checkRegister([op(0, 'write', 1, 0, 1), op(1, 'write', 2, 2, 3), op(2, 'read', 1, 4, 5)])
    expect(r.valid).toBe(false)
    expect(r.stuckAt?.blocking.map(b => b.index)).toContain(2)
  })

  it('rejects a read that goes back in time (new value, then old value, both after the writes)', () => {
    const r = checkRegister([op(0, 'write', 1, 0, 1), op(1, 'write', 2, 2, 10), op(2, 'read', 2, 3, 4), op(3, 'read', 1, 5, 6)])
    expect(r.valid).toBe(false)
  })

  it('lets an info write take effect late, or never', () => {
    const late = [op(0, 'write', 1, 0, 1), op(1, 'write', 2, 2, Infinity), op(2, 'read', 1, 3, 4), op(3, 'read', 2, 20, 21)]
    expect(checkRegister(late).valid).toBe(true)
    const never = [op(0, 'write', 1, 0, 1), op(1, 'write', 2, 2, Infinity), op(2, 'read', 1, 30, 31)]
    expect(checkRegister(never).valid).toBe(true)
    // But an info write cannot take effect before it was invoked.
    const early = [op(0, 'write', 1, 0, 1), op(1, 'read', 2, 2, 3), op(2, 'write', 2, 5, Infinity)]
    expect(checkRegister(early).valid).toBe(false)
  })

  it('answers unknown past its bounds instead of hanging', () => {
    const many: RegOp[] = []
    for (let i = 0; i < 40; i++) many.push(op(i, 'write', i, 0, 100))
    many.push(op(40, 'read', 999, 101, 102))
    const r = checkRegister(many, null, { maxStates: 5000 })
    expect(r.valid).toBe('unknown')
  })

  it('handles a long single-writer history quickly', () => {
    const ops: RegOp[] = []
    let t = 0
    for (let i = 0; i < 1000; i++) {
      ops.push(op(ops.length, 'write', i, t, t + 2))
      ops.push(op(ops.length, 'read', i, t + 1, t + 3)) // concurrent with its write
      ops.push(op(ops.length, 'read', i, t + 3, t + 4))
      t += 5
    }
    const started = Date.now()
    expect(checkRegister(ops).valid).toBe(true)
    expect(Date.now() - started).toBeLessThan(5000)
  })
})

describe('register workload checker', () => {
  it('passes a correct single-writer history whose final value is the highest acknowledged version', () => {
    const h = new H().w(0, 'sw0', 1, 0, 1, 'ok', 100).r(1, 'sw0', 1, 2, 3, 100).w(0, 'sw0', 2, 4, 5, 'ok', 200).r(1, 'sw0', 2, 6, 7, 200).fr('sw0', 2, 200, 50)
    const r = checkRegisterWorkload(h.ops)
    expect(r.valid).toBe(true)
    expect(r.singleWriter).toMatchObject({ keys: 1, linearizable: 1 })
    expect(r.oracle.mismatches).toEqual([])
  })

  it('flags a non-linearizable single-writer register (stale read)', () => {
    const h = new H().w(0, 'sw0', 1, 0, 1, 'ok', 100).w(0, 'sw0', 2, 2, 3, 'ok', 200).r(1, 'sw0', 1, 4, 5, 100).fr('sw0', 2, 200, 50)
    const r = checkRegisterWorkload(h.ops)
    expect(r.valid).toBe(false)
    expect(r.singleWriter.violations.map(v => v.key)).toEqual(['sw0'])
    expect(r.staleReads).toHaveLength(1)
    expect(checkHistory(h.ops).failures.join('\n')).toMatch(/sw0 is not linearizable/)
  })

  it('flags an LWW oracle mismatch: the final value is not the highest-version acknowledged write', () => {
    // Multi-writer: writes 1 (v300) and 2 (v200) are concurrent, so 1 must win.
    const h = new H().w(0, 'mw0', 1, 0, 5, 'ok', 300).w(1, 'mw0', 2, 0, 5, 'ok', 200).fr('mw0', 2, 200, 50)
    const r = checkRegisterWorkload(h.ops)
    expect(r.valid).toBe(false)
    expect(r.oracle.mismatches[0]).toMatchObject({ key: 'mw0', final: 2, expected: 1, expectedVersion: 300 })
  })

  it('accepts an info write as the winner when its version is at least the highest acknowledged one', () => {
    const h = new H().w(0, 'mw0', 1, 0, 5, 'ok', 300).w(1, 'mw0', 2, 0, 5, 'info').fr('mw0', 2, 400, 50)
    expect(checkRegisterWorkload(h.ops).valid).toBe(true)
    const worse = new H().w(0, 'mw0', 1, 0, 5, 'ok', 300).w(1, 'mw0', 2, 0, 5, 'info').fr('mw0', 2, 250, 50)
    expect(checkRegisterWorkload(worse.ops).oracle.mismatches[0]?.reason).toMatch(/older than an acknowledged/)
  })

  it('flags a final value that was refused, never written, or absent after acknowledged writes', () => {
    expect(checkRegisterWorkload(new H().w(0, 'mw0', 1, 0, 1, 'fail').fr('mw0', 1, 10, 5).ops).valid).toBe(false)
    expect(checkRegisterWorkload(new H().w(0, 'mw0', 1, 0, 1, 'ok', 10).fr('mw0', 7, 10, 5).ops).valid).toBe(false)
    expect(checkRegisterWorkload(new H().w(0, 'mw0', 1, 0, 1, 'ok', 10).fr('mw0', null, undefined, 5).ops).valid).toBe(false)
  })

  it('measures multi-writer anomalies and monotonic-read violations without failing on them', () => {
    // Two concurrent writers; reads flip-flop: not linearizable, but LWW never promised it.
    const h = new H().w(0, 'mw0', 1, 0, 1, 'ok', 100).w(1, 'mw0', 2, 0, 1, 'ok', 200)
      .r(2, 'mw0', 2, 2, 3, 200).r(2, 'mw0', 1, 4, 5, 100).fr('mw0', 2, 200, 50)
    const r = checkRegisterWorkload(h.ops)
    expect(r.multiWriter.nonLinearizable.map(k => k.key)).toEqual(['mw0'])
    expect(r.monotonic.violations).toHaveLength(1)
    expect(r.valid).toBe(true)
  })
})

describe('history', () => {
  it('pairs invocations with completions per process, treats a missing completion as info, and finds fault windows', () => {
    const text = [
      { index: 0, process: 0, type: 'invoke', f: 'add', workload: 'set', key: 'a', value: 'a', time: 0 },
      { index: 1, process: 'nemesis', type: 'info', f: 'start-partition', value: { grudge: {} }, time: 1 },
      { index: 2, process: 1, type: 'invoke', f: 'add', workload: 'set', key: 'b', value: 'b', time: 2 },
      { index: 3, process: 0, type: 'ok', f: 'add', workload: 'set', key: 'a', value: 'a', time: 3 },
      { index: 4, process: 'nemesis', type: 'info', f: 'stop-partition', value: null, time: 9 }
    ].map(o => JSON.stringify(o)).join('\n')
    const ops = parseJsonl(text)
    const ps = pairs(ops)
    expect(ps.map(p => [p.invoke.key, p.type])).toEqual([['a', 'ok'], ['b', 'info']])
    expect(faultWindows(ops)).toEqual([{ kind: 'partition', start: 1, end: 9, detail: { grudge: {} } }])
  })
})

describe('queries checker', () => {
  // 4 partitions; the known answers: total n 10, s 100; group a n 6 s 60, b n 4 s 40.
  const ds: QueriesDataset = {
    space: QUERIES_SPACE,
    rows: 10,
    partitions: 4,
    byPartition: [
      { partition: 0, groups: { a: { n: 2, s: 20 }, b: { n: 1, s: 10 } } },
      { partition: 1, groups: { a: { n: 1, s: 5 } } },
      { partition: 2, groups: { a: { n: 3, s: 35 }, b: { n: 1, s: 12 } } },
      { partition: 3, groups: { b: { n: 2, s: 18 } } }
    ]
  }
  const full: QueryCoverage = { total: 4, answered: 4, missing: [] }
  const without = (...ps: number[]): QueryCoverage => ({ total: 4, answered: 4 - ps.length, missing: ps.map(partition => ({ space: QUERIES_SPACE, partition, reason: 'n3: timeout' })) })

  /** A history that loaded `ds`, plus the query pairs the test adds. */
  class Q extends H {
    private t = 10
    constructor () {
      super()
      this.op('load', 'invoke', 'load', 'queries', QUERIES_SPACE, { rows: 10, partitions: 4 }, 0).op('load', 'ok', 'load', 'queries', QUERIES_SPACE, ds, 5)
    }

    ok (name: 'total' | 'groups', allowPartial: boolean, rows: unknown[], coverage: QueryCoverage, confidence: number, p = 0): this {
      const t = this.t
      this.t += 10
      return this.op(p, 'invoke', 'query', 'queries', name, { allowPartial }, t, { coordinator: 'n1' }).op(p, 'ok', 'query', 'queries', name, rows, t + 1, { coordinator: 'n1', coverage, confidence })
    }

    err (name: 'total' | 'groups', allowPartial: boolean, type: 'fail' | 'info', error: string, coverage?: QueryCoverage, p = 0): this {
      const t = this.t
      this.t += 10
      return this.op(p, 'invoke', 'query', 'queries', name, { allowPartial }, t, { coordinator: 'n2' }).op(p, type, 'query', 'queries', name, { allowPartial }, t + 1, { coordinator: 'n2', error, ...(coverage !== undefined ? { coverage } : {}) })
    }
  }
  const TOTAL = [{ n: 10, s: 100 }]
  const GROUPS = [{ g: 'a', n: 6, s: 60 }, { g: 'b', n: 4, s: 40 }]

  it('computes the known answers over all partitions and over the answered ones', () => {
    expect(expectedAnswer(ds, 'total')).toEqual(TOTAL)
    expect(expectedAnswer(ds, 'groups')).toEqual(GROUPS)
    expect(expectedAnswer(ds, 'total', new Set([1, 3]))).toEqual([{ n: 3, s: 23 }])
    expect(expectedAnswer(ds, 'groups', new Set([1]))).toEqual([{ g: 'a', n: 1, s: 5 }])
    expect(expectedAnswer(ds, 'total', new Set())).toEqual([{ n: 0, s: null }])
    // The workload's dataset: per-partition answers add up to the whole.
    const { records, dataset } = queriesDataset(1000, 8)
    expect(expectedAnswer(dataset, 'total')).toEqual([{ n: 1000, s: records.reduce((a, r) => a + r.v, 0) }])
    expect(expectedAnswer(dataset, 'groups').map(r => r.n)).toEqual([200, 200, 200, 200, 200])
  })

  it('passes correct complete and partial answers and errors, and counts them', () => {
    const h = new Q()
      .ok('total', false, TOTAL, full, 1)
      .ok('groups', true, GROUPS, full, 1)
      .ok('total', true, [{ n: 6, s: 53 }], without(2), 0.75) // partitions 0, 1, 3
      .ok('groups', true, [{ g: 'a', n: 1, s: 5 }, { g: 'b', n: 2, s: 18 }], without(0, 2), 0.5)
      .ok('total', true, [{ n: 0, s: null }], without(0, 1, 2, 3), 0)
      .err('total', false, 'fail', 'PARTIAL_RESULT', without(1))
      .err('groups', true, 'fail', 'NOT_SYNCED')
      .err('groups', false, 'info', 'TimeoutError')
    const r = checkQueries(h.ops)
    expect(r.violations).toEqual([])
    expect(r.valid).toBe(true)
    expect(r).toMatchObject({ queries: 8, ok: 5, complete: 2, partial: 3, errors: { PARTIAL_RESULT: 1, NOT_SYNCED: 1 }, noAnswer: { TimeoutError: 1 } })
    expect(r.byAllowPartial.false).toMatchObject({ ok: 1, complete: 1, partial: 0, fail: 1, info: 1 })
    expect(r.partialAnswers).toEqual({ minAnswered: 0, minConfidence: 0, missingReasons: { timeout: 7 } })
    expect(checkHistory(h.ops).valid).toBe(true)
  })

  it('flags a wrong complete count, and a complete answer with confidence below 1', () => {
    const r = checkQueries(new Q().ok('total', true, [{ n: 9, s: 100 }], full, 1).ok('groups', false, GROUPS, full, 0.99).ops)
    expect(r.valid).toBe(false)
    expect(r.violations.map(v => v.kind)).toEqual(['complete-wrong', 'complete-confidence'])
    expect(r.violations[0]).toMatchObject({ index: 3, query: 'total', allowPartial: true, coordinator: 'n1' })
    const res = checkHistory(new Q().ok('groups', true, [{ g: 'a', n: 6, s: 60 }], full, 1).ops)
    expect(res.valid).toBe(false)
    expect(res.failures.join('\n')).toMatch(/complete-wrong at #3/)
  })

  it('flags a partial answer claiming confidence 1, or a confidence above answered / total', () => {
    const r = checkQueries(new Q().ok('total', true, [{ n: 6, s: 53 }], without(2), 1).ok('total', true, [{ n: 6, s: 53 }], without(2), 0.9).ops)
    expect(r.violations.map(v => v.kind)).toEqual(['partial-confidence', 'partial-confidence'])
    expect(r.valid).toBe(false)
  })

  it('flags a partial answer to an allowPartial false query, and PARTIAL_RESULT to an allowPartial true one', () => {
    const r = checkQueries(new Q().ok('total', false, [{ n: 6, s: 53 }], without(2), 0.75).err('total', true, 'fail', 'PARTIAL_RESULT', without(2)).ops)
    expect(r.violations.map(v => v.kind)).toEqual(['partial-with-allowPartial-false', 'partial-error-with-allowPartial'])
    expect(r.valid).toBe(false)
  })

  it('flags partial answers above the known counts, inexact over the answered partitions, or with inconsistent coverage', () => {
    const above = checkQueries(new Q().ok('groups', true, [{ g: 'a', n: 7, s: 60 }, { g: 'b', n: 4, s: 40 }], without(3), 0.75).ops)
    expect(above.violations.map(v => v.kind)).toEqual(['partial-above-known', 'partial-inexact'])
    const unknownGroup = checkQueries(new Q().ok('groups', true, [{ g: 'z', n: 1, s: 1 }], without(3), 0.75).ops)
    expect(unknownGroup.violations.map(v => v.kind)).toContain('partial-above-known')
    // Plausible (below the known answer) but not what partitions 0, 1, 3 hold.
    const inexact = checkQueries(new Q().ok('total', true, [{ n: 6, s: 52 }], without(2), 0.75).ops)
    expect(inexact.violations.map(v => v.kind)).toEqual(['partial-inexact'])
    const incoherent = checkQueries(new Q()
      .ok('total', true, [{ n: 6, s: 53 }], { total: 4, answered: 3, missing: [] }, 0.75)
      .ok('total', true, [{ n: 6, s: 53 }], { total: 4, answered: 4, missing: without(2).missing }, 0.75)
      .ok('total', true, [{ n: 10, s: 100 }], { total: 3, answered: 3, missing: [] }, 1).ops)
    expect(incoherent.violations.map(v => v.kind)).toEqual(['partial-coverage', 'partial-coverage', 'coverage-total'])
  })

  it('says unknown without a completed load, and judges the queries after the heal too', () => {
    const noLoad = new H().op(0, 'invoke', 'query', 'queries', 'total', { allowPartial: true }, 1).op(0, 'ok', 'query', 'queries', 'total', TOTAL, 2, { coverage: full, confidence: 1 })
    expect(checkQueries(noLoad.ops).valid).toBe('unknown')
    const h = new Q()
      .op('final-q0', 'invoke', 'final-query', 'queries', 'total', { allowPartial: false }, 100, { coordinator: 'n1' })
      .op('final-q0', 'fail', 'final-query', 'queries', 'total', { allowPartial: false }, 101, { coordinator: 'n1', error: 'NOT_SYNCED' })
      .op('final-q0', 'invoke', 'final-query', 'queries', 'total', { allowPartial: false }, 102, { coordinator: 'n1' })
      .op('final-q0', 'ok', 'final-query', 'queries', 'total', [{ n: 10, s: 99 }], 103, { coordinator: 'n1', coverage: full, confidence: 1 })
      .op('final-q1', 'invoke', 'final-query', 'queries', 'total', { allowPartial: false }, 100, { coordinator: 'n2' })
      .op('final-q1', 'fail', 'final-query', 'queries', 'total', { allowPartial: false }, 101, { coordinator: 'n2', error: 'PARTIAL_RESULT', coverage: without(1) })
    const r = checkQueries(h.ops)
    expect(r.queries).toBe(0)
    expect(r.afterHeal).toMatchObject({ queries: 3, complete: 1, errors: { NOT_SYNCED: 1, PARTIAL_RESULT: 1 }, peersWithoutCompleteAnswer: ['n2'] })
    expect(r.violations.map(v => v.kind)).toEqual(['complete-wrong'])
  })
})

describe('disk checker', () => {
  /** A disk window on n3 from 1000 to 5200 ms (full from 1100): fill, samples, stop, heal samples; `opts` breaks parts of it. */
  const diskRun = (opts: { mode?: 'fill' | 'fsync', noticed?: boolean, code?: string, pidAfter?: number, healedAt?: number | null, greenAt?: number | null, free?: number, fillError?: string, faultError?: string, injected?: number | null, givenUp?: boolean, nextFaultAt?: number, lose?: boolean, unread?: boolean, noAcks?: boolean, stopAt?: number } = {}): H => {
    const mode = opts.mode ?? 'fill'
    const code = opts.code ?? (mode === 'fill' ? 'ENOSPC' : 'EIO')
    const n = (f: string, value: unknown, t: number): void => { h.op('nemesis', 'info', f, undefined, undefined, value, t) }
    const sample = (phase: string, status: string, failed: string[], t: number, pid = 100, givenUp?: string[]): void => { n('disk-health', { node: 'n3', phase, status, failed, ...(givenUp !== undefined ? { givenUp } : {}), pid, running: true }, t) }
    const h = new H()
    h.add(0, 'a', 100, 200, 'ok')
    n('start-disk', { mode, nodes: ['n3'], healBoundMs: 10_000 }, 1000)
    sample('before', 'green', [], 1010)
    if (mode === 'fill') n('disk-fill', opts.fillError !== undefined ? { node: 'n3', ballastBytes: 0, freeBytes: 1 << 20, usedBytes: 1 << 19, sizeBytes: 32 << 20, error: opts.fillError } : { node: 'n3', ballastBytes: 31 << 20, freeBytes: opts.free ?? 0, usedBytes: 1 << 19, sizeBytes: 32 << 20 }, 1100)
    else n('disk-fault', opts.faultError !== undefined ? { node: 'n3', rules: [], error: opts.faultError } : { node: 'n3', rules: [{ op: 'sync', code: 'EIO', path: 'wal-' }], injectedBefore: 0 }, 1100)
    sample('window', 'green', [], 1500)
    const givenUp = opts.givenUp === true ? ['jepsen_set/2'] : undefined
    sample('window', opts.noticed === false ? 'green' : 'yellow', opts.noticed === false ? [] : [`jepsen_set/2 ${code}`], 2000, 100, givenUp)
    if (opts.noAcks !== true) h.add(0, 'b', 2100, 2200, 'ok').add(1, 'c', 2300, 2400, 'ok')
    h.w(2, 'sw0', 7, 2500, 2600, 'ok', 77)
    n('stop-disk', mode === 'fill' ? { mode, nodes: ['n3'], topUps: { n3: { count: 1, bytes: 4096 } } } : { mode, nodes: ['n3'], injected: { n3: opts.injected === undefined ? 12 : opts.injected } }, opts.stopAt ?? 5200)
    if (opts.nextFaultAt !== undefined) n('start-partition', { shape: 'isolate' }, opts.nextFaultAt)
    const healedAt = opts.healedAt === undefined ? 6000 : opts.healedAt
    const greenAt = opts.greenAt === undefined ? 8000 : opts.greenAt
    sample('heal', 'yellow', [`jepsen_set/2 ${code}`], 5500, opts.pidAfter, givenUp)
    if (healedAt !== null) sample('heal', 'yellow', [], healedAt, opts.pidAfter)
    if (greenAt !== null) sample('heal', 'green', [], greenAt, opts.pidAfter)
    n('heal', null, 16_000)
    h.final('a', true, 17_000)
    if (opts.unread !== true) h.final('b', opts.lose !== true, 17_000)
    h.final('c', true, 17_000)
    return h
  }

  it('passes a window where the full peer says so, stays up, heals and turns green within the bound, with everything acknowledged meanwhile read at ALL', () => {
    const r = checkDisk(diskRun().ops)
    expect(r.valid).toBe(true)
    expect(r.violations).toEqual([])
    const w = r.windows[0]!
    expect(w).toMatchObject({ mode: 'fill', start: 1000, end: 5200, healBoundMs: 10_000, acknowledged: { set: 2, register: 1 }, readAtAll: { acknowledged: 2, present: 2, removed: 0, absent: [], unread: [] }, verdict: true })
    expect(w.nodes[0]).toMatchObject({ node: 'n3', mode: 'fill', before: 'green', windowSamples: 2, notGreen: 1, namingEnospc: 1, namingEio: 0, noticedAfterMs: 1000, failedPartitions: ['jepsen_set/2 ENOSPC'], faultForMs: 4100, tooShort: false, fault: null, injected: null, givenUp: [], failuresGoneAfterMs: 800, greenAfterMs: 2800, masked: false, pids: [100], down: 0, topUps: { count: 1, bytes: 4096 } })
    expect(w.nodes[0]!.fill).toMatchObject({ ballastBytes: 31 << 20, freeBytes: 0 })
    // checkHistory runs it on any history with a disk window, and only then.
    expect(checkHistory(diskRun().ops).disk?.valid).toBe(true)
    expect(checkHistory(new H().add(0, 'a', 0, 1, 'ok').final('a', true, 2).ops).disk).toBeUndefined()
  })

  it('fails a full peer that stays green, one restarted, one still failed or not green after the bound, and a window without acknowledged writes', () => {
    const quiet = checkDisk(diskRun({ noticed: false }).ops)
    expect(quiet.valid).toBe(false)
    expect(quiet.violations.join('\n')).toMatch(/n3 never said its disk was full/)
    const restarted = checkDisk(diskRun({ pidAfter: 200 }).ops)
    expect(restarted.violations.join('\n')).toMatch(/n3 was restarted or replaced: pids 100, 200/)
    const stuck = checkDisk(diskRun({ healedAt: null, greenAt: null }).ops)
    expect(stuck.violations.join('\n')).toMatch(/n3 still named failed partitions 10000 ms after the ballast was deleted \(jepsen_set\/2 ENOSPC\)$/m)
    const late = checkDisk(diskRun({ greenAt: 15_500 }).ops)
    expect(late.violations.join('\n')).toMatch(/n3 not green within 10000 ms/)
    expect(late.windows[0]!.nodes[0]!.greenAfterMs).toBe(10_300)
    const noAcks = checkDisk(diskRun({ noAcks: true }).ops)
    expect(noAcks.violations.join('\n')).toMatch(/no set add was acknowledged while the disk was full/)
    expect(checkHistory(diskRun({ noticed: false }).ops).failures.join('\n')).toMatch(/^disk: disk window 1\.0-5\.2 s: n3 never said/m)
  })

  it('does not judge what follows the next fault window\'s start (masked), nor a disk full too briefly to be met', () => {
    const masked = checkDisk(diskRun({ greenAt: null, nextFaultAt: 7000 }).ops)
    expect(masked.valid).toBe(true)
    expect(masked.windows[0]!.nodes[0]!.masked).toBe(true)
    expect(checkDisk(diskRun({ greenAt: null, healedAt: null, nextFaultAt: 7000 }).ops).windows[0]!.nodes[0]!.masked).toBe(true)
    // The next fault killed and restarted it: those samples are that fault's business.
    const killed = checkDisk(diskRun({ pidAfter: 200, nextFaultAt: 5300 }).ops)
    expect(killed.valid).toBe(true)
    expect(killed.windows[0]!.nodes[0]).toMatchObject({ pids: [100], masked: true })
    // A next fault long after the bound changes nothing.
    expect(checkDisk(diskRun({ greenAt: null, nextFaultAt: 30_000 }).ops).valid).toBe(false)
    // Full for 2.9 s (a window started late): not held to saying so; still to the rest.
    const brief = checkDisk(diskRun({ noticed: false, stopAt: 4000 }).ops)
    expect(brief.valid).toBe(true)
    expect(brief.windows[0]!.nodes[0]).toMatchObject({ faultForMs: 2900, tooShort: true, noticedAfterMs: null })
    expect(checkDisk(diskRun({ noticed: false, stopAt: 4000, pidAfter: 300 }).ops).valid).toBe(false)
  })

  it('flags an acknowledged write of the window absent at ALL, and says unknown when one was not read or the disk was not filled', () => {
    const lost = checkDisk(diskRun({ lose: true }).ops)
    expect(lost.valid).toBe(false)
    expect(lost.windows[0]!.readAtAll.absent).toEqual(['b'])
    const unread = checkDisk(diskRun({ unread: true }).ops)
    expect(unread.valid).toBe('unknown')
    expect(unread.unknown.join('\n')).toMatch(/1 set adds acknowledged during the window were never read at ALL/)
    const unfilled = checkDisk(diskRun({ fillError: 'not a tmpfs' }).ops)
    expect(unfilled.valid).toBe('unknown')
    expect(unfilled.unknown.join('\n')).toMatch(/n3's disk was not filled \(not a tmpfs\)/)
    expect(checkDisk(diskRun({ free: 1 << 20 }).ops).unknown.join('\n')).toMatch(/kept 1048576 B free/)
  })
  it('fsync: passes a window where the peer names EIO partitions, stays up, is rebuilt and green within the bound, with everything acknowledged meanwhile read at ALL', () => {
    const r = checkDisk(diskRun({ mode: 'fsync' }).ops)
    expect(r.violations).toEqual([])
    expect(r.valid).toBe(true)
    const w = r.windows[0]!
    expect(w).toMatchObject({ mode: 'fsync', acknowledged: { set: 2, register: 1 }, readAtAll: { acknowledged: 2, present: 2, absent: [], unread: [] }, verdict: true })
    expect(w.nodes[0]).toMatchObject({ node: 'n3', mode: 'fsync', fill: null, topUps: null, fault: { rules: [{ op: 'sync', code: 'EIO', path: 'wal-' }], injectedBefore: 0 }, injected: 12, namingEio: 1, namingEnospc: 0, noticedAfterMs: 1000, failedPartitions: ['jepsen_set/2 EIO'], faultForMs: 4100, failuresGoneAfterMs: 800, greenAfterMs: 2800, masked: false, pids: [100] })
    expect(judgedOnEveryCount(w.nodes[0]!)).toBe(true)
    expect(checkHistory(diskRun({ mode: 'fsync' }).ops).disk?.valid).toBe(true)
  })

  it('fsync: fails a peer that never names an EIO partition (an ENOSPC one does not count), one restarted, one still failed or not green after the bound (naming partitions it gave up rebuilding), and a window without acknowledged writes', () => {
    const quiet = checkDisk(diskRun({ mode: 'fsync', noticed: false }).ops)
    expect(quiet.valid).toBe(false)
    expect(quiet.violations.join('\n')).toMatch(/n3 never said its disk failed: no \/health sample during the window was not green naming an EIO partition, 12 fsyncs failed/)
    expect(judgedOnEveryCount(quiet.windows[0]!.nodes[0]!)).toBe(false)
    expect(checkDisk(diskRun({ mode: 'fsync', code: 'ENOSPC' }).ops).violations.join('\n')).toMatch(/never said its disk failed/)
    // An EIO partition in a fill window does not say the disk is full either.
    expect(checkDisk(diskRun({ code: 'EIO' }).ops).violations.join('\n')).toMatch(/never said its disk was full/)
    expect(checkDisk(diskRun({ mode: 'fsync', pidAfter: 200 }).ops).violations.join('\n')).toMatch(/n3 was restarted or replaced: pids 100, 200/)
    const stuck = checkDisk(diskRun({ mode: 'fsync', healedAt: null, greenAt: null, givenUp: true }).ops)
    expect(stuck.valid).toBe(false)
    expect(stuck.windows[0]!.nodes[0]!.givenUp).toEqual(['jepsen_set/2'])
    expect(stuck.violations.join('\n')).toMatch(/n3 still named failed partitions 10000 ms after the fault rules were cleared \(jepsen_set\/2 EIO\); it gave up rebuilding jepsen_set\/2 \(3 rebuilds in a row failed again: out of service until a restart\)/)
    expect(checkDisk(diskRun({ mode: 'fsync', greenAt: 15_500 }).ops).violations.join('\n')).toMatch(/n3 not green within 10000 ms of the end of its fault \(the fault rules were cleared; last: green\)/)
    expect(checkDisk(diskRun({ mode: 'fsync', noAcks: true }).ops).violations.join('\n')).toMatch(/no set add was acknowledged while fsync failed/)
    expect(checkDisk(diskRun({ mode: 'fsync', lose: true }).ops).windows[0]!.readAtAll.absent).toEqual(['b'])
    // Masked and too short as for fill.
    expect(checkDisk(diskRun({ mode: 'fsync', greenAt: null, nextFaultAt: 7000 }).ops)).toMatchObject({ valid: true, windows: [{ nodes: [{ masked: true }] }] })
    expect(checkDisk(diskRun({ mode: 'fsync', noticed: false, stopAt: 4000 }).ops)).toMatchObject({ valid: true, windows: [{ nodes: [{ tooShort: true }] }] })
  })

  it('fsync: unknown when the fault rules were not set, or failed no fsync and nothing was noticed', () => {
    const unset = checkDisk(diskRun({ mode: 'fsync', faultError: 'faults on n3: 404' }).ops)
    expect(unset.valid).toBe('unknown')
    expect(unset.unknown.join('\n')).toMatch(/n3's fault rules were not set \(faults on n3: 404\)/)
    const idle = checkDisk(diskRun({ mode: 'fsync', noticed: false, injected: 0 }).ops)
    expect(idle.valid).toBe('unknown')
    expect(idle.unknown.join('\n')).toMatch(/n3's fault rules failed no fsync during the window/)
    // Failures counted but not known (the clearing answer lost): held to noticing.
    expect(checkDisk(diskRun({ mode: 'fsync', noticed: false, injected: null }).ops).valid).toBe(false)
  })
})
