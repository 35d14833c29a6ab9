/**
 * schema: a space's columns, in Arrow's type names (DESIGN.md section 8), and the checks every
 * value passes on the way in. Validation happens once, at the coordinator, before anything is
 * written: a batch with one bad row writes nothing, and the error names the row and the field.
 *
 * ```ts
 * const schema = parseSchemaSpec('id:utf8,amount:float64,tags:list<utf8>,embedding:vector<3>')
 * const { rows, errors } = validateRows(schema, [{ id: 'a', amount: 1.5 }])
 * ```
 *
 * In-memory values: bool → boolean; int32, float32, float64 → number; int64 → number when it is a
 * safe integer, else bigint; utf8 → string; timestamp → integer ms since the epoch; date →
 * integer days since the epoch; list<T> → array; vector<N> → array of N numbers; null for absent.
 */
import { Bool, DataType, Date_, DateUnit, Field, FixedSizeList, Float32, Float64, Int32, Int64, List, Schema, TimeUnit, Timestamp, Utf8 } from 'apache-arrow'

export type ScalarType = 'bool' | 'int32' | 'int64' | 'float32' | 'float64' | 'utf8' | 'timestamp' | 'date'
export type ColumnType = ScalarType | `list<${ScalarType}>` | `vector<${number}>`

export interface ColumnDef {
  name: string
  type: ColumnType
  nullable: boolean
}

export type SpaceSchema = readonly ColumnDef[]
export type Row = Record<string, unknown>

/**
 * Rows are instances of one constructor whose prototype has no prototype: like
 * Object.create(null), a column named `__proto__` or `constructor` is a plain own key and nothing
 * is inherited, but V8 keeps such objects in fast mode (shared hidden classes) where
 * Object.create(null) makes a dictionary per row: about 4x less memory and 4x faster to build, and
 * a memtable holds hundreds of thousands of them.
 */
const RowObject = function RowObject (this: Row) {} as unknown as new () => Row
RowObject.prototype = Object.create(null) as Row

/** A new, empty row (see RowObject). */
export function newRow (): Row { return new RowObject() }

const SCALARS = new Set<string>(['bool', 'int32', 'int64', 'float32', 'float64', 'utf8', 'timestamp', 'date'])
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/
export const MAX_COLUMNS = 1024
/** Largest vector dimension accepted; 65,536 float32 = 256 KiB per value. */
export const MAX_VECTOR_DIM = 65_536
/** Largest utf8 value accepted, in UTF-16 code units (a bound, not a storage format). */
export const MAX_STRING_LENGTH = 1 << 20
export const MAX_LIST_LENGTH = 100_000
/** Record ids are keys: short, non-empty. */
export const MAX_ID_LENGTH = 512

/**
 * Whether a string is well-formed UTF-16 (no lone surrogate). A lone surrogate has no UTF-8
 * encoding: Arrow segments, the WAL and logs would each rewrite it to U+FFFD, so two distinct ids
 * `"\ud800"` and `"\udc00"` would become one record after a flush. Such text is refused at the
 * door instead of being changed silently.
 */
export function isWellFormedText (s: string): boolean {
  return (s as unknown as { isWellFormed: () => boolean }).isWellFormed()
}
const LONE_SURROGATE = 'contains a lone UTF-16 surrogate (not valid Unicode text; it has no UTF-8 encoding)'

/**
 * Column names that cannot be a key of a plain JavaScript object: `row.__proto__ = v` sets the
 * prototype instead of a property, so the column's values would vanish from every answer.
 */
const RESERVED_COLUMN_NAMES = new Set(['__proto__'])
function reservedName (field: string, name: string): SchemaError {
  return new SchemaError(field, `'${name}' is reserved (it names the prototype of a JavaScript object, so its values could not be returned)`)
}

/** The schema itself is unusable; `field` names the offending part (e.g. `schema[2].type`). */
export class SchemaError extends Error {
  override name = 'SchemaError'
  constructor (readonly field: string, message: string) { super(`${field}: ${message}`) }
}

/** One row failed validation. */
export interface RowError {
  row: number
  field: string
  message: string
}

export function isColumnType (t: string): t is ColumnType {
  if (SCALARS.has(t)) return true
  const list = /^list<([a-z0-9]+)>$/.exec(t)
  if (list !== null) return SCALARS.has(list[1]!)
  const vec = /^vector<(\d{1,6})>$/.exec(t)
  return vec !== null && Number(vec[1]) >= 1 && Number(vec[1]) <= MAX_VECTOR_DIM
}

export function vectorDim (t: ColumnType): number | undefined {
  const m = /^vector<(\d+)>$/.exec(t)
  return m === null ? undefined : Number(m[1])
}

export function listElement (t: ColumnType): ScalarType | undefined {
  const m = /^list<([a-z0-9]+)>$/.exec(t)
  return m === null ? undefined : m[1] as ScalarType
}

/**
 * Parses the CLI form `name:type,name:type!,...`: columns are nullable unless marked `!`; `id`
 * is added first (utf8, not null) when missing.
 */
export function parseSchemaSpec (spec: string): ColumnDef[] {
  const parts = spec.split(',').map(s => s.trim()).filter(s => s !== '')
  const columns = parts.map((part, i) => {
    const m = /^([^:]+):(.+?)(!?)$/.exec(part)
    if (m === null) throw new SchemaError(`schema[${i}]`, `expected name:type, got '${part}'`)
    return { name: m[1]!.trim(), type: m[2]!.trim(), nullable: m[3] !== '!' }
  })
  return checkSchema(columns)
}

/**
 * Validates a schema given as JSON (`[{name, type, nullable}]`), naming the bad field. A schema
 * for a new space or column (`opts.new`) must also avoid reserved names; one decoded from the
 * catalog or the wire need not, so a space created before a name was reserved stays readable.
 */
export function checkSchema (input: unknown, opts: { new?: boolean } = {}): ColumnDef[] {
  if (!Array.isArray(input)) throw new SchemaError('schema', 'must be an array of {name, type, nullable}')
  if (input.length === 0) throw new SchemaError('schema', 'must have at least one column')
  if (input.length > MAX_COLUMNS) throw new SchemaError('schema', `has ${input.length} columns; at most ${MAX_COLUMNS}`)
  const seen = new Set<string>()
  const columns: ColumnDef[] = input.map((c: unknown, i) => {
    const at = `schema[${i}]`
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new SchemaError(at, 'must be an object {name, type, nullable}')
    const { name, type, nullable } = c as Record<string, unknown>
    for (const key of Object.keys(c)) {
      if (key !== 'name' && key !== 'type' && key !== 'nullable') throw new SchemaError(`${at}.${key}`, 'unknown field; expected name, type, nullable')
    }
    if (typeof name !== 'string' || !NAME_RE.test(name)) throw new SchemaError(`${at}.name`, `'${String(name)}' is not a column name (letters, digits, _; at most 64; not starting with a digit)`)
    if (opts.new === true && RESERVED_COLUMN_NAMES.has(name)) throw reservedName(`${at}.name`, name)
    if (seen.has(name)) throw new SchemaError(`${at}.name`, `duplicate column '${name}'`)
    seen.add(name)
    if (typeof type !== 'string' || !isColumnType(type)) {
      throw new SchemaError(`${at}.type`, `unknown type '${String(type)}'; expected one of bool, int32, int64, float32, float64, utf8, timestamp, date, list<T>, vector<N>`)
    }
    if (nullable !== undefined && typeof nullable !== 'boolean') throw new SchemaError(`${at}.nullable`, 'must be true or false')
    return { name, type, nullable: nullable ?? name !== 'id' }
  })
  const id = columns.find(c => c.name === 'id')
  if (id === undefined) {
    columns.unshift({ name: 'id', type: 'utf8', nullable: false })
  } else {
    if (id.type !== 'utf8') throw new SchemaError(`schema[${columns.indexOf(id)}].type`, "column 'id' is the record key and must be utf8")
    id.nullable = false
    // The key goes first, so every segment and answer has it in the same place.
    columns.splice(columns.indexOf(id), 1)
    columns.unshift(id)
  }
  if (columns.length > MAX_COLUMNS) throw new SchemaError('schema', `has ${columns.length} columns; at most ${MAX_COLUMNS}`)
  return columns
}

/** The Arrow schema of a space, for segments and Arrow IPC answers. */
export function arrowSchema (schema: SpaceSchema): Schema {
  return new Schema(schema.map(c => new Field(c.name, arrowType(c.type), c.nullable)))
}

export function arrowType (type: ColumnType): DataType {
  const dim = vectorDim(type)
  if (dim !== undefined) return new FixedSizeList(dim, new Field('item', new Float32(), false))
  const elem = listElement(type)
  if (elem !== undefined) return new List(new Field('item', arrowType(elem), false))
  switch (type as ScalarType) {
    case 'bool': return new Bool()
    case 'int32': return new Int32()
    case 'int64': return new Int64()
    case 'float32': return new Float32()
    case 'float64': return new Float64()
    case 'utf8': return new Utf8()
    case 'timestamp': return new Timestamp(TimeUnit.MILLISECOND)
    case 'date': return new Date_(DateUnit.DAY)
  }
  throw new SchemaError('type', `no Arrow type for ${type}`)
}

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const DAY_MS = 86_400_000

/** Returns the normalized value, or a string saying what is wrong with it. */
function checkValue (type: ColumnType, v: unknown): { ok: unknown } | { bad: string } {
  const dim = vectorDim(type)
  if (dim !== undefined) {
    if (!Array.isArray(v) && !(v instanceof Float32Array)) return { bad: `expected an array of ${dim} numbers (${type})` }
    if (v.length !== dim) return { bad: `expected ${dim} numbers (${type}), got ${v.length}` }
    const out = new Array<number>(dim)
    for (let i = 0; i < dim; i++) {
      const x = v[i]
      if (typeof x !== 'number' || !Number.isFinite(x)) return { bad: `element ${i} is not a finite number` }
      out[i] = Math.fround(x)
    }
    return { ok: out }
  }
  const elem = listElement(type)
  if (elem !== undefined) {
    if (!Array.isArray(v)) return { bad: `expected an array (${type})` }
    if (v.length > MAX_LIST_LENGTH) return { bad: `list of ${v.length} elements; at most ${MAX_LIST_LENGTH}` }
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) {
      const r = checkValue(elem, v[i])
      if ('bad' in r) return { bad: `element ${i}: ${r.bad}` }
      out[i] = r.ok
    }
    return { ok: out }
  }
  switch (type as ScalarType) {
    case 'bool':
      return typeof v === 'boolean' ? { ok: v } : { bad: 'expected true or false' }
    case 'int32':
      return typeof v === 'number' && Number.isInteger(v) && v >= -2147483648 && v <= 2147483647 ? { ok: v } : { bad: 'expected an integer between -2147483648 and 2147483647 (int32)' }
    case 'int64': {
      let b: bigint
      if (typeof v === 'number') {
        if (!Number.isSafeInteger(v)) return { bad: 'expected an integer (int64; send integers beyond ±2^53 as strings)' }
        return { ok: v }
      } else if (typeof v === 'bigint') {
        b = v
      } else if (typeof v === 'string' && /^-?\d{1,19}$/.test(v)) {
        b = BigInt(v)
      } else {
        return { bad: 'expected an integer (int64) or a string of digits' }
      }
      if (b < INT64_MIN || b > INT64_MAX) return { bad: 'out of the int64 range' }
      return { ok: b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b }
    }
    case 'float32':
      return typeof v === 'number' && Number.isFinite(v) ? { ok: Math.fround(v) } : { bad: 'expected a finite number (float32)' }
    case 'float64':
      return typeof v === 'number' && Number.isFinite(v) ? { ok: v } : { bad: 'expected a finite number (float64)' }
    case 'utf8':
      if (typeof v !== 'string') return { bad: 'expected a string (utf8)' }
      if (v.length > MAX_STRING_LENGTH) return { bad: `string of ${v.length} characters; at most ${MAX_STRING_LENGTH}` }
      return isWellFormedText(v) ? { ok: v } : { bad: LONE_SURROGATE }
    case 'timestamp': {
      if (typeof v === 'number' && Number.isSafeInteger(v)) return { ok: v }
      if (typeof v === 'string') {
        const ms = Date.parse(v)
        if (Number.isFinite(ms) && /^\d{4}-\d{2}-\d{2}/.test(v)) return { ok: ms }
      }
      return { bad: 'expected milliseconds since the epoch or an ISO 8601 date-time (timestamp)' }
    }
    case 'date': {
      if (typeof v === 'number' && Number.isSafeInteger(v)) return { ok: v }
      if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v)) {
        const ms = Date.parse(v + 'T00:00:00Z')
        if (Number.isFinite(ms)) return { ok: Math.floor(ms / DAY_MS) }
      }
      return { bad: 'expected YYYY-MM-DD or days since the epoch (date)' }
    }
  }
  return { bad: `unsupported type ${type}` }
}

/** What a Check answers for a value it refuses (a class: no input value can be one). */
class BadValue {
  constructor (readonly message: string) {}
}

/** The normalized value, or a BadValue. Valid values cost no allocation: this runs per cell. */
type Check = (v: unknown) => unknown

function checked (r: { ok: unknown } | { bad: string }): unknown {
  return 'bad' in r ? new BadValue(r.bad) : r.ok
}

interface CompiledSchema {
  names: string[]
  nullable: boolean[]
  types: ColumnType[]
  checks: Check[]
  /** Column names, for the unknown-column check (a Set: no prototype lookups). */
  known: Set<string>
}

/** Compiled checks per schema array (schemas are immutable once built; addColumn makes a new one). */
const compiled = new WeakMap<SpaceSchema, CompiledSchema>()

function compile (schema: SpaceSchema): CompiledSchema {
  let c = compiled.get(schema)
  if (c === undefined) {
    c = {
      names: schema.map(col => col.name),
      nullable: schema.map(col => col.nullable),
      types: schema.map(col => col.type),
      checks: schema.map(col => checkerOf(col.type)),
      known: new Set(schema.map(col => col.name))
    }
    compiled.set(schema, c)
  }
  return c
}

/** checkValue specialised to one type: the type is parsed once, not per value. */
function checkerOf (type: ColumnType): Check {
  if (vectorDim(type) !== undefined || listElement(type) !== undefined) return v => checked(checkValue(type, v))
  switch (type as ScalarType) {
    case 'float64': return v => typeof v === 'number' && Number.isFinite(v) ? v : new BadValue('expected a finite number (float64)')
    case 'utf8': return v => typeof v === 'string' && v.length <= MAX_STRING_LENGTH && isWellFormedText(v) ? v : checked(checkValue(type, v))
    case 'bool': return v => typeof v === 'boolean' ? v : new BadValue('expected true or false')
    case 'int64': case 'timestamp': case 'date':
      return v => typeof v === 'number' && Number.isSafeInteger(v) ? v : checked(checkValue(type, v))
    default: return v => checked(checkValue(type, v))
  }
}

/**
 * Checks one row against the schema and returns it normalized (every column present, absent ones
 * null), or the first error found in it.
 */
export function validateRow (schema: SpaceSchema, input: unknown, rowNumber: number): { row: Row } | { error: RowError } {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { error: { row: rowNumber, field: '', message: 'a record must be a JSON object' } }
  }
  const cs = compile(schema)
  const src = input as Record<string, unknown>
  for (const key in src) {
    // for-in also walks inherited enumerable keys; only own ones are the row's (as Object.keys).
    if (!cs.known.has(key) && Object.prototype.hasOwnProperty.call(src, key)) return { error: { row: rowNumber, field: key, message: 'unknown column' } }
  }
  return buildRow(cs, (_i, name) => Object.prototype.hasOwnProperty.call(src, name) ? src[name] : undefined, rowNumber)
}

/**
 * validateRow for a row sent positionally: `values[i]` is the value of `schema[i]` (a replica
 * receives rows this way, without repeating the column names in every row).
 */
export function validateRowValues (schema: SpaceSchema, values: unknown, rowNumber: number): { row: Row } | { error: RowError } {
  const cs = compile(schema)
  const n = cs.names.length
  if (!Array.isArray(values) || values.length !== n) return { error: { row: rowNumber, field: '', message: `a record must be an array of ${n} values` } }
  return buildRow(cs, i => values[i], rowNumber)
}

/** Checks and normalizes each column's value (from `valueAt`) into a new row. */
function buildRow (cs: CompiledSchema, valueAt: (i: number, name: string) => unknown, rowNumber: number): { row: Row } | { error: RowError } {
  const row = newRow()
  const n = cs.names.length
  for (let i = 0; i < n; i++) {
    const name = cs.names[i]!
    const v = valueAt(i, name)
    if (v === undefined || v === null) {
      if (!cs.nullable[i]) return { error: { row: rowNumber, field: name, message: `is required (${cs.types[i]!}, not null)` } }
      row[name] = null
      continue
    }
    const r = cs.checks[i]!(v)
    if (r instanceof BadValue) return { error: { row: rowNumber, field: name, message: r.message } }
    row[name] = r
  }
  const id = row.id as string
  if (id.length === 0 || id.length > MAX_ID_LENGTH) return { error: { row: rowNumber, field: 'id', message: `must be 1 to ${MAX_ID_LENGTH} characters` } }
  return { row }
}

/**
 * Validates a batch. Rows are numbered from `firstRowNumber` (0 by default) so a streaming import
 * can report positions in the whole file. Stops collecting after `maxErrors` errors.
 */
export function validateRows (schema: SpaceSchema, inputs: readonly unknown[], opts: { firstRowNumber?: number, maxErrors?: number } = {}): { rows: Row[], errors: RowError[] } {
  const rows: Row[] = []
  const errors: RowError[] = []
  const first = opts.firstRowNumber ?? 0
  const maxErrors = opts.maxErrors ?? 100
  for (let i = 0; i < inputs.length; i++) {
    const r = validateRow(schema, inputs[i], first + i)
    if ('error' in r) {
      errors.push(r.error)
      if (errors.length >= maxErrors) break
    } else {
      rows.push(r.row)
    }
  }
  return { rows, errors }
}

/** A row as JSON may carry it: int64 beyond ±2^53 as a decimal string (DESIGN.md section 8). */
export function rowToJson (row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(row)) {
    const v = row[key]
    const value = typeof v === 'bigint' ? v.toString() : v
    // A space created before `__proto__` was refused may still hold such a column: an own property, not the prototype.
    if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
    else out[key] = value
  }
  return out
}

/** Adds a nullable column (the only schema change allowed on a live space). */
export function addColumn (schema: SpaceSchema, column: unknown): ColumnDef[] {
  const next = checkSchema([...schema, column])
  if (RESERVED_COLUMN_NAMES.has(next[next.length - 1]!.name)) throw reservedName(`schema[${next.length - 1}].name`, next[next.length - 1]!.name)
  const added = next[next.length - 1]!
  if (!added.nullable) throw new SchemaError('column.nullable', 'a column added to an existing space must be nullable (old rows have no value)')
  return next
}

/** A space as the catalog holds it. `uid` tells apart a space from an earlier one of the same name. */
export interface SpaceDef {
  name: string
  /** Unique per creation (`<name>-<hlc>`): data directories and partitions are keyed by it. */
  uid: string
  schema: ColumnDef[]
  /** P, default 16. */
  partitions: number
  /** R requested, default 3; the effective count is min(R, live members). */
  replicas: number
}

export const SPACE_NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/
