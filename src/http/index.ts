/**
 * http: the peer's HTTP API (DESIGN.md section 8), JSON in and out, bound to 127.0.0.1 unless the
 * operator says otherwise; and the browser console at GET / (console.ts, docs/console.md).
 *
 * ```ts
 * const server = new HttpServer({ host: '127.0.0.1', port: 7947 }, log)
 * registerApi(server, peer)
 * await server.start()
 * ```
 */
export { HttpServer, HttpError, HttpListenError, DEFAULT_MAX_HTTP_CONNECTIONS } from './server.js'
export type { RouteHandler, RouteRequest, RouteResponse, RouteOptions, HttpServerOptions } from './server.js'
export { registerApi, parseDecommissionBody, DECOMMISSION_TIMEOUT_MS } from './api.js'
export type { ApiPeer, MemberView, HealthReport, FaultControl, FaultState, RemovePeerAnswer, GivenUpPartition } from './api.js'
export { registerDataApi, parseRecordsBody, toHttpError } from './data.js'
export type { DataApi, SpaceView, WriteOutcome, RecordAnswer, Consistency, RequestOptions } from './data.js'
export { registerQueryApi } from './query.js'
export { registerConsole } from './console.js'
export { registerBackupApi } from './backup.js'
export type { BackupApi, BackupPartitionStream } from './backup.js'
export { registerOpsApi, parseStatusQuery, parseRepairBody, STATUS_TIMEOUT_MS, REPAIR_TIMEOUT_MS } from './ops.js'
export type { OpsApi } from './ops.js'
export { parseTokenFile, roleOf, readOnlyMay, isOpen, isLoopbackHost, TokenFileError, MIN_TOKEN_CHARS, type TokenEntry, type TokenRole } from './guard.js'
