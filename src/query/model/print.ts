import type { AggSpec } from './aggregate.js'
import type { CompleteNode, CompleteValue } from './complete.js'
import type { Expr, PlanNode } from './node.js'

const RESERVED = new Set(['all', 'and', 'as', 'asc', 'between', 'by', 'case', 'desc', 'distinct', 'else', 'end', 'escape', 'false', 'from', 'group', 'having', 'ilike', 'in', 'is', 'like', 'limit', 'not', 'null', 'nulls', 'offset', 'on', 'or', 'order', 'select', 'then', 'true', 'when', 'where', 'join', 'union'])

/** An identifier as SQL text: bare when it can be, else double-quoted (DuckDB and Postgres alike). */
export function printIdent (name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) && !RESERVED.has(name) ? name : `"${name.replace(/"/g, '""')}"`
}

export function printString (s: string): string {
  return `'${s.replace(/'/g, "''")}'`
}

// Binding strength, loosest first, as in Postgres and DuckDB.
const PREC: Record<string, number> = { OR: 1, AND: 2, NOT: 3, '=': 4, '<>': 4, '<': 4, '<=': 4, '>': 4, '>=': 4, '||': 5, '+': 6, '-': 6, '*': 7, '/': 7, '%': 7 }
const ATOM = 10

function prec (e: Expr): number {
  switch (e.kind) {
    case 'Binary': return PREC[e.op]!
    case 'Unary': return e.op === 'NOT' ? 3 : 8
    case 'InList': case 'Between': case 'Like': case 'IsNull': return 4
    default: return ATOM
  }
}

/**
 * An expression as SQL text that DuckDB accepts and the SQL front end parses back to the same
 * tree; parentheses only where binding needs them.
 */
export function printExpr (e: Expr): string {
  const sub = (c: Expr, needsParen: boolean): string => needsParen ? `(${printExpr(c)})` : printExpr(c)
  switch (e.kind) {
    case 'Column': return printIdent(e.name)
    case 'Literal':
      switch (e.type) {
        case 'null': return 'NULL'
        case 'bool': return e.value ? 'TRUE' : 'FALSE'
        case 'int64': return e.value
        case 'float64': { const s = String(e.value); return /^-?\d+$/.test(s) ? `${s}.0` : s }
        case 'utf8': return printString(e.value)
      }
      break
    case 'Binary': {
      const p = PREC[e.op]!
      // Comparisons do not chain; everything else is left-associative.
      return `${sub(e.left, p === 4 ? prec(e.left) <= p : prec(e.left) < p)} ${e.op} ${sub(e.right, prec(e.right) <= p)}`
    }
    case 'Unary':
      return e.op === 'NOT' ? `NOT ${sub(e.operand, prec(e.operand) < ATOM)}` : `-${sub(e.operand, prec(e.operand) < ATOM || e.operand.kind === 'Literal')}`
    case 'InList': return `${sub(e.operand, prec(e.operand) <= 4)} ${e.negated ? 'NOT IN' : 'IN'} (${e.values.map(printExpr).join(', ')})`
    case 'Between': return `${sub(e.operand, prec(e.operand) <= 4)} ${e.negated ? 'NOT BETWEEN' : 'BETWEEN'} ${sub(e.low, prec(e.low) <= 4)} AND ${sub(e.high, prec(e.high) <= 4)}`
    case 'Like': {
      const op = (e.negated ? 'NOT ' : '') + (e.caseInsensitive ? 'ILIKE' : 'LIKE')
      return `${sub(e.operand, prec(e.operand) <= 4)} ${op} ${sub(e.pattern, prec(e.pattern) <= 4)}${e.escape === null ? '' : ` ESCAPE ${printString(e.escape)}`}`
    }
    case 'IsNull': return `${sub(e.operand, prec(e.operand) <= 4)} ${e.negated ? 'IS NOT NULL' : 'IS NULL'}`
    case 'Call':
      if (e.args.length === 0 && e.name === 'count') return 'count(*)'
      return `${e.name}(${e.distinct ? 'DISTINCT ' : ''}${e.args.map(printExpr).join(', ')})`
    case 'Case': {
      const parts = ['CASE']
      if (e.operand !== null) parts.push(printExpr(e.operand))
      for (const w of e.whens) parts.push(`WHEN ${printExpr(w.when)} THEN ${printExpr(w.then)}`)
      if (e.else !== null) parts.push(`ELSE ${printExpr(e.else)}`)
      parts.push('END')
      return parts.join(' ')
    }
  }
  throw new Error(`unknown expression kind ${(e as { kind: string }).kind}`)
}

function aliased (text: string, alias: string): string {
  return text === alias || text === printIdent(alias) ? text : `${text} AS ${printIdent(alias)}`
}

function printParams (params: Readonly<Record<string, unknown>>): string {
  const keys = Object.keys(params)
  return keys.length === 0 ? '' : ' ' + JSON.stringify(params)
}

function printSpec (s: AggSpec, indent: string, lines: string[]): void {
  const filters = s.filters.map(f => `${f.key}: ${printExpr(f.predicate)}`).join('; ')
  lines.push(`${indent}- ${s.name}: ${s.type}(${s.field === null ? '' : printIdent(s.field)})${printParams(s.params)}${filters === '' ? '' : ` {${filters}}`}`)
  for (const c of s.aggs) printSpec(c, indent + '  ', lines)
}

/** One line for a plan node, without its inputs. */
export function printNode (n: PlanNode): string {
  switch (n.kind) {
    case 'Scan': return `Scan ${printIdent(n.space)}${n.columns === null ? '' : ` [${n.columns.map(printIdent).join(', ')}]`}`
    case 'Filter': return `Filter ${printExpr(n.predicate)}`
    case 'Project': return `Project ${n.items.map(i => aliased(printExpr(i.expr), i.alias)).join(', ')}`
    case 'Aggregate': {
      const parts = ['Aggregate']
      if (n.groupBy.length > 0) parts.push(`by ${n.groupBy.map(g => aliased(printExpr(g.expr), g.alias)).join(', ')}`)
      if (n.aggregates.length > 0) {
        parts.push(`compute ${n.aggregates.map(a => {
          const args = a.fn === 'approx_quantile' ? [...a.args.map(printExpr), String(a.params.quantile)] : a.args.map(printExpr)
          const text = a.fn === 'count' && args.length === 0 ? 'count(*)' : `${a.fn}(${a.distinct ? 'DISTINCT ' : ''}${args.join(', ')})`
          return aliased(text, a.alias)
        }).join(', ')}`)
      }
      if (n.aggs.length > 0) parts.push('aggs')
      return parts.join(' ')
    }
    case 'Sort': return `Sort ${n.keys.map(k => `${printExpr(k.expr)} ${k.direction.toUpperCase()}${k.nulls === 'first' ? ' NULLS FIRST' : ''}`).join(', ')}`
    case 'Limit': return `Limit ${n.limit === null ? 'none' : n.limit}${n.offset === 0 ? '' : ` offset ${n.offset}`}`
    case 'TopK': return `TopK ${n.k} by ${n.metric}(${printIdent(n.column)}, [${n.vector.join(', ')}])`
    case 'Complete': return printComplete(n)
    case 'Spread': return `Spread ${printIdent(n.space)} from [${n.seeds.map(printString).join(', ')}] via ${printIdent(n.linksColumn)} decay ${n.decay} maxHops ${n.maxHops}${n.threshold === 0 ? '' : ` threshold ${n.threshold}`}${n.limit === null ? '' : ` limit ${n.limit}`}`
  }
}

/** `Complete 5 like (city = 'Paris' weight 2, age = 31 scale 10, v = [1, 0]) fill (job)`; no fill list: the default. */
function printComplete (n: CompleteNode): string {
  const value = (v: CompleteValue): string => typeof v === 'string' ? printString(v) : Array.isArray(v) ? `[${v.map(value).join(', ')}]` : String(v)
  const terms = n.terms.map(t => `${printIdent(t.column)} = ${value(t.value)}${t.weight === 1 ? '' : ` weight ${t.weight}`}${t.scale === null ? '' : ` scale ${t.scale}`}`)
  return `Complete ${n.k} like (${terms.join(', ')})${n.fill === null ? '' : ` fill (${n.fill.map(printIdent).join(', ')})`}`
}

/**
 * A plan as an indented tree, root first, two spaces per level; JSON aggregations are listed
 * under their Aggregate node with `- `.
 *
 * ```
 * Limit 10
 *   Sort total DESC
 *     Project region, sum(amount) AS total
 *       Aggregate by region compute sum(amount)
 *         Filter amount > 0
 *           Scan sales
 * ```
 */
export function printPlan (root: PlanNode): string {
  const lines: string[] = []
  let node: PlanNode | null = root
  let indent = ''
  while (node !== null) {
    lines.push(indent + printNode(node))
    if (node.kind === 'Aggregate') for (const s of node.aggs) printSpec(s, indent + '  ', lines)
    indent += '  '
    node = 'input' in node ? node.input : null
  }
  return lines.join('\n')
}
