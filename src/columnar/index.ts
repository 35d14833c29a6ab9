/**
 * columnar: the in-memory column format shared by storage (which serves a partition's live rows as
 * batches, from its Arrow segments and its memtable) and the query executor (which filters,
 * computes and groups over them). Typed arrays, NaN for numeric NULL, dictionary-encoded strings.
 */
export * from './vector.js'
export * from './shared.js'
export * from './compact.js'
