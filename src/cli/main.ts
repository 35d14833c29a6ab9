#!/usr/bin/env node
// Must stay the first import: libp2p's dependencies need Promise.withResolvers on Node 20.
import '../polyfill/index.js'
import { Command, CommanderError, Option } from 'commander'
import { runStart } from './start.js'
import { runKeygen } from './keygen.js'
import { runMembers } from './members.js'
import { CliError } from './errors.js'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function buildProgram (): Command {
  const program = new Command()
  program
    .name('shoal')
    .description('Shoal: a peer-to-peer database node')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()

  program.command('start')
    .description('run a peer (joins a cluster through --bootstrap, or starts one)')
    .option('--data-dir <dir>', 'directory for the peer key and data (default ./shoal-data)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default /ip4/127.0.0.1/tcp/7946)', collect)
    .option('--http <host:port>', 'HTTP API address (default 127.0.0.1:7947)')
    .option('--bootstrap <multiaddr>', 'address of a peer to join through, repeatable', collect)
    .option('--swarm-key <file>', 'swarm key file (from `shoal keygen`); peers without it are refused')
    .option('--name <name>', 'human-readable peer name')
    .option('--config <file>', 'JSON config file; flags and SHOAL_* environment variables override it')
    .option('--enable-fault-injection', 'enable POST /admin/faults (for partition tests only)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .action(async (opts: Record<string, unknown>) => { await runStart(opts) })

  program.command('keygen')
    .description('create a swarm key (libp2p pnet format) for a private cluster')
    .option('--out <file>', 'write the key to this file (mode 0600) instead of stdout')
    .option('--force', 'overwrite an existing file')
    .action(async (opts: { out?: string, force?: boolean }) => { await runKeygen(opts) })

  program.command('members')
    .description("list the cluster's members as a peer sees them")
    .option('--peer <url>', "URL of any peer's HTTP API", 'http://127.0.0.1:7947')
    .option('--json', 'print JSON for scripts instead of a table')
    .action(async (opts: { peer: string, json?: boolean }) => { await runMembers(opts) })

  return program
}

async function main (): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its message already; help and version are not failures.
      process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2
      return
    }
    if (err instanceof CliError) {
      process.stderr.write(`shoal: ${err.message}\n`)
      process.exitCode = err.exitCode
      return
    }
    process.stderr.write(`shoal: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  }
}

await main()
