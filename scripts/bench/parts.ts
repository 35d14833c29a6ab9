/**
 * The command line of scripts/bench/index.ts: which of its parts to run. Pure (no benchmark
 * imports), so test/unit/bench-args.test.ts checks it alone.
 */

export interface BenchPartInfo {
  /** Short name, as given to --only. */
  name: string
  description: string
}

export interface BenchArgs {
  quick: boolean
  help: boolean
  /** The parts to run, in the table's order (not the order given); all of them without --only. */
  only: string[]
}

/** A command line the bench cannot run: the caller prints the message and exits with status 2. */
export class BenchArgsError extends Error {
  override name = 'BenchArgsError'
}

/** Parses `--quick`, `--help` (`-h`) and `--only A,B` (or `--only=A,B`, or several --only). */
export function parseBenchArgs (argv: readonly string[], parts: readonly BenchPartInfo[]): BenchArgs {
  const valid = parts.map(p => p.name)
  let quick = false
  let help = false
  let only: Set<string> | null = null
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--quick') { quick = true; continue }
    if (arg === '--help' || arg === '-h') { help = true; continue }
    let list: string | undefined
    if (arg === '--only') {
      list = argv[++i]
      if (list === undefined || list.startsWith('-')) throw new BenchArgsError(`--only needs a part name (or several, comma-separated): ${valid.join(', ')}`)
    } else if (arg.startsWith('--only=')) {
      list = arg.slice('--only='.length)
    } else {
      throw new BenchArgsError(`unknown argument '${arg}'`)
    }
    const names = list.split(',').map(s => s.trim()).filter(s => s !== '')
    if (names.length === 0) throw new BenchArgsError(`--only needs a part name (or several, comma-separated): ${valid.join(', ')}`)
    const unknown = names.filter(n => !valid.includes(n))
    if (unknown.length > 0) {
      throw new BenchArgsError(`unknown part${unknown.length > 1 ? 's' : ''} ${unknown.map(n => `'${n}'`).join(', ')}; the parts are: ${valid.join(', ')}`)
    }
    only ??= new Set()
    for (const n of names) only.add(n)
  }
  const chosen = only
  return { quick, help, only: chosen === null ? valid : valid.filter(n => chosen.has(n)) }
}

export function benchUsage (parts: readonly BenchPartInfo[]): string {
  const width = Math.max(...parts.map(p => p.name.length))
  return [
    'Usage: npm run bench -- [--quick] [--only NAME[,NAME...]] [--help]',
    '',
    'Runs the benchmarks and prints Markdown for docs/benchmarks.md.',
    '',
    '  --quick              fewer iterations and sizes, for a smoke check',
    '  --only NAME[,NAME]   run only these parts (in the order below, whatever the order given)',
    '  --help               print this',
    '',
    'Parts:',
    ...parts.map(p => `  ${p.name.padEnd(width)}  ${p.description}`)
  ].join('\n')
}
