/**
 * What a restore does with each space of a backup, decided before anything is written: spaces
 * the cluster lacks are created with the backup's definition; a space it has with the same
 * schema is restored into (its partitions and replicas may differ: records are placed by the
 * cluster's own partitioning); a space it has with another schema refuses the whole restore.
 */
import type { ColumnDef } from '../schema/index.js'
import { BackupSchemaConflictError } from './errors.js'
import { schemaDifference, type ManifestSpace } from './format.js'

/** A space as the cluster has it (GET /spaces). */
export interface ClusterSpace { name: string, schema: ColumnDef[], partitions: number, replicas: number }

export interface RestorePlan {
  /** Spaces to create, with the backup's definition. */
  create: ManifestSpace[]
  /** Spaces that exist with the same schema; `note` says what else differs (partitions, replicas), if anything. */
  existing: Array<{ space: ManifestSpace, note?: string }>
}

/**
 * Plans a restore of `spaces` into a cluster holding `cluster`. Throws BackupSchemaConflictError
 * naming every space whose schema differs, so one run names every space to fix.
 */
export function planRestore (spaces: readonly ManifestSpace[], cluster: readonly ClusterSpace[]): RestorePlan {
  const byName = new Map(cluster.map(s => [s.name, s]))
  const plan: RestorePlan = { create: [], existing: [] }
  const conflicts: Array<{ space: string, difference: string }> = []
  for (const space of spaces) {
    const there = byName.get(space.name)
    if (there === undefined) { plan.create.push(space); continue }
    const diff = schemaDifference(space.schema, there.schema)
    if (diff !== undefined) { conflicts.push({ space: space.name, difference: diff }); continue }
    const notes: string[] = []
    if (there.partitions !== space.partitions) notes.push(`${there.partitions} partitions in the cluster, ${space.partitions} in the backup (records are placed by the cluster's)`)
    if (there.replicas !== space.replicas) notes.push(`replicas ${there.replicas} in the cluster, ${space.replicas} in the backup`)
    plan.existing.push(notes.length > 0 ? { space, note: notes.join('; ') } : { space })
  }
  if (conflicts.length > 0) throw new BackupSchemaConflictError(conflicts)
  return plan
}
