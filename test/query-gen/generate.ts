/**
 * Random SQL from the grammar Shoal supports (docs/query.md, SQL section), over the generated
 * table (data.ts). Each query is built as a small structure and rendered twice:
 *
 * - `sql`, the text sent to Shoal, which DuckDB also accepts as it is;
 * - `duckSql`, the reference text: the same query with the approximate aggregates replaced by
 *   what they are compared with (approx_count_distinct(x) by count(DISTINCT x), approx_quantile(x, q)
 *   by the sorted list of x's non-NULL values), the ORDER BY keys that are not select items added
 *   as hidden columns `__k0, __k1, ...` after the select items, and no LIMIT / OFFSET: the
 *   comparator (compare.ts) takes the full sorted answer and works out which rows the window may
 *   hold, ties included.
 *
 * Values stay where both engines are exact: numeric expressions are kept dyadic (multiples of
 * 2^-den with small den, so sums are exact in any order and x * 10^d is exact for round), integer
 * expressions stay below 2^52 in magnitude (no int32 or int64 overflow on either side), divisions
 * are by 2, 4 or 8 only, and approximate aggregates appear only as whole select items (never in
 * WHERE, HAVING or ORDER BY, where their error would change which rows come out).
 */
import type { DataRow } from './data.js'
import { CATEGORIES, COLUMNS, REGIONS, SPACE_NAME } from './data.js'
import { Rng } from './random.js'

export type SqlType = 'utf8' | 'int32' | 'int64' | 'float64' | 'bool' | 'timestamp' | 'date'

/** A generated expression and what the generator knows about its values. */
interface Ex {
  sql: string
  t: SqlType
  /** Contains an aggregate call. */
  agg: boolean
  /** Upper bound on |value| (numbers). */
  mag: number
  /** Values are multiples of 2^-den; Infinity when not dyadic (after round to decimals). */
  den: number
  /** Depends on a sum of integers: exact in DuckDB, a float64 sum in Shoal (docs/query.md). */
  intSum: boolean
  nullable: boolean
  /** Safe as an operand without parentheses (column, literal, function call). */
  atom: boolean
}

/** Approximate aggregates, each a whole select item. */
export type Approx = { kind: 'distinct', arg: string } | { kind: 'quantile', arg: string, q: number, argType: SqlType }

export interface Item {
  /** The expression as written for Shoal. */
  sql: string
  /** The expression as written for the DuckDB reference. */
  duckSql: string
  alias: string | null
  approx: Approx | null
  /** May be off by float rounding (sums of large integers, in Shoal's float64 sum). */
  intSum: boolean
  /** A float-valued expression (compared within a relative tolerance). */
  float: boolean
}

export interface OrderKey {
  /** As written after ORDER BY: an alias, a 1-based position or an expression. */
  ref: string
  /** Where the key's value is in the DuckDB answer: a select item, or hidden column `__k<hidden>`. */
  item: number | null
  hidden: number | null
  direction: '' | ' ASC' | ' DESC'
  nulls: '' | ' NULLS FIRST' | ' NULLS LAST'
  /** Values may differ by rounding between the engines: near-equal keys count as ties. */
  loose: boolean
}

export type Shape = 'rows' | 'star' | 'distinct' | 'aggregate' | 'group'

export interface GenQuery {
  seed: number
  shape: Shape
  /** The select items (for `star`, one per column of the space). */
  items: Item[]
  star: boolean
  distinct: boolean
  where: string | null
  groupBy: string[]
  having: string | null
  orderBy: OrderKey[]
  /** Hidden ORDER BY expressions added to the DuckDB select list. */
  hiddenKeys: string[]
  limit: number | null
  offset: number | null
  /** The SQL sent to Shoal (DuckDB accepts it too). */
  sql: string
  /** The reference SQL run on DuckDB. */
  duckSql: string
}

const MAX_INT = 2 ** 52
const INT32_SAFE = 2 ** 30

const col = (name: string, t: SqlType, mag: number, den: number, nullable: boolean): Ex =>
  ({ sql: name, t, agg: false, mag, den, intSum: false, nullable, atom: true })

const COLS = {
  id: col('id', 'utf8', 0, 0, false),
  region: col('region', 'utf8', 0, 0, false),
  category: col('category', 'utf8', 0, 0, true),
  qty: col('qty', 'int32', 1000, 0, true),
  amount: col('amount', 'float64', 50_000, 3, true),
  big: col('big', 'int64', 2 ** 50, 0, true),
  flag: col('flag', 'bool', 0, 0, true),
  ts: col('ts', 'timestamp', 1.8e12, 0, false),
  day: col('day', 'date', 21_000, 0, true)
} as const

const QUANTILES = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1]
const DYADIC_FACTORS = [0.5, 1.5, 2.25, -0.75, 0.125]
const isInt = (t: SqlType): boolean => t === 'int32' || t === 'int64'
const isNum = (t: SqlType): boolean => isInt(t) || t === 'float64'
const paren = (e: Ex): string => e.atom ? e.sql : `(${e.sql})`
const numType = (a: SqlType, b: SqlType): SqlType => a === 'float64' || b === 'float64' ? 'float64' : a === 'int32' && b === 'int32' ? 'int32' : 'int64'

/** Renders a number literal the way both engines read it back to the same value. */
function num (x: number): string {
  if (!Number.isFinite(x)) throw new Error(`literal ${x}`)
  return String(x)
}

const str = (s: string): string => `'${s.replace(/'/g, "''")}'`
const isLiteral = (sql: string): boolean => /^(-?\d+(\.\d+)?|'[^']*'|true|false|NULL)$/.test(sql)

/** Builds random queries over `rows` (literals are drawn from the data, so predicates select something). */
export class QueryGenerator {
  private readonly rng: Rng
  private aliasCount = 0

  constructor (readonly seed: number, private readonly rows: readonly DataRow[]) {
    if (rows.length === 0) throw new Error('the query generator needs rows to draw literals from')
    this.rng = new Rng(seed)
  }

  generate (): GenQuery {
    const shape = this.rng.weighted<Shape>([[30, 'rows'], [6, 'star'], [12, 'distinct'], [12, 'aggregate'], [40, 'group']])
    switch (shape) {
      case 'rows': return this.rowsQuery(false)
      case 'star': return this.rowsQuery(true)
      case 'distinct': return this.distinctQuery()
      case 'aggregate': return this.aggregateQuery()
      case 'group': return this.groupQuery()
    }
  }

  // ---- query shapes ----

  private rowsQuery (star: boolean): GenQuery {
    const r = this.rng
    const items: Item[] = []
    const exprs: Ex[] = []
    if (star) {
      for (const c of COLUMNS) {
        const e = COLS[c.name as keyof typeof COLS]
        exprs.push(e)
        items.push(this.item(e, null))
      }
    } else {
      const n = r.range(1, 5)
      const seen = new Set<string>()
      for (let i = 0; i < n * 3 && items.length < n; i++) {
        const e = r.weighted<() => Ex>([
          [5, () => this.column()],
          [3, () => this.numeric(2)],
          [2, () => this.text(2)],
          [1, () => this.predicate(1)]
        ])()
        if (seen.has(e.sql) || isLiteral(e.sql)) continue
        seen.add(e.sql)
        exprs.push(e)
        items.push(this.item(e, e.atom && !e.sql.includes('(') ? null : this.maybeAlias(0.8)))
      }
    }
    const where = r.chance(0.85) ? this.predicate(r.pick([1, 2, 2, 3])).sql : null
    const orderBy: OrderKey[] = []
    const hiddenKeys: string[] = []
    const ordered = r.chance(0.55)
    if (ordered) {
      const nk = r.range(1, 3)
      for (let k = 0; k < nk; k++) {
        if (r.chance(0.55)) {
          const i = r.int(items.length)
          orderBy.push(this.keyForItem(items, exprs, i, star))
        } else {
          const e = r.chance(0.5) ? this.column() : r.chance(0.6) ? this.numeric(1) : this.text(1)
          orderBy.push(this.hiddenKey(e, hiddenKeys))
        }
      }
      // Often finish with the unique id, so the whole order is determined.
      if (r.chance(0.4)) orderBy.push(this.hiddenKey(COLS.id, hiddenKeys))
    }
    const { limit, offset } = this.window(ordered ? 0.6 : 0.2)
    return this.finish({ shape: star ? 'star' : 'rows', items, star, distinct: false, where, groupBy: [], having: null, orderBy, hiddenKeys, limit, offset })
  }

  private distinctQuery (): GenQuery {
    const r = this.rng
    const n = r.range(1, 3)
    const items: Item[] = []
    const exprs: Ex[] = []
    const seen = new Set<string>()
    for (let i = 0; i < n * 3 && items.length < n; i++) {
      const e = this.groupable()
      if (seen.has(e.sql)) continue
      seen.add(e.sql)
      exprs.push(e)
      items.push(this.item(e, e.atom && !e.sql.includes('(') ? null : this.maybeAlias(0.8)))
    }
    const where = r.chance(0.7) ? this.predicate(2).sql : null
    const orderBy: OrderKey[] = []
    if (r.chance(0.6)) {
      const order = r.shuffle(items.map((_, i) => i))
      for (const i of order.slice(0, r.range(1, items.length))) orderBy.push(this.keyForItem(items, exprs, i, false))
    }
    const { limit, offset } = this.window(orderBy.length > 0 ? 0.5 : 0.2)
    return this.finish({ shape: 'distinct', items, star: false, distinct: true, where, groupBy: [], having: null, orderBy, hiddenKeys: [], limit, offset })
  }

  private aggregateQuery (): GenQuery {
    const r = this.rng
    const items: Item[] = []
    const n = r.range(1, 5)
    for (let i = 0; i < n; i++) {
      if (r.chance(0.2)) {
        const e = this.postAggregate()
        items.push(this.item(e, this.maybeAlias(0.9)))
      } else {
        const a = this.aggregate(true)
        items.push(a.item ?? this.item(a.ex, this.maybeAlias(0.85)))
      }
    }
    dedupe(items)
    const where = r.chance(0.7) ? this.predicate(r.pick([1, 2, 3])).sql : null
    const having = r.chance(0.1) ? this.havingPredicate([]) : null
    const { limit, offset } = r.chance(0.1) ? { limit: r.pick([0, 1, 5]), offset: null } : { limit: null, offset: null }
    return this.finish({ shape: 'aggregate', items, star: false, distinct: false, where, groupBy: [], having, orderBy: [], hiddenKeys: [], limit, offset })
  }

  private groupQuery (): GenQuery {
    const r = this.rng
    // Group keys: 1 to 3 distinct groupable expressions.
    const keys: Ex[] = []
    const nk = r.weighted([[5, 1], [4, 2], [2, 3]])
    for (let i = 0; i < nk * 4 && keys.length < nk; i++) {
      const e = this.groupable()
      if (!keys.some(k => k.sql === e.sql)) keys.push(e)
    }
    // Select list: most keys, 1 to 4 aggregates, sometimes an expression over aggregates or keys.
    const items: Item[] = []
    const exprs: Ex[] = []
    const keyItem = new Map<number, number>()
    keys.forEach((k, ki) => {
      if (r.chance(0.85)) {
        keyItem.set(ki, items.length)
        exprs.push(k)
        items.push(this.item(k, k.atom && !k.sql.includes('(') ? (r.chance(0.2) ? this.alias() : null) : this.maybeAlias(0.8)))
      }
    })
    const na = r.range(1, 4)
    for (let i = 0; i < na; i++) {
      const a = this.aggregate(true)
      exprs.push(a.ex)
      items.push(a.item ?? this.item(a.ex, this.maybeAlias(0.85)))
    }
    if (r.chance(0.25)) {
      const e = this.postAggregate()
      exprs.push(e)
      items.push(this.item(e, this.maybeAlias(0.9)))
    }
    const columnKeys = keys.filter(k => k.atom && !k.sql.includes('('))
    if (columnKeys.length > 0 && r.chance(0.2)) {
      const k = r.pick(columnKeys)
      const e = k.t === 'utf8' ? this.fn(r.pick(['lower', 'upper']), k, 'utf8') : isNum(k.t) ? this.arith(k, this.intLit(1, 9), r.pick(['+', '-', '*'] as const)) : null
      if (e !== null) {
        exprs.push(e)
        items.push(this.item(e, this.alias()))
      }
    }
    // Item order: keys first, mostly; positions follow the final order.
    if (r.chance(0.3)) {
      const order = r.shuffle(items.map((_, i) => i))
      const [it, ex] = [order.map(i => items[i]!), order.map(i => exprs[i]!)]
      const back = new Map(order.map((from, to) => [from, to]))
      for (const [ki, ii] of keyItem) keyItem.set(ki, back.get(ii)!)
      items.splice(0, items.length, ...it)
      exprs.splice(0, exprs.length, ...ex)
    }
    dedupe(items)
    // GROUP BY: by expression, select alias or position.
    const groupBy = keys.map((k, ki) => {
      const ii = keyItem.get(ki)
      if (ii === undefined || items[ii]!.sql !== k.sql) return k.sql
      const it = items[ii]!
      return r.weighted<string>([[4, k.sql], [3, String(ii + 1)], [it.alias !== null ? 3 : 0, it.alias ?? '']])
    })
    const where = r.chance(0.6) ? this.predicate(2).sql : null
    const having = r.chance(0.3) ? this.havingPredicate(columnKeys) : null
    // ORDER BY: select items (not approximate), keys, aggregates not selected.
    const orderBy: OrderKey[] = []
    const hiddenKeys: string[] = []
    if (r.chance(0.65)) {
      const n = r.range(1, 3)
      for (let i = 0; i < n; i++) {
        const exact = items.map((it, ii) => ({ it, ii })).filter(x => x.it.approx === null)
        const choice = r.weighted<string>([[exact.length > 0 ? 5 : 0, 'item'], [2, 'key'], [2, 'agg']])
        if (choice === 'item') {
          orderBy.push(this.keyForItem(items, exprs, r.pick(exact).ii, false))
        } else if (choice === 'key') {
          orderBy.push(this.hiddenKey(r.pick(keys), hiddenKeys))
        } else {
          orderBy.push(this.hiddenKey(this.aggregate(false).ex, hiddenKeys))
        }
      }
    }
    const { limit, offset } = this.window(orderBy.length > 0 ? 0.55 : 0.15)
    return this.finish({ shape: 'group', items, star: false, distinct: false, where, groupBy, having, orderBy, hiddenKeys, limit, offset })
  }

  private finish (q: Omit<GenQuery, 'seed' | 'sql' | 'duckSql'>): GenQuery {
    return {
      ...q,
      seed: this.seed,
      sql: renderSql(q, { item: it => it.sql, hidden: false, window: true }),
      duckSql: renderSql(q, { item: it => it.duckSql, hidden: true, window: false })
    }
  }

  // ---- pieces ----

  private item (e: Ex, alias: string | null): Item {
    return { sql: e.sql, duckSql: e.sql, alias, approx: null, intSum: e.intSum, float: e.t === 'float64' }
  }

  private alias (): string { return `c${this.aliasCount++}` }
  private maybeAlias (p: number): string | null { return this.rng.chance(p) ? this.alias() : null }

  private window (p: number): { limit: number | null, offset: number | null } {
    const r = this.rng
    if (!r.chance(p)) return { limit: null, offset: null }
    const kind = r.weighted([[6, 'limit'], [3, 'both'], [1, 'offset']])
    const limit = r.weighted<number>([[1, 0], [3, 1], [10, r.range(2, 20)], [3, r.range(21, 200)]])
    const offset = r.weighted<number>([[3, r.range(1, 10)], [2, r.range(11, 100)], [1, r.range(101, 2000)]])
    return { limit: kind === 'offset' ? null : limit, offset: kind === 'limit' ? null : offset }
  }

  /** An ORDER BY key on select item i: by alias, by position, or by repeating its expression. */
  private keyForItem (items: Item[], exprs: Ex[], i: number, star: boolean): OrderKey {
    const it = items[i]!
    const e = exprs[i]!
    // Repeating a literal would read as a position (or be refused by DuckDB); an AND / OR chain
    // needs parentheses here (node-sql-parser's grammar takes no bare AND / OR after ORDER BY).
    const asExpr = isLiteral(it.sql) ? String(i + 1) : e.t === 'bool' && !e.atom ? `(${it.sql})` : it.sql
    const ref = star
      ? this.rng.chance(0.3) ? String(i + 1) : asExpr
      : this.rng.weighted<string>([[it.alias !== null ? 4 : 0, it.alias ?? ''], [3, String(i + 1)], [it.alias === null || !e.agg ? 3 : 1, asExpr]])
    return { ref, item: i, hidden: null, ...this.direction(), loose: it.float || it.intSum }
  }

  private hiddenKey (e: Ex, hiddenKeys: string[]): OrderKey {
    if (isLiteral(e.sql)) e = COLS.qty
    let h = hiddenKeys.indexOf(e.sql)
    if (h < 0) { h = hiddenKeys.length; hiddenKeys.push(e.sql) }
    return { ref: e.sql, item: null, hidden: h, ...this.direction(), loose: e.t === 'float64' || e.intSum }
  }

  private direction (): Pick<OrderKey, 'direction' | 'nulls'> {
    return {
      direction: this.rng.weighted<OrderKey['direction']>([[3, ''], [2, ' ASC'], [4, ' DESC']]),
      nulls: this.rng.weighted<OrderKey['nulls']>([[5, ''], [2, ' NULLS FIRST'], [2, ' NULLS LAST']])
    }
  }

  // ---- scalar expressions ----

  private column (): Ex {
    return this.rng.weighted<Ex>([
      [1, COLS.id], [3, COLS.region], [3, COLS.category], [3, COLS.qty], [3, COLS.amount],
      [2, COLS.big], [2, COLS.flag], [2, COLS.ts], [2, COLS.day]
    ])
  }

  private row (): DataRow { return this.rng.pick(this.rows) }

  /** A value of a column from a random row, NULLs skipped (undefined if it found none). */
  private sample<K extends keyof DataRow> (k: K): NonNullable<DataRow[K]> | undefined {
    for (let i = 0; i < 20; i++) {
      const v = this.row()[k]
      if (v !== null) return v as NonNullable<DataRow[K]>
    }
    return undefined
  }

  private lit (x: number, t: SqlType): Ex {
    const den = Number.isInteger(x) ? 0 : Math.max(0, Math.ceil(-Math.log2(denominatorPart(x))))
    return { sql: num(x), t, agg: false, mag: Math.abs(x), den, intSum: false, nullable: false, atom: x >= 0 }
  }

  private intLit (lo: number, hi: number): Ex { return this.lit(this.rng.range(lo, hi), 'int64') }

  /** A literal near the values of a numeric expression's main column. */
  private numLitFor (e: Ex): Ex {
    const r = this.rng
    const src = e.sql.includes('amount') ? 'amount' : e.sql.includes('big') ? 'big' : 'qty'
    if (src === 'amount') {
      const v = r.chance(0.6) ? this.sample('amount') ?? 10 : r.range(-200, 8000) / 8
      return this.lit(v, Number.isInteger(v) ? 'int64' : 'float64')
    }
    if (src === 'big') return this.lit(r.chance(0.7) ? this.sample('big') ?? 0 : r.range(-1000, 1000), 'int64')
    return this.lit(r.chance(0.6) ? this.sample('qty') ?? 5 : r.range(-20, 300), 'int64')
  }

  /** A numeric expression, dyadic, within the int bounds. */
  private numeric (depth: number): Ex {
    const r = this.rng
    if (depth <= 0 || r.chance(0.35)) {
      return r.weighted<() => Ex>([
        [4, () => COLS.qty], [4, () => COLS.amount], [2, () => COLS.big],
        [1, () => this.intLit(-5, 100)]
      ])()
    }
    const a = this.numeric(depth - 1)
    const choice = r.weighted([
      [4, 'add'], [3, 'mul'], [2, 'div'], [2, 'mod'], [1, 'neg'], [2, 'abs'], [2, 'round'],
      [2, 'case'], [2, 'coalesce'], [1, 'length']
    ])
    switch (choice) {
      case 'add': {
        const b = r.chance(0.5) ? this.numeric(depth - 1) : this.numLitFor(a)
        const op = r.pick(['+', '-'] as const)
        return this.arith(a, b, op) ?? a
      }
      case 'mul': {
        const f = isInt(a.t) && a.t === 'int64' ? this.intLit(-2, 3) : r.chance(0.6) ? this.intLit(-4, 10) : this.lit(r.pick(DYADIC_FACTORS), 'float64')
        return this.arith(a, f, '*') ?? a
      }
      case 'div': {
        const p = r.pick([2, 4, 8])
        if (a.den + Math.log2(p) > 9) return a
        return { ...a, sql: `${paren(a)} / ${p}`, t: 'float64', mag: a.mag / p, den: a.den + Math.log2(p), atom: false }
      }
      case 'mod': {
        if (a.den !== 0 || !isInt(a.t)) return a
        const k = r.range(2, 13)
        return { ...a, sql: `${paren(a)} % ${k}`, mag: Math.min(a.mag, k), atom: false }
      }
      case 'neg': return { ...a, sql: `-${paren(a)}`, atom: false }
      case 'abs': return this.fn('abs', a, a.t)
      case 'round': {
        if (!Number.isFinite(a.den) || a.mag * 2 ** a.den * 100 >= 2 ** 52) return a
        const d = r.weighted<number | null>([[2, null], [2, 0], [3, 1], [3, 2], [1, -1]])
        const sql = d === null ? `round(${a.sql})` : `round(${a.sql}, ${d})`
        // Integers stay integers; rounding a fraction to decimals leaves the dyadic grid.
        return { ...a, sql, den: isInt(a.t) ? 0 : d === null || d <= 0 ? 0 : Infinity, mag: a.mag + 10, atom: true }
      }
      case 'case': {
        const b = this.numeric(depth - 1)
        const p = this.predicate(1)
        const t = numType(a.t, b.t)
        return { sql: `CASE WHEN ${p.sql} THEN ${a.sql} ELSE ${b.sql} END`, t, agg: false, mag: Math.max(a.mag, b.mag), den: Math.max(a.den, b.den), intSum: false, nullable: a.nullable || b.nullable || p.nullable, atom: true }
      }
      case 'coalesce': {
        const c = r.pick([COLS.qty, COLS.amount, COLS.big])
        const b = this.numLitFor(c)
        return { sql: `coalesce(${c.sql}, ${b.sql})`, t: numType(c.t, b.t), agg: false, mag: Math.max(c.mag, b.mag), den: Math.max(c.den, b.den), intSum: false, nullable: false, atom: true }
      }
      case 'length': return { ...this.fn('length', this.text(depth - 1), 'int64'), mag: 64, den: 0 }
    }
    return a
  }

  /** a op b with the bookkeeping, or null when it could overflow or leave the exact range. */
  private arith (a: Ex, b: Ex, op: '+' | '-' | '*'): Ex | null {
    const t = numType(a.t, b.t)
    const mag = op === '*' ? a.mag * b.mag : a.mag + b.mag
    const den = op === '*' ? a.den + b.den : Math.max(a.den, b.den)
    if (!Number.isFinite(den) || den > 9 || mag * 2 ** den >= MAX_INT) return null
    if (t === 'int32' && mag >= INT32_SAFE) return null
    // DuckDB multiplies BIGINT by a decimal literal as DECIMAL(18+): keep big away from fractions.
    if (op === '*' && ((a.t === 'int64' && b.den > 0) || (b.t === 'int64' && a.den > 0))) return null
    return { sql: `${paren(a)} ${op} ${b.atom ? b.sql : `(${b.sql})`}`, t, agg: a.agg || b.agg, mag, den, intSum: a.intSum || b.intSum, nullable: a.nullable || b.nullable, atom: false }
  }

  private fn (name: string, a: Ex, t: SqlType): Ex {
    return { ...a, sql: `${name}(${a.sql})`, t, atom: true }
  }

  /** A text expression. */
  private text (depth: number): Ex {
    const r = this.rng
    if (depth <= 0 || r.chance(0.35)) {
      return r.weighted<() => Ex>([[4, () => COLS.region], [4, () => COLS.category], [1, () => COLS.id], [1, () => this.strLit()]])()
    }
    const choice = r.weighted([[3, 'lower'], [2, 'upper'], [3, 'concat'], [2, 'coalesce'], [2, 'case']])
    switch (choice) {
      case 'lower': case 'upper': return this.fn(choice, this.text(depth - 1), 'utf8')
      case 'concat': {
        const a = this.text(depth - 1)
        const b = r.chance(0.5) ? this.strLit() : this.text(depth - 1)
        return { ...a, sql: `${paren(a)} || ${paren(b)}`, nullable: a.nullable || b.nullable, atom: false }
      }
      case 'coalesce': return { ...COLS.category, sql: `coalesce(category, ${r.chance(0.5) ? "'none'" : 'region'})`, nullable: false }
      case 'case': {
        const p = this.predicate(1)
        const a = r.chance(0.5) ? this.strLit() : this.text(depth - 1)
        const b = r.chance(0.7) ? this.strLit() : this.text(depth - 1)
        const elseSql = r.chance(0.85) ? ` ELSE ${b.sql}` : ''
        return { ...a, sql: `CASE WHEN ${p.sql} THEN ${a.sql}${elseSql} END`, nullable: true, atom: true }
      }
    }
    return COLS.region
  }

  private strLit (): Ex {
    const s = this.rng.pick(['x', '-', 'none', 'Zeta', 'a_b', 'north', 'books', 'M'])
    return { sql: str(s), t: 'utf8', agg: false, mag: 0, den: 0, intSum: false, nullable: false, atom: true }
  }

  /** An expression with few distinct values: for GROUP BY and SELECT DISTINCT. */
  private groupable (): Ex {
    const r = this.rng
    return r.weighted<() => Ex>([
      [5, () => COLS.region],
      [4, () => COLS.category],
      [3, () => COLS.flag],
      [1, () => COLS.day],
      [1, () => COLS.qty],
      [2, () => this.fn(r.pick(['lower', 'upper']), r.pick([COLS.region, COLS.category]), 'utf8')],
      [2, () => ({ ...COLS.qty, sql: `qty % ${r.range(2, 12)}`, atom: false, mag: 12 })],
      [1, () => this.fn('length', r.pick([COLS.region, COLS.category]), 'int64')],
      [1, () => ({ ...COLS.category, sql: "coalesce(category, 'none')", nullable: false })],
      [2, () => {
        const v = this.sample('amount') ?? 100
        return { ...this.strLit(), sql: `CASE WHEN amount > ${num(v)} THEN 'high' WHEN amount IS NULL THEN 'none' ELSE 'low' END` }
      }],
      [1, () => ({ ...COLS.flag, sql: `amount > ${num(this.sample('amount') ?? 0)}`, atom: false })],
      [1, () => ({ ...COLS.amount, sql: 'round(amount, -3)' })]
    ])()
  }

  // ---- predicates ----

  /** A boolean expression for WHERE (and inside CASE). */
  predicate (depth: number): Ex {
    const r = this.rng
    if (depth > 0 && r.chance(0.45)) {
      // An unparenthesized AND/OR chain: SQL binds AND tighter than OR.
      const n = r.range(2, 4)
      const parts: string[] = []
      for (let i = 0; i < n; i++) {
        const p = this.predicate(depth - 1)
        if (i > 0) parts.push(r.chance(0.6) ? 'AND' : 'OR')
        parts.push(p.atom ? p.sql : `(${p.sql})`)
      }
      return this.boolEx(parts.join(' '), false)
    }
    if (depth > 0 && r.chance(0.1)) {
      const p = this.predicate(depth - 1)
      return this.boolEx(`NOT (${p.sql})`, true)
    }
    return this.atomPredicate()
  }

  /** `chainSafe`: binds tighter than AND / OR, so needs no parentheses inside a chain. */
  private boolEx (sql: string, chainSafe: boolean): Ex {
    return { sql, t: 'bool', agg: false, mag: 0, den: 0, intSum: false, nullable: true, atom: chainSafe }
  }

  /** A comparison-level condition (binds tighter than AND / OR). */
  private atomPredicate (): Ex {
    const r = this.rng
    const kind = r.weighted([[6, 'cmp'], [2, 'cmpcols'], [2, 'in'], [2, 'between'], [3, 'like'], [2, 'null'], [2, 'flag'], [2, 'time']])
    const cmp = (): string => r.pick(['=', '<>', '!=', '<', '<=', '>', '>='])
    switch (kind) {
      case 'cmp': {
        if (r.chance(0.35)) {
          const s = r.chance(0.7) ? r.pick([COLS.region, COLS.category]) : this.text(1)
          const v = s.sql.includes('region') ? r.pick(REGIONS) : this.sample('category') ?? 'books'
          const lit = s.sql.startsWith('lower(') ? v.toLowerCase() : s.sql.startsWith('upper(') ? v.toUpperCase() : v
          return this.boolEx(`${s.sql} ${cmp()} ${str(lit)}`, true)
        }
        const e = r.chance(0.6) ? r.pick([COLS.qty, COLS.amount, COLS.big]) : this.numeric(1)
        return this.boolEx(`${e.sql} ${cmp()} ${this.numLitFor(e).sql}`, true)
      }
      case 'cmpcols': {
        const [a, b] = r.pick([[COLS.qty, COLS.amount], [COLS.big, COLS.qty], [COLS.amount, COLS.big], [COLS.region, COLS.category], [COLS.qty, COLS.day]] as const)
        return this.boolEx(`${a.sql} ${cmp()} ${b.sql}`, true)
      }
      case 'in': {
        const not = r.chance(0.3) ? 'NOT ' : ''
        const n = r.range(1, 5)
        const c = r.pick(['region', 'category', 'qty', 'amount', 'big', 'flag'] as const)
        const vals = new Set<string>()
        for (let i = 0; i < n; i++) {
          if (c === 'region') vals.add(str(r.pick(REGIONS)))
          else if (c === 'category') vals.add(str(r.chance(0.8) ? this.sample('category') ?? 'books' : r.pick(CATEGORIES)))
          else if (c === 'flag') vals.add(r.chance(0.5) ? 'true' : 'false')
          else vals.add(num(this.sample(c) ?? 1))
        }
        if (r.chance(0.08) && c !== 'flag') vals.add('NULL')
        return this.boolEx(`${c} ${not}IN (${[...vals].join(', ')})`, true)
      }
      case 'between': {
        const not = r.chance(0.25) ? 'NOT ' : ''
        const e = r.chance(0.7) ? r.pick([COLS.qty, COLS.amount, COLS.big]) : this.numeric(1)
        let [lo, hi] = [Number(this.numLitFor(e).sql), Number(this.numLitFor(e).sql)]
        if (lo > hi && r.chance(0.9)) [lo, hi] = [hi, lo]
        return this.boolEx(`${e.sql} ${not}BETWEEN ${num(lo)} AND ${num(hi)}`, true)
      }
      case 'like': return this.boolEx(this.likePredicate(), true)
      case 'null': {
        const e = r.chance(0.7) ? r.pick([COLS.category, COLS.amount, COLS.flag, COLS.qty, COLS.big, COLS.day]) : r.chance(0.5) ? this.numeric(1) : this.text(1)
        return this.boolEx(`${e.sql} IS ${r.chance(0.5) ? 'NOT ' : ''}NULL`, true)
      }
      case 'flag': return this.boolEx(r.pick(['flag', 'NOT flag', 'flag = true', 'flag = false', 'flag <> true']), true)
      case 'time': {
        if (r.chance(0.5)) {
          const a = this.sample('ts') ?? 0
          const b = this.sample('ts') ?? 0
          return this.boolEx(r.chance(0.5) ? `ts ${cmp()} ${a}` : `ts BETWEEN ${Math.min(a, b)} AND ${Math.max(a, b)}`, true)
        }
        const d = this.sample('day') ?? 19_800
        return this.boolEx(r.chance(0.7) ? `day ${cmp()} ${d}` : `day IN (${d}, ${this.sample('day') ?? d})`, true)
      }
    }
    return this.boolEx('flag', true)
  }

  private likePredicate (): string {
    const r = this.rng
    const useRegion = r.chance(0.4)
    const value = useRegion ? r.pick(REGIONS) : this.sample('category') ?? 'books'
    const target = useRegion ? 'region' : r.chance(0.8) ? 'category' : "coalesce(category, '')"
    const ilike = r.chance(0.35)
    const not = r.chance(0.25) ? 'NOT ' : ''
    const escape = /[%_]/.test(value) && r.chance(0.7)
    const lit = (s: string): string => escape ? s.replace(/[!%_]/g, m => `!${m}`) : s
    let pattern: string
    const k = r.range(1, Math.max(1, value.length - 1))
    switch (r.int(5)) {
      case 0: pattern = `${lit(value.slice(0, k))}%`; break
      case 1: pattern = `%${lit(value.slice(k))}`; break
      case 2: pattern = `%${lit(value.slice(Math.max(0, k - 2), k + 1))}%`; break
      case 3: pattern = lit(value.slice(0, k)) + '_' + lit(value.slice(k + 1)); break
      default: pattern = lit(value)
    }
    if (ilike) pattern = r.chance(0.5) ? pattern.toUpperCase() : pattern.toLowerCase()
    // Uppercasing would turn the escape character into another; '!' has no case.
    return `${target} ${not}${ilike ? 'ILIKE' : 'LIKE'} ${str(pattern)}${escape ? " ESCAPE '!'" : ''}`
  }

  // ---- aggregates ----

  /**
   * An aggregate call. With `allowApprox`, sometimes an approximate one, returned as a ready
   * select item (with its DuckDB rewrite); approximate aggregates are never nested in expressions.
   */
  private aggregate (allowApprox: boolean): { ex: Ex, item?: Item } {
    const r = this.rng
    const fn = r.weighted<string>([
      [5, 'count*'], [3, 'count'], [3, 'countd'], [5, 'sum'], [4, 'avg'], [4, 'min'], [4, 'max'],
      [2, 'stddev_pop'], [2, 'var_pop'], [allowApprox ? 3 : 0, 'acd'], [allowApprox ? 4 : 0, 'quantile']
    ])
    const agg = (sql: string, t: SqlType, extra: Partial<Ex> = {}): Ex => ({ sql, t, agg: true, mag: 0, den: 0, intSum: false, nullable: true, atom: true, ...extra })
    const numArg = (): Ex => {
      const e = r.chance(0.6) ? r.pick([COLS.qty, COLS.amount, COLS.big]) : this.numeric(1)
      return Number.isFinite(e.den) ? e : COLS.amount
    }
    const anyArg = (): Ex => r.chance(0.7) ? this.column() : r.weighted<() => Ex>([[2, () => this.numeric(1)], [2, () => this.text(1)], [1, () => this.predicate(0)]])()
    switch (fn) {
      case 'count*': return { ex: agg('count(*)', 'int64', { nullable: false, mag: 1e7 }) }
      case 'count': return { ex: agg(`count(${anyArg().sql})`, 'int64', { nullable: false, mag: 1e7 }) }
      case 'countd': {
        const a = r.chance(0.7) ? r.pick([COLS.region, COLS.category, COLS.qty, COLS.flag, COLS.day, COLS.amount, COLS.big]) : anyArg()
        return { ex: agg(`count(DISTINCT ${a.sql})`, 'int64', { nullable: false, mag: 1e7 }) }
      }
      case 'sum': {
        const a = numArg()
        const t = isInt(a.t) ? 'int64' : 'float64'
        return { ex: agg(`sum(${a.sql})`, t, { mag: a.mag * 1e4, den: a.den, intSum: t === 'int64' }) }
      }
      case 'avg': return { ex: agg(`avg(${numArg().sql})`, 'float64', { mag: 2 ** 50, den: Infinity }) }
      case 'stddev_pop': case 'var_pop': return { ex: agg(`${fn}(${numArg().sql})`, 'float64', { mag: 2 ** 100, den: Infinity }) }
      case 'min': case 'max': {
        const a = r.weighted<() => Ex>([[6, () => this.column()], [2, () => this.numeric(1)], [2, () => this.text(1)]])()
        return { ex: agg(`${fn}(${a.sql})`, a.t, { mag: a.mag, den: a.den }) }
      }
      case 'acd': {
        const a = anyArg()
        const ex = agg(`approx_count_distinct(${a.sql})`, 'int64', { nullable: false })
        return { ex, item: { sql: ex.sql, duckSql: `count(DISTINCT ${a.sql})`, alias: this.maybeAlias(0.9), approx: { kind: 'distinct', arg: a.sql }, intSum: false, float: false } }
      }
      case 'quantile': {
        const a = r.weighted<() => Ex>([[6, () => r.pick([COLS.qty, COLS.amount, COLS.big])], [2, () => r.pick([COLS.ts, COLS.day])], [2, () => numArg()]])()
        const q = r.pick(QUANTILES)
        const ex = agg(`approx_quantile(${a.sql}, ${num(q)})`, a.t)
        const list = `list(${a.sql} ORDER BY ${a.sql}) FILTER (WHERE ${a.sql} IS NOT NULL)`
        return { ex, item: { sql: ex.sql, duckSql: list, alias: this.maybeAlias(0.9), approx: { kind: 'quantile', arg: a.sql, q, argType: a.t }, intSum: false, float: a.t === 'float64' } }
      }
    }
    return { ex: agg('count(*)', 'int64') }
  }

  /** An expression over exact aggregates. */
  private postAggregate (): Ex {
    const r = this.rng
    const a = this.aggregate(false).ex
    switch (r.int(5)) {
      case 0: case 1: {
        if (!isNum(a.t)) break
        const b = r.chance(0.5) ? this.aggregate(false).ex : this.intLit(1, 10)
        if (!isNum(b.t)) break
        const op = r.pick(['+', '-', '*'] as const)
        // Products of two aggregates could overflow int64 (sum * sum): keep to a literal factor.
        const e = op === '*' ? this.arith(a, this.intLit(-3, 5), '*') : this.arith(a, b, op)
        if (e !== null) return e
        break
      }
      case 2: {
        const n = r.pick([1, 5, 20, 100, 500])
        return { ...a, sql: `CASE WHEN count(*) > ${n} THEN 'many' ELSE 'few' END`, t: 'utf8', atom: true, intSum: false }
      }
      case 3:
        return { ...a, sql: `coalesce(max(category), 'none')`, t: 'utf8', atom: true, intSum: false }
      case 4:
        return { ...a, sql: 'max(amount) - min(amount)', t: 'float64', atom: false, intSum: false, den: 3 }
    }
    return a
  }

  private havingPredicate (columnKeys: Ex[]): string {
    const r = this.rng
    const n = r.range(1, 2)
    const parts: string[] = []
    for (let i = 0; i < n; i++) {
      if (i > 0) parts.push(r.chance(0.6) ? 'AND' : 'OR')
      const kind = r.weighted([[4, 'count'], [3, 'sum'], [2, 'minmax'], [1, 'avg'], [columnKeys.length > 0 ? 2 : 0, 'key']])
      const cmp = r.pick(['>', '>=', '<', '<=', '<>'])
      switch (kind) {
        case 'count':
          parts.push(`${r.pick(['count(*)', 'count(amount)', 'count(DISTINCT category)', 'count(flag)'])} ${cmp} ${r.pick([1, 2, 5, 10, 20, 50, 100, 300, 1000])}`)
          break
        case 'sum':
          parts.push(r.chance(0.5) ? `sum(qty) ${cmp} ${r.range(0, 20_000)}` : `sum(amount) ${cmp} ${num(r.range(-1000, 400_000) / 4)}`)
          break
        case 'minmax':
          parts.push(r.pick([
            `min(amount) ${cmp} ${num(this.sample('amount') ?? 0)}`,
            `max(qty) ${cmp} ${this.sample('qty') ?? 10}`,
            `max(category) ${cmp} ${str(this.sample('category') ?? 'm')}`,
            `min(ts) ${cmp} ${this.sample('ts') ?? 0}`
          ]))
          break
        case 'avg':
          parts.push(`avg(qty) ${cmp} ${num(r.range(0, 800) / 4)}`)
          break
        case 'key': {
          const k = r.pick(columnKeys)
          if (k.t === 'utf8') parts.push(`${k.sql} <> ${str(k.sql === 'region' ? r.pick(REGIONS) : this.sample('category') ?? 'x')}`)
          else if (k.t === 'bool') parts.push(`${k.sql} IS NOT NULL`)
          else parts.push(`${k.sql} ${cmp} ${this.sample(k.sql as 'qty') ?? 1}`)
          break
        }
      }
    }
    return parts.join(' ')
  }
}

/** Several select items with one name would be refused: rename later duplicates of an alias-less expression. */
function dedupe (items: Item[]): void {
  const seen = new Set<string>()
  let n = 0
  for (const it of items) {
    const name = it.alias ?? it.sql
    if (seen.has(name)) it.alias = `d${n++}`
    seen.add(it.alias ?? it.sql)
  }
}

/** The fractional part's smallest power-of-two step, for a dyadic literal's denominator. */
function denominatorPart (x: number): number {
  let f = Math.abs(x) % 1
  let step = 1
  while (f !== 0 && step > 2 ** -20) {
    step /= 2
    if (f >= step) f -= step
  }
  return step
}

export interface RenderOptions {
  /** The text of a select item's expression (its alias is added). */
  item: (it: Item) => string
  /** Add the hidden ORDER BY keys as columns `__k0, ...` after the select items. */
  hidden: boolean
  /** Keep LIMIT and OFFSET. */
  window: boolean
}

/** Renders a generated query; the variants differ only in select items, hidden keys and window. */
export function renderSql (q: Omit<GenQuery, 'seed' | 'sql' | 'duckSql'>, opts: RenderOptions): string {
  const items = q.star ? ['*'] : q.items.map(it => it.alias === null ? opts.item(it) : `${opts.item(it)} AS ${it.alias}`)
  const select = [...items, ...(opts.hidden ? q.hiddenKeys.map((k, i) => `${k} AS __k${i}`) : [])].join(', ')
  return [
    `SELECT ${q.distinct ? 'DISTINCT ' : ''}${select} FROM ${SPACE_NAME}`,
    q.where !== null ? ` WHERE ${q.where}` : '',
    q.groupBy.length > 0 ? ` GROUP BY ${q.groupBy.join(', ')}` : '',
    q.having !== null ? ` HAVING ${q.having}` : '',
    q.orderBy.length > 0 ? ` ORDER BY ${q.orderBy.map(k => `${k.ref}${k.direction}${k.nulls}`).join(', ')}` : '',
    opts.window && q.limit !== null ? ` LIMIT ${q.limit}` : '',
    opts.window && q.offset !== null ? ` OFFSET ${q.offset}` : ''
  ].join('')
}

/** Query `seed` over `rows`. */
export function generateQuery (seed: number, rows: readonly DataRow[]): GenQuery {
  return new QueryGenerator(seed, rows).generate()
}
