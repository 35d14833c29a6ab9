import { readFile } from 'node:fs/promises'
import { CliError } from './errors.js'
import { withClient } from './client.js'

export type ConsistencyFlag = 'one' | 'quorum' | 'all'

/** `shoal put SPACE FILE|-`: a JSON array or NDJSON of records, written in one request. */
export async function runPut (space: string, file: string, opts: { peer: string, consistency: ConsistencyFlag }): Promise<void> {
  let text: string
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const result = await withClient(opts.peer, async client => await client.putText(space, text, { consistency: opts.consistency }))
  process.stdout.write(`wrote ${result.written} records to ${space} at ${opts.consistency.toUpperCase()}\n`)
}

/** `shoal get SPACE ID`: the record as JSON, with its version. */
export async function runGet (space: string, id: string, opts: { peer: string, consistency: ConsistencyFlag }): Promise<void> {
  const answer = await withClient(opts.peer, async client => await client.get(space, id, { consistency: opts.consistency }))
  if (answer === undefined) throw new CliError(`no record '${id}' in space '${space}'`)
  process.stdout.write(JSON.stringify(answer, null, 2) + '\n')
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export function parseConsistency (text: string): ConsistencyFlag {
  const c = text.toLowerCase()
  if (c !== 'one' && c !== 'quorum' && c !== 'all') throw new CliError(`--consistency must be one, quorum or all, got '${text}'`, 2)
  return c
}
