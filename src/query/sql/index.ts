/**
 * query/sql: the SQL front end. One SELECT over one space, in the dialect DuckDB runs (the same
 * text gives the same answer there), parsed with node-sql-parser's Postgres grammar and turned
 * into a query/model plan.
 *
 * ```ts
 * const { plan, origins } = parseSql('SELECT region, sum(amount) AS total FROM sales GROUP BY 1 ORDER BY total DESC LIMIT 5')
 * const typed = validatePlan(plan, spaceDef, { origins })
 * ```
 *
 * Refused with a SqlError (code 'unsupported', naming the construct and its position): JOIN,
 * several tables, subqueries, WITH, UNION, window functions, FILTER, CAST, DISTINCT aggregates
 * other than count, IS TRUE/FALSE, statements other than SELECT.
 */
export { parseSql, MAX_SQL_LENGTH } from './parse.js'
export type { ParseSqlOptions, ParsedSql } from './parse.js'
export { SqlError } from './errors.js'
