import { createReadStream } from 'node:fs'
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { RecordBatchReader } from 'apache-arrow'
import { parse as parseCsv } from 'csv-parse'
import { CliError } from './errors.js'
import type { ShoalClient } from '../client/index.js'
import { errorText, withClient } from './client.js'
import type { ConsistencyFlag } from './records.js'

export type ImportFormat = 'ndjson' | 'csv' | 'arrow'

export interface ImportOptions {
  peer: string
  format?: ImportFormat
  /** Rows per request. Default 5,000: ~1 MB of JSON, well under the 64 MiB body limit. */
  batchRows: number
  /** Requests in flight. Default 4: enough to hide one round trip, few enough to bound memory. */
  concurrency: number
  consistency: ConsistencyFlag
  /** Skip the rows a previous, interrupted run of the same import had written. */
  resume: boolean
}

interface Column { name: string, type: string, nullable: boolean }
interface SourceRow { value: unknown, position: string }

/**
 * `shoal import SPACE FILE`: streams NDJSON, CSV or Arrow IPC into a space in batches, with a
 * progress line and a final rows/s figure. Records are keyed by id, so running the same import
 * twice writes the same records twice (the later version wins, same values): safe to re-run.
 * A checkpoint file next to the input records how many rows are acknowledged, in order, so
 * `--resume` skips them after an interruption.
 */
export async function runImport (space: string, file: string, opts: ImportOptions): Promise<void> {
  await withClient(opts.peer, async client => { await importFile(client, space, file, opts) })
}

async function importFile (client: ShoalClient, space: string, file: string, opts: ImportOptions): Promise<void> {
  const format = opts.format ?? formatOf(file)
  let size: number
  try {
    size = (await stat(file)).size
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const def = await client.describeSpace(space)
  const checkpointFile = `${file}.shoal-import.json`
  const skip = opts.resume ? await readCheckpoint(checkpointFile, space) : 0

  // Arrow is read through a file handle (random access, for the file format), so bytes read are
  // not seen: its progress shows rows only.
  const progress = new Progress(format === 'arrow' ? 0 : size, skip)
  const source = format === 'ndjson' ? ndjsonRows(file, progress) : format === 'csv' ? csvRows(file, def.schema, progress) : arrowRows(file, def.schema)

  // Batches complete out of order; the checkpoint only advances over a contiguous prefix.
  const inFlight = new Set<Promise<void>>()
  const done = new Map<number, number>()
  let nextToCheckpoint = 0
  let acknowledged = skip
  let batchIndex = 0
  let failure: Error | undefined
  let batch: SourceRow[] = []
  let seen = 0

  const send = (rows: SourceRow[], index: number): void => {
    const p = (async () => {
      try {
        await client.putText(space, rows.map(r => JSON.stringify(r.value)).join('\n'), { format: 'ndjson', consistency: opts.consistency })
      } catch (err) {
        const msg = errorText(err, { rowLabel: n => `row ${rows[n]?.position ?? n}` })
        failure ??= new CliError(`import stopped: ${msg}\n${acknowledged} rows before this batch are written; fix the input and run again with --resume`)
        return
      }
      done.set(index, rows.length)
      progress.written(rows.length)
      while (done.has(nextToCheckpoint)) {
        acknowledged += done.get(nextToCheckpoint)!
        done.delete(nextToCheckpoint++)
      }
      await writeFile(checkpointFile, JSON.stringify({ space, rows: acknowledged })).catch(() => {})
    })()
    inFlight.add(p)
    void p.finally(() => inFlight.delete(p))
  }

  for await (const row of source) {
    if (failure !== undefined) break
    if (seen++ < skip) continue
    batch.push(row)
    if (batch.length >= opts.batchRows) {
      send(batch, batchIndex++)
      batch = []
      while (inFlight.size >= opts.concurrency) await Promise.race(inFlight)
    }
  }
  if (failure === undefined && batch.length > 0) send(batch, batchIndex++)
  await Promise.all(inFlight)
  progress.finish()
  if (failure !== undefined) throw failure
  await rm(checkpointFile, { force: true })
  const s = progress.elapsedS()
  process.stderr.write(`imported ${progress.rows.toLocaleString('en-US')} rows into ${space} in ${s.toFixed(1)} s: ${Math.round(progress.rows / Math.max(s, 1e-3)).toLocaleString('en-US')} rows/s${skip > 0 ? ` (${skip} rows skipped by --resume)` : ''}\n`)
}

function formatOf (file: string): ImportFormat {
  const ext = extname(file).toLowerCase()
  if (ext === '.ndjson' || ext === '.jsonl' || ext === '.json') return 'ndjson'
  if (ext === '.csv') return 'csv'
  if (ext === '.arrow' || ext === '.arrows' || ext === '.ipc' || ext === '.feather') return 'arrow'
  throw new CliError(`cannot tell the format of ${file} from its extension; pass --format ndjson|csv|arrow`, 2)
}

async function readCheckpoint (path: string, space: string): Promise<number> {
  try {
    const cp = JSON.parse(await readFile(path, 'utf8')) as { space?: unknown, rows?: unknown }
    if (cp.space !== space || typeof cp.rows !== 'number') throw new CliError(`${path} belongs to another import; remove it or run without --resume`)
    return cp.rows
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
}

async function * ndjsonRows (file: string, progress: Progress): AsyncGenerator<SourceRow> {
  const stream = createReadStream(file)
  stream.on('data', (chunk) => { progress.read(chunk.length) })
  const lines = createInterface({ input: stream, crlfDelay: Infinity })
  let lineNo = 0
  for await (const line of lines) {
    lineNo++
    if (line.trim() === '') continue
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (err) {
      throw new CliError(`${file} line ${lineNo} is not valid JSON: ${(err as Error).message}`)
    }
    yield { value, position: `${lineNo} (line ${lineNo} of ${file})` }
  }
}

async function * csvRows (file: string, schema: Column[], progress: Progress): AsyncGenerator<SourceRow> {
  const stream = createReadStream(file)
  stream.on('data', (chunk) => { progress.read(chunk.length) })
  const parser = stream.pipe(parseCsv({ columns: true, skip_empty_lines: true, bom: true }))
  const types = new Map(schema.map(c => [c.name, c.type]))
  let record = 0
  for await (const raw of parser as AsyncIterable<Record<string, string>>) {
    record++
    const line = record + 1
    const out: Record<string, unknown> = {}
    for (const [key, text] of Object.entries(raw)) {
      const type = types.get(key)
      // Unknown columns pass through so the server names them in its error.
      out[key] = type === undefined ? text : csvValue(text, type, file, line, key)
    }
    yield { value: out, position: `${record} (line ${line} of ${file})` }
  }
}

/** CSV cells are text: turn them into the JSON the server expects for the column's type. */
function csvValue (text: string, type: string, file: string, line: number, column: string): unknown {
  if (text === '') return null
  if (type === 'utf8' || type === 'int64' || type === 'date') return text
  if (type === 'bool') return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : text
  if (type === 'timestamp') return /^-?\d+$/.test(text) ? Number(text) : text
  if (type.startsWith('list<') || type.startsWith('vector<')) {
    try {
      return JSON.parse(text)
    } catch {
      throw new CliError(`${file} line ${line}, column ${column}: expected a JSON array for ${type}`)
    }
  }
  const n = Number(text)
  return Number.isNaN(n) ? text : n
}

async function * arrowRows (file: string, schema: Column[]): AsyncGenerator<SourceRow> {
  const types = new Map(schema.map(c => [c.name, c.type]))
  let record = 0
  const handle = await open(file)
  try {
    // A FileHandle gives Arrow random access, which the IPC file format needs (its footer is at
    // the end); the stream format works the same way.
    const reader = await RecordBatchReader.from(handle)
    for await (const batch of reader) {
      const names = batch.schema.fields.map(f => f.name)
      const columns = names.map(n => batch.getChild(n)!)
      for (let i = 0; i < batch.numRows; i++) {
        record++
        const out: Record<string, unknown> = {}
        for (let c = 0; c < names.length; c++) out[names[c]!] = arrowValue(columns[c]!.get(i), types.get(names[c]!))
        yield { value: out, position: `${record} (record ${record} of ${file})` }
      }
    }
  } finally {
    await handle.close()
  }
}

function arrowValue (v: unknown, type: string | undefined): unknown {
  if (v === null || v === undefined) return null
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? Number(v) : v.toString()
  // Arrow JS gives dates as epoch milliseconds; the server takes YYYY-MM-DD.
  if (type === 'date' && typeof v === 'number') return new Date(v).toISOString().slice(0, 10)
  if (v instanceof Date) return type === 'date' ? v.toISOString().slice(0, 10) : v.getTime()
  if (typeof v === 'object' && v !== null && Symbol.iterator in v) return Array.from(v as Iterable<unknown>, x => arrowValue(x, undefined))
  return v
}

/** One status line on stderr: rewritten in place on a terminal, every 5 s otherwise. */
class Progress {
  rows = 0
  private bytes = 0
  private readonly started = performance.now()
  private lastDraw = 0
  private readonly tty = process.stderr.isTTY === true

  constructor (private readonly totalBytes: number, private readonly skipped: number) {}

  read (n: number): void { this.bytes += n }

  written (n: number): void {
    this.rows += n
    const now = performance.now()
    if (now - this.lastDraw < (this.tty ? 200 : 5000)) return
    this.lastDraw = now
    this.draw()
  }

  elapsedS (): number { return (performance.now() - this.started) / 1000 }

  finish (): void { if (this.tty && this.lastDraw > 0) process.stderr.write('\n') }

  private draw (): void {
    const pct = this.totalBytes > 0 ? `, ${Math.min(100, (100 * this.bytes) / this.totalBytes).toFixed(0)}% of the file read` : ''
    const rate = Math.round(this.rows / Math.max(this.elapsedS(), 1e-3))
    const text = `imported ${(this.rows + this.skipped).toLocaleString('en-US')} rows${pct}, ${rate.toLocaleString('en-US')} rows/s`
    process.stderr.write(this.tty ? `\r${text.padEnd(72)}` : `${text}\n`)
  }
}
