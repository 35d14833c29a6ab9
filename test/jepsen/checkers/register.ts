/**
 * The register checker. Keys named `sw*` have a single writer (one client process writes each,
 * every process reads); keys named `mw*` are written by everyone. Writes and reads at QUORUM; after
 * the heal every key is read at ALL ('final-read').
 *
 *  - LWW oracle (every key, gated): the final value is the write with the highest HLC version
 *    among the acknowledged and info writes: the final value must be a write that was attempted
 *    and not refused; if it is an acknowledged write, its version must be the highest acknowledged
 *    version; if it is an info write (version unknown), its version must be at least that.
 *  - Linearizability (sw keys gated; mw keys measured): Wing-Gong/Lowe per key.
 *  - Monotonic reads (reported): a QUORUM read invoked after another read of the key completed
 *    must not return an older version.
 *  - Stale reads (reported): a read returning a version older than a write acknowledged before
 *    the read was invoked.
 *
 * Versions of acknowledged writes come from the write answer's `version`; when a server does
 * not send it, from any read that returned the value (values are unique), else they stay
 * unknown and the oracle checks what it can (reported under `unversionedAcks`).
 */
import { pairs, type Op, type Pair } from '../history.js'
import { checkRegister, type KeyResult, type LinearizabilityLimits, type RegOp } from './linearizable.js'

type Val = string | number | null

export interface OracleMismatch { key: string, final: Val, finalVersion?: number, expected?: Val, expectedVersion?: number, reason: string }

export interface RegisterResult {
  valid: boolean | 'unknown'
  keys: number
  writes: { ok: number, fail: number, info: number }
  reads: { ok: number, fail: number, info: number }
  oracle: { checked: number, mismatches: OracleMismatch[], unreadable: string[], unversionedAcks: number, versionsFromWriteAnswers: number }
  singleWriter: { keys: number, linearizable: number, violations: Array<{ key: string } & KeyResult>, unknown: Array<{ key: string, reason?: string }> }
  multiWriter: { keys: number, linearizable: number, nonLinearizable: Array<{ key: string } & KeyResult>, unknown: number }
  monotonic: { violations: Array<{ key: string, earlier: number, later: number, earlierVersion: number, laterVersion: number }> }
  staleReads: Array<{ key: string, read: number, readVersion: number | null, ackedWrite: number, ackedVersion: number }>
}

const isSingleWriter = (key: string): boolean => key.startsWith('sw')

export function checkRegisterWorkload (ops: readonly Op[], limits: LinearizabilityLimits = {}): RegisterResult {
  const ps = pairs(ops).filter(p => p.invoke.workload === 'register')
  const byKey = new Map<string, Pair[]>()
  for (const p of ps) {
    const k = p.invoke.key ?? ''
    let l = byKey.get(k)
    if (l === undefined) { l = []; byKey.set(k, l) }
    l.push(p)
  }
  const res: RegisterResult = {
    valid: true,
    keys: byKey.size,
    writes: { ok: 0, fail: 0, info: 0 },
    reads: { ok: 0, fail: 0, info: 0 },
    oracle: { checked: 0, mismatches: [], unreadable: [], unversionedAcks: 0, versionsFromWriteAnswers: 0 },
    singleWriter: { keys: 0, linearizable: 0, violations: [], unknown: [] },
    multiWriter: { keys: 0, linearizable: 0, nonLinearizable: [], unknown: 0 },
    monotonic: { violations: [] },
    staleReads: []
  }
  for (const [key, list] of byKey) {
    const writes = list.filter(p => p.invoke.f === 'write')
    const reads = list.filter(p => p.invoke.f === 'read')
    for (const w of writes) res.writes[w.type]++
    for (const r of reads) res.reads[r.type]++
    // Versions: from write answers, else from reads of the value.
    const versionOf = new Map<Val, number>()
    for (const r of [...reads, ...list.filter(p => p.invoke.f === 'final-read')]) {
      if (r.type === 'ok' && typeof r.complete.version === 'number') versionOf.set(r.complete.value as Val, r.complete.version)
    }
    const writeVersion = (w: Pair): number | undefined => {
      if (w.type === 'ok' && typeof w.complete.version === 'number') return w.complete.version
      return versionOf.get(w.invoke.value as Val)
    }
    for (const w of writes) if (w.type === 'ok' && typeof w.complete.version === 'number') res.oracle.versionsFromWriteAnswers++

    // LWW oracle.
    const finals = list.filter(p => p.invoke.f === 'final-read')
    const final = finals.filter(p => p.type === 'ok').at(-1)
    if (final === undefined) {
      if (finals.length > 0) res.oracle.unreadable.push(key)
    } else {
      res.oracle.checked++
      const fv = (final.complete.value ?? null) as Val
      const fver = final.complete.version
      const acked = writes.filter(w => w.type === 'ok')
      let maxAcked: { value: Val, version: number } | undefined
      for (const w of acked) {
        const v = writeVersion(w)
        if (v === undefined) { res.oracle.unversionedAcks++; continue }
        if (maxAcked === undefined || v > maxAcked.version) maxAcked = { value: w.invoke.value as Val, version: v }
      }
      const miss = (reason: string): void => {
        res.oracle.mismatches.push({ key, final: fv, ...(fver !== undefined ? { finalVersion: fver } : {}), ...(maxAcked !== undefined ? { expected: maxAcked.value, expectedVersion: maxAcked.version } : {}), reason })
      }
      if (fv === null) {
        if (acked.length > 0) miss('absent after acknowledged writes')
      } else {
        const w = writes.find(x => x.invoke.value === fv)
        if (w === undefined) miss('final value was never written')
        else if (w.type === 'fail') miss('final value is a write that was refused')
        else if (maxAcked !== undefined && fver !== undefined && fver < maxAcked.version) miss('final version older than an acknowledged write')
        else if (w.type === 'ok' && maxAcked !== undefined && fver !== undefined && fver !== maxAcked.version) miss('final value is an acknowledged write but not the one with the highest version')
        else if (w.type === 'ok' && typeof w.complete.version === 'number' && fver !== undefined && w.complete.version !== fver) miss('final version differs from the version the write was acknowledged with')
      }
    }

    // Linearizability (ok and info writes; ok reads).
    const regOps: RegOp[] = []
    for (const p of list) {
      if (p.invoke.f === 'write' && p.type !== 'fail') regOps.push({ index: p.invoke.index, kind: 'write', value: p.invoke.value as Val, call: p.invoke.time, ret: p.type === 'ok' ? p.complete.time : Infinity })
      if (p.invoke.f === 'read' && p.type === 'ok') regOps.push({ index: p.invoke.index, kind: 'read', value: (p.complete.value ?? null) as Val, call: p.invoke.time, ret: p.complete.time })
    }
    const lin = checkRegister(regOps, null, limits)
    if (isSingleWriter(key)) {
      res.singleWriter.keys++
      if (lin.valid === true) res.singleWriter.linearizable++
      else if (lin.valid === false) res.singleWriter.violations.push({ key, ...lin })
      else res.singleWriter.unknown.push({ key, ...(lin.reason !== undefined ? { reason: lin.reason } : {}) })
    } else {
      res.multiWriter.keys++
      if (lin.valid === true) res.multiWriter.linearizable++
      else if (lin.valid === false) res.multiWriter.nonLinearizable.push({ key, ...lin })
      else res.multiWriter.unknown++
    }

    // Monotonic reads, in real time.
    const okReads = reads.filter(r => r.type === 'ok' && typeof r.complete.version === 'number')
    const byRet = [...okReads].sort((a, b) => a.complete.time - b.complete.time)
    const byCall = [...okReads].sort((a, b) => a.invoke.time - b.invoke.time)
    let j = 0
    let maxSeen: Pair | undefined
    for (const r of byCall) {
      while (j < byRet.length && byRet[j]!.complete.time < r.invoke.time) {
        const c = byRet[j]!
        if (maxSeen === undefined || c.complete.version! > maxSeen.complete.version!) maxSeen = c
        j++
      }
      if (maxSeen !== undefined && r.complete.version! < maxSeen.complete.version!) {
        res.monotonic.violations.push({ key, earlier: maxSeen.invoke.index, later: r.invoke.index, earlierVersion: maxSeen.complete.version!, laterVersion: r.complete.version! })
      }
    }

    // Stale reads: older than a write acknowledged before the read began.
    const ackedVersions = writes.filter(w => w.type === 'ok').map(w => ({ w, v: writeVersion(w) })).filter(x => x.v !== undefined).sort((a, b) => a.w.complete.time - b.w.complete.time)
    for (const r of reads.filter(x => x.type === 'ok')) {
      let newest: { w: Pair, v: number | undefined } | undefined
      for (const a of ackedVersions) {
        if (a.w.complete.time >= r.invoke.time) break
        if (newest === undefined || a.v! > newest.v!) newest = a
      }
      const rv = typeof r.complete.version === 'number' ? r.complete.version : null
      if (newest !== undefined && (rv === null || rv < newest.v!)) {
        res.staleReads.push({ key, read: r.invoke.index, readVersion: rv, ackedWrite: newest.w.invoke.index, ackedVersion: newest.v! })
      }
    }
  }
  const broken = res.oracle.mismatches.length > 0 || res.singleWriter.violations.length > 0
  res.valid = broken ? false : (res.oracle.unreadable.length > 0 || res.singleWriter.unknown.length > 0) ? 'unknown' : true
  return res
}
