import type { AppContext } from '../../../../context.ts'
import { serviceDid, type Ctx } from '../../../util.ts'

/** The DID a service token speaks for: the subject of exportUserData and deleteUserData. */
export const userDidOf = (
  ctx: AppContext,
  c: Ctx,
  nsid: string,
): Promise<string> =>
  serviceDid(
    ctx,
    c,
    nsid,
    `${nsid} needs a service token from the DID whose data it is`,
  )
