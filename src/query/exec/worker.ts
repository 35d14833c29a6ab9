/**
 * A query fragment worker thread (see pool.ts): runs fragments over column batches that arrive
 * in shared memory, one at a time, and answers with the fragment's output. One message in, one
 * out; a `cancel` message stops a running fragment at its next yield (or drops a waiting one); a
 * `steal` message takes a waiting one back for the pool's thread to run.
 */
import '../../polyfill/index.js'
import { parentPort } from 'node:worker_threads'
import type { StoredBatch, ValueType } from '../../columnar/index.js'
import type { PlanNode } from '../model/index.js'
import { MemoryBudget, QueryExecError } from './errors.js'
import { runFragment } from './fragment.js'

export interface WorkerJob {
  id: number
  plan: PlanNode
  types: Array<[string, ValueType]>
  batches: StoredBatch[]
  budgetBytes: number
}

/** The job under way (its cancel switch), and those waiting behind it, in arrival order. */
const running = new Map<number, AbortController>()
const queue: WorkerJob[] = []

type Message = WorkerJob | { cancel: number } | { steal: number }

parentPort?.on('message', (msg: Message) => {
  if ('cancel' in msg) {
    const waiting = take(msg.cancel)
    if (waiting !== undefined) parentPort!.postMessage({ id: waiting.id, error: { name: 'QueryExecError', code: 'CANCELLED', message: 'the query was cancelled' } })
    else running.get(msg.cancel)?.abort()
    return
  }
  // The pool's thread is idle and wants a job back that has not started here: hand it back, or
  // say nothing (it runs, or ran, here and its answer comes as usual).
  if ('steal' in msg) {
    if (take(msg.steal) !== undefined) parentPort!.postMessage({ id: msg.steal, stolen: true })
    return
  }
  queue.push(msg)
  setImmediate(pump)
})

function take (id: number): WorkerJob | undefined {
  const i = queue.findIndex(j => j.id === id)
  return i < 0 ? undefined : queue.splice(i, 1)[0]
}

/**
 * Runs one job at a time, in order. The next starts on a later turn of the event loop, so a
 * steal request already sent is seen first.
 */
function pump (): void {
  if (running.size > 0) return
  const job = queue.shift()
  if (job === undefined) return
  void run(job).finally(() => { setImmediate(pump) })
}

async function run (job: WorkerJob): Promise<void> {
  const controller = new AbortController()
  running.set(job.id, controller)
  const types = new Map(job.types)
  try {
    const result = await runFragment(job.plan, {
      source: { batches: () => job.batches },
      columnType: name => types.get(name),
      budget: new MemoryBudget(job.budgetBytes),
      signal: controller.signal
    })
    parentPort!.postMessage({ id: job.id, result })
  } catch (err) {
    const e = err as Error
    parentPort!.postMessage({ id: job.id, error: { name: e.name, code: err instanceof QueryExecError ? err.code : undefined, message: e.message } })
  } finally {
    running.delete(job.id)
  }
}
