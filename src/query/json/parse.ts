import {
  AGG_SPEC_TYPES, BUCKET_AGG_TYPES, aggSpec, aggregate, and, between, binary, column, escapeLike, filter, inList, isNull, like, limit, literal,
  not, or, project, scan, sort, sortKey, spread, topK
} from '../model/index.js'
import type { AggParam, AggSpec, AggSpecType, ColumnNode, Expr, Origins, PlanNode, SortKey, VectorMetric } from '../model/index.js'
import { parseCompleteBody } from './complete.js'
import { JsonQueryError } from './errors.js'

/** Deepest nesting of bool filters; deeper is a mistake or an attack, not a query. */
export const MAX_FILTER_DEPTH = 32
/** Most values in one `terms` filter. */
export const MAX_TERMS = 10_000
/** Deepest nesting of bucket aggregations, and most aggregations in one query. */
export const MAX_AGG_DEPTH = 6
export const MAX_AGGS = 100

export interface ParsedJsonQuery {
  plan: PlanNode
  /** Where each field reference came from, as a JSON path, for validation errors. */
  origins: Origins
}

type Json = Record<string, unknown>

const TOP_KEYS = new Set(['space', 'filter', 'aggs', 'aggregations', 'sort', 'from', 'size', 'fields', 'knn', 'spread', 'complete'])

/**
 * Parses a JSON query into a plan. Shape (search-engine style):
 * `{ space, filter?, aggs?, sort?, from?, size?, fields?, knn?, spread?, complete? }`.
 * Rows: Project[fields](Limit[size, from](Sort(TopK[knn](Filter(Scan))))).
 * Aggregations: Aggregate{aggs}(Filter(Scan)), with size 0 or absent and no sort or fields.
 * Spread: a Spread node alone. Completion: Complete(Filter(Scan)), its rows every column.
 */
export function parseJsonQuery (input: unknown): ParsedJsonQuery {
  return new JsonConverter().query(input)
}

class JsonConverter {
  readonly origins: Origins = new WeakMap()
  private aggCount = 0

  query (input: unknown): ParsedJsonQuery {
    const q = this.object(input, 'query')
    for (const k of Object.keys(q)) if (!TOP_KEYS.has(k)) throw new JsonQueryError(k, `unknown field; expected one of ${[...TOP_KEYS].join(', ')}`)
    const space = this.string(q.space, 'space')
    if (q.spread !== undefined) return { plan: this.spread(space, q), origins: this.origins }
    if (q.complete !== undefined) return { plan: this.complete(space, q), origins: this.origins }

    let plan: PlanNode = scan(space)
    if (q.filter !== undefined) {
      const pred = this.filter(q.filter, 'filter', 0)
      if (pred !== undefined) plan = filter(plan, pred)
    }
    const aggsInput = q.aggs ?? q.aggregations
    if (aggsInput !== undefined) {
      const at = q.aggs !== undefined ? 'aggs' : 'aggregations'
      for (const k of ['sort', 'fields', 'knn'] as const) if (q[k] !== undefined) throw new JsonQueryError(k, `not allowed with ${at}; send the rows as a separate query`)
      if (q.size !== undefined && q.size !== 0) throw new JsonQueryError('size', `must be 0 or absent with ${at}`)
      const specs = this.aggs(aggsInput, at, 1)
      return { plan: aggregate(plan, [], [], specs), origins: this.origins }
    }
    if (q.knn !== undefined) plan = this.knn(plan, q.knn)
    if (q.sort !== undefined) plan = sort(plan, this.sortKeys(q.sort))
    if (q.size !== undefined || q.from !== undefined) {
      const size = q.size === undefined ? null : this.integer(q.size, 'size')
      const from = q.from === undefined ? 0 : this.integer(q.from, 'from')
      plan = limit(plan, size, from)
      this.origins.set(plan, { path: q.size !== undefined ? 'size' : 'from' })
    }
    if (q.fields !== undefined) {
      const fields = this.array(q.fields, 'fields').map((f, i) => ({ name: this.string(f, `fields[${i}]`), at: `fields[${i}]` }))
      plan = project(plan, fields.map(f => ({ expr: this.col(f.name, f.at), alias: f.name })))
    }
    return { plan, origins: this.origins }
  }

  /** One filter clause; undefined means "every row" (match_all, an empty bool). */
  private filter (input: unknown, at: string, depth: number): Expr | undefined {
    if (depth > MAX_FILTER_DEPTH) throw new JsonQueryError(at, `filters nest deeper than ${MAX_FILTER_DEPTH}`)
    const q = this.object(input, at)
    const keys = Object.keys(q)
    if (keys.length !== 1) throw new JsonQueryError(at, `a filter has exactly one clause (term, terms, range, exists, bool, match_all, match_none, prefix, wildcard, ids), got ${keys.length === 0 ? 'none' : keys.join(', ')}`)
    const kind = keys[0]!
    const body = q[kind]
    const here = `${at}.${kind}`
    switch (kind) {
      case 'match_all': this.object(body, here); return undefined
      case 'match_none': this.object(body, here); return literal(false)
      case 'term': {
        const [field, v] = this.single(body, here)
        const value = isPlainObject(v) ? this.fieldValue((v as Json).value, `${here}.${field}.value`) : this.fieldValue(v, `${here}.${field}`)
        return binary('=', this.col(field, `${here}.${field}`), value)
      }
      case 'terms': {
        const [field, v] = this.single(body, here)
        const values = this.array(v, `${here}.${field}`)
        if (values.length === 0 || values.length > MAX_TERMS) throw new JsonQueryError(`${here}.${field}`, `needs 1 to ${MAX_TERMS} values, got ${values.length}`)
        return inList(this.col(field, `${here}.${field}`), values.map((x, i) => this.fieldValue(x, `${here}.${field}[${i}]`)))
      }
      case 'range': {
        const [field, v] = this.single(body, here)
        const fat = `${here}.${field}`
        const r = this.object(v, fat)
        const ops: Record<string, '>' | '>=' | '<' | '<='> = { gt: '>', gte: '>=', lt: '<', lte: '<=' }
        for (const k of Object.keys(r)) if (!(k in ops)) throw new JsonQueryError(`${fat}.${k}`, 'unknown bound; expected gt, gte, lt, lte')
        if (Object.keys(r).length === 0) throw new JsonQueryError(fat, 'needs at least one of gt, gte, lt, lte')
        // gte + lte is SQL's BETWEEN: the same plan from either front end.
        if (Object.keys(r).length === 2 && r.gte !== undefined && r.lte !== undefined) {
          return between(this.col(field, fat), this.fieldValue(r.gte, `${fat}.gte`), this.fieldValue(r.lte, `${fat}.lte`))
        }
        return and(['gt', 'gte', 'lt', 'lte'].filter(k => r[k] !== undefined).map(k => binary(ops[k]!, this.col(field, fat), this.fieldValue(r[k], `${fat}.${k}`))))
      }
      case 'exists': {
        const b = this.object(body, here)
        return isNull(this.col(this.string(b.field, `${here}.field`), `${here}.field`), true)
      }
      case 'prefix': case 'wildcard': {
        const [field, v] = this.single(body, here)
        const raw = isPlainObject(v) ? this.string((v as Json).value, `${here}.${field}.value`) : this.string(v, `${here}.${field}`)
        const pattern = kind === 'prefix' ? escapeLike(raw) + '%' : wildcardToLike(raw)
        return like(this.col(field, `${here}.${field}`), literal(pattern), { escape: '\\' })
      }
      case 'ids': {
        const b = this.object(body, here)
        const values = this.array(b.values, `${here}.values`)
        if (values.length === 0 || values.length > MAX_TERMS) throw new JsonQueryError(`${here}.values`, `needs 1 to ${MAX_TERMS} ids, got ${values.length}`)
        return inList(this.col('id', `${here}.values`), values.map((x, i) => literal(this.string(x, `${here}.values[${i}]`))))
      }
      case 'bool': return this.bool(body, here, depth)
    }
    throw new JsonQueryError(here, 'unknown filter; expected term, terms, range, exists, bool, match_all, match_none, prefix, wildcard, ids')
  }

  private bool (body: unknown, at: string, depth: number): Expr | undefined {
    const b = this.object(body, at)
    const list = (k: string): Array<{ v: unknown, at: string }> => {
      const v = b[k]
      if (v === undefined) return []
      return Array.isArray(v) ? v.map((x, i) => ({ v: x, at: `${at}.${k}[${i}]` })) : [{ v, at: `${at}.${k}` }]
    }
    for (const k of Object.keys(b)) {
      if (!['must', 'filter', 'should', 'must_not', 'minimum_should_match'].includes(k)) throw new JsonQueryError(`${at}.${k}`, 'unknown field; expected must, filter, should, must_not, minimum_should_match')
    }
    const sub = (x: { v: unknown, at: string }): Expr | undefined => this.filter(x.v, x.at, depth + 1)
    const terms: Expr[] = []
    for (const x of [...list('must'), ...list('filter')]) { const e = sub(x); if (e !== undefined) terms.push(e) }
    const should = list('should')
    // Every clause here filters (nothing scores), so as the search engines do in a filter
    // context, at least one `should` must match unless minimum_should_match says 0.
    const msm = b.minimum_should_match === undefined ? 1 : this.integer(b.minimum_should_match, `${at}.minimum_should_match`)
    if (msm > 1) throw new JsonQueryError(`${at}.minimum_should_match`, 'only 0 or 1 are supported')
    if (should.length > 0 && msm === 1) {
      const alts = should.map(sub)
      if (!alts.includes(undefined)) terms.push(or(alts as Expr[])!)
    }
    for (const x of list('must_not')) {
      const e = sub(x)
      terms.push(e === undefined ? literal(false) : not(e))
    }
    return and(terms)
  }

  private aggs (input: unknown, at: string, depth: number): AggSpec[] {
    if (depth > MAX_AGG_DEPTH) throw new JsonQueryError(at, `aggregations nest deeper than ${MAX_AGG_DEPTH}`)
    const a = this.object(input, at)
    return Object.entries(a).map(([name, def]) => {
      if (++this.aggCount > MAX_AGGS) throw new JsonQueryError(`${at}.${name}`, `more than ${MAX_AGGS} aggregations`)
      const here = `${at}.${name}`
      const d = this.object(def, here)
      const types = Object.keys(d).filter(k => k !== 'aggs' && k !== 'aggregations')
      if (types.length !== 1) throw new JsonQueryError(here, `an aggregation has exactly one type (${AGG_SPEC_TYPES.join(', ')}), got ${types.length === 0 ? 'none' : types.join(', ')}`)
      const type = types[0]!
      if (!(AGG_SPEC_TYPES as readonly string[]).includes(type)) throw new JsonQueryError(`${here}.${type}`, `unknown aggregation; expected one of ${AGG_SPEC_TYPES.join(', ')}`)
      const body = this.object(d[type], `${here}.${type}`)
      const subInput = d.aggs ?? d.aggregations
      if (subInput !== undefined && !BUCKET_AGG_TYPES.has(type)) throw new JsonQueryError(`${here}.aggs`, `${type} is a metric; only bucket aggregations (${[...BUCKET_AGG_TYPES].join(', ')}) nest aggs`)
      const sub = subInput === undefined ? [] : this.aggs(subInput, `${here}.${d.aggs !== undefined ? 'aggs' : 'aggregations'}`, depth + 1)
      const params: Record<string, AggParam> = {}
      let field: string | null = null
      let filters: Array<{ key: string, predicate: Expr }> = []
      for (const [k, v] of Object.entries(body)) {
        if (k === 'field') {
          field = this.string(v, `${here}.${type}.field`)
        } else if (k === 'filters' && type === 'filters') {
          filters = Object.entries(this.object(v, `${here}.filters.filters`)).map(([key, f]) => ({ key, predicate: this.filter(f, `${here}.filters.filters.${key}`, 0) ?? literal(true) }))
        } else {
          params[k] = v as AggParam
        }
      }
      if (type === 'filters') {
        if (filters.length === 0) throw new JsonQueryError(`${here}.filters.filters`, 'needs at least one named filter')
      } else if (field === null) {
        throw new JsonQueryError(`${here}.${type}.field`, 'is required')
      }
      const spec = aggSpec({ name, type: type as AggSpecType, field, params, filters, aggs: sub })
      // Validation reports a bad field at `<this path>.field`.
      this.origins.set(spec, { path: `${here}.${type}` })
      return spec
    })
  }

  private sortKeys (input: unknown): SortKey[] {
    const list = Array.isArray(input) ? input : [input]
    return list.map((s, i) => {
      const at = `sort[${i}]`
      if (typeof s === 'string') return sortKey(this.col(s, at), 'asc', 'last')
      const [field, v] = this.single(s, at)
      const fat = `${at}.${field}`
      let order: unknown = v
      let missing: unknown = '_last'
      if (isPlainObject(v)) {
        order = (v as Json).order ?? 'asc'
        missing = (v as Json).missing ?? '_last'
      }
      if (order !== 'asc' && order !== 'desc') throw new JsonQueryError(fat, `order must be 'asc' or 'desc', got ${JSON.stringify(order)}`)
      if (missing !== '_first' && missing !== '_last') throw new JsonQueryError(`${fat}.missing`, "must be '_first' or '_last'")
      return sortKey(this.col(field, fat), order, missing === '_first' ? 'first' : 'last')
    })
  }

  private knn (input: PlanNode, body: unknown): PlanNode {
    const k = this.object(body, 'knn')
    const metric = (k.metric ?? 'cosine') as VectorMetric
    if (!['cosine', 'dot', 'l2'].includes(metric)) throw new JsonQueryError('knn.metric', "must be 'cosine', 'dot' or 'l2'")
    const vector = this.array(k.vector, 'knn.vector').map((x, i) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new JsonQueryError(`knn.vector[${i}]`, 'must be a finite number')
      return x
    })
    const node = topK(input, { column: this.string(k.field, 'knn.field'), vector, metric, k: this.integer(k.k, 'knn.k') })
    this.origins.set(node, { path: 'knn' })
    return node
  }

  private spread (space: string, q: Json): PlanNode {
    for (const k of ['filter', 'aggs', 'aggregations', 'sort', 'from', 'fields', 'knn']) if (q[k] !== undefined) throw new JsonQueryError(k, 'not allowed with spread')
    const s = this.object(q.spread, 'spread')
    const num = (k: string): number | undefined => {
      if (s[k] === undefined) return undefined
      if (typeof s[k] !== 'number' || !Number.isFinite(s[k])) throw new JsonQueryError(`spread.${k}`, 'must be a number')
      return s[k] as number
    }
    const node = spread({
      space,
      seeds: this.array(s.seeds, 'spread.seeds').map((x, i) => this.string(x, `spread.seeds[${i}]`)),
      linksColumn: this.string(s.links, 'spread.links'),
      decay: num('decay'),
      maxHops: num('maxHops'),
      threshold: num('threshold'),
      limit: q.size === undefined ? null : this.integer(q.size, 'size')
    })
    this.origins.set(node, { path: 'spread' })
    return node
  }

  /** The answer is the k neighbours, whole, and the filled record: nothing reshapes the rows. */
  private complete (space: string, q: Json): PlanNode {
    for (const k of ['aggs', 'aggregations', 'sort', 'from', 'size', 'fields', 'knn', 'spread']) if (q[k] !== undefined) throw new JsonQueryError(k, 'not allowed with complete (k says how many neighbours)')
    let input: PlanNode = scan(space)
    if (q.filter !== undefined) {
      const pred = this.filter(q.filter, 'filter', 0)
      if (pred !== undefined) input = filter(input, pred)
    }
    const node = parseCompleteBody(input, q.complete, 'complete')
    this.origins.set(node, { path: 'complete' })
    return node
  }

  private col (name: string, path: string): ColumnNode {
    const c = column(name)
    this.origins.set(c, { path })
    return c
  }

  private fieldValue (v: unknown, at: string): Expr {
    if (v === null || v === undefined) throw new JsonQueryError(at, 'must be a value (use exists to test for null)')
    if (typeof v === 'string' || typeof v === 'boolean') return literal(v)
    if (typeof v === 'number' && Number.isFinite(v)) return literal(v)
    throw new JsonQueryError(at, 'must be a string, a number or a boolean')
  }

  private single (v: unknown, at: string): [string, unknown] {
    const o = this.object(v, at)
    const keys = Object.keys(o)
    if (keys.length !== 1) throw new JsonQueryError(at, `names exactly one field, got ${keys.length}`)
    return [keys[0]!, o[keys[0]!]]
  }

  private object (v: unknown, at: string): Json {
    if (!isPlainObject(v)) throw new JsonQueryError(at, 'must be an object')
    return v as Json
  }

  private array (v: unknown, at: string): unknown[] {
    if (!Array.isArray(v)) throw new JsonQueryError(at, 'must be an array')
    return v
  }

  private string (v: unknown, at: string): string {
    if (typeof v !== 'string' || v === '') throw new JsonQueryError(at, 'must be a non-empty string')
    return v
  }

  private integer (v: unknown, at: string): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new JsonQueryError(at, 'must be an integer')
    return v
  }
}

function isPlainObject (v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** `*` any run, `?` one character; LIKE's own `%`, `_` and `\` are escaped with `\`. */
export function wildcardToLike (s: string): string {
  let out = ''
  for (const ch of s) out += ch === '*' ? '%' : ch === '?' ? '_' : escapeLike(ch)
  return out
}
