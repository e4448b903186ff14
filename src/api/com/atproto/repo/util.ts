import type { AppContext } from '../../../../context.ts'
import { ForbiddenError, InvalidRequestError } from '../../../../errors.ts'
import { ids } from '../../../../lexicons.ts'

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
