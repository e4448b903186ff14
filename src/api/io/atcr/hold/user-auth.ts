import type { AppContext } from '../../../../context.ts'
import { AuthRequiredError } from '../../../../errors.ts'
import type { Ctx } from '../../../util.ts'

/** The DID a service token speaks for: the subject of exportUserData and deleteUserData. */
export const userDidOf = async (
  ctx: AppContext,
  c: Ctx,
  nsid: string,
): Promise<string> => {
  const caller = await ctx.access.authenticate(c, nsid)
  c.set('caller', caller)
  if (!caller.did) {
    throw new AuthRequiredError(
      `${nsid} needs a service token from the DID whose data it is`,
    )
  }
  return caller.did
}
