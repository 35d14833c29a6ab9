import pg from 'node-sql-parser/build/postgresql.js'
import type { SpaceDef } from '../../schema/index.js'
import {
  aggregate, and, between, binary, call, caseWhen, collect, column, filter, float64Literal, inList, int64Literal, isAggregateFn, isNull, like,
  limit, literal, negate, not, or, planEquals, printExpr, project, replaceExprs, scan, sort, sortKey, MAX_PLAN_DEPTH
} from '../model/index.js'
import type { AggregateFn, AggParam, BinaryOp, CallNode, Expr, Origin, Origins, PlanNode, SortKey } from '../model/index.js'
import { JsonQueryError, parseCompleteBody } from '../json/index.js'
import { SqlError } from './errors.js'

/** node-sql-parser's AST is loosely typed; we check each shape as we read it. */
type Ast = any // eslint-disable-line @typescript-eslint/no-explicit-any

/** Longest SQL text accepted: 1 MiB keeps parser time and memory bounded. */
export const MAX_SQL_LENGTH = 1 << 20

/**
 * Deepest syntax tree converted: the converter recurses a few frames per level of the grammar's
 * tree, and this keeps it well clear of a stack overflow. A tree this deep makes a plan far over
 * MAX_PLAN_DEPTH, the limit every peer applies, which the coordinator checks on the plan itself
 * as the query enters (QueryService); this only refuses, with the same message, what could not
 * be converted to be checked.
 */
const MAX_AST_DEPTH = 4 * MAX_PLAN_DEPTH
const TOO_DEEP = `the query nests deeper than ${MAX_PLAN_DEPTH} levels (MAX_PLAN_DEPTH; each term of a chain of AND, OR or arithmetic is a level)`

export interface ParseSqlOptions {
  /** Looks up a space, for `SELECT *`; without it, `SELECT *` alone reads every column. */
  space?: (name: string) => SpaceDef | undefined
}

export interface ParsedSql {
  plan: PlanNode
  /** Where each expression node came from in the SQL, for validation errors. */
  origins: Origins
}

const parser = new pg.Parser()
// Postgres's grammar is the closest node-sql-parser has to DuckDB's: double-quoted identifiers,
// single-quoted strings, `count(DISTINCT x)`, NULLS FIRST/LAST, LIMIT/OFFSET.
const PARSE_OPTIONS = { database: 'PostgresQL', parseOptions: { includeLocations: true } }

/**
 * The grammar reads backslash escapes in strings (as MySQL does); DuckDB and standard SQL do not:
 * `'a\\%'` is three characters and `ESCAPE '\\'` is common. So backslashes are hidden behind a
 * private-use character of the same length (offsets stay true) and put back in every value.
 */
const BACKSLASH_STAND_IN = '\uE000'
const unhide = (s: string): string => s.replace(/\uE000/g, '\\')

const BINARY_OPS: Record<string, BinaryOp> = {
  '=': '=', '<>': '<>', '!=': '<>', '<': '<', '<=': '<=', '>': '>', '>=': '>=',
  '+': '+', '-': '-', '*': '*', '/': '/', '%': '%', '||': '||', AND: 'AND', OR: 'OR'
}

/**
 * Parses one SELECT over one space into a plan:
 * Project(Limit(Sort(Filter[having](Aggregate(Filter[where](Scan)))))), leaving out what the
 * query does not use. Aggregate calls are lifted into the Aggregate node and referred to by
 * their output names above it; ORDER BY and GROUP BY accept select aliases and 1-based positions.
 */
export function parseSql (sql: string, opts: ParseSqlOptions = {}): ParsedSql {
  if (sql.length > MAX_SQL_LENGTH) throw new SqlError('invalid', `SQL of ${sql.length} characters; at most ${MAX_SQL_LENGTH}`)
  if (sql.includes(BACKSLASH_STAND_IN)) throw new SqlError('invalid', 'the SQL contains U+E000, which Shoal reserves', { offset: sql.indexOf(BACKSLASH_STAND_IN) })
  return new Converter(sql, opts).statement(astOf(sql))
}

/**
 * Syntax trees of recent SQL texts. The grammar is most of a parse (0.3-1 ms for a short
 * query, against microseconds for the rest), and clients repeat their queries; the tree does not
 * depend on any space, so a cached one serves whatever the schema is now. Frozen: the converter
 * only reads it, and must not be able to change a shared one.
 */
const astCache = new Map<string, Ast>()
const AST_CACHE_ENTRIES = 256
const AST_CACHE_MAX_SQL = 8192

function astOf (sql: string): Ast {
  const hit = astCache.get(sql)
  if (hit !== undefined) {
    // Most recently used last: the first entry is the one to drop.
    astCache.delete(sql)
    astCache.set(sql, hit)
    return hit
  }
  let ast: Ast
  try {
    ast = parser.astify(sql.replace(/\\/g, BACKSLASH_STAND_IN), PARSE_OPTIONS)
  } catch (err) {
    // The grammar recurses per nesting level (parentheses, operators): a deep enough text
    // overflows it. That is the text's size, not a fault of ours.
    if (err instanceof RangeError) throw new SqlError('invalid', TOO_DEEP, { cause: err })
    const loc = (err as { location?: { start?: { offset: number, line: number, column: number } } }).location?.start
    const found = (err as { found?: string | null }).found
    const what = found === undefined ? 'syntax error' : found === null ? 'unexpected end of the query' : `unexpected '${found}'`
    throw new SqlError('syntax', what, { offset: loc?.offset, line: loc?.line, column: loc?.column, cause: err })
  }
  if (nestsDeeper(ast, MAX_AST_DEPTH)) throw new SqlError('invalid', TOO_DEEP)
  if (sql.length <= AST_CACHE_MAX_SQL) {
    if (astCache.size >= AST_CACHE_ENTRIES) astCache.delete(astCache.keys().next().value!)
    astCache.set(sql, deepFreeze(ast))
  }
  return ast
}

/** Whether a tree of plain data nests deeper than `limit` (iterative: the tree may be too deep to recurse over). */
function nestsDeeper (root: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[root, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (depth > limit) return true
    for (const k of Object.keys(v)) stack.push([(v as Record<string, unknown>)[k], depth + 1])
  }
  return false
}

function deepFreeze<T> (v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  }
  return v
}

class Converter {
  readonly origins: Origins = new WeakMap()
  private table = ''
  private tableAlias: string | null = null
  /** `FROM complete('space', '{record}', k)`: the call's arguments and where it stands. */
  private completeCall: { args: Ast[], offset: number } | null = null
  /** The offset of the innermost AST node that carried a location: where we search for names. */
  private base = 0

  constructor (private readonly sql: string, private readonly opts: ParseSqlOptions) {}

  statement (ast: Ast): ParsedSql {
    if (Array.isArray(ast)) {
      if (ast.length !== 1) this.unsupported(`${ast.length} statements (send one SELECT)`, 'multiple statements', 0)
      ast = ast[0]
    }
    if (ast.type !== 'select') this.unsupported(`${String(ast.type).toUpperCase()} statements (only SELECT)`, String(ast.type).toUpperCase(), 0)
    return { plan: this.select(ast), origins: this.origins }
  }

  private select (ast: Ast): PlanNode {
    if (ast.with != null) this.unsupported('WITH', 'WITH', this.keyword('with'))
    if (ast._next != null || ast.set_op != null) this.unsupported('UNION/INTERSECT/EXCEPT', 'set operation', this.keyword(String(ast.set_op ?? 'union')))
    if (ast.window != null) this.unsupported('WINDOW', 'WINDOW', this.keyword('window'))
    if (ast.into?.position != null) this.unsupported('SELECT INTO', 'INTO', this.keyword('into'))
    this.from(ast.from)
    if (this.completeCall !== null) return this.complete(ast, this.completeCall)

    // SELECT items, with their output names.
    this.base = 0
    const items: Array<{ expr: Expr, alias: string }> = []
    let star = false
    for (const col of ast.columns as Ast[]) {
      if (col.expr?.type === 'column_ref' && col.expr.column === '*') {
        this.checkTable(col.expr.table, this.keyword('\\*'))
        star = true
        const def = this.opts.space?.(this.table)
        if (def !== undefined) for (const c of def.schema) items.push({ expr: this.at(column(c.name), { offset: this.keyword('\\*') }), alias: c.name })
        continue
      }
      const expr = this.expr(col.expr)
      const alias = typeof col.as === 'string' ? col.as : (col.as?.value as string | undefined) ?? (expr.kind === 'Column' ? expr.name : printExpr(expr))
      items.push({ expr, alias })
    }
    const starOnly = star && items.length === 0
    if (star && !starOnly && this.opts.space?.(this.table) === undefined) this.unsupported('* beside other columns without the space schema', '*', this.keyword('\\*'))
    this.checkDuplicateAliases(items)

    // WHERE.
    let plan: PlanNode = scan(this.table)
    if (ast.where != null) plan = filter(plan, this.clause('where', ast.where))

    // GROUP BY: expressions, select aliases or positions.
    const groupExprs: Expr[] = []
    const groupAsts: Ast[] = ast.groupby?.columns ?? (Array.isArray(ast.groupby) ? ast.groupby : [])
    this.base = this.keyword('group\\s+by')
    for (const g of groupAsts) groupExprs.push(this.resolveRef(g, items, 'GROUP BY', true))

    const having = ast.having != null ? this.clause('having', ast.having) : undefined

    // ORDER BY: select aliases first, then positions, then any expression.
    const orderKeys: SortKey[] = []
    this.base = this.keyword('order\\s+by')
    for (const o of (ast.orderby ?? []) as Ast[]) {
      const expr = this.resolveRef(o.expr, items, 'ORDER BY', false)
      const direction = String(o.type ?? 'ASC').toUpperCase() === 'DESC' ? 'desc' : 'asc'
      const nulls = /FIRST/i.test(String(o.nulls ?? '')) ? 'first' : 'last'
      orderKeys.push(sortKey(expr, direction, nulls))
    }

    const distinct = String(ast.distinct?.type ?? ast.distinct ?? '').toUpperCase() === 'DISTINCT'
    const aggCalls = [...items.map(i => i.expr), ...(having === undefined ? [] : [having]), ...orderKeys.map(k => k.expr)]
      .flatMap(e => collect(e, (n): n is CallNode => n.kind === 'Call' && isAggregateFn(n.name)))
    let outItems = items
    let outHaving = having
    let outKeys = orderKeys
    if (groupExprs.length > 0 || aggCalls.length > 0 || distinct) {
      if (distinct && (groupExprs.length > 0 || aggCalls.length > 0)) this.unsupported('SELECT DISTINCT with GROUP BY or aggregates', 'DISTINCT', this.keyword('distinct'))
      if (starOnly && !distinct) this.unsupported('SELECT * with GROUP BY or aggregates', '*', this.keyword('\\*'))
      const keys = distinct ? items.map(i => i.expr) : groupExprs
      const r = this.lift(plan, keys, aggCalls, items)
      plan = r.plan
      outItems = items.map(i => ({ expr: r.rewrite(i.expr), alias: i.alias }))
      outHaving = having === undefined ? undefined : r.rewrite(having)
      outKeys = orderKeys.map(k => ({ ...k, expr: r.rewrite(k.expr) }))
      if (outHaving !== undefined) plan = filter(plan, outHaving)
    } else if (having !== undefined) {
      this.unsupported('HAVING without GROUP BY or an aggregate', 'HAVING', this.keyword('having'))
    }

    if (outKeys.length > 0) plan = sort(plan, outKeys)
    const lim = this.limit(ast.limit)
    if (lim !== undefined) {
      plan = limit(plan, lim.limit, lim.offset)
      this.origins.set(plan, this.position(this.keyword('limit') >= 0 ? this.keyword('limit') : this.keyword('offset')))
    }
    if (!starOnly || this.opts.space?.(this.table) !== undefined) plan = project(plan, outItems)
    return plan
  }

  /** Builds the Aggregate node and a rewriter that points expressions above it at its outputs. */
  private lift (input: PlanNode, keys: Expr[], calls: CallNode[], items: ReadonlyArray<{ expr: Expr, alias: string }>): { plan: PlanNode, rewrite: (e: Expr) => Expr } {
    const named = (e: Expr, fallback: string): string => items.find(i => planEquals(i.expr, e))?.alias ?? fallback
    const groupBy: Array<{ expr: Expr, alias: string }> = []
    for (const k of keys) {
      if (groupBy.some(g => planEquals(g.expr, k))) continue
      groupBy.push({ expr: k, alias: k.kind === 'Column' ? k.name : named(k, printExpr(k)) })
    }
    const aggs: Array<{ call: CallNode, fn: AggregateFn, args: Expr[], distinct: boolean, alias: string, params: Record<string, AggParam> }> = []
    const used = new Set(groupBy.map(g => g.alias))
    for (const c of calls) {
      if (aggs.some(a => planEquals(a.call, c))) continue
      for (const arg of c.args) {
        const inner = collect(arg, (n): n is CallNode => n.kind === 'Call' && isAggregateFn(n.name))
        if (inner.length > 0) this.fail('invalid', `aggregate ${inner[0]!.name}() inside aggregate ${c.name}()`, inner[0]!, 'nested aggregate')
      }
      let alias = named(c, printExpr(c))
      while (used.has(alias)) alias = `${alias}_`
      used.add(alias)
      aggs.push({ call: c, ...this.aggregateItem(c), alias })
    }
    const plan = aggregate(input, groupBy, aggs.map(a => ({ fn: a.fn, args: a.args, distinct: a.distinct, alias: a.alias, params: a.params })))
    const pairs: Array<readonly [Expr, Expr]> = [
      ...aggs.map(a => [a.call, column(a.alias)] as const),
      ...groupBy.map(g => [g.expr, column(g.alias)] as const)
    ]
    return { plan, rewrite: e => replaceExprs(e, pairs, planEquals) }
  }

  private aggregateItem (c: CallNode): { fn: AggregateFn, args: Expr[], distinct: boolean, params: Record<string, AggParam> } {
    const fn = c.name as AggregateFn
    const arity = (n: number): void => {
      if (c.args.length !== n) this.fail('invalid', `${fn}() takes ${n} argument${n === 1 ? '' : 's'}, got ${c.args.length}`, c, fn)
    }
    if (c.distinct && fn !== 'count') this.unsupported(`${fn}(DISTINCT ...) (only count(DISTINCT x))`, `${fn}(DISTINCT)`, this.originOffset(c))
    if (fn === 'count') {
      if (c.args.length > 1) arity(1)
      if (c.distinct && c.args.length === 0) this.fail('invalid', 'count(DISTINCT *) is not SQL', c, 'count')
      return { fn, args: [...c.args], distinct: c.distinct, params: {} }
    }
    if (fn === 'approx_quantile') {
      arity(2)
      const q = c.args[1]!
      if (q.kind !== 'Literal' || (q.type !== 'float64' && q.type !== 'int64')) this.fail('invalid', 'approx_quantile() takes a constant quantile between 0 and 1 as its second argument', q, fn)
      const quantile = Number((q as { value: unknown }).value)
      if (!(quantile >= 0 && quantile <= 1)) this.fail('invalid', `approx_quantile() quantile ${quantile} is not between 0 and 1`, q, fn)
      return { fn, args: [c.args[0]!], distinct: false, params: { quantile } }
    }
    arity(1)
    return { fn, args: [...c.args], distinct: false, params: {} }
  }

  private from (from: Ast): void {
    if (!Array.isArray(from) || from.length === 0) this.unsupported('SELECT without FROM (name a space)', 'no FROM', 0)
    if (from.length > 1) {
      const j = from[1]
      const what = j.join != null ? String(j.join) : 'several tables in FROM'
      this.unsupported(`${what} (a query reads one space)`, j.join != null ? 'JOIN' : 'several tables', this.keyword(j.join != null ? 'join' : ','))
    }
    const t = from[0]
    if (t.expr?.type === 'function' && this.functionName(t.expr).toLowerCase() === 'complete') {
      const args: Ast[] = t.expr.args?.value ?? []
      const offset = t.expr.loc?.start?.offset ?? this.keyword('complete')
      const space = args[0]
      if (space?.type !== 'single_quote_string' && space?.type !== 'string') this.fail('invalid', "complete() takes the space's name as a string first", undefined, 'complete', offset)
      this.table = unhide(String(space.value).replace(/''/g, "'"))
      this.tableAlias = typeof t.as === 'string' ? t.as : null
      this.completeCall = { args, offset }
      return
    }
    if (t.expr?.ast != null || t.expr?.type != null) this.unsupported('a subquery in FROM', 'subquery', this.keyword('from'))
    if (typeof t.table !== 'string') this.unsupported('this FROM item', 'FROM', this.keyword('from'))
    if (t.db != null || t.schema != null) this.unsupported('schema-qualified names', 'schema', this.keyword('from'))
    this.table = t.table
    this.tableAlias = typeof t.as === 'string' ? t.as : null
  }

  /**
   * `SELECT * FROM complete('space', '{"col": value, ...}', k) [WHERE ...]`: the same completion as
   * the JSON query's `complete` (k optional, default 5), the WHERE applied before ranking. Its
   * answer is the neighbours whole and the filled record, so nothing else reshapes it; fill,
   * weights and scales are the JSON query's.
   */
  private complete (ast: Ast, call: { args: Ast[], offset: number }): PlanNode {
    const refuse = (what: string, keyword: string): never => this.unsupported(`${what} with complete() (it answers the k neighbours whole and the filled record)`, keyword, this.keyword(keyword))
    const starOnly = (ast.columns as Ast[]).length === 1 && ast.columns[0].expr?.type === 'column_ref' && ast.columns[0].expr.column === '*'
    if (!starOnly) refuse('a select list other than *', 'select')
    if ((ast.groupby?.columns ?? (Array.isArray(ast.groupby) ? ast.groupby : [])).length > 0) refuse('GROUP BY', 'group\\s+by')
    if (ast.having != null) refuse('HAVING', 'having')
    if ((ast.orderby ?? []).length > 0) refuse('ORDER BY', 'order\\s+by')
    if ((ast.limit?.value ?? []).length > 0) refuse('LIMIT', 'limit')
    if (String(ast.distinct?.type ?? ast.distinct ?? '').toUpperCase() === 'DISTINCT') refuse('DISTINCT', 'distinct')
    const [, recordArg, kArg, ...extra] = call.args
    const bad = (message: string): never => this.fail('invalid', `complete(): ${message}`, undefined, 'complete', call.offset)
    if (extra.length > 0 || recordArg === undefined) bad(`takes a space, a record as JSON text and k (optional), got ${call.args.length} arguments`)
    if (recordArg.type !== 'single_quote_string' && recordArg.type !== 'string') bad('the record is JSON text in a string')
    let record: unknown
    try {
      record = JSON.parse(unhide(String(recordArg.value).replace(/''/g, "'")))
    } catch (err) {
      bad(`the record is not JSON: ${(err as Error).message}`)
    }
    let k: number | undefined
    if (kArg !== undefined) {
      if (kArg.type !== 'number' || !Number.isSafeInteger(Number(kArg.value))) bad('k must be an integer')
      k = Number(kArg.value)
    }
    let plan: PlanNode = scan(this.table)
    if (ast.where != null) plan = filter(plan, this.clause('where', ast.where))
    try {
      const node = parseCompleteBody(plan, { record, ...(k !== undefined ? { k } : {}) }, 'complete')
      this.origins.set(node, this.position(call.offset))
      return node
    } catch (err) {
      if (err instanceof JsonQueryError) bad(err.message)
      throw err
    }
  }

  private limit (l: Ast): { limit: number | null, offset: number } | undefined {
    const values: Ast[] = l?.value ?? []
    if (values.length === 0) return undefined
    const num = (v: Ast, what: string): number | null => {
      if (v.type === 'origin' && String(v.value).toLowerCase() === 'all') return null
      // Kept as written: validation explains what a bad LIMIT (negative, fractional, huge) is.
      if ((v.type === 'number' || v.type === 'bigint') && Number.isFinite(Number(v.value))) return Number(v.value)
      return this.unsupported(`${what} that is not a number`, what, this.keyword(what.toLowerCase()))
    }
    if (values.length === 1) {
      return l.seperator === 'offset' ? { limit: null, offset: num(values[0], 'OFFSET') ?? 0 } : { limit: num(values[0], 'LIMIT'), offset: 0 }
    }
    return { limit: num(values[0], 'LIMIT'), offset: num(values[1], 'OFFSET') ?? 0 }
  }

  /** A GROUP BY or ORDER BY entry: a 1-based position, a select alias, or an expression. */
  private resolveRef (node: Ast, items: ReadonlyArray<{ expr: Expr, alias: string }>, clause: string, preferColumns: boolean): Expr {
    if (node.type === 'number' && typeof node.value === 'number') {
      const item = items[node.value - 1]
      if (item === undefined || !Number.isInteger(node.value)) {
        this.fail('invalid', `${clause} position ${node.value} is not in the select list (1 to ${items.length})`, undefined, clause, this.search(String(node.value), this.base))
      }
      return item.expr
    }
    if (node.type === 'column_ref' && node.table == null && typeof node.column !== 'string') {
      const name = this.columnName(node)
      const item = items.find(i => i.alias === name)
      // GROUP BY prefers a space column over an alias of the same name; ORDER BY the alias.
      const isSpaceColumn = this.opts.space?.(this.table)?.schema.some(c => c.name === name) ?? false
      if (item !== undefined && !(preferColumns && isSpaceColumn)) return item.expr
    }
    return this.expr(node)
  }

  private clause (keyword: string, node: Ast): Expr {
    this.base = this.keyword(keyword)
    return this.expr(node)
  }

  private expr (n: Ast): Expr {
    const saved = this.base
    if (n.loc?.start != null) this.base = n.loc.start.offset
    try {
      const e = this.exprInner(n)
      if (!this.origins.has(e)) this.origins.set(e, this.position(this.base))
      return e
    } finally {
      this.base = saved
    }
  }

  private exprInner (n: Ast): Expr {
    switch (n.type) {
      case 'column_ref': {
        if (n.column === '*') this.unsupported('* here', '*', this.search('*', this.base))
        this.checkTable(n.table, this.base)
        const written = this.columnName(n)
        const name = n.column?.expr?.type === 'double_quote_string' ? written : this.fold(written)
        return this.at(column(name), { offset: this.findIdent(written, this.base) })
      }
      case 'number':
      case 'bigint':
        return this.number(n.value)
      case 'single_quote_string':
      case 'string':
        // Postgres keeps a doubled quote doubled in the AST; SQL means one quote.
        return literal(unhide(String(n.value).replace(/''/g, "'")))
      case 'bool': return literal(Boolean(n.value))
      case 'null': return literal(null)
      case 'binary_expr': return this.binaryExpr(n)
      case 'unary_expr': {
        const operand = this.expr(n.expr)
        if (n.operator === '-') {
          if (operand.kind === 'Literal' && operand.type === 'int64') return int64Literal(operand.value.startsWith('-') ? operand.value.slice(1) : '-' + operand.value)
          if (operand.kind === 'Literal' && operand.type === 'float64') return float64Literal(-operand.value)
          return negate(operand)
        }
        if (n.operator === '+') return operand
        if (String(n.operator).toUpperCase() === 'NOT') return not(operand)
        return this.unsupported(`the operator ${n.operator}`, String(n.operator), this.base)
      }
      case 'function': {
        const name = this.functionName(n)
        const args: Ast[] = n.args?.value ?? (n.args?.expr != null ? [n.args.expr] : [])
        if (n.over != null) this.unsupported('window functions (OVER)', 'window function', this.base)
        if (name.toUpperCase() === 'NOT' && args.length === 1) return not(this.expr(args[0]))
        return call(name, args.map(a => this.expr(a)))
      }
      case 'aggr_func': {
        if (n.over != null) this.unsupported('window functions (OVER)', 'window function', this.base)
        if (n.filter != null) this.unsupported('FILTER (WHERE ...) on aggregates', 'FILTER', this.search('filter', this.base))
        if (n.args?.orderby != null) this.unsupported('ORDER BY inside an aggregate', 'ORDER BY in aggregate', this.base)
        const name = String(n.name).toLowerCase()
        const distinct = String(n.args?.distinct ?? '').toUpperCase() === 'DISTINCT'
        const arg = n.args?.expr
        const args = arg == null || arg.type === 'star' ? [] : arg.type === 'expr_list' ? (arg.value as Ast[]).map(a => this.expr(a)) : [this.expr(arg)]
        if (!isAggregateFn(name)) this.unsupported(`the aggregate ${name}() (supported: count, sum, avg, min, max, stddev_pop, var_pop, approx_count_distinct, approx_quantile)`, name, this.base)
        return call(name, args, distinct)
      }
      case 'case': {
        const whens: Array<{ when: Expr, then: Expr }> = []
        let elseExpr: Expr | null = null
        for (const a of n.args as Ast[]) {
          if (a.type === 'when') whens.push({ when: this.expr(a.cond), then: this.expr(a.result) })
          else elseExpr = this.expr(a.result)
        }
        return caseWhen(whens, elseExpr, n.expr == null ? null : this.expr(n.expr))
      }
      case 'cast': return this.unsupported('CAST', 'CAST', this.search('cast', this.base) >= 0 ? this.search('cast', this.base) : this.search('::', this.base))
      case 'expr_list':
        if (Array.isArray(n.value) && n.value.length === 1) return this.expr(n.value[0])
        break
    }
    if (n.ast != null) return this.unsupported('subqueries', 'subquery', this.search('select', this.base + 1))
    return this.unsupported(`the expression ${String(n.type)}`, String(n.type), this.base)
  }

  private binaryExpr (n: Ast): Expr {
    const op = String(n.operator).toUpperCase()
    if (op === 'AND' || op === 'OR') return this.logicalChain(n)
    const left = this.expr(n.left)
    switch (op) {
      case 'IN': case 'NOT IN': {
        const values: Ast[] = n.right?.type === 'expr_list' ? n.right.value : [n.right]
        if (values.some(v => v?.ast != null)) this.unsupported('subqueries', 'subquery', this.search('select', this.base + 1))
        return inList(left, values.map(v => this.expr(v)), op === 'NOT IN')
      }
      case 'BETWEEN': case 'NOT BETWEEN': {
        const [low, high] = n.right.value as Ast[]
        return between(left, this.expr(low), this.expr(high), op === 'NOT BETWEEN')
      }
      case 'LIKE': case 'NOT LIKE': case 'ILIKE': case 'NOT ILIKE': {
        const pattern = this.expr({ ...n.right, escape: undefined })
        let escape: string | null = null
        if (n.right?.escape != null) {
          const e = n.right.escape.value
          escape = unhide(String(e?.value ?? e).replace(/''/g, "'"))
          if (escape.length !== 1) this.fail('invalid', `ESCAPE takes one character, got '${escape}'`, undefined, 'ESCAPE', this.search('escape', this.base))
        }
        return like(left, pattern, { escape, negated: op.startsWith('NOT'), caseInsensitive: op.endsWith('ILIKE') })
      }
      case 'IS': case 'IS NOT':
        if (n.right?.type === 'null') return isNull(left, op === 'IS NOT')
        return this.unsupported(`${op} ${String(n.right?.value ?? n.right?.type).toUpperCase()} (only IS [NOT] NULL)`, op, this.base)
    }
    const mapped = BINARY_OPS[op]
    if (mapped === undefined) return this.unsupported(`the operator ${op}`, op, this.base)
    return binary(mapped, left, this.expr(n.right))
  }

  /**
   * node-sql-parser 5.4's Postgres grammar folds an unparenthesized AND/OR chain left to right
   * with no precedence (`a OR b AND c` comes out as `(a OR b) AND c`), though it marks
   * parenthesized groups. So we read the chain back in source order (an in-order walk of the
   * unmarked nodes) and rebuild it as SQL means it: OR of ANDs, each left-associated, the shape
   * the JSON front end builds too.
   */
  private logicalChain (root: Ast): Expr {
    const operands: Ast[] = []
    const ops: string[] = []
    const rec = (n: Ast): void => {
      const op = n.type === 'binary_expr' ? String(n.operator).toUpperCase() : ''
      if ((op === 'AND' || op === 'OR') && (n === root || n.parentheses !== true)) {
        rec(n.left)
        ops.push(op)
        rec(n.right)
      } else {
        operands.push(n)
      }
    }
    rec(root)
    const groups: Expr[][] = [[this.expr(operands[0])]]
    ops.forEach((op, i) => {
      const e = this.expr(operands[i + 1])
      if (op === 'OR') groups.push([e])
      else groups[groups.length - 1]!.push(e)
    })
    return or(groups.map(g => and(g)!))!
  }

  private number (v: unknown): Expr {
    const s = String(v)
    if (/^-?\d+$/.test(s)) {
      try { return int64Literal(s) } catch { this.fail('invalid', `${s} is outside the int64 range`, undefined, 'literal', this.base) }
    }
    const x = Number(s)
    if (!Number.isFinite(x)) this.fail('invalid', `${s} is not a number`, undefined, 'literal', this.base)
    return float64Literal(x)
  }

  private columnName (n: Ast): string {
    const c = n.column
    if (typeof c === 'string') return unhide(c)
    return unhide(String(c?.expr?.value ?? c?.value ?? c))
  }

  /** DuckDB matches unquoted identifiers without regard to case; so do we, against the schema. */
  private fold (name: string): string {
    const schema = this.opts.space?.(this.table)?.schema
    if (schema === undefined || schema.some(c => c.name === name)) return name
    const matches = schema.filter(c => c.name.toLowerCase() === name.toLowerCase())
    return matches.length === 1 ? matches[0]!.name : name
  }

  private functionName (n: Ast): string {
    const parts: Ast[] = n.name?.name ?? []
    if (parts.length !== 1) this.unsupported('qualified function names', 'function', this.base)
    return String(parts[0].value)
  }

  private checkTable (table: unknown, offset: number): void {
    if (table == null) return
    if (table !== this.table && table !== this.tableAlias) this.fail('invalid', `unknown table '${String(table)}' (the query reads '${this.table}')`, undefined, 'table', offset)
  }

  private checkDuplicateAliases (items: ReadonlyArray<{ alias: string }>): void {
    const seen = new Set<string>()
    for (const i of items) {
      if (seen.has(i.alias)) this.fail('invalid', `two select items are named '${i.alias}'; give one an alias`, undefined, 'alias', this.findIdent(i.alias, 0))
      seen.add(i.alias)
    }
  }

  private at<E extends Expr> (e: E, where: { offset: number }): E {
    this.origins.set(e, this.position(where.offset))
    return e
  }

  private position (offset: number): Origin {
    const o = Math.max(0, offset)
    const before = this.sql.slice(0, o)
    const line = before.split('\n').length
    return { offset: o, line, column: o - before.lastIndexOf('\n') }
  }

  /** Offset of a keyword (a regex source) in the SQL, outside string literals as far as a scan can tell. */
  private keyword (re: string): number {
    const m = new RegExp(`(^|[^A-Za-z0-9_])(${re})`, 'i').exec(this.sql)
    return m === null ? -1 : m.index + m[1]!.length
  }

  private search (text: string, from: number): number {
    const i = this.sql.toLowerCase().indexOf(text.toLowerCase(), Math.max(0, from))
    return i < 0 ? from : i
  }

  private findIdent (name: string, from: number): number {
    const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const re = new RegExp(`"${esc.replace(/"/g, '""')}"|(?<![A-Za-z0-9_])${esc}(?![A-Za-z0-9_])`, 'gi')
    re.lastIndex = Math.max(0, from)
    const m = re.exec(this.sql)
    return m === null ? Math.max(0, from) : m.index
  }

  private originOffset (e: Expr): number {
    const o = this.origins.get(e)
    return o !== undefined && 'offset' in o ? o.offset : this.base
  }

  private unsupported (what: string, construct: string, offset: number): never {
    const p = offset >= 0 ? this.position(offset) : undefined
    throw new SqlError('unsupported', `unsupported: ${what}`, { ...(p !== undefined && 'offset' in p ? p : {}), construct })
  }

  private fail (code: 'invalid', message: string, node: Expr | undefined, construct: string, offset?: number): never {
    const p = this.position(node !== undefined ? this.originOffset(node) : offset ?? this.base)
    throw new SqlError(code, message, { ...('offset' in p ? p : {}), construct })
  }
}


