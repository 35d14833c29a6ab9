/**
 * runtime: the Clock, Timer, Random, Transport and FileSystem that protocol code receives from
 * outside.
 *
 * ```ts
 * import { SystemClock, SystemRandom } from '../runtime/index.js'
 * const swim = new Swim({ clock: new SystemClock(), random: new SystemRandom(), transport, log }, opts)
 * ```
 * The simulator (test/sim) supplies virtual-time and in-memory versions of the same interfaces.
 */
export type { Clock, Timer, Random, PeerId, PeerAddress, Transport, RequestOptions, RequestContext, RequestHandler, StreamHandler, MessageListener, EncodedBody } from './types.js'
export { LastItem } from './types.js'
export { RpcError, RpcTimeoutError, PeerUnreachableError, RpcCancelledError, RemoteError, FrameTooLargeError } from './errors.js'
export { SystemClock, SystemRandom } from './real.js'
export { SeededRandom, shuffle } from './seeded.js'
export type { Logger } from './log.js'
export { silentLogger } from './log.js'
export { readFileIfThereSync, writeFileDurablySync } from './durable-file.js'
export { nodeFileSystem, fsyncDir } from './filesystem.js'
export { DISK_FAULT_CODES, DISK_OPS, DiskFaultRules, FaultInjectingFileSystem, diskFaultError } from './disk-faults.js'
export type { DiskFaultCode, DiskFaultRule, DiskOp } from './disk-faults.js'
export type { FileSystem, AppendFile, RandomAccessFile, OpenFlags } from './filesystem.js'
export { PROGRAM, VERSION } from './version.js'
export { Histogram, HistogramFamily, CounterFamily, LATENCY_BUCKETS_SECONDS } from './histogram.js'
export type { HistogramView } from './histogram.js'
