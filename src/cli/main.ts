#!/usr/bin/env node
// The `shoal` command is bin/shoal, a launcher that runs this file with the settings a peer needs
// from the start of the process (Node's young generation, glibc's mmap threshold): a shebang
// cannot portably pass them (BusyBox's env has no -S). Run directly, `shoal start` logs so.
// Must stay the first import: libp2p's dependencies need Promise.withResolvers on Node 20.
import '../polyfill/index.js'
import { Command, CommanderError, Option } from 'commander'
import { DEFAULT_PEER, peerOption, peerUrl } from './peer-option.js'
import { runStart } from './start.js'
import { runKeygen } from './keygen.js'
import { runMembers } from './members.js'
import { runRemovePeer } from './remove-peer.js'
import { runSpaceCreate, runSpaceDrop, runSpaceList, nonNegativeInt, positiveInt } from './space.js'
import { parseConsistency, runGet, runPut } from './records.js'
import { runImport, type ImportFormat } from './import.js'
import { registerQueryCommands } from './query.js'
import { runBackup } from './backup.js'
import { runRestore } from './restore.js'
import { runStatus } from './status.js'
import { runRepair } from './repair.js'
import { runDecommission } from './decommission.js'
import { CliError } from './errors.js'
import { VERSION } from '../runtime/index.js'

const consistencyOption = (): Option => new Option('--consistency <level>', 'one, quorum or all').default('quorum')

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function buildProgram (): Command {
  const program = new Command()
  program
    .name('shoal')
    .description('Shoal: a peer-to-peer database node')
    .version(VERSION, '--version', 'print the version and exit')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()

  program.command('start')
    .description('run a peer (joins a cluster through --bootstrap, or starts one)')
    .option('--data-dir <dir>', 'directory for the peer key and data (default ./shoal-data)')
    .option('--listen <multiaddr>', 'libp2p listen address, repeatable (default /ip4/127.0.0.1/tcp/7946)', collect)
    .option('--http <host:port>', 'HTTP API address (default 127.0.0.1:7947; beyond loopback it needs --http-token-file or --http-insecure)')
    .option('--http-tls-cert <file>', 'serve the HTTP API over HTTPS with this certificate chain (PEM); needs --http-tls-key')
    .option('--http-tls-key <file>', 'the private key (PEM) of --http-tls-cert')
    .option('--http-token-file <file>', "bearer tokens, one a line ('<token>' or '<token> read-only'); every request but GET /health then needs one")
    .option('--http-insecure', 'let the HTTP API listen beyond loopback without tokens (a network you trust)')
    .option('--bootstrap <multiaddr>', 'address of a peer to join through, repeatable', collect)
    .option('--swarm-key <file>', 'swarm key file (from `shoal keygen`); peers without it are refused')
    .option('--name <name>', 'human-readable peer name')
    .option('--config <file>', 'JSON config file; flags and SHOAL_* environment variables override it')
    .option('--enable-fault-injection', 'enable POST /admin/faults (for partition tests only)')
    .option('--cache-mib <MiB>', 'storage block cache size (default a quarter of the memory, at most 4096)')
    .option('--heap-mib <MiB>', "V8 heap limit; bin/shoal passes it to node (default Node's own, about a quarter of the memory)")
    .option('--max-peer-connections <n>', 'most libp2p connections to other peers (default: half of what the open-file limit leaves, 64 to 16,384; must exceed the member count)')
    .option('--heap-growth-percent <n>', "how far V8 may grow the heap past what is live between collections, once the peer is ready (default 50; 0: V8's own)")
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']))
    .action(async (opts: Record<string, unknown>) => { await runStart(opts) })

  program.command('keygen')
    .description('create a swarm key (libp2p pnet format) for a private cluster')
    .option('--out <file>', 'write the key to this file (mode 0600) instead of stdout')
    .option('--force', 'overwrite an existing file')
    .action(async (opts: { out?: string, force?: boolean }) => { await runKeygen(opts) })

  program.command('members')
    .description("list the cluster's members as a peer sees them")
    .addOption(peerOption())
    .option('--json', 'print JSON for scripts instead of a table')
    .action(async (opts: { peer: string, json?: boolean }) => { await runMembers(opts) })

  program.command('status')
    .description('the whole cluster in one table: every peer (state, version, uptime, partitions, rows, disk, hints) and every space (replicas live, unavailable partitions, whether replicas agree)')
    .option('--json', 'print JSON for scripts instead of tables')
    .option('--timeout <ms>', 'how long the peer waits for each other peer before listing it unreachable (default 3000)')
    .addOption(peerOption())
    .action(async (opts: { peer: string, json?: boolean, timeout?: string }) => {
      await runStatus({ peer: opts.peer, json: opts.json === true, ...(opts.timeout !== undefined ? { timeoutMs: positiveInt(opts.timeout, '--timeout') } : {}) })
    })

  program.command('repair [space]')
    .description('run anti-entropy now on every live peer, for one space or all, and report what it repaired (exits 1 if a peer failed)')
    .option('--json', 'print the answer as JSON')
    .option('--timeout <ms>', "how long to wait for each peer's part (default 600000)")
    .addOption(peerOption())
    .action(async (spaceName: string | undefined, opts: { peer: string, json?: boolean, timeout?: string }) => {
      await runRepair(spaceName, { peer: opts.peer, json: opts.json === true, ...(opts.timeout !== undefined ? { timeoutMs: positiveInt(opts.timeout, '--timeout') } : {}) })
    })

  program.command('remove-peer <peerId>')
    .description('remove a dead peer on purpose: shows the partitions whose only copies are on it (given up), removes it with --yes')
    .option('--yes', 'remove without asking')
    .option('--json', 'print the answer as JSON')
    .addOption(peerOption())
    .action(async (peerId: string, opts: { peer: string, yes?: boolean, json?: boolean }) => { await runRemovePeer(peerId, opts) })

  program.command('decommission')
    .description('the peer hands every partition it holds to its next owners, waits until they are ready, then leaves the cluster and stops (exits 1, the peer staying a member, if the hand-off times out)')
    .addOption(new Option('--peer <url>', 'the HTTP API of the peer to decommission: a URL or host:port').env('SHOAL_PEER').argParser(peerUrl).default(DEFAULT_PEER))
    .option('--timeout-ms <ms>', "how long to wait for the next owners to be ready (default the peer's decommissionTimeoutMs, 60000)")
    .option('--json', 'print the progress and summary as NDJSON')
    .action(async (opts: { peer: string, timeoutMs?: string, json?: boolean }) => {
      await runDecommission({ peer: opts.peer, json: opts.json === true, ...(opts.timeoutMs !== undefined ? { timeoutMs: nonNegativeInt(opts.timeoutMs, '--timeout-ms') } : {}) })
    })

  const space = program.command('space').description('create, list and drop spaces')
  space.command('create <name>')
    .description('create a space')
    .requiredOption('--schema <columns>', "columns as 'name:type,...' (types: bool, int32, int64, float32, float64, utf8, timestamp, date, list<T>, vector<N>; append ! for not null)")
    .option('--partitions <n>', 'partitions (default 16)')
    .option('--replicas <n>', 'replicas per partition (default 3, capped by cluster size)')
    .addOption(peerOption())
    .action(async (name: string, opts: { schema: string, partitions?: string, replicas?: string, peer: string }) => { await runSpaceCreate(name, opts) })
  space.command('list')
    .description('list spaces')
    .option('--json', 'print JSON')
    .addOption(peerOption())
    .action(async (opts: { peer: string, json?: boolean }) => { await runSpaceList(opts) })
  space.command('drop <name>')
    .description('drop a space and its data')
    .addOption(peerOption())
    .action(async (name: string, opts: { peer: string }) => { await runSpaceDrop(name, opts) })

  program.command('put <space> <file>')
    .description("write records from a JSON array or NDJSON file ('-' for stdin)")
    .addOption(consistencyOption())
    .addOption(peerOption())
    .action(async (spaceName: string, file: string, opts: { peer: string, consistency: string }) => {
      await runPut(spaceName, file, { peer: opts.peer, consistency: parseConsistency(opts.consistency) })
    })

  program.command('get <space> <id>')
    .description('read one record by id')
    .addOption(consistencyOption())
    .addOption(peerOption())
    .action(async (spaceName: string, id: string, opts: { peer: string, consistency: string }) => {
      await runGet(spaceName, id, { peer: opts.peer, consistency: parseConsistency(opts.consistency) })
    })

  program.command('import <space> <file>')
    .description('load an NDJSON, CSV or Arrow IPC file in batches, with progress; safe to re-run')
    .addOption(new Option('--format <format>', 'input format (default: from the file extension)').choices(['ndjson', 'csv', 'arrow']))
    .option('--batch-rows <n>', 'rows per request', '5000')
    .option('--concurrency <n>', 'requests in flight', '4')
    .option('--resume', 'skip the rows an interrupted run of this import already wrote')
    .addOption(consistencyOption())
    .addOption(peerOption())
    .action(async (spaceName: string, file: string, opts: { format?: ImportFormat, batchRows: string, concurrency: string, resume?: boolean, peer: string, consistency: string }) => {
      await runImport(spaceName, file, {
        peer: opts.peer,
        ...(opts.format !== undefined ? { format: opts.format } : {}),
        batchRows: positiveInt(opts.batchRows, '--batch-rows'),
        concurrency: positiveInt(opts.concurrency, '--concurrency'),
        consistency: parseConsistency(opts.consistency),
        resume: opts.resume === true
      })
    })

  registerQueryCommands(program, peerOption)

  program.command('backup')
    .description('take an online, consistent backup of the whole cluster into a new directory, with progress')
    .requiredOption('--out <dir>', 'directory to write the backup into (created; must be empty)')
    .option('--space <name>', 'back up only this space, repeatable (default every space)', collect)
    .option('--concurrency <n>', 'partitions streamed at once', '2')
    .option('--allow-partial', 'record partitions a majority of replicas cannot serve as missing instead of failing (exits 1)')
    .addOption(peerOption())
    .action(async (opts: { out: string, space?: string[], concurrency: string, allowPartial?: boolean, peer: string }) => {
      await runBackup({
        peer: opts.peer,
        out: opts.out,
        concurrency: positiveInt(opts.concurrency, '--concurrency'),
        allowPartial: opts.allowPartial === true,
        ...(opts.space !== undefined ? { spaces: opts.space } : {})
      })
    })

  program.command('restore')
    .description('load a backup into a cluster: checks every file first, creates missing spaces, keeps record versions; safe to re-run')
    .requiredOption('--from <dir>', 'directory of a backup taken by shoal backup')
    .option('--batch-rows <n>', 'records per request (at most 20000)', '5000')
    .option('--concurrency <n>', 'requests in flight', '4')
    .option('--allow-partial', 'restore a backup that lists missing partitions')
    .addOption(consistencyOption())
    .addOption(peerOption())
    .action(async (opts: { from: string, batchRows: string, concurrency: string, allowPartial?: boolean, consistency: string, peer: string }) => {
      const batchRecords = positiveInt(opts.batchRows, '--batch-rows')
      if (batchRecords > 20_000) throw new CliError('--batch-rows must be at most 20000 (a restore request carries at most 20,000 records)', 2)
      await runRestore({
        peer: opts.peer,
        from: opts.from,
        consistency: parseConsistency(opts.consistency),
        batchRecords,
        concurrency: positiveInt(opts.concurrency, '--concurrency'),
        allowPartial: opts.allowPartial === true
      })
    })

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
