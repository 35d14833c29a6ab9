/**
 * Running the system tools the namespace network is made with (`ip`, `nft`, `nsenter`): async for
 * everything done while a test runs (a blocked event loop would stall its clients' timers), and a
 * synchronous, never-throwing form for the teardown an exit handler does (no event loop left).
 */
import { execFileSync, spawn } from 'node:child_process'

/** A command that failed: its argv and what it wrote to stderr, so the error says what went wrong. */
export class CommandError extends Error {
  override name = 'CommandError'
  constructor (readonly argv: string[], readonly code: number | null, readonly stderr: string) {
    super(`\`${argv.join(' ')}\` failed (exit ${String(code)}): ${stderr.trim().replace(/\s+/g, ' ') || 'no output'}`)
  }
}

/** Runs `cmd args`, feeding `input` on stdin; answers stdout, throws CommandError on a non-zero exit. */
export async function run (cmd: string, args: string[], input?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
    proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
    proc.once('error', err => { reject(new CommandError([cmd, ...args], null, err.message)) })
    proc.once('close', code => { code === 0 ? resolve(stdout) : reject(new CommandError([cmd, ...args], code, stderr)) })
    if (proc.stdin !== null) {
      // A command that exits without reading all of it fails by its exit code, not by EPIPE here.
      proc.stdin.on('error', () => {})
      proc.stdin.end(input)
    }
  })
}

/** Runs `cmd args` synchronously; answers stdout, or undefined when it failed (teardown goes on regardless). */
export function runSync (cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' })
  } catch {
    return undefined
  }
}

/** Whether `cmd` is found on the PATH (as the tools are run: by name). */
export function onPath (cmd: string): boolean {
  return runSync('sh', ['-c', `command -v ${cmd}`]) !== undefined
}

/** The argv prefix that runs a command inside the network namespace `ns` (see nsPrefix's note). */
export function nsPrefix (ns: string): string[] {
  // nsenter with only --net switches the namespace and execs the command (no fork): the pid a
  // caller spawns is the command's own, so signals (SIGSTOP, SIGKILL) and exit codes reach it.
  // `ip netns exec` execs too, but first gives the command a mount namespace of its own (and a
  // remounted /sys): nsenter changes the network and nothing else.
  return ['nsenter', `--net=/run/netns/${ns}`]
}

/** Runs `cmd args` inside the namespace `ns`. */
export async function runIn (ns: string, cmd: string, args: string[], input?: string): Promise<string> {
  const [enter, ...enterArgs] = nsPrefix(ns)
  return await run(enter!, [...enterArgs, cmd, ...args], input)
}

/** Whether the process `pid` exists (EPERM: it does, owned by someone else). */
export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
