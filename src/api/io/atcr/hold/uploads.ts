import { PART_URL_PATH } from '../../../../blobs/signed-url.ts'
import { parseUploadDigest } from '../../../../blobs/uploads.ts'
import { BlobStoreError } from '../../../../blobs/errors.ts'
import { ForbiddenError } from '../../../../errors.ts'
import { ids, type AtcrNsid } from '../../../../lexicons.ts'
import { countPush } from '../../../../stats/counting.ts'
import { parseRepoParam } from '../../../../stats/rkey.ts'
import { bodyStream } from '../../../blob-url.ts'
import type { Ctx, Register } from '../../../util.ts'
import { atcrProcedure, atcrRawProcedure } from '../../../xrpc.ts'

type Part = { partNumber: number; etag: string }

/** ATCR's upload procedures (all need blob:write), and the part URLs of disk uploads. */
export const register: Register = (app, ctx) => {
  // With HOLD_COUNT_SOURCE=manifest, pushes are counted by notifyManifest alone.
  const countBlobs = ctx.cfg.countSource === 'blob'
  const writer = (nsid: AtcrNsid) => async (c: Ctx) => {
    const caller = await ctx.access.authorize(c, 'blob:write', nsid)
    c.set('caller', caller)
    // blob:write is never granted without a service token.
    return caller.did!
  }

  atcrProcedure<string, { digest: string; did?: string; repo?: string }>(
    app,
    ctx.lexicons,
    ids.HoldInitiateUpload,
    {
      auth: writer(ids.HoldInitiateUpload),
      handler: async (c, { auth: caller, input }) => {
        const hex = parseUploadDigest(input.digest)
        const did = input.did ?? caller
        const repo = parseRepoParam(did, input.repo)
        const { uploadId } = await ctx.uploads.initiate({
          caller,
          hex,
          did,
          repo,
        })
        return c.json({ uploadId })
      },
    },
  )

  atcrProcedure<string, { uploadId: string; partNumber: number }>(
    app,
    ctx.lexicons,
    ids.HoldGetPartUploadUrl,
    {
      auth: writer(ids.HoldGetPartUploadUrl),
      handler: async (c, { auth: caller, input }) => {
        const { uploadId, partNumber } = input
        const direct = await ctx.uploads.partUrl(caller, uploadId, partNumber)
        const signed =
          direct ?? ctx.urlSigner.signPart({ uploadId, partNumber, caller })
        return c.json({ method: 'PUT', ...signed })
      },
    },
  )

  atcrRawProcedure<string>(app, ctx.lexicons, ids.HoldUploadPart, {
    auth: writer(ids.HoldUploadPart),
    handler: async (c, { auth: caller }) => {
      const uploadId = c.req.header('x-upload-id')
      const partNumber = partNumberOf(c.req.header('x-part-number'))
      const { etag } = await ctx.uploads.putPart(
        caller,
        uploadId,
        partNumber,
        c.env?.incoming ?? bodyStream(c.req.raw),
        declaredLength(c),
      )
      return c.json({ etag }, 200, { etag })
    },
  })

  atcrProcedure<string, { uploadId: string; digest: string; parts: Part[] }>(
    app,
    ctx.lexicons,
    ids.HoldCompleteUpload,
    {
      auth: writer(ids.HoldCompleteUpload),
      handler: async (c, { auth: caller, input }) => {
        const hex = parseUploadDigest(input.digest)
        const done = await ctx.uploads.complete(
          caller,
          input.uploadId,
          hex,
          input.parts,
        )
        if (countBlobs && done.did && done.repo) {
          countPush(ctx, c, caller, done.did, done.repo)
        }
        return c.json({
          status: 'completed',
          digest: `sha256:${hex}`,
          size: done.size,
        })
      },
    },
  )

  atcrProcedure<string, { uploadId: string }>(
    app,
    ctx.lexicons,
    ids.HoldAbortUpload,
    {
      auth: writer(ids.HoldAbortUpload),
      handler: async (c, { auth: caller, input }) => {
        await ctx.uploads.abort(caller, input.uploadId)
        return c.json({ status: 'aborted' })
      },
    },
  )

  // A part URL of a disk upload (getPartUploadUrl): the signature names the upload, the part
  // and the caller, who must still have blob:write when the bytes arrive.
  app.put(`${PART_URL_PATH}:uploadId/parts/:partNumber`, async (c) => {
    const uploadId = c.req.param('uploadId') ?? ''
    const partNumber = partNumberOf(c.req.param('partNumber'))
    const grant = ctx.urlSigner.verifyPart(
      uploadId,
      partNumber,
      new URL(c.req.url).searchParams,
    )
    const revoked = ctx.access.missing(grant.caller, 'blob:write')
    if (revoked) {
      throw new ForbiddenError(`access denied for blob:write: ${revoked}`)
    }
    const { etag } = await ctx.uploads.putPart(
      grant.caller,
      uploadId,
      partNumber,
      c.env?.incoming ?? bodyStream(c.req.raw),
      declaredLength(c),
    )
    return c.json({ etag }, 200, { etag })
  })
}

/** A part number as a header or path carries it; Uploads checks its range. */
const partNumberOf = (raw: string | undefined): number => {
  if (raw === undefined || !/^\d{1,6}$/.test(raw)) {
    throw new BlobStoreError(
      'the part number (X-Part-Number) must be a whole number from 1 to 10000',
      'InvalidPartNumber',
    )
  }
  return Number(raw)
}

const declaredLength = (c: Ctx): number | undefined => {
  const raw = c.req.header('content-length')
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined
}
