import { createHash, createHmac } from 'node:crypto'
import {
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { SignatureV4 } from '@smithy/signature-v4'
import { describe, expect, it } from 'vitest'
import { SigV4, toCdn, type S3Target } from '../src/blobs/s3/sigv4.ts'

// Our signer against the AWS SDK's, for the same inputs: presigned URLs byte for byte, and the
// Authorization header of every request shape the hold sends.

type Place = Omit<S3Target, 'accessKeyId' | 'secretAccessKey'>

const PLACES: Place[] = [
  {
    endpoint: 'https://fly.storage.tigris.dev',
    region: 'auto',
    bucket: 'my-bucket',
    pathStyle: false,
  },
  {
    endpoint: 'https://fly.storage.tigris.dev',
    region: 'auto',
    bucket: 'my-bucket',
    pathStyle: true,
  },
  {
    endpoint: 'http://127.0.0.1:4568',
    region: 'us-east-1',
    bucket: 'test',
    pathStyle: true,
  },
  {
    endpoint: 'https://acct.r2.cloudflarestorage.com',
    region: 'auto',
    bucket: 'b.with.dots',
    pathStyle: true,
  },
  {
    endpoint: 'https://s3.eu-west-1.amazonaws.com',
    region: 'eu-west-1',
    bucket: 'bkt',
    pathStyle: false,
  },
  // Names that cannot be a host label: the SDK falls back to path style, and so do we.
  ...['b', 'with.dots', 'UpperCase', 'ends-', '192.168.1.1'].map((bucket) => ({
    endpoint: 'https://fly.storage.tigris.dev',
    region: 'auto',
    bucket,
    pathStyle: false,
  })),
  // Over plain http, dots stay virtual-host.
  {
    endpoint: 'http://localhost:9000',
    region: 'us-east-1',
    bucket: 'with.dots',
    pathStyle: false,
  },
]

const CREDENTIALS = [
  {
    accessKeyId: 'AKIAEXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  },
  {
    accessKeyId: 'tid_abc',
    secretAccessKey: 'tsec_x+y/z=',
    sessionToken: 'IQoJ/token+with=specials&more',
  },
]

// Keys a prefix could produce, with every character class SigV4 treats specially.
const KEYS = [
  'blobs/sha256/ab/ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12/data',
  'prefix with space/blobs/x',
  "a b/c+d~e!(x)*'ü/🙂?&=#%",
  'trailing/slash/',
  '//double//slashes',
  'plus+and=equals&amp;semi;colon:at@dollar$comma,',
  'tab\tnewline\nkey',
  '日本語/キー',
]

const DATES = [
  new Date('2026-03-04T05:06:07.890Z'),
  new Date('2026-12-31T23:59:59.999Z'),
  new Date('2024-02-29T00:00:00.000Z'),
]
const EXPIRES = [1, 900, 3600, 604800]

const UPLOAD_ID = 'VXBsb2FkIElE/+=x'
type Op = {
  method: string
  command: (bucket: string, key: string) => unknown
  query: Record<string, string> | undefined
}

const OPS: Op[] = [
  {
    method: 'GET',
    command: (Bucket: string, Key: string) =>
      new GetObjectCommand({ Bucket, Key }),
    query: { 'x-id': 'GetObject' },
  },
  {
    method: 'HEAD',
    command: (Bucket: string, Key: string) =>
      new HeadObjectCommand({ Bucket, Key }),
    query: undefined,
  },
  {
    method: 'PUT',
    command: (Bucket: string, Key: string) =>
      new PutObjectCommand({ Bucket, Key }),
    query: { 'x-id': 'PutObject' },
  },
  {
    method: 'PUT',
    command: (Bucket: string, Key: string) =>
      new UploadPartCommand({
        Bucket,
        Key,
        UploadId: UPLOAD_ID,
        PartNumber: 10000,
      }),
    query: { partNumber: '10000', uploadId: UPLOAD_ID, 'x-id': 'UploadPart' },
  },
]

const sdkClient = (place: Place, credentials: (typeof CREDENTIALS)[number]) =>
  new S3Client({
    region: place.region,
    endpoint: place.endpoint,
    forcePathStyle: place.pathStyle,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })

describe('presigned URLs', () => {
  it("are byte-equal to the SDK's getSignedUrl (checksums WHEN_REQUIRED)", async () => {
    let compared = 0
    for (const [p, place] of PLACES.entries()) {
      for (const [c, credentials] of CREDENTIALS.entries()) {
        const sdk = sdkClient(place, credentials)
        const ours = new SigV4({ ...place, ...credentials })
        for (const [o, op] of OPS.entries()) {
          // Half the keys for each, rotating, and every date and expiry: over the whole table
          // each key meets every operation, bucket and credential set.
          for (let j = 0; j < KEYS.length / 2; j++) {
            const i = p + c + o + j
            const key = KEYS[i % KEYS.length]
            const signingDate = DATES[i % DATES.length]
            const expiresIn = EXPIRES[(i + j) % EXPIRES.length]
            const theirs = await getSignedUrl(
              sdk,
              op.command(place.bucket, key) as never,
              { expiresIn, signingDate },
            )
            const mine = ours.presign(
              op.method,
              key,
              expiresIn,
              op.query,
              signingDate.getTime(),
            )
            expect(mine, `${op.method} ${JSON.stringify(place)} ${key}`).toBe(
              theirs,
            )
            compared++
          }
        }
      }
    }
    expect(compared).toBe(
      (PLACES.length * CREDENTIALS.length * OPS.length * KEYS.length) / 2,
    )
  })

  it('derive the signing key once a day and reuse it', () => {
    const s = new SigV4({ ...PLACES[0], ...CREDENTIALS[0] })
    const day = Date.parse('2026-03-04T00:00:00Z')
    s.presign('GET', 'k', 900, undefined, day + 1000)
    const key = s.signingKey('20260304')
    s.presign('GET', 'k', 900, undefined, day + 86_399_000)
    expect(s.signingKey('20260304')).toBe(key)
    s.presign('GET', 'k', 900, undefined, day + 86_400_000)
    expect(s.signingKey('20260305')).not.toBe(key)
  })

  it('move to a CDN only after signing, the signature unchanged', () => {
    const s = new SigV4({ ...PLACES[0], ...CREDENTIALS[0] })
    const url = s.presign('GET', 'blobs/x', 900)
    const cdn = toCdn(url, s.origin, 'https://cdn.example.com')
    expect(cdn.startsWith('https://cdn.example.com/blobs/x?')).toBe(true)
    expect(new URL(cdn).search).toBe(new URL(url).search)
    expect(s.origin).toBe('https://my-bucket.fly.storage.tigris.dev')
  })
})

/** node:crypto as the hash the smithy signer expects. */
class Sha256 {
  private readonly h: ReturnType<typeof createHash>
  constructor(secret?: Uint8Array | string) {
    this.h = (
      secret ? createHmac('sha256', secret) : createHash('sha256')
    ) as ReturnType<typeof createHash>
  }
  update(data: Uint8Array | string) {
    this.h.update(data)
  }
  async digest() {
    return new Uint8Array(this.h.digest())
  }
  reset() {}
}

const REQUESTS: Array<{
  method: string
  key?: string
  query: Record<string, string>
  amz?: Record<string, string>
  body?: string
}> = [
  { method: 'HEAD', query: {} },
  { method: 'GET', query: { 'list-type': '2', 'max-keys': '1' } },
  { method: 'HEAD', key: 'blobs/sha256/ab/abcd/data', query: {} },
  { method: 'GET', key: 'blobs/sha256/ab/abcd/data', query: {} },
  { method: 'POST', key: 'uploads/x y+z/data', query: { uploads: '' } },
  {
    method: 'PUT',
    key: 'uploads/u/data',
    query: { partNumber: '7', uploadId: 'a/b+c=d' },
  },
  {
    method: 'POST',
    key: 'uploads/u/data',
    query: { uploadId: 'a/b+c=d' },
    body: '<CompleteMultipartUpload/>',
  },
  { method: 'DELETE', key: 'uploads/u/data', query: { uploadId: 'abc' } },
  {
    method: 'GET',
    query: { uploads: '', prefix: 'pre fix/uploads/', 'key-marker': 'k!*' },
  },
  {
    method: 'GET',
    query: { 'list-type': '2', prefix: 'p/', 'continuation-token': 'a+b/c=' },
  },
  {
    method: 'PUT',
    key: 'blobs/sha256/ab/abcd/data',
    query: {},
    amz: { 'x-amz-copy-source': '/bkt/uploads/u/data' },
  },
  {
    method: 'PUT',
    key: 'blobs/sha256/ab/abcd/data',
    query: { partNumber: '2', uploadId: 'u' },
    amz: {
      'x-amz-copy-source': '/bkt/uploads/u/data',
      'x-amz-copy-source-range': 'bytes=0-99',
    },
  },
]

describe('signed requests', () => {
  it.each([
    [true, undefined],
    [false, undefined],
    [true, 'tok/en+='],
    [false, 'tok/en+='],
  ])(
    "carry the SDK signer's Authorization header (path style %s, session token %s)",
    async (pathStyle, sessionToken) => {
      const target: S3Target = {
        endpoint: 'https://fly.storage.tigris.dev',
        region: 'auto',
        bucket: 'bkt',
        pathStyle,
        accessKeyId: 'AKID',
        secretAccessKey: 'SECRET/+=',
        sessionToken,
      }
      const ours = new SigV4(target)
      const sdk = new SignatureV4({
        service: 's3',
        region: target.region,
        credentials: { ...target },
        sha256: Sha256 as never,
        uriEscapePath: false,
        applyChecksum: false,
      })
      const now = Date.parse('2026-03-04T05:06:07Z')
      for (const r of REQUESTS) {
        const path = ours.pathFor(r.key)
        const payload =
          r.body === undefined
            ? 'UNSIGNED-PAYLOAD'
            : createHash('sha256').update(r.body).digest('hex')
        const mine = ours.signHeaders(
          r.method,
          path,
          r.query,
          r.amz,
          payload,
          now,
        )
        const signed = (await sdk.sign(
          {
            method: r.method,
            protocol: 'https:',
            hostname: ours.host,
            path,
            query: r.query,
            headers: {
              host: ours.host,
              'x-amz-content-sha256': payload,
              ...r.amz,
            },
          } as never,
          { signingDate: new Date(now) },
        )) as unknown as { headers: Record<string, string> }
        expect(mine.authorization, `${r.method} ${path}`).toBe(
          signed.headers.authorization,
        )
        expect(mine['x-amz-date']).toBe(signed.headers['x-amz-date'])
      }
    },
  )
})
