import { Readable } from 'node:stream'
import { BlobTooLargeError, DigestMismatchError } from '../blobs/errors.ts'
import { BLOB_URL_PATH } from '../blobs/signed-url.ts'
import { UploadUrlUsedError } from '../blobs/upload-grants.ts'
import {
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  XRPCError,
} from '../errors.ts'
import type { AppContext } from '../context.ts'
import { blobResponse, parseRange } from './blob-response.ts'
import { countPush } from '../stats/counting.ts'
import type { Ctx, Register } from './util.ts'

const HEX_RE = /^[0-9a-f]{64}$/

const hexParam = (c: Ctx): string => {
  const hex = c.req.param('hex') ?? ''
  if (!HEX_RE.test(hex)) {
    throw new InvalidRequestError(
      'blob URL must end in 64 lowercase hex characters',
    )
  }
  return hex
}

/** The URLs getBlob signs: downloads (GET, HEAD) and uploads (PUT). Fetching never counts. */
export const register: Register = (app, ctx) => {
  const path = `${BLOB_URL_PATH}:hex`
  const countBlobs = ctx.cfg.countSource === 'blob'

  app.on(['GET', 'HEAD'], path, async (c) => {
    const hex = hexParam(c)
    const grant = ctx.urlSigner.verify(hex, new URL(c.req.url).searchParams)
    const head = c.req.method === 'HEAD'
    if (grant.method === 'PUT' || (grant.method === 'HEAD' && !head)) {
      throw new ForbiddenError(`this URL was signed for ${grant.method}`)
    }
    const size = await ctx.blobs.size(hex)
    if (size === null) {
      throw new NotFoundError(`Blob not found: sha256:${hex}`, 'BlobNotFound')
    }
    const range = parseRange(c.req.header('range'), size)
    return blobResponse(ctx.blobs, hex, size, range, head)
  })

  app.put(path, async (c) => {
    const hex = hexParam(c)
    const grant = ctx.urlSigner.verify(hex, new URL(c.req.url).searchParams)
    if (grant.method !== 'PUT') {
      throw new ForbiddenError(`this URL was signed for ${grant.method}`)
    }
    // The URL carries who it was issued to: a member removed from the crew since cannot use it.
    const revoked = grant.caller
      ? ctx.access.missing(grant.caller, 'blob:write')
      : 'the URL names no caller'
    if (revoked) {
      throw new ForbiddenError(`access denied for blob:write: ${revoked}`)
    }
    const declared = c.req.header('content-length')
    if (declared !== undefined && Number(declared) > ctx.cfg.maxBlobBytes) {
      throw new PayloadTooLargeError(
        `blob is larger than HOLD_MAX_BLOB_BYTES (${ctx.cfg.maxBlobBytes} bytes)`,
      )
    }
    const reserved =
      declared !== undefined && grant.caller
        ? await quotaCheck(ctx, grant.caller, hex, Number(declared))
        : false
    const release = () => {
      if (reserved) ctx.cluster!.release(grant.caller!, hex)
    }
    try {
      ctx.uploadGrants.claim(grant.sig)
    } catch (err) {
      release()
      if (err instanceof UploadUrlUsedError) {
        throw new XRPCError(409, err.message, 'UrlAlreadyUsed')
      }
      throw err
    }
    const body = c.env?.incoming ?? bodyStream(c.req.raw)
    let size: number
    try {
      // S3 takes a body of known length straight to the blob's key; without one it spools.
      const length =
        declared !== undefined && /^\d+$/.test(declared)
          ? Number(declared)
          : undefined
      size = await ctx.blobs.put(hex, body, ctx.cfg.maxBlobBytes, length)
      ctx.uploadGrants.use(grant.sig, grant.exp)
    } catch (err) {
      // A failed upload leaves the URL unused: the client may retry with it.
      ctx.uploadGrants.release(grant.sig)
      release()
      if (err instanceof DigestMismatchError) {
        throw new InvalidRequestError(err.message, 'DigestMismatch')
      }
      if (err instanceof BlobTooLargeError) {
        throw new PayloadTooLargeError(
          `blob is larger than HOLD_MAX_BLOB_BYTES (${ctx.cfg.maxBlobBytes} bytes)`,
        )
      }
      // The client went away (or stalled until the connection timed out) before the body
      // ended: its doing, not the hold's, and nobody is left to read the answer.
      if (c.env?.incoming && !c.env.incoming.complete) {
        throw new XRPCError(
          499,
          'the upload ended before its body did; nothing was stored',
          'UploadAborted',
        )
      }
      throw err
    }
    if (countBlobs && grant.repo) {
      countPush(ctx, c, grant.caller, grant.did, grant.repo)
    }
    return c.json({ digest: `sha256:${hex}`, size }, 201)
  })
}

/**
 * An upload that cannot fit the caller's quota is refused before a byte is read: its declared
 * size on top of what the caller's layer records already name (a blob they name costs nothing
 * again). notifyManifest checks again with the sizes stored, for uploads without a length.
 * In a cluster (writer or frontend) the check is a reservation in Redis, so that uploads
 * through several machines cannot pass the limit together; resolves true when it reserved.
 */
export const quotaCheck = async (
  ctx: AppContext,
  caller: string,
  hex: string,
  size: number,
): Promise<boolean> => {
  const { limit } = ctx.quotas.limitFor(caller)
  if (limit === undefined) return false
  if (ctx.cluster && Number.isSafeInteger(size)) {
    const r = await ctx.cluster.reserve(caller, hex, size, limit)
    if (!r.ok) {
      throw new XRPCError(
        403,
        `quota exceeded: ${r.usage} bytes stored and ${r.pending} in uploads not yet in a manifest; this ${size}-byte upload would pass the limit of ${limit} bytes`,
        'QuotaExceeded',
      )
    }
    return true
  }
  const added = ctx.layerIndex.addedBytes(
    caller,
    new Map([[`sha256:${hex}`, size]]),
  )
  const usage = ctx.layerIndex.usage(caller).totalSize
  if (added > 0 && usage + added > limit) {
    throw new XRPCError(
      403,
      `quota exceeded: ${usage} bytes stored and this ${size}-byte upload would pass the limit of ${limit} bytes`,
      'QuotaExceeded',
    )
  }
  return false
}

/** The request body as a Node stream (the adapter's own when there is one). */
export const bodyStream = (req: Request): Readable =>
  req.body
    ? Readable.fromWeb(req.body as import('node:stream/web').ReadableStream)
    : Readable.from([])
