/**
 * Errors every Transport reports, real or simulated. Callers match them by `name` (or instanceof),
 * never by message.
 */

export class RpcError extends Error {
  override name = 'RpcError'
  /** Stable machine-readable code, also carried over the wire for remote errors. */
  readonly code: string
  readonly peer: string | undefined
  constructor (code: string, message: string, options: { peer?: string, cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.code = code
    this.peer = options.peer
  }
}

/** No answer within the request's deadline. The request may or may not have been served. */
export class RpcTimeoutError extends RpcError {
  override name = 'RpcTimeoutError'
  constructor (peer: string | undefined, method: string, timeoutMs: number) {
    super('TIMEOUT', `request ${method} to ${peer ?? 'unknown peer'} timed out after ${timeoutMs} ms`, { peer })
  }
}

/** The peer could not be reached, or went away before answering. */
export class PeerUnreachableError extends RpcError {
  override name = 'PeerUnreachableError'
  constructor (peer: string | undefined, reason: string, cause?: unknown) {
    super('UNREACHABLE', `peer ${peer ?? 'unknown'} unreachable: ${reason}`, { peer, cause })
  }
}

/** The caller aborted the request. */
export class RpcCancelledError extends RpcError {
  override name = 'RpcCancelledError'
  constructor (peer: string | undefined, method: string) {
    super('CANCELLED', `request ${method} to ${peer ?? 'unknown peer'} was cancelled`, { peer })
  }
}

/** The remote handler failed, or refused the request (unknown method, bad frame, too large). */
export class RemoteError extends RpcError {
  override name = 'RemoteError'
  constructor (peer: string | undefined, code: string, message: string) {
    super(code, `peer ${peer ?? 'unknown'} answered ${code}: ${message}`, { peer })
  }
}

/** A frame over the size limit, sent or received. */
export class FrameTooLargeError extends RpcError {
  override name = 'FrameTooLargeError'
  constructor (bytes: number, limitBytes: number, peer?: string) {
    super('FRAME_TOO_LARGE', `frame of ${bytes} bytes exceeds the limit of ${limitBytes} bytes`, { peer })
  }
}
