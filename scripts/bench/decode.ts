/**
 * Column decoding benchmark (issue 12): what a cold scan pays per row to turn a segment batch's
 * Arrow column into the executor's columnar form (segment.ts decodeColumn), by column type and,
 * for utf8, by how many distinct values a batch holds: the bench query's `region` (50 short
 * values), 50 longer ones, and columns of mostly distinct values (names, e-mail addresses). Then
 * what format 3's utf8 codes change (segment-file-format.ts): a scan reading a column of few values
 * from its codes block instead, and what the writer pays a row to find them (or to give up on a
 * column of too many values); the same for format 4's number codes.
 *
 *   npx tsc -p tsconfig.json && node dist/scripts/bench/decode.js [rounds]
 *
 * One batch of 65,536 rows (what a segment batch holds) per column, 30 untimed decodes of each,
 * then `rounds` interleaved rounds (bench/query.ts timeInterleaved): the median, in ns a row.
 */
import '../../src/polyfill/index.js'
import { Float64, Int32, Int64, Utf8, makeVector, vectorFromArray, type DataType, type Vector } from 'apache-arrow'
import { pathToFileURL } from 'node:url'
import { WidenScratch, widenVector, type NumVector, type StrVector, type ValueType } from '../../src/columnar/index.js'
import { decodeColumn, utf8Dictionary } from '../../src/storage/segment.js'
import { decodeNumberCodes, decodeUtf8Codes, encodeNumberCodes, encodeUtf8Codes, MAX_CODED_VALUES, numberDictionary } from '../../src/storage/segment-file-format.js'
import { timeInterleaved } from './query.js'

export const DECODE_ROWS = 65_536

interface DecodeCase { name: string, type: ValueType, arrow: DataType, value: (i: number) => unknown }

/** Rows in a scrambled order (i·31 + 7), as hashing ids into partitions leaves them. */
const CASES: DecodeCase[] = [
  { name: 'utf8, 50 short values (the bench\'s region)', type: 'utf8', arrow: new Utf8(), value: i => `r${i % 50}` },
  { name: 'utf8, 50 values of 10-11 bytes', type: 'utf8', arrow: new Utf8(), value: i => `region-${(i % 50) + 100}` },
  { name: 'utf8, ~60,000 distinct short values', type: 'utf8', arrow: new Utf8(), value: i => `v${(i * 7919) % 60_000}` },
  { name: 'utf8, ~60,000 distinct e-mail addresses', type: 'utf8', arrow: new Utf8(), value: i => `user-${(i * 7919) % 60_000}@example.com` },
  { name: 'int32', type: 'int32', arrow: new Int32(), value: i => i % 1000 },
  { name: 'int64', type: 'int64', arrow: new Int64(), value: i => BigInt(i * 7919) },
  { name: 'float64, a NULL in about 1,000 rows (copied)', type: 'float64', arrow: new Float64(), value: i => i % 997 === 0 ? null : i / 100 },
  { name: 'float64 without NULLs (a view of the bytes read)', type: 'float64', arrow: new Float64(), value: i => i / 100 }
]

/** Format 3's utf8 codes: reading a block (as a scan does), and finding the codes of a batch (as the writer does). */
const CODE_CASES: Array<{ name: string, value: (i: number) => string, write: boolean, widen?: boolean }> = [
  { name: 'utf8 from its codes (format 3), 50 short values (1 byte a code): checked, held compact', value: i => `r${i % 50}`, write: false },
  { name: 'the same, widened to Int32 codes (what an operator other than the generated loops reads)', value: i => `r${i % 50}`, write: false, widen: true },
  { name: 'utf8 from its codes (format 3), 5,000 values (2 bytes a code): checked, held compact', value: i => `v${i % 5000}`, write: false },
  { name: 'writer: the codes of 50 short values', value: i => `r${i % 50}`, write: true },
  { name: 'writer: no codes for ~60,000 distinct e-mail addresses (gives up past a quarter of the rows)', value: i => `user-${(i * 7919) % 60_000}@example.com`, write: true }
]

/** Format 4's number codes, as above: int32 columns (their Arrow decoding widens 4 bytes to 8 a row). */
const NUMBER_CODE_CASES: Array<{ name: string, value: (i: number) => number, write: boolean, widen?: boolean }> = [
  { name: 'int32 from its codes (format 4), 13 values (1 byte a code; the bench\'s qty): checked, held compact', value: i => i % 13, write: false },
  { name: 'the same, widened to float64 (what an operator other than the generated loops reads)', value: i => i % 13, write: false, widen: true },
  { name: 'int32 from its codes (format 4), 1,000 values (2 bytes a code; the bench\'s cat): checked, held compact', value: i => (i * 7) % 1000, write: false },
  { name: 'the same, widened to float64', value: i => (i * 7) % 1000, write: false, widen: true },
  { name: 'int32 as Arrow, 13 values, into the same recycled memory', value: i => i % 13, write: false },
  { name: 'writer: the codes of 13 int32 values', value: i => i % 13, write: true },
  { name: 'writer: no codes for ~60,000 distinct int32 values (gives up past a quarter of the rows)', value: i => (i * 7919) % 60_000, write: true }
]

export interface DecodeBench { rows: number, rounds: number, results: Array<{ name: string, nsPerRow: number }> }

export async function benchDecode (rounds = 60): Promise<DecodeBench> {
  const vectors: Vector[] = CASES.map(c => makeVector(vectorFromArray(Array.from({ length: DECODE_ROWS }, (_, i) => c.value(i * 31 + 7)), c.arrow).data))
  // Every case warmed up before any is timed, and the rounds interleaved: timed one case after
  // another, the first ran 2-3x slower than it does once the others have run (V8 was still
  // settling on the decoder's code), whichever case came first.
  const runs: Array<() => unknown> = CASES.map((c, k) => () => decodeColumn(c.type, vectors[k], DECODE_ROWS, 'bench'))
  // A coded column is checked as it is loaded and held compact; the generated loops read its
  // codes, any other operator widens it batch by batch into memory it reuses (columnar/compact.ts).
  const scratch = new WidenScratch()
  const fail = (reason: string): Error => new Error(reason)
  const cap = Math.min(MAX_CODED_VALUES, Math.floor(DECODE_ROWS / 4))
  for (const c of CODE_CASES) {
    const data = vectorFromArray(Array.from({ length: DECODE_ROWS }, (_, i) => c.value(i * 31 + 7)), new Utf8()).data[0]!
    if (c.write) {
      runs.push(() => utf8Dictionary(data, cap))
    } else {
      const found = utf8Dictionary(data, cap)
      if (found === undefined) throw new Error(`${c.name}: no codes`)
      const { block, width } = encodeUtf8Codes(found.codes, found.dict)
      runs.push(() => { const v = widenVector(decodeUtf8Codes(block, DECODE_ROWS, found.dict.length, width, fail), scratch) as StrVector; return c.widen === true ? v.codes : v })
    }
  }
  const values = new SharedArrayBuffer(8 * DECODE_ROWS)
  const codes = new Int32Array(DECODE_ROWS)
  for (const c of NUMBER_CODE_CASES) {
    const vec = makeVector(vectorFromArray(Array.from({ length: DECODE_ROWS }, (_, i) => c.value(i * 31 + 7)), new Int32()).data)
    // As the writer does it: the column decoded as a scan would, then its distinct values.
    const decoded = (): Float64Array => (decodeColumn('int32', vec, DECODE_ROWS, 'bench', () => values) as { values: Float64Array }).values
    if (c.write) {
      runs.push(() => numberDictionary(decoded(), cap, codes))
    } else if (c.name.includes('as Arrow')) {
      runs.push(() => decodeColumn('int32', vec, DECODE_ROWS, 'bench', () => values))
    } else {
      const found = numberDictionary(decoded(), cap)
      if (found === undefined) throw new Error(`${c.name}: no codes`)
      const { block, width } = encodeNumberCodes(found.codes, found.dict)
      runs.push(() => { const v = widenVector(decodeNumberCodes(block, DECODE_ROWS, found.dict.length, width, 'int32', fail), scratch) as NumVector; return c.widen === true ? v.values : v })
    }
  }
  const names = [...CASES.map(c => c.name), ...CODE_CASES.map(c => c.name), ...NUMBER_CODE_CASES.map(c => c.name)]
  for (let w = 0; w < 30; w++) for (const run of runs) run()
  const timed = await timeInterleaved(rounds, runs.map(run => async () => run()))
  return { rows: DECODE_ROWS, rounds, results: names.map((name, k) => ({ name, nsPerRow: timed[k]!.median * 1e6 / DECODE_ROWS })) }
}

export function formatDecodeBench (r: DecodeBench): string {
  const lines = [
    `One batch of ${r.rows.toLocaleString('en-US')} rows, medians of ${r.rounds} interleaved rounds after 30 untimed:`,
    '',
    '| column | ns a row |',
    '| --- | --- |'
  ]
  for (const x of r.results) lines.push(`| ${x.name} | ${x.nsPerRow.toFixed(2)} |`)
  return lines.join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchDecode(Number(process.argv[2] ?? 60)).then(r => { console.log(formatDecodeBench(r)); process.exit(0) }, (err: unknown) => { console.error(err); process.exit(1) })
}
