export type XRPCErrorOptions = {
  /** Headers the error response carries (www-authenticate, retry-after). */
  headers?: Record<string, string>
}

/**
 * An error with an XRPC error name; the root handler turns it into `{ error, message }` with
 * the status and any headers it carries. Every constructor takes the message first and the
 * lexicon's error name second, as @atproto/xrpc-server's do.
 */
export class XRPCError extends Error {
  readonly status: number
  readonly error: string
  readonly headers: Record<string, string> | undefined
  constructor(
    status: number,
    message: string,
    error: string,
    opts: XRPCErrorOptions = {},
  ) {
    super(message)
    this.status = status
    this.error = error
    this.headers = opts.headers
  }
}

export class InvalidRequestError extends XRPCError {
  constructor(message: string, error = 'InvalidRequest') {
    super(400, message, error)
  }
}

export class AuthRequiredError extends XRPCError {
  constructor(
    message = 'Authentication required',
    error = 'AuthRequired',
    opts?: XRPCErrorOptions,
  ) {
    super(401, message, error, opts)
  }
}

export class ForbiddenError extends XRPCError {
  constructor(message: string, error = 'Forbidden') {
    super(403, message, error)
  }
}

export class NotFoundError extends XRPCError {
  constructor(message: string, error = 'NotFound') {
    super(404, message, error)
  }
}

export class PayloadTooLargeError extends XRPCError {
  constructor(message: string, error = 'PayloadTooLarge') {
    super(413, message, error)
  }
}

/** 429; `retryAfterS`, when given, tells the client in `retry-after` when to come back. */
export class RateLimitExceededError extends XRPCError {
  constructor(
    message: string,
    error = 'RateLimitExceeded',
    retryAfterS?: number,
  ) {
    super(429, message, error, {
      headers:
        retryAfterS === undefined
          ? undefined
          : { 'retry-after': String(retryAfterS) },
    })
  }
}

export class MethodNotImplementedError extends XRPCError {
  constructor(
    message = 'Method Not Implemented',
    error = 'MethodNotImplemented',
  ) {
    super(501, message, error)
  }
}
