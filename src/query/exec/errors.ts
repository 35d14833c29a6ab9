/** Errors of query execution. `code` is stable; HTTP maps them (BUDGET and LIMIT are the caller's 4xx-ish limits). */
export type QueryExecErrorCode = 'BAD_PARTIAL' | 'BAD_FRAGMENT' | 'UNSUPPORTED' | 'MEMORY_BUDGET' | 'LIMIT' | 'CANCELLED'

export class QueryExecError extends Error {
  constructor (readonly code: QueryExecErrorCode, message: string) {
    super(message)
    this.name = 'QueryExecError'
  }
}

/**
 * A per-query memory budget: operators report what they hold (group tables, buffered rows,
 * gathered partials) and the query fails cleanly once the total passes the limit, rather than
 * taking the peer's heap with it.
 */
export class MemoryBudget {
  private held = new Map<object, number>()
  private total = 0
  peak = 0
  constructor (readonly limitBytes: number) {}

  /** Sets what `owner` holds now (replacing its previous figure); throws past the limit. */
  set (owner: object, bytes: number): void {
    this.total += bytes - (this.held.get(owner) ?? 0)
    this.held.set(owner, bytes)
    if (this.total > this.peak) this.peak = this.total
    if (this.total > this.limitBytes) {
      throw new QueryExecError('MEMORY_BUDGET', `the query needs more than its memory budget of ${Math.round(this.limitBytes / 1048576)} MiB (at ${Math.round(this.total / 1048576)} MiB); narrow it with a filter, fewer groups or a LIMIT, or raise query.memoryBudgetMb`)
    }
  }

  release (owner: object): void {
    this.total -= this.held.get(owner) ?? 0
    this.held.delete(owner)
  }

  get used (): number { return this.total }
}
