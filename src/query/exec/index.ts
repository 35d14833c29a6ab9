/**
 * query/exec: local execution over column batches (src/columnar). A plan is split (split.ts) into
 * a fragment that runs on each partition replica (fragment.ts: filter, projection, partial
 * aggregation, top-N, top-K, completion's best K: complete-score.ts) and the coordinator's merge
 * and final steps (final.ts; a completion's filled record: complete-fill.ts). Expressions
 * evaluate vectorized (eval.ts); grouping is by dictionary codes (group.ts), with WHERE terms,
 * group lookup and the typed-array aggregates in one generated loop where it can (kernel.ts,
 * select.ts's row tests); aggregate states are mergeable (accumulators.ts, and src/query/aggregate for sketches and JSON aggregations); every
 * operator that holds rows or groups reports to the query's memory budget (errors.ts).
 */
export { evalExpr, evalPredicate, exprType } from './eval.js'
export { zoneTest } from './zones.js'
export { QueryExecError, MemoryBudget, type QueryExecErrorCode } from './errors.js'
export { splitPlan, type SplitPlan, type PostStep, type MergeKind } from './split.js'
export { runFragment, fragmentShape, batchOptions, type FragmentOutput, type FragmentResult, type FragmentStats, type FragmentContext } from './fragment.js'
export { QueryMerger, renderRows, finalResult, aggregateType, type FinalResult, type OutputColumn } from './final.js'
export { encodeBatch, decodeBatch, sliceBatch, type WireBatch } from './wire.js'
export { chunkOutput, wireBytes, type ChunkLimits } from './chunks.js'
export { concatBatches, sortAndSlice, batchBytes } from './rows.js'
export { scoreVectors, keepBest, type KeepBestOptions } from './topk.js'
export { completeSearch, scoreRecords, scoringTerms, similarity, defaultScale, COMPLETE_ORDER, type ScoringTerm } from './complete-score.js'
export { completion, fillMean, fillVote, compareValues, type Completion, type Filled, type Vote } from './complete-fill.js'
export { GroupTable, MAX_GROUPS } from './group.js'
export { arrowStream, arrowChunks, ARROW_STREAM_TYPE, ROWS_PER_RECORD_BATCH } from './arrow.js'
export { FragmentPool, defaultPoolSize, type FragmentJob } from './pool.js'
