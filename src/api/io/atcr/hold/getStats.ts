import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { TAG_RE } from '../../../../stats/refs.ts'
import { checkRepoParam } from '../../../../stats/rkey.ts'
import type { Register } from '../../../util.ts'
import { atcrQuery } from '../../../xrpc.ts'

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/

export const register: Register = (app, ctx) => {
  atcrQuery<{
    did: string
    repo: string
    tag?: string
    manifestDigest?: string
  }>(
    app,
    ctx.lexicons,
    ids.HoldGetStats,
    // The lexicon bounds repo; the OCI grammar and the record key's length are the hold's own.
    async (c, { did, repo, tag, manifestDigest }) => {
      const repository = checkRepoParam(did, repo)
      const countSource = ctx.cfg.countSource
      if (tag === undefined && manifestDigest === undefined) {
        // A frontend answers from the writer's table as published in Redis.
        const fromRedis = ctx.cluster?.frontendStats
        return c.json({
          ...(fromRedis
            ? await fromRedis.get(did, repository)
            : ctx.stats.get(did, repository)),
          countSource,
        })
      }
      if (tag !== undefined && manifestDigest !== undefined) {
        throw new InvalidRequestError('give tag or manifestDigest, not both')
      }
      refsKept(countSource, tag === undefined ? 'manifestDigest' : 'tag')
      if (tag !== undefined && !TAG_RE.test(tag)) {
        throw new InvalidRequestError(
          'tag must be an OCI tag: up to 128 letters, digits, _ . and -, not starting with . or -',
        )
      }
      if (manifestDigest !== undefined && !DIGEST_RE.test(manifestDigest)) {
        throw new InvalidRequestError(
          'manifestDigest must be sha256: followed by 64 lowercase hex characters',
        )
      }
      const view =
        tag !== undefined
          ? ctx.stats.refStats(did, repository, 'tag', tag)
          : ctx.stats.refStats(did, repository, 'digest', manifestDigest!)
      return c.json({ ...view, countSource })
    },
  )
}

/** Tags and manifests are counted only from notifyManifest: a blob-counting hold has none. */
export const refsKept = (countSource: string, param: string): void => {
  if (countSource !== 'manifest') {
    throw new InvalidRequestError(
      `${param}: this hold counts blobs (HOLD_COUNT_SOURCE=${countSource}); tags and manifests are counted only with HOLD_COUNT_SOURCE=manifest`,
    )
  }
}
