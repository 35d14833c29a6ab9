/**
 * query/validate: checks a plan from either front end against the schemas of the spaces it
 * reads and types each output column with its Arrow type name. Every error names the column and
 * where it is in the query (SQL line and column, or a JSON path like
 * `filter.bool.must[1].range.amount`), from the front end's origins.
 *
 * ```ts
 * const { plan, origins } = parseSql('SELECT region, sum(amount) AS total FROM sales GROUP BY region')
 * const r = validatePlan(plan, salesDef, { origins })
 * if (r.ok) r.columns // [{ name: 'region', type: 'utf8' }, { name: 'total', type: 'float64' }]
 * else r.errors       // [{ code: 'unknown_column', column: 'amount', at: 'line 1, column 20', ... }]
 * ```
 */
export { validatePlan, MAX_LIMIT, MAX_OFFSET, MAX_TOP_K, MAX_SPREAD_HOPS, MAX_SPREAD_SEEDS, MAX_TERMS_SIZE } from './validate.js'
export type { QueryError, QueryErrorCode, OutputColumn, ValidationResult, ValidateOptions, ValueType } from './validate.js'
export { givenValue, fillColumns, completeProblems, MAX_COMPLETE_K, type GivenValue, type CompleteProblem } from './complete.js'
export { arithmeticType, comparable, isIntegerType, isNumericType, isScalarType, isTemporalType, scalarFunctionType, unify } from './typing.js'
