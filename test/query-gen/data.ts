/**
 * The generated table: one space with a column of each scalar type Shoal's SQL works on, values
 * that float64, int64 and DuckDB all hold exactly, NULLs in several columns, and enough repeated
 * values that ORDER BY has ties and GROUP BY has groups of every size.
 *
 * - amount is a multiple of 1/8 (dyadic), so every sum of amounts (and of amount * 2, amount / 4,
 *   ...) is exact in float64 whatever the order of addition, and round(x, 2) multiplies exactly;
 * - big stays within ±2^50 and int expressions over it within ±2^53;
 * - strings are ASCII (lower/upper/length agree everywhere), some mixed case (for ILIKE) and some
 *   with `_` and `%` (for LIKE ... ESCAPE);
 * - ts (timestamp) is ms since the epoch in 2024 and day (date) days since the epoch; DuckDB holds
 *   them as BIGINT and INTEGER, so comparisons with numbers mean the same on both sides.
 *   (The column is not called `at`: AT is a keyword to both DuckDB and node-sql-parser.)
 */
import { checkSchema } from '../../src/schema/index.js'
import type { ColumnDef, SpaceDef } from '../../src/schema/index.js'
import { Rng } from './random.js'

export const SPACE_NAME = 'orders'

export const COLUMNS: ColumnDef[] = checkSchema([
  { name: 'id', type: 'utf8' },
  { name: 'region', type: 'utf8' },
  { name: 'category', type: 'utf8' },
  { name: 'qty', type: 'int32' },
  { name: 'amount', type: 'float64' },
  { name: 'big', type: 'int64' },
  { name: 'flag', type: 'bool' },
  { name: 'ts', type: 'timestamp' },
  { name: 'day', type: 'date' }
])

/** The space as Shoal's catalog would hold it (8 partitions, 2 replicas, as the cluster test creates it). */
export const spaceDef: SpaceDef = { name: SPACE_NAME, uid: `${SPACE_NAME}-gen`, schema: COLUMNS, partitions: 8, replicas: 2 }

/** DuckDB's type for each column. */
export const DUCK_TYPES: Record<string, string> = {
  id: 'VARCHAR',
  region: 'VARCHAR',
  category: 'VARCHAR',
  qty: 'INTEGER',
  amount: 'DOUBLE',
  big: 'BIGINT',
  flag: 'BOOLEAN',
  ts: 'BIGINT',
  day: 'INTEGER'
}

export interface DataRow {
  id: string
  region: string
  category: string | null
  qty: number | null
  amount: number | null
  big: number | null
  flag: boolean | null
  ts: number
  day: number | null
}

export const REGIONS = ['North', 'south', 'EAST', 'West', 'central', 'North-East', 'south_west', 'Islands'] as const

export const CATEGORIES: readonly string[] = [
  'books', 'Books', 'music', 'Music_CD', 'films', 'toys', 'Toys_Games', 'garden', 'Garden_Tools', 'kitchen',
  'home', 'HOME', 'office', 'sport', 'Sport_Shoes', 'outdoor', 'pets', 'pet_food', 'baby', 'beauty',
  'health', 'tools', 'auto', 'Auto_Parts', 'games', 'video_games', 'phones', 'tablets', 'laptops', 'cameras',
  'audio', 'tv', 'lighting', 'furniture', 'bedding', 'bath', 'jewelry', 'watches', 'bags', 'shoes',
  '50%_off', '10%_extra', 'clearance', 'new', 'misc', 'gifts', 'crafts', 'art', 'food', 'drinks'
]

/** 2024-01-01T00:00:00Z, and days since the epoch of that day. */
export const TS_BASE = 1_704_067_200_000
export const DAY_BASE = 19_723
export const TS_SPAN = 366 * 86_400_000

/** Amounts that many rows share (ties for ORDER BY, repeats for count(DISTINCT)). */
const AMOUNT_POOL = [0, 0.125, -0.5, 1, 2.5, 9.75, 10, 19.875, 25, 49.5, 99.25, 100, 250.5, 999.875, -12.25, -100]

/**
 * N rows from a seed; the same seed gives the same rows. Categories follow a Zipf-like law (a
 * few large groups, a long tail); about 8% of categories, 8% of amounts, 15% of flags, 3% of
 * quantities, 2% of bigs and 4% of days are NULL.
 */
export function generateRows (seed: number, n: number): DataRow[] {
  const rng = new Rng(seed)
  const catWeights = CATEGORIES.map((c, i) => [1 / Math.pow(i + 1, 0.9), c] as const)
  const bigPool = Array.from({ length: 30 }, () => randomBig(rng))
  const tsPool = Array.from({ length: 20 }, () => TS_BASE + rng.int(TS_SPAN))
  const rows: DataRow[] = []
  for (let i = 0; i < n; i++) {
    const qty = rng.chance(0.03) ? null : rng.chance(0.8) ? rng.range(0, 200) : rng.range(-20, 1000)
    let amount: number | null
    if (rng.chance(0.08)) amount = null
    else if (rng.chance(0.25)) amount = rng.pick(AMOUNT_POOL)
    else amount = rng.range(-8_000, 400_000) / 8
    rows.push({
      id: `r${String(i).padStart(6, '0')}`,
      region: rng.pick(REGIONS),
      category: rng.chance(0.08) ? null : rng.weighted(catWeights),
      qty,
      amount,
      big: rng.chance(0.02) ? null : rng.chance(0.1) ? rng.pick(bigPool) : randomBig(rng),
      flag: rng.chance(0.15) ? null : rng.chance(0.53),
      ts: rng.chance(0.05) ? rng.pick(tsPool) : TS_BASE + rng.int(TS_SPAN),
      day: rng.chance(0.04) ? null : DAY_BASE + rng.int(366)
    })
  }
  return rows
}

/** A uniform-ish integer within ±2^50 (and sometimes a small one). */
function randomBig (rng: Rng): number {
  if (rng.chance(0.2)) return rng.range(-1000, 1000)
  const hi = rng.int(1 << 26)
  const lo = rng.int(1 << 24)
  const v = hi * 2 ** 24 + lo
  return rng.chance(0.5) ? -v : v
}

/** Rows as Shoal's records endpoint takes them. */
export function toRecords (rows: readonly DataRow[]): Array<Record<string, unknown>> {
  return rows.map(r => ({ ...r }))
}
