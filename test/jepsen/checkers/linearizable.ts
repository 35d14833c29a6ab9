/**
 * Linearizability of a single register, by the Wing & Gong search with Lowe's memoization (the
 * algorithm Porcupine implements): depth-first, at each step linearize one pending operation
 * that no other pending operation's completion precedes, remembering every (set of linearized
 * operations, register value) already explored so that no configuration is searched twice.
 *
 * Operations whose outcome is unknown (info) have no completion: they may take effect at any
 * point after their invocation, or never. Failed operations did not happen and are left out.
 * Reads that matched the current value are linearized greedily (always safe for a register:
 * a read changes nothing, and placing it early only relaxes the others' constraints).
 *
 * The search is bounded (operations per key, explored configurations, wall time); past a bound
 * the answer is 'unknown', never a guess.
 */

export interface RegOp {
  /** History index of the invocation, for reports. */
  index: number
  kind: 'write' | 'read'
  /** Written value, or the value read (null: absent). */
  value: string | number | null
  call: number
  /** Completion time; Infinity for an operation whose outcome is unknown. */
  ret: number
}

export interface LinearizabilityLimits {
  maxOps?: number
  maxStates?: number
  maxMs?: number
}

export interface KeyResult {
  valid: boolean | 'unknown'
  ops: number
  states: number
  /** For a violation: how far the longest linearization got, and the operations that could not follow it. */
  linearizedPrefix?: number
  stuckAt?: { value: string | number | null, blocking: RegOp[] }
  reason?: string
}

export function checkRegister (input: readonly RegOp[], initial: string | number | null = null, limits: LinearizabilityLimits = {}): KeyResult {
  const maxOps = limits.maxOps ?? 4000
  const maxStates = limits.maxStates ?? 2_000_000
  const deadline = performance.now() + (limits.maxMs ?? 10_000)
  const ops = [...input].sort((a, b) => a.call - b.call || a.ret - b.ret)
  const n = ops.length
  if (n > maxOps) return { valid: 'unknown', ops: n, states: 0, reason: `more than ${maxOps} operations on this key` }
  const done = new Uint8Array(n)
  const bits = ops.map((_, i) => 1n << BigInt(i))
  let mask = 0n
  let finiteLeft = ops.filter(o => o.ret !== Infinity).length
  const seen = new Set<string>()
  let states = 0
  let best = -1
  let bestValue: string | number | null = initial
  let bestBlocking: RegOp[] = []
  let depth = 0
  let aborted: string | undefined

  const minPendingRet = (): number => {
    let m = Infinity
    for (let i = 0; i < n; i++) if (done[i] === 0 && ops[i]!.ret < m) m = ops[i]!.ret
    return m
  }
  const mark = (i: number): void => { done[i] = 1; mask ^= bits[i]!; depth++; if (ops[i]!.ret !== Infinity) finiteLeft-- }
  const unmark = (i: number): void => { done[i] = 0; mask ^= bits[i]!; depth--; if (ops[i]!.ret !== Infinity) finiteLeft++ }

  const search = (value: string | number | null): boolean => {
    if (aborted !== undefined) return false
    if (++states > maxStates) { aborted = `more than ${maxStates} configurations explored`; return false }
    if ((states & 1023) === 0 && performance.now() > deadline) { aborted = 'time limit'; return false }
    // Greedy: pending reads of the current value that may go now.
    const greedy: number[] = []
    for (;;) {
      const limit = minPendingRet()
      let took = false
      for (let i = 0; i < n && ops[i]!.call <= limit; i++) {
        const o = ops[i]!
        if (done[i] === 0 && o.kind === 'read' && o.value === value) { mark(i); greedy.push(i); took = true; break }
      }
      if (!took) break
    }
    let ok = false
    if (finiteLeft === 0) {
      ok = true
    } else {
      const limit = minPendingRet()
      for (let i = 0; i < n && ops[i]!.call <= limit && !ok; i++) {
        const o = ops[i]!
        if (done[i] !== 0) continue
        if (o.kind === 'read') continue // a read of another value cannot go now
        mark(i)
        const key = `${mask.toString(36)}|${String(o.value)}`
        if (!seen.has(key)) {
          seen.add(key)
          if (search(o.value)) ok = true
        }
        if (!ok) unmark(i)
      }
      if (!ok && depth > best) {
        best = depth
        bestValue = value
        bestBlocking = ops.filter((o, i) => done[i] === 0 && o.call <= limit)
      }
    }
    if (!ok) for (let j = greedy.length - 1; j >= 0; j--) unmark(greedy[j]!)
    return ok
  }

  const ok = search(initial)
  if (ok) return { valid: true, ops: n, states }
  if (aborted !== undefined) return { valid: 'unknown', ops: n, states, reason: aborted }
  return { valid: false, ops: n, states, linearizedPrefix: best, stuckAt: { value: bestValue, blocking: bestBlocking.slice(0, 8) } }
}
