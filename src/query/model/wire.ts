import { freeze } from './freeze.js'
import { EXPR_KINDS, PLAN_KINDS } from './node.js'
import type { PlanNode } from './node.js'

/** Deepest tree a peer accepts; far beyond any real query, short of a stack overflow. */
export const MAX_PLAN_DEPTH = 256

/** A plan received from a peer does not have the shape of a plan. */
export class PlanDecodeError extends Error {
  override name = 'PlanDecodeError'
  constructor (readonly path: string, message: string) { super(`${path}: ${message}`) }
}

/**
 * Checks a plan decoded from msgpack or JSON (a root of a plan kind, only known kinds below,
 * bounded depth) and freezes it. Field-level checks are validatePlan's job.
 */
export function decodePlan (value: unknown): PlanNode {
  const rec = (v: unknown, path: string, depth: number): void => {
    if (depth > MAX_PLAN_DEPTH) throw new PlanDecodeError(path, `deeper than ${MAX_PLAN_DEPTH}`)
    if (v === null || typeof v !== 'object') return
    if (Array.isArray(v)) { v.forEach((x, i) => rec(x, `${path}[${i}]`, depth + 1)); return }
    const kind = (v as { kind?: unknown }).kind
    if (kind !== undefined && !(typeof kind === 'string' && (PLAN_KINDS.has(kind) || EXPR_KINDS.has(kind)))) throw new PlanDecodeError(path, `unknown node kind ${JSON.stringify(kind)}`)
    for (const [k, x] of Object.entries(v)) rec(x, `${path}.${k}`, depth + 1)
  }
  const kind = (value as { kind?: unknown } | null)?.kind
  if (typeof kind !== 'string' || !PLAN_KINDS.has(kind)) throw new PlanDecodeError('plan', 'not a plan node')
  rec(value, 'plan', 0)
  return freeze(value as PlanNode)
}
