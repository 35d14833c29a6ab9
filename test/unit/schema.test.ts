import { describe, expect, it } from 'vitest'
import { addColumn, arrowSchema, checkSchema, parseSchemaSpec, rowToJson, SchemaError, validateRows } from '../../src/schema/index.js'

describe('schemas', () => {
  it('parses the CLI form, puts id first, and makes columns nullable unless marked !', () => {
    const s = parseSchemaSpec('amount:float64!,tags:list<utf8>,embedding:vector<3>,id:utf8')
    expect(s.map(c => c.name)).toEqual(['id', 'amount', 'tags', 'embedding'])
    expect(s.map(c => c.nullable)).toEqual([false, false, true, true])
    expect(arrowSchema(s).fields.map(f => String(f.type))).toEqual(['Utf8', 'Float64', 'List<Utf8>', 'FixedSizeList[3]<Float32>'])
  })

  it('adds a utf8 id column when the schema has none', () => {
    expect(parseSchemaSpec('x:int32')[0]).toEqual({ name: 'id', type: 'utf8', nullable: false })
  })

  it('names the offending field in schema errors', () => {
    expect(() => checkSchema([{ name: 'a', type: 'int128' }])).toThrow('schema[0].type: unknown type')
    expect(() => checkSchema([{ name: '1a', type: 'int32' }])).toThrow('schema[0].name')
    expect(() => checkSchema([{ name: 'a', type: 'int32' }, { name: 'a', type: 'utf8' }])).toThrow("schema[1].name: duplicate column 'a'")
    expect(() => checkSchema([{ name: 'id', type: 'int64' }])).toThrow('must be utf8')
    expect(() => checkSchema([{ name: 'a', type: 'int32', extra: 1 }])).toThrow('schema[0].extra')
    expect(() => parseSchemaSpec('a')).toThrow(SchemaError)
  })

  it('only lets a nullable column be added to an existing space', () => {
    const s = parseSchemaSpec('a:int32')
    expect(addColumn(s, { name: 'b', type: 'utf8', nullable: true }).map(c => c.name)).toEqual(['id', 'a', 'b'])
    expect(() => addColumn(s, { name: 'b', type: 'utf8', nullable: false })).toThrow('must be nullable')
  })
})

describe('validateRows()', () => {
  const schema = parseSchemaSpec('n:int32!,big:int64,f:float32,ok:bool,at:timestamp,day:date,tags:list<utf8>,v:vector<2>')

  it('normalizes every type to its in-memory form and fills absent columns with null', () => {
    const { rows, errors } = validateRows(schema, [
      { id: 'a', n: 1, big: '9007199254740993', f: 0.1, ok: true, at: '2026-01-02T03:04:05.000Z', day: '2026-01-02', tags: ['x'], v: [1, 2] },
      { id: 'b', n: -5, big: 42 }
    ])
    expect(errors).toEqual([])
    expect(rows[0]!.big).toBe(9007199254740993n)
    expect(rows[0]!.f).toBe(Math.fround(0.1))
    expect(rows[0]!.at).toBe(Date.UTC(2026, 0, 2, 3, 4, 5))
    expect(rows[0]!.day).toBe(Date.UTC(2026, 0, 2) / 86_400_000)
    expect(rows[1]!.big).toBe(42)
    expect(rows[1]!.tags).toBeNull()
    expect(rowToJson(rows[0]!).big).toBe('9007199254740993')
  })

  it('refuses bad rows with their row number and field, and keeps only good rows', () => {
    const { rows, errors } = validateRows(schema, [
      { id: 'a', n: 1 },
      { id: 'b', n: 2.5 },
      { id: 'c' },
      { id: 'd', n: 1, color: 'red' },
      { id: 'e', n: 1, v: [1, 2, 3] },
      { id: '', n: 1 },
      'not an object'
    ], { firstRowNumber: 10 })
    expect(rows.map(r => r.id)).toEqual(['a'])
    expect(errors.map(e => [e.row, e.field])).toEqual([[11, 'n'], [12, 'n'], [13, 'color'], [14, 'v'], [15, 'id'], [16, '']])
    expect(errors[1]!.message).toContain('required')
  })

  it('builds rows without a prototype, so hostile keys stay plain data', () => {
    const s = parseSchemaSpec('constructor:utf8')
    const input = JSON.parse('{"id":"x","constructor":"y","__proto__":{"polluted":true}}')
    const { errors } = validateRows(s, [input])
    expect(errors[0]?.field).toBe('__proto__')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})
