import type { Caller } from '../../../../auth/access.ts'
import type { AppContext } from '../../../../context.ts'
import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'
import { assertOwnRepo, readJsonBody, type Ctx } from '../../../util.ts'

export const assertCrewCollection = (collection: unknown): void => {
  if (typeof collection !== 'string') {
    throw new InvalidRequestError('collection is required')
  }
  if (collection !== ids.HoldCrew) {
    throw new ForbiddenError(
      `only ${ids.HoldCrew} records can be written through the API; the hold writes ${collection} itself`,
    )
  }
}

export const commitView = (ctx: AppContext) => {
  const root = ctx.storage.getRootSync()
  return root ? { cid: root.cid.toString(), rev: root.rev } : undefined
}

/**
 * The common start of a crew write (createRecord, deleteRecord): the caller is the owner or a
 * crew:admin member, the body names this hold's repo and the crew collection.
 */
export const crewWriteRequest = async (
  ctx: AppContext,
  c: Ctx,
  nsid: string,
): Promise<{ caller: Caller; input: Record<string, unknown> }> => {
  const caller = await ctx.access.authorize(c.req.raw, 'crew:admin', nsid)
  c.set('caller', caller)
  const input = await readJsonBody(c)
  if (typeof input.repo !== 'string') {
    throw new InvalidRequestError('repo is required')
  }
  assertOwnRepo(ctx, input.repo, { allowHandle: true })
  assertCrewCollection(input.collection)
  return { caller, input }
}
