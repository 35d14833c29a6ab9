/**
 * `shoal backup --out DIR`: an online, consistent backup of the whole cluster through one peer.
 * The peer stamps the start T and lists the spaces (GET /backup); each partition is then streamed
 * from it (GET /backup/spaces/:name/partitions/:p, a majority of the partition's replicas merged)
 * into DIR/<space>/<partition>.ndjson, checked line by line, fsynced and renamed into place; the
 * manifest with every file's SHA-256 is written last, so a directory without one is a backup that
 * did not finish. Progress on stderr. docs/operations.md, "Backup and restore".
 */
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import {
  AtomicFile, BACKUP_FORMAT, BACKUP_FORMAT_VERSION, checkRecordLine, PARTITION_UNAVAILABLE, partitionFile, writeManifest,
  type BackupBegin, type BackupManifest, type ManifestFile, type ManifestSpace, type MissingPartition, type StreamEnd
} from '../backup/index.js'
import { VERSION } from '../runtime/index.js'
import { CliError } from './errors.js'
import { ShoalError, type ShoalClient } from '../client/index.js'
import { errorText, withClient } from './client.js'

export interface BackupOptions {
  peer: string
  out: string
  /** Partitions streamed at once. Default 2: the peer reads each from every replica. */
  concurrency: number
  /** Record a partition that cannot be read from a majority as missing instead of failing the backup. */
  allowPartial: boolean
  /** Only these spaces (default every space). */
  spaces?: string[]
}

export async function runBackup (opts: BackupOptions): Promise<void> {
  await withClient(opts.peer, async client => { await backup(client, opts) })
}

async function backup (client: ShoalClient, opts: BackupOptions): Promise<void> {
  await checkDir(opts.out)
  const begin = parseBegin(await client.beginBackup())
  let spaces = begin.spaces
  if (opts.spaces !== undefined && opts.spaces.length > 0) {
    const unknown = opts.spaces.filter(n => !spaces.some(s => s.name === n))
    if (unknown.length > 0) throw new CliError(`no space named ${unknown.map(n => `'${n}'`).join(', ')} in the cluster (it has ${spaces.map(s => s.name).join(', ') || 'none'})`, 2)
    spaces = spaces.filter(s => opts.spaces!.includes(s.name))
  }
  await mkdir(opts.out, { recursive: true })
  for (const s of spaces) await mkdir(join(opts.out, s.name))
  const tasks = spaces.flatMap(s => Array.from({ length: s.partitions }, (_, p) => ({ space: s.name, partition: p })))
  const progress = new Progress('backup', tasks.length)
  process.stderr.write(`backup of ${spaces.length} space(s), ${tasks.length} partitions from ${opts.peer} into ${opts.out}; start T = ${begin.startTime} (HLC ${begin.startHlc})\n`)

  const files = new Map<string, ManifestFile[]>(spaces.map(s => [s.name, []]))
  const missing: MissingPartition[] = []
  const stop = new AbortController()
  let failure: Error | undefined
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < tasks.length && failure === undefined) {
      const task = tasks[next++]!
      try {
        const entry = await backupPartition(client, opts, task.space, task.partition, stop.signal, progress)
        files.get(task.space)!.push(entry)
        progress.partitionDone()
      } catch (err) {
        const reason = errorText(err)
        // Only "fewer than a majority answered" makes a partition missing; any other failure
        // (a busy or unreachable peer, a full disk, a bad stream) fails the backup as without the flag.
        if (opts.allowPartial && !stop.signal.aborted && err instanceof ShoalError && err.code === PARTITION_UNAVAILABLE) {
          missing.push({ space: task.space, partition: task.partition, reason })
          progress.note(`partition ${task.partition} of '${task.space}' is missing from the backup: ${reason}`)
          progress.partitionDone()
        } else {
          failure ??= new CliError(`partition ${task.partition} of '${task.space}': ${reason}`)
          stop.abort()
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, Math.max(1, tasks.length)) }, worker))
  progress.finish()
  if (failure !== undefined) {
    throw new CliError(`backup failed: ${failure.message}\nno manifest was written, so ${opts.out} is not a usable backup; remove it before running again`)
  }
  const manifestSpaces: ManifestSpace[] = spaces.map(s => ({ ...s, files: files.get(s.name)!.sort((a, b) => a.partition - b.partition) }))
  const manifest: BackupManifest = {
    format: BACKUP_FORMAT,
    formatVersion: BACKUP_FORMAT_VERSION,
    shoalVersion: VERSION,
    startHlc: begin.startHlc,
    startTime: begin.startTime,
    finishedAt: new Date().toISOString(),
    peer: opts.peer,
    complete: missing.length === 0,
    spaces: manifestSpaces,
    missing: missing.sort((a, b) => a.space.localeCompare(b.space) || a.partition - b.partition)
  }
  await writeManifest(opts.out, manifest)
  const s = progress.elapsedS()
  process.stderr.write(`backed up ${progress.records.toLocaleString('en-US')} records (${progress.tombstones.toLocaleString('en-US')} tombstones) of ${spaces.length} space(s), ${mib(progress.bytes)}, in ${s.toFixed(1)} s into ${opts.out}\n`)
  if (missing.length > 0) {
    throw new CliError(`the backup is partial: ${missing.length} partition(s) could not be read from a majority of their replicas and are missing (listed in the manifest): ${missing.slice(0, 5).map(m => `${m.space}/${m.partition}`).join(', ')}${missing.length > 5 ? ', ...' : ''}`)
  }
}

/** The output directory must be new or empty: a backup never mixes with other files. */
async function checkDir (dir: string): Promise<void> {
  try {
    const entries = await readdir(dir)
    if (entries.length > 0) throw new CliError(`${dir} is not empty; a backup goes into a new or empty directory`, 2)
  } catch (err) {
    if (err instanceof CliError) throw err
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new CliError(`cannot use ${dir}: ${(err as Error).message}`)
  }
}

function parseBegin (v: unknown): BackupBegin {
  const b = v as Partial<BackupBegin> | null
  if (b === null || typeof b !== 'object' || typeof b.startHlc !== 'number' || typeof b.startTime !== 'string' || !Array.isArray(b.spaces)) {
    throw new CliError('the peer answered GET /backup with something that is not a backup start (an older peer without backup?)')
  }
  return b as BackupBegin
}

/** Streams one partition into its file; returns its manifest entry. */
async function backupPartition (client: ShoalClient, opts: BackupOptions, space: string, partition: number, signal: AbortSignal, progress: Progress): Promise<ManifestFile> {
  const body = await client.backupPartition(space, partition, { signal })
  const rel = partitionFile(space, partition)
  const file = await AtomicFile.create(join(opts.out, rel))
  try {
    let end: StreamEnd | undefined
    let records = 0
    let tombstones = 0
    let carry = ''
    const decoder = new TextDecoder('utf-8', { fatal: true })
    const take = (line: string): string => {
      if (line === '') return ''
      if (end !== undefined) throw new Error('the peer sent records after the end of the stream')
      let v: unknown
      try {
        v = JSON.parse(line)
      } catch (err) {
        throw new Error(`the peer sent a line that is not JSON (${(err as Error).message})`)
      }
      const o = v as { end?: unknown, error?: { code?: unknown, message?: unknown } }
      if (o !== null && typeof o === 'object' && o.end === true) { end = v as StreamEnd; return '' }
      if (o !== null && typeof o === 'object' && o.error !== undefined) {
        throw new ShoalError(typeof o.error?.code === 'string' ? o.error.code : 'INTERNAL', `the peer failed part way: ${String(o.error?.code)}: ${String(o.error?.message)}`)
      }
      const r = checkRecordLine(v)
      if ('message' in r) throw new Error(`the peer sent a malformed record (${r.field}: ${r.message})`)
      records++
      if (r.deleted) tombstones++
      return line + '\n'
    }
    for await (const chunk of body) {
      const text = carry + decoder.decode(chunk, { stream: true })
      const lines = text.split('\n')
      carry = lines.pop()!
      let out = ''
      const before = records
      const tombsBefore = tombstones
      for (const line of lines) out += take(line)
      if (out !== '') await file.write(out)
      progress.add(records - before, tombstones - tombsBefore, Buffer.byteLength(out))
    }
    const last = carry + decoder.decode()
    if (last !== '') {
      const out = take(last)
      if (out !== '') await file.write(out)
    }
    if (end === undefined) throw new Error('the stream ended before its end line: the peer or the connection failed part way')
    if (end.records !== records || end.tombstones !== tombstones) throw new Error(`the peer counted ${end.records} records (${end.tombstones} tombstones), ${records} (${tombstones}) arrived`)
    const sha256 = await file.commit()
    return { partition, file: rel, records, tombstones, bytes: file.bytes, sha256, replicas: end.replicas }
  } catch (err) {
    await file.abort()
    throw err
  }
}

export function mib (bytes: number): string { return `${(bytes / 1048576).toFixed(1)} MiB` }

/**
 * One status line on stderr: partitions (or files) done of the total, records, bytes, elapsed;
 * rewritten in place on a terminal, every 5 s otherwise (as `shoal import` does).
 */
export class Progress {
  records = 0
  tombstones = 0
  bytes = 0
  private done = 0
  private readonly started = performance.now()
  private lastDraw = 0
  private readonly tty = process.stderr.isTTY === true

  constructor (private readonly verb: string, private readonly total: number, private readonly unit = 'partitions') {}

  add (records: number, tombstones: number, bytes: number): void {
    this.records += records
    this.tombstones += tombstones
    this.bytes += bytes
    this.maybeDraw()
  }

  partitionDone (): void {
    this.done++
    this.maybeDraw()
  }

  /** A line of its own (a warning), not overwritten. */
  note (text: string): void {
    process.stderr.write(`${this.tty && this.lastDraw > 0 ? '\n' : ''}${text}\n`)
  }

  elapsedS (): number { return (performance.now() - this.started) / 1000 }

  /** Draws the final state once more (work still in flight at the last draw is done now), then ends the line. */
  finish (): void {
    this.maybeDraw(true)
    if (this.tty) process.stderr.write('\n')
  }

  private maybeDraw (force = false): void {
    const now = performance.now()
    if (!force && now - this.lastDraw < (this.tty ? 200 : 5000)) return
    this.lastDraw = now
    const text = `${this.verb}: ${this.done}/${this.total} ${this.unit}, ${this.records.toLocaleString('en-US')} records, ${mib(this.bytes)}, ${this.elapsedS().toFixed(1)} s`
    process.stderr.write(this.tty ? `\r${text.padEnd(78)}` : `${text}\n`)
  }
}
