import { isValidHandle } from '@atproto/syntax'
import { InvalidRequestError, NotFoundError } from '../../../../errors.ts'
import { Params, type Register } from '../../../util.ts'
import { ids } from '../../../../lexicons.ts'
import { atprotoQuery } from '../../../xrpc.ts'

export const register: Register = (app, ctx) => {
  atprotoQuery(app, ids.IdentityResolveHandle, (c) => {
    const handle = new Params(c)
      .required('handle', { maxLength: 253 })
      .toLowerCase()
    if (handle === ctx.cfg.handle) return c.json({ did: ctx.cfg.did })
    if (!isValidHandle(handle)) {
      throw new InvalidRequestError(`handle must be a handle, got "${handle}"`)
    }
    throw new NotFoundError(
      `Unable to resolve handle: ${handle} (this hold resolves only ${ctx.cfg.handle})`,
      'HandleNotFound',
    )
  })
}
