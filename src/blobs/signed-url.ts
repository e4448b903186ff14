import {
  createHmac,
  createSecretKey,
  randomBytes,
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
  /** Random, in upload URLs: each one issued is a grant of its own, used once. */
  nonce?: string
}

/** A grant as a URL presented it: `sig` names the URL, `exp` is when it stops working. */
export type VerifiedGrant = UrlGrant & { sig: string; exp: number }

export type SignedUrl = { readonly url: string; readonly expiresAt: string }

/** Signed URLs kept for the current second; past this many, the rest are signed each time. */
const MEMO_MAX = 10_000

export const BLOB_URL_PATH = '/blobs/sha256/'
/** Part URLs of multipart uploads on disk: `/uploads/<uploadId>/parts/<partNumber>`. */
export const PART_URL_PATH = '/uploads/'

/** A part URL's grant: one part of one upload, for the caller who started it. */
export type PartGrant = { uploadId: string; partNumber: number; caller: string }

/**
 * Short-lived blob URLs that the hold itself serves, signed with HMAC-SHA256 over everything the
 * URL grants (method, blob, owner DID, expiry; for uploads the repository their push counts for,
 * and a nonce). A URL grants only what the getBlob call that issued it was allowed.
 */
export class BlobUrlSigner {
  // A KeyObject, not the raw Buffer: createHmac re-imports a Buffer key on every call, which
  // costs more than the HMAC itself on the getBlob hot path.
  private readonly key: KeyObject
  private readonly base: string
  private readonly partBase: string
  private readonly ttlMs: number
  private readonly memo = new Map<string, SignedUrl>()
  private memoExp = 0
  private isoExp = 0
  private iso = ''

  constructor(secret: Buffer, publicUrl: string, ttlMs = 15 * 60 * 1000) {
    this.key = createSecretKey(secret)
    this.base = new URL(BLOB_URL_PATH, publicUrl).toString()
    this.partBase = new URL(PART_URL_PATH, publicUrl).toString()
    this.ttlMs = ttlMs
  }

  sign(grant: UrlGrant, now = Date.now()): SignedUrl {
    const exp = Math.floor((now + this.ttlMs) / 1000)
    if (grant.method === 'PUT' && !grant.nonce) {
      grant = { ...grant, nonce: randomBytes(12).toString('base64url') }
    }
    // A URL is a function of its grant and its expiry, which moves once a second: the same
    // pull asked again within that second (a popular layer) gets the URL already signed.
    if (grant.nonce) return this.signNow(grant, exp)
    if (exp !== this.memoExp) {
      this.memo.clear()
      this.memoExp = exp
    }
    const key = `${grant.method}\n${grant.hex}\n${grant.did}\n${grant.repo ?? ''}\n${grant.caller ?? ''}`
    let signed = this.memo.get(key)
    if (signed === undefined) {
      signed = this.signNow(grant, exp)
      if (this.memo.size < MEMO_MAX) this.memo.set(key, signed)
    }
    return signed
  }

  private signNow(grant: UrlGrant, exp: number): SignedUrl {
    const repo = grant.repo ? `&repo=${encodeURIComponent(grant.repo)}` : ''
    const caller = grant.caller
      ? `&caller=${encodeURIComponent(grant.caller)}`
      : ''
    const nonce = grant.nonce ? `&nonce=${grant.nonce}` : ''
    const url =
      `${this.base}${grant.hex}?method=${grant.method}` +
      `&did=${encodeURIComponent(grant.did)}${repo}${caller}${nonce}` +
      `&exp=${exp}&sig=${this.mac(grant, exp)}`
    return { url, expiresAt: this.expiresAt(exp) }
  }

  private expiresAt(exp: number): string {
    if (exp !== this.isoExp) {
      this.iso = new Date(exp * 1000).toISOString()
      this.isoExp = exp
    }
    return this.iso
  }

  /** The grant of a signed URL, or a ForbiddenError when it is forged, altered or expired. */
  verify(hex: string, query: URLSearchParams, now = Date.now()): VerifiedGrant {
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
    const grant: VerifiedGrant = {
      method,
      hex,
      did,
      repo: query.get('repo') || undefined,
      caller: query.get('caller') || undefined,
      nonce: query.get('nonce') || undefined,
      sig,
      exp,
    }
    checkSigned('blob URL', this.mac(grant, exp), sig, exp, now)
    return grant
  }

  /** Where a part of a disk upload is PUT (getPartUploadUrl); S3 presigns its own. */
  signPart(
    grant: PartGrant,
    now = Date.now(),
  ): { url: string; expiresAt: string } {
    const exp = Math.floor((now + this.ttlMs) / 1000)
    const url =
      `${this.partBase}${encodeURIComponent(grant.uploadId)}/parts/${grant.partNumber}` +
      `?caller=${encodeURIComponent(grant.caller)}&exp=${exp}&sig=${this.partMac(grant, exp)}`
    return { url, expiresAt: new Date(exp * 1000).toISOString() }
  }

  /** The caller a part URL was issued to, or a ForbiddenError when forged, altered or expired. */
  verifyPart(
    uploadId: string,
    partNumber: number,
    query: URLSearchParams,
    now = Date.now(),
  ): PartGrant {
    const caller = query.get('caller')
    const exp = Number(query.get('exp'))
    const sig = query.get('sig')
    if (!caller || !Number.isSafeInteger(exp) || !sig) {
      throw new ForbiddenError('part URL is not signed by this hold')
    }
    const grant = { uploadId, partNumber, caller }
    checkSigned('part URL', this.partMac(grant, exp), sig, exp, now)
    return grant
  }

  private partMac(grant: PartGrant, exp: number): string {
    // Its own first line: no part URL and no blob URL ever sign the same text.
    const text = [
      'part1',
      grant.uploadId,
      grant.partNumber,
      grant.caller,
      exp,
    ].join('\n')
    return createHmac('sha256', this.key).update(text).digest('base64url')
  }

  private mac(grant: UrlGrant, exp: number): string {
    const fields = [
      grant.method,
      grant.hex,
      grant.did,
      grant.repo ?? '',
      grant.caller ?? '',
      exp,
    ]
    // A nonce changes the version too, so no v1 URL and no v2 URL ever sign the same text.
    // Upload URLs issued before nonces existed (v1) still verify until they expire.
    const text = grant.nonce
      ? ['v2', ...fields, grant.nonce].join('\n')
      : ['v1', ...fields].join('\n')
    return createHmac('sha256', this.key).update(text).digest('base64url')
  }
}

/** Throws unless `sig` is the `expected` MAC (both base64url) and `exp` (seconds) is not past. */
const checkSigned = (
  what: string,
  expected: string,
  sig: string,
  exp: number,
  now: number,
): void => {
  const want = Buffer.from(expected, 'base64url')
  const given = Buffer.from(sig, 'base64url')
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw new ForbiddenError(`${what} signature does not match`)
  }
  if (exp * 1000 < now) {
    throw new ForbiddenError(`${what} has expired`, 'ExpiredUrl')
  }
}
