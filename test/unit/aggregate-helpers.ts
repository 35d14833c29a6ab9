import { SeededRandom } from '../../src/runtime/index.js'
import type { Batch } from '../../src/query/aggregate/index.js'
import { packState, unpackState } from '../../src/query/aggregate/index.js'

export function batchOf (columns: Record<string, ArrayLike<unknown>>): Batch {
  const first = Object.values(columns)[0]
  return { length: first === undefined ? 0 : first.length, column: f => Object.hasOwn(columns, f) ? columns[f] : undefined }
}

/** Assigns every row to one of `parts` partitions at random; returns each partition's rows. */
export function splitRows (rng: SeededRandom, n: number, parts: number): Uint32Array[] {
  const lists: number[][] = Array.from({ length: parts }, () => [])
  for (let i = 0; i < n; i++) lists[rng.int(parts)]!.push(i)
  return lists.map(l => Uint32Array.from(l))
}

/** Merges states in a random tree order (pick two at random, merge, put back), shuffling operand order too. */
export function mergeRandomly<S> (rng: SeededRandom, states: S[], merge: (a: S, b: S) => S): S {
  const pool = [...states]
  while (pool.length > 1) {
    const i = rng.int(pool.length)
    const a = pool.splice(i, 1)[0]!
    const j = rng.int(pool.length)
    const b = pool.splice(j, 1)[0]!
    pool.push(rng.int(2) === 0 ? merge(a, b) : merge(b, a))
  }
  return pool[0]!
}

/** encode → msgpack → unpack → decode, as a state crossing the wire. */
export function wire<S> (agg: { encode: (s: S) => unknown, decode: (v: unknown) => S }, s: S): S {
  return agg.decode(unpackState(packState(agg.encode(s))))
}

export function normal (rng: SeededRandom): number {
  const u = 1 - rng.next(), v = rng.next()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

export function relErr (got: number, want: number): number {
  return want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want)
}
