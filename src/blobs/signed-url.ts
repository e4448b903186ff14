import {
  createHmac,
  createSecretKey,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto'
import { ForbiddenError } from '../errors.ts'

export type UrlMethod = 'GET' | 'HEAD' | 'PUT'

export type UrlGrant = {
  method: UrlMethod
  hex: string
  did: string
  repo: string | undefined
  /** The authenticated caller the URL was issued to, if any (counts are charged to it). */
  caller?: string
}

export const BLOB_URL_PATH = '/blobs/sha256/'

/**
 * Short-lived blob URLs that the hold itself serves, signed with HMAC-SHA256 over everything the
 * URL grants (method, blob, owner DID, repository, expiry). A URL grants only what the getBlob
 * call that issued it was allowed.
 */
export class BlobUrlSigner {
  // A KeyObject, not the raw Buffer: createHmac re-imports a Buffer key on every call, which
  // costs several times the HMAC itself on the getBlob hot path.
  private readonly key: KeyObject
  private readonly base: string
  private readonly ttlMs: number

  constructor(secret: Buffer, publicUrl: string, ttlMs = 15 * 60 * 1000) {
    this.key = createSecretKey(secret)
    this.base = new URL(BLOB_URL_PATH, publicUrl).toString()
    this.ttlMs = ttlMs
  }

  sign(grant: UrlGrant, now = Date.now()): { url: string; expiresAt: string } {
    const exp = Math.floor((now + this.ttlMs) / 1000)
    const repo = grant.repo ? `&repo=${encodeURIComponent(grant.repo)}` : ''
    const caller = grant.caller
      ? `&caller=${encodeURIComponent(grant.caller)}`
      : ''
    const url =
      `${this.base}${grant.hex}?method=${grant.method}` +
      `&did=${encodeURIComponent(grant.did)}${repo}${caller}` +
      `&exp=${exp}&sig=${this.mac(grant, exp)}`
    return { url, expiresAt: new Date(exp * 1000).toISOString() }
  }

  /** The grant of a signed URL, or a ForbiddenError when it is forged, altered or expired. */
  verify(hex: string, query: URLSearchParams, now = Date.now()): UrlGrant {
    const method = query.get('method')
    const did = query.get('did')
    const exp = Number(query.get('exp'))
    const sig = query.get('sig')
    if (
      (method !== 'GET' && method !== 'HEAD' && method !== 'PUT') ||
      !did ||
      !Number.isSafeInteger(exp) ||
      !sig
    ) {
      throw new ForbiddenError('blob URL is not signed by this hold')
    }
    const grant: UrlGrant = {
      method,
      hex,
      did,
      repo: query.get('repo') || undefined,
      caller: query.get('caller') || undefined,
    }
    const expected = Buffer.from(this.mac(grant, exp), 'base64url')
    const given = Buffer.from(sig, 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ForbiddenError('blob URL signature does not match')
    }
    if (exp * 1000 < now) {
      throw new ForbiddenError('blob URL has expired', 'ExpiredUrl')
    }
    return grant
  }

  private mac(grant: UrlGrant, exp: number): string {
    return createHmac('sha256', this.key)
      .update(
        [
          'v1',
          grant.method,
          grant.hex,
          grant.did,
          grant.repo ?? '',
          grant.caller ?? '',
          exp,
        ].join('\n'),
      )
      .digest('base64url')
  }
}
