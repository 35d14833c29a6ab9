/**
 * Runs query fragments on worker threads as well as on the main thread, so that one peer's
 * partitions of a query use every core. Column batches from storage live in shared memory
 * (src/columnar/shared.ts): a fragment sent to a worker takes its data along without a copy
 * (only string dictionaries are copied). A job goes to a worker with room (each holds one running
 * and one queued), or runs on the calling thread when every worker is full or the job is small;
 * a calling thread with nothing left to run takes a queued job back from a worker.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { StoredBatch, ValueType } from '../../columnar/index.js'
import type { PlanNode } from '../model/index.js'
import { MemoryBudget, QueryExecError, type QueryExecErrorCode } from './errors.js'
import { runFragment, type FragmentResult } from './fragment.js'
import type { WorkerJob } from './worker.js'

export interface FragmentJob {
  plan: PlanNode
  batches: StoredBatch[]
  columnType: (name: string) => ValueType | undefined
  /** Column name → type for the columns the batches hold (sent to the worker). */
  types: Array<[string, ValueType]>
  budgetBytes: number
  signal?: AbortSignal
  now?: () => number
}

interface Slot {
  worker: Worker
  /** Jobs sent and not yet answered (at most PER_WORKER). */
  inflight: number
  /** By id, in the order sent (the worker runs them in that order). */
  jobs: Map<number, SentJob>
  /** The job asked back, until the worker hands it back or answers it. */
  stealing: number | null
}

interface SentJob {
  job: FragmentJob
  resolve: (r: FragmentResult) => void
  reject: (e: Error) => void
}

/** Jobs a worker holds at once: one running and one waiting in its message queue. */
const PER_WORKER = 2

/** Workers to start by default: one fewer than the cores (the main thread works too). */
export function defaultPoolSize (): number { return Math.max(0, availableParallelism() - 1) }

export class FragmentPool {
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  /**
   * Fragments sent to a worker thread; run on the calling thread (every worker busy, or none);
   * and sent to a worker but taken back before it started them, because this thread had nothing
   * left to do (without that, the last fragments of a query queue on a worker while this thread
   * waits: a fragment's time lost at the end of every query).
   */
  readonly counters = { onWorkers: 0, inline: 0, stolen: 0 }
  /** Fragments running on this thread, and run() calls still deciding where theirs goes. */
  private runningHere = 0
  private deciding = 0
  /** Callers reading a fragment's input (see loading()). */
  private loads = 0

  /** Workers not started yet: they start on the first fragment big enough for one. */
  private pending: number

  /**
   * @param minWorkerRows fragments over fewer rows run on the calling thread: below about 50,000
   *   rows the message round trip to a worker costs more than the parallelism saves.
   */
  constructor (readonly size = defaultPoolSize(), private readonly workerUrl: URL = new URL('./worker.js', import.meta.url), readonly minWorkerRows = 50_000) {
    // Started lazily: a peer that never runs a big query never pays for loading them.
    this.pending = Math.max(0, size)
  }

  private startWorkers (): void {
    for (; this.pending > 0; this.pending--) {
      const slot: Slot = { worker: new Worker(this.workerUrl), inflight: 0, jobs: new Map(), stealing: null }
      slot.worker.on('message', (msg: { id: number, result?: FragmentResult, stolen?: true, error?: { name: string, code?: string, message: string } }) => {
        const job = slot.jobs.get(msg.id)
        if (job === undefined) return
        slot.jobs.delete(msg.id)
        if (slot.stealing === msg.id) slot.stealing = null
        // A worker with work keeps the process alive; an idle one must not keep a stopping peer up.
        if (--slot.inflight === 0) slot.worker.unref()
        if (msg.stolen === true) {
          this.counters.stolen++
          this.runHere(job.job).then(job.resolve, job.reject)
          return
        }
        if (msg.error !== undefined) {
          job.reject(msg.error.code !== undefined ? new QueryExecError(msg.error.code as QueryExecErrorCode, msg.error.message) : Object.assign(new Error(msg.error.message), { name: msg.error.name }))
        } else {
          job.resolve(msg.result!)
        }
      })
      slot.worker.on('error', (err) => { this.failSlot(slot, err) })
      slot.worker.on('exit', () => { this.failSlot(slot, new Error('query worker exited')) })
      slot.worker.unref()
      this.slots.push(slot)
    }
  }

  /** Worker threads this pool runs (or will, once a big fragment comes). */
  get workers (): number { return this.slots.length + this.pending }

  /**
   * Fragments to have under way at once: PER_WORKER per worker (one running, one queued behind
   * it, so a worker never waits for the calling thread to hand it the next) plus one here.
   */
  get parallelism (): number { return this.workers * PER_WORKER + 1 }

  private failSlot (slot: Slot, err: Error): void {
    for (const job of slot.jobs.values()) job.reject(err)
    slot.jobs.clear()
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
  }

  async run (job: FragmentJob): Promise<FragmentResult> {
    // A small fragment costs less to run here than the round trip to a worker (~0.3-0.5 ms).
    let rows = 0
    for (const b of job.batches) rows += b.length
    const eligible = !this.closed && rows >= this.minWorkerRows
    if (eligible && this.pending > 0) this.startWorkers()
    let slot = eligible ? this.slots.find(s => s.inflight < PER_WORKER) : undefined
    if (slot === undefined && eligible && this.slots.length > 0) {
      // The workers' answers to earlier jobs arrive as events, and this thread may have been busy
      // with a fragment of its own since (a chain of awaits never yields to the event loop): let
      // them in before deciding every worker is full. Without this, the calling thread ran
      // fragment after fragment while a worker that had finished sat idle (73 % of the time).
      this.deciding++
      await new Promise<void>(resolve => { setImmediate(resolve) })
      this.deciding--
      slot = this.slots.find(s => s.inflight < PER_WORKER)
    }
    if (slot === undefined) {
      this.counters.inline++
      return await this.runHere(job)
    }
    const id = this.nextId++
    this.counters.onWorkers++
    if (slot.inflight++ === 0) slot.worker.ref()
    const message: WorkerJob = { id, plan: job.plan, types: job.types, batches: job.batches, budgetBytes: job.budgetBytes }
    const onAbort = (): void => { slot.worker.postMessage({ cancel: id }) }
    job.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await new Promise<FragmentResult>((resolve, reject) => {
        slot.jobs.set(id, { job, resolve, reject })
        slot.worker.postMessage(message)
        this.stealSoon()
      })
    } finally {
      job.signal?.removeEventListener('abort', onAbort)
    }
  }

  /**
   * Runs `read`, a caller's reading of the input of a fragment it will run(), letting the pool
   * know this thread has work coming: while any such read is under way, this thread does not
   * take queued fragments back from the workers. A read from disk leaves this thread idle while
   * it waits, then checks and decodes what it read; a fragment taken back in that gap ran in the
   * way of the decoding, where the worker it was queued on would have run it anyway (a cold
   * scan, the queries of bench/scan: about 10 % slower with the taking back).
   */
  async loading<T> (read: () => Promise<T>): Promise<T> {
    this.loads++
    try {
      return await read()
    } finally {
      this.loads--
      this.stealSoon()
    }
  }

  /** Runs a fragment on this thread; when it ends, this thread may be idle: see stealSoon. */
  private async runHere (job: FragmentJob): Promise<FragmentResult> {
    this.runningHere++
    try {
      // A job taken back from a worker may belong to a query cancelled meanwhile.
      if (job.signal?.aborted === true) throw new QueryExecError('CANCELLED', 'the query was cancelled')
      return await runFragment(job.plan, {
        source: { batches: () => job.batches },
        columnType: job.columnType,
        budget: new MemoryBudget(job.budgetBytes),
        ...(job.signal !== undefined ? { signal: job.signal } : {}),
        ...(job.now !== undefined ? { now: job.now } : {})
      })
    } finally {
      this.runningHere--
      this.stealSoon()
    }
  }

  /**
   * On a later turn of the event loop (when callers have handed in whatever they had next): if
   * this thread has no fragment of its own and a worker holds one it has not started, asks for
   * that one back. One at a time: this thread runs one fragment.
   */
  private stealSoon (): void {
    setImmediate(() => {
      if (this.closed || this.runningHere > 0 || this.deciding > 0 || this.loads > 0) return
      if (this.slots.some(s => s.stealing !== null)) return
      for (const slot of this.slots) {
        // The worker runs its jobs in the order sent: when it holds more than one, the last sent
        // is waiting.
        if (slot.inflight < 2) continue
        let last: number | undefined
        for (const id of slot.jobs.keys()) last = id
        slot.stealing = last!
        slot.worker.postMessage({ steal: last })
        return
      }
    })
  }

  async close (): Promise<void> {
    this.closed = true
    this.pending = 0
    await Promise.all(this.slots.map(async s => await s.worker.terminate()))
    this.slots.length = 0
  }
}
