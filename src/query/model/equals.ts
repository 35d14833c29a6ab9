import type { QueryNode } from './node.js'

/**
 * Structural equality of two trees (or any plain data): same kinds, same fields, same order of
 * list items; object key order does not matter. A plan decoded from msgpack or JSON equals the
 * one that was sent.
 */
export function planEquals (a: QueryNode | unknown, b: QueryNode | unknown): boolean {
  if (a === b) return true
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const bb = b as unknown[]
    return a.length === bb.length && a.every((x, i) => planEquals(x, bb[i]))
  }
  const ka = Object.keys(a as object).filter(k => (a as Record<string, unknown>)[k] !== undefined)
  const kb = Object.keys(b as object).filter(k => (b as Record<string, unknown>)[k] !== undefined)
  if (ka.length !== kb.length) return false
  return ka.every(k => planEquals((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}
