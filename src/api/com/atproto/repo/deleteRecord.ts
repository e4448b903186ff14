import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { isValidRecordKey } from '@atproto/syntax'
import type { Register } from '../../../util.ts'
import { commitView, crewWriteRequest } from './util.ts'
import { atprotoProcedure } from '../../../xrpc.ts'

/** Removes a crew member: the owner or a crew:admin member only. Deleting nothing is not an error. */
export const register: Register = (app, ctx) => {
  atprotoProcedure(app, ids.RepoDeleteRecord, async (c) => {
    const { caller, input } = await crewWriteRequest(
      ctx,
      c,
      ids.RepoDeleteRecord,
    )
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
