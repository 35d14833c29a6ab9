import { parseSchemaSpec, SchemaError } from '../schema/index.js'
import { CliError } from './errors.js'
import type { CreateSpaceInput } from '../client/index.js'
import { withClient } from './client.js'
import { formatTable } from './table.js'

export async function runSpaceCreate (name: string, opts: { schema: string, partitions?: string, replicas?: string, peer: string }): Promise<void> {
  let schema
  try {
    schema = parseSchemaSpec(opts.schema)
  } catch (err) {
    if (err instanceof SchemaError) throw new CliError(`--schema ${err.message}`, 2)
    throw err
  }
  const body: CreateSpaceInput = { name, schema: [...schema] }
  if (opts.partitions !== undefined) body.partitions = positiveInt(opts.partitions, '--partitions')
  if (opts.replicas !== undefined) body.replicas = positiveInt(opts.replicas, '--replicas')
  const space = await withClient(opts.peer, async client => await client.createSpace(body))
  process.stdout.write(`created space ${space.name}: ${space.partitions} partitions, ${space.replicas} replicas, columns ${space.schema.map(c => `${c.name}:${c.type}${c.nullable ? '' : '!'}`).join(',')}\n`)
  // Placement gives a partition at most one replica a peer: say so when the cluster is smaller.
  if (typeof space.effectiveReplicas === 'number' && space.effectiveReplicas < space.replicas) {
    process.stderr.write(`note: the cluster has ${space.effectiveReplicas} peer${space.effectiveReplicas === 1 ? '' : 's'}, fewer than the ${space.replicas} replicas asked for: each partition holds ${space.effectiveReplicas} cop${space.effectiveReplicas === 1 ? 'y' : 'ies'} until more peers join\n`)
  }
}

export async function runSpaceList (opts: { peer: string, json?: boolean }): Promise<void> {
  const spaces = await withClient(opts.peer, async client => await client.listSpaces())
  if (opts.json === true) {
    process.stdout.write(JSON.stringify(spaces, null, 2) + '\n')
    return
  }
  if (spaces.length === 0) {
    process.stdout.write('no spaces\n')
    return
  }
  process.stdout.write(formatTable(['NAME', 'PARTITIONS', 'REPLICAS', 'COLUMNS'],
    spaces.map(s => [s.name, String(s.partitions), String(s.replicas), s.schema.map(c => `${c.name}:${c.type}`).join(',')])))
}

export async function runSpaceDrop (name: string, opts: { peer: string }): Promise<void> {
  await withClient(opts.peer, async client => { await client.dropSpace(name) })
  process.stdout.write(`dropped space ${name}\n`)
}

export function positiveInt (text: string, flag: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new CliError(`${flag} must be a positive integer, got '${text}'`, 2)
  return n
}

/** A flag's integer value, 0 allowed (a timeout of 0: do not wait). */
export function nonNegativeInt (text: string, flag: string): number {
  const n = Number(text)
  if (text.trim() === '' || !Number.isInteger(n) || n < 0) throw new CliError(`${flag} must be an integer of 0 or more, got '${text}'`, 2)
  return n
}
