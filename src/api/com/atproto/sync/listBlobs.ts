import { isValidTid } from '@atproto/syntax'
import { parseCid } from '@atproto/lex-data'
import { InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { assertOwnRepo, Params, type Register } from '../../../util.ts'
import { atprotoQuery } from '../../../xrpc.ts'

/**
 * The blobs the repo's records reference. The hold's records (captain, crew, stats) reference
 * none, and image layers are not repo blobs: the answer is always empty, after the parameters
 * are checked as the reference PDS checks them.
 */
export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.SyncListBlobs, (c) => {
    const params = new Params(c)
    assertOwnRepo(ctx, params.required('did'), { allowHandle: false })
    const since = params.string('since')
    if (since && !isValidTid(since)) {
      throw new InvalidRequestError(
        `since must be a repo rev (TID), got "${since}"`,
      )
    }
    params.int('limit', { min: 1, max: 1000, def: 500 })
    const cursor = params.string('cursor', { maxLength: 128 })
    if (cursor) {
      try {
        parseCid(cursor)
      } catch {
        throw new InvalidRequestError(
          `cursor must be a CID from an earlier answer, got "${cursor}"`,
        )
      }
    }
    return c.json({ cids: [] })
  })
}
