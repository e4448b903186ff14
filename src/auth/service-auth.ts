import { DidResolver, MemoryCache } from '@atproto/identity'
import { verifyJwt, XRPCError as LibXRPCError } from '@atproto/xrpc-server'
import { isValidDid } from '@atproto/syntax'
import { AuthRequiredError } from '../errors.ts'
import { identityFetch } from './identity-fetch.ts'

/** Longest a service token may still be valid for. */
export const MAX_TOKEN_LIFETIME_S = 3600
const MAX_TOKEN_LENGTH = 8192
const ALGS = new Set(['ES256K', 'ES256'])
/** The service id an AppView may name in `aud` after the hold's DID (`did#atcr_hold`). */
export const SERVICE_ID = 'atcr_hold'
const VERIFIED_TTL_MS = 5 * 60 * 1000
const VERIFIED_MAX = 10_000

/**
 * Verifies `Authorization: Bearer <service JWT>` the way atproto services do, with the checks a
 * hold adds: `aud` the hold's DID or `did#atcr_hold`, `exp` at most an hour away, `lxm` (when
 * present) the called method, a did:plc or did:web issuer, whose key is resolved through a
 * cache and refreshed once when a signature fails (a rotated key works at once). Every failure
 * is a 401 with a name saying what failed, never a 500.
 */
export class ServiceAuth {
  private readonly resolver: DidResolver
  private readonly ownDid: string
  private readonly audiences: Set<string>
  /**
   * Tokens already verified, keyed by method and token: a secp256k1 verification costs about
   * 2 ms, and a client reuses its token for a burst of blob requests. An entry lives until the
   * token expires or for VERIFIED_TTL_MS, whichever is first, so a token signed with a key the
   * issuer has since rotated away stays usable for at most that long after its first use.
   */
  private readonly verified = new Map<string, { did: string; until: number }>()

  constructor(opts: {
    ownDid: string
    plcUrl: string
    /** HOLD_DEV_ALLOW_LOCAL_DIDS */
    allowLocalDids?: boolean
    timeoutMs?: number
  }) {
    this.ownDid = opts.ownDid
    this.audiences = new Set([opts.ownDid, `${opts.ownDid}#${SERVICE_ID}`])
    const timeout = opts.timeoutMs ?? 3000
    this.resolver = new DidResolver({
      plcUrl: opts.plcUrl,
      timeout,
      didCache: new MemoryCache(10 * 60 * 1000, 24 * 60 * 60 * 1000),
      fetch: identityFetch({
        plcUrl: opts.plcUrl,
        allowLocal: opts.allowLocalDids ?? false,
        timeoutMs: timeout,
      }),
    })
  }

  /** The caller's DID, or undefined for a request without credentials. */
  async verify(
    authorization: string | undefined,
    nsid: string,
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
    if (hit && hit.until > Date.now()) return hit.did
    const { header, payload } = decode(token)
    if (!ALGS.has(header.alg as string)) {
      throw new AuthRequiredError(
        `jwt alg must be ES256K or ES256, got ${JSON.stringify(header.alg)}`,
        'BadJwtAlgorithm',
      )
    }
    if (typeof payload.exp !== 'number') {
      throw new AuthRequiredError('jwt has no exp', 'BadJwt')
    }
    if (payload.exp > Date.now() / 1000 + MAX_TOKEN_LIFETIME_S) {
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
    try {
      const verified = await verifyJwt(token, aud, null, (iss, fresh) =>
        this.signingKey(iss, fresh),
      )
      const did = stripFragment(verified.iss)
      this.remember(cacheKey, did, verified.exp * 1000)
      return did
    } catch (err) {
      if (err instanceof AuthRequiredError) throw err
      if (err instanceof LibXRPCError) {
        throw new AuthRequiredError(err.errorMessage ?? 'bad token', err.error)
      }
      throw new AuthRequiredError('token could not be verified', 'InvalidToken')
    }
  }

  private remember(key: string, did: string, expMs: number): void {
    if (this.verified.size >= VERIFIED_MAX) {
      // Drop the oldest entry; Map iterates in insertion order.
      this.verified.delete(this.verified.keys().next().value!)
    }
    this.verified.set(key, {
      did,
      until: Math.min(expMs, Date.now() + VERIFIED_TTL_MS),
    })
  }

  private async signingKey(
    iss: string,
    forceRefresh: boolean,
  ): Promise<string> {
    const did = stripFragment(iss)
    try {
      return await this.resolver.resolveAtprotoKey(did, forceRefresh)
    } catch {
      throw new AuthRequiredError(
        `could not resolve the jwt issuer ${did} to a signing key`,
        'BadJwtIssuer',
      )
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
