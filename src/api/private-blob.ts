import type { AppContext } from '../context.ts'
import { AuthRequiredError, ForbiddenError } from '../errors.ts'

/**
 * A blob only private manifests name is read by the hold's owner and crew alone, even on a
 * public hold; answered before anything is counted.
 */
export const assertMayReadPrivate = (
  ctx: AppContext,
  did: string | undefined,
): void => {
  if (!did) {
    throw new AuthRequiredError(
      'this blob belongs to a private image: reading it needs a service token from the owner or crew',
    )
  }
  const missing = ctx.access.missing(did, 'blob:read')
  if (missing) {
    throw new ForbiddenError(
      `this blob belongs to a private image: access denied for blob:read: ${missing}`,
    )
  }
}
