import { vectorDim } from '../../schema/index.js'
import type { ColumnType, SpaceDef } from '../../schema/index.js'
import { ARITHMETIC_OPS, COMPARISON_OPS, SCORE_COLUMN, collect, describeOrigin, isAggregateFn, printExpr } from '../model/index.js'
import type { AggSpec, AggregateItem, Expr, Origin, Origins, PlanNode, QueryNode } from '../model/index.js'
import { completeProblems } from './complete.js'
import { SCALAR_FUNCTION_NAMES, arithmeticType, comparable, isIntegerType, isNumericType, isScalarType, isTemporalType, scalarFunctionType, unify } from './typing.js'
import type { ValueType } from './typing.js'

export type { ValueType } from './typing.js'

/** A type in a typed plan: a column type by its Arrow name, or `null` for an untyped NULL. */

/** Most rows a LIMIT may ask for, and the furthest OFFSET: bounds on coordinator memory. */
export const MAX_LIMIT = 1_000_000
export const MAX_OFFSET = 1_000_000
/** Most results of a top-K search. */
export const MAX_TOP_K = 10_000
/** Spread bounds: hops, seeds. */
export const MAX_SPREAD_HOPS = 16
export const MAX_SPREAD_SEEDS = 1_000
/** Most buckets a terms aggregation may ask for. */
export const MAX_TERMS_SIZE = 10_000

export type QueryErrorCode =
  | 'unknown_space' | 'unknown_column' | 'type_mismatch' | 'aggregate_misplaced' | 'not_grouped' | 'unknown_function'
  | 'bad_limit' | 'vector_dimension' | 'invalid'

/** One problem with a query. `column` names the column involved; `at` says where (SQL line and column, or JSON path). */
export interface QueryError {
  code: QueryErrorCode
  message: string
  column?: string
  at?: string
  origin?: Origin
}

export interface OutputColumn {
  name: string
  type: ValueType
}

export type ValidationResult =
  | { ok: true, plan: PlanNode, columns: OutputColumn[], answers: 'rows' | 'aggregations' }
  | { ok: false, errors: QueryError[] }

export interface ValidateOptions {
  /** Source positions from the front end, for error messages. */
  origins?: Origins
}

const isOrderable = (t: ValueType): boolean => isScalarType(t)

type Scope = Map<string, ValueType>

interface Frame {
  scope: Scope
  /** Space columns hidden by an Aggregate below: naming one is a GROUP BY mistake. */
  hidden: Scope | null
  answers: 'rows' | 'aggregations'
}

/**
 * Checks a plan against the schemas of the spaces it reads and types every output column.
 * Reports every error it finds (not just the first), each naming the column and where it is.
 */
export function validatePlan (plan: PlanNode, spaces: SpaceDef | ((name: string) => SpaceDef | undefined), opts: ValidateOptions = {}): ValidationResult {
  const v = new Validator(typeof spaces === 'function' ? spaces : name => name === spaces.name ? spaces : undefined, opts.origins)
  const frame = v.plan(plan)
  if (v.errors.length > 0 || frame === undefined) {
    // Errors in the order they appear in the SQL text; JSON paths keep the order found.
    const key = (e: QueryError): number => e.origin !== undefined && 'offset' in e.origin ? e.origin.offset : Number.MAX_SAFE_INTEGER
    return { ok: false, errors: v.errors.map((e, i) => ({ e, i })).sort((a, b) => key(a.e) - key(b.e) || a.i - b.i).map(x => x.e) }
  }
  return { ok: true, plan, columns: [...frame.scope].map(([name, type]) => ({ name, type })), answers: frame.answers }
}

class Validator {
  readonly errors: QueryError[] = []

  constructor (private readonly lookup: (name: string) => SpaceDef | undefined, private readonly origins: Origins | undefined) {}

  plan (n: PlanNode): Frame | undefined {
    switch (n.kind) {
      case 'Scan': {
        const def = this.space(n.space, n)
        if (def === undefined) return undefined
        const all: Scope = new Map(def.schema.map(c => [c.name, c.type]))
        if (n.columns === null) return { scope: all, hidden: null, answers: 'rows' }
        const scope: Scope = new Map()
        for (const c of n.columns) {
          const t = all.get(c)
          if (t === undefined) this.error('unknown_column', `unknown column '${c}' in space '${n.space}'`, n, c)
          else scope.set(c, t)
        }
        return { scope, hidden: null, answers: 'rows' }
      }
      case 'Filter': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        const clause = f.hidden === null ? 'WHERE' : 'HAVING'
        const t = this.expr(n.predicate, f, clause)
        if (t !== undefined && t !== 'bool' && t !== 'null') this.error('type_mismatch', `${clause} needs a boolean condition; ${printExpr(n.predicate)} is ${t}`, n.predicate)
        return f
      }
      case 'Project': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        const scope: Scope = new Map()
        for (const item of n.items) {
          const t = this.expr(item.expr, f, 'SELECT')
          if (scope.has(item.alias)) this.error('invalid', `two output columns are named '${item.alias}'`, item.expr, item.alias)
          scope.set(item.alias, t ?? 'null')
        }
        return { scope, hidden: null, answers: f.answers }
      }
      case 'Aggregate': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        const scope: Scope = new Map()
        for (const g of n.groupBy) {
          const t = this.expr(g.expr, f, 'GROUP BY')
          if (t !== undefined && vectorDim(t as ColumnType) !== undefined) this.error('type_mismatch', `cannot group by ${printExpr(g.expr)} of type ${t}`, g.expr, colName(g.expr))
          scope.set(g.alias, t ?? 'null')
        }
        for (const a of n.aggregates) {
          if (scope.has(a.alias)) this.error('invalid', `two output columns are named '${a.alias}'`, a.args[0] ?? n, a.alias)
          scope.set(a.alias, this.aggregateItem(a, f) ?? 'null')
        }
        for (const s of n.aggs) this.aggSpec(s, f, 1)
        return { scope, hidden: f.scope, answers: n.aggs.length > 0 ? 'aggregations' : 'rows' }
      }
      case 'Sort': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        for (const k of n.keys) {
          const t = this.expr(k.expr, f, 'ORDER BY')
          if (t !== undefined && !isOrderable(t)) this.error('type_mismatch', `cannot sort by ${printExpr(k.expr)} of type ${t}`, k.expr, colName(k.expr))
        }
        return f
      }
      case 'Limit': {
        const f = this.plan(n.input)
        if (n.limit !== null && !(Number.isInteger(n.limit) && n.limit >= 0 && n.limit <= MAX_LIMIT)) this.error('bad_limit', `LIMIT must be an integer from 0 to ${MAX_LIMIT}, got ${n.limit}`, n)
        if (!(Number.isInteger(n.offset) && n.offset >= 0 && n.offset <= MAX_OFFSET)) this.error('bad_limit', `OFFSET must be an integer from 0 to ${MAX_OFFSET}, got ${n.offset}`, n)
        return f
      }
      case 'TopK': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        const t = f.scope.get(n.column)
        if (t === undefined) {
          this.error('unknown_column', `unknown column '${n.column}'`, n, n.column)
        } else {
          const dim = vectorDim(t as ColumnType)
          if (dim === undefined) this.error('type_mismatch', `top-K search needs a vector column; '${n.column}' is ${t}`, n, n.column)
          else if (dim !== n.vector.length) this.error('vector_dimension', `'${n.column}' is ${t} but the query vector has ${n.vector.length} numbers`, n, n.column)
        }
        if (!n.vector.every(x => Number.isFinite(x))) this.error('invalid', 'the query vector must hold finite numbers', n, n.column)
        if (!(Number.isInteger(n.k) && n.k >= 1 && n.k <= MAX_TOP_K)) this.error('bad_limit', `k must be an integer from 1 to ${MAX_TOP_K}, got ${n.k}`, n)
        const scope = new Map(f.scope)
        scope.set(SCORE_COLUMN, 'float64')
        return { scope, hidden: null, answers: 'rows' }
      }
      case 'Complete': {
        const f = this.plan(n.input)
        if (f === undefined) return undefined
        // Each problem at its own place under the node's: `complete.record.age` in a JSON query.
        const at = this.origins?.get(n)
        for (const p of completeProblems(n, f.scope)) {
          this.errorAt(p.code, p.message, at !== undefined && 'path' in at ? { path: `${at.path}.${p.field}` } : at, p.column)
        }
        const scope = new Map(f.scope)
        scope.set(SCORE_COLUMN, 'float64')
        return { scope, hidden: null, answers: 'rows' }
      }
      case 'Spread': {
        const def = this.space(n.space, n)
        if (def === undefined) return undefined
        const links = def.schema.find(c => c.name === n.linksColumn)
        if (links === undefined) this.error('unknown_column', `unknown column '${n.linksColumn}' in space '${n.space}'`, n, n.linksColumn)
        else if (links.type !== 'utf8' && links.type !== 'list<utf8>') this.error('type_mismatch', `links column '${n.linksColumn}' must be utf8 or list<utf8> (record ids), not ${links.type}`, n, n.linksColumn)
        if (n.seeds.length < 1 || n.seeds.length > MAX_SPREAD_SEEDS) this.error('invalid', `spread needs 1 to ${MAX_SPREAD_SEEDS} seeds, got ${n.seeds.length}`, n)
        if (!(n.decay > 0 && n.decay <= 1)) this.error('invalid', `decay must be in (0, 1], got ${n.decay}`, n)
        if (!(Number.isInteger(n.maxHops) && n.maxHops >= 1 && n.maxHops <= MAX_SPREAD_HOPS)) this.error('invalid', `maxHops must be an integer from 1 to ${MAX_SPREAD_HOPS}, got ${n.maxHops}`, n)
        if (!(n.threshold >= 0)) this.error('invalid', `threshold must be 0 or more, got ${n.threshold}`, n)
        if (n.limit !== null && !(Number.isInteger(n.limit) && n.limit >= 0 && n.limit <= MAX_LIMIT)) this.error('bad_limit', `limit must be an integer from 0 to ${MAX_LIMIT}, got ${n.limit}`, n)
        return { scope: new Map<string, ValueType>([['id', 'utf8'], ['activation', 'float64'], ['hops', 'int32']]), hidden: null, answers: 'rows' }
      }
    }
  }

  private space (name: string, n: QueryNode): SpaceDef | undefined {
    const def = this.lookup(name)
    if (def === undefined) this.error('unknown_space', `unknown space '${name}'`, n)
    return def
  }

  private aggregateItem (a: AggregateItem, f: Frame): ValueType | undefined {
    const types = a.args.map(x => this.expr(x, f, `${a.fn}()`))
    if (types.some(t => t === undefined)) return undefined
    const t = types[0] as ValueType
    const bad = (want: string): undefined => { this.error('type_mismatch', `${a.fn}() needs ${want}; ${printExpr(a.args[0]!)} is ${t}`, a.args[0]!, colName(a.args[0]!)); return undefined }
    switch (a.fn) {
      case 'count': return 'int64'
      case 'sum': return isNumericType(t) ? (isIntegerType(t) ? 'int64' : 'float64') : bad('a number')
      case 'avg': case 'stddev_pop': case 'var_pop': return isNumericType(t) ? 'float64' : bad('a number')
      case 'min': case 'max': return isOrderable(t) ? t : bad('a value that can be ordered')
      case 'approx_count_distinct': return isScalarType(t) ? 'int64' : bad('a scalar value')
      case 'approx_quantile': {
        const q = a.params.quantile
        if (typeof q !== 'number' || !(q >= 0 && q <= 1)) this.error('invalid', `approx_quantile() quantile must be between 0 and 1, got ${String(q)}`, a.args[0]!)
        return isNumericType(t) || isTemporalType(t) ? t : bad('a number, timestamp or date')
      }
    }
  }

  private aggSpec (s: AggSpec, f: Frame, depth: number): void {
    const at = this.origins?.get(s)
    const fieldAt: Origin | undefined = at !== undefined && 'path' in at ? { path: `${at.path}.field` } : at
    let t: ValueType | undefined
    if (s.field !== null) {
      t = f.scope.get(s.field)
      if (t === undefined) this.errorAt('unknown_column', `unknown column '${s.field}' in aggregation '${s.name}'`, fieldAt, s.field)
    }
    const need = (ok: (t: ValueType) => boolean, want: string): void => {
      if (t !== undefined && !ok(t)) this.errorAt('type_mismatch', `${s.type} aggregation '${s.name}' needs ${want}; '${s.field ?? ''}' is ${t}`, fieldAt, s.field ?? undefined)
    }
    const p = s.params
    const paramAt = (k: string): Origin | undefined => at !== undefined && 'path' in at ? { path: `${at.path}.${k}` } : at
    switch (s.type) {
      case 'terms':
        need(isScalarType, 'a scalar column')
        if (p.size !== undefined && !(Number.isInteger(p.size) && (p.size as number) >= 1 && (p.size as number) <= MAX_TERMS_SIZE)) this.errorAt('invalid', `size must be an integer from 1 to ${MAX_TERMS_SIZE}`, paramAt('size'))
        break
      case 'histogram':
        need(isNumericType, 'a numeric column')
        if (!(typeof p.interval === 'number' && p.interval > 0)) this.errorAt('invalid', 'interval must be a number above 0', paramAt('interval'))
        break
      case 'date_histogram':
        need(t => isTemporalType(t), 'a timestamp or date column')
        if (p.calendar_interval === undefined && p.fixed_interval === undefined && p.interval === undefined) this.errorAt('invalid', 'needs calendar_interval or fixed_interval', paramAt('calendar_interval'))
        break
      case 'range':
        need(t => isNumericType(t) || isTemporalType(t), 'a numeric, timestamp or date column')
        if (!Array.isArray(p.ranges) || p.ranges.length === 0) this.errorAt('invalid', 'ranges must be a non-empty array of {from?, to?, key?}', paramAt('ranges'))
        break
      case 'filters':
        for (const x of s.filters) {
          const pt = this.expr(x.predicate, f, `filter '${x.key}'`)
          if (pt !== undefined && pt !== 'bool' && pt !== 'null') this.error('type_mismatch', `filter '${x.key}' is not a condition`, x.predicate)
        }
        break
      case 'stats': case 'extended_stats': case 'avg': case 'sum': case 'percentiles':
        need(isNumericType, 'a numeric column')
        if (s.type === 'percentiles' && p.percents !== undefined && !(Array.isArray(p.percents) && p.percents.every(x => typeof x === 'number' && x >= 0 && x <= 100))) {
          this.errorAt('invalid', 'percents must be an array of numbers from 0 to 100', paramAt('percents'))
        }
        break
      case 'min': case 'max':
        need(t => isNumericType(t) || isTemporalType(t), 'a numeric, timestamp or date column')
        break
      case 'cardinality':
        need(isScalarType, 'a scalar column')
        break
      case 'value_count':
        break
    }
    for (const c of s.aggs) this.aggSpec(c, f, depth + 1)
  }

  /** The type of an expression in a frame; undefined when it has an error (already reported). */
  private expr (e: Expr, f: Frame, clause: string): ValueType | undefined {
    switch (e.kind) {
      case 'Column': {
        const t = f.scope.get(e.name)
        if (t !== undefined) return t
        if (f.hidden?.has(e.name) === true) this.error('not_grouped', `column '${e.name}' must appear in GROUP BY or be used in an aggregate function`, e, e.name)
        else this.error('unknown_column', `unknown column '${e.name}'${e.name.toLowerCase() !== e.name && f.scope.has(e.name.toLowerCase()) ? ` (did you mean '${e.name.toLowerCase()}'?)` : ''}`, e, e.name)
        return undefined
      }
      case 'Literal': return e.type
      case 'Binary': {
        const l = this.expr(e.left, f, clause)
        const r = this.expr(e.right, f, clause)
        if (l === undefined || r === undefined) return undefined
        if (e.op === 'AND' || e.op === 'OR') {
          for (const [side, t] of [[e.left, l], [e.right, r]] as const) {
            if (t !== 'bool' && t !== 'null') this.error('type_mismatch', `${e.op} needs boolean operands; ${printExpr(side)} is ${t}`, side, colName(side))
          }
          return 'bool'
        }
        if (COMPARISON_OPS.has(e.op)) {
          if (!comparable(l, r)) this.mismatch(`cannot compare ${describe(e.left, l)} with ${describe(e.right, r)}`, e)
          return 'bool'
        }
        if (e.op === '||') {
          if ((l !== 'utf8' && l !== 'null') || (r !== 'utf8' && r !== 'null')) this.mismatch(`|| joins strings; got ${describe(e.left, l)} and ${describe(e.right, r)}`, e)
          return 'utf8'
        }
        if (ARITHMETIC_OPS.has(e.op)) {
          const ln = isNumericType(l) || l === 'null'
          const rn = isNumericType(r) || r === 'null'
          if (!ln || !rn) { this.mismatch(`${e.op} needs numbers; got ${describe(e.left, l)} and ${describe(e.right, r)}`, e); return undefined }
          return arithmeticType(e.op, l, r)
        }
        return undefined
      }
      case 'Unary': {
        const t = this.expr(e.operand, f, clause)
        if (t === undefined) return undefined
        if (e.op === 'NOT') {
          if (t !== 'bool' && t !== 'null') this.mismatch(`NOT needs a boolean; ${describe(e.operand, t)}`, e)
          return 'bool'
        }
        if (!isNumericType(t) && t !== 'null') this.mismatch(`cannot negate ${describe(e.operand, t)}`, e)
        return t
      }
      case 'InList': {
        const t = this.expr(e.operand, f, clause)
        for (const v of e.values) {
          const vt = this.expr(v, f, clause)
          if (t !== undefined && vt !== undefined && !comparable(t, vt)) this.mismatch(`IN compares ${describe(e.operand, t)} with ${describe(v, vt)}`, e)
        }
        return 'bool'
      }
      case 'Between': {
        const t = this.expr(e.operand, f, clause)
        for (const v of [e.low, e.high]) {
          const vt = this.expr(v, f, clause)
          if (t !== undefined && vt !== undefined && !comparable(t, vt)) this.mismatch(`BETWEEN compares ${describe(e.operand, t)} with ${describe(v, vt)}`, e)
        }
        return 'bool'
      }
      case 'Like': {
        const t = this.expr(e.operand, f, clause)
        const p = this.expr(e.pattern, f, clause)
        if (t !== undefined && t !== 'utf8' && t !== 'null') this.mismatch(`LIKE needs a utf8 value; ${describe(e.operand, t)}`, e)
        if (p !== undefined && p !== 'utf8' && p !== 'null') this.mismatch(`a LIKE pattern must be utf8; ${describe(e.pattern, p)}`, e)
        return 'bool'
      }
      case 'IsNull':
        this.expr(e.operand, f, clause)
        return 'bool'
      case 'Call': {
        if (isAggregateFn(e.name)) {
          this.error('aggregate_misplaced', `aggregate function ${e.name}() is not allowed in ${clause}`, e, colName(e.args[0]))
          return undefined
        }
        const types = e.args.map(a => this.expr(a, f, clause))
        if (types.some(t => t === undefined)) return undefined
        const r = scalarFunctionType(e.name, types as ValueType[])
        if (r === undefined) {
          this.error('unknown_function', `unknown function ${e.name}() (scalar functions: ${SCALAR_FUNCTION_NAMES.join(', ')})`, e)
          return undefined
        }
        if (e.distinct) this.error('invalid', `DISTINCT is only for aggregates, not ${e.name}()`, e)
        if ('error' in r) { this.mismatch(r.error, e); return undefined }
        return r.type
      }
      case 'Case': {
        const op = e.operand === null ? undefined : this.expr(e.operand, f, clause)
        let out: ValueType | undefined = 'null'
        for (const w of e.whens) {
          const wt = this.expr(w.when, f, clause)
          if (wt !== undefined) {
            if (e.operand === null && wt !== 'bool' && wt !== 'null') this.mismatch(`WHEN needs a condition; ${describe(w.when, wt)}`, w.when)
            if (op !== undefined && !comparable(op, wt)) this.mismatch(`CASE compares ${describe(e.operand!, op)} with ${describe(w.when, wt)}`, w.when)
          }
          out = this.branch(out, this.expr(w.then, f, clause), w.then)
        }
        if (e.else !== null) out = this.branch(out, this.expr(e.else, f, clause), e.else)
        return out
      }
    }
  }

  private branch (acc: ValueType | undefined, t: ValueType | undefined, at: Expr): ValueType | undefined {
    if (acc === undefined || t === undefined) return undefined
    const u = unify(acc, t)
    if (u === undefined) this.mismatch(`CASE branches mix ${acc} and ${t}`, at)
    return u
  }

  private mismatch (message: string, e: Expr): void {
    this.error('type_mismatch', message, e, colName(e))
  }

  private error (code: QueryErrorCode, message: string, node: QueryNode | object, column?: string): void {
    this.errorAt(code, message, this.originOf(node), column)
  }

  private errorAt (code: QueryErrorCode, message: string, origin: Origin | undefined, column?: string): void {
    const at = describeOrigin(origin)
    const err: QueryError = { code, message: at === undefined ? message : `${message} at ${at}`, ...(column !== undefined ? { column } : {}), ...(at !== undefined ? { at, origin } : {}) }
    this.errors.push(err)
  }

  /** The node's own position, else that of the first column under it that has one. */
  private originOf (node: QueryNode | object): Origin | undefined {
    const own = this.origins?.get(node)
    if (own !== undefined || this.origins === undefined || !('kind' in node)) return own
    for (const c of collect(node as QueryNode, (n): n is QueryNode => n.kind === 'Column')) {
      const o = this.origins.get(c)
      if (o !== undefined) return o
    }
    return undefined
  }
}

/** The first column an expression mentions, for the error's `column` field. */
function colName (e: Expr | undefined): string | undefined {
  if (e === undefined) return undefined
  return collect(e, (n): n is Expr => n.kind === 'Column').map(c => (c as { name: string }).name)[0]
}

function describe (e: Expr, t: ValueType): string {
  return e.kind === 'Column' ? `'${e.name}' (${t})` : e.kind === 'Literal' ? `${printExpr(e)} (${t})` : `${printExpr(e)} (${t})`
}
