import { afterAll, describe, expect, it } from 'vitest'
import { batchFromRows, shareBatch, type ValueType } from '../../src/columnar/index.js'
import { FragmentPool, QueryExecError, splitPlan } from '../../src/query/exec/index.js'
import { parseSql } from '../../src/query/sql/index.js'
import { validatePlan } from '../../src/query/validate/index.js'
import { parseSchemaSpec, type SpaceDef } from '../../src/schema/index.js'

// The worker runs compiled code: npm test compiles before it runs the tests.
const WORKER = new URL('../../dist/src/query/exec/worker.js', import.meta.url)
const space: SpaceDef = { name: 't', uid: 't-1', partitions: 1, replicas: 1, schema: parseSchemaSpec('g:utf8,x:float64') }
const types: Array<[string, ValueType]> = space.schema.map(c => [c.name, c.type])
const columnType = (n: string): ValueType | undefined => types.find(t => t[0] === n)?.[1]

function fragmentOf (sql: string): ReturnType<typeof splitPlan>['fragment'] {
  const { plan } = parseSql(sql)
  const v = validatePlan(plan, space)
  if (!v.ok) throw new Error(v.errors[0]!.message)
  return splitPlan(v.plan, space.schema.map(c => c.name)).fragment
}

describe('FragmentPool: fragments on worker threads over shared column batches', () => {
  const pool = new FragmentPool(1, WORKER, 1000)
  afterAll(async () => { await pool.close() })
  const rows = Array.from({ length: 50_000 }, (_, i) => ({ id: `r${i}`, g: `k${i % 7}`, x: i % 100 }))
  const batches = [0, 1, 2, 3, 4].map(b => shareBatch(batchFromRows(rows.slice(b * 10_000, (b + 1) * 10_000), [{ name: 'id', type: 'utf8' }, ...types.map(([name, type]) => ({ name, type }))])))

  it('gives the same output on a worker as on the calling thread; a worker holds two jobs, the third runs here', async () => {
    const plan = fragmentOf('SELECT g, count(*), sum(x) FROM t WHERE x > 10 GROUP BY g')
    const job = { plan, batches, columnType, types, budgetBytes: 1 << 30 }
    expect(pool.parallelism).toBe(3)
    const [a, b, c] = await Promise.all([pool.run(job), pool.run(job), pool.run(job)])
    expect(pool.counters.onWorkers).toBe(2)
    expect(pool.counters.inline).toBe(1)
    expect(a!.output).toEqual(c!.output)
    expect(b!.output).toEqual(c!.output)
    expect(a!.stats.rowsMatched).toBe(rows.filter(r => r.x > 10).length)
  })

  it('hands the next job to a worker whose answers arrived while this thread was busy, instead of running it here', async () => {
    const plan = fragmentOf('SELECT count(*) FROM t')
    const job = { plan, batches, columnType, types, budgetBytes: 1 << 30 }
    const before = { ...pool.counters }
    const a = pool.run(job)
    const b = pool.run(job)
    // This thread busy (as with a fragment of its own) long after the worker answered both: the
    // answers wait as events. A real block, not a sleep in virtual time: the worker is a real
    // thread, and only the event loop sees its answers.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000)
    const c = pool.run(job)
    await Promise.all([a, b, c])
    expect(pool.counters.onWorkers - before.onWorkers).toBe(3)
    expect(pool.counters.inline - before.inline).toBe(0)
  })

  it('takes a job back from a worker that has not started it when this thread has nothing to run', async () => {
    const before = { ...pool.counters }
    const long = { plan: fragmentOf('SELECT g, sum(x) FROM t GROUP BY g'), batches: Array.from({ length: 40 }, () => batches).flat(), columnType, types, budgetBytes: 1 << 30 }
    const short = { plan: fragmentOf('SELECT g, count(*) FROM t WHERE x < 50 GROUP BY g'), batches, columnType, types, budgetBytes: 1 << 30 }
    // Both fit the worker (one running, one waiting), so both go there; this thread is idle.
    const [a, b] = await Promise.all([pool.run(long), pool.run(short)])
    expect(pool.counters.onWorkers - before.onWorkers).toBe(2)
    expect(pool.counters.stolen - before.stolen).toBe(1)
    expect(pool.counters.inline - before.inline).toBe(0)
    expect(a!.stats.rowsScanned).toBe(40 * rows.length)
    expect(b!.stats.rowsMatched).toBe(rows.filter(r => r.x < 50).length)
  })

  it('takes nothing back while a caller is loading a fragment\'s input (this thread has work coming), and does once the load is done', async () => {
    const before = { ...pool.counters }
    const long = { plan: fragmentOf('SELECT g, sum(x) FROM t GROUP BY g'), batches: Array.from({ length: 40 }, () => batches).flat(), columnType, types, budgetBytes: 1 << 30 }
    const short = { plan: fragmentOf('SELECT g, count(*) FROM t WHERE x < 50 GROUP BY g'), batches, columnType, types, budgetBytes: 1 << 30 }
    let endLoad = (): void => {}
    const load = pool.loading(async () => { await new Promise<void>(resolve => { endLoad = resolve }) })
    const a = pool.run(long)
    const b = pool.run(short)
    // Both on the worker; this thread idle but for the load: the waiting one stays there until
    // the long one is done (the long one runs tens of ms; several turns of the loop pass).
    const shortDone = await Promise.race([b.then(() => 'short'), a.then(() => 'long')])
    expect(shortDone).toBe('long')
    await b
    expect(pool.counters.stolen - before.stolen).toBe(0)
    endLoad()
    await load
    // With no load under way the pool takes the waiting job back again.
    const [c, d] = await Promise.all([pool.run(long), pool.run(short)])
    expect(pool.counters.stolen - before.stolen).toBe(1)
    expect(c!.stats.rowsScanned).toBe(40 * rows.length)
    expect(d!.stats.rowsMatched).toBe(rows.filter(r => r.x < 50).length)
  })

  it('drops a job still waiting on a worker when its query is cancelled', async () => {
    const controller = new AbortController()
    const long = pool.run({ plan: fragmentOf('SELECT g, sum(x) FROM t GROUP BY g'), batches: Array.from({ length: 40 }, () => batches).flat(), columnType, types, budgetBytes: 1 << 30 })
    const waiting = pool.run({ plan: fragmentOf('SELECT count(*) FROM t'), batches, columnType, types, budgetBytes: 1 << 30, signal: controller.signal })
    controller.abort()
    const err = await waiting.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryExecError)
    expect((err as QueryExecError).code).toBe('CANCELLED')
    expect((await long).stats.rowsScanned).toBe(40 * rows.length)
  })

  it('passes a fragment error back with its code', async () => {
    const plan = fragmentOf('SELECT id, count(*) FROM t GROUP BY id')
    const busy = pool.run({ plan: fragmentOf('SELECT count(*) FROM t'), batches, columnType, types, budgetBytes: 1 << 30 })
    // The second job goes to the worker only if it is idle: wait for the first to finish.
    await busy
    const err = await pool.run({ plan, batches, columnType, types, budgetBytes: 1000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryExecError)
    expect((err as QueryExecError).code).toBe('MEMORY_BUDGET')
  })

  it('stops a fragment on a worker when its signal is aborted', async () => {
    const controller = new AbortController()
    const many = Array.from({ length: 40 }, () => batches).flat()
    const running = pool.run({ plan: fragmentOf('SELECT g, approx_quantile(x, 0.5) FROM t GROUP BY g'), batches: many, columnType, types, budgetBytes: 1 << 30, signal: controller.signal })
    setTimeout(() => { controller.abort() }, 20)
    const err = await running.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryExecError)
    expect((err as QueryExecError).code).toBe('CANCELLED')
  })
})

describe('FragmentPool: small fragments stay on the calling thread', () => {
  it('runs a fragment below minWorkerRows inline even with an idle worker', async () => {
    const pool = new FragmentPool(1, WORKER, 100_000)
    try {
      const batch = shareBatch(batchFromRows([{ g: 'a', x: 1 }], types.map(([name, type]) => ({ name, type }))))
      await pool.run({ plan: fragmentOf('SELECT count(*) FROM t'), batches: [batch], columnType, types, budgetBytes: 1 << 20 })
      expect(pool.counters).toEqual({ onWorkers: 0, inline: 1, stolen: 0 })
    } finally {
      await pool.close()
    }
  })
})
