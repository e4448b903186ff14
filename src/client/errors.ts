import {
  XrpcFetchError,
  XrpcInvalidResponseError,
  XrpcResponseError,
  type XrpcFailure,
} from '@atproto/lex-client'
import { LexValidationError } from '@atproto/lex-schema'

/**
 * What went wrong, by name. A hold's own answers keep their XRPC error name (`BlobNotFound`,
 * `InvalidRequest`, `AuthRequired`, ...); failures on the client's side use these:
 */
export type ClientErrorName =
  /** The per-call or per-hold time limit passed. */
  | 'Timeout'
  /** The caller's AbortSignal fired. */
  | 'Aborted'
  /** No answer: connection refused or reset, DNS, TLS. */
  | 'NetworkError'
  /** An answer that is not what the lexicon says (garbage, wrong shape, wrong encoding). */
  | 'InvalidResponse'
  /** The hold's DID document could not be read or names no `#atcr_hold` service. */
  | 'HoldNotResolved'
  /** The token function threw or returned nothing. */
  | 'TokenUnavailable'

/** Every failure of the client: `error` is the XRPC error name, or one of ClientErrorName. */
export class HoldError extends Error {
  override readonly name = 'HoldError'
  readonly error: ClientErrorName | (string & {})
  /** The HTTP status of the hold's answer, when there was one. */
  readonly status: number | undefined
  /** The hold the call went to. */
  readonly hold: string | undefined
  /** The XRPC method called. */
  readonly nsid: string | undefined

  constructor(
    error: ClientErrorName | (string & {}),
    message: string,
    opts: {
      status?: number
      hold?: string
      nsid?: string
      cause?: unknown
    } = {},
  ) {
    super(message, { cause: opts.cause })
    this.error = error
    this.status = opts.status
    this.hold = opts.hold
    this.nsid = opts.nsid
  }

  /** True for a time limit, not for a refusal. */
  get timedOut(): boolean {
    return this.error === 'Timeout'
  }
}

const isTimeout = (reason: unknown): boolean =>
  reason instanceof Error && reason.name === 'TimeoutError'

/** Turns whatever a call threw or returned as a failure into a HoldError. */
export const toHoldError = (
  cause: unknown,
  ctx: { hold?: string; nsid?: string; signal?: AbortSignal },
): HoldError => {
  if (cause instanceof HoldError) return cause
  const where = { hold: ctx.hold, nsid: ctx.nsid, cause }
  if (ctx.signal?.aborted) {
    return isTimeout(ctx.signal.reason)
      ? new HoldError('Timeout', `${ctx.nsid ?? 'call'} timed out`, where)
      : new HoldError('Aborted', `${ctx.nsid ?? 'call'} was aborted`, where)
  }
  if (cause instanceof XrpcResponseError) {
    return new HoldError(cause.error, cause.message, {
      ...where,
      status: cause.status,
    })
  }
  if (cause instanceof XrpcInvalidResponseError) {
    return new HoldError('InvalidResponse', cause.message, {
      ...where,
      status: cause.response.status,
    })
  }
  if (cause instanceof XrpcFetchError) {
    const inner = cause.cause
    if (isTimeout(inner)) {
      return new HoldError('Timeout', `${ctx.nsid} timed out`, where)
    }
    const detail = inner instanceof Error ? inner.message : String(inner)
    return new HoldError('NetworkError', `${ctx.nsid}: ${detail}`, where)
  }
  const inner = (cause as XrpcFailure | undefined)?.cause ?? cause
  if (inner instanceof LexValidationError) {
    return new HoldError('InvalidRequest', inner.message, where)
  }
  if (isTimeout(cause)) {
    return new HoldError('Timeout', `${ctx.nsid ?? 'call'} timed out`, where)
  }
  const message = cause instanceof Error ? cause.message : String(cause)
  return new HoldError('InvalidRequest', message, where)
}
