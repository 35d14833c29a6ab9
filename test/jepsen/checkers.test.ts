import { describe, expect, it } from 'vitest'
import { checkHistory, checkRegister, checkRegisterWorkload, checkSet, type RegOp } from './checkers/index.js'
import { faultWindows, pairs, parseJsonl, type Op, type OpType } from './history.js'

/** A tiny history builder: op(process, type, f, key, value, time, extra). */
class H {
  readonly ops: Op[] = []
  op (process: number | string, type: OpType, f: string, workload: 'set' | 'register' | undefined, key: string | undefined, value: unknown, time: number, extra: Partial<Op> = {}): this {
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
