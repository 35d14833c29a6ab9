/**
 * query/model: the query tree. Small immutable nodes tagged by `kind` (one file per node, as in
 * Kysely's operation nodes), built by factory functions, frozen, and plain data: a plan can be
 * printed, compared in a test (`planEquals`) and sent to a peer with msgpackr or JSON as it is.
 * Both front ends (src/query/sql, src/query/json) produce it; src/query/validate types it.
 *
 * ```ts
 * const plan = limit(sort(filter(scan('sales'), binary('>', column('amount'), literal(10))),
 *   [sortKey(column('amount'), 'desc')]), 5)
 * printPlan(plan)
 * // Limit 5
 * //   Sort amount DESC
 * //     Filter amount > 10
 * //       Scan sales
 * ```
 *
 * Plan nodes: Scan, Filter, Project, Aggregate, Sort, Limit, TopK, Spread, Complete.
 * Expression nodes: Column, Literal, Binary, Unary, InList, Between, Like, IsNull, Call, Case.
 */
export * from './node.js'
export * from './column.js'
export * from './literal.js'
export * from './binary.js'
export * from './unary.js'
export * from './in-list.js'
export * from './between.js'
export * from './like.js'
export * from './is-null.js'
export * from './call.js'
export * from './case.js'
export * from './scan.js'
export * from './filter.js'
export * from './project.js'
export * from './aggregate.js'
export * from './sort.js'
export * from './limit.js'
export * from './top-k.js'
export * from './spread.js'
export * from './complete.js'
export { mapChildren, children, transform, replaceExprs } from './transform.js'
export { walk, collect } from './walk.js'
export { planEquals } from './equals.js'
export { printExpr, printPlan, printNode, printIdent, printString } from './print.js'
export { freeze } from './freeze.js'
export * from './origin.js'
export { decodePlan, checkPlanLimits, PlanDecodeError, PlanLimitError, MAX_PLAN_DEPTH, MAX_PLAN_NODES } from './wire.js'
