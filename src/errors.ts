/** An error with an XRPC error name; the root handler turns it into `{ error, message }`. */
export class XRPCError extends Error {
  readonly status: number
  readonly error: string
  constructor(status: number, error: string, message: string) {
    super(message)
    this.status = status
    this.error = error
  }
}

export class InvalidRequestError extends XRPCError {
  constructor(message: string, error = 'InvalidRequest') {
    super(400, error, message)
  }
}

export class AuthRequiredError extends XRPCError {
  constructor(message = 'Authentication required', error = 'AuthRequired') {
    super(401, error, message)
  }
}

export class ForbiddenError extends XRPCError {
  constructor(message: string, error = 'Forbidden') {
    super(403, error, message)
  }
}

export class NotFoundError extends XRPCError {
  constructor(error: string, message: string) {
    super(404, error, message)
  }
}

export class PayloadTooLargeError extends XRPCError {
  constructor(message: string) {
    super(413, 'PayloadTooLarge', message)
  }
}

export class MethodNotImplementedError extends XRPCError {
  constructor(message = 'Method Not Implemented') {
    super(501, 'MethodNotImplemented', message)
  }
}
