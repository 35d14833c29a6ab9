/**
 * The SQL could not be turned into a plan: a syntax error, or a construct Shoal does not run.
 * `offset` (from 0), `line` and `column` (from 1) point into the SQL text when known;
 * `construct` names what was refused (`JOIN`, `subquery`, `window function`, ...).
 */
export class SqlError extends Error {
  override name = 'SqlError'
  readonly code: 'syntax' | 'unsupported' | 'invalid'
  readonly offset: number | undefined
  readonly line: number | undefined
  readonly column: number | undefined
  readonly construct: string | undefined

  constructor (code: 'syntax' | 'unsupported' | 'invalid', message: string, opts: { offset?: number, line?: number, column?: number, construct?: string, cause?: unknown } = {}) {
    super(opts.line === undefined ? message : `${message} (line ${opts.line}, column ${opts.column ?? 0})`, { cause: opts.cause })
    this.code = code
    this.offset = opts.offset
    this.line = opts.line
    this.column = opts.column
    this.construct = opts.construct
  }
}
