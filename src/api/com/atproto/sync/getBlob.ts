import { parseBlobId } from '../../../../blobs/digest.ts'
import type { UrlGrant } from '../../../../blobs/signed-url.ts'
import { InvalidRequestError, NotFoundError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { parseRepoParam } from '../../../../stats/rkey.ts'
import { blobResponse, parseRange } from '../../../blob-response.ts'
import { countPull } from '../../../../stats/counting.ts'
import { assertMayReadPrivate } from '../../../private-blob.ts'
import { Params, type Register } from '../../../util.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  // HOLD_COUNT_SOURCE=manifest: `repo` is still checked, and counts nothing.
  const countBlobs = ctx.cfg.countSource === 'blob'
  atprotoQuery(app, ids.SyncGetBlob, async (c) => {
    const params = new Params(c)
    const did = params.did('did')
    const hex = parseBlobId(params.required('cid', { maxLength: 128 }))
    const method = params.string('method', { maxLength: 8 }) || undefined
    if (
      method !== undefined &&
      method !== 'GET' &&
      method !== 'HEAD' &&
      method !== 'PUT'
    ) {
      throw new InvalidRequestError('method must be GET, HEAD or PUT')
    }
    const repo = parseRepoParam(did, params.string('repo', { maxLength: 512 }))
    const head = c.req.method === 'HEAD'

    // Authorization comes before anything is counted or written.
    const need = method === 'PUT' ? 'blob:write' : 'blob:read'
    const caller =
      ctx.access.authorizeAnonymous(c, need) ??
      (await ctx.access.authorize(c, need, ids.SyncGetBlob))
    c.set('caller', caller)
    if (method !== 'PUT' && ctx.visibility.isPrivate(hex)) {
      assertMayReadPrivate(ctx, caller.did)
    }

    // A PUT URL is for a blob not stored yet; its push is counted when the upload completes.
    const size = method === 'PUT' ? 0 : await ctx.blobs.size(hex)
    if (size === null) {
      throw new NotFoundError(`Blob not found: sha256:${hex}`, 'BlobNotFound')
    }
    if (method !== undefined) {
      if (countBlobs && method === 'GET' && repo && !head) {
        countPull(ctx, c, caller.did, did, repo)
      }
      // S3 presigns its own download URLs: the bytes never pass through the hold.
      if (method !== 'PUT') {
        const direct = ctx.blobs.directUrl(hex, method)
        if (direct) return c.json({ method, ...direct })
      }
      // Only a PUT URL names the repo, for the push its upload counts. Fetching a GET or HEAD
      // URL never counts (the call was counted above), so a counted call and one without
      // `repo` get the same URL, signed once for both.
      const grant: UrlGrant = {
        method,
        hex,
        did,
        repo: method === 'PUT' ? repo : undefined,
        caller: caller.did,
      }
      return c.json({ method, ...ctx.urlSigner.sign(grant) })
    }
    const range = parseRange(c.req.header('range'), size)
    // A range that does not start at byte 0 resumes a download already counted.
    if (
      countBlobs &&
      repo &&
      !head &&
      (range === undefined || range.start === 0)
    ) {
      countPull(ctx, c, caller.did, did, repo)
    }
    return blobResponse(ctx.blobs, hex, size, range, head)
  })
}
