import { constants } from 'node:fs'
import { open } from 'node:fs/promises'
import { generateSwarmKey } from '../net/index.js'
import { CliError } from './errors.js'

export async function runKeygen (opts: { out?: string, force?: boolean }): Promise<void> {
  const key = generateSwarmKey()
  if (opts.out === undefined) {
    process.stdout.write(key)
    return
  }
  // O_EXCL unless --force: overwriting the key of a running cluster would lock its peers out.
  const flags = constants.O_WRONLY | constants.O_CREAT | (opts.force === true ? constants.O_TRUNC : constants.O_EXCL)
  let file
  try {
    file = await open(opts.out, flags, 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new CliError(`${opts.out} already exists; pass --force to overwrite it`)
    throw new CliError(`cannot write ${opts.out}: ${(err as Error).message}`)
  }
  try {
    await file.writeFile(key)
    await file.sync()
  } finally {
    await file.close()
  }
  process.stderr.write(`swarm key written to ${opts.out}; give the same file to every peer with --swarm-key\n`)
}
