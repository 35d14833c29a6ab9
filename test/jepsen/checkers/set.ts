/**
 * The set checker. Clients add unique ids at QUORUM (and now and then read one back at QUORUM,
 * or remove one they added: 'remove', a delete at QUORUM); after the heal every attempted id is
 * read at ALL ('final-read', value true when present). An id is added once and removed at most
 * once, after its add was acknowledged.
 *
 *   lost         acknowledged (ok), never removed (no ok or info remove), absent from the final read   must be 0
 *   resurrected  removed (remove ok) yet present in the final read: a delete undone        must be 0
 *   unexpected   present but never attempted                               must be 0
 *   failedPresent  refused (fail) yet present: "fail" promised it did not happen   must be 0
 *   unreadable   attempted ids the final read could not answer             must be 0 (else unknown)
 *   recovered    info adds (outcome unknown) that are present               reported
 *   stale        QUORUM reads, invoked after the add was acknowledged, that did not see it  reported
 */
import { pairs, type Op } from '../history.js'

export interface SetResult {
  valid: boolean | 'unknown'
  attempted: number
  acknowledged: number
  failed: number
  info: number
  present: number
  lost: string[]
  /** Ids whose remove was acknowledged, present in the final read (a delete undone, e.g. by a tombstone purged too early). */
  resurrected: string[]
  /** Removes acknowledged, refused (fail) and of unknown outcome (info). */
  removes: { ok: number, fail: number, info: number }
  unexpected: string[]
  failedPresent: string[]
  unreadable: string[]
  recovered: number
  /** info adds absent from the final read (never happened). */
  infoAbsent: number
  reads: number
  stale: Array<{ id: string, readIndex: number, ackedAt: number, readAt: number }>
}

export function checkSet (ops: readonly Op[]): SetResult {
  const ps = pairs(ops).filter(p => p.invoke.workload === 'set')
  const adds = new Map<string, 'ok' | 'fail' | 'info'>()
  const removes = new Map<string, 'ok' | 'fail' | 'info'>()
  const ackedAt = new Map<string, number>()
  const final = new Map<string, boolean | undefined>()
  const reads: Array<{ id: string, present: boolean, invokedAt: number, index: number }> = []
  for (const p of ps) {
    const id = p.invoke.key ?? String(p.invoke.value)
    if (p.invoke.f === 'add') {
      adds.set(id, p.type)
      if (p.type === 'ok') ackedAt.set(id, p.complete.time)
    } else if (p.invoke.f === 'remove') {
      removes.set(id, p.type)
    } else if (p.invoke.f === 'final-read') {
      // A later successful final read of the same id supersedes an earlier failed attempt.
      if (p.type === 'ok') final.set(id, p.complete.value === true)
      else if (!final.has(id)) final.set(id, undefined)
    } else if (p.invoke.f === 'read' && p.type === 'ok') {
      reads.push({ id, present: p.complete.value === true, invokedAt: p.invoke.time, index: p.invoke.index })
    }
  }
  const lost: string[] = []
  const failedPresent: string[] = []
  const unreadable: string[] = []
  let recovered = 0
  let infoAbsent = 0
  let acknowledged = 0
  let failed = 0
  let info = 0
  for (const [id, outcome] of adds) {
    if (outcome === 'ok') acknowledged++
    else if (outcome === 'fail') failed++
    else info++
    const seen = final.get(id)
    if (seen === undefined) { unreadable.push(id); continue }
    const removed = removes.get(id)
    if (outcome === 'ok' && !seen && (removed === undefined || removed === 'fail')) lost.push(id)
    if (outcome === 'fail' && seen) failedPresent.push(id)
    if (outcome === 'info') { if (seen) recovered++; else infoAbsent++ }
  }
  const unexpected = [...final].filter(([id, seen]) => seen === true && !adds.has(id)).map(([id]) => id)
  const resurrected = [...removes].filter(([id, outcome]) => outcome === 'ok' && final.get(id) === true).map(([id]) => id)
  const removeCounts = { ok: 0, fail: 0, info: 0 }
  for (const outcome of removes.values()) removeCounts[outcome]++
  const stale = reads
    .filter(r => !r.present && ackedAt.has(r.id) && ackedAt.get(r.id)! < r.invokedAt && !removes.has(r.id))
    .map(r => ({ id: r.id, readIndex: r.index, ackedAt: ackedAt.get(r.id)!, readAt: r.invokedAt }))
  const present = [...final.values()].filter(v => v === true).length
  const broken = lost.length > 0 || resurrected.length > 0 || unexpected.length > 0 || failedPresent.length > 0
  return {
    valid: broken ? false : unreadable.length > 0 ? 'unknown' : true,
    attempted: adds.size,
    acknowledged,
    failed,
    info,
    present,
    lost,
    resurrected,
    removes: removeCounts,
    unexpected,
    failedPresent,
    unreadable,
    recovered,
    infoAbsent,
    reads: reads.length,
    stale
  }
}
