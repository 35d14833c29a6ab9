import { freeze } from './freeze.js'
import { EXPR_KINDS, PLAN_KINDS } from './node.js'
import type { PlanNode } from './node.js'

/**
 * Deepest tree a peer accepts (nesting of the plan as data: each node, field and list is a
 * level, so `a AND b AND ...` of n terms is about n levels); far beyond any real query, short of
 * a stack overflow in the recursive code that reads a plan.
 */
export const MAX_PLAN_DEPTH = 256
/** Most nodes in one plan (an IN list of n values is n + 2 nodes): keeps a fragment well inside one network frame. */
export const MAX_PLAN_NODES = 100_000

/** A plan received from a peer does not have the shape of a plan. */
export class PlanDecodeError extends Error {
  override name = 'PlanDecodeError'
  constructor (readonly path: string, message: string) { super(`${path}: ${message}`) }
}

/** A plan over MAX_PLAN_DEPTH or MAX_PLAN_NODES: `limit` names which. */
export class PlanLimitError extends PlanDecodeError {
  override name = 'PlanLimitError'
  /** `reason` is the message without the path (which, for a deep plan, is as long as the plan is deep). */
  constructor (path: string, readonly limit: 'MAX_PLAN_DEPTH' | 'MAX_PLAN_NODES', readonly reason: string) { super(path.length > 200 ? `${path.slice(0, 200)}…` : path, reason) }
}

/**
 * Throws PlanLimitError when a plan (or anything plan-shaped: a node tree as data) is deeper or
 * larger than every peer accepts, and PlanDecodeError at a node of an unknown kind. Iterative, so
 * that checking a tree too deep to recurse over cannot itself overflow the stack. The coordinator
 * runs this on every query as it enters, and each data peer on every plan it receives: the same
 * check with the same numbers, so a plan the coordinator accepts is never refused downstream.
 */
export function checkPlanLimits (value: unknown): void {
  const stack: Array<{ v: unknown, path: string | (() => string), depth: number }> = [{ v: value, path: 'plan', depth: 0 }]
  const pathOf = (p: string | (() => string)): string => typeof p === 'string' ? p : p()
  let nodes = 0
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop()!
    if (depth > MAX_PLAN_DEPTH) throw new PlanLimitError(pathOf(path), 'MAX_PLAN_DEPTH', `the query nests deeper than ${MAX_PLAN_DEPTH} levels (MAX_PLAN_DEPTH; each term of a chain of AND, OR or arithmetic is a level)`)
    if (v === null || typeof v !== 'object') continue
    if (ArrayBuffer.isView(v)) continue
    // Paths are built only when one is reported: most plans are checked and never fail.
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: () => `${pathOf(path)}[${i}]`, depth: depth + 1 })
      continue
    }
    const kind = (v as { kind?: unknown }).kind
    if (kind !== undefined) {
      if (!(typeof kind === 'string' && (PLAN_KINDS.has(kind) || EXPR_KINDS.has(kind)))) throw new PlanDecodeError(pathOf(path), `unknown node kind ${JSON.stringify(kind)}`)
      if (++nodes > MAX_PLAN_NODES) throw new PlanLimitError(pathOf(path), 'MAX_PLAN_NODES', `the query has more than ${MAX_PLAN_NODES} terms (MAX_PLAN_NODES; each column, value and operator is one)`)
    }
    for (const k of Object.keys(v)) stack.push({ v: (v as Record<string, unknown>)[k], path: () => `${pathOf(path)}.${k}`, depth: depth + 1 })
  }
}

/**
 * Checks a plan decoded from msgpack or JSON (a root of a plan kind, only known kinds below,
 * within MAX_PLAN_DEPTH and MAX_PLAN_NODES) and freezes it. Field-level checks are validatePlan's job.
 */
export function decodePlan (value: unknown): PlanNode {
  const kind = (value as { kind?: unknown } | null)?.kind
  if (typeof kind !== 'string' || !PLAN_KINDS.has(kind)) throw new PlanDecodeError('plan', 'not a plan node')
  checkPlanLimits(value)
  return freeze(value as PlanNode)
}
