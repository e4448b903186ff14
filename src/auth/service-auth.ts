import { DidResolver } from '@atproto/identity'
import { verifyJwt, XRPCError as LibXRPCError } from '@atproto/xrpc-server'
import { isValidDid } from '@atproto/syntax'
import { AuthRequiredError, RateLimitExceededError } from '../errors.ts'
import { Lru } from '../lru.ts'
import { TokenBuckets } from '../stats/limiter.ts'
import { BoundedDidCache } from './did-cache.ts'
import { identityFetch } from './identity-fetch.ts'

/** Longest a service token may still be valid for. */
export const MAX_TOKEN_LIFETIME_S = 3600
const MAX_TOKEN_LENGTH = 8192
const ALGS = new Set(['ES256K', 'ES256'])
/** The service id an AppView may name in `aud` after the hold's DID (`did#atcr_hold`). */
export const SERVICE_ID = 'atcr_hold'

export type ServiceAuthLimits = {
  /** Longest a verified token is taken without verifying it again. */
  verifiedTtlMs: number
  /** Longest a token that failed verification is refused without verifying it again. */
  failedTtlMs: number
  /** Total length of the tokens kept, for each of the two caches above. */
  tokenCacheChars: number
  /** JSON of the DID documents kept. */
  didCacheBytes: number
  /** Least time between two forced refreshes of one DID's document. */
  refreshIntervalMs: number
  /** DIDs whose last forced refresh is remembered. */
  refreshedMax: number
}

export const DEFAULT_LIMITS: ServiceAuthLimits = {
  verifiedTtlMs: 5 * 60 * 1000,
  failedTtlMs: 30 * 1000,
  tokenCacheChars: 8 * 1024 * 1024,
  didCacheBytes: 8 * 1024 * 1024,
  refreshIntervalMs: 60 * 1000,
  refreshedMax: 10_000,
}

type Failure = { error: string; message: string; until: number }

/**
 * Verifies `Authorization: Bearer <service JWT>` the way atproto services do, with the checks a
 * hold adds: `aud` the hold's DID or `did#atcr_hold`, `exp` at most an hour away, `lxm` (when
 * present) the called method, a did:plc or did:web issuer, whose key is resolved through a
 * bounded cache and refreshed when a signature fails (a rotated key works at once), at most
 * once a minute per DID. Every failure is a 401 with a name saying what failed, never a 500.
 */
export class ServiceAuth {
  private readonly resolver: DidResolver
  private readonly ownDid: string
  private readonly audiences: Set<string>
  private readonly limits: ServiceAuthLimits
  /**
   * Tokens already verified, keyed by method and token: a secp256k1 verification in JavaScript
   * is slow next to the rest of a request, and a client reuses its token for a burst of blob
   * requests. An entry lives until the
   * token expires or for `verifiedTtlMs`, whichever is first, so a token signed with a key the
   * issuer has since rotated away stays usable for at most that long after its first use.
   */
  private readonly verified: Lru<string, { did: string; until: number }>
  /**
   * Tokens that failed past the cheap checks (signature, issuer), refused again for a short
   * while: a replayed bad token would otherwise cost a verification, and maybe a fetch, each time.
   */
  private readonly failed: Lru<string, Failure>
  /** When each DID's document was last fetched because a signature failed against it. */
  private readonly refreshed: Lru<string, number>
  private readonly now: () => number
  readonly didCache: BoundedDidCache
  /**
   * HOLD_FAILED_AUTH_PER_MINUTE: signature checks per client that may fail. A new forged token
   * on every request misses both caches and costs a signature check each; past its budget a
   * client's new tokens are refused before that check (a token it already has verified still
   * passes).
   */
  readonly failedAuth: TokenBuckets

  constructor(opts: {
    ownDid: string
    plcUrl: string
    /** HOLD_DEV_ALLOW_LOCAL_DIDS */
    allowLocalDids?: boolean
    timeoutMs?: number
    limits?: Partial<ServiceAuthLimits>
    /** HOLD_FAILED_AUTH_PER_MINUTE (0: no limit) */
    failedPerMinute?: number
    /** The clock of the caches (tests move it); token expiry is checked on the real one. */
    now?: () => number
  }) {
    this.ownDid = opts.ownDid
    this.now = opts.now ?? Date.now
    this.audiences = new Set([opts.ownDid, `${opts.ownDid}#${SERVICE_ID}`])
    const limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.limits = limits
    const byLength = (key: string) => key.length
    this.verified = new Lru({
      maxEntries: Infinity,
      maxWeight: limits.tokenCacheChars,
      weigh: byLength,
    })
    this.failed = new Lru({
      maxEntries: Infinity,
      maxWeight: limits.tokenCacheChars,
      weigh: byLength,
    })
    this.refreshed = new Lru({ maxEntries: limits.refreshedMax })
    const failedPerMinute = opts.failedPerMinute ?? 0
    this.failedAuth = new TokenBuckets(
      failedPerMinute * 60,
      100_000,
      failedPerMinute,
    )
    this.didCache = new BoundedDidCache({
      staleTtlMs: 10 * 60 * 1000,
      maxTtlMs: 24 * 60 * 60 * 1000,
      maxBytes: limits.didCacheBytes,
    })
    const timeout = opts.timeoutMs ?? 3000
    this.resolver = new DidResolver({
      plcUrl: opts.plcUrl,
      timeout,
      didCache: this.didCache,
      fetch: identityFetch({
        plcUrl: opts.plcUrl,
        allowLocal: opts.allowLocalDids ?? false,
        timeoutMs: timeout,
      }),
    })
  }

  /**
   * The caller's DID, or undefined for a request without credentials. `client` names the
   * client a failed verification is charged to (its address), asked only when one is tried.
   */
  async verify(
    authorization: string | undefined,
    nsid: string,
    client?: () => string,
  ): Promise<string | undefined> {
    if (authorization === undefined || authorization === '') return undefined
    const m = /^Bearer +([A-Za-z0-9_.=-]+)$/i.exec(authorization)
    if (!m) {
      throw new AuthRequiredError(
        'Authorization must be "Bearer <service JWT>"',
        'InvalidToken',
      )
    }
    const token = m[1]
    if (token.length > MAX_TOKEN_LENGTH) {
      throw new AuthRequiredError('token is too long', 'InvalidToken')
    }
    const cacheKey = `${nsid} ${token}`
    const hit = this.verified.get(cacheKey)
    if (hit && hit.until > this.now()) return hit.did
    const failure = this.failed.get(cacheKey)
    if (failure && failure.until > this.now()) {
      throw new AuthRequiredError(failure.message, failure.error)
    }
    const { header, payload } = decode(token)
    if (!ALGS.has(header.alg as string)) {
      throw new AuthRequiredError(
        `jwt alg must be ES256K or ES256, got ${JSON.stringify(header.alg)}`,
        'BadJwtAlgorithm',
      )
    }
    const exp = payload.exp
    if (typeof exp !== 'number') {
      throw new AuthRequiredError('jwt has no exp', 'BadJwt')
    }
    if (exp > Date.now() / 1000 + MAX_TOKEN_LIFETIME_S) {
      throw new AuthRequiredError(
        `jwt exp is more than ${MAX_TOKEN_LIFETIME_S} s away`,
        'BadJwtExpiry',
      )
    }
    if (payload.lxm !== undefined && payload.lxm !== nsid) {
      throw new AuthRequiredError(
        `jwt lexicon method ("lxm") is ${JSON.stringify(payload.lxm)}, not ${nsid}`,
        'BadJwtLexiconMethod',
      )
    }
    checkIssuer(payload.iss)
    // verifyJwt compares `aud` with one value: give it the one this token names when that is
    // one of the hold's, else the DID, so it refuses with its own BadJwtAudience.
    const aud =
      typeof payload.aud === 'string' && this.audiences.has(payload.aud)
        ? payload.aud
        : this.ownDid
    const charged = this.failedAuth.enabled ? client?.() : undefined
    if (charged !== undefined && !this.failedAuth.take(charged, this.now())) {
      const waitS = Math.ceil(
        this.failedAuth.waitMs(charged, this.now()) / 1000,
      )
      throw new RateLimitExceededError(
        `too many service tokens from this client failed verification; new tokens are checked again in ${waitS} s (HOLD_FAILED_AUTH_PER_MINUTE)`,
        'RateLimitExceeded',
        waitS,
      )
    }
    try {
      const verified = await verifyJwt(token, aud, null, (iss, fresh) =>
        this.signingKey(iss, fresh),
      )
      const did = stripFragment(verified.iss)
      if (charged !== undefined) this.failedAuth.refund(charged)
      this.verified.set(cacheKey, {
        did,
        until: Math.min(
          verified.exp * 1000,
          this.now() + this.limits.verifiedTtlMs,
        ),
      })
      return did
    } catch (err) {
      const refusal =
        err instanceof AuthRequiredError
          ? err
          : err instanceof LibXRPCError
            ? new AuthRequiredError(err.errorMessage ?? 'bad token', err.error)
            : new AuthRequiredError(
                'token could not be verified',
                'InvalidToken',
              )
      const until = Math.min(exp * 1000, this.now() + this.limits.failedTtlMs)
      if (until > this.now()) {
        this.failed.set(cacheKey, {
          error: refusal.error,
          message: refusal.message,
          until,
        })
      }
      throw refusal
    }
  }

  private async signingKey(
    iss: string,
    forceRefresh: boolean,
  ): Promise<string> {
    const did = stripFragment(iss)
    let refresh = false
    if (forceRefresh) {
      // Anyone can send a token that names a real DID and fails its signature: refetching
      // the document for each would let them drive the hold's requests to the directory.
      const now = this.now()
      const last = this.refreshed.get(did)
      if (last === undefined || now - last >= this.limits.refreshIntervalMs) {
        this.refreshed.set(did, now)
        refresh = true
      }
    }
    try {
      return await this.resolver.resolveAtprotoKey(did, refresh)
    } catch {
      throw new AuthRequiredError(
        `could not resolve the jwt issuer ${did} to a signing key`,
        'BadJwtIssuer',
      )
    }
  }

  /**
   * The handle a DID's document names (its first `at://` alsoKnownAs), through the same cache;
   * undefined when it names none or cannot be resolved. Not checked against the handle's own
   * resolution: shown next to the DID, never used to authorize.
   */
  async handleOf(did: string): Promise<string | undefined> {
    try {
      const doc = await this.resolver.resolve(did)
      const aka = doc?.alsoKnownAs?.find((a) => a.startsWith('at://'))
      const handle = aka?.slice('at://'.length)
      return handle && /^[a-zA-Z0-9.-]{1,253}$/.test(handle)
        ? handle.toLowerCase()
        : undefined
    } catch {
      return undefined
    }
  }
}

/**
 * did:key issuers are refused: anyone can make any number of them offline, so each could pass
 * for a new client; service tokens come from atproto accounts. A malformed iss is left to
 * verifyJwt, which names it BadJwtIss.
 */
const checkIssuer = (iss: unknown): void => {
  const method = typeof iss === 'string' ? /^did:([a-z]+):/.exec(iss)?.[1] : ''
  if (method === undefined || method === '') return
  if (method !== 'plc' && method !== 'web') {
    throw new AuthRequiredError(
      `jwt issuer must be a did:plc or did:web account, got a did:${method}: service tokens come from atproto accounts`,
      'BadJwtIssuer',
    )
  }
}

const stripFragment = (iss: string): string => {
  const did = iss.split('#')[0]
  if (!isValidDid(did)) {
    throw new AuthRequiredError('jwt iss is not a DID', 'BadJwtIss')
  }
  return did
}

const decode = (
  token: string,
): { header: Record<string, unknown>; payload: Record<string, unknown> } => {
  const parts = token.split('.')
  if (parts.length !== 3) {
    throw new AuthRequiredError('token is not a JWT', 'BadJwt')
  }
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString())
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString())
    if (!isObject(header) || !isObject(payload)) throw new Error('not objects')
    return { header, payload }
  } catch {
    throw new AuthRequiredError('token is not a JWT', 'BadJwt')
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)
