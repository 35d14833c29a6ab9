/**
 * Generated aggregation loops. One loop per batch does everything a GROUP BY over typed columns
 * needs for a row: the WHERE tests, the row's group (from its key values, or from group ids
 * computed beforehand) and every fused aggregate's update. Separate passes would write a
 * selection vector, then a group id per row, and read both back: at 10 M rows that traffic was a
 * third of the time.
 *
 * A loop is generated per *shape* (which tests with which operators, which kinds of keys, which
 * aggregate steps, with or without a selection vector) and kept; its source comes from the fixed
 * templates below, never from a query's text: constants, columns and tables reach it as values.
 *
 * With *batch counts* a loop counts the rows it adds to each group once (`counts[g]++`), and the
 * steps that need only that much take it from there after the loop (foldSteps): count(*), and the
 * counts of columns without NULLs, which then need no NaN test either; a sum of int32s goes to a
 * plain partial, exact within a loop. A single-key GROUP BY with count(*), a sum and an avg did
 * three count increments, two NaN tests and two compensated sums a row; now one increment, one
 * compensated sum and one addition: 10.8-12.0 → 8.1-8.8 ns a row over 4 M rows in memory.
 */
import { MAX_FOLDED_ROWS, type FusedStep } from './accumulators.js'
import type { RowTest } from './select.js'

/**
 * How a loop finds a row's group:
 * - `none`: there is one group, 0 (no GROUP BY);
 * - `gids`: group ids computed beforehand, one per row of the loop;
 * - `keys`: from one or two key columns through the group table's dictionaries (numbers: an
 *   array of small integers; strings and coded numbers: an array by code), the second key through a
 *   dense table of key-id pairs. Whatever those arrays do not know yet, `miss` resolves.
 */
export type GroupLookup =
  | { kind: 'none' }
  | { kind: 'gids', gids: Int32Array }
  | { kind: 'keys', keys: readonly KeyProbe[], probe: GroupProbe }

/** One key column as a loop reads it, and the dictionary that gives its values ids. */
export interface KeyProbe {
  kind: 'num' | 'str'
  /**
   * Float64 values (or, with `codes`, the table they index), or dictionary codes: Int32Array with
   * -1 for NULL, or narrow (StrVector.narrow) with `nullCode` for NULL.
   */
  col: Float64Array | Int32Array | Uint8Array | Uint16Array
  /** A coded number key's codes (NumVector.coded): row r's value is col[codes[r]], its id dict.codes[codes[r]] (KeyDict.prepare). */
  codes?: Uint8Array | Uint16Array
  /** Narrow string codes: the NULL code (0xff or 0xffff). */
  nullCode?: number
  /** The key's dictionary: `small[x]` is the id of integer x, `codes[c]` of the batch's code c, `nullId` of NULL (-1: none yet). */
  dict: { readonly small: Int32Array, readonly codes: Int32Array, readonly nullId: number }
}

/** What a loop asks when its arrays cannot place a row; the table's fields it reads afterwards. */
export interface GroupProbe {
  /**
   * The group of row r, created if new; -1 stops the loop (the table can no longer serve this
   * shape: the caller finishes the batch another way). Grows arrays: the loop reloads them all.
   */
  miss: (r: number) => number
  /** Two keys: group of (a, b) at `dense[a | b << bitsA]`, -1 for none yet. */
  dense: Int32Array
  bitsA: number
  /** Aggregate steps, rebuilt by `miss` when groups grow (their arrays are replaced). */
  steps: FusedStep[]
  /** The batch counts (see above), replaced by `miss` when groups grow; unused without them. */
  counts: Float64Array
}

export interface KernelResult {
  /** Rows that passed the tests and were aggregated. */
  matched: number
  /** n when the loop finished; otherwise the loop index where `miss` stopped it (that row not done). */
  stop: number
}

type Kernel = (tests: readonly RowTest[], lookup: GroupLookup, probe: GroupProbe | undefined, steps: readonly FusedStep[], n: number, sel: Uint32Array | undefined, counts: Float64Array | undefined) => KernelResult

/** Loops by shape. Bounded: a peer serving many different queries drops its oldest loops. */
const kernels = new Map<string, Kernel>()
const MAX_KERNELS = 256

/**
 * Runs the loop over rows 0..n-1 (rows sel[0..n-1] with a selection): rows failing a test are
 * skipped, the others are added to their group by every step. With a `keys` lookup, pass the
 * probe's own `steps` so the loop sees them rebuilt after a miss. With `counts` (zero for every
 * group, at most MAX_FOLDED_ROWS rows) the loop keeps batch counts: the caller must then call
 * foldSteps with the steps as they are after it (the probe's, for a `keys` lookup).
 */
export function runKernel (tests: readonly RowTest[], lookup: GroupLookup, steps: readonly FusedStep[], n: number, sel?: Uint32Array, counts?: Float64Array): KernelResult {
  const fold = counts !== undefined
  if (fold && n > MAX_FOLDED_ROWS) throw new RangeError(`a loop with batch counts over ${n} rows (at most ${MAX_FOLDED_ROWS})`)
  const shape = [
    sel === undefined ? 'all' : 'sel',
    fold ? 'fold' : 'own',
    tests.map(t => t.kind === 'cmp' ? `cmp${t.op}` : t.kind === 'codes' ? `codes${t.codes.BYTES_PER_ELEMENT}` : t.kind).join('&'),
    lookup.kind === 'keys' ? lookup.keys.map(keyShape).join('+') : lookup.kind,
    steps.map(stepShape).join(',')
  ].join('|')
  let kernel = kernels.get(shape)
  if (kernel === undefined) {
    kernel = compile(tests, lookup, steps, sel !== undefined, fold)
    if (kernels.size >= MAX_KERNELS) kernels.delete(kernels.keys().next().value!)
    kernels.set(shape, kernel)
  }
  return kernel(tests, lookup, lookup.kind === 'keys' ? lookup.probe : undefined, steps, n, sel, counts)
}

/**
 * A step's part of the shape: its kind, what its column is known to be (dense: no NULL; exact:
 * int32s) and the width of its codes when it reads them. Every array kind a loop reads is in its
 * shape, so each of its loads sees one kind (V8 compiles a load that has seen several slower).
 */
function stepShape (s: FusedStep): string {
  return s.kind + ('dense' in s && s.dense ? 'D' : '') + ('exact' in s && s.exact ? 'X' : '') + ('codes' in s && s.codes !== undefined ? `C${s.codes.BYTES_PER_ELEMENT}` : '')
}

/** A key's part of the shape: its kind, and the width of its codes (narrow strings, coded numbers). */
function keyShape (k: KeyProbe): string {
  if (k.kind === 'num') return k.codes === undefined ? 'num' : `numC${k.codes.BYTES_PER_ELEMENT}`
  return `str${k.col.BYTES_PER_ELEMENT}`
}

/** Comparison operators as source: a fixed table, so nothing else can reach the template. */
const OPS: Readonly<Record<string, string>> = { '<': '<', '<=': '<=', '>': '>', '>=': '>=' }

/** A test as statements that `continue` past a failing row; NaN (NULL) fails them all. */
function testSource (t: RowTest, k: number): { load: string, body: string } {
  const p = `tests[${k}]`
  switch (t.kind) {
    case 'cmp': {
      const load = `const t${k}c = ${p}.col; const t${k}k = ${p}.c`
      if (t.op === '=') return { load, body: `if (t${k}c[r] !== t${k}k) continue` }
      if (t.op === '<>') return { load, body: `{ const x = t${k}c[r]; if (x === t${k}k || x !== x) continue }` }
      const op = OPS[t.op]
      if (op === undefined) throw new Error(`no kernel for the comparison ${String(t.op)}`)
      return { load, body: `if (!(t${k}c[r] ${op} t${k}k)) continue` }
    }
    case 'range': return { load: `const t${k}c = ${p}.col; const t${k}lo = ${p}.lo; const t${k}hi = ${p}.hi`, body: `{ const x = t${k}c[r]; if (!(x >= t${k}lo && x <= t${k}hi)) continue }` }
    case 'set': return { load: `const t${k}c = ${p}.col; const t${k}s = ${p}.set`, body: `if (!t${k}s.has(t${k}c[r])) continue` }
    case 'codes': return { load: `const t${k}c = ${p}.codes; const t${k}p = ${p}.pass`, body: `{ const c = t${k}c[r]; if (c < 0 || t${k}p[c] !== 1) continue }` }
  }
}

/**
 * One step's work for row `r` of group `g` (the same templates as every fused loop); `fold`: the
 * loop keeps batch counts (bc), which a dense column's counts come from after it.
 */
function stepSource (step: FusedStep, k: number, fold: boolean): string {
  const a = (j: number): string => `a${k}_${j}`
  // Row r of the step's column: a value, or through its codes.
  const col = 'codes' in step && step.codes !== undefined ? `c${k}[cc${k}[r]]` : `c${k}[r]`
  switch (step.kind) {
    case 'countAll': return fold ? '' : `${a(0)}[g]++`
    case 'countNum':
      if (step.dense) return fold ? '' : `${a(0)}[g]++`
      return `{ const x = ${col}; if (x === x) ${a(0)}[g]++ }`
    case 'countStr': return `if (c${k}[r] >= 0) ${a(0)}[g]++`
    case 'sum': {
      // An int32 column's sum within a loop with batch counts: a plain partial (exact, folded after).
      if (fold && step.exact) return step.dense ? `${a(3)}[g] += ${col}` : `{ const x = ${col}; if (x === x) { ${a(3)}[g] += x; ${a(2)}[g]++ } }`
      // Knuth's TwoSum: the exact rounding error of s + x without a branch (Neumaier's version
      // branches on which operand is larger, and that branch mispredicts on real data).
      const add = `const s = ${a(0)}[g]; const t = s + x; const bp = t - s; ${a(1)}[g] += (s - (t - bp)) + (x - bp); ${a(0)}[g] = t`
      if (step.dense) return `{ const x = ${col}; ${add}${fold ? '' : `; ${a(2)}[g]++`} }`
      return `{ const x = ${col}; if (x === x) { ${add}; ${a(2)}[g]++ } }`
    }
    case 'min': return `{ const x = ${col}; const cur = ${a(0)}[g]; if (x < cur || (cur !== cur && x === x)) ${a(0)}[g] = x }`
    case 'max': return `{ const x = ${col}; const cur = ${a(0)}[g]; if (x > cur || (cur !== cur && x === x)) ${a(0)}[g] = x }`
  }
}

function compile (tests: readonly RowTest[], lookup: GroupLookup, steps: readonly FusedStep[], withSel: boolean, fold: boolean): Kernel {
  const testParts = tests.map(testSource)
  // Step arrays are replaced when groups grow: `let`, reloaded after every miss.
  const coded = (s: FusedStep): boolean => 'codes' in s && s.codes !== undefined
  const stepVars = steps.flatMap((s, k) => [...('column' in s ? [`c${k}`] : []), ...(coded(s) ? [`cc${k}`] : []), ...s.arrays.map((_, j) => `a${k}_${j}`)])
  const stepsFrom = (src: string): string => steps.map((s, k) => [
    ...('column' in s ? [`c${k} = ${src}[${k}].column`] : []),
    ...(coded(s) ? [`cc${k} = ${src}[${k}].codes`] : []),
    ...s.arrays.map((_, j) => `a${k}_${j} = ${src}[${k}].arrays[${j}]`)
  ].join('; ')).join('; ')
  let keyVars: string[] = []
  let keyLoad = ''
  let findGroup: string
  switch (lookup.kind) {
    case 'none': findGroup = 'const g = 0'; break
    case 'gids': keyLoad = 'const gids = lookup.gids'; findGroup = 'const g = gids[i]'; break
    case 'keys': {
      const keys = lookup.keys
      if (keys.length < 1 || keys.length > 2) throw new Error('a kernel groups by one or two keys')
      keyLoad = keys.map((k, i) => `const kv${i} = lookup.keys[${i}].col; const kd${i} = lookup.keys[${i}].dict` +
        (k.codes !== undefined ? `; const kc${i} = lookup.keys[${i}].codes` : '') +
        (k.kind === 'str' && k.nullCode !== undefined ? `; const kz${i} = lookup.keys[${i}].nullCode` : '')).join('; ')
      // A coded number key finds its id by code, as a string key does (KeyDict.prepare).
      keyVars = keys.flatMap((k, i) => k.kind === 'num' ? [k.codes !== undefined ? `lc${i}` : `sm${i}`] : [`lc${i}`, `nl${i}`])
      if (keys.length === 2) keyVars.push('dense', 'bitsA')
      const ids = keys.map((k, i) => k.kind === 'num'
        ? k.codes !== undefined
          ? `const id${i} = lc${i}[kc${i}[r]]`
          : `const x${i} = kv${i}[r]; const id${i} = x${i} >= 0 && x${i} < sm${i}.length && (x${i} | 0) === x${i} ? sm${i}[x${i}] : -1`
        : `const k${i} = kv${i}[r]; const id${i} = ${k.nullCode !== undefined ? `k${i} !== kz${i}` : `k${i} >= 0`} ? lc${i}[k${i}] : nl${i}`).join('\n    ')
      const place = keys.length === 1 ? 'let g = id0' : 'let g = id0 >= 0 && id1 >= 0 ? dense[id0 | (id1 << bitsA)] : -1'
      findGroup = `${ids}
    ${place}
    if (g < 0) {
      g = probe.miss(r)
      if (g < 0) return { matched: m, stop: i }
      RELOAD
    }`
      break
    }
  }
  if (fold && lookup.kind === 'keys') keyVars.push('bc')
  const keyReload = keyVars.map(v => {
    if (v === 'bc') return 'bc = probe.counts'
    if (v === 'dense' || v === 'bitsA') return `${v} = probe.${v}`
    const k = v.slice(2)
    return v.startsWith('sm') ? `${v} = kd${k}.small` : v.startsWith('lc') ? `${v} = kd${k}.codes` : `${v} = kd${k}.nullId`
  }).join('; ')
  // After a miss the steps come from the probe, which rebuilt them around the grown arrays.
  // Inline, not a function: a closure over the loop's variables would move them off registers.
  findGroup = findGroup.replace('RELOAD', `${keyReload}; ${stepsFrom('probe.steps')}`)
  const source = `'use strict'
${testParts.map(p => p.load).join('\n')}
${keyLoad}
${fold && lookup.kind !== 'keys' ? 'const bc = counts' : ''}
${[...keyVars, ...stepVars].length > 0 ? `let ${[...keyVars, ...stepVars].join(', ')}` : ''}
${keyReload}
${stepsFrom('steps')}
let m = 0
for (let i = 0; i < n; i++) {
    const r = ${withSel ? 'sel[i]' : 'i'}
    ${testParts.map(p => p.body).join('\n    ')}
    ${findGroup}
    m++
    ${fold ? 'bc[g]++' : ''}
    ${steps.map((s, k) => stepSource(s, k, fold)).filter(x => x !== '').join('\n    ')}
}
return { matched: m, stop: n }`
  return new Function('tests', 'lookup', 'probe', 'steps', 'n', 'sel', 'counts', source) as Kernel
}
