import {
  createHash,
  createHmac,
  createSecretKey,
  type KeyObject,
} from 'node:crypto'

/** A bucket and the credentials to reach it. */
export type S3Target = {
  /** Scheme and host (and port), no path: https://fly.storage.tigris.dev */
  endpoint: string
  region: string
  bucket: string
  /** true: https://host/bucket/key (MinIO); false: https://bucket.host/key when the name allows. */
  pathStyle: boolean
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

const SERVICE = 's3'
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/
const UNRESERVED_PATH = /^[A-Za-z0-9\-._~/]*$/
const HOST_LABEL = /^[a-z0-9][a-z0-9-]*$/
const IP_LIKE = /^(\d+\.){3}\d+$/

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ */
export const uriEncode = (s: string): string =>
  UNRESERVED.test(s)
    ? s
    : encodeURIComponent(s).replace(
        /[!'()*]/g,
        (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
      )

/** An object key as a URL path: each segment encoded, the slashes kept. */
export const encodeKey = (key: string): string =>
  UNRESERVED_PATH.test(key) ? key : key.split('/').map(uriEncode).join('/')

/** 20260304T050607Z */
export const amzDate = (ms: number): string =>
  new Date(Math.floor(ms / 1000) * 1000)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '')

/**
 * Whether a bucket name can be a host name label, decided as the AWS SDK decides it: when it
 * cannot, the SDK (and so this signer) uses path style. Dots only over plain http, since a TLS
 * wildcard certificate covers one label.
 */
export const virtualHostable = (
  bucket: string,
  allowDots: boolean,
): boolean => {
  if (bucket.length < 3 || bucket.length > 63 || IP_LIKE.test(bucket)) {
    return false
  }
  const labels = allowDots ? bucket.split('.') : [bucket]
  return labels.every((l) => HOST_LABEL.test(l) && !l.endsWith('-'))
}

const sha256Hex = (s: string): string =>
  createHash('sha256').update(s).digest('hex')

const hmac = (key: Buffer | string, data: string): Buffer =>
  createHmac('sha256', key).update(data).digest()

/**
 * AWS Signature V4 for S3: presigned URLs and signed requests, without the SDK. The signing key
 * depends only on the secret, the day, the region and the service, so it is derived once a day
 * and kept as a KeyObject; a URL then costs one SHA-256 and one HMAC. The URLs are byte-equal to
 * the SDK's `getSignedUrl` with checksums off (`WHEN_REQUIRED`): this signer never adds the
 * checksum parameters that break presigned uploads on R2 and others.
 */
export class SigV4 {
  readonly target: S3Target
  /** Scheme and host that URLs point at (with the bucket in virtual-host style). */
  readonly origin: string
  /** The Host header, as signed. */
  readonly host: string
  /** `/bucket` in path style, '' in virtual-host style. */
  readonly basePath: string
  private readonly credentialPrefix: string
  private readonly credentialSuffix: string
  private readonly tokenParam: string
  private keyDate = ''
  private key: KeyObject | undefined
  private lastSecond = -1
  private lastAmzDate = ''

  constructor(target: S3Target) {
    this.target = target
    const url = new URL(target.endpoint)
    if (
      target.pathStyle ||
      !virtualHostable(target.bucket, url.protocol === 'http:')
    ) {
      this.host = url.host
      this.basePath = `/${uriEncode(target.bucket)}`
    } else {
      this.host = `${target.bucket}.${url.host}`
      this.basePath = ''
    }
    this.origin = `${url.protocol}//${this.host}`
    this.credentialPrefix = `${uriEncode(target.accessKeyId)}%2F`
    this.credentialSuffix = `%2F${uriEncode(target.region)}%2F${SERVICE}%2Faws4_request`
    this.tokenParam = target.sessionToken
      ? `&X-Amz-Security-Token=${uriEncode(target.sessionToken)}`
      : ''
  }

  /** The signing key of a day (yyyymmdd), derived once per day. */
  signingKey(date: string): KeyObject {
    if (date !== this.keyDate || !this.key) {
      const kDate = hmac(`AWS4${this.target.secretAccessKey}`, date)
      const kService = hmac(hmac(kDate, this.target.region), SERVICE)
      this.key = createSecretKey(hmac(kService, 'aws4_request'))
      this.keyDate = date
    }
    return this.key
  }

  /** The URL path of an object (or of the bucket), which is also its canonical URI. */
  pathFor(key?: string): string {
    if (key === undefined) return this.basePath || '/'
    return `${this.basePath}/${encodeKey(key)}`
  }

  private amzDateOf(now: number): string {
    const second = Math.floor(now / 1000)
    if (second !== this.lastSecond) {
      this.lastSecond = second
      this.lastAmzDate = amzDate(now)
    }
    return this.lastAmzDate
  }

  /**
   * A presigned URL for `method` on `key`, valid `expiresIn` seconds from `now`. `query` holds
   * the operation's own parameters (partNumber, uploadId, x-id), sorted in as the SDK does.
   */
  presign(
    method: string,
    key: string,
    expiresIn: number,
    query?: Record<string, string>,
    now = Date.now(),
  ): string {
    const datetime = this.amzDateOf(now)
    const date = datetime.slice(0, 8)
    // The X-Amz-* names sort before every lowercase one, and are written here in order.
    let params =
      'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD' +
      `&X-Amz-Credential=${this.credentialPrefix}${date}${this.credentialSuffix}` +
      `&X-Amz-Date=${datetime}&X-Amz-Expires=${expiresIn}${this.tokenParam}`
    let tail = ''
    if (query) {
      for (const name of Object.keys(query).sort()) {
        // X-Amz-SignedHeaders sits between the X-Amz-* block and the rest; a parameter that
        // sorted before it would have to go inside the block.
        if (name <= 'X-Amz-SignedHeaders') {
          throw new Error(`query parameter ${name} sorts into the X-Amz block`)
        }
        tail += `&${uriEncode(name)}=${uriEncode(query[name])}`
      }
    }
    const path = this.pathFor(key)
    const canonical =
      `${method}\n${path}\n${params}&X-Amz-SignedHeaders=host${tail}\n` +
      `host:${this.host}\n\nhost\nUNSIGNED-PAYLOAD`
    const signature = createHmac('sha256', this.signingKey(date))
      .update(
        `AWS4-HMAC-SHA256\n${datetime}\n${date}/${this.target.region}/${SERVICE}/aws4_request\n${sha256Hex(canonical)}`,
      )
      .digest('hex')
    params += `&X-Amz-Signature=${signature}&X-Amz-SignedHeaders=host${tail}`
    return `${this.origin}${path}?${params}`
  }

  /**
   * Headers for a request signed in its Authorization header: host, x-amz-content-sha256,
   * x-amz-date, the session token and every header in `amzHeaders` are signed. `payloadHash` is
   * the body's sha256 hex, or UNSIGNED-PAYLOAD for a streamed body. `path` is as `pathFor` gives.
   */
  signHeaders(
    method: string,
    path: string,
    query: Record<string, string>,
    amzHeaders: Record<string, string> = {},
    payloadHash = 'UNSIGNED-PAYLOAD',
    now = Date.now(),
  ): Record<string, string> {
    const datetime = amzDate(now)
    const date = datetime.slice(0, 8)
    const headers: Record<string, string> = {
      ...amzHeaders,
      'x-amz-content-sha256': payloadHash,
      'x-amz-date': datetime,
    }
    if (this.target.sessionToken) {
      headers['x-amz-security-token'] = this.target.sessionToken
    }
    const values = new Map<string, string>([['host', this.host]])
    for (const [name, value] of Object.entries(headers)) {
      values.set(name.toLowerCase(), value.trim().replace(/\s+/g, ' '))
    }
    const names = [...values.keys()].sort()
    const signedHeaders = names.join(';')
    const canonicalHeaders = names
      .map((n) => `${n}:${values.get(n)}\n`)
      .join('')
    const canonicalQuery = Object.keys(query)
      .map((k) => [uriEncode(k), uriEncode(query[k])])
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&')
    const canonical = `${method}\n${path}\n${canonicalQuery}\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`
    const scope = `${date}/${this.target.region}/${SERVICE}/aws4_request`
    const signature = createHmac('sha256', this.signingKey(date))
      .update(
        `AWS4-HMAC-SHA256\n${datetime}\n${scope}\n${sha256Hex(canonical)}`,
      )
      .digest('hex')
    headers.authorization =
      `AWS4-HMAC-SHA256 Credential=${this.target.accessKeyId}/${scope}, ` +
      `SignedHeaders=${signedHeaders}, Signature=${signature}`
    return headers
  }
}

/** The query string (with its `?`) of a request whose query `signHeaders` signed. */
export const queryString = (query: Record<string, string>): string => {
  const names = Object.keys(query).sort()
  if (names.length === 0) return ''
  return `?${names
    .map((k) =>
      query[k] === '' ? uriEncode(k) : `${uriEncode(k)}=${uriEncode(query[k])}`,
    )
    .join('&')}`
}

/**
 * A URL signed against the S3 endpoint, moved to a CDN in front of it: the signature covers
 * the S3 host, so the CDN must send that host (and the query unchanged) to its origin.
 */
export const toCdn = (
  signedUrl: string,
  s3Origin: string,
  cdnOrigin: string,
): string =>
  signedUrl.startsWith(s3Origin)
    ? cdnOrigin + signedUrl.slice(s3Origin.length)
    : signedUrl
