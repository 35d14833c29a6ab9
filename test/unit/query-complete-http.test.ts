import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HttpServer, registerQueryApi } from '../../src/http/index.js'
import { QueryService, type QueryAnswer } from '../../src/query/service/index.js'
import { SystemClock, silentLogger, type Transport } from '../../src/runtime/index.js'
import { checkSchema, type SpaceDef } from '../../src/schema/index.js'
import { MemoryStores } from '../sim/memory-store.js'

/**
 * A completion through POST /query on one in-process peer that holds every partition (its query
 * service, the real HTTP routes, memory stores; no other process): the answer's rows and its
 * `completion`, the same from SQL, EXPLAIN, and a 400 INVALID_QUERY naming the field for each
 * mistake validation catches.
 */
const people: SpaceDef = {
  name: 'people',
  uid: 'people@1',
  partitions: 4,
  replicas: 1,
  schema: checkSchema([
    { name: 'id', type: 'utf8' }, { name: 'city', type: 'utf8' }, { name: 'age', type: 'int32' }, { name: 'income', type: 'float64' },
    { name: 'job', type: 'utf8' }, { name: 'embedding', type: 'vector<3>' }, { name: 'tags', type: 'list<utf8>' }, { name: 'joined', type: 'timestamp' }
  ])
}

const ROWS = [
  { id: 'p1', city: 'Paris', age: 31, income: 50_000, job: 'baker', embedding: [1, 0, 0], tags: ['a'], joined: 1000 },
  { id: 'p2', city: 'Paris', age: 33, income: 52_000, job: 'baker', embedding: [0.9, 0.1, 0], tags: null, joined: 2000 },
  { id: 'p3', city: 'Paris', age: 60, income: 90_000, job: 'judge', embedding: [0, 1, 0], tags: ['b'], joined: 3000 },
  { id: 'p4', city: 'Rome', age: 31, income: 40_000, job: 'cook', embedding: [1, 0, 0], tags: null, joined: 4000 },
  { id: 'p5', city: 'Oslo', age: 45, income: 70_000, job: 'pilot', embedding: null, tags: ['c'], joined: null }
]

/** Partition by the id's digit: every partition holds some rows. */
const partitionOf = (id: string): number => Number(id.slice(1)) % people.partitions

let server: HttpServer
let url: string

beforeAll(async () => {
  const stores = new MemoryStores()
  for (let p = 0; p < people.partitions; p++) await stores.open(people, p)
  let version = 1
  for (const row of ROWS) await stores.get(people, partitionOf(row.id))!.apply([{ id: row.id, version: version++, deleted: false, row: { ...row } }])
  // Every partition is this peer's: the query never reaches the transport.
  const transport = { handleStream: () => {} } as unknown as Transport
  const service = new QueryService({
    transport,
    clock: new SystemClock(),
    log: silentLogger,
    self: 'p0',
    space: name => name === people.name ? people : undefined,
    partitionOf: (_space, id) => partitionOf(id),
    readReplicas: () => ['p0'],
    addressOf: () => undefined,
    isReachable: () => true,
    isSuspect: () => false,
    isSynced: () => true,
    openForQuery: async (space, partition) => stores.get(space, partition)!
  })
  server = new HttpServer({ host: '127.0.0.1', port: 0 }, silentLogger)
  registerQueryApi(server, service)
  const { port } = await server.start()
  url = `http://127.0.0.1:${port}`
})
afterAll(async () => { await server?.stop(0) })

const post = async (path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any }> => {
  const res = await fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

describe('complete over HTTP', () => {
  it('answers the neighbours as rows and the filled record as completion', async () => {
    const r = await post('/query', { space: 'people', complete: { record: { city: 'Paris', age: 31 }, k: 3, fill: ['job', 'income'], scales: { age: 10 } } })
    expect(r.status).toBe(200)
    expect(Object.keys(r.body)).toEqual(['columns', 'rows', 'completion', 'coverage', 'confidence', 'tookMs'])
    expect(r.body.columns.map((c: { name: string }) => c.name)).toEqual([...people.schema.map(c => c.name), '_score'])
    const s2 = (1 + Math.exp(-0.2)) / 2
    const s3 = (1 + Math.exp(-2.9)) / 2
    expect(r.body.rows.map((x: QueryAnswer['rows'][number]) => [x.id, x._score])).toEqual([['p1', 1], ['p2', s2], ['p3', s3]])
    const total = 1 + s2 + s3
    const mean = (50_000 + 52_000 * s2 + 90_000 * s3) / total
    expect(r.body.completion.record).toEqual({ city: 'Paris', age: 31, job: 'baker', income: expect.closeTo(mean, 6) })
    // Within a tenth of the mean (~60,500): 52,000 and 50,000 are not; nor is 90,000.
    const near = [50_000, 52_000, 90_000].map((v, i) => Math.abs(v - mean) <= mean / 10 ? [1, s2, s3][i]! : 0).reduce((a, b) => a + b, 0)
    expect(r.body.completion.confidence).toEqual({ job: expect.closeTo((1 + s2) / total, 12), income: expect.closeTo(near / total, 12) })
    expect(r.body.completion.support.job).toBe(2)
    expect(r.body.coverage).toEqual({ total: 4, answered: 4, missing: [] })
    expect(r.body.confidence).toBe(1)
  })

  it('answers the same from SQL, with WHERE applied before ranking', async () => {
    const json = await post('/query', { space: 'people', filter: { range: { age: { gt: 31 } } }, complete: { record: { city: 'Paris', embedding: [1, 0, 0] }, k: 2 } })
    const sql = await post('/query', { sql: `SELECT * FROM complete('people', '{"city": "Paris", "embedding": [1, 0, 0]}', 2) WHERE age > 31` })
    expect(sql.status).toBe(200)
    expect(sql.body.rows).toEqual(json.body.rows)
    expect(sql.body.completion).toEqual(json.body.completion)
    expect(json.body.rows.map((x: { id: string }) => x.id)).toEqual(['p2', 'p3'])
    // Default fill: every column not given, but id and vectors.
    expect(Object.keys(json.body.completion.record)).toEqual(['city', 'embedding', 'age', 'income', 'job', 'tags', 'joined'])
  })

  it('EXPLAIN shows the Complete node', async () => {
    const r = await post('/query/explain', { sql: `SELECT * FROM complete('people', '{"city": "Paris"}', 2)` })
    expect(r.status).toBe(200)
    expect(r.body.text).toContain("Complete 2 like (city = 'Paris')")
    expect(r.body.plan.final).toEqual(['complete'])
  })

  it('refuses NDJSON and Arrow for a completion (its record does not fit rows)', async () => {
    const r = await post('/query', { space: 'people', complete: { record: { city: 'Paris' } } }, { accept: 'application/x-ndjson' })
    expect(r.status).toBe(406)
  })

  describe('400 INVALID_QUERY naming the field', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['an unknown column in the record', { record: { city: 'Paris', agee: 3 } }, 'complete.record.agee'],
      ['a value of the wrong type', { record: { age: 'old' } }, 'complete.record.age'],
      ['a text value for a number column', { record: { age: '31' } }, 'complete.record.age'],
      ['a number for a text column', { record: { city: 7 } }, 'complete.record.city'],
      ['a vector of the wrong length', { record: { embedding: [1, 0] } }, 'complete.record.embedding'],
      ['a null in the record', { record: { city: null } }, 'complete.record.city'],
      ['an empty record', { record: {} }, 'complete.record'],
      ['k of 0', { record: { city: 'Paris' }, k: 0 }, 'complete.k'],
      ['k over 1000', { record: { city: 'Paris' }, k: 1001 }, 'complete.k'],
      ['k not an integer', { record: { city: 'Paris' }, k: 2.5 }, 'complete.k'],
      ['an unknown column in fill', { record: { city: 'Paris' }, fill: ['jbo'] }, 'complete.fill[0]'],
      ['a vector in fill', { record: { city: 'Paris' }, fill: ['job', 'embedding'] }, 'complete.fill[1]'],
      ['a given column in fill', { record: { city: 'Paris' }, fill: ['city'] }, 'complete.fill[0]'],
      ['a weight for a column not given', { record: { city: 'Paris' }, weights: { age: 2 } }, 'complete.weights.age'],
      ['a weight for an unknown column', { record: { city: 'Paris' }, weights: { nope: 2 } }, 'complete.weights.nope'],
      ['a negative weight', { record: { city: 'Paris', age: 3 }, weights: { city: -1 } }, 'complete.weights.city'],
      ['every weight 0', { record: { city: 'Paris', age: 3 }, weights: { city: 0, age: 0 } }, 'complete.weights'],
      ['a scale for a text column', { record: { city: 'Paris' }, scales: { city: 2 } }, 'complete.scales.city'],
      ['a scale of 0', { record: { age: 30 }, scales: { age: 0 } }, 'complete.scales.age'],
      ['a scale for a column not given', { record: { city: 'Paris' }, scales: { age: 2 } }, 'complete.scales.age'],
      ['an unknown option', { record: { city: 'Paris' }, size: 3 }, 'complete.size']
    ]
    for (const [what, complete, field] of cases) {
      it(what, async () => {
        const r = await post('/query', { space: 'people', complete })
        expect(r.status, JSON.stringify(r.body)).toBe(400)
        expect(r.body.error.code).toBe('INVALID_QUERY')
        expect(r.body.error.message).toContain(field)
        expect(r.body.error.details[0].at).toBe(field)
      })
    }

    it('size, sort, fields or aggs beside complete', async () => {
      const r = await post('/query', { space: 'people', complete: { record: { city: 'Paris' } }, size: 3 })
      expect(r.status).toBe(400)
      expect(r.body.error.message).toContain('size: not allowed with complete')
    })
  })
})
