import { AsyncLocalStorage } from 'node:async_hooks'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { S3Target } from '../src/blobs/s3/sigv4.ts'

/**
 * @20minutes/s3rver 5.0.0 as a test S3 server that really verifies SigV4, patched at run time
 * (its lib/ is CommonJS and calls its signature module through the module object, so swapping
 * exports before the controllers load is enough; nothing in node_modules is edited):
 *
 * 1. Canonical URI: it rebuilds the path from route params, so `/bucket/` (what the SDK sends for
 *    bucket-level calls) is checked as `/bucket` → SignatureDoesNotMatch. We use the raw path.
 * 2. Requests without any signature are served. We refuse them (403 AccessDenied), so a test can
 *    prove the bucket is not public.
 * 3. S3 behaviour the hold relies on and s3rver lacks: AbortMultipartUpload, ListMultipartUploads,
 *    NoSuchUpload for parts of unknown uploads, CompleteMultipartUpload checking part order,
 *    presence and ETags (InvalidPartOrder, InvalidPart) and optionally the 5 MiB minimum
 *    (EntityTooSmall), and atomic object writes (a cut-off PUT leaves nothing).
 */

const require = createRequire(import.meta.url)
const PKG = '@20minutes/s3rver'
const PINNED = '5.0.0'
const lib = (p: string) => `${PKG}/lib/${p}`

type Ctx = {
  method: string
  path: string
  originalUrl: string
  query: Record<string, string | string[]>
  headers: Record<string, string | string[] | undefined>
  header: Record<string, string>
  req: import('node:http').IncomingMessage
  request: { body: unknown }
  params: Record<string, string>
  state: Record<string, unknown>
  status: number
  body: unknown
  type: string
  href: string
  app: PatchedS3rver
  store: Store
  set(name: string, value: string): void
}
type Next = () => Promise<unknown>
type Store = {
  getResourcePath(
    bucket: string,
    key: string | undefined,
    resource: string,
  ): string
  putObjectMultipart(
    bucket: string,
    uploadId: string,
    parts: Array<{ number: number; etag: string }>,
  ): Promise<{ md5: string; size: number }>
  putContent(path: string, content: unknown): Promise<[number, string]>
}
type PatchedS3rver = {
  requireSignature: boolean
  minPartSize: number
  middleware: unknown[]
  run(): Promise<AddressInfo>
  close(): Promise<void>
}

const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )

const canonicalUri = (rawPath: string) =>
  rawPath
    .split('/')
    .map((seg) => {
      try {
        return rfc3986(decodeURIComponent(seg))
      } catch {
        return seg
      }
    })
    .join('/')

type S3ErrorClass = new (
  code: string,
  message: string,
  detail?: object,
) => Error
// Kept on globalThis: a runner that re-evaluates this module per test file (vitest without
// isolation) still shares Node's CommonJS cache, where the patch already lives.
type PatchState = {
  S3rver: new (opts: object) => PatchedS3rver
  S3Error: S3ErrorClass
  rawPath: AsyncLocalStorage<string>
}
const STATE = Symbol.for('atcr-hold.test.s3rver-patch')
const g = globalThis as { [STATE]?: PatchState }
let S3Error: S3ErrorClass
let rawPathStore: AsyncLocalStorage<string>

const uploadDir = (ctx: Ctx, bucket: string, uploadId: string) =>
  join(ctx.store.getResourcePath(bucket, undefined, 'uploads'), uploadId)

const UPLOAD_ID = /^[0-9a-f]{32}$/

const requireUpload = async (ctx: Ctx, bucket: string, uploadId: string) => {
  if (!UPLOAD_ID.test(uploadId)) {
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist.', {
      UploadId: uploadId,
    })
  }
  const dir = uploadDir(ctx, bucket, uploadId)
  try {
    await stat(join(dir, 'key'))
  } catch {
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist.', {
      UploadId: uploadId,
    })
  }
  return dir
}

const splitPath = (ctx: Ctx) => {
  const [, bucket, ...rest] = ctx.path.split('/')
  return {
    bucket: decodeURIComponent(bucket ?? ''),
    key: rest.map(decodeURIComponent).join('/'),
  }
}

const q = (ctx: Ctx, name: string) => {
  const v = ctx.query[name]
  return Array.isArray(v) ? v[0] : v
}

/** Operations and checks that run after the signature was verified. */
const afterAuth = async (ctx: Ctx, next: Next) => {
  const { bucket, key } = splitPath(ctx)
  const uploadId = q(ctx, 'uploadId')
  if (ctx.method === 'DELETE' && key && uploadId !== undefined) {
    const dir = await requireUpload(ctx, bucket, uploadId)
    await rm(dir, { recursive: true, force: true })
    ctx.status = 204
    ctx.body = ''
    return
  }
  if (ctx.method === 'GET' && !key && 'uploads' in ctx.query) {
    const root = ctx.store.getResourcePath(bucket, undefined, 'uploads')
    const ids = await readdir(root).catch(() => [] as string[])
    const uploads = []
    for (const id of ids.sort()) {
      const k = await readFile(join(root, id, 'key'), 'utf8').catch(() => null)
      if (k === null) continue
      const { birthtime } = await stat(join(root, id, 'key'))
      const prefix = q(ctx, 'prefix') ?? ''
      if (k.startsWith(prefix)) {
        uploads.push({
          Key: k,
          UploadId: id,
          Initiated: birthtime.toISOString(),
        })
      }
    }
    ctx.body = {
      ListMultipartUploadsResult: {
        Bucket: bucket,
        IsTruncated: false,
        Upload: uploads,
      },
    }
    return
  }
  if (ctx.method === 'PUT' && key && uploadId !== undefined) {
    const n = Number(q(ctx, 'partNumber'))
    if (!Number.isInteger(n) || n < 1 || n > 10000) {
      throw new S3Error(
        'InvalidArgument',
        'Part number must be an integer between 1 and 10000, inclusive',
        {
          ArgumentName: 'partNumber',
          ArgumentValue: String(q(ctx, 'partNumber')),
        },
      )
    }
    await requireUpload(ctx, bucket, uploadId)
  }
  if (ctx.method === 'POST' && key && uploadId !== undefined) {
    await requireUpload(ctx, bucket, uploadId)
  }
  return next()
}

const patch = (): PatchState => {
  const done = g[STATE]
  if (done) {
    S3Error = done.S3Error
    rawPathStore = done.rawPath
    return done
  }
  const version = require(`${PKG}/package.json`).version
  if (version !== PINNED) {
    throw new Error(
      `${PKG} is ${version}; this helper patches ${PINNED} only (pin it exactly)`,
    )
  }
  if (require.resolve(lib('controllers/object.js')) in require.cache) {
    throw new Error(
      `${PKG} was loaded before its patch: load it only through this helper`,
    )
  }
  S3Error = require(lib('models/error.js'))
  rawPathStore = new AsyncLocalStorage<string>()

  const v4 = require(lib('signature/v4.js'))
  const getStringToSign = v4.getStringToSign
  v4.getStringToSign = (
    canonicalRequest: { uri: string },
    request: unknown,
  ) => {
    const raw = rawPathStore.getStore()
    return getStringToSign(
      raw === undefined
        ? canonicalRequest
        : { ...canonicalRequest, uri: canonicalUri(raw) },
      request,
    )
  }

  // The route table builds its authentication middleware when it loads: wrap the factory first.
  const authPath = require.resolve(lib('middleware/authentication.js'))
  const authFactory = require(authPath)
  require.cache[authPath]!.exports = () => {
    const inner = authFactory()
    return async function authentication(ctx: Ctx, next: Next) {
      if (
        ctx.app.requireSignature &&
        ctx.method !== 'OPTIONS' &&
        !('authorization' in ctx.headers) &&
        !('X-Amz-Algorithm' in ctx.query) &&
        !('Signature' in ctx.query)
      ) {
        throw new S3Error('AccessDenied', 'Access Denied')
      }
      const rawPath = ctx.originalUrl.split('?')[0]
      return rawPathStore.run(rawPath, () =>
        inner(ctx, () => afterAuth(ctx, next)),
      )
    }
  }

  const objectCtrl = require(lib('controllers/object.js'))
  const { xmlBodyParser } = require(lib('utils.js'))
  objectCtrl.completeMultipartUpload = async (ctx: Ctx) => {
    await xmlBodyParser(ctx)
    const body = ctx.request.body as {
      CompleteMultipartUpload?: { Part?: unknown }
    }
    const listed = body.CompleteMultipartUpload?.Part
    if (!listed)
      throw new S3Error(
        'MalformedXML',
        'The XML you provided was not well-formed.',
      )
    const parts = ([] as Array<{ PartNumber: unknown; ETag: unknown }>)
      .concat(listed as never)
      .map((p) => ({
        number: Number(p.PartNumber),
        etag: String(p.ETag).replace(/"/g, ''),
      }))
    const { bucket, key } = splitPath(ctx)
    const uploadId = q(ctx, 'uploadId')!
    const dir = await requireUpload(ctx, bucket, uploadId)
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]
      if (i > 0 && p.number <= parts[i - 1].number) {
        throw new S3Error(
          'InvalidPartOrder',
          'The list of parts was not in ascending order.',
        )
      }
      const md5 = await readFile(join(dir, `${p.number}.md5`), 'utf8').catch(
        () => null,
      )
      if (md5 === null || md5 !== p.etag) {
        throw new S3Error(
          'InvalidPart',
          'One or more of the specified parts could not be found.',
          {
            UploadId: uploadId,
            PartNumber: p.number,
            ETag: p.etag,
          },
        )
      }
      if (i < parts.length - 1 && ctx.app.minPartSize > 0) {
        const { size } = await stat(join(dir, String(p.number)))
        if (size < ctx.app.minPartSize) {
          throw new S3Error(
            'EntityTooSmall',
            'Your proposed upload is smaller than the minimum allowed object size.',
            {
              PartNumber: p.number,
              ProposedSize: size,
              MinSizeAllowed: ctx.app.minPartSize,
            },
          )
        }
      }
    }
    const { md5 } = await ctx.store.putObjectMultipart(bucket, uploadId, parts)
    ctx.body = {
      CompleteMultipartUploadResult: {
        Location: ctx.href.split('?')[0],
        Bucket: bucket,
        Key: key,
        ETag: JSON.stringify(`${md5}-${parts.length}`),
      },
    }
  }

  // Objects and parts are written to a temp name and renamed on success, as S3 is atomic.
  const Store = require(lib('stores/filesystem.js'))
  const putContent = Store.prototype.putContent
  Store.prototype.putContent = async function (
    this: Store,
    path: string,
    content: unknown,
  ) {
    const tmp = `${path}.partial-${randomBytes(6).toString('hex')}`
    try {
      const result = await putContent.call(this, tmp, content)
      await rename(tmp, path)
      return result
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
  }

  g[STATE] = { S3rver: require(PKG), S3Error, rawPath: rawPathStore }
  return g[STATE]
}

/** A running test S3 server with one bucket and a key pair of its own. */
export type TestS3 = {
  endpoint: string
  region: string
  bucket: string
  accessKeyId: string
  secretAccessKey: string
  /** The bucket as the hold's S3 store reaches it (path style: s3rver has no bucket hosts). */
  target: S3Target
  /** Stops the server (a second call does nothing). */
  close(): Promise<void>
}

/**
 * Starts the patched s3rver on a free loopback port. `minPartSize` makes completion refuse
 * smaller parts but the last, as S3 does at 5 MiB (0: any size, so tests can use small parts).
 */
export const startS3 = async (
  opts: { bucket?: string; minPartSize?: number } = {},
): Promise<TestS3> => {
  const bucket = opts.bucket ?? 'test-bucket'
  const { S3rver } = patch()
  const accessKeyId = `AK${randomBytes(8).toString('hex').toUpperCase()}`
  const secretAccessKey = randomBytes(24).toString('base64')
  const Account: {
    DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void }
  } = require(lib('models/account.js'))
  Account.DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey)
  const dir = await mkdtemp(join(tmpdir(), 's3rver-'))
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  })
  server.requireSignature = true
  server.minPartSize = opts.minPartSize ?? 0
  const { port } = await server.run()
  const endpoint = `http://127.0.0.1:${port}`
  let closed = false
  return {
    endpoint,
    region: 'us-east-1',
    bucket,
    accessKeyId,
    secretAccessKey,
    target: {
      endpoint,
      region: 'us-east-1',
      bucket,
      pathStyle: true,
      accessKeyId,
      secretAccessKey,
    },
    close: async () => {
      if (closed) return
      closed = true
      await server.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The environment that points a hold at this server, as an operator would set it. */
export const s3Env = (
  s3: TestS3,
  extra: Record<string, string> = {},
): Record<string, string> => ({
  HOLD_STORAGE: 's3',
  BUCKET_NAME: s3.bucket,
  AWS_ENDPOINT_URL_S3: s3.endpoint,
  AWS_REGION: s3.region,
  AWS_ACCESS_KEY_ID: s3.accessKeyId,
  AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
  HOLD_S3_PATH_STYLE: 'true',
  HOLD_S3_PREFIX: 'hold',
  ...extra,
})
