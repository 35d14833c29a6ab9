/**
 * Recall: the K rows whose vector column is most similar to a query vector. Scores are computed
 * in one loop per batch over the flat float32 array; a binary min-heap of K (score, row) pairs
 * keeps the best seen so far (keepBest, which completion uses too), so memory is O(K) whatever
 * the number of rows. Cosine and dot: higher is closer; L2: the Euclidean distance, lower is closer.
 */
import assert from 'node:assert'
import { gatherBatch, type ColumnBatch, type ColumnVector } from '../../columnar/index.js'
import type { SortKey, TopKNode, VectorMetric } from '../model/index.js'
import { SCORE_COLUMN, column } from '../model/index.js'
import { QueryExecError, type MemoryBudget } from './errors.js'
import { batchBytes, concatBatches, sortAndSlice } from './rows.js'

/** Scores every row of a vector column against `q`; NaN for NULL vectors. */
export function scoreVectors (v: ColumnVector, q: Float32Array | readonly number[], metric: VectorMetric): Float64Array {
  if (v.tag !== 'vec') throw new QueryExecError('UNSUPPORTED', 'top-K needs a vector column')
  const d = v.dim
  if (q.length !== d) throw new QueryExecError('BAD_FRAGMENT', `query vector has ${q.length} dimensions, the column ${d}`)
  const n = v.valid.length
  const out = new Float64Array(n)
  const x = v.values
  let qn = 0
  for (let j = 0; j < d; j++) qn += q[j]! * q[j]!
  qn = Math.sqrt(qn)
  for (let i = 0; i < n; i++) {
    if (v.valid[i] !== 1) { out[i] = NaN; continue }
    const o = i * d
    if (metric === 'l2') {
      let s = 0
      for (let j = 0; j < d; j++) { const t = x[o + j]! - q[j]!; s += t * t }
      out[i] = Math.sqrt(s)
    } else {
      let dot = 0; let xn = 0
      for (let j = 0; j < d; j++) { const a = x[o + j]!; dot += a * q[j]!; xn += a * a }
      out[i] = metric === 'dot' ? dot : (xn === 0 || qn === 0 ? NaN : dot / (Math.sqrt(xn) * qn))
    }
  }
  return out
}

/** Collects batches and keeps the K best rows with their `_score`. */
export function topKSearch (node: TopKNode, budget?: MemoryBudget): { push: (b: ColumnBatch) => void, result: () => ColumnBatch } {
  const best = keepBest({ k: node.k, lowerIsBetter: node.metric === 'l2', order: scoreOrder(node.metric) }, budget)
  const q = Float32Array.from(node.vector)
  return {
    push (b) {
      const col = b.columns.get(node.column)
      if (col === undefined) throw new QueryExecError('BAD_FRAGMENT', `no column ${node.column}`)
      best.push(b, scoreVectors(col, q, node.metric))
    },
    result: () => best.result()
  }
}

export interface KeepBestOptions {
  k: number
  /** L2 distances: lower is closer. Otherwise higher is. */
  lowerIsBetter: boolean
  /**
   * Breaks ties of equal scores: the row whose value here (a utf8 column, the id) is smaller is
   * better. Without one, the first row pushed is kept.
   */
  tieColumn?: string
  /** The order of the result (`_score` first): the heap's order, as a sort the merge repeats. */
  order: readonly SortKey[]
}

/**
 * The K best rows of the batches pushed, each with a score per row (NaN: the row is out). A binary
 * min-heap of K (score, row) pairs keeps the best seen so far, so memory is O(K) whatever the
 * number of rows; recall scores by a vector metric, completion by its weighted mean of
 * similarities.
 */
export function keepBest (opts: KeepBestOptions, budget?: MemoryBudget): { push: (b: ColumnBatch, scores: Float64Array) => void, result: () => ColumnBatch } {
  const k = opts.k
  assert(Number.isInteger(k) && k >= 1, `top-K needs k >= 1, got ${k}`)
  const better = opts.lowerIsBetter ? (a: number, b: number) => a < b : (a: number, b: number) => a > b
  // Min-heap by "goodness": the root is the worst of the kept rows.
  const heapScore: number[] = []
  const heapRef: Array<[number, number]> = []
  /** The tie column's value of each kept row (only with a tieColumn). */
  const heapTie: string[] = []
  const kept: ColumnBatch[] = []
  const tied = opts.tieColumn !== undefined
  /** Whether score s (tie value t) ranks above kept entry `than`. */
  const beats = (s: number, t: string, than: number): boolean => better(s, heapScore[than]!) || (tied && s === heapScore[than] && t < heapTie[than]!)
  const worse = (i: number, j: number): boolean => beats(heapScore[j]!, heapTie[j] ?? '', i)
  const swap = (i: number, j: number): void => {
    [heapScore[i], heapScore[j]] = [heapScore[j]!, heapScore[i]!];
    [heapRef[i], heapRef[j]] = [heapRef[j]!, heapRef[i]!]
    if (tied) [heapTie[i], heapTie[j]] = [heapTie[j]!, heapTie[i]!]
  }
  const up = (i: number): void => { while (i > 0) { const p = (i - 1) >> 1; if (!worse(i, p)) break; swap(i, p); i = p } }
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1; const r = l + 1; let m = i
      if (l < heapScore.length && worse(l, m)) m = l
      if (r < heapScore.length && worse(r, m)) m = r
      if (m === i) return
      swap(i, m); i = m
    }
  }
  let keptRows = 0
  const compact = (): void => {
    const byBatch = new Map<number, number[]>()
    heapRef.forEach(([bi], h) => { let l = byBatch.get(bi); if (l === undefined) byBatch.set(bi, l = []); l.push(h) })
    const parts: ColumnBatch[] = []
    let at = 0
    for (const [bi, hs] of byBatch) {
      parts.push(gatherBatch(kept[bi]!, Uint32Array.from(hs, h => heapRef[h]![1])))
      hs.forEach((h, j) => { heapRef[h] = [0, at + j] })
      at += hs.length
    }
    kept.length = 0
    kept.push(parts.length === 0 ? { length: 0, columns: new Map() } : concatBatches(parts))
    keptRows = at
  }
  return {
    push (b, scores) {
      assert(scores.length === b.length, `${scores.length} scores for a batch of ${b.length} rows`)
      const tie = opts.tieColumn === undefined ? undefined : tieValues(b, opts.tieColumn)
      let used = false
      const bi = kept.length
      for (let i = 0; i < scores.length; i++) {
        const s = scores[i]!
        if (s !== s) continue
        if (heapScore.length < k) {
          heapScore.push(s); heapRef.push([bi, i]); if (tie !== undefined) heapTie.push(tie(i))
          up(heapScore.length - 1); used = true
        } else if (better(s, heapScore[0]!) || (tie !== undefined && s === heapScore[0] && tie(i) < heapTie[0]!)) {
          heapScore[0] = s; heapRef[0] = [bi, i]; if (tie !== undefined) heapTie[0] = tie(i)
          down(0); used = true
        }
      }
      // A batch is kept only if one of its rows entered the heap; once the kept rows pass a bound,
      // the rows still in the heap are gathered into one batch and the rest let go, so memory
      // stays O(K) even when every batch improves on the last.
      kept.push(used ? b : { length: 0, columns: new Map() })
      if (used) keptRows += b.length
      if (keptRows > 4 * k + 4096) compact()
      budget?.set(heapRef, kept.reduce((n, x) => n + batchBytes(x), 0))
    },
    result () {
      const byBatch = new Map<number, Array<[number, number]>>()
      heapRef.forEach(([bi, row], h) => { let l = byBatch.get(bi); if (l === undefined) byBatch.set(bi, l = []); l.push([row, heapScore[h]!]) })
      const parts: ColumnBatch[] = []
      for (const [bi, rows] of byBatch) {
        const g = gatherBatch(kept[bi]!, Uint32Array.from(rows.map(r => r[0])))
        const columns = new Map(g.columns)
        columns.set(SCORE_COLUMN, { tag: 'num', type: 'float64', values: Float64Array.from(rows.map(r => r[1])) })
        parts.push({ length: g.length, columns })
      }
      budget?.release(heapRef)
      if (parts.length === 0) return { length: 0, columns: new Map() }
      return sortAndSlice(concatBatches(parts), opts.order, k)
    }
  }
}

/** Row i's value of a utf8 column, for ties ('' for NULL: ids are never NULL). */
function tieValues (b: ColumnBatch, name: string): (i: number) => string {
  const v = b.columns.get(name)
  if (v === undefined || v.tag !== 'str') throw new QueryExecError('BAD_FRAGMENT', `top-K ties are broken by a utf8 column; ${name} is not one here`)
  return i => { const c = v.codes[i]!; return c < 0 ? '' : v.dict[c]! }
}

/** The order of recall's answer: `_score`, best first. */
export function scoreOrder (metric: VectorMetric): SortKey[] {
  return [{ expr: column(SCORE_COLUMN), direction: metric === 'l2' ? 'asc' : 'desc', nulls: 'last' }]
}

/** Best first, at most k. */
export function sortByScore (batch: ColumnBatch, metric: VectorMetric, k: number): ColumnBatch {
  return sortAndSlice(batch, scoreOrder(metric), k)
}
