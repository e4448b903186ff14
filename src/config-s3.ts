import type { ServerEnvironment } from './config.ts'
import {
  ConfigError,
  nonEmpty,
  oneOf,
  parseBoolVar,
  parseOrigin,
} from './config-vars.ts'

/** An S3-compatible bucket (credentials are secrets: `S3Credentials`). */
export type S3Config = {
  /** Origin of the S3 API, e.g. https://fly.storage.tigris.dev */
  endpoint: string
  region: string
  bucket: string
  /** https://host/bucket/key rather than https://bucket.host/key (MinIO) */
  pathStyle: boolean
  /** Prepended to every object key: empty or ending in `/` */
  prefix: string
  /** Origin download URLs are moved to after signing */
  cdnUrl: string | undefined
  /** The variables that named the bucket and the endpoint, for operator messages. */
  bucketVar: 'BUCKET_NAME' | 'S3_BUCKET'
  endpointVar: 'AWS_ENDPOINT_URL_S3' | 'S3_ENDPOINT' | 'AWS_REGION'
}

export type S3Credentials = {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string | undefined
}

/** Endpoints whose region is `auto` when AWS_REGION is unset: Tigris and Cloudflare R2. */
const AUTO_REGION_HOSTS = [
  /(^|\.)tigris\.dev$/,
  /(^|\.)storage\.dev$/,
  /\.r2\.cloudflarestorage\.com$/,
]

export const envToS3Cfg = (env: ServerEnvironment): S3Config => {
  const [bucketVar, bucket] = oneOf(
    ['BUCKET_NAME', env.bucketName],
    ['S3_BUCKET', env.s3Bucket],
  )
  if (bucketVar === undefined || bucket === undefined) {
    throw new ConfigError(
      'HOLD_STORAGE=s3 needs a bucket: set BUCKET_NAME (or S3_BUCKET)',
    )
  }
  if (!/^[A-Za-z0-9._-]{1,255}$/.test(bucket)) {
    throw new ConfigError(
      `${bucketVar} must be a bucket name (letters, digits, dots, dashes and underscores), got "${bucket}"`,
    )
  }
  const region = nonEmpty(env.awsRegion)
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region)) {
    throw new ConfigError(
      `AWS_REGION must be a region name such as us-east-1 or auto, got "${region}"`,
    )
  }
  let [endpointVar, endpointRaw] = oneOf(
    ['AWS_ENDPOINT_URL_S3', env.awsEndpointUrlS3],
    ['S3_ENDPOINT', env.s3Endpoint],
  ) as [S3Config['endpointVar'] | undefined, string | undefined]
  if (endpointRaw === undefined) {
    if (region === undefined || region === 'auto') {
      throw new ConfigError(
        'HOLD_STORAGE=s3 needs an endpoint: set AWS_ENDPOINT_URL_S3 (or S3_ENDPOINT), or AWS_REGION for AWS S3 itself',
      )
    }
    endpointVar = 'AWS_REGION'
    endpointRaw = `https://s3.${region}.amazonaws.com`
  }
  const endpoint = parseOrigin(endpointVar!, endpointRaw)
  const host = new URL(endpoint).hostname
  const cdn = nonEmpty(env.cdnUrl)
  return {
    endpoint,
    region:
      region ??
      (AUTO_REGION_HOSTS.some((re) => re.test(host)) ? 'auto' : 'us-east-1'),
    bucket,
    pathStyle:
      parseBoolVar('HOLD_S3_PATH_STYLE', env.s3PathStyle) ??
      parseBoolVar('S3_FORCE_PATH_STYLE', env.s3ForcePathStyle) ??
      false,
    prefix: parseS3Prefix(env.s3Prefix),
    cdnUrl: cdn === undefined ? undefined : parseOrigin('HOLD_CDN_URL', cdn),
    bucketVar,
    endpointVar: endpointVar!,
  }
}

export const envToS3Credentials = (env: ServerEnvironment): S3Credentials => {
  const accessKeyId = nonEmpty(env.awsAccessKeyId)
  const secretAccessKey = nonEmpty(env.awsSecretAccessKey)
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const missing =
      accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'
    throw new ConfigError(
      `HOLD_STORAGE=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; ${missing} is not set`,
    )
  }
  return {
    accessKeyId,
    secretAccessKey,
    sessionToken: nonEmpty(env.awsSessionToken),
  }
}

/** HOLD_S3_PREFIX as keys use it: no leading `/`, one trailing `/` (or empty). */
const parseS3Prefix = (raw: string | undefined): string => {
  const value = nonEmpty(raw)?.replace(/^\/+|\/+$/g, '')
  if (!value) return ''
  const segments = value.split('/')
  if (
    value.length > 512 ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f\\]/.test(value) ||
    segments.some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new ConfigError(
      `HOLD_S3_PREFIX must be a key prefix such as "atcr" or "holds/one" (no empty, "." or ".." parts, no control characters), got "${raw}"`,
    )
  }
  return `${value}/`
}
