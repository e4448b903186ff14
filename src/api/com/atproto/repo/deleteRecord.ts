import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { isValidRecordKey } from '@atproto/syntax'
import { assertOwnRepo, readJsonBody, type Register } from '../../../util.ts'
import { assertCrewCollection, commitView } from './util.ts'

const NSID = 'com.atproto.repo.deleteRecord'

/** Removes a crew member: the owner or a crew:admin member only. Deleting nothing is not an error. */
export const register: Register = (app, ctx) => {
  app.post(`/xrpc/${NSID}`, async (c) => {
    const caller = await ctx.access.authorize(c.req.raw, 'crew:admin', NSID)
    c.set('caller', caller)
    const input = await readJsonBody(c)
    if (typeof input.repo !== 'string') {
      throw new InvalidRequestError('repo is required')
    }
    assertOwnRepo(ctx, input.repo, { allowHandle: true })
    assertCrewCollection(input.collection)
    if (typeof input.rkey !== 'string' || !isValidRecordKey(input.rkey)) {
      throw new InvalidRequestError('rkey must be a record key')
    }
    const owner = ctx.crew.captain.owner
    const existing = ctx.reader.get(ids.HoldCrew, input.rkey)
    if (existing?.value.member === owner && caller.did !== owner) {
      throw new ForbiddenError(
        "only the owner may change the owner's crew record",
      )
    }
    await ctx.writer.deleteRecords([
      { collection: ids.HoldCrew, rkey: input.rkey },
    ])
    return c.json({ commit: commitView(ctx) })
  })
}
