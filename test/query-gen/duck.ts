/**
 * The reference side: an in-memory DuckDB holding the same rows under the same table name.
 */
import { DuckDBInstance } from '@duckdb/node-api'
import type { DuckDBConnection } from '@duckdb/node-api'
import { COLUMNS, DUCK_TYPES, SPACE_NAME } from './data.js'
import type { DataRow } from './data.js'

/** A DuckDB result as plain JS values: null, boolean, number, bigint, string, arrays (LIST). */
export interface DuckResult {
  names: string[]
  types: string[]
  rows: unknown[][]
}

export class Duck {
  private constructor (private readonly instance: DuckDBInstance, private readonly conn: DuckDBConnection) {}

  /** Opens an in-memory database with `rows` in table `orders`. */
  static async open (rows: readonly DataRow[]): Promise<Duck> {
    const instance = await DuckDBInstance.create(':memory:', { threads: '2' })
    const conn = await instance.connect()
    const duck = new Duck(instance, conn)
    await duck.load(rows)
    return duck
  }

  private async load (rows: readonly DataRow[]): Promise<void> {
    const cols = COLUMNS.map(c => `${c.name} ${DUCK_TYPES[c.name]!}`).join(', ')
    await this.conn.run(`CREATE TABLE ${SPACE_NAME} (${cols})`)
    const app = await this.conn.createAppender(SPACE_NAME)
    for (const r of rows) {
      for (const c of COLUMNS) {
        const v = (r as unknown as Record<string, unknown>)[c.name]
        if (v === null || v === undefined) { app.appendNull(); continue }
        switch (DUCK_TYPES[c.name]) {
          case 'VARCHAR': app.appendVarchar(v as string); break
          case 'INTEGER': app.appendInteger(v as number); break
          case 'BIGINT': app.appendBigInt(BigInt(v as number)); break
          case 'DOUBLE': app.appendDouble(v as number); break
          case 'BOOLEAN': app.appendBoolean(v as boolean); break
          default: throw new Error(`no appender for ${c.name}`)
        }
      }
      app.endRow()
    }
    app.flushSync()
    app.closeSync()
  }

  async query (sql: string): Promise<DuckResult> {
    const reader = await this.conn.runAndReadAll(sql)
    return {
      names: reader.columnNames(),
      types: reader.columnTypes().map(t => String(t)),
      rows: reader.getRowsJS() as unknown[][]
    }
  }

  close (): void {
    this.conn.closeSync()
    this.instance.closeSync()
  }
}
