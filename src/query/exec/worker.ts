/**
 * A query fragment worker thread (see pool.ts): runs fragments over column batches that arrive
 * in shared memory, and answers with the fragment's output. One message in, one out; a `cancel`
 * message stops a running fragment at its next yield.
 */
import '../../polyfill/index.js'
import { parentPort } from 'node:worker_threads'
import type { ColumnBatch, ValueType } from '../../columnar/index.js'
import type { PlanNode } from '../model/index.js'
import { MemoryBudget, QueryExecError } from './errors.js'
import { runFragment } from './fragment.js'

export interface WorkerJob {
  id: number
  plan: PlanNode
  types: Array<[string, ValueType]>
  batches: ColumnBatch[]
  budgetBytes: number
}

const running = new Map<number, AbortController>()

parentPort?.on('message', (msg: WorkerJob | { cancel: number }) => {
  if ('cancel' in msg) { running.get(msg.cancel)?.abort(); return }
  void run(msg)
})

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
