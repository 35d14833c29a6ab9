import type { DataApi, RecordAnswer, RequestOptions, SpaceView, WriteOutcome } from '../http/index.js'
import type { HybridClock } from '../hlc/index.js'
import { CatalogError, type PlacementService, type SpaceCatalog } from '../placement/index.js'
import type { Replicator } from '../replication/index.js'
import { HistogramFamily, type Clock } from '../runtime/index.js'
import { rowToJson, validateRows, type SpaceDef } from '../schema/index.js'

/**
 * The data operations of the HTTP API and CLI, in one place above the layers: schema validation
 * at the coordinator (a batch with a bad row writes nothing), then replication. HTTP knows
 * nothing of the layers below; this class knows nothing of HTTP.
 */
export class DataService implements DataApi {
  /**
   * For /metrics: how long this peer took to coordinate writes (`op` put or delete) and reads of
   * records, in seconds, by consistency level and outcome (`ok`, or `error`: the level was not met
   * or the request failed), from validation done to the replicator's answer.
   */
  readonly timings = {
    writes: new HistogramFamily(['op', 'consistency', 'outcome']),
    reads: new HistogramFamily(['consistency', 'outcome'])
  }

  constructor (
    private readonly catalog: SpaceCatalog,
    private readonly placement: PlacementService,
    private readonly replicator: Replicator,
    private readonly hlc: HybridClock,
    private readonly clusterSize: () => number,
    private readonly clock: Pick<Clock, 'now'>
  ) {}

  createSpace (input: unknown): SpaceView {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new CatalogError('BAD_INPUT', 'body', 'expected {name, schema: [{name, type, nullable}], partitions?, replicas?}')
    }
    const { name, schema, partitions, replicas, ...rest } = input as Record<string, unknown>
    const unknown = Object.keys(rest)
    if (unknown.length > 0) throw new CatalogError('BAD_INPUT', unknown[0]!, `unknown field '${unknown[0]!}'; expected name, schema, partitions, replicas`)
    return this.view(this.catalog.create({
      name: name as string,
      schema: schema as never,
      ...(partitions !== undefined ? { partitions: partitions as number } : {}),
      ...(replicas !== undefined ? { replicas: replicas as number } : {})
    }))
  }

  listSpaces (): SpaceView[] {
    return this.catalog.list().map(s => this.view(s))
  }

  describeSpace (name: string): SpaceView {
    const space = this.require(name)
    const placement = []
    for (let p = 0; p < space.partitions; p++) {
      const loc = this.placement.locate(space, p)
      // fresh: no member has announced this partition ready yet (its owners count as ready).
      placement.push({ partition: p, owners: [...loc.owners], readReplicas: [...loc.readReplicas], writeReplicas: [...loc.writeReplicas], quorum: loc.quorum, fresh: loc.fresh })
    }
    return { ...this.view(space), placement }
  }

  dropSpace (name: string): void {
    this.catalog.drop(name)
  }

  addColumn (name: string, column: unknown): SpaceView {
    return this.view(this.catalog.addColumn(name, column))
  }

  async writeRecords (name: string, inputs: unknown[], opts: RequestOptions): Promise<WriteOutcome> {
    const space = this.require(name)
    const { rows, errors } = validateRows(space.schema, inputs)
    if (errors.length > 0) return { written: 0, errors }
    if (rows.length === 0) return { written: 0, errors: [] }
    this.observe(opts)
    const result = await this.timed(this.timings.writes, ['put', opts.consistency], async () => await this.replicator.write(space, rows, { ...levelOf(opts), prevalidated: true }))
    return {
      written: result.written,
      stale: result.stale,
      staleIds: result.staleIds,
      version: result.version,
      errors: [],
      consistency: opts.consistency,
      partitions: result.partitions
    }
  }

  async getRecord (name: string, id: string, opts: RequestOptions): Promise<RecordAnswer | undefined> {
    const space = this.require(name)
    this.observe(opts)
    const result = await this.timed(this.timings.reads, [opts.consistency], async () => await this.replicator.read(space, id, levelOf(opts)))
    if (result.record === undefined || result.record.row === null) return undefined
    return { record: rowToJson(result.record.row), version: result.record.version, ...(result.repaired > 0 ? { repaired: result.repaired } : {}) }
  }

  async deleteRecord (name: string, id: string, opts: RequestOptions): Promise<{ deleted: true, version: number }> {
    const space = this.require(name)
    this.observe(opts)
    const result = await this.timed(this.timings.writes, ['delete', opts.consistency], async () => await this.replicator.remove(space, [id], levelOf(opts)))
    return { deleted: true, version: result.version }
  }

  /** Runs `fn`, recording its duration in `family` under `labels` and its outcome. */
  private async timed<T> (family: HistogramFamily, labels: string[], fn: () => Promise<T>): Promise<T> {
    const t0 = this.clock.now()
    let outcome = 'error'
    try {
      const result = await fn()
      outcome = 'ok'
      return result
    } finally {
      family.observe([...labels, outcome], (this.clock.now() - t0) / 1000)
    }
  }

  /** Moves the clock past the client's causality token (refusing one too far in the future). */
  private observe (opts: RequestOptions): void {
    if (opts.after !== undefined) this.hlc.observe(opts.after)
  }

  private require (name: string): SpaceDef {
    const space = this.catalog.get(name)
    if (space === undefined) throw new CatalogError('UNKNOWN_SPACE', 'name', `no space named '${name}'`)
    return space
  }

  private view (space: SpaceDef): SpaceView {
    return {
      name: space.name,
      uid: space.uid,
      schema: space.schema.map(c => ({ name: c.name, type: c.type, nullable: c.nullable })),
      partitions: space.partitions,
      replicas: space.replicas,
      effectiveReplicas: Math.min(space.replicas, this.clusterSize())
    }
  }
}

function levelOf (opts: RequestOptions): { consistency: RequestOptions['consistency'], timeoutMs?: number } {
  return opts.timeoutMs === undefined ? { consistency: opts.consistency } : { consistency: opts.consistency, timeoutMs: opts.timeoutMs }
}
